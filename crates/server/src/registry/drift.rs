//! Drift: do a version's recent requests look like its reference ones? Per feature (prompt
//! length, output length, mean token logprob, finish reason), the population stability index
//! between the reference window's distribution and the recent window's:
//! PSI = Σ (recent_i − reference_i) · ln(recent_i / reference_i) over bins. Numeric features are
//! binned at the reference's deciles. Rules of thumb: < 0.1 stable, 0.1–0.25 moderate, > 0.25
//! a shift worth a look.

use serde::Serialize;

/// Fewer requests than this on either side: no index yet.
pub const MIN_DRIFT_REQUESTS: usize = 20;
/// A bin's share is never taken below this (an empty bin would make the index infinite).
const FLOOR: f64 = 1e-4;

/// One feature's comparison, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureDrift {
    pub psi: f64,
    /// Bin labels: `≤ edge` for numeric features (the last bin is `> last edge`), or categories.
    pub bins: Vec<String>,
    pub reference: Vec<f64>,
    pub recent: Vec<f64>,
}

/// The index between two samples of a numeric feature.
pub fn numeric(reference: &[f64], recent: &[f64]) -> Option<FeatureDrift> {
    if reference.len() < MIN_DRIFT_REQUESTS || recent.len() < MIN_DRIFT_REQUESTS {
        return None;
    }
    let mut sorted = reference.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut edges: Vec<f64> = (1..10).map(|d| sorted[(sorted.len() * d / 10).min(sorted.len() - 1)]).collect();
    edges.dedup();
    let bin = |x: f64| edges.iter().position(|&e| x <= e).unwrap_or(edges.len());
    let shares = |xs: &[f64]| {
        let mut counts = vec![0usize; edges.len() + 1];
        xs.iter().for_each(|&x| counts[bin(x)] += 1);
        counts.iter().map(|&c| c as f64 / xs.len() as f64).collect::<Vec<f64>>()
    };
    let (reference, recent) = (shares(reference), shares(recent));
    let mut bins: Vec<String> = edges.iter().map(|e| format!("<= {e}")).collect();
    bins.push(format!("> {}", edges.last().copied().unwrap_or(f64::NAN)));
    Some(FeatureDrift { psi: psi(&reference, &recent), bins, reference, recent })
}

/// The index between two samples of a categorical feature.
pub fn categorical(reference: &[&str], recent: &[&str]) -> Option<FeatureDrift> {
    if reference.len() < MIN_DRIFT_REQUESTS || recent.len() < MIN_DRIFT_REQUESTS {
        return None;
    }
    let mut bins: Vec<String> = reference.iter().chain(recent).map(|s| s.to_string()).collect();
    bins.sort();
    bins.dedup();
    let shares = |xs: &[&str]| bins.iter().map(|b| xs.iter().filter(|x| **x == b).count() as f64 / xs.len() as f64).collect::<Vec<f64>>();
    let (reference, recent) = (shares(reference), shares(recent));
    Some(FeatureDrift { psi: psi(&reference, &recent), bins, reference, recent })
}

fn psi(reference: &[f64], recent: &[f64]) -> f64 {
    reference.iter().zip(recent).map(|(&p, &q)| (q.max(FLOOR) - p.max(FLOOR)) * (q.max(FLOOR) / p.max(FLOOR)).ln()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_distribution_is_stable_and_a_shift_is_not() {
        let reference: Vec<f64> = (0..500).map(|i| (i % 100) as f64).collect();
        let same: Vec<f64> = (0..300).map(|i| ((i * 7) % 100) as f64).collect();
        let shifted: Vec<f64> = (0..300).map(|i| 60.0 + (i % 100) as f64).collect();
        let stable = numeric(&reference, &same).unwrap();
        assert!(stable.psi < 0.02, "{stable:?}");
        assert_eq!((stable.bins.len(), stable.reference.len()), (10, 10));
        assert!((stable.reference.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let moved = numeric(&reference, &shifted).unwrap();
        assert!(moved.psi > 1.0, "{}", moved.psi);
        assert!(numeric(&reference[..10], &same).is_none(), "too few reference requests");
    }

    #[test]
    fn categories_compare_their_shares() {
        let reference: Vec<&str> = (0..100).map(|i| if i % 10 == 0 { "length" } else { "stop" }).collect();
        let recent: Vec<&str> = (0..100).map(|i| if i % 2 == 0 { "length" } else { "stop" }).collect();
        let d = categorical(&reference, &recent).unwrap();
        assert_eq!(d.bins, ["length", "stop"]);
        assert_eq!(d.reference, [0.1, 0.9]);
        // (0.5 − 0.1)·ln 5 + (0.5 − 0.9)·ln(5/9)
        assert!((d.psi - (0.4 * 5f64.ln() - 0.4 * (5.0f64 / 9.0).ln())).abs() < 1e-9, "{}", d.psi);
        assert!(categorical(&reference, &reference).unwrap().psi.abs() < 1e-12);
    }
}
