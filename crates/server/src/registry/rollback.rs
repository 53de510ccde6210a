//! Automatic rollback: thresholds a canary version must stay within, judged over a sliding
//! window of its latest requests, and the record kept when one is crossed.

use serde::{Deserialize, Serialize};

use super::monitor::WindowStats;

/// The `rollback` object of a traffic split. Each `max_*` is optional; a version is judged once
/// its window holds `min_requests` requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRules {
    #[serde(default = "default_min_requests")]
    #[schema(default = 20)]
    pub min_requests: usize,
    /// How many of a version's latest requests are judged (at most 1000).
    #[serde(default = "default_window")]
    #[schema(default = 100)]
    pub window: usize,
    /// Share of requests that ended in an error (engine failure or deadline), 0 to 1.
    pub max_error_rate: Option<f64>,
    pub max_ttft_p95_ms: Option<f64>,
    pub max_inter_token_p95_ms: Option<f64>,
    /// How far the version's mean token logprob may fall below the baseline's (nats).
    pub max_logprob_drop: Option<f64>,
}

fn default_min_requests() -> usize {
    20
}

fn default_window() -> usize {
    100
}

/// The largest window a rule may ask for (the monitor keeps this many requests per version).
pub const MAX_WINDOW: usize = 1000;

/// One rollback, as `GET /admin/models/{name}` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RollbackRecord {
    pub version: String,
    pub baseline: String,
    pub rule: &'static str,
    pub observed: f64,
    pub threshold: f64,
    pub requests: usize,
    /// Unix seconds.
    pub at: u64,
}

/// A crossed threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Breach {
    pub rule: &'static str,
    pub observed: f64,
    pub threshold: f64,
}

impl RollbackRules {
    pub fn check(&self) -> Result<(), String> {
        if self.min_requests == 0 || self.window == 0 || self.window > MAX_WINDOW || self.min_requests > self.window {
            return Err(format!("rollback needs 1 <= min_requests <= window <= {MAX_WINDOW}"));
        }
        let limits = [self.max_error_rate, self.max_ttft_p95_ms, self.max_inter_token_p95_ms, self.max_logprob_drop];
        if limits.iter().flatten().any(|v| !v.is_finite() || *v < 0.0) {
            return Err("rollback thresholds must be finite and not negative".into());
        }
        if limits.iter().all(Option::is_none) {
            return Err("rollback needs at least one of max_error_rate, max_ttft_p95_ms, max_inter_token_p95_ms, max_logprob_drop".into());
        }
        Ok(())
    }

    /// The first threshold `candidate` crosses, if it has enough requests to be judged;
    /// `baseline` is the baseline version's window (for the logprob comparison).
    pub fn judge(&self, candidate: &WindowStats, baseline: &WindowStats) -> Option<Breach> {
        if candidate.requests < self.min_requests {
            return None;
        }
        let over = |rule, observed: Option<f64>, threshold: Option<f64>| match (observed, threshold) {
            (Some(observed), Some(threshold)) if observed > threshold => Some(Breach { rule, observed, threshold }),
            _ => None,
        };
        let drop = match (baseline.requests >= self.min_requests, baseline.mean_logprob, candidate.mean_logprob) {
            (true, Some(b), Some(c)) => Some(b - c),
            _ => None,
        };
        over("max_error_rate", Some(candidate.error_rate), self.max_error_rate)
            .or_else(|| over("max_ttft_p95_ms", candidate.ttft_p95_ms, self.max_ttft_p95_ms))
            .or_else(|| over("max_inter_token_p95_ms", candidate.inter_token_p95_ms, self.max_inter_token_p95_ms))
            .or_else(|| over("max_logprob_drop", drop, self.max_logprob_drop))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> RollbackRules {
        RollbackRules { min_requests: 10, window: 50, max_error_rate: Some(0.1), max_ttft_p95_ms: Some(500.0), max_inter_token_p95_ms: None, max_logprob_drop: Some(0.5) }
    }

    fn stats(requests: usize, error_rate: f64, ttft: f64, logprob: f64) -> WindowStats {
        WindowStats { requests, error_rate, ttft_p95_ms: Some(ttft), inter_token_p95_ms: Some(10.0), mean_logprob: Some(logprob) }
    }

    #[test]
    fn thresholds_are_judged_once_the_window_is_full_enough() {
        let base = stats(100, 0.0, 100.0, -1.0);
        assert_eq!(rules().judge(&stats(9, 1.0, 900.0, -9.0), &base), None, "too few requests to judge");
        assert_eq!(rules().judge(&stats(10, 0.05, 400.0, -1.4), &base), None);
        assert_eq!(rules().judge(&stats(10, 0.2, 400.0, -1.0), &base).unwrap().rule, "max_error_rate");
        let slow = rules().judge(&stats(10, 0.0, 600.0, -1.0), &base).unwrap();
        assert_eq!((slow.rule, slow.observed, slow.threshold), ("max_ttft_p95_ms", 600.0, 500.0));
        let worse = rules().judge(&stats(10, 0.0, 100.0, -1.6), &base).unwrap();
        assert_eq!(worse.rule, "max_logprob_drop");
        assert!((worse.observed - 0.6).abs() < 1e-9);
        // No baseline to compare with yet: the logprob rule waits.
        assert_eq!(rules().judge(&stats(10, 0.0, 100.0, -9.0), &stats(3, 0.0, 100.0, -1.0)), None);
    }

    #[test]
    fn rules_are_checked() {
        assert!(rules().check().is_ok());
        assert!(RollbackRules { min_requests: 0, ..rules() }.check().is_err());
        assert!(RollbackRules { window: 5, ..rules() }.check().is_err());
        assert!(RollbackRules { max_error_rate: Some(-1.0), ..rules() }.check().is_err());
        assert!(RollbackRules { max_error_rate: None, max_ttft_p95_ms: None, max_logprob_drop: None, ..rules() }.check().is_err());
    }
}
