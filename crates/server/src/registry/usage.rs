//! Usage accounting: requests and tokens (prompt, completion, cached) per model, version and
//! API key, counted when each request's output ends — a stream the client dropped counts what
//! was generated before it left. Kept for the life of the process (a version that is unloaded
//! keeps its row), in `/metrics` and `GET /admin/usage`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use metrics::counter;
use serde::Serialize;

pub const USAGE_REQUESTS: &str = "rill_usage_requests_total";
pub const USAGE_TOKENS: &str = "rill_usage_tokens_total";
/// The key column of requests made without a key (an open server).
pub const NO_KEY: &str = "anonymous";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct UsageKey {
    pub model: String,
    pub version: String,
    pub key: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UsageTotals {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
}

impl UsageTotals {
    fn add(&mut self, other: &UsageTotals) {
        self.requests += other.requests;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cached_tokens += other.cached_tokens;
    }
}

#[derive(Debug, Default)]
pub struct UsageLedger {
    rows: Mutex<BTreeMap<UsageKey, UsageTotals>>,
}

impl UsageLedger {
    /// One request's usage.
    pub fn record(&self, model: &str, version: &str, key: Option<&str>, usage: &rill_engine::Usage) {
        let key = key.unwrap_or(NO_KEY);
        let this = UsageTotals { requests: 1, prompt_tokens: usage.prompt_tokens as u64, completion_tokens: usage.completion_tokens as u64, cached_tokens: usage.cached_tokens as u64 };
        let row = UsageKey { model: model.to_string(), version: version.to_string(), key: key.to_string() };
        self.rows.lock().unwrap_or_else(|e| e.into_inner()).entry(row).or_default().add(&this);
        let labels = [("model", model.to_string()), ("version", version.to_string()), ("key", key.to_string())];
        counter!(USAGE_REQUESTS, &labels).increment(1);
        for (kind, n) in [("prompt", this.prompt_tokens), ("completion", this.completion_tokens), ("cached", this.cached_tokens)] {
            let mut labels = labels.to_vec();
            labels.push(("kind", kind.to_string()));
            counter!(USAGE_TOKENS, &labels).increment(n);
        }
    }

    /// Rows matching the filters (each `None` matches all), and their sum.
    pub fn query(&self, key: Option<&str>, model: Option<&str>) -> (Vec<(UsageKey, UsageTotals)>, UsageTotals) {
        let rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        let matching: Vec<(UsageKey, UsageTotals)> =
            rows.iter().filter(|(k, _)| key.is_none_or(|f| k.key == f) && model.is_none_or(|f| k.model == f)).map(|(k, t)| (k.clone(), *t)).collect();
        let mut total = UsageTotals::default();
        matching.iter().for_each(|(_, t)| total.add(t));
        (matching, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_add_up_and_filter() {
        let ledger = UsageLedger::default();
        let u = |p, c, k| rill_engine::Usage { prompt_tokens: p, completion_tokens: c, cached_tokens: k };
        ledger.record("chat", "v1", Some("web"), &u(10, 5, 0));
        ledger.record("chat", "v1", Some("web"), &u(7, 3, 4));
        ledger.record("chat", "v2", None, &u(1, 1, 0));
        ledger.record("code", "default", Some("web"), &u(2, 2, 0));
        let (rows, total) = ledger.query(Some("web"), Some("chat"));
        assert_eq!(rows.len(), 1);
        assert_eq!(total, UsageTotals { requests: 2, prompt_tokens: 17, completion_tokens: 8, cached_tokens: 4 });
        let (rows, total) = ledger.query(None, None);
        assert_eq!((rows.len(), total.requests, total.prompt_tokens), (3, 4, 20));
        assert_eq!(ledger.query(Some(NO_KEY), None).0[0].0.version, "v2");
    }
}
