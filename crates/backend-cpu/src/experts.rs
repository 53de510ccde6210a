//! Mixture-of-experts kernels, as llama.cpp's `build_moe_ffn` computes them on its CPU backend:
//! routing (softmax, top-k, optional normalization), the per-slot expert matmul (ggml's
//! `mul_mat_id`), and the weighted sum of the slots.
//!
//! The expert matmul groups the slots by expert and runs one ordinary matmul per active expert
//! over its rows (gathered, multiplied, scattered back). Every matmul row is computed alone
//! (`matmul` is batch-invariant), so a token's output never depends on how its neighbours were
//! routed.

use rill_backend::{group_slots_by_expert, BackendError, BackendResult, ExpertRoute};

use crate::matmul::{matmul_grouped, CpuMatrix, Group, MatmulMode};
use crate::simd::{expf_ggml_scalar, expf_glibc, tree8};
use crate::{check_len, WorkerPool};

/// Elements ggml's AVX-512 `ggml_vec_soft_max_f32` exponentiates per vector (the rest go through
/// libm's `expf`).
const SOFTMAX_LANES: usize = 16;

/// Per row of `logits`, the chosen expert ids and weights (see `Backend::route_experts`).
pub fn route(logits: &[f32], rows: usize, route: &ExpertRoute, ids: &mut [u32], weights: &mut [f32]) -> BackendResult<()> {
    let (e, k) = (route.experts, route.used);
    if k == 0 || k > e {
        return Err(BackendError::Shape { op: "route_experts", detail: format!("{k} of {e} experts") });
    }
    check_len("route_experts", "logits", logits.len(), rows * e)?;
    check_len("route_experts", "ids", ids.len(), rows * k)?;
    check_len("route_experts", "weights", weights.len(), rows * k)?;
    let mut probs = vec![0f32; e];
    let mut order: Vec<u32> = Vec::with_capacity(e);
    for r in 0..rows {
        softmax(&logits[r * e..(r + 1) * e], &mut probs);
        order.clear();
        order.extend(0..e as u32);
        // Descending; equal probabilities keep the lower expert first (a stable sort).
        order.sort_by(|&a, &b| probs[b as usize].total_cmp(&probs[a as usize]));
        let (ids, w) = (&mut ids[r * k..(r + 1) * k], &mut weights[r * k..(r + 1) * k]);
        for (j, &x) in order[..k].iter().enumerate() {
            ids[j] = x;
            w[j] = probs[x as usize];
        }
        if route.normalize {
            // ggml_sum_rows (a plain sum in order), clamped to the smallest f16 normal, then a division.
            let sum = w.iter().fold(0f32, |s, &v| s + v).max(6.103_515_6e-5);
            w.iter_mut().for_each(|v| *v /= sum);
        }
        if route.scale != 0.0 && route.scale != 1.0 {
            w.iter_mut().for_each(|v| *v *= route.scale);
        }
    }
    Ok(())
}

/// ggml's `soft_max` of one row on its AVX-512 build: `e = exp(x − max)` (ggml's vector `expf`
/// on whole groups of 16, libm's on the rest), the sum in f64 of each group's `reduce_add` and
/// of the rest, then `e · (1 / sum)` with the inverse rounded to f32.
fn softmax(x: &[f32], out: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0f64;
    let whole = x.len() / SOFTMAX_LANES * SOFTMAX_LANES;
    for (xs, ys) in x[..whole].chunks_exact(SOFTMAX_LANES).zip(out[..whole].chunks_exact_mut(SOFTMAX_LANES)) {
        for (y, &v) in ys.iter_mut().zip(xs) {
            *y = expf_ggml_scalar(v - max);
        }
        // `_mm512_reduce_add_ps`: halves, then ggml's 8-lane tree.
        sum += tree8(&std::array::from_fn(|l| ys[l + 8] + ys[l])) as f64;
    }
    for (y, &v) in out[whole..].iter_mut().zip(&x[whole..]) {
        *y = expf_glibc(v - max);
        sum += *y as f64;
    }
    let inv = (1.0 / sum) as f32;
    out.iter_mut().for_each(|v| *v *= inv);
}

/// Scratch for [`matmul_experts`]: the slots sorted by expert, their input rows and outputs.
#[derive(Default)]
pub struct ExpertScratch {
    counts: Vec<usize>,
    slots: Vec<u32>,
    x: Vec<f32>,
    out: Vec<f32>,
}

/// `out[s] = x[r(s)] · experts[ids[s]]ᵀ` (see `Backend::matmul_experts`).
#[allow(clippy::too_many_arguments)]
pub fn matmul_experts(
    pool: &WorkerPool,
    mode: MatmulMode,
    scratch: &mut ExpertScratch,
    x: &[f32],
    x_per_slot: bool,
    rows: usize,
    used: usize,
    ids: &[u32],
    experts: &[CpuMatrix],
    out: &mut [f32],
) -> BackendResult<()> {
    let Some(first) = experts.first() else {
        return Err(BackendError::Shape { op: "matmul_experts", detail: "no experts".into() });
    };
    let (cols, m, slots) = (first.cols(), first.rows(), rows * used);
    if experts.iter().any(|w| w.cols() != cols || w.rows() != m) {
        return Err(BackendError::Shape { op: "matmul_experts", detail: "experts of different shapes".into() });
    }
    check_len("matmul_experts", "ids", ids.len(), slots)?;
    check_len("matmul_experts", "x", x.len(), if x_per_slot { slots } else { rows } * cols)?;
    check_len("matmul_experts", "out", out.len(), slots * m)?;
    if let Some(&bad) = ids[..slots].iter().find(|&&e| e as usize >= experts.len()) {
        return Err(BackendError::Shape { op: "matmul_experts", detail: format!("expert {bad} of {}", experts.len()) });
    }
    // Slots grouped by expert (in slot order within each), their input rows gathered in that
    // order; every active expert is one group of one pooled call.
    group_slots_by_expert(&ids[..slots], experts.len(), &mut scratch.counts, &mut scratch.slots);
    scratch.x.resize(slots * cols, 0.0);
    scratch.out.resize(slots * m, 0.0);
    for (i, &s) in scratch.slots.iter().enumerate() {
        let r = if x_per_slot { s as usize } else { s as usize / used };
        scratch.x[i * cols..(i + 1) * cols].copy_from_slice(&x[r * cols..(r + 1) * cols]);
    }
    let mut groups = Vec::with_capacity(experts.len());
    let (mut xs, mut outs) = (&scratch.x[..], &mut scratch.out[..]);
    for (w, &n) in experts.iter().zip(&scratch.counts) {
        let (x, rest_x) = xs.split_at(n * cols);
        let (out, rest_out) = std::mem::take(&mut outs).split_at_mut(n * m);
        (xs, outs) = (rest_x, rest_out);
        if n > 0 {
            groups.push(Group { w, x, rows: n, out });
        }
    }
    matmul_grouped(pool, mode, &mut groups)?;
    for (i, &s) in scratch.slots.iter().enumerate() {
        out[s as usize * m..(s as usize + 1) * m].copy_from_slice(&scratch.out[i * m..(i + 1) * m]);
    }
    Ok(())
}

/// `out[r] = Σⱼ y[r·used + j] · weights[r·used + j]`, slots added in order.
pub fn combine(y: &[f32], weights: &[f32], rows: usize, used: usize, dim: usize, out: &mut [f32]) -> BackendResult<()> {
    check_len("combine_experts", "y", y.len(), rows * used * dim)?;
    check_len("combine_experts", "weights", weights.len(), rows * used)?;
    check_len("combine_experts", "out", out.len(), rows * dim)?;
    for r in 0..rows {
        let o = &mut out[r * dim..(r + 1) * dim];
        for j in 0..used {
            let (w, ys) = (weights[r * used + j], &y[(r * used + j) * dim..(r * used + j + 1) * dim]);
            if j == 0 {
                o.iter_mut().zip(ys).for_each(|(o, &v)| *o = v * w);
            } else {
                o.iter_mut().zip(ys).for_each(|(o, &v)| *o += v * w);
            }
        }
    }
    Ok(())
}

/// `x[r] += y[r] · (silu(g) / g)` with `g = gate[r]` (see `Backend::add_gated`). The gate is a
/// `[1, rows]` tensor in ggml, so its `silu` runs the scalar tail of `ggml_vec_silu_f32`:
/// `g / (1 + expf(−g))` with libm's `expf`.
pub fn add_gated(x: &mut [f32], y: &[f32], gate: &[f32], rows: usize, dim: usize) -> BackendResult<()> {
    check_len("add_gated", "x", x.len(), rows * dim)?;
    check_len("add_gated", "y", y.len(), rows * dim)?;
    check_len("add_gated", "gate", gate.len(), rows)?;
    for r in 0..rows {
        let g = gate[r];
        let sigmoid = g / (1.0 + expf_glibc(-g)) / g;
        x[r * dim..(r + 1) * dim].iter_mut().zip(&y[r * dim..(r + 1) * dim]).for_each(|(x, &v)| *x += v * sigmoid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_backend::{quant, DType, MatrixSource, SharedBytes};

    fn route_of(experts: usize, used: usize, normalize: bool) -> ExpertRoute {
        ExpertRoute { experts, used, normalize, scale: 1.0 }
    }

    #[test]
    fn routing_picks_the_largest_probabilities_in_order() {
        // Two tokens over 5 experts: softmax preserves order, so ids follow the logits.
        let logits = [0.1, 2.0, -1.0, 1.5, 2.0, 3.0, 0.0, 0.0, 0.0, -3.0];
        let (mut ids, mut w) = (vec![0; 4], vec![0.0; 4]);
        route(&logits, 2, &route_of(5, 2, false), &mut ids, &mut w).unwrap();
        assert_eq!(ids, [1, 4, 0, 1], "ties go to the lower expert");
        let p = |row: &[f32], i: usize| (row[i] as f64).exp() / row.iter().map(|&v| (v as f64).exp()).sum::<f64>();
        for (j, (&id, &got)) in ids.iter().zip(&w).enumerate() {
            let want = p(&logits[(j / 2) * 5..(j / 2 + 1) * 5], id as usize);
            assert!((got as f64 - want).abs() < 1e-6, "slot {j}: {got} vs {want}");
        }
        route(&logits, 2, &route_of(5, 2, true), &mut ids, &mut w).unwrap();
        for r in 0..2 {
            assert!((w[2 * r] + w[2 * r + 1] - 1.0).abs() < 1e-6);
        }
        assert!(route(&logits, 2, &route_of(5, 6, true), &mut ids, &mut w).is_err());
    }

    /// 20 experts: the first 16 through ggml's vector `expf`, the rest through libm's; the
    /// probabilities still sum to 1 and keep the logits' order.
    #[test]
    fn softmax_over_a_vector_and_a_tail() {
        let x: Vec<f32> = (0..20).map(|i| (i as f32 * 0.7).sin() * 4.0).collect();
        let mut p = vec![0.0; 20];
        softmax(&x, &mut p);
        assert!((p.iter().map(|&v| v as f64).sum::<f64>() - 1.0).abs() < 1e-6);
        let exact: f64 = x.iter().map(|&v| (v as f64).exp()).sum();
        for (i, (&got, &v)) in p.iter().zip(&x).enumerate() {
            assert!(((got as f64) - (v as f64).exp() / exact).abs() < 1e-6, "{i}");
        }
    }

    fn matrix(rows: usize, cols: usize, seed: f32) -> CpuMatrix {
        let values: Vec<f32> = (0..rows * cols).map(|i| (i as f32 * 0.37 + seed).sin()).collect();
        let rb = DType::Q8_0.row_bytes(cols).unwrap();
        let mut bytes = vec![0u8; rows * rb];
        for r in 0..rows {
            quant::quantize_row(DType::Q8_0, &values[r * cols..(r + 1) * cols], &mut bytes[r * rb..(r + 1) * rb]).unwrap();
        }
        CpuMatrix::new(MatrixSource { name: format!("e{seed}"), dtype: DType::Q8_0, rows, cols, bytes: SharedBytes::from_vec(bytes) }).unwrap()
    }

    /// Each slot's row equals that token's row multiplied alone by its expert, whatever the
    /// other tokens chose (batch invariance), for inputs per token and per slot.
    #[test]
    fn expert_matmul_is_each_row_alone() {
        let (cols, m, rows, used) = (64, 24, 5, 2);
        let experts: Vec<CpuMatrix> = (0..4).map(|e| matrix(m, cols, e as f32)).collect();
        let ids = [3, 0, 1, 3, 0, 2, 2, 1, 3, 1];
        let pool = WorkerPool::new(2).unwrap();
        let mut scratch = ExpertScratch::default();
        for x_per_slot in [false, true] {
            let x: Vec<f32> = (0..if x_per_slot { rows * used } else { rows } * cols).map(|i| (i as f32 * 0.13).cos()).collect();
            let mut out = vec![f32::NAN; rows * used * m];
            matmul_experts(&pool, MatmulMode::Integer, &mut scratch, &x, x_per_slot, rows, used, &ids, &experts, &mut out).unwrap();
            for s in 0..rows * used {
                let r = if x_per_slot { s } else { s / used };
                let mut alone = vec![0.0; m];
                experts[ids[s] as usize].matmul(&pool, MatmulMode::Integer, &x[r * cols..(r + 1) * cols], 1, &mut alone).unwrap();
                assert_eq!(&out[s * m..(s + 1) * m], &alone[..], "slot {s}");
            }
        }
        let bad = [4, 0, 1, 3, 0, 2, 2, 1, 3, 1];
        let x = vec![0.0; rows * cols];
        let mut out = vec![0.0; rows * used * m];
        assert!(matmul_experts(&pool, MatmulMode::Integer, &mut scratch, &x, false, rows, used, &bad, &experts, &mut out).is_err());
    }

    #[test]
    fn combine_weights_slots_in_order_and_gate_adds_a_sigmoid() {
        let (rows, used, dim) = (2, 3, 2);
        let y: Vec<f32> = (0..rows * used * dim).map(|i| i as f32).collect();
        let w = [0.5, 0.25, 0.25, 1.0, 0.0, 2.0];
        let mut out = vec![f32::NAN; rows * dim];
        combine(&y, &w, rows, used, dim, &mut out).unwrap();
        assert_eq!(out, [0.5 * 0.0 + 0.25 * 2.0 + 0.25 * 4.0, 0.5 * 1.0 + 0.25 * 3.0 + 0.25 * 5.0, 6.0 + 2.0 * 10.0, 7.0 + 2.0 * 11.0]);
        let mut x = vec![1.0; rows * dim];
        let gate = [-0.5f32, 3.0];
        add_gated(&mut x, &[2.0, 4.0, 2.0, 4.0], &gate, rows, dim).unwrap();
        for (i, &v) in x.iter().enumerate() {
            let s = 1.0 / (1.0 + (-(gate[i / dim] as f64)).exp());
            let want = 1.0 + [2.0, 4.0][i % dim] * s;
            assert!((v as f64 - want).abs() < 1e-6, "{i}: {v} vs {want}");
        }
    }
}
