//! The assistant turn as Anthropic content blocks, built from its parts as they stream: a
//! `thinking` block, `text` blocks, a `tool_use` block per call, each opened with
//! `content_block_start`, grown with `content_block_delta`s and closed with `content_block_stop`.
//! The non-streamed reply is built by the same code, so a stream's deltas add up to it.

use serde_json::Value;

use super::types::{BlockDelta, ContentBlock, StreamEvent};
use crate::assistant_output::Parts;
use crate::routes::generation::item_id;

#[derive(Debug, Default)]
pub struct BlockBuilder {
    blocks: Vec<ContentBlock>,
    /// The block still growing (thinking or text).
    open: Option<usize>,
}

impl BlockBuilder {
    pub fn push(&mut self, parts: Parts) -> Vec<StreamEvent> {
        let mut events = Vec::new();
        if !parts.reasoning.is_empty() {
            let i = self.open_block(&mut events, |b| matches!(b, ContentBlock::Thinking { .. }), || ContentBlock::Thinking { thinking: String::new(), signature: String::new() });
            if let ContentBlock::Thinking { thinking, .. } = &mut self.blocks[i] {
                thinking.push_str(&parts.reasoning);
            }
            events.push(StreamEvent::ContentBlockDelta { index: i, delta: BlockDelta::ThinkingDelta { thinking: parts.reasoning } });
        }
        if !parts.content.is_empty() {
            let i = self.open_block(&mut events, |b| matches!(b, ContentBlock::Text { .. }), || ContentBlock::Text { text: String::new() });
            if let ContentBlock::Text { text } = &mut self.blocks[i] {
                text.push_str(&parts.content);
            }
            events.push(StreamEvent::ContentBlockDelta { index: i, delta: BlockDelta::TextDelta { text: parts.content } });
        }
        for call in parts.calls {
            self.close(&mut events);
            let (i, id) = (self.blocks.len(), item_id("toolu"));
            let input: Value = serde_json::from_str(&call.arguments).unwrap_or_else(|_| Value::Object(Default::default()));
            events.push(StreamEvent::ContentBlockStart { index: i, content_block: ContentBlock::ToolUse { id: id.clone(), name: call.name.clone(), input: Value::Object(Default::default()) } });
            events.push(StreamEvent::ContentBlockDelta { index: i, delta: BlockDelta::InputJsonDelta { partial_json: call.arguments } });
            events.push(StreamEvent::ContentBlockStop { index: i });
            self.blocks.push(ContentBlock::ToolUse { id, name: call.name, input });
        }
        events
    }

    pub fn finish(&mut self) -> Vec<StreamEvent> {
        let mut events = Vec::new();
        self.close(&mut events);
        events
    }

    pub fn blocks(&self) -> &[ContentBlock] {
        &self.blocks
    }

    pub fn has_tool_use(&self) -> bool {
        self.blocks.iter().any(|b| matches!(b, ContentBlock::ToolUse { .. }))
    }

    fn open_block(&mut self, events: &mut Vec<StreamEvent>, is_kind: impl Fn(&ContentBlock) -> bool, empty: impl Fn() -> ContentBlock) -> usize {
        if let Some(i) = self.open.filter(|&i| is_kind(&self.blocks[i])) {
            return i;
        }
        self.close(events);
        let i = self.blocks.len();
        events.push(StreamEvent::ContentBlockStart { index: i, content_block: empty() });
        self.blocks.push(empty());
        self.open = Some(i);
        i
    }

    fn close(&mut self, events: &mut Vec<StreamEvent>) {
        if let Some(i) = self.open.take() {
            events.push(StreamEvent::ContentBlockStop { index: i });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tool_calls::ToolCall;

    #[test]
    fn blocks_open_grow_and_close_in_order() {
        let mut b = BlockBuilder::default();
        let mut events = b.push(Parts { reasoning: "hm".into(), content: "Hi".into(), ..Parts::default() });
        events.extend(b.push(Parts { content: " there".into(), calls: vec![ToolCall { name: "w".into(), arguments: r#"{"c":1}"#.into() }], ..Parts::default() }));
        events.extend(b.finish());
        let names: Vec<_> = events.iter().map(StreamEvent::name).collect();
        assert_eq!(
            names,
            [
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop"
            ]
        );
        assert_eq!(b.blocks()[1], ContentBlock::Text { text: "Hi there".into() });
        assert!(matches!(&b.blocks()[2], ContentBlock::ToolUse { name, input, id } if name == "w" && input["c"] == 1 && id.starts_with("toolu_")));
        assert!(b.has_tool_use());
    }
}
