//! Tools in the prompt. A template that takes `tools` renders them (and the assistant's calls and
//! the tool results) itself, in its family's format; for one that does not, the conversation is
//! rewritten before rendering into the Hermes format most open models are trained on: the tools
//! in the system message, calls as `<tool_call>` blocks, results as `<tool_response>` user turns.
//! Either way the format the model is taught is the one its output is parsed in.

use super::python_json::tojson_string;
use super::ChatMessage;

/// How a model writes tool calls (what its template teaches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolCallFormat {
    /// `<tool_call>{"name": …, "arguments": {…}}</tool_call>` per call (Qwen2.5/3, Hermes,
    /// SmolLM3, and rill's default for templates without tools).
    Hermes,
    /// The whole output is `{"name": …, "parameters": {…}}`, optionally after `<|python_tag|>`.
    Llama3,
    /// `[TOOL_CALLS]` then a JSON array of `{"name", "arguments"}` (Mistral Nemo, v3 tokenizers).
    Mistral,
    /// `[TOOL_CALLS]name[ARGS]{…}` per call (Mistral Small 3.2, Devstral, Ministral 3).
    MistralArgs,
}

impl ToolCallFormat {
    /// The format a template that renders `tools` itself teaches, from its source.
    pub fn of_template(source: &str) -> ToolCallFormat {
        if source.contains("[ARGS]") {
            ToolCallFormat::MistralArgs
        } else if source.contains("[TOOL_CALLS]") {
            ToolCallFormat::Mistral
        } else if source.contains("<tool_call>") {
            ToolCallFormat::Hermes
        } else if source.contains("<|python_tag|>") || source.contains("\"parameters\"") {
            ToolCallFormat::Llama3
        } else {
            ToolCallFormat::Hermes
        }
    }
}

const HERMES_PREAMBLE: &str = "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
You are provided with function signatures within <tools></tools> XML tags:\n<tools>";
const HERMES_INSTRUCTIONS: &str = "\n</tools>\n\nFor each function call, return a json object with function name and arguments \
within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>";

/// The conversation with tools, calls and results written into plain turns (Hermes format), for
/// a template that knows none of them.
pub fn inline_hermes(messages: &[ChatMessage], tools: &[serde_json::Value]) -> Vec<ChatMessage> {
    let mut out = Vec::with_capacity(messages.len() + 1);
    if !tools.is_empty() {
        let mut block = HERMES_PREAMBLE.to_string();
        for tool in tools {
            block.push('\n');
            block.push_str(&tojson_string(tool));
        }
        block.push_str(HERMES_INSTRUCTIONS);
        match messages.first() {
            Some(first) if first.role == "system" => out.push(ChatMessage::new("system", format!("{}\n\n{block}", first.content))),
            _ => out.push(ChatMessage::new("system", block)),
        }
    }
    let skip = usize::from(!tools.is_empty() && messages.first().is_some_and(|m| m.role == "system"));
    for m in &messages[skip..] {
        out.push(match m.role.as_str() {
            "assistant" if !m.tool_calls.is_empty() => {
                let mut content = m.content.clone();
                for call in &m.tool_calls {
                    if !content.is_empty() {
                        content.push('\n');
                    }
                    let json = serde_json::json!({"name": call.name, "arguments": call.arguments});
                    content.push_str(&format!("<tool_call>\n{}\n</tool_call>", tojson_string(&json)));
                }
                ChatMessage::new("assistant", content)
            }
            "tool" => ChatMessage::new("user", format!("<tool_response>\n{}\n</tool_response>", m.content)),
            _ => ChatMessage::new(m.role.clone(), m.content.clone()),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat_template::MessageToolCall;

    #[test]
    fn formats_are_read_from_template_sources() {
        assert_eq!(ToolCallFormat::of_template("{{ '<tool_call>' }}"), ToolCallFormat::Hermes);
        assert_eq!(ToolCallFormat::of_template("{{ '[TOOL_CALLS]' }}"), ToolCallFormat::Mistral);
        assert_eq!(ToolCallFormat::of_template("{{ '[TOOL_CALLS]' + name + '[ARGS]' }}"), ToolCallFormat::MistralArgs);
        assert_eq!(ToolCallFormat::of_template("{{ '<|python_tag|>' }}"), ToolCallFormat::Llama3);
        assert_eq!(ToolCallFormat::of_template("{{ tools }}"), ToolCallFormat::Hermes);
    }

    #[test]
    fn calls_and_results_become_plain_turns() {
        let tools = [serde_json::json!({"type": "function", "function": {"name": "f", "parameters": {}}})];
        let mut call = ChatMessage::new("assistant", "");
        call.tool_calls.push(MessageToolCall { id: "c1".into(), name: "f".into(), arguments: serde_json::json!({"x": 1}) });
        let mut result = ChatMessage::new("tool", "42");
        result.tool_call_id = Some("c1".into());
        let out = inline_hermes(&[ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "go"), call, result], &tools);
        assert_eq!(out.len(), 4);
        assert!(out[0].content.starts_with("Be brief.\n\n# Tools\n"), "{}", out[0].content);
        assert!(out[0].content.contains("\n{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {}}}\n</tools>"));
        assert_eq!(out[2].content, "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}\n</tool_call>");
        assert_eq!((out[3].role.as_str(), out[3].content.as_str()), ("user", "<tool_response>\n42\n</tool_response>"));
    }
}
