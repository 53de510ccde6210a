//! A Messages request as the chat request it runs as. `system` becomes the first turn; a user
//! turn's `tool_result` blocks become `tool` turns (in block order, text between them a user
//! turn); an assistant turn's `tool_use` blocks become its `tool_calls`; earlier `thinking` is
//! dropped (as templates drop it). Tools' `input_schema` is the function's `parameters`;
//! `tool_choice` `any` is OpenAI's `required`, `tool` a named function.

use serde_json::{json, Value};

use super::types::{Content, MessagesRequest};
use crate::openai::error::ApiError;
use crate::openai::types::{ChatCompletionRequest, ChatMessage, GenerationFields, MessageContent, RequestFunctionCall, RequestToolCall, Stop};

pub fn to_chat(req: &MessagesRequest) -> Result<ChatCompletionRequest, ApiError> {
    let max_tokens = req.max_tokens.ok_or_else(|| ApiError::invalid("max_tokens", "max_tokens is required"))?;
    let mut messages = Vec::new();
    if let Some(system) = &req.system {
        messages.push(turn("system", text_of(system, "system")?));
    }
    let input = req.messages.as_deref().unwrap_or_default();
    if input.is_empty() {
        return Err(ApiError::invalid("messages", "messages must not be empty"));
    }
    for (i, m) in input.iter().enumerate() {
        match m.role.as_str() {
            "user" => user_turns(i, &m.content, &mut messages)?,
            "assistant" => messages.push(assistant_turn(i, &m.content)?),
            other => return Err(ApiError::invalid(format!("messages.{i}.role"), format!("unexpected role {other:?}: messages are user or assistant turns (system is its own field)"))),
        }
    }
    let tools = req.tools.as_ref().map(|t| t.iter().enumerate().map(|(i, t)| chat_tool(i, t)).collect::<Result<Vec<_>, _>>()).transpose()?;
    let (tool_choice, parallel) = match &req.tool_choice {
        None => (None, None),
        Some(c) => {
            let parallel = c.get("disable_parallel_tool_use").and_then(Value::as_bool).map(|d| !d);
            let choice = match c.get("type").and_then(Value::as_str) {
                Some("auto") => json!("auto"),
                Some("any") => json!("required"),
                Some("none") => json!("none"),
                Some("tool") => json!({"type": "function", "function": {"name": c.get("name").cloned().unwrap_or(Value::Null)}}),
                _ => return Err(ApiError::invalid("tool_choice", "tool_choice.type must be auto, any, tool or none")),
            };
            (Some(choice), parallel)
        }
    };
    let thinking = req.thinking.as_ref().and_then(|t| t.get("type")).and_then(Value::as_str).map(|t| t == "enabled");
    Ok(ChatCompletionRequest {
        model: req.model.clone(),
        messages: Some(messages),
        max_completion_tokens: Some(max_tokens),
        generation: GenerationFields {
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: req.top_k,
            stream: req.stream,
            stop: req.stop_sequences.clone().map(Stop::Many),
            ..GenerationFields::default()
        },
        tools,
        tool_choice,
        parallel_tool_calls: parallel,
        chat_template_kwargs: thinking.map(|on| [("enable_thinking".to_string(), json!(on))].into_iter().collect()),
        ..ChatCompletionRequest::default()
    })
}

/// A chat error's `param` as this API spells it (`messages.0.content`, `max_tokens`).
pub fn messages_param(mut e: ApiError) -> ApiError {
    e.param = e.param.map(|p| match p.as_str() {
        "max_completion_tokens" => "max_tokens".to_string(),
        "stop" => "stop_sequences".to_string(),
        p => p.replace('[', ".").replace(']', ""),
    });
    e
}

fn turn(role: &str, text: String) -> ChatMessage {
    ChatMessage { role: role.to_string(), content: Some(MessageContent::Text(text)), name: None, tool_calls: None, tool_call_id: None }
}

/// A string, or text blocks joined (other blocks are not text).
fn text_of(content: &Content, param: &str) -> Result<String, ApiError> {
    match content {
        Content::Text(s) => Ok(s.clone()),
        Content::Blocks(blocks) => {
            let mut texts = Vec::new();
            for (j, b) in blocks.iter().enumerate() {
                match block_type(b) {
                    "text" => texts.push(b.get("text").and_then(Value::as_str).unwrap_or_default().to_string()),
                    other => return Err(ApiError::invalid(format!("{param}.{j}.type"), format!("expected a text block, got {other:?}"))),
                }
            }
            Ok(texts.join("\n"))
        }
    }
}

fn block_type(b: &Value) -> &str {
    b.get("type").and_then(Value::as_str).unwrap_or("")
}

fn user_turns(i: usize, content: &Content, out: &mut Vec<ChatMessage>) -> Result<(), ApiError> {
    let blocks = match content {
        Content::Text(s) => {
            out.push(turn("user", s.clone()));
            return Ok(());
        }
        Content::Blocks(b) => b,
    };
    let mut text: Vec<String> = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let param = format!("messages.{i}.content.{j}");
        match block_type(b) {
            "text" => text.push(b.get("text").and_then(Value::as_str).unwrap_or_default().to_string()),
            "tool_result" => {
                if !text.is_empty() {
                    out.push(turn("user", std::mem::take(&mut text).join("\n")));
                }
                let id = b.get("tool_use_id").and_then(Value::as_str).ok_or_else(|| ApiError::invalid(format!("{param}.tool_use_id"), "a tool_result needs tool_use_id"))?;
                let result = match b.get("content") {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(parts)) => text_of(&Content::Blocks(parts.clone()), &format!("{param}.content"))?,
                    Some(other) => other.to_string(),
                };
                let is_error = b.get("is_error").and_then(Value::as_bool).unwrap_or(false);
                let result = if is_error { format!("Error: {result}") } else { result };
                out.push(ChatMessage { tool_call_id: Some(id.to_string()), ..turn("tool", result) });
            }
            other => return Err(ApiError::invalid(format!("{param}.type"), format!("content blocks of type {other:?} are not supported in user turns (text, tool_result)"))),
        }
    }
    if !text.is_empty() {
        out.push(turn("user", text.join("\n")));
    }
    Ok(())
}

fn assistant_turn(i: usize, content: &Content) -> Result<ChatMessage, ApiError> {
    let blocks = match content {
        Content::Text(s) => return Ok(turn("assistant", s.clone())),
        Content::Blocks(b) => b,
    };
    let (mut text, mut calls) = (Vec::new(), Vec::new());
    for (j, b) in blocks.iter().enumerate() {
        let param = format!("messages.{i}.content.{j}");
        match block_type(b) {
            "text" => text.push(b.get("text").and_then(Value::as_str).unwrap_or_default().to_string()),
            "tool_use" => {
                let field = |k: &str| b.get(k).and_then(Value::as_str).map(str::to_string).ok_or_else(|| ApiError::invalid(format!("{param}.{k}"), format!("a tool_use block needs `{k}`")));
                let function = RequestFunctionCall { name: Some(field("name")?), arguments: Some(b.get("input").cloned().unwrap_or_else(|| json!({}))) };
                calls.push(RequestToolCall { id: Some(field("id")?), kind: Some("function".into()), function: Some(function) });
            }
            "thinking" | "redacted_thinking" => {}
            other => return Err(ApiError::invalid(format!("{param}.type"), format!("content blocks of type {other:?} are not supported in assistant turns (text, tool_use, thinking)"))),
        }
    }
    Ok(ChatMessage { tool_calls: (!calls.is_empty()).then_some(calls), ..turn("assistant", text.join("")) })
}

/// `{"name", "description", "input_schema"}` as a chat function tool.
fn chat_tool(i: usize, tool: &Value) -> Result<Value, ApiError> {
    if let Some(kind) = tool.get("type").and_then(Value::as_str).filter(|k| *k != "custom") {
        return Err(ApiError::invalid(format!("tools.{i}.type"), format!("tool type {kind:?} is not supported (only client tools with an input_schema)")));
    }
    let mut function = serde_json::Map::new();
    for (from, to) in [("name", "name"), ("description", "description"), ("input_schema", "parameters")] {
        if let Some(v) = tool.get(from).filter(|v| !v.is_null()) {
            function.insert(to.to_string(), v.clone());
        }
    }
    Ok(json!({"type": "function", "function": function}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> MessagesRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn blocks_become_chat_turns() {
        let r = req(json!({"max_tokens": 10, "system": [{"type": "text", "text": "Be brief."}], "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": ""}, {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}]}, {"type": "text", "text": "Thanks"}]}
        ], "tools": [{"name": "w", "input_schema": {"type": "object"}}], "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
           "stop_sequences": ["END"], "thinking": {"type": "disabled"}}));
        let chat = to_chat(&r).unwrap();
        let m = chat.messages.unwrap();
        assert_eq!(m.iter().map(|m| m.role.as_str()).collect::<Vec<_>>(), ["system", "user", "assistant", "tool", "user"]);
        assert_eq!(m[2].content, Some(MessageContent::Text("Checking.".into())));
        assert_eq!(m[2].tool_calls.as_ref().unwrap()[0].function.as_ref().unwrap().arguments, Some(json!({"city": "Paris"})));
        assert_eq!((m[3].tool_call_id.as_deref(), &m[3].content), (Some("toolu_1"), &Some(MessageContent::Text("sunny".into()))));
        assert_eq!(chat.tools.unwrap()[0], json!({"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}));
        assert_eq!((chat.tool_choice, chat.parallel_tool_calls), (Some(json!("required")), Some(false)));
        assert_eq!(chat.chat_template_kwargs.unwrap()["enable_thinking"], json!(false));
    }

    #[test]
    fn what_cannot_be_served_is_a_400_naming_the_field() {
        let param = |v: Value| to_chat(&req(v)).unwrap_err().param.unwrap();
        assert_eq!(param(json!({"messages": [{"role": "user", "content": "x"}]})), "max_tokens");
        assert_eq!(param(json!({"max_tokens": 5, "messages": []})), "messages");
        assert_eq!(param(json!({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]})), "messages.0.content.0.type");
        assert_eq!(param(json!({"max_tokens": 5, "messages": [{"role": "system", "content": "x"}]})), "messages.0.role");
        assert_eq!(param(json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "bash_20250124", "name": "bash"}]})), "tools.0.type");
        assert_eq!(messages_param(ApiError::invalid("messages[2].content", "x")).param.as_deref(), Some("messages.2.content"));
    }
}
