//! `POST /v1/messages`: Anthropic's Messages API over the chat path (`crate::anthropic` has the
//! parts). Errors, including a body that does not parse, are in Anthropic's shape. `x-api-key`
//! and `anthropic-version` headers are accepted (API keys are checked the same way as bearer
//! keys where the server requires them).

use std::convert::Infallible;

use axum::extract::{FromRequest, Request, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;

use super::chat::{prepare, PreparedChat};
use super::completions::limits;
use super::routing::{model_for, VersionTag};
use super::generation::{collect, item_id, submit, Arrival};
use super::json_body::JsonBody;
use crate::anthropic::blocks::BlockBuilder;
use crate::anthropic::convert::{messages_param, to_chat};
use crate::anthropic::error::AnthropicError;
use crate::anthropic::types::{MessageResponse, MessageUsage, MessagesRequest, OutputUsage, StopDelta, StreamEvent};
use crate::app::AppState;
use crate::choices::ChoiceUpdate;
use crate::openai::validate::validate_chat;

/// The JSON body, its rejections in Anthropic's shape.
pub struct AnthropicJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AnthropicJson<T> {
    type Rejection = AnthropicError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AnthropicError> {
        JsonBody::<T>::from_request(req, state).await.map(|JsonBody(v)| AnthropicJson(v)).map_err(AnthropicError)
    }
}

#[utoipa::path(post, path = "/v1/messages", operation_id = "createMessage", tag = "inference", request_body = MessagesRequest,
    params(("anthropic-version" = Option<String>, Header, description = "Accepted and ignored."), ("x-api-key" = Option<String>, Header, description = "An API key, as an alternative to `Authorization: Bearer`.")),
    responses((status = 200, description = "The message; with `stream: true`, Anthropic's server-sent events. Errors are in Anthropic's shape.",
        content((MessageResponse = "application/json"), (StreamEvent = "text/event-stream")))))]
pub async fn messages(State(state): State<AppState>, tag: VersionTag, arrival: Arrival, AnthropicJson(req): AnthropicJson<MessagesRequest>) -> Result<Response, AnthropicError> {
    let model = model_for(&state, &tag, req.model.as_deref()).await?;
    let ctx = arrival.context(None)?;
    let mut v = validate_chat(to_chat(&req)?, &limits(&model)).map_err(messages_param)?;
    let PreparedChat { prompt, mut output } = prepare(&model, &mut v).map_err(messages_param)?;
    let prompt_tokens = prompt.len();
    let run = submit(&model, prompt, v.params.clone(), &v.stop, &ctx)?;
    let mut message = MessageResponse {
        id: item_id("msg"),
        kind: "message",
        role: "assistant",
        model: model.echo.clone(),
        content: Vec::new(),
        stop_reason: None,
        stop_sequence: None,
        usage: MessageUsage { input_tokens: prompt_tokens, output_tokens: 0, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 },
    };

    if !v.stream {
        let c = collect(run, 1).await?;
        let mut blocks = BlockBuilder::default();
        blocks.push(output.whole(&c.texts[0]));
        blocks.finish();
        message.content = blocks.blocks().to_vec();
        message.stop_sequence = c.stop_sequences[0].clone();
        message.stop_reason = Some(stop_reason(c.finish_reasons[0], message.stop_sequence.is_some(), blocks.has_tool_use()));
        message.usage = MessageUsage::from_engine(&c.usage);
        return Ok(Json(message).into_response());
    }

    let events = async_stream::stream! {
        let mut run = run;
        let send = |e: StreamEvent| Ok::<Event, Infallible>(Event::default().event(e.name()).data(super::generation::sse_json(&e)));
        yield send(StreamEvent::MessageStart { message: message.clone() });
        yield send(StreamEvent::Ping);
        let mut blocks = BlockBuilder::default();
        while !run.choices.all_done() {
            let Some(event) = run.next_event().await else { break };
            for update in run.choices.on_event(event) {
                match update {
                    ChoiceUpdate::Text { text, .. } => {
                        for e in blocks.push(output.push(&text)) {
                            yield send(e);
                        }
                    }
                    ChoiceUpdate::Finished { reason, .. } => {
                        let mut events = blocks.push(output.finish());
                        events.extend(blocks.finish());
                        for e in events {
                            yield send(e);
                        }
                        let stop_sequence = run.choices.stop_sequence(0).map(str::to_string);
                        let stop_reason = stop_reason(reason, stop_sequence.is_some(), blocks.has_tool_use());
                        let usage = OutputUsage { output_tokens: run.choices.usage().completion_tokens };
                        yield send(StreamEvent::MessageDelta { delta: StopDelta { stop_reason, stop_sequence }, usage });
                        yield send(StreamEvent::MessageStop);
                    }
                    ChoiceUpdate::Failed(e) => {
                        let e = AnthropicError(e.into());
                        yield Ok(Event::default().event("error").data(super::generation::sse_json(&e.to_json())));
                    }
                }
            }
        }
    };
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(10))).into_response())
}

/// Anthropic's stop reasons: a stop sequence, the token limit, a tool call, or the model's own end.
fn stop_reason(finish: &str, stop_sequence: bool, tool_use: bool) -> &'static str {
    match finish {
        "length" => "max_tokens",
        _ if stop_sequence => "stop_sequence",
        _ if tool_use => "tool_use",
        _ => "end_turn",
    }
}
