//! Engine metrics through the `metrics` facade, recorded once per step (never per token) and
//! labelled with the model name. Names are constants so the server's exporter and dashboards
//! agree with the engine. Also exports the three gauges the Kubernetes Gateway API inference
//! extension reads, under vLLM's names.

use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

use crate::scheduler::Scheduler;

pub const RUNNING: &str = "rill_engine_running_sequences";
pub const WAITING: &str = "rill_engine_waiting_sequences";
pub const KV_BLOCKS_USED: &str = "rill_engine_kv_blocks_used";
pub const KV_BLOCKS_TOTAL: &str = "rill_engine_kv_blocks_total";
pub const KV_USAGE: &str = "rill_engine_kv_cache_usage_ratio";
pub const PREFIX_QUERIED_TOKENS: &str = "rill_engine_prefix_cache_queried_tokens_total";
pub const PREFIX_HIT_TOKENS: &str = "rill_engine_prefix_cache_hit_tokens_total";
pub const PREEMPTIONS: &str = "rill_engine_preemptions_total";
pub const STEP_TOKENS: &str = "rill_engine_step_tokens";
pub const STEP_SECONDS: &str = "rill_engine_step_seconds";
pub const QUEUE_SECONDS: &str = "rill_request_queue_seconds";
/// Speculation: tokens proposed and verified, and sequence-steps that verified proposals.
/// Acceptance rate = accepted / proposed; tokens per speculative step = (accepted + steps) / steps.
pub const SPEC_PROPOSED: &str = "rill_spec_proposed_tokens_total";
pub const SPEC_ACCEPTED: &str = "rill_spec_accepted_tokens_total";
pub const SPEC_STEPS: &str = "rill_spec_steps_total";
pub const VLLM_WAITING: &str = "vllm:num_requests_waiting";
pub const VLLM_RUNNING: &str = "vllm:num_requests_running";
pub const VLLM_KV_USAGE: &str = "vllm:kv_cache_usage_perc";

/// Handles registered once per engine; counters advance by deltas of the scheduler's totals.
pub struct StepMetrics {
    running: [Gauge; 2],
    waiting: [Gauge; 2],
    kv_usage: [Gauge; 2],
    kv_used: Gauge,
    kv_total: Gauge,
    queried: Counter,
    hits: Counter,
    preemptions: Counter,
    step_tokens: Histogram,
    step_seconds: Histogram,
    pub queue_seconds: Histogram,
    spec: [Counter; 3],
    reported_queries: u64,
    reported_hits: u64,
    reported_preemptions: u64,
}

impl StepMetrics {
    pub fn new(model: &str) -> StepMetrics {
        let m = model.to_string();
        StepMetrics {
            running: [gauge!(RUNNING, "model" => m.clone()), gauge!(VLLM_RUNNING, "model_name" => m.clone())],
            waiting: [gauge!(WAITING, "model" => m.clone()), gauge!(VLLM_WAITING, "model_name" => m.clone())],
            kv_usage: [gauge!(KV_USAGE, "model" => m.clone()), gauge!(VLLM_KV_USAGE, "model_name" => m.clone())],
            kv_used: gauge!(KV_BLOCKS_USED, "model" => m.clone()),
            kv_total: gauge!(KV_BLOCKS_TOTAL, "model" => m.clone()),
            queried: counter!(PREFIX_QUERIED_TOKENS, "model" => m.clone()),
            hits: counter!(PREFIX_HIT_TOKENS, "model" => m.clone()),
            preemptions: counter!(PREEMPTIONS, "model" => m.clone()),
            step_tokens: histogram!(STEP_TOKENS, "model" => m.clone()),
            step_seconds: histogram!(STEP_SECONDS, "model" => m.clone()),
            queue_seconds: histogram!(QUEUE_SECONDS, "model" => m.clone()),
            spec: [counter!(SPEC_PROPOSED, "model" => m.clone()), counter!(SPEC_ACCEPTED, "model" => m.clone()), counter!(SPEC_STEPS, "model" => m)],
            reported_queries: 0,
            reported_hits: 0,
            reported_preemptions: 0,
        }
    }

    /// One sequence's verification: `proposed` tokens, the first `accepted` of them confirmed.
    pub fn record_speculation(&self, proposed: usize, accepted: usize) {
        if proposed > 0 {
            let [p, a, s] = &self.spec;
            p.increment(proposed as u64);
            a.increment(accepted as u64);
            s.increment(1);
        }
    }

    /// Gauges and counters from the scheduler's state after a step (or after requests end).
    pub fn record_state(&mut self, sched: &Scheduler) {
        let total = sched.config().num_blocks;
        let used = sched.num_used_blocks();
        self.running.iter().for_each(|g| g.set(sched.num_running() as f64));
        self.waiting.iter().for_each(|g| g.set(sched.num_waiting() as f64));
        self.kv_usage.iter().for_each(|g| g.set(used as f64 / total.max(1) as f64));
        self.kv_used.set(used as f64);
        self.kv_total.set(total as f64);
        let kv = sched.kv_stats();
        self.queried.increment(kv.queried_tokens - self.reported_queries);
        self.hits.increment(kv.hit_tokens - self.reported_hits);
        self.preemptions.increment(sched.total_preemptions() - self.reported_preemptions);
        self.reported_queries = kv.queried_tokens;
        self.reported_hits = kv.hit_tokens;
        self.reported_preemptions = sched.total_preemptions();
    }

    pub fn record_step(&mut self, step_tokens: usize, step_time: Duration) {
        self.step_tokens.record(step_tokens as f64);
        self.step_seconds.record(step_time.as_secs_f64());
    }
}
