//! Stored responses (`store: true`, OpenAI's default): the response object for `GET`, and the
//! conversation it ended (without its instructions, as OpenAI does not carry them over) for a
//! later request's `previous_response_id`. In memory, at most `capacity` of them, the oldest
//! evicted first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use rill_model::chat_template::ChatMessage;

use super::types::ResponseObject;

/// How many responses are kept unless configured otherwise.
pub const DEFAULT_CAPACITY: usize = 1024;

#[derive(Debug)]
pub struct Stored {
    pub response: ResponseObject,
    /// Every turn up to and including this response's output.
    pub history: Vec<ChatMessage>,
}

#[derive(Debug)]
pub struct ResponseStore {
    capacity: usize,
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    by_id: HashMap<String, Arc<Stored>>,
    /// Insertion order; ids already deleted are skipped when evicting.
    order: VecDeque<String>,
}

impl Default for ResponseStore {
    fn default() -> ResponseStore {
        ResponseStore::new(DEFAULT_CAPACITY)
    }
}

impl ResponseStore {
    pub fn new(capacity: usize) -> ResponseStore {
        ResponseStore { capacity, inner: Mutex::new(Entries::default()) }
    }

    pub fn insert(&self, stored: Stored) {
        if self.capacity == 0 {
            return;
        }
        let mut e = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let id = stored.response.id.clone();
        e.by_id.insert(id.clone(), Arc::new(stored));
        e.order.push_back(id);
        while e.by_id.len() > self.capacity {
            let Some(oldest) = e.order.pop_front() else { break };
            e.by_id.remove(&oldest);
        }
        // Deleted ids linger in `order` only until they reach the front; bound them too.
        if e.order.len() > 2 * self.capacity {
            let live: VecDeque<String> = e.order.iter().filter(|id| e.by_id.contains_key(*id)).cloned().collect();
            e.order = live;
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<Stored>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).by_id.get(id).cloned()
    }

    pub fn remove(&self, id: &str) -> bool {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).by_id.remove(id).is_some()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::responses::types::TextConfig;

    fn response(id: &str) -> Stored {
        let response = ResponseObject {
            id: id.into(),
            object: "response",
            created_at: 0,
            status: "completed",
            completed_at: None,
            error: None,
            incomplete_details: None,
            instructions: None,
            max_output_tokens: None,
            model: "m".into(),
            output: Vec::new(),
            parallel_tool_calls: true,
            previous_response_id: None,
            store: true,
            temperature: None,
            top_p: None,
            text: TextConfig::default(),
            tool_choice: serde_json::json!("auto"),
            tools: Vec::new(),
            truncation: "disabled",
            usage: None,
            metadata: Default::default(),
            user: None,
        };
        Stored { response, history: Vec::new() }
    }

    #[test]
    fn the_oldest_is_evicted_first_and_deletes_free_room() {
        let store = ResponseStore::new(2);
        store.insert(response("a"));
        store.insert(response("b"));
        assert!(store.remove("a"));
        store.insert(response("c"));
        assert_eq!((store.get("b").is_some(), store.get("c").is_some(), store.len()), (true, true, 2));
        store.insert(response("d"));
        assert!(store.get("b").is_none(), "oldest evicted");
        assert!(!store.remove("b"));
        for i in 0..100 {
            store.insert(response(&i.to_string()));
            store.remove(&i.to_string());
        }
        assert!(store.inner.lock().unwrap().order.len() <= 4);
    }
}
