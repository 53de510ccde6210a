//! From per-request timings to one level's figures: throughput over the level's wall time and
//! latency percentiles (linear interpolation between closest ranks, as numpy's default).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// What one request measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timing {
    /// Time to the first chunk with text (streaming only).
    pub ttft: Option<Duration>,
    /// Gaps between consecutive chunks with text.
    pub itl: Vec<Duration>,
    /// Send to end of response.
    pub e2e: Duration,
    /// From `usage`, else the count the prompt was calibrated to, if known.
    pub prompt_tokens: Option<u64>,
    /// From `usage`, else the number of chunks with text.
    pub completion_tokens: u64,
    /// Whether the server reported `usage.completion_tokens`.
    pub usage_reported: bool,
}

/// A request either measured something or failed for a reason (grouped in the report).
pub type RequestResult = Result<Timing, String>;

/// One concurrency level's figures. Latencies are milliseconds; `None` (JSON `null`) when there
/// is nothing to measure (no successful request, no streaming, or one token per request for ITL).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LevelResult {
    pub concurrency: usize,
    pub requests: usize,
    pub ok: usize,
    pub failed: usize,
    /// Failure reason → count.
    pub failures: BTreeMap<String, usize>,
    pub wall_s: f64,
    /// Sums over the successful requests.
    pub prompt_tokens: u64,
    pub output_tokens: u64,
    pub mean_prompt_tokens: Option<f64>,
    pub mean_output_tokens: Option<f64>,
    pub output_tok_s: Option<f64>,
    pub prompt_tok_s: Option<f64>,
    /// Whether every successful request reported `usage` (else output tokens count chunks).
    pub usage_reported: bool,
    pub ttft_ms_p50: Option<f64>,
    pub ttft_ms_p99: Option<f64>,
    pub ttft_ms_mean: Option<f64>,
    pub itl_ms_p50: Option<f64>,
    pub itl_ms_p99: Option<f64>,
    pub itl_ms_mean: Option<f64>,
    pub e2e_ms_p50: Option<f64>,
    pub e2e_ms_p99: Option<f64>,
    pub e2e_ms_mean: Option<f64>,
}

/// The `p`th percentile (0..=100) of ascending `sorted`, interpolating linearly between the
/// closest ranks; `None` when empty.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = (p.clamp(0.0, 100.0) / 100.0) * last as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64))
}

/// p50, p99 and mean of `values` in milliseconds.
fn summary(mut values: Vec<f64>) -> (Option<f64>, Option<f64>, Option<f64>) {
    values.sort_by(f64::total_cmp);
    let mean = (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
    (percentile(&values, 50.0), percentile(&values, 99.0), mean)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Aggregates a level: `results` are the requests that ran (successful or not); `requests` is
/// how many the level should have sent, the difference having been cut by the level's time
/// limit before being sent.
pub fn aggregate(concurrency: usize, requests: usize, results: &[RequestResult], wall: Duration) -> LevelResult {
    let mut failures = BTreeMap::new();
    let mut ok = Vec::new();
    for r in results {
        match r {
            Ok(t) => ok.push(t),
            Err(reason) => *failures.entry(reason.clone()).or_insert(0) += 1,
        }
    }
    let not_sent = requests.saturating_sub(results.len());
    if not_sent > 0 {
        *failures.entry("not sent before the level time limit".to_string()).or_insert(0) += not_sent;
    }
    let wall_s = wall.as_secs_f64();
    let prompt_tokens: u64 = ok.iter().filter_map(|t| t.prompt_tokens).sum();
    let prompt_known = ok.iter().filter(|t| t.prompt_tokens.is_some()).count();
    let output_tokens: u64 = ok.iter().map(|t| t.completion_tokens).sum();
    let rate = |tokens: u64, known: usize| (known > 0 && wall_s > 0.0).then(|| tokens as f64 / wall_s);
    let (ttft_ms_p50, ttft_ms_p99, ttft_ms_mean) = summary(ok.iter().filter_map(|t| t.ttft.map(ms)).collect());
    let (itl_ms_p50, itl_ms_p99, itl_ms_mean) = summary(ok.iter().flat_map(|t| t.itl.iter().copied().map(ms)).collect());
    let (e2e_ms_p50, e2e_ms_p99, e2e_ms_mean) = summary(ok.iter().map(|t| ms(t.e2e)).collect());
    LevelResult {
        concurrency,
        requests,
        ok: ok.len(),
        failed: failures.values().sum(),
        failures,
        wall_s,
        prompt_tokens,
        output_tokens,
        mean_prompt_tokens: (prompt_known > 0).then(|| prompt_tokens as f64 / prompt_known as f64),
        mean_output_tokens: (!ok.is_empty()).then(|| output_tokens as f64 / ok.len() as f64),
        output_tok_s: rate(output_tokens, ok.len()),
        prompt_tok_s: rate(prompt_tokens, prompt_known),
        usage_reported: !ok.is_empty() && ok.iter().all(|t| t.usage_reported),
        ttft_ms_p50,
        ttft_ms_p99,
        ttft_ms_mean,
        itl_ms_p50,
        itl_ms_p99,
        itl_ms_mean,
        e2e_ms_p50,
        e2e_ms_p99,
        e2e_ms_mean,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn percentiles_interpolate_between_ranks() {
        assert_eq!(percentile(&[], 50.0), None);
        assert!(close(percentile(&[5.0], 99.0), 5.0));
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!(close(percentile(&v, 50.0), 50.5));
        assert!(close(percentile(&v, 99.0), 99.01));
        assert!(close(percentile(&v, 0.0), 1.0));
        assert!(close(percentile(&v, 100.0), 100.0));
        assert!(close(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), 2.5));
        assert!(close(percentile(&[10.0, 20.0], 99.0), 19.9));
    }

    fn timing(ttft_ms: u64, itl_ms: &[u64], e2e_ms: u64, prompt: Option<u64>, completion: u64) -> RequestResult {
        Ok(Timing {
            ttft: Some(Duration::from_millis(ttft_ms)),
            itl: itl_ms.iter().map(|&m| Duration::from_millis(m)).collect(),
            e2e: Duration::from_millis(e2e_ms),
            prompt_tokens: prompt,
            completion_tokens: completion,
            usage_reported: true,
        })
    }

    #[test]
    fn a_level_aggregates_successes_and_groups_failures() {
        let results = vec![
            timing(10, &[5, 7], 30, Some(100), 3),
            timing(30, &[9], 50, Some(120), 2),
            Err("HTTP 503: queue full".to_string()),
            Err("HTTP 503: queue full".to_string()),
            Err("level time limit".to_string()),
        ];
        let l = aggregate(4, 6, &results, Duration::from_secs(2));
        assert_eq!((l.ok, l.failed, l.requests), (2, 4, 6));
        assert_eq!(l.failures["HTTP 503: queue full"], 2);
        assert_eq!(l.failures["level time limit"], 1);
        assert_eq!(l.failures["not sent before the level time limit"], 1);
        assert_eq!((l.prompt_tokens, l.output_tokens), (220, 5));
        assert!(close(l.output_tok_s, 2.5));
        assert!(close(l.prompt_tok_s, 110.0));
        assert!(close(l.mean_prompt_tokens, 110.0));
        assert!(close(l.ttft_ms_p50, 20.0));
        assert!(close(l.ttft_ms_p99, 29.8));
        assert!(close(l.itl_ms_p50, 7.0));
        assert!(close(l.itl_ms_mean, 7.0));
        assert!(close(l.e2e_ms_p99, 49.8));
        assert!(l.usage_reported);
        let json = serde_json::to_value(&l).unwrap();
        assert_eq!(json["failures"]["level time limit"], 1);
    }

    #[test]
    fn an_all_failed_level_has_no_rates_or_latencies() {
        let l = aggregate(1, 2, &[Err("connection refused".into())], Duration::from_secs(1));
        assert_eq!((l.ok, l.failed), (0, 2));
        assert_eq!((l.output_tok_s, l.prompt_tok_s, l.ttft_ms_p50, l.e2e_ms_p99), (None, None, None, None));
        assert!(!l.usage_reported);
        assert!(serde_json::to_value(&l).unwrap()["ttft_ms_p50"].is_null());
    }
}
