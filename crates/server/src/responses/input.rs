//! A Responses request as the chat request it runs as: input items become chat messages
//! (consecutive `function_call` items one assistant turn with several calls, each
//! `function_call_output` a `tool` turn), flat function tools become chat's nested ones,
//! `text.format` becomes `response_format`, `max_output_tokens` the completion cap. Validation
//! errors then name the chat field; [`responses_param`] names the Responses one instead.

use serde_json::{json, Value};

use super::types::{CreateResponse, Input, TextFormat};
use crate::openai::error::ApiError;
use crate::openai::types::{ChatCompletionRequest, ChatMessage, ContentPart, GenerationFields, JsonSchemaFormat, MessageContent, RequestFunctionCall, RequestToolCall, ResponseFormat};

/// The chat request for `req` (its `input` only: instructions and earlier turns are the route's).
pub fn to_chat(req: &CreateResponse) -> Result<ChatCompletionRequest, ApiError> {
    let messages = match &req.input {
        None => return Err(ApiError::invalid("input", "input is required")),
        Some(Input::Text(text)) => vec![message("user", MessageContent::Text(text.clone()))],
        Some(Input::Items(items)) if items.is_empty() => return Err(ApiError::invalid("input", "input must not be empty")),
        Some(Input::Items(items)) => input_messages(items)?,
    };
    let tools = req.tools.as_ref().map(|tools| tools.iter().enumerate().map(|(i, t)| chat_tool(i, t)).collect::<Result<Vec<_>, _>>()).transpose()?;
    let tool_choice = req.tool_choice.clone().map(|c| match c {
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => json!({"type": "function", "function": {"name": o.get("name").cloned().unwrap_or(Value::Null)}}),
        other => other,
    });
    let response_format = req.text.as_ref().and_then(|t| t.format.clone()).map(response_format);
    Ok(ChatCompletionRequest {
        model: req.model.clone(),
        messages: Some(messages),
        max_completion_tokens: req.max_output_tokens,
        generation: GenerationFields { temperature: req.temperature, top_p: req.top_p, stream: req.stream, seed: req.seed, user: req.user.clone(), ..GenerationFields::default() },
        tools,
        tool_choice,
        parallel_tool_calls: req.parallel_tool_calls,
        response_format,
        ..ChatCompletionRequest::default()
    })
}

/// A chat error's `param` as the Responses request spells it.
pub fn responses_param(mut e: ApiError) -> ApiError {
    e.param = e.param.map(|p| match p.as_str() {
        "response_format" => "text.format".to_string(),
        "max_completion_tokens" | "max_tokens" => "max_output_tokens".to_string(),
        p if p.starts_with("messages") => "input".to_string(),
        p if p.starts_with("tools[") => p.replace(".function.", "."),
        _ => p,
    });
    e
}

fn message(role: &str, content: MessageContent) -> ChatMessage {
    ChatMessage { role: role.to_string(), content: Some(content), name: None, tool_calls: None, tool_call_id: None }
}

fn input_messages(items: &[Value]) -> Result<Vec<ChatMessage>, ApiError> {
    let mut out: Vec<ChatMessage> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let param = |field: &str| format!("input[{i}]{field}");
        let kind = item.get("type").and_then(Value::as_str).unwrap_or(if item.get("role").is_some() { "message" } else { "" });
        match kind {
            "message" => {
                let role = item.get("role").and_then(Value::as_str).ok_or_else(|| ApiError::invalid(param(".role"), "a message needs a role"))?;
                let content = match item.get("content") {
                    Some(Value::String(s)) => MessageContent::Text(s.clone()),
                    Some(Value::Array(parts)) => MessageContent::Parts(parts.iter().enumerate().map(|(j, p)| text_part(&format!("input[{i}].content[{j}]"), p)).collect::<Result<_, _>>()?),
                    _ => return Err(ApiError::invalid(param(".content"), "content must be a string or a list of content parts")),
                };
                out.push(message(role, content));
            }
            "function_call" => {
                let field = |name: &str| item.get(name).and_then(Value::as_str).map(str::to_string).ok_or_else(|| ApiError::invalid(param(&format!(".{name}")), format!("a function_call needs `{name}`")));
                let call = RequestToolCall {
                    id: Some(field("call_id")?),
                    kind: Some("function".into()),
                    function: Some(RequestFunctionCall { name: Some(field("name")?), arguments: Some(Value::String(field("arguments")?)) }),
                };
                // Calls after an assistant turn (or after each other) belong to that turn.
                match out.last_mut() {
                    Some(last) if last.role == "assistant" => last.tool_calls.get_or_insert_with(Vec::new).push(call),
                    _ => out.push(ChatMessage { role: "assistant".into(), content: None, name: None, tool_calls: Some(vec![call]), tool_call_id: None }),
                }
            }
            "function_call_output" => {
                let call_id = item.get("call_id").and_then(Value::as_str).ok_or_else(|| ApiError::invalid(param(".call_id"), "a function_call_output needs `call_id`"))?;
                let output = match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => return Err(ApiError::invalid(param(".output"), "a function_call_output needs `output`")),
                };
                out.push(ChatMessage { tool_call_id: Some(call_id.to_string()), ..message("tool", MessageContent::Text(output)) });
            }
            // Earlier reasoning is not shown to the model again (as chat templates drop it).
            "reasoning" => {}
            other => return Err(ApiError::invalid(param(".type"), format!("input items of type {other:?} are not supported (message, function_call, function_call_output, reasoning)"))),
        }
    }
    if out.is_empty() {
        return Err(ApiError::invalid("input", "input has no messages"));
    }
    Ok(out)
}

/// `input_text` / `output_text` parts are text; others are not supported.
fn text_part(param: &str, part: &Value) -> Result<ContentPart, ApiError> {
    match part.get("type").and_then(Value::as_str) {
        Some("input_text" | "output_text" | "text") => Ok(ContentPart { kind: "text".into(), text: part.get("text").and_then(Value::as_str).map(str::to_string) }),
        other => Err(ApiError::invalid(param, format!("only text content parts are supported, got type {:?}", other.unwrap_or("none")))),
    }
}

/// `{"type": "function", "name", "description", "parameters", "strict"}` as chat's nested shape.
fn chat_tool(i: usize, tool: &Value) -> Result<Value, ApiError> {
    if tool.get("type").and_then(Value::as_str) != Some("function") {
        return Err(ApiError::invalid(format!("tools[{i}].type"), "only tools of type \"function\" are supported"));
    }
    let mut function = serde_json::Map::new();
    for key in ["name", "description", "parameters"] {
        if let Some(v) = tool.get(key).filter(|v| !v.is_null()) {
            function.insert(key.to_string(), v.clone());
        }
    }
    Ok(json!({"type": "function", "function": function}))
}

fn response_format(f: TextFormat) -> ResponseFormat {
    let json_schema = (f.kind == "json_schema").then(|| JsonSchemaFormat { name: f.name, description: f.description, schema: f.schema, strict: f.strict });
    ResponseFormat { kind: f.kind, json_schema }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> CreateResponse {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn items_become_chat_turns() {
        let r = req(json!({"input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
            {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "t", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "message", "role": "developer", "content": "Be brief."}
        ], "tools": [{"type": "function", "name": "w", "parameters": {"type": "object"}}],
           "tool_choice": {"type": "function", "name": "w"}, "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}},
           "max_output_tokens": 9}));
        let chat = to_chat(&r).unwrap();
        let m = chat.messages.unwrap();
        assert_eq!(m.iter().map(|m| m.role.as_str()).collect::<Vec<_>>(), ["user", "assistant", "tool", "developer"]);
        assert_eq!(m[1].tool_calls.as_ref().unwrap().len(), 2);
        assert_eq!(m[2].tool_call_id.as_deref(), Some("c1"));
        assert_eq!(chat.tools.unwrap()[0], json!({"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}));
        assert_eq!(chat.tool_choice.unwrap(), json!({"type": "function", "function": {"name": "w"}}));
        assert_eq!(chat.response_format.unwrap().json_schema.unwrap().schema, Some(json!({"type": "object"})));
        assert_eq!(chat.max_completion_tokens, Some(9));
    }

    #[test]
    fn unsupported_input_is_a_400_naming_the_item() {
        let param = |v: Value| to_chat(&req(v)).unwrap_err().param.unwrap();
        assert_eq!(param(json!({})), "input");
        assert_eq!(param(json!({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]})), "input[0].content[0]");
        assert_eq!(param(json!({"input": [{"type": "web_search_call"}]})), "input[0].type");
        assert_eq!(param(json!({"input": "x", "tools": [{"type": "web_search"}]})), "tools[0].type");
        assert_eq!(responses_param(ApiError::invalid("response_format", "x")).param.as_deref(), Some("text.format"));
    }
}
