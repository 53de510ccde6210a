//! A model name's traffic split: weights per version, the baseline that takes everything back
//! on a rollback, and the draw that picks a version for one request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::rollback::RollbackRules;

/// How a name's requests are split between its versions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Traffic {
    /// Percent-like weights (any non-negative integers; they need not add up to 100).
    pub weights: BTreeMap<String, u32>,
    /// The version the others are compared against, which gets all traffic on a rollback.
    pub baseline: String,
    pub rollback: Option<RollbackRules>,
}

/// `PUT /admin/models/{name}/traffic`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrafficRequest {
    pub weights: BTreeMap<String, u32>,
    /// Defaults to the version with the largest weight.
    pub baseline: Option<String>,
    pub rollback: Option<RollbackRules>,
}

impl Traffic {
    /// Everything to `version`.
    pub fn all_to(version: &str) -> Traffic {
        Traffic { weights: BTreeMap::from([(version.to_string(), 100)]), baseline: version.to_string(), rollback: None }
    }

    /// The split a request asks for, checked against the versions that exist.
    pub fn from_request(req: TrafficRequest, versions: &[&str]) -> Result<Traffic, String> {
        if let Some(unknown) = req.weights.keys().find(|v| !versions.contains(&v.as_str())) {
            return Err(format!("no version {unknown:?} (versions: {})", versions.join(", ")));
        }
        if req.weights.values().all(|&w| w == 0) {
            return Err("at least one weight must be positive".into());
        }
        let largest = req.weights.iter().max_by_key(|(v, w)| (**w, std::cmp::Reverse(*v))).map(|(v, _)| v.clone()).unwrap_or_default();
        let baseline = req.baseline.unwrap_or(largest);
        if !versions.contains(&baseline.as_str()) {
            return Err(format!("baseline {baseline:?} is not a version (versions: {})", versions.join(", ")));
        }
        if let Some(rules) = &req.rollback {
            rules.check()?;
        }
        let weights = req.weights.into_iter().filter(|(_, w)| *w > 0).collect();
        Ok(Traffic { weights, baseline, rollback: req.rollback })
    }

    /// The version for a draw `u` in [0, 1): each weighted version with probability weight/total.
    pub fn pick(&self, u: f64) -> &str {
        let total: u64 = self.weights.values().map(|&w| w as u64).sum();
        if total == 0 {
            return &self.baseline;
        }
        let mut target = (u * total as f64) as u64;
        for (version, &w) in &self.weights {
            if target < w as u64 {
                return version;
            }
            target -= w as u64;
        }
        &self.baseline
    }

    /// Versions other than the baseline that get traffic: the ones rollback rules watch.
    pub fn candidates(&self) -> impl Iterator<Item = &str> {
        self.weights.iter().filter(|(v, w)| **w > 0 && **v != self.baseline).map(|(v, _)| v.as_str())
    }

    /// All traffic back to the baseline (the rules stay, for the record).
    pub fn roll_back(&mut self) {
        self.weights = BTreeMap::from([(self.baseline.clone(), 100)]);
    }

    /// `version` is gone: its share goes, and if it was the baseline the heaviest remaining
    /// version (or any remaining one) becomes the baseline.
    pub fn forget(&mut self, version: &str, remaining: &[&str]) {
        self.weights.remove(version);
        if self.baseline == version {
            let heaviest = self.weights.iter().max_by_key(|(v, w)| (**w, std::cmp::Reverse(*v))).map(|(v, _)| v.clone());
            self.baseline = heaviest.or_else(|| remaining.first().map(|v| v.to_string())).unwrap_or_default();
        }
        if self.weights.is_empty() && !self.baseline.is_empty() {
            self.weights.insert(self.baseline.clone(), 100);
        }
    }
}

/// A uniform draw in [0, 1) for routing: splitmix64 over a process-wide counter, seeded by the
/// clock (routing needs spread, not secrecy).
pub fn uniform() -> f64 {
    const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
    static STATE: OnceLock<AtomicU64> = OnceLock::new();
    let state = STATE.get_or_init(|| AtomicU64::new(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)));
    let mut z = state.fetch_add(GOLDEN, Ordering::Relaxed).wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(weights: &[(&str, u32)]) -> TrafficRequest {
        TrafficRequest { weights: weights.iter().map(|(v, w)| (v.to_string(), *w)).collect(), baseline: None, rollback: None }
    }

    #[test]
    fn picks_follow_the_weights() {
        let t = Traffic::from_request(request(&[("v1", 80), ("v2", 20)]), &["v1", "v2"]).unwrap();
        assert_eq!(t.baseline, "v1");
        assert_eq!(t.pick(0.0), "v1");
        assert_eq!(t.pick(0.7999), "v1");
        assert_eq!(t.pick(0.8), "v2");
        assert_eq!(t.pick(0.9999), "v2");
        let v2 = (0..10_000).filter(|_| t.pick(uniform()) == "v2").count();
        // 20 % of 10,000 draws: the standard deviation is 40, so ±200 is five of them.
        assert!((1800..=2200).contains(&v2), "{v2} of 10,000 went to v2");
        assert_eq!(t.candidates().collect::<Vec<_>>(), ["v2"]);
    }

    #[test]
    fn bad_splits_are_refused() {
        assert!(Traffic::from_request(request(&[("v3", 10)]), &["v1", "v2"]).unwrap_err().contains("v3"));
        assert!(Traffic::from_request(request(&[("v1", 0)]), &["v1"]).is_err());
        let mut r = request(&[("v1", 50), ("v2", 50)]);
        r.baseline = Some("v9".into());
        assert!(Traffic::from_request(r, &["v1", "v2"]).is_err());
        // Equal weights: the first name is the baseline.
        assert_eq!(Traffic::from_request(request(&[("b", 50), ("a", 50)]), &["a", "b"]).unwrap().baseline, "a");
    }

    #[test]
    fn rollback_and_forgetting_keep_a_baseline() {
        let mut t = Traffic::from_request(request(&[("v1", 10), ("v2", 90)]), &["v1", "v2"]).unwrap();
        assert_eq!(t.baseline, "v2");
        t.roll_back();
        assert_eq!(t.weights, BTreeMap::from([("v2".to_string(), 100)]));
        t.forget("v2", &["v1"]);
        assert_eq!((t.baseline.as_str(), t.pick(0.5)), ("v1", "v1"));
    }
}
