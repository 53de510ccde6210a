//! What one model version's requests looked like: each finished request leaves an [`Outcome`]
//! (recorded when its output ends), and rollback rules read statistics over the latest ones.

use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use super::rollback::MAX_WINDOW;

/// Inter-token gaps kept per request: enough for a p95 over a window of requests.
pub const MAX_GAPS_PER_REQUEST: usize = 512;

/// How one request went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// It failed (engine error or deadline); a client that left is not an error.
    pub error: bool,
    pub ttft_ms: Option<f32>,
    /// Up to [`MAX_GAPS_PER_REQUEST`] gaps between tokens.
    pub gaps_ms: Vec<f32>,
    /// Sum and count of the sampled tokens' logprobs, where the engine computed them.
    pub logprob_sum: f64,
    pub logprob_tokens: usize,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub finish: &'static str,
}

/// Statistics over a version's latest requests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowStats {
    pub requests: usize,
    pub error_rate: f64,
    pub ttft_p95_ms: Option<f64>,
    pub inter_token_p95_ms: Option<f64>,
    /// Mean logprob per sampled token.
    pub mean_logprob: Option<f64>,
}

/// One version's latest outcomes.
#[derive(Debug, Default)]
pub struct VersionMonitor {
    recent: Mutex<VecDeque<Outcome>>,
    /// Set while a rule compares this version's logprobs: its requests then compute the sampled
    /// token's logprob even when the client did not ask (the tokens are the same either way).
    pub track_logprobs: AtomicBool,
}

impl VersionMonitor {
    pub fn record(&self, outcome: Outcome) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == MAX_WINDOW {
            recent.pop_front();
        }
        recent.push_back(outcome);
    }

    /// Statistics over the latest `window` requests.
    pub fn stats(&self, window: usize) -> WindowStats {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let latest: Vec<&Outcome> = recent.iter().rev().take(window).collect();
        if latest.is_empty() {
            return WindowStats::default();
        }
        let errors = latest.iter().filter(|o| o.error).count();
        let mut ttfts: Vec<f32> = latest.iter().filter_map(|o| o.ttft_ms).collect();
        let mut gaps: Vec<f32> = latest.iter().flat_map(|o| o.gaps_ms.iter().copied()).collect();
        let tokens: usize = latest.iter().map(|o| o.logprob_tokens).sum();
        let sum: f64 = latest.iter().map(|o| o.logprob_sum).sum();
        WindowStats {
            requests: latest.len(),
            error_rate: errors as f64 / latest.len() as f64,
            ttft_p95_ms: p95(&mut ttfts),
            inter_token_p95_ms: p95(&mut gaps),
            mean_logprob: (tokens > 0).then(|| sum / tokens as f64),
        }
    }

    /// Forgets every outcome (a new traffic split starts judging afresh).
    pub fn clear(&self) {
        self.recent.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// The 95th percentile (nearest rank), if there are values.
fn p95(values: &mut [f32]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let rank = ((values.len() as f64 * 0.95).ceil() as usize).clamp(1, values.len()) - 1;
    let (_, v, _) = values.select_nth_unstable_by(rank, f32::total_cmp);
    Some(*v as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_cover_the_latest_requests_only() {
        let m = VersionMonitor::default();
        for i in 0..100 {
            m.record(Outcome { error: i < 50, ttft_ms: Some(i as f32), gaps_ms: vec![1.0, 2.0], logprob_sum: -2.0, logprob_tokens: 2, ..Default::default() });
        }
        let s = m.stats(20);
        assert_eq!((s.requests, s.error_rate), (20, 0.0));
        // TTFTs 80..=99: the nearest-rank p95 of 20 values is the 19th.
        assert_eq!(s.ttft_p95_ms, Some(98.0));
        assert_eq!(s.inter_token_p95_ms, Some(2.0));
        assert_eq!(s.mean_logprob, Some(-1.0));
        assert_eq!(m.stats(100).error_rate, 0.5);
        m.clear();
        assert_eq!(m.stats(100), WindowStats::default());
    }

    #[test]
    fn the_window_is_bounded() {
        let m = VersionMonitor::default();
        for _ in 0..MAX_WINDOW + 10 {
            m.record(Outcome::default());
        }
        assert_eq!(m.stats(usize::MAX).requests, MAX_WINDOW);
    }
}
