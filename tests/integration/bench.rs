//! `rill bench` (the library side) against rill's own server on a loopback listener with the
//! default model: every request succeeds, `ignore_eos` makes each generate exactly `max_tokens`,
//! prompt lengths are fitted with `/tokenize`, and the latencies are positive and ordered.

use std::time::Duration;

use rill_model::forward::StepCapacity;
use rill_model::loader::{KvBudget, LoadOptions};
use rill_bench::{run_bench, BenchConfig};

use crate::http::serve_default_model;

#[test]
fn bench_against_rill_counts_every_token_and_orders_its_percentiles() {
    let opts = LoadOptions { kv_budget: KvBudget::Tokens(4096), capacity: StepCapacity { max_tokens: 256, max_seqs: 8 }, ..LoadOptions::default() };
    let server = serve_default_model("bench", &opts);
    let base_url = format!("{}/v1", server.base);

    // No --model: the name comes from GET /v1/models.
    let cfg = BenchConfig {
        base_url,
        concurrency: vec![1, 2],
        requests: Some(4),
        prompt_tokens: 24,
        max_tokens: 8,
        level_timeout: Duration::from_secs(120),
        seed: 3,
        ..BenchConfig::default()
    };
    let report = server.runtime.block_on(run_bench(&cfg)).unwrap();
    assert_eq!(report.parameters.model, "bench");
    assert_eq!(report.parameters.prompt_calibration, "tokenize");
    assert_eq!(report.levels.len(), 2);
    for (level, concurrency) in report.levels.iter().zip([1, 2]) {
        assert_eq!(level.concurrency, concurrency);
        assert_eq!((level.ok, level.failed), (4, 0), "{:?}", level.failures);
        assert_eq!(level.output_tokens, 4 * 8);
        assert!(level.usage_reported);
        let mean_prompt = level.mean_prompt_tokens.unwrap();
        assert!((22.0..=26.0).contains(&mean_prompt), "prompts fitted to about 24 tokens, got {mean_prompt}");
        assert!(level.wall_s > 0.0 && level.output_tok_s.unwrap() > 0.0 && level.prompt_tok_s.unwrap() > 0.0);
        let (ttft50, ttft99) = (level.ttft_ms_p50.unwrap(), level.ttft_ms_p99.unwrap());
        let (e2e50, e2e99) = (level.e2e_ms_p50.unwrap(), level.e2e_ms_p99.unwrap());
        let (itl50, itl99) = (level.itl_ms_p50.unwrap(), level.itl_ms_p99.unwrap());
        assert!(ttft50 > 0.0 && ttft50 <= ttft99, "TTFT p50 {ttft50} p99 {ttft99}");
        assert!(e2e50 > 0.0 && e2e50 <= e2e99, "E2E p50 {e2e50} p99 {e2e99}");
        assert!(itl50 >= 0.0 && itl50 <= itl99, "ITL p50 {itl50} p99 {itl99}");
        assert!(ttft50 <= e2e99, "the first token comes before the end");
    }
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["levels"][1]["output_tokens"], 32);
    assert_eq!(json["parameters"]["endpoint"], "completions");
}
