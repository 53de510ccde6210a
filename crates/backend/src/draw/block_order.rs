//! The arithmetic order of the CUDA sampling kernel's 1024-thread block, reproduced on the host
//! so that every sum the rule takes has the same bits on every backend:
//!
//! - **sums** (`block_sum`): element `i` goes to partial `i % 1024`, each partial adds its
//!   elements in index order from `+0.0`; each 32-partial warp is folded by the xor butterfly of
//!   `warp_sum` (offsets 16, 8, 4, 2, 1), and the 32 warp results by the same butterfly;
//! - **the draw's running sum** (`draw`): tiles of 1024 tokens; inside a tile an inclusive
//!   Hillis–Steele scan per warp (offsets 1, 2, 4, 8, 16), the same scan over the 32 warp totals,
//!   `prefix = carry + (warp_offset + in_warp)`, and `carry += tile_total` after each tile.

/// Threads of the kernel's block.
pub(crate) const THREADS: usize = 1024;
const WARP: usize = 32;
const WARPS: usize = THREADS / WARP;

/// A block sum built element by element (elements must come in increasing index order; an
/// element left out is the same as adding `+0.0`).
pub(super) struct BlockSum {
    partial: [f32; THREADS],
}

impl Default for BlockSum {
    fn default() -> Self {
        BlockSum { partial: [0.0; THREADS] }
    }
}

impl BlockSum {
    pub(super) fn clear(&mut self) {
        self.partial.fill(0.0);
    }

    pub(super) fn add(&mut self, index: usize, x: f32) {
        self.partial[index % THREADS] += x;
    }

    pub(super) fn total(&self) -> f32 {
        let mut warps = [0.0f32; WARP];
        for (wv, lanes) in warps.iter_mut().zip(self.partial.chunks_exact(WARP)) {
            *wv = warp_butterfly(lanes.try_into().expect("32 lanes"));
        }
        warp_butterfly(&warps)
    }
}

/// `Σ f(i)` over `0..n` in the kernel's block-reduction order.
pub(super) fn block_sum(n: usize, f: impl Fn(usize) -> f32) -> f32 {
    let mut sum = BlockSum::default();
    for i in 0..n {
        sum.add(i, f(i));
    }
    sum.total()
}

/// `warp_sum` of common.cuh: at offset `o`, every lane adds lane `l ^ o`'s value; lane 0's result.
fn warp_butterfly(lanes: &[f32; WARP]) -> f32 {
    let mut v = *lanes;
    for o in [16, 8, 4, 2, 1] {
        let before = v;
        for (l, x) in v.iter_mut().enumerate() {
            *x = before[l] + before[l ^ o];
        }
    }
    v[0]
}

/// `__shfl_up_sync` scan: at offset `o`, lane `l >= o` adds lane `l - o`'s value of the step before.
fn warp_inclusive_scan(lanes: &mut [f32]) {
    let mut o = 1;
    while o < WARP {
        for l in (o..WARP).rev() {
            lanes[l] += lanes[l - o];
        }
        o *= 2;
    }
}

/// The first kept token (weight positive, bits `>= t`) in index order whose running sum exceeds
/// `target`, the sum taken as the kernel's tiled block scan takes it; else the last kept token.
pub(super) fn draw(w: &[f32], t: u32, target: f32) -> u32 {
    let kept = |i: usize| i < w.len() && w[i] > 0.0 && w[i].to_bits() >= t;
    let (mut carry, mut last) = (0.0f32, 0usize);
    let mut x = [0.0f32; THREADS];
    for base in (0..w.len()).step_by(THREADS) {
        // A tile with nothing kept scans to zeros: no hit, and the carry gains +0.0.
        if !(base..base + THREADS).any(kept) {
            continue;
        }
        for (j, x) in x.iter_mut().enumerate() {
            *x = if kept(base + j) { w[base + j] } else { 0.0 };
        }
        for lanes in x.chunks_exact_mut(WARP) {
            warp_inclusive_scan(lanes);
        }
        let mut totals = [0.0f32; WARPS];
        for (tot, lanes) in totals.iter_mut().zip(x.chunks_exact(WARP)) {
            *tot = lanes[WARP - 1];
        }
        warp_inclusive_scan(&mut totals);
        for (j, &xj) in x.iter().enumerate() {
            let i = base + j;
            if !kept(i) {
                continue;
            }
            let warp = j / WARP;
            let offset = if warp == 0 { 0.0 } else { totals[warp - 1] };
            if carry + (offset + xj) > target {
                return i as u32;
            }
            last = i;
        }
        carry += totals[WARPS - 1];
    }
    last as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sum_and_scan_follow_the_kernel_order() {
        // Exact on integers; and a sum of 3000 ones is 3000 in any order.
        assert_eq!(block_sum(3000, |_| 1.0), 3000.0);
        assert_eq!(block_sum(0, |_| 1.0), 0.0);
        // The butterfly and the scan add what they should.
        let lanes: [f32; 32] = std::array::from_fn(|i| i as f32);
        assert_eq!(warp_butterfly(&lanes), 496.0);
        let mut scan = lanes;
        warp_inclusive_scan(&mut scan);
        assert!(scan.iter().enumerate().all(|(i, &v)| v == (i * (i + 1) / 2) as f32));
        // Over tiles: equal weights pick token floor(u * n).
        let w = vec![1.0f32; 2500];
        for (u, want) in [(0.0, 0), (0.5, 1250), (0.9999, 2499)] {
            assert_eq!(draw(&w, 0, u * 2500.0), want);
        }
    }

    #[test]
    fn leaving_elements_out_equals_adding_zeros() {
        let w: Vec<f32> = (0..5000).map(|i| ((i * 7919) % 1000) as f32 / 997.0).collect();
        let t = 0.5f32.to_bits();
        let mut sparse = BlockSum::default();
        for (i, &x) in w.iter().enumerate().filter(|(_, x)| x.to_bits() >= t) {
            sparse.add(i, x);
        }
        let full = block_sum(w.len(), |i| if w[i].to_bits() >= t { w[i] } else { 0.0 });
        assert_eq!(sparse.total().to_bits(), full.to_bits());
    }
}
