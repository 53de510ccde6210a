//! GeGLU as llama.cpp's CPU computes it: GELU (tanh approximation) looked up in a table of every
//! f16 input, `gelu(x)` stored rounded to f16 (`ggml_table_gelu_f16`, ggml's `GGML_GELU_FP16`),
//! saturated to 0 below -10 and to `x` above 10. The table is ggml's approximation of the exact
//! function, so matching it is what keeps rill's Gemma logits on llama.cpp's.

use std::sync::OnceLock;

use half::f16;
use rill_backend::{gelu_tanh, BackendResult};

use crate::check_len;

/// `f16(gelu(f32(h)))` for every f16 bit pattern `h`.
fn table() -> &'static [f16] {
    static TABLE: OnceLock<Vec<f16>> = OnceLock::new();
    TABLE.get_or_init(|| (0..=u16::MAX).map(|bits| f16::from_f32(gelu_tanh(f16::from_bits(bits).to_f32()))).collect())
}

/// ggml's `ggml_vec_geglu_f32`: `out = gelu(gate) · up`.
pub fn gelu_mul(gate: &[f32], up: &[f32], len: usize, out: &mut [f32]) -> BackendResult<()> {
    check_len("gelu_mul", "gate", gate.len(), len)?;
    check_len("gelu_mul", "up", up.len(), len)?;
    check_len("gelu_mul", "out", out.len(), len)?;
    let table = table();
    for ((o, &x), &g) in out[..len].iter_mut().zip(&gate[..len]).zip(&up[..len]) {
        *o = if x <= -10.0 {
            0.0
        } else if x >= 10.0 {
            x * g
        } else {
            table[f16::from_f32(x).to_bits() as usize].to_f32() * g
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_exact_function_within_f16_rounding() {
        let xs: Vec<f32> = (-1200..=1200).map(|i| i as f32 / 100.0).collect();
        let ones = vec![1.0; xs.len()];
        let mut out = vec![0.0; xs.len()];
        gelu_mul(&xs, &ones, xs.len(), &mut out).unwrap();
        for (&x, &y) in xs.iter().zip(&out) {
            let exact = gelu_tanh(x);
            let tol = if x.abs() >= 10.0 { 1e-3 } else { 2e-3 * exact.abs().max(1.0) };
            assert!((y - exact).abs() <= tol, "gelu({x}) = {y}, exact {exact}");
        }
        assert_eq!(out[0], 0.0, "saturates below -10");
        assert_eq!(*out.last().unwrap(), 12.0, "is the identity above 10");
    }

    #[test]
    fn multiplies_by_up_after_rounding() {
        let (x, g) = (0.3f32, 3.0f32);
        let mut out = [0.0];
        gelu_mul(&[x], &[g], 1, &mut out).unwrap();
        let rounded = f16::from_f32(gelu_tanh(f16::from_f32(x).to_f32())).to_f32();
        assert_eq!(out[0].to_bits(), (rounded * g).to_bits());
    }
}
