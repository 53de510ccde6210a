//! Arbitrary model output through each tool-call format's streaming parser: whole, and cut into
//! pieces where the input's first bytes say. Nothing may panic, and the calls and the content
//! (concatenated) must be the same however the text was cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill_model::chat_template::ToolCallFormat;
use rill_server::tool_calls::{ToolCallParser, ToolEvent};

fn run(format: ToolCallFormat, pieces: &[&str]) -> (String, Vec<(String, String)>) {
    let mut parser = ToolCallParser::new(format);
    let mut events: Vec<ToolEvent> = pieces.iter().flat_map(|p| parser.push(p)).collect();
    events.extend(parser.finish());
    let (mut content, mut calls) = (String::new(), Vec::new());
    for e in events {
        match e {
            ToolEvent::Content(t) | ToolEvent::Malformed(t) => content.push_str(&t),
            ToolEvent::Call(c) => calls.push((c.name, c.arguments)),
        }
    }
    (content, calls)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let step = usize::from(cut % 7) + 1;
    let mut pieces = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let mut j = (i + step).min(text.len());
        while !text.is_char_boundary(j) {
            j += 1;
        }
        pieces.push(&text[i..j]);
        i = j;
    }
    for format in [ToolCallFormat::Hermes, ToolCallFormat::Llama3, ToolCallFormat::Mistral, ToolCallFormat::MistralArgs] {
        assert_eq!(run(format, &[text]), run(format, &pieces), "{format:?} {text:?} cut every {step}");
    }
});
