//! `Backend::sample` on the CPU: each row through the one truncate-and-draw rule,
//! `rill_backend::draw` (which also defines what the CUDA kernel computes).

use rill_backend::{draw_token, BackendError, BackendResult, DrawParams, DrawScratch};

/// Samples `rows` rows of `logits: [rows, vocab]` into `out[..rows]`.
pub(crate) fn sample_rows(logits: &[f32], rows: usize, vocab: usize, params: &[DrawParams], out: &mut [u32]) -> BackendResult<()> {
    crate::check_len("sample", "logits", logits.len(), rows * vocab)?;
    crate::check_len("sample", "params", params.len(), rows)?;
    crate::check_len("sample", "out", out.len(), rows)?;
    if rows == 0 {
        return Ok(());
    }
    if vocab == 0 || vocab > i32::MAX as usize {
        return Err(BackendError::Shape { op: "sample", detail: format!("vocab {vocab} (must be in 1..=2^31-1)") });
    }
    let mut scratch = DrawScratch::default();
    for ((row, p), o) in logits.chunks_exact(vocab).zip(params).zip(out.iter_mut()).take(rows) {
        *o = draw_token(row, p, &mut scratch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_independent_and_shapes_are_checked() {
        let logits = [0.0, 1.0, 2.0, 2.0, 1.0, 0.0];
        let ps = [DrawParams::GREEDY, DrawParams::GREEDY];
        let mut out = [9u32; 3];
        sample_rows(&logits, 2, 3, &ps, &mut out).unwrap();
        assert_eq!(out, [2, 0, 9]);
        assert!(sample_rows(&logits, 3, 3, &ps, &mut out).is_err());
        assert!(sample_rows(&logits, 2, 3, &ps[..1], &mut out).is_err());
        assert!(sample_rows(&logits, 1, 0, &ps, &mut out).is_err());
        assert!(sample_rows(&logits, 0, 0, &[], &mut []).is_ok());
    }
}
