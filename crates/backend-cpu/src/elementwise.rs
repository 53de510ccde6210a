//! Row-wise and elementwise kernels: RMSNorm, bias, RoPE, SiLU·up.

use rayon::prelude::*;
use rill_backend::{BackendError, BackendResult, RopeParams};

use crate::check_len;

/// Most rotary pairs per head we keep on the stack (head_dim ≤ 512).
const MAX_ROPE_PAIRS: usize = 256;

pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, rows: usize, dim: usize, out: &mut [f32]) -> BackendResult<()> {
    check_len("rms_norm", "x", x.len(), rows * dim)?;
    check_len("rms_norm", "out", out.len(), rows * dim)?;
    check_len("rms_norm", "weight", weight.len(), dim)?;
    out[..rows * dim].par_chunks_mut(dim).zip(x[..rows * dim].par_chunks(dim)).for_each(|(o, xr)| {
        let mean_sq = xr.iter().map(|v| v * v).sum::<f32>() / dim as f32;
        let scale = 1.0 / (mean_sq + eps).sqrt();
        for ((o, v), w) in o.iter_mut().zip(xr).zip(&weight[..dim]) {
            *o = v * scale * w;
        }
    });
    Ok(())
}

pub fn add_bias(x: &mut [f32], bias: &[f32], rows: usize, dim: usize) -> BackendResult<()> {
    check_len("add_bias", "x", x.len(), rows * dim)?;
    check_len("add_bias", "bias", bias.len(), dim)?;
    for row in x[..rows * dim].chunks_mut(dim) {
        row.iter_mut().zip(&bias[..dim]).for_each(|(a, b)| *a += b);
    }
    Ok(())
}

pub fn rope(x: &mut [f32], positions: &[u32], rows: usize, heads: usize, head_dim: usize, rope: &RopeParams) -> BackendResult<()> {
    check_len("rope", "x", x.len(), rows * heads * head_dim)?;
    check_len("rope", "positions", positions.len(), rows)?;
    let pairs = rope.rot_dim / 2;
    if rope.rot_dim > head_dim || pairs > MAX_ROPE_PAIRS || rope.inv_freq.len() < pairs {
        return Err(BackendError::Shape {
            op: "rope",
            detail: format!("rot_dim {} with head_dim {head_dim} and {} frequencies", rope.rot_dim, rope.inv_freq.len()),
        });
    }
    for (row, &pos) in x[..rows * heads * head_dim].chunks_mut(heads * head_dim).zip(positions) {
        // The angles depend only on the position: compute them once for all heads.
        let mut cos = [0f32; MAX_ROPE_PAIRS];
        let mut sin = [0f32; MAX_ROPE_PAIRS];
        for i in 0..pairs {
            let (s, c) = (pos as f32 * rope.inv_freq[i]).sin_cos();
            cos[i] = c;
            sin[i] = s;
        }
        for head in row.chunks_mut(head_dim) {
            for i in 0..pairs {
                let (a, b) = if rope.neox { (i, i + pairs) } else { (2 * i, 2 * i + 1) };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * cos[i] - x1 * sin[i];
                head[b] = x0 * sin[i] + x1 * cos[i];
            }
        }
    }
    Ok(())
}

pub fn silu_mul(gate: &[f32], up: &[f32], len: usize, out: &mut [f32]) -> BackendResult<()> {
    check_len("silu_mul", "gate", gate.len(), len)?;
    check_len("silu_mul", "up", up.len(), len)?;
    check_len("silu_mul", "out", out.len(), len)?;
    for ((o, g), u) in out[..len].iter_mut().zip(&gate[..len]).zip(&up[..len]) {
        *o = g / (1.0 + (-g).exp()) * u;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_known_answer() {
        let x = [3.0, 4.0];
        let mut out = [0.0; 2];
        rms_norm(&x, &[1.0, 2.0], 0.0, 1, 2, &mut out).unwrap();
        let rms = (12.5f32).sqrt();
        assert!((out[0] - 3.0 / rms).abs() < 1e-6 && (out[1] - 8.0 / rms).abs() < 1e-6);
    }

    #[test]
    fn rope_rotates_pairs_by_position() {
        let rope = RopeParams { rot_dim: 2, inv_freq: vec![1.0], neox: false };
        let mut x = vec![1.0, 0.0, 1.0, 0.0];
        super::rope(&mut x, &[0, 1], 2, 1, 2, &rope).unwrap();
        assert_eq!(&x[..2], &[1.0, 0.0], "position 0 is the identity");
        assert!((x[2] - 1f32.cos()).abs() < 1e-6 && (x[3] - 1f32.sin()).abs() < 1e-6);
    }

    #[test]
    fn neox_pairs_halves() {
        let rope = RopeParams { rot_dim: 4, inv_freq: vec![1.0, 0.0], neox: true };
        let mut x = vec![1.0, 5.0, 0.0, 7.0];
        super::rope(&mut x, &[1], 1, 1, 4, &rope).unwrap();
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[2] - 1f32.sin()).abs() < 1e-6);
        assert_eq!((x[1], x[3]), (5.0, 7.0), "zero frequency leaves the pair alone");
    }

    #[test]
    fn short_buffers_are_errors() {
        let mut out = [0.0; 1];
        assert!(silu_mul(&[1.0], &[1.0], 2, &mut out).is_err());
    }
}
