//! Token text → id, as llama.cpp's `token_to_id` (the last of duplicate texts wins).

use std::collections::HashMap;

#[derive(Debug, Default)]
pub(crate) struct TokenIndex {
    ids: HashMap<Box<str>, u32>,
}

impl TokenIndex {
    pub(crate) fn new(tokens: &[String]) -> TokenIndex {
        TokenIndex { ids: tokens.iter().enumerate().map(|(id, t)| (t.as_str().into(), id as u32)).collect() }
    }

    pub(crate) fn get(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }
}
