//! Mixture of experts on the GPU (`kernels/experts.cu`): routing, the weighted sum of the slots and
//! the shared expert's gate are kernels. The expert matmul reads the chosen ids back to the host (a
//! device sync, so the forward pass does not record a mixture's decode steps into graphs), groups
//! the slots by expert, and runs each active expert's rows through the ordinary matmul: gathered
//! into staging, multiplied, scattered back to their slots. Each slot's row is then what the
//! matmul gives that row, whatever else was routed where.

use rill_backend::{group_slots_by_expert, BackendError, BackendResult, ExpertRoute};

use crate::args::{self, CombineArgs, GatedAddArgs, GatherArgs, RouteArgs, ScatterArgs};
use crate::memory::{addr, alloc_zeros, check_len, to_i32, CudaBuffer, CudaIndices, CudaMatrix};
use crate::CudaBackend;

/// The expert matmul's staging, grown to the largest call and reused.
#[derive(Default)]
pub(crate) struct ExpertStage {
    ids: Vec<u32>,
    counts: Vec<usize>,
    /// Slots grouped by expert, and the input row of each in that order.
    slots: Vec<u32>,
    sources: Vec<u32>,
    x: Option<CudaBuffer>,
    out: Option<CudaBuffer>,
    slots_dev: Option<CudaIndices>,
    sources_dev: Option<CudaIndices>,
}

impl CudaBackend {
    pub(crate) fn route_rows(&self, logits: &CudaBuffer, rows: usize, route: &ExpertRoute, ids: &mut CudaIndices, weights: &mut CudaBuffer) -> BackendResult<()> {
        let (e, k) = (route.experts, route.used);
        if k == 0 || k > e {
            return Err(BackendError::Shape { op: "route_experts", detail: format!("{k} of {e} experts") });
        }
        check_len("route_experts", "logits", logits.len, rows * e)?;
        check_len("route_experts", "ids", ids.len, rows * k)?;
        check_len("route_experts", "weights", weights.len, rows * k)?;
        if rows == 0 {
            return Ok(());
        }
        let s = &self.dev.stream;
        let a = RouteArgs {
            logits: addr(&logits.data, s),
            ids: addr(&ids.data, s),
            weights: addr(&weights.data, s),
            rows: to_i32("route_experts", "rows", rows)?,
            experts: to_i32("route_experts", "experts", e)?,
            used: to_i32("route_experts", "used", k)?,
            normalize: route.normalize as i32,
            scale: route.scale,
            pad: 0,
        };
        let grid = rows.div_ceil(args::EW_THREADS as usize) as u32;
        self.dev.launch(&self.dev.kernels.route_experts, (grid, 1, 1), args::EW_THREADS, 0, &a, "route_experts")
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn expert_matmul(&self, x: &CudaBuffer, x_per_slot: bool, rows: usize, used: usize, ids: &CudaIndices, experts: &[CudaMatrix], out: &mut CudaBuffer) -> BackendResult<()> {
        let Some(first) = experts.first() else {
            return Err(BackendError::Shape { op: "matmul_experts", detail: "no experts".into() });
        };
        let (cols, m, slots) = (first.cols(), first.rows(), rows * used);
        if experts.iter().any(|w| w.cols() != cols || w.rows() != m) {
            return Err(BackendError::Shape { op: "matmul_experts", detail: "experts of different shapes".into() });
        }
        check_len("matmul_experts", "ids", ids.len, slots)?;
        check_len("matmul_experts", "x", x.len, if x_per_slot { slots } else { rows } * cols)?;
        check_len("matmul_experts", "out", out.len, slots * m)?;
        if slots == 0 {
            return Ok(());
        }
        let mut stage = std::mem::take(&mut self.state.borrow_mut().experts);
        let result = self.expert_matmul_staged(&mut stage, x, x_per_slot, rows, used, ids, experts, out);
        self.state.borrow_mut().experts = stage;
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn expert_matmul_staged(&self, st: &mut ExpertStage, x: &CudaBuffer, x_per_slot: bool, rows: usize, used: usize, ids: &CudaIndices, experts: &[CudaMatrix], out: &mut CudaBuffer) -> BackendResult<()> {
        let (cols, m, slots) = (experts[0].cols(), experts[0].rows(), rows * used);
        st.ids.resize(slots, 0);
        self.download("matmul_experts", &ids.data, ids.len, &mut st.ids)?;
        if let Some(&bad) = st.ids.iter().find(|&&e| e as usize >= experts.len()) {
            return Err(BackendError::Shape { op: "matmul_experts", detail: format!("expert {bad} of {}", experts.len()) });
        }
        group_slots_by_expert(&st.ids, experts.len(), &mut st.counts, &mut st.slots);
        st.sources.clear();
        st.sources.extend(st.slots.iter().map(|&s| if x_per_slot { s } else { s / used as u32 }));
        let most = st.counts.iter().copied().max().unwrap_or(0);
        let s = &self.dev.stream;
        let grow = |b: &mut Option<CudaBuffer>, len: usize| -> BackendResult<()> {
            if b.as_ref().is_none_or(|b| b.len < len) {
                *b = Some(CudaBuffer { data: alloc_zeros::<f32>(s, len, "expert staging")?, len });
            }
            Ok(())
        };
        grow(&mut st.x, most * cols)?;
        grow(&mut st.out, most * m)?;
        for idx in [&mut st.slots_dev, &mut st.sources_dev] {
            if idx.as_ref().is_none_or(|i| i.len < slots) {
                *idx = Some(CudaIndices { data: alloc_zeros::<u32>(s, slots, "expert slots")?, len: slots });
            }
        }
        let (sx, so) = (st.x.as_mut().expect("grown"), st.out.as_mut().expect("grown"));
        let (slots_dev, sources_dev) = (st.slots_dev.as_mut().expect("grown"), st.sources_dev.as_mut().expect("grown"));
        self.upload("matmul_experts", &st.slots, &mut slots_dev.data, slots_dev.len)?;
        self.upload("matmul_experts", &st.sources, &mut sources_dev.data, sources_dev.len)?;
        let u32_bytes = std::mem::size_of::<u32>() as u64;
        let mut first = 0usize;
        for (w, &n) in experts.iter().zip(&st.counts) {
            if n == 0 {
                continue;
            }
            let gather = GatherArgs {
                x: addr(&x.data, s),
                rows: addr(&sources_dev.data, s) + first as u64 * u32_bytes,
                out: addr(&sx.data, s),
                x_rows: (x.len / cols) as i64,
                n: to_i32("matmul_experts", "rows", n)?,
                dim: to_i32("matmul_experts", "cols", cols)?,
            };
            self.dev.launch(&self.dev.kernels.gather_rows, (args::ew_blocks(n * cols), 1, 1), args::EW_THREADS, 0, &gather, "matmul_experts")?;
            self.matmul_jobs(sx, n, &mut [(w, &mut *so)])?;
            let scatter = ScatterArgs {
                src: addr(&so.data, s),
                rows: addr(&slots_dev.data, s) + first as u64 * u32_bytes,
                out: addr(&out.data, s),
                out_rows: slots as i64,
                n: to_i32("matmul_experts", "rows", n)?,
                dim: to_i32("matmul_experts", "outputs", m)?,
            };
            self.dev.launch(&self.dev.kernels.scatter_rows, (args::ew_blocks(n * m), 1, 1), args::EW_THREADS, 0, &scatter, "matmul_experts")?;
            first += n;
        }
        Ok(())
    }

    pub(crate) fn combine_rows(&self, y: &CudaBuffer, weights: &CudaBuffer, rows: usize, used: usize, dim: usize, out: &mut CudaBuffer) -> BackendResult<()> {
        check_len("combine_experts", "y", y.len, rows * used * dim)?;
        check_len("combine_experts", "weights", weights.len, rows * used)?;
        check_len("combine_experts", "out", out.len, rows * dim)?;
        if rows == 0 || dim == 0 || used == 0 {
            return Ok(());
        }
        let s = &self.dev.stream;
        let a = CombineArgs {
            y: addr(&y.data, s),
            weights: addr(&weights.data, s),
            out: addr(&out.data, s),
            n: (rows * dim) as i64,
            used: to_i32("combine_experts", "used", used)?,
            dim: to_i32("combine_experts", "dim", dim)?,
        };
        self.dev.launch(&self.dev.kernels.combine_experts, (args::ew_blocks(rows * dim), 1, 1), args::EW_THREADS, 0, &a, "combine_experts")
    }

    pub(crate) fn gated_add(&self, x: &mut CudaBuffer, y: &CudaBuffer, gate: &CudaBuffer, rows: usize, dim: usize) -> BackendResult<()> {
        check_len("add_gated", "x", x.len, rows * dim)?;
        check_len("add_gated", "y", y.len, rows * dim)?;
        check_len("add_gated", "gate", gate.len, rows)?;
        if rows == 0 || dim == 0 {
            return Ok(());
        }
        let s = &self.dev.stream;
        let a = GatedAddArgs {
            x: addr(&x.data, s),
            y: addr(&y.data, s),
            gate: addr(&gate.data, s),
            n: (rows * dim) as i64,
            dim: to_i32("add_gated", "dim", dim)?,
            pad: 0,
        };
        self.dev.launch(&self.dev.kernels.add_gated, (args::ew_blocks(rows * dim), 1, 1), args::EW_THREADS, 0, &a, "add_gated")
    }
}
