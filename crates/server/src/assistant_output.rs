//! One choice's generated text as an assistant turn: a thinking model's `<think>` span apart as
//! reasoning, then, where the request has tools, the calls parsed out of the answer, the rest
//! content. The same chain runs over whole text and over streamed deltas, so a stream
//! reassembles to the non-streamed message.

use metrics::counter;
use rill_model::chat_template::ToolCallFormat;

use crate::reasoning::ReasoningSplitter;
use crate::tool_calls::{ToolCall, ToolCallParser, ToolEvent};

/// Tool-call markup the model wrote that did not parse (returned as content), per model.
pub const TOOL_CALL_PARSE_FAILURES: &str = "rill_tool_call_parse_failures_total";

/// What a piece of the text turned out to be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parts {
    pub reasoning: String,
    pub content: String,
    pub calls: Vec<ToolCall>,
}

impl Parts {
    pub fn is_empty(&self) -> bool {
        self.reasoning.is_empty() && self.content.is_empty() && self.calls.is_empty()
    }

    fn append(&mut self, other: Parts) {
        self.reasoning.push_str(&other.reasoning);
        self.content.push_str(&other.content);
        self.calls.extend(other.calls);
    }
}

/// The tools part of a request, as far as parsing its output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolParsing {
    pub format: ToolCallFormat,
    /// Several calls may be returned; otherwise only the first is.
    pub parallel: bool,
}

#[derive(Debug, Clone)]
pub struct AssistantOutput {
    model: String,
    reasoning: Option<ReasoningSplitter>,
    tools: Option<ToolCallParser>,
    parallel: bool,
    /// Calls returned so far.
    pub calls: usize,
}

impl AssistantOutput {
    pub fn new(model: &str, reasoning: Option<ReasoningSplitter>, tools: Option<ToolParsing>) -> AssistantOutput {
        AssistantOutput {
            model: model.to_string(),
            reasoning,
            tools: tools.map(|t| ToolCallParser::new(t.format)),
            parallel: tools.is_none_or(|t| t.parallel),
            calls: 0,
        }
    }

    /// The next delta of text.
    pub fn push(&mut self, text: &str) -> Parts {
        let (reasoning, content) = match &mut self.reasoning {
            Some(s) => Self::split(s.push(text)),
            None => (String::new(), text.to_string()),
        };
        Parts { reasoning, ..self.parse(content, false) }
    }

    /// The end of the choice: whatever was held back.
    pub fn finish(&mut self) -> Parts {
        let (reasoning, content) = self.reasoning.as_mut().map_or_else(Default::default, |s| Self::split(s.finish()));
        Parts { reasoning, ..self.parse(content, true) }
    }

    fn split(split: crate::reasoning::Split) -> (String, String) {
        (split.reasoning, split.content)
    }

    /// The whole text at once.
    pub fn whole(mut self, text: &str) -> Parts {
        let mut parts = self.push(text);
        parts.append(self.finish());
        parts
    }

    /// `content` through the tool-call parser (moved through untouched without tools); `end`
    /// decides whatever the parser still holds.
    fn parse(&mut self, content: String, end: bool) -> Parts {
        let mut parts = Parts::default();
        let Some(parser) = &mut self.tools else {
            parts.content = content;
            return parts;
        };
        let mut events = parser.push(&content);
        if end {
            events.extend(parser.finish());
        }
        for event in events {
            match event {
                ToolEvent::Content(text) => parts.content.push_str(&text),
                ToolEvent::Call(call) => {
                    if self.parallel || self.calls == 0 {
                        self.calls += 1;
                        parts.calls.push(call);
                    }
                }
                ToolEvent::Malformed(text) => {
                    counter!(TOOL_CALL_PARSE_FAILURES, "model" => self.model.clone()).increment(1);
                    parts.content.push_str(&text);
                }
            }
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reasoning::ReasoningMarkers;

    #[test]
    fn reasoning_then_calls_then_content() {
        let reasoning = ReasoningSplitter::new(ReasoningMarkers::of(|_| true).unwrap(), false);
        let tools = ToolParsing { format: ToolCallFormat::Hermes, parallel: true };
        let text = "<think>\nNeed the weather.\n</think>\n\n<tool_call>\n{\"name\": \"w\", \"arguments\": {\"c\": \"P\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"t\", \"arguments\": {}}\n</tool_call>";
        let whole = AssistantOutput::new("m", Some(reasoning.clone()), Some(tools)).whole(text);
        assert_eq!(whole.reasoning, "\nNeed the weather.\n");
        assert_eq!(whole.content, "");
        assert_eq!(whole.calls.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["w", "t"]);
        // Streamed a byte at a time: the same parts.
        let mut out = AssistantOutput::new("m", Some(reasoning.clone()), Some(tools));
        let mut streamed = Parts::default();
        for (i, _) in text.char_indices() {
            streamed.append(out.push(&text[i..i + text[i..].chars().next().unwrap().len_utf8()]));
        }
        streamed.append(out.finish());
        assert_eq!(streamed, whole);
        // One call only, without parallel calls.
        let single = AssistantOutput::new("m", Some(reasoning), Some(ToolParsing { parallel: false, ..tools })).whole(text);
        assert_eq!(single.calls.len(), 1);
    }

    /// The call turn each real template renders (`tests/fixtures/chat_template_tools.json`,
    /// transformers' rendering of Qwen 2.5/3, Hermes 3, Llama 3.1-3.3, Mistral Nemo, Mistral Small
    /// 3.2 and Devstral templates) parses back to that call, in the format rill reads from the
    /// template, whole and streamed in 50 random chunkings, with no markup left in the content.
    #[test]
    fn every_templates_call_turn_parses_back_to_the_call() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/chat_template_tools.json");
        let fixture: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let templates = fixture["templates"].as_object().unwrap();
        assert!(templates.len() >= 10);
        for (name, t) in templates {
            let format = ToolCallFormat::of_template(t["source"].as_str().unwrap());
            let turn = t["call_turn"].as_str().unwrap();
            let new = || AssistantOutput::new("m", Some(ReasoningSplitter::new(ReasoningMarkers::of(|_| true).unwrap(), false)), Some(ToolParsing { format, parallel: true }));
            let whole = new().whole(turn);
            assert_eq!((whole.content.as_str(), whole.calls.len()), ("", 1), "{name} ({format:?}): {turn:?}");
            assert_eq!(whole.calls[0], ToolCall { name: "get_weather".into(), arguments: r#"{"city":"Paris","days":2}"#.into() }, "{name}");
            for seed in 0..50u64 {
                let (mut out, mut parts, mut i, mut state) = (new(), Parts::default(), 0, seed);
                while i < turn.len() {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let mut j = (i + 1 + (state >> 59) as usize % 8).min(turn.len());
                    while !turn.is_char_boundary(j) {
                        j += 1;
                    }
                    parts.append(out.push(&turn[i..j]));
                    i = j;
                }
                parts.append(out.finish());
                assert_eq!(parts, whole, "{name}, seed {seed}");
            }
        }
    }
}
