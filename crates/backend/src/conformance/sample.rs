//! The sampling check of the conformance harness: the one rule (`crate::draw`) on random rows,
//! ids compared exactly.

use super::{tolerance, Check, Harness};
use crate::{Backend, BackendResult, DrawParams};

impl<R: Backend, C: Backend> Harness<'_, R, C> {
    /// `sample` on rows of distinct logits (a random permutation of evenly spaced values with a
    /// per-row spread): greedy rows (one with a deliberate tie, which must go to the lower
    /// index), temperatures with top-k / top-p combinations, masked (`-inf`, NaN) tokens, fixed
    /// uniforms. Compares the chosen ids exactly.
    pub(super) fn sample(&mut self, vocab: usize) {
        // (temperature, top_k, top_p, min_p)
        let settings: [(f32, u32, f32, f32); 14] = [
            (0.0, 0, 1.0, 0.0), (0.0, 0, 1.0, 0.0), (1.0, 0, 1.0, 0.0), (0.7, 0, 1.0, 0.0), (1.5, 0, 1.0, 0.0),
            (1.0, 40, 1.0, 0.0), (1.0, 0, 0.9, 0.0), (0.8, 50, 0.8, 0.0), (1.2, 1, 1.0, 0.0), (1.0, 0, 0.0, 0.0),
            (1.0, vocab as u32 - 1, 0.95, 0.0), (2.0, 5, 0.5, 0.0), (1.0, 0, 1.0, 0.05), (0.9, 30, 0.9, 0.2),
        ];
        let rows = 2 * settings.len();
        let case = format!("{rows} rows of {vocab}: greedy, temperature, top-k, top-p, min-p");
        let outcome = (|| -> BackendResult<(Vec<u32>, Vec<u32>)> {
            let mut logits = Vec::with_capacity(rows * vocab);
            let mut params = Vec::with_capacity(rows);
            for r in 0..rows {
                let (temperature, top_k, top_p, min_p) = settings[r % settings.len()];
                let spread = 4.0 + 20.0 * (self.rng.unit() + 1.0);
                let mut row: Vec<f32> = (0..vocab).map(|j| spread * (j as f32 / vocab as f32 - 0.5)).collect();
                for i in (1..vocab).rev() {
                    row.swap(i, self.rng.below(i + 1));
                }
                if r == 1 {
                    // Two equal maxima: greedy takes the lower index.
                    let (a, b) = (self.rng.below(vocab / 2), vocab / 2 + self.rng.below(vocab / 2));
                    row[a] = spread;
                    row[b] = spread;
                }
                if r % 3 == 2 {
                    // Masked tokens (never the row's maximum).
                    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    for _ in 0..vocab / 10 {
                        let i = self.rng.below(vocab);
                        if row[i] != max {
                            row[i] = f32::NEG_INFINITY;
                        }
                    }
                    if let Some(l) = row.iter_mut().find(|l| **l != max) {
                        *l = f32::NAN;
                    }
                }
                logits.extend_from_slice(&row);
                let uniform = (self.rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
                params.push(DrawParams { temperature, top_k, top_p, min_p, uniform });
            }
            let l = self.buffer(&logits)?;
            let (mut out_r, mut out_c) = self.indices(&vec![u32::MAX; rows])?;
            self.r.sample(&l.r, rows, vocab, &params, &mut out_r)?;
            self.c.sample(&l.c, rows, vocab, &params, &mut out_c)?;
            let (mut r, mut c) = (vec![0; rows], vec![0; rows]);
            self.r.read_indices(&out_r, &mut r)?;
            self.c.read_indices(&out_c, &mut c)?;
            Ok((r, c))
        })();
        let check = match outcome {
            Ok((r, c)) => {
                let differ = r.iter().zip(&c).filter(|(a, b)| a != b).count();
                Check { op: "sample", case, rel_err: differ as f64 / rows as f64, tolerance: tolerance::SAMPLE, error: None }
            }
            Err(e) => Check { op: "sample", case, rel_err: f64::INFINITY, tolerance: tolerance::SAMPLE, error: Some(e.to_string()) },
        };
        self.checks.push(check);
    }
}
