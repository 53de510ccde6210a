//! `Backend::sample` (`kernels/sample.cu`, one 1024-thread block per row) and `read_indices`.
//! The rule and this kernel's arithmetic order are defined by `rill_backend::draw`, which every
//! other sampling path (the host sampler, the CPU backend) runs.
//!
//! The parameters travel in a device buffer (one `SampleRow` per row) allocated with the backend
//! for `SAMPLE_PARAM_ROWS` rows and grown here if a call needs more; no recorded graph points at
//! it. Uploading them is a host-to-device copy, so `sample`, like `read`, is refused while a
//! graph is being captured: the forward pass samples after replaying a recorded step.

use rill_backend::{BackendError, BackendResult, DrawParams};

use crate::args::{self, SampleArgs, SampleRow};
use crate::memory::{addr, check_len, ensure, to_i32, CudaBuffer, CudaIndices};
use crate::CudaBackend;

impl CudaBackend {
    pub(crate) fn sample_rows(&self, logits: &CudaBuffer, rows: usize, vocab: usize, params: &[DrawParams], out: &mut CudaIndices) -> BackendResult<()> {
        self.not_capturing("sample")?;
        check_len("sample", "logits", logits.len, rows * vocab)?;
        check_len("sample", "params", params.len(), rows)?;
        check_len("sample", "out", out.len, rows)?;
        if rows == 0 {
            return Ok(());
        }
        if vocab == 0 {
            return Err(BackendError::Shape { op: "sample", detail: "a vocabulary of 0 tokens".into() });
        }
        let a = {
            let s = &self.dev.stream;
            let mut st = self.state.borrow_mut();
            let st = &mut *st;
            st.sample_host.clear();
            st.sample_host.extend(params[..rows].iter().map(|p| SampleRow { temperature: p.temperature, top_k: p.top_k, top_p: p.top_p, min_p: p.min_p, uniform: p.uniform }));
            ensure(s, &mut st.sample_params, rows.max(args::SAMPLE_PARAM_ROWS), "sampling parameters")?;
            let dst = st.sample_params.as_mut().expect("ensured");
            let mut view = dst.slice_mut(..rows);
            s.memcpy_htod(&st.sample_host[..], &mut view).map_err(|e| BackendError::Device(format!("sample: uploading parameters: {e}")))?;
            SampleArgs {
                logits: addr(&logits.data, s),
                params: addr(dst, s),
                out: addr(&out.data, s),
                rows: to_i32("sample", "rows", rows)?,
                vocab: to_i32("sample", "vocab", vocab)?,
            }
        };
        to_i32("sample", "logits", rows * vocab)?;
        self.dev.launch(&self.dev.kernels.sample, (rows as u32, 1, 1), args::SAMPLE_THREADS, 0, &a, "sample")
    }
}
