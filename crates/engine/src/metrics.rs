//! Engine metrics through the `metrics` facade, recorded once per step (never per token). Names
//! are constants so the server's exporter and dashboards agree with the engine.

use std::time::Duration;

use crate::scheduler::{Schedule, Scheduler};

pub const RUNNING: &str = "rill_engine_running_sequences";
pub const WAITING: &str = "rill_engine_waiting_sequences";
pub const KV_BLOCKS_USED: &str = "rill_engine_kv_blocks_used";
pub const KV_BLOCKS_TOTAL: &str = "rill_engine_kv_blocks_total";
pub const PREFIX_QUERIED_TOKENS: &str = "rill_engine_prefix_cache_queried_tokens_total";
pub const PREFIX_HIT_TOKENS: &str = "rill_engine_prefix_cache_hit_tokens_total";
pub const PREEMPTIONS: &str = "rill_engine_preemptions_total";
pub const STEP_TOKENS: &str = "rill_engine_step_tokens";
pub const STEP_SECONDS: &str = "rill_engine_step_seconds";

/// Remembers cumulative counts already reported so counters advance by deltas.
#[derive(Default)]
pub struct StepMetrics {
    reported_queries: u64,
    reported_hits: u64,
    reported_preemptions: u64,
}

impl StepMetrics {
    pub fn record(&mut self, sched: &Scheduler, _schedule: &Schedule, step_tokens: usize, step_time: Duration) {
        metrics::gauge!(RUNNING).set(sched.num_running() as f64);
        metrics::gauge!(WAITING).set(sched.num_waiting() as f64);
        metrics::gauge!(KV_BLOCKS_USED).set(sched.num_used_blocks() as f64);
        metrics::gauge!(KV_BLOCKS_TOTAL).set(sched.config().num_blocks as f64);
        let kv = sched.kv_stats();
        metrics::counter!(PREFIX_QUERIED_TOKENS).increment(kv.queried_tokens - self.reported_queries);
        metrics::counter!(PREFIX_HIT_TOKENS).increment(kv.hit_tokens - self.reported_hits);
        metrics::counter!(PREEMPTIONS).increment(sched.total_preemptions() - self.reported_preemptions);
        self.reported_queries = kv.queried_tokens;
        self.reported_hits = kv.hit_tokens;
        self.reported_preemptions = sched.total_preemptions();
        metrics::histogram!(STEP_TOKENS).record(step_tokens as f64);
        metrics::histogram!(STEP_SECONDS).record(step_time.as_secs_f64());
    }
}
