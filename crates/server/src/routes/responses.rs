//! `POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}`: the Responses API over the chat
//! path (`crate::responses` has the parts). Streams are SSE with `event:` names and a
//! `sequence_number` on every event, ending with `response.completed` (or `response.incomplete`
//! when `max_output_tokens` cut the output short); there is no `[DONE]`.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rill_model::chat_template::{ChatMessage as TemplateMessage, MessageToolCall};
use serde_json::{json, Value};

use super::chat::{prepare, PreparedChat};
use super::completions::limits;
use super::routing::{model_for, VersionTag};
use super::generation::{collect, item_id, submit, Arrival};
use crate::app::AppState;
use crate::choices::ChoiceUpdate;
use crate::openai::error::ApiError;
use crate::openai::unix_time;
use crate::openai::validate::validate_chat;
use crate::responses::input::{responses_param, to_chat};
use crate::responses::output::OutputBuilder;
use crate::responses::store::Stored;
use crate::responses::types::{CreateResponse, Deleted, IncompleteDetails, OutputItem, ResponseObject, ResponseUsage, StreamEvent, TextConfig, TextFormat};
use crate::routes::json_body::JsonBody;

#[utoipa::path(post, path = "/v1/responses", operation_id = "createResponse", tag = "inference", request_body = CreateResponse,
    responses((status = 200, description = "The response; with `stream: true`, server-sent events named by their `type`, ending with `response.completed` or `response.incomplete`.",
        content((ResponseObject = "application/json"), (StreamEvent = "text/event-stream")))))]
pub async fn create(State(state): State<AppState>, tag: VersionTag, arrival: Arrival, JsonBody(req): JsonBody<CreateResponse>) -> Result<Response, ApiError> {
    let model = model_for(&state, &tag, req.model.as_deref()).await?;
    let ctx = arrival.context(None)?;
    let previous = match &req.previous_response_id {
        Some(id) => Some(state.responses.get(id).ok_or_else(|| ApiError::not_found(format!("Previous response with id '{id}' not found.")).with_param("previous_response_id"))?),
        None => None,
    };
    let mut v = validate_chat(to_chat(&req)?, &limits(&model)).map_err(responses_param)?;
    // The conversation: these instructions, the chained turns, then this input.
    let input = std::mem::take(&mut v.messages);
    let earlier = previous.as_ref().map_or(&[][..], |p| &p.history[..]);
    v.messages = req.instructions.iter().map(|i| TemplateMessage::new("system", i.clone())).chain(earlier.iter().cloned()).chain(input.iter().cloned()).collect();
    let PreparedChat { prompt, mut output } = prepare(&model, &mut v).map_err(responses_param)?;
    let run = submit(&model, prompt, v.params.clone(), &v.stop, &ctx)?;
    let mut response = new_response(&req, item_id("resp"), model.echo.clone());
    let history: Vec<TemplateMessage> = earlier.iter().cloned().chain(input).collect();
    let store = response.store.then(|| state.responses.clone());

    if !v.stream {
        let c = collect(run, 1).await?;
        let mut builder = OutputBuilder::default();
        builder.push(output.whole(&c.texts[0]));
        let length = c.finish_reasons[0] == "length";
        builder.finish(if length { "incomplete" } else { "completed" });
        finish(&mut response, builder.items().to_vec(), length, ResponseUsage::from_engine(&c.usage));
        if let Some(store) = store {
            store.insert(Stored { response: response.clone(), history: with_output(history, &response.output) });
        }
        return Ok(Json(response).into_response());
    }

    let events = async_stream::stream! {
        let mut run = run;
        let mut seq = 0usize;
        let mut send = |e: StreamEvent| {
            let name = e.name();
            let mut json = serde_json::to_value(&e).unwrap_or(Value::Null);
            json["sequence_number"] = json!(seq);
            seq += 1;
            Ok::<Event, Infallible>(Event::default().event(name).data(super::generation::sse_json(&json)))
        };
        yield send(StreamEvent::Created { response: response.clone() });
        yield send(StreamEvent::InProgress { response: response.clone() });
        let mut builder = OutputBuilder::default();
        while !run.choices.all_done() {
            let Some(event) = run.next_event().await else { break };
            for update in run.choices.on_event(event) {
                match update {
                    ChoiceUpdate::Text { text, .. } => {
                        for e in builder.push(output.push(&text)) {
                            yield send(e);
                        }
                    }
                    ChoiceUpdate::Finished { reason, .. } => {
                        let length = reason == "length";
                        let mut events = builder.push(output.finish());
                        events.extend(builder.finish(if length { "incomplete" } else { "completed" }));
                        for e in events {
                            yield send(e);
                        }
                        finish(&mut response, builder.items().to_vec(), length, ResponseUsage::from_engine(&run.choices.usage()));
                        if let Some(store) = &store {
                            store.insert(Stored { response: response.clone(), history: with_output(history.clone(), &response.output) });
                        }
                        let done = if length { StreamEvent::Incomplete { response: response.clone() } } else { StreamEvent::Completed { response: response.clone() } };
                        yield send(done);
                    }
                    ChoiceUpdate::Failed(e) => {
                        let e: ApiError = e.into();
                        yield send(StreamEvent::Error { code: e.code.clone(), message: e.message.clone(), param: e.param.clone() });
                    }
                }
            }
        }
    };
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(10))).into_response())
}

#[utoipa::path(get, path = "/v1/responses/{id}", operation_id = "getResponse", tag = "inference", params(("id" = String, Path, description = "A stored response's id.")),
    responses((status = 200, description = "The stored response.", body = ResponseObject)))]
pub async fn get_one(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let stored = state.responses.get(&id).ok_or_else(|| not_found(&id))?;
    Ok(Json(stored.response.clone()).into_response())
}

#[utoipa::path(delete, path = "/v1/responses/{id}", operation_id = "deleteResponse", tag = "inference", params(("id" = String, Path, description = "A stored response's id.")),
    responses((status = 200, description = "The response is forgotten.", body = Deleted)))]
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    if !state.responses.remove(&id) {
        return Err(not_found(&id));
    }
    Ok(Json(Deleted { id, object: "response", deleted: true }).into_response())
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("Response with id '{id}' not found."))
}

/// The response as it starts: `in_progress`, no output, the request's settings echoed.
fn new_response(req: &CreateResponse, id: String, model: String) -> ResponseObject {
    let text = req.text.clone().filter(|t| t.format.is_some()).unwrap_or(TextConfig { format: Some(TextFormat { kind: "text".into(), name: None, schema: None, strict: None, description: None }) });
    ResponseObject {
        id,
        object: "response",
        created_at: unix_time(),
        status: "in_progress",
        completed_at: None,
        error: None,
        incomplete_details: None,
        instructions: req.instructions.clone(),
        max_output_tokens: req.max_output_tokens,
        model,
        output: Vec::new(),
        parallel_tool_calls: req.parallel_tool_calls.unwrap_or(true),
        previous_response_id: req.previous_response_id.clone(),
        store: req.store.unwrap_or(true),
        temperature: req.temperature,
        top_p: req.top_p,
        text,
        tool_choice: req.tool_choice.clone().unwrap_or_else(|| json!("auto")),
        tools: req.tools.clone().unwrap_or_default(),
        truncation: "disabled",
        usage: None,
        metadata: req.metadata.clone().unwrap_or_default(),
        user: req.user.clone(),
    }
}

fn finish(response: &mut ResponseObject, output: Vec<OutputItem>, length: bool, usage: ResponseUsage) {
    response.output = output;
    response.usage = Some(usage);
    response.completed_at = Some(unix_time());
    if length {
        response.status = "incomplete";
        response.incomplete_details = Some(IncompleteDetails { reason: "max_output_tokens" });
    } else {
        response.status = "completed";
    }
}

/// The conversation with this response's output as the assistant's turn (text and calls; the
/// reasoning is dropped, as templates drop it from earlier turns).
fn with_output(mut history: Vec<TemplateMessage>, output: &[OutputItem]) -> Vec<TemplateMessage> {
    let mut turn = TemplateMessage::new("assistant", "");
    for item in output {
        match item {
            OutputItem::Message { content, .. } => content.iter().for_each(|c| turn.content.push_str(&c.text)),
            OutputItem::FunctionCall { call_id, name, arguments, .. } => turn.tool_calls.push(MessageToolCall {
                id: call_id.clone(),
                name: name.clone(),
                arguments: serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.clone())),
            }),
            OutputItem::Reasoning { .. } => {}
        }
    }
    history.push(turn);
    history
}
