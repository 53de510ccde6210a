//! What one model version's requests looked like: each finished request leaves an [`Outcome`]
//! (recorded when its output ends); rollback rules read statistics over the latest ones, and
//! drift compares the latest ones with a reference window (the first requests after load, or a
//! window the operator pinned).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use super::drift::{self, FeatureDrift};
use super::rollback::MAX_WINDOW;

/// Requests in a drift window (the reference one and the recent one).
pub const DRIFT_WINDOW: usize = 200;
/// One request in this many computes its tokens' logprobs for the drift of the mean logprob,
/// whether or not the client asked (the tokens are the same either way).
const LOGPROB_SAMPLE_EVERY: u64 = 8;
/// The features drift is measured on.
pub const DRIFT_FEATURES: [&str; 4] = ["prompt_tokens", "completion_tokens", "mean_logprob", "finish_reason"];

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

impl Outcome {
    /// This outcome without its latencies (drift reads none): what a reference window keeps.
    fn without_latencies(&self) -> Outcome {
        Outcome { gaps_ms: Vec::new(), ..*self }
    }
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

/// A numeric drift feature of one request, where it has one.
type Feature = fn(&Outcome) -> Option<f64>;

/// One version's latest outcomes.
#[derive(Debug, Default)]
pub struct VersionMonitor {
    recent: Mutex<VecDeque<Outcome>>,
    /// The drift reference: the first [`DRIFT_WINDOW`] requests, or a pinned window (which
    /// takes no more requests: `true`).
    reference: Mutex<(Vec<Outcome>, bool)>,
    requests: AtomicU64,
    /// Set while a rule compares this version's logprobs: its requests then compute the sampled
    /// token's logprob even when the client did not ask (the tokens are the same either way).
    pub track_logprobs: AtomicBool,
}

impl VersionMonitor {
    pub fn record(&self, outcome: Outcome) {
        {
            let mut reference = self.reference.lock().unwrap_or_else(|e| e.into_inner());
            let (outcomes, pinned) = &mut *reference;
            if !*pinned && outcomes.len() < DRIFT_WINDOW {
                outcomes.push(outcome.without_latencies());
            }
        }
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == MAX_WINDOW {
            recent.pop_front();
        }
        recent.push_back(outcome);
    }

    /// Whether the next request computes its tokens' logprobs (a rule compares them, or it is
    /// one of the requests sampled for drift).
    pub fn wants_logprobs(&self) -> bool {
        self.track_logprobs.load(Ordering::Relaxed) || self.requests.fetch_add(1, Ordering::Relaxed).is_multiple_of(LOGPROB_SAMPLE_EVERY)
    }

    /// The latest [`DRIFT_WINDOW`] requests become the drift reference.
    pub fn pin_reference(&self) -> usize {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let latest: Vec<Outcome> = recent.iter().skip(recent.len().saturating_sub(DRIFT_WINDOW)).map(Outcome::without_latencies).collect();
        let n = latest.len();
        *self.reference.lock().unwrap_or_else(|e| e.into_inner()) = (latest, true);
        n
    }

    /// Requests in the reference and recent windows, and each feature's drift (`None` until
    /// both windows hold enough requests).
    pub fn drift(&self) -> (usize, usize, BTreeMap<&'static str, Option<FeatureDrift>>) {
        let reference = self.reference.lock().unwrap_or_else(|e| e.into_inner()).0.clone();
        let recent: Vec<Outcome> = {
            let r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            r.iter().skip(r.len().saturating_sub(DRIFT_WINDOW)).cloned().collect()
        };
        let numbers = |outcomes: &[Outcome], f: Feature| outcomes.iter().filter_map(f).collect::<Vec<f64>>();
        let mut features = BTreeMap::new();
        let numeric: [(&'static str, Feature); 3] = [
            ("prompt_tokens", |o| Some(o.prompt_tokens as f64)),
            ("completion_tokens", |o| Some(o.completion_tokens as f64)),
            ("mean_logprob", |o| (o.logprob_tokens > 0).then(|| o.logprob_sum / o.logprob_tokens as f64)),
        ];
        for (name, f) in numeric {
            features.insert(name, drift::numeric(&numbers(&reference, f), &numbers(&recent, f)));
        }
        let finishes = |outcomes: &[Outcome]| outcomes.iter().map(|o| o.finish).collect::<Vec<&str>>();
        features.insert("finish_reason", drift::categorical(&finishes(&reference), &finishes(&recent)));
        (reference.len(), recent.len(), features)
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
    fn the_reference_is_the_first_requests_until_a_window_is_pinned() {
        let m = VersionMonitor::default();
        let sized = |p| Outcome { prompt_tokens: p, completion_tokens: 1, finish: "stop", ..Default::default() };
        (0..DRIFT_WINDOW + 50).for_each(|_| m.record(sized(5)));
        let (reference, recent, features) = m.drift();
        assert_eq!((reference, recent), (DRIFT_WINDOW, DRIFT_WINDOW));
        assert_eq!(features["prompt_tokens"].as_ref().unwrap().psi, 0.0);
        assert!(features["mean_logprob"].is_none(), "no logprobs were recorded");
        assert_eq!(m.pin_reference(), DRIFT_WINDOW);
        (0..DRIFT_WINDOW).for_each(|_| m.record(sized(50)));
        let (reference, _, features) = m.drift();
        assert_eq!(reference, DRIFT_WINDOW, "a pinned reference takes no more requests");
        assert!(features["prompt_tokens"].as_ref().unwrap().psi > 1.0);
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
