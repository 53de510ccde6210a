//! Server-sent events as they arrive off the wire: bytes split anywhere (mid-line, mid-character)
//! become whole `data:` payloads, and each payload becomes what the benchmark needs from it.

use serde_json::Value;

/// A line longer than this without a newline is not a stream we can read.
const MAX_LINE_BYTES: usize = 8 << 20;

/// Splits a byte stream into SSE events and yields each event's `data` (several `data:` lines
/// of one event are joined with `\n`, as the SSE spec says). Comments (`:`) and other fields
/// (`event:`, `id:`, `retry:`) are skipped.
#[derive(Default)]
pub struct SseParser {
    /// Bytes of an unfinished line.
    buf: Vec<u8>,
    /// `data` of the event being read (its blank line has not come yet).
    data: Option<String>,
}

impl SseParser {
    /// Feeds the next bytes of the body; pushes the payload of every event they complete.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<String>) -> Result<(), String> {
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(end) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let line = &self.buf[start..start + end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let line = String::from_utf8_lossy(line).into_owned();
            self.line(&line, out);
            start += end + 1;
        }
        self.buf.drain(..start);
        if self.buf.len() > MAX_LINE_BYTES {
            return Err(format!("an SSE line is longer than {MAX_LINE_BYTES} bytes"));
        }
        Ok(())
    }

    /// The end of the body: an event missing its final blank line still counts.
    pub fn finish(&mut self, out: &mut Vec<String>) {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            let line = String::from_utf8_lossy(rest.strip_suffix(b"\r").unwrap_or(&rest)).into_owned();
            self.line(&line, out);
        }
        out.extend(self.data.take());
    }

    fn line(&mut self, line: &str, out: &mut Vec<String>) {
        if line.is_empty() {
            out.extend(self.data.take());
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        if field != "data" {
            return;
        }
        let value = value.strip_prefix(' ').unwrap_or(value);
        match &mut self.data {
            Some(d) => {
                d.push('\n');
                d.push_str(value);
            }
            None => self.data = Some(value.to_string()),
        }
    }
}

/// Token counts a server reported (`usage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
}

impl Usage {
    pub fn from_json(v: &Value) -> Option<Usage> {
        let u = v.get("usage").filter(|u| u.is_object())?;
        Some(Usage { prompt_tokens: u.get("prompt_tokens").and_then(Value::as_u64), completion_tokens: u.get("completion_tokens").and_then(Value::as_u64) })
    }
}

/// What one streamed payload means to the benchmark.
#[derive(Debug, PartialEq)]
pub enum StreamEvent {
    /// `[DONE]`: the stream is complete.
    Done,
    /// `{"error": ...}` (or a payload that is not JSON): the request failed.
    Error(String),
    /// A chunk: whether its first choice carries text (`text` for completions, `delta.content`
    /// for chat), and the usage it reports, if any.
    Chunk { has_text: bool, usage: Option<Usage> },
}

pub fn parse_event(payload: &str) -> StreamEvent {
    if payload.trim() == "[DONE]" {
        return StreamEvent::Done;
    }
    let v: Value = match serde_json::from_str(payload) {
        Ok(v) => v,
        Err(e) => return StreamEvent::Error(format!("malformed stream chunk: {e}")),
    };
    if let Some(err) = v.get("error") {
        return StreamEvent::Error(error_message(err));
    }
    let has_text = v
        .get("choices")
        .and_then(Value::as_array)
        .map(|choices| choices.iter().any(|c| !choice_text(c).is_empty()))
        .unwrap_or(false);
    StreamEvent::Chunk { has_text, usage: Usage::from_json(&v) }
}

/// The text of a choice in any of the shapes: completion (`text`), chat chunk
/// (`delta.content`), chat response (`message.content`).
pub fn choice_text(choice: &Value) -> &str {
    choice
        .get("text")
        .or_else(|| choice.get("delta").and_then(|d| d.get("content")))
        .or_else(|| choice.get("message").and_then(|m| m.get("content")))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// A short message from an OpenAI-shaped error value (`{"message": ...}` or a bare string).
pub fn error_message(err: &Value) -> String {
    let msg = match err.get("message").and_then(Value::as_str) {
        Some(m) => m.to_string(),
        None => match err.as_str() {
            Some(s) => s.to_string(),
            None => err.to_string(),
        },
    };
    truncate(&msg, 160)
}

/// At most `max` characters, marked when cut.
pub fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(parts: &[&[u8]]) -> Vec<String> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for part in parts {
            p.push(part, &mut out).unwrap();
        }
        p.finish(&mut out);
        out
    }

    #[test]
    fn whole_events() {
        assert_eq!(feed(&[b"data: {\"a\":1}\n\ndata: [DONE]\n\n"]), vec!["{\"a\":1}", "[DONE]"]);
    }

    #[test]
    fn events_split_at_every_byte_give_the_same_payloads() {
        let body = "data: {\"text\":\"h\u{e9}llo\"}\r\n\r\n: keep-alive\n\nevent: x\ndata: one\ndata: two\n\ndata:[DONE]\n\n";
        let whole = feed(&[body.as_bytes()]);
        assert_eq!(whole, vec!["{\"text\":\"h\u{e9}llo\"}", "one\ntwo", "[DONE]"]);
        for cut in 0..body.len() {
            let (a, b) = body.as_bytes().split_at(cut);
            assert_eq!(feed(&[a, b]), whole, "split at {cut}");
        }
        let bytes: Vec<&[u8]> = body.as_bytes().chunks(1).collect();
        assert_eq!(feed(&bytes), whole);
    }

    #[test]
    fn a_last_event_without_its_blank_line_is_kept() {
        assert_eq!(feed(&[b"data: a\n\ndata: b"]), vec!["a", "b"]);
        assert_eq!(feed(&[b"data: a\n"]), vec!["a"]);
        assert!(feed(&[b": only a comment\n\n"]).is_empty());
    }

    #[test]
    fn overlong_lines_are_an_error_not_unbounded_memory() {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        assert!(p.push(&vec![b'x'; MAX_LINE_BYTES + 1], &mut out).is_err());
    }

    #[test]
    fn events_are_classified() {
        assert_eq!(parse_event("[DONE]"), StreamEvent::Done);
        assert_eq!(parse_event(r#"{"choices":[{"index":0,"text":"Hi"}]}"#), StreamEvent::Chunk { has_text: true, usage: None });
        assert_eq!(parse_event(r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#), StreamEvent::Chunk { has_text: false, usage: None });
        assert_eq!(parse_event(r#"{"choices":[{"index":0,"delta":{"content":" x"}}]}"#), StreamEvent::Chunk { has_text: true, usage: None });
        assert_eq!(
            parse_event(r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":8,"total_tokens":20}}"#),
            StreamEvent::Chunk { has_text: false, usage: Some(Usage { prompt_tokens: Some(12), completion_tokens: Some(8) }) }
        );
        assert_eq!(parse_event(r#"{"choices":[{"text":"a"}],"usage":null}"#), StreamEvent::Chunk { has_text: true, usage: None });
        assert_eq!(parse_event(r#"{"error":{"message":"boom","type":"server_error"}}"#), StreamEvent::Error("boom".into()));
        assert!(matches!(parse_event("{not json"), StreamEvent::Error(m) if m.starts_with("malformed")));
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("h\u{e9}llo", 2), "h\u{e9}…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
