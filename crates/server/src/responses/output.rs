//! A response's output items, built from the assistant turn's parts as they stream: reasoning,
//! then a message for text, a function call per call, each opened and closed with OpenAI's
//! events in OpenAI's order (`output_item.added`, `content_part.added`, the deltas, `*.done`,
//! `content_part.done`, `output_item.done`). The non-streamed response is built by the same code,
//! so a stream's text deltas always add up to its final `output_text`.

use super::types::{OutputItem, OutputText, ReasoningText, StreamEvent};
use crate::assistant_output::Parts;
use crate::routes::generation::item_id;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Reasoning(usize),
    Message(usize),
}

#[derive(Debug, Default)]
pub struct OutputBuilder {
    items: Vec<OutputItem>,
    open: Option<Open>,
}

impl OutputBuilder {
    /// The events for the next parts of the turn.
    pub fn push(&mut self, parts: Parts) -> Vec<StreamEvent> {
        let mut events = Vec::new();
        if !parts.reasoning.is_empty() {
            let i = self.open_reasoning(&mut events);
            let id = self.items[i].id().to_string();
            if let OutputItem::Reasoning { content, .. } = &mut self.items[i] {
                content[0].text.push_str(&parts.reasoning);
            }
            events.push(StreamEvent::ReasoningDelta { item_id: id, output_index: i, content_index: 0, delta: parts.reasoning });
        }
        if !parts.content.is_empty() {
            let i = self.open_message(&mut events);
            let id = self.items[i].id().to_string();
            if let OutputItem::Message { content, .. } = &mut self.items[i] {
                content[0].text.push_str(&parts.content);
            }
            events.push(StreamEvent::TextDelta { item_id: id, output_index: i, content_index: 0, delta: parts.content, logprobs: Vec::new() });
        }
        for call in parts.calls {
            self.close(&mut events, "completed");
            let (i, id) = (self.items.len(), item_id("fc"));
            let item = OutputItem::FunctionCall { id: id.clone(), call_id: crate::routes::chat::call_id(), name: call.name.clone(), arguments: String::new(), status: "in_progress" };
            events.push(StreamEvent::ItemAdded { output_index: i, item: item.clone() });
            events.push(StreamEvent::ArgumentsDelta { item_id: id.clone(), output_index: i, delta: call.arguments.clone() });
            events.push(StreamEvent::ArgumentsDone { item_id: id, output_index: i, name: call.name, arguments: call.arguments.clone() });
            let OutputItem::FunctionCall { id, call_id, name, .. } = item else { unreachable!("built above") };
            let done = OutputItem::FunctionCall { id, call_id, name, arguments: call.arguments, status: "completed" };
            events.push(StreamEvent::ItemDone { output_index: i, item: done.clone() });
            self.items.push(done);
        }
        events
    }

    /// The end of the turn: the open item closes (`incomplete` when the turn was cut short).
    pub fn finish(&mut self, status: &'static str) -> Vec<StreamEvent> {
        let mut events = Vec::new();
        self.close(&mut events, status);
        events
    }

    pub fn items(&self) -> &[OutputItem] {
        &self.items
    }

    fn open_reasoning(&mut self, events: &mut Vec<StreamEvent>) -> usize {
        if let Some(Open::Reasoning(i)) = self.open {
            return i;
        }
        self.close(events, "completed");
        let i = self.items.len();
        let item = OutputItem::Reasoning { id: item_id("rs"), summary: Vec::new(), content: Vec::new(), status: "in_progress" };
        events.push(StreamEvent::ItemAdded { output_index: i, item: item.clone() });
        let OutputItem::Reasoning { id, summary, status, .. } = item else { unreachable!("built above") };
        self.items.push(OutputItem::Reasoning { id, summary, content: vec![ReasoningText { kind: "reasoning_text", text: String::new() }], status });
        self.open = Some(Open::Reasoning(i));
        i
    }

    fn open_message(&mut self, events: &mut Vec<StreamEvent>) -> usize {
        if let Some(Open::Message(i)) = self.open {
            return i;
        }
        self.close(events, "completed");
        let (i, id) = (self.items.len(), item_id("msg"));
        events.push(StreamEvent::ItemAdded { output_index: i, item: OutputItem::Message { id: id.clone(), status: "in_progress", role: "assistant", content: Vec::new() } });
        events.push(StreamEvent::PartAdded { item_id: id.clone(), output_index: i, content_index: 0, part: OutputText::new(String::new()) });
        self.items.push(OutputItem::Message { id, status: "in_progress", role: "assistant", content: vec![OutputText::new(String::new())] });
        self.open = Some(Open::Message(i));
        i
    }

    fn close(&mut self, events: &mut Vec<StreamEvent>, status: &'static str) {
        let Some(open) = self.open.take() else { return };
        let i = match open {
            Open::Reasoning(i) | Open::Message(i) => i,
        };
        let item = self.items[i].clone().with_status(status);
        let id = item.id().to_string();
        match &item {
            OutputItem::Reasoning { content, .. } => {
                events.push(StreamEvent::ReasoningDone { item_id: id, output_index: i, content_index: 0, text: content[0].text.clone() });
            }
            OutputItem::Message { content, .. } => {
                events.push(StreamEvent::TextDone { item_id: id.clone(), output_index: i, content_index: 0, text: content[0].text.clone(), logprobs: Vec::new() });
                events.push(StreamEvent::PartDone { item_id: id, output_index: i, content_index: 0, part: content[0].clone() });
            }
            OutputItem::FunctionCall { .. } => {}
        }
        events.push(StreamEvent::ItemDone { output_index: i, item: item.clone() });
        self.items[i] = item;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tool_calls::ToolCall;

    fn names(events: &[StreamEvent]) -> Vec<&'static str> {
        events.iter().map(StreamEvent::name).collect()
    }

    #[test]
    fn events_come_in_openais_order_and_add_up_to_the_items() {
        let mut b = OutputBuilder::default();
        let mut events = b.push(Parts { reasoning: "think".into(), ..Parts::default() });
        events.extend(b.push(Parts { content: "Hel".into(), ..Parts::default() }));
        events.extend(b.push(Parts { content: "lo".into(), calls: vec![ToolCall { name: "f".into(), arguments: "{}".into() }], ..Parts::default() }));
        events.extend(b.finish("completed"));
        assert_eq!(
            names(&events),
            [
                "response.output_item.added",
                "response.reasoning_text.delta",
                "response.reasoning_text.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
            ]
        );
        let items = b.items();
        assert_eq!(items.len(), 3);
        assert!(matches!(&items[1], OutputItem::Message { content, status: "completed", .. } if content[0].text == "Hello"));
        assert!(matches!(&items[2], OutputItem::FunctionCall { name, call_id, .. } if name == "f" && call_id.starts_with("call_")));
    }
}
