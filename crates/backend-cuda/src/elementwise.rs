//! The small ops (`kernels/elementwise.cu`): argument checks as the CPU backend makes them, then
//! one launch each whose shape depends only on the sizes.

use rill_backend::{Activation, BackendError, BackendResult, KvDType, RopeParams};

use crate::args::{self, AddArgs, AddBiasArgs, GatherArgs, GluArgs, RmsNormArgs, RopeArgs, ScaleArgs, WriteKvArgs};
use crate::memory::{addr, check_len, to_i32, CudaBuffer, CudaIndices, CudaKvCache};
use crate::CudaBackend;

impl CudaBackend {
    pub(crate) fn rms_norm_rows(&self, x: &CudaBuffer, weight: &CudaBuffer, eps: f32, rows: usize, dim: usize, out: &mut CudaBuffer) -> BackendResult<()> {
        check_len("rms_norm", "x", x.len, rows * dim)?;
        check_len("rms_norm", "out", out.len, rows * dim)?;
        check_len("rms_norm", "weight", weight.len, dim)?;
        if rows == 0 || dim == 0 {
            return Ok(());
        }
        let s = &self.dev.stream;
        let a = RmsNormArgs {
            x: addr(&x.data, s),
            weight: addr(&weight.data, s),
            out: addr(&out.data, s),
            rows: to_i32("rms_norm", "rows", rows)?,
            dim: to_i32("rms_norm", "dim", dim)?,
            eps,
            pad: 0,
        };
        self.dev.launch(&self.dev.kernels.rms_norm, (rows as u32, 1, 1), args::EW_THREADS, 0, &a, "rms_norm")
    }

    pub(crate) fn rope_rows(&self, x: &mut CudaBuffer, positions: &CudaIndices, rows: usize, heads: usize, head_dim: usize, rope: &RopeParams) -> BackendResult<()> {
        check_len("rope", "x", x.len, rows * heads * head_dim)?;
        check_len("rope", "positions", positions.len, rows)?;
        let pairs = rope.rot_dim / 2;
        rope.check(head_dim).map_err(|detail| BackendError::Shape { op: "rope", detail })?;
        if pairs > args::MAX_ROPE_PAIRS {
            return Err(BackendError::Shape { op: "rope", detail: format!("rot_dim {} over {}", rope.rot_dim, 2 * args::MAX_ROPE_PAIRS) });
        }
        if rows == 0 || heads == 0 || pairs == 0 {
            return Ok(());
        }
        let s = &self.dev.stream;
        let mut factors = [1f32; args::MAX_ROPE_PAIRS];
        factors[..rope.freq_factors.len()].copy_from_slice(&rope.freq_factors);
        let a = RopeArgs {
            x: addr(&x.data, s),
            positions: addr(&positions.data, s),
            rows: to_i32("rope", "rows", rows)?,
            heads: to_i32("rope", "heads", heads)?,
            head_dim: to_i32("rope", "head_dim", head_dim)?,
            pairs: pairs as i32,
            neox: rope.neox as i32,
            theta_scale: rope.theta_scale,
            freq_scale: rope.freq_scale,
            mscale: rope.mscale,
            has_factors: !rope.freq_factors.is_empty() as i32,
            pad: 0,
            factors,
        };
        to_i32("rope", "row size", rows * heads * head_dim)?;
        self.dev.launch(&self.dev.kernels.rope, (rows as u32, 1, 1), args::EW_THREADS, 0, &a, "rope")
    }

    pub(crate) fn glu_elems(&self, act: Activation, gate: &CudaBuffer, up: &CudaBuffer, len: usize, out: &mut CudaBuffer) -> BackendResult<()> {
        check_len("glu", "gate", gate.len, len)?;
        check_len("glu", "up", up.len, len)?;
        check_len("glu", "out", out.len, len)?;
        if len == 0 {
            return Ok(());
        }
        let s = &self.dev.stream;
        let a = GluArgs { gate: addr(&gate.data, s), up: addr(&up.data, s), out: addr(&out.data, s), n: len as i64 };
        let (kernel, name) = match act {
            Activation::Silu => (&self.dev.kernels.silu_mul, "silu_mul"),
            Activation::GeluTanh => (&self.dev.kernels.gelu_mul, "gelu_mul"),
        };
        self.dev.launch(kernel, (args::ew_blocks(len), 1, 1), args::EW_THREADS, 0, &a, name)
    }

    /// `x *= factor` (`scale`), or `x = factor · tanh(x / factor)` (`softcap`).
    pub(crate) fn scale_elems(&self, x: &mut CudaBuffer, factor: f32, len: usize, softcap: bool) -> BackendResult<()> {
        let name = if softcap { "softcap" } else { "scale" };
        check_len(name, "x", x.len, len)?;
        if len == 0 {
            return Ok(());
        }
        let a = ScaleArgs { x: addr(&x.data, &self.dev.stream), n: len as i64, factor, pad: 0 };
        let kernel = if softcap { &self.dev.kernels.softcap } else { &self.dev.kernels.scale };
        self.dev.launch(kernel, (args::ew_blocks(len), 1, 1), args::EW_THREADS, 0, &a, name)
    }

    pub(crate) fn add_elems(&self, x: &mut CudaBuffer, y: &CudaBuffer, len: usize) -> BackendResult<()> {
        check_len("add", "x", x.len, len)?;
        check_len("add", "y", y.len, len)?;
        if len == 0 {
            return Ok(());
        }
        let s = &self.dev.stream;
        let a = AddArgs { x: addr(&x.data, s), y: addr(&y.data, s), n: len as i64 };
        self.dev.launch(&self.dev.kernels.add, (args::ew_blocks(len), 1, 1), args::EW_THREADS, 0, &a, "add")
    }

    pub(crate) fn add_bias_rows(&self, x: &mut CudaBuffer, bias: &CudaBuffer, rows: usize, dim: usize) -> BackendResult<()> {
        check_len("add_bias", "x", x.len, rows * dim)?;
        check_len("add_bias", "bias", bias.len, dim)?;
        if rows == 0 || dim == 0 {
            return Ok(());
        }
        let s = &self.dev.stream;
        let n = rows * dim;
        let a = AddBiasArgs { x: addr(&x.data, s), bias: addr(&bias.data, s), n: n as i64, dim: to_i32("add_bias", "dim", dim)?, pad: 0 };
        self.dev.launch(&self.dev.kernels.add_bias, (args::ew_blocks(n), 1, 1), args::EW_THREADS, 0, &a, "add_bias")
    }

    pub(crate) fn gather(&self, x: &CudaBuffer, rows: &CudaIndices, n: usize, dim: usize, out: &mut CudaBuffer) -> BackendResult<()> {
        check_len("gather_rows", "rows", rows.len, n)?;
        check_len("gather_rows", "out", out.len, n * dim)?;
        if n == 0 || dim == 0 {
            return Ok(());
        }
        let s = &self.dev.stream;
        let a = GatherArgs {
            x: addr(&x.data, s),
            rows: addr(&rows.data, s),
            out: addr(&out.data, s),
            x_rows: (x.len / dim) as i64,
            n: to_i32("gather_rows", "n", n)?,
            dim: to_i32("gather_rows", "dim", dim)?,
        };
        self.dev.launch(&self.dev.kernels.gather_rows, (args::ew_blocks(n * dim), 1, 1), args::EW_THREADS, 0, &a, "gather_rows")
    }

    pub(crate) fn store_kv(&self, cache: &mut CudaKvCache, layer: usize, k: &CudaBuffer, v: &CudaBuffer, slots: &CudaIndices, n: usize) -> BackendResult<()> {
        let l = cache.layout;
        let row = l.kv_heads * l.head_dim;
        check_len("write_kv", "k", k.len, n * row)?;
        check_len("write_kv", "v", v.len, n * row)?;
        check_len("write_kv", "slots", slots.len, n)?;
        if layer >= l.layers {
            return Err(BackendError::Shape { op: "write_kv", detail: format!("layer {layer} of {}", l.layers) });
        }
        if n == 0 || row == 0 {
            return Ok(());
        }
        let s = &self.dev.stream;
        let a = WriteKvArgs {
            k: addr(&k.data, s),
            v: addr(&v.data, s),
            slots: addr(&slots.data, s),
            k_cache: addr(&cache.k[layer], s),
            v_cache: addr(&cache.v[layer], s),
            num_slots: (l.num_blocks * l.block_size) as i64,
            n: to_i32("write_kv", "n", n)?,
            row: to_i32("write_kv", "row", row)?,
            f16: (l.dtype == KvDType::F16) as i32,
            pad: 0,
        };
        self.dev.launch(&self.dev.kernels.write_kv, (args::ew_blocks(n * row), 1, 1), args::EW_THREADS, 0, &a, "write_kv")
    }
}
