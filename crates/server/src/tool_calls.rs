//! Tool calls in a model's output, per family format, parsed as the text streams: content passes
//! through, a call's markup is held until the call is complete (then its name and its arguments
//! come out as one event each), and no markup ever reaches the content. Whole and streamed in any
//! chunking, the same calls and content come out.
//!
//! Formats (what the families' chat templates teach the models to write):
//! - [`ToolCallFormat::Hermes`]: `<tool_call>{"name": …, "arguments": {…}}</tool_call>`, one
//!   block per call (Qwen2.5, Qwen3, Hermes, SmolLM3);
//! - [`ToolCallFormat::Llama3`]: the whole output is `{"name": …, "parameters": {…}}` (several
//!   joined by `;`), optionally after `<|python_tag|>`;
//! - [`ToolCallFormat::Mistral`]: `[TOOL_CALLS]` then a JSON array of `{"name", "arguments"}`;
//! - [`ToolCallFormat::MistralArgs`]: `[TOOL_CALLS]name[ARGS]{…}` per call (the same parser
//!   reads both Mistral formats).

pub use rill_model::chat_template::ToolCallFormat;
use serde_json::Value;

use crate::reasoning::partial_suffix;

/// One parsed call: the function's name and its arguments as JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub name: String,
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolEvent {
    Content(String),
    Call(ToolCall),
    /// Markup that did not parse as a call: passed on as content, and counted.
    Malformed(String),
}

const HERMES_OPEN: &str = "<tool_call>";
const HERMES_CLOSE: &str = "</tool_call>";
const MISTRAL_OPEN: &str = "[TOOL_CALLS]";

/// What the text after a `[TOOL_CALLS]` marker turned out to be, so far.
enum MistralStep {
    /// Not decided yet: more text is needed.
    Wait,
    Calls(Vec<ToolCall>),
    Malformed,
}
const MISTRAL_ARGS: &str = "[ARGS]";
const MISTRAL_CALL_ID: &str = "[CALL_ID]";
const PYTHON_TAG: &str = "<|python_tag|>";

/// One choice's output, parsed as it streams.
#[derive(Debug, Clone)]
pub struct ToolCallParser {
    format: ToolCallFormat,
    /// Text not yet decided (a possible marker start, or a call in progress).
    held: String,
    inside: bool,
    /// Hermes: a block just closed, so the newlines a template puts between blocks (which may
    /// arrive in later deltas) are not content.
    after_block: bool,
    /// Llama 3: whether the output started as a call (`None` until its first non-space char).
    llama_call: Option<bool>,
}

impl ToolCallParser {
    pub fn new(format: ToolCallFormat) -> ToolCallParser {
        ToolCallParser { format, held: String::new(), inside: false, after_block: false, llama_call: None }
    }

    pub fn push(&mut self, text: &str) -> Vec<ToolEvent> {
        self.held.push_str(text);
        match self.format {
            ToolCallFormat::Hermes => self.hermes(false),
            ToolCallFormat::Mistral | ToolCallFormat::MistralArgs => self.mistral(false),
            ToolCallFormat::Llama3 => self.llama3(false),
        }
    }

    /// The end of the output: whatever is held is decided.
    pub fn finish(&mut self) -> Vec<ToolEvent> {
        match self.format {
            ToolCallFormat::Hermes => self.hermes(true),
            ToolCallFormat::Mistral | ToolCallFormat::MistralArgs => self.mistral(true),
            ToolCallFormat::Llama3 => self.llama3(true),
        }
    }

    fn hermes(&mut self, end: bool) -> Vec<ToolEvent> {
        let mut out = Vec::new();
        loop {
            if self.inside {
                let Some(i) = self.held.find(HERMES_CLOSE) else {
                    if end {
                        let body = std::mem::take(&mut self.held);
                        out.push(call_or_malformed(&body, &format!("{HERMES_OPEN}{body}")));
                    }
                    return out;
                };
                let body: String = self.held.drain(..i + HERMES_CLOSE.len()).collect();
                let json = &body[..i];
                out.push(call_or_malformed(json, &format!("{HERMES_OPEN}{body}")));
                (self.inside, self.after_block) = (false, true);
            } else {
                if self.after_block {
                    let trimmed = self.held.trim_start_matches(['\n', ' ']).len();
                    self.held.drain(..self.held.len() - trimmed);
                    if self.held.is_empty() {
                        return out;
                    }
                    self.after_block = false;
                }
                match self.held.find(HERMES_OPEN) {
                    Some(i) => {
                        let before: String = self.held.drain(..i + HERMES_OPEN.len()).collect();
                        push_content(&mut out, before[..i].trim_end_matches('\n'));
                        self.inside = true;
                    }
                    None => {
                        // A possible marker start, and the newlines that would go with it, wait.
                        let keep = if end { 0 } else { held_back(&self.held, HERMES_OPEN) };
                        let text: String = self.held.drain(..self.held.len() - keep).collect();
                        push_content(&mut out, &text);
                        return out;
                    }
                }
            }
        }
    }

    /// Both of Mistral's formats: `[TOOL_CALLS]` then a JSON array of calls, or
    /// `[TOOL_CALLS]name[CALL_ID]id[ARGS]{…}` once per call (the call id is optional). A call that
    /// cannot parse passes its marker on as content and the text after it is read again as plain
    /// output (a later marker may start a good call): the same however the text was cut.
    fn mistral(&mut self, end: bool) -> Vec<ToolEvent> {
        let mut out = Vec::new();
        loop {
            if !self.inside {
                match self.held.find(MISTRAL_OPEN) {
                    Some(i) => {
                        let before: String = self.held.drain(..i + MISTRAL_OPEN.len()).collect();
                        push_content(&mut out, &before[..i]);
                        self.inside = true;
                    }
                    None => {
                        let keep = if end { 0 } else { partial_suffix(&self.held, MISTRAL_OPEN) };
                        let text: String = self.held.drain(..self.held.len() - keep).collect();
                        push_content(&mut out, &text);
                        return out;
                    }
                }
            }
            match self.mistral_call(end) {
                MistralStep::Wait => return out,
                MistralStep::Calls(calls) => {
                    self.inside = false;
                    out.extend(calls.into_iter().map(ToolEvent::Call));
                }
                MistralStep::Malformed => {
                    self.inside = false;
                    out.push(ToolEvent::Malformed(MISTRAL_OPEN.to_string()));
                }
            }
        }
    }

    /// Reads the call(s) after a `[TOOL_CALLS]` marker from `held`, consuming them when they parse.
    fn mistral_call(&mut self, end: bool) -> MistralStep {
        let body = self.held.trim_start();
        let lead = self.held.len() - body.len();
        if body.is_empty() {
            return if end { MistralStep::Malformed } else { MistralStep::Wait };
        }
        if body.starts_with('[') {
            // The array ends where its JSON does; an empty array is not a call.
            let mut values = serde_json::Deserializer::from_str(body).into_iter::<Vec<Value>>();
            return match values.next() {
                Some(Ok(calls)) => {
                    let used = lead + values.byte_offset();
                    let parsed = (!calls.is_empty()).then(|| calls.iter().map(|c| call_of(c, &["arguments", "parameters"])).collect::<Option<Vec<_>>>()).flatten();
                    match parsed {
                        Some(calls) => {
                            self.held.drain(..used);
                            MistralStep::Calls(calls)
                        }
                        None => MistralStep::Malformed,
                    }
                }
                Some(Err(e)) if e.is_eof() && !end => MistralStep::Wait,
                _ => MistralStep::Malformed,
            };
        }
        // name[CALL_ID]id[ARGS]{…}: the call ends where its JSON object does.
        let Some(a) = self.held.find(MISTRAL_ARGS) else {
            return if end { MistralStep::Malformed } else { MistralStep::Wait };
        };
        let name = self.held[..a].split(MISTRAL_CALL_ID).next().unwrap_or_default().trim().to_string();
        let json_start = a + MISTRAL_ARGS.len();
        let mut values = serde_json::Deserializer::from_str(&self.held[json_start..]).into_iter::<Value>();
        match values.next() {
            Some(Ok(args @ Value::Object(_))) if !name.is_empty() => {
                let used = json_start + values.byte_offset();
                self.held.drain(..used);
                MistralStep::Calls(vec![ToolCall { name, arguments: args.to_string() }])
            }
            Some(Err(e)) if e.is_eof() && !end => MistralStep::Wait,
            None if !end => MistralStep::Wait,
            _ => MistralStep::Malformed,
        }
    }

    fn llama3(&mut self, end: bool) -> Vec<ToolEvent> {
        let mut out = Vec::new();
        if self.llama_call.is_none() {
            let body = self.held.trim_start();
            let body = body.strip_prefix(PYTHON_TAG).unwrap_or(body).trim_start();
            if body.is_empty() || (PYTHON_TAG.starts_with(self.held.trim_start()) && !end) {
                if end {
                    push_content(&mut out, &std::mem::take(&mut self.held));
                }
                return out;
            }
            self.llama_call = Some(body.starts_with('{'));
        }
        if self.llama_call == Some(false) {
            push_content(&mut out, &std::mem::take(&mut self.held));
            return out;
        }
        // A call: the whole output is held and parsed at the end.
        if end {
            let raw = std::mem::take(&mut self.held);
            let body = raw.trim_start();
            let body = body.strip_prefix(PYTHON_TAG).unwrap_or(body);
            let calls: Option<Vec<ToolCall>> = body
                .split(';')
                .filter(|s| !s.trim().is_empty())
                .map(|s| serde_json::from_str::<Value>(s.trim()).ok().and_then(|v| call_of(&v, &["parameters", "arguments"])))
                .collect();
            match calls {
                Some(calls) if !calls.is_empty() => out.extend(calls.into_iter().map(ToolCall::into)),
                // Plain JSON that is not a call is the answer.
                _ if serde_json::from_str::<Value>(body.trim()).is_ok() => push_content(&mut out, &raw),
                _ => out.push(ToolEvent::Malformed(raw)),
            }
        }
        out
    }
}

impl From<ToolCall> for ToolEvent {
    fn from(c: ToolCall) -> ToolEvent {
        ToolEvent::Call(c)
    }
}

fn push_content(out: &mut Vec<ToolEvent>, text: &str) {
    if !text.is_empty() {
        out.push(ToolEvent::Content(text.to_string()));
    }
}

/// `{"name": …, <args key>: {…}}` as a call (arguments re-serialized compactly).
fn call_of(v: &Value, arg_keys: &[&str]) -> Option<ToolCall> {
    let name = v.get("name")?.as_str()?.to_string();
    let args = arg_keys.iter().find_map(|k| v.get(*k)).cloned().unwrap_or(Value::Object(Default::default()));
    // Some models write the arguments as a JSON string.
    let args = match args {
        Value::String(s) => serde_json::from_str(&s).ok()?,
        other => other,
    };
    args.is_object().then(|| ToolCall { name, arguments: args.to_string() })
}

fn call_or_malformed(json: &str, raw: &str) -> ToolEvent {
    match serde_json::from_str::<Value>(json.trim()).ok().and_then(|v| call_of(&v, &["arguments", "parameters"])) {
        Some(c) => ToolEvent::Call(c),
        None => ToolEvent::Malformed(raw.to_string()),
    }
}

/// What to hold back of `s`: a possible start of `marker` and the newlines before it.
fn held_back(s: &str, marker: &str) -> usize {
    let partial = partial_suffix(s, marker);
    let rest = &s[..s.len() - partial];
    partial + (rest.len() - rest.trim_end_matches('\n').len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: &str) -> ToolEvent {
        ToolEvent::Call(ToolCall { name: name.into(), arguments: args.into() })
    }

    /// Adjacent content events merged (chunking may split content differently).
    fn merged(events: Vec<ToolEvent>) -> Vec<ToolEvent> {
        let mut out: Vec<ToolEvent> = Vec::new();
        for e in events {
            match (out.last_mut(), e) {
                (Some(ToolEvent::Content(a)), ToolEvent::Content(b)) => a.push_str(&b),
                (_, e) => out.push(e),
            }
        }
        out
    }

    /// Whole and in 50 seeded chunkings, the same events.
    fn check(format: ToolCallFormat, text: &str, want: &[ToolEvent]) {
        let run = |chunks: &mut dyn Iterator<Item = &str>| {
            let mut p = ToolCallParser::new(format);
            let mut events: Vec<ToolEvent> = chunks.flat_map(|c| p.push(c)).collect();
            events.extend(p.finish());
            merged(events)
        };
        assert_eq!(run(&mut std::iter::once(text)), want, "whole {text:?}");
        for seed in 0..50u64 {
            let (mut pieces, mut i, mut state) = (Vec::new(), 0, seed);
            while i < text.len() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let mut j = (i + 1 + (state >> 59) as usize % 8).min(text.len());
                while !text.is_char_boundary(j) {
                    j += 1;
                }
                pieces.push(&text[i..j]);
                i = j;
            }
            assert_eq!(run(&mut pieces.into_iter()), want, "seed {seed}: {text:?}");
        }
    }

    #[test]
    fn hermes_blocks_parse_streamed_and_whole() {
        // As Qwen3's template teaches: content, then one block per call.
        let out = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"tz\": \"CET\"}}\n</tool_call>";
        check(ToolCallFormat::Hermes, out, &[ToolEvent::Content("Let me check.".into()), call("get_weather", r#"{"city":"Paris"}"#), call("get_time", r#"{"tz":"CET"}"#)]);
        check(ToolCallFormat::Hermes, "No tools needed: 2 < 3.", &[ToolEvent::Content("No tools needed: 2 < 3.".into())]);
        // Broken JSON is passed on as content, marked malformed.
        let bad = "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": }\n</tool_call>";
        check(ToolCallFormat::Hermes, bad, &[ToolEvent::Malformed(bad.into())]);
        // Found by the fuzzer: the newlines after a block are dropped however they arrive.
        check(ToolCallFormat::Hermes, &format!("{bad}\n\nmore"), &[ToolEvent::Malformed(bad.into()), ToolEvent::Content("more".into())]);
    }

    #[test]
    fn llama3_and_mistral_calls_parse_streamed_and_whole() {
        check(ToolCallFormat::Llama3, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}", &[call("get_weather", r#"{"city":"Rome"}"#)]);
        check(ToolCallFormat::Llama3, "<|python_tag|>{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"parameters\": {\"k\": 1}}", &[call("a", "{}"), call("b", r#"{"k":1}"#)]);
        check(ToolCallFormat::Llama3, "The weather is fine.", &[ToolEvent::Content("The weather is fine.".into())]);
        check(ToolCallFormat::Llama3, "{\"answer\": 42}", &[ToolEvent::Content("{\"answer\": 42}".into())]);
        check(ToolCallFormat::Mistral, "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}]", &[call("get_weather", r#"{"city":"Oslo"}"#)]);
        check(ToolCallFormat::Mistral, "Sure.[TOOL_CALLS][{\"name\": \"f\", \"arguments\": \"{\\\"a\\\": 1}\"}]", &[ToolEvent::Content("Sure.".into()), call("f", r#"{"a":1}"#)]);
        let args = "[TOOL_CALLS]get_weather[CALL_ID]aB3dE5gH9[ARGS]{\"city\": \"Oslo\"}[TOOL_CALLS]get_time[ARGS]{}";
        check(ToolCallFormat::MistralArgs, args, &[call("get_weather", r#"{"city":"Oslo"}"#), call("get_time", "{}")]);
        let cut = "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Os";
        check(ToolCallFormat::MistralArgs, cut, &[ToolEvent::Malformed("[TOOL_CALLS]".into()), ToolEvent::Content(cut["[TOOL_CALLS]".len()..].into())]);
        // Found by the fuzzer: an empty array, text after a complete one, and a broken array
        // before a good one parse the same whole and streamed.
        check(ToolCallFormat::Mistral, "[TOOL_CALLS][]x", &[ToolEvent::Malformed("[TOOL_CALLS]".into()), ToolEvent::Content("[]x".into())]);
        let broken_then_good = "[TOOL_CALLS][\"a\u{1}\"][TOOL_CALLS][{\"name\": \"g\", \"arguments\": {}}]";
        check(ToolCallFormat::Mistral, broken_then_good, &[ToolEvent::Malformed("[TOOL_CALLS]".into()), ToolEvent::Content("[\"a\u{1}\"]".into()), call("g", "{}")]);
        check(ToolCallFormat::Mistral, "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {}}] done", &[call("f", "{}"), ToolEvent::Content(" done".into())]);
    }
}
