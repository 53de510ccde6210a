//! The paged KV cache in host memory: per layer, K and V each `[num_blocks * block_size,
//! kv_heads, head_dim]`, so a slot (`block * block_size + offset`) is one contiguous row.

use half::f16;
use rill_backend::{BackendError, BackendResult, KvDType, KvLayout};

use crate::check_len;

/// A KV element type: what the cache stores and how attention reads it back.
pub trait KvElem: Copy + Send + Sync + 'static {
    /// True exactly for `half::f16` (SIMD kernels convert it with F16C); otherwise `f32`.
    const IS_F16: bool;
    fn from_f32(v: f32) -> Self;
    fn to_f32(self) -> f32;
    /// `len` zeros from zeroed pages (the OS maps them on first touch). `None` when the
    /// allocation fails.
    fn zeroed(len: usize) -> Option<Vec<Self>>;
}

impl KvElem for f32 {
    const IS_F16: bool = false;
    fn from_f32(v: f32) -> f32 {
        v
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn zeroed(len: usize) -> Option<Vec<f32>> {
        zeroed_pages::<f32>(len)
    }
}

impl KvElem for f16 {
    const IS_F16: bool = true;
    fn from_f32(v: f32) -> f16 {
        f16::from_f32(v)
    }
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn zeroed(len: usize) -> Option<Vec<f16>> {
        zeroed_pages::<f16>(len)
    }
}

/// A vector of `len` all-zero-bits elements allocated with `alloc_zeroed`.
fn zeroed_pages<T: KvElem>(len: usize) -> Option<Vec<T>> {
    use std::alloc::{alloc_zeroed, Layout};
    if len == 0 {
        return Some(Vec::new());
    }
    let layout = Layout::array::<T>(len).ok()?;
    // SAFETY: `layout` has non-zero size; f16 and f32 are plain data for which all-zero bits are
    // the value 0.0, so the zeroed allocation holds `len` initialized elements, and it was made
    // with the global allocator and exactly this layout, as `Vec::from_raw_parts` requires.
    unsafe {
        let ptr = alloc_zeroed(layout) as *mut T;
        if ptr.is_null() {
            return None;
        }
        Some(Vec::from_raw_parts(ptr, len, len))
    }
}

/// One layer's K and V.
pub struct LayerKv<T> {
    pub k: Vec<T>,
    pub v: Vec<T>,
}

pub enum KvStore {
    F16(Vec<LayerKv<f16>>),
    F32(Vec<LayerKv<f32>>),
}

pub struct CpuKvCache {
    pub layout: KvLayout,
    pub store: KvStore,
}

fn layers<T: KvElem>(layout: &KvLayout) -> BackendResult<Vec<LayerKv<T>>> {
    let elems = layout.layer_elems();
    let mut out = Vec::new();
    out.try_reserve_exact(layout.layers).map_err(|_| oom(layout))?;
    for _ in 0..layout.layers {
        let mut k = T::zeroed(elems).ok_or_else(|| oom(layout))?;
        let mut v = T::zeroed(elems).ok_or_else(|| oom(layout))?;
        touch_every_page(&mut k);
        touch_every_page(&mut v);
        out.push(LayerKv { k, v });
    }
    Ok(out)
}

/// Makes the pool resident from the start: the memory a load reserves is then counted in the
/// host's available memory at once, and the next load's fit check (and the operator's RSS graph)
/// sees it, instead of finding out under load. On Linux the kernel populates it in one call
/// (huge pages where it can: far fewer pages to zero and map); elsewhere, or on a kernel without
/// `MADV_POPULATE_WRITE`, one write per page.
fn touch_every_page<T: KvElem>(data: &mut [T]) {
    #[cfg(target_os = "linux")]
    if populate(data.as_mut_ptr() as *mut u8, std::mem::size_of_val(data)) {
        return;
    }
    write_every_page(data);
}

/// `madvise` over the page-aligned part of `[ptr, ptr + len)`: huge pages, then populate for
/// writing. Whether the kernel populated it.
#[cfg(target_os = "linux")]
fn populate(ptr: *mut u8, len: usize) -> bool {
    const MADV_POPULATE_WRITE: libc::c_int = 23;
    const PAGE: usize = 4096;
    let start = (ptr as usize).next_multiple_of(PAGE);
    let end = (ptr as usize + len) / PAGE * PAGE;
    if end <= start {
        return false;
    }
    // SAFETY: the range lies inside one live allocation of ours; neither advice changes its
    // contents (zero pages stay zero), only how and when the kernel backs it.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        libc::madvise(start as *mut libc::c_void, end - start, MADV_POPULATE_WRITE) == 0
    }
}

fn write_every_page<T: KvElem>(data: &mut [T]) {
    const PAGE_BYTES: usize = 4096;
    let step = (PAGE_BYTES / std::mem::size_of::<T>()).max(1);
    for i in (0..data.len()).step_by(step) {
        // SAFETY: `i` is in bounds; a volatile write keeps the compiler from skipping a store of
        // the zero the element already holds.
        unsafe { std::ptr::write_volatile(data.as_mut_ptr().add(i), T::from_f32(0.0)) };
    }
}

fn oom(layout: &KvLayout) -> BackendError {
    BackendError::OutOfMemory { bytes: layout.total_bytes(), what: "the KV cache".into() }
}

impl CpuKvCache {
    pub fn new(layout: KvLayout) -> BackendResult<CpuKvCache> {
        let store = match layout.dtype {
            KvDType::F16 => KvStore::F16(layers(&layout)?),
            KvDType::F32 => KvStore::F32(layers(&layout)?),
        };
        Ok(CpuKvCache { layout, store })
    }

    pub fn write(&mut self, layer: usize, k: &[f32], v: &[f32], slots: &[u32], n: usize) -> BackendResult<()> {
        let row = self.layout.kv_heads * self.layout.head_dim;
        let num_slots = self.layout.num_blocks * self.layout.block_size;
        check_len("write_kv", "k", k.len(), n * row)?;
        check_len("write_kv", "v", v.len(), n * row)?;
        check_len("write_kv", "slots", slots.len(), n)?;
        if layer >= self.layout.layers {
            return Err(BackendError::Shape { op: "write_kv", detail: format!("layer {layer} of {}", self.layout.layers) });
        }
        if let Some(&bad) = slots[..n].iter().find(|&&s| s as usize >= num_slots) {
            return Err(BackendError::Shape { op: "write_kv", detail: format!("slot {bad} of {num_slots}") });
        }
        match &mut self.store {
            KvStore::F16(l) => store_rows(&mut l[layer], k, v, &slots[..n], row),
            KvStore::F32(l) => store_rows(&mut l[layer], k, v, &slots[..n], row),
        }
        Ok(())
    }
}

fn store_rows<T: KvElem>(layer: &mut LayerKv<T>, k: &[f32], v: &[f32], slots: &[u32], row: usize) {
    for (t, &slot) in slots.iter().enumerate() {
        let dst = slot as usize * row..(slot as usize + 1) * row;
        let src = t * row..(t + 1) * row;
        layer.k[dst.clone()].iter_mut().zip(&k[src.clone()]).for_each(|(d, &s)| *d = T::from_f32(s));
        layer.v[dst].iter_mut().zip(&v[src]).for_each(|(d, &s)| *d = T::from_f32(s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(dtype: KvDType) -> KvLayout {
        KvLayout { layers: 2, num_blocks: 3, block_size: 2, kv_heads: 1, head_dim: 2, dtype }
    }

    fn resident_kib() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
    }

    /// The pool is resident as soon as it exists (what a load reserves is what the next load's
    /// fit check and RSS see), and still reads as zeros.
    #[test]
    #[cfg(target_os = "linux")]
    fn a_new_pool_is_resident_and_zero() {
        let before = resident_kib();
        // 2 × 2 × 4096 × 4096 f32 = 256 MiB.
        let cache = CpuKvCache::new(KvLayout { layers: 2, num_blocks: 256, block_size: 16, kv_heads: 4, head_dim: 1024, dtype: KvDType::F32 }).unwrap();
        let grown = resident_kib().saturating_sub(before);
        assert!(grown > 200 << 10, "RSS grew by {grown} KiB for a 256 MiB pool");
        let KvStore::F32(layers) = &cache.store else { unreachable!() };
        assert!(layers.iter().all(|l| l.k.iter().step_by(997).all(|&x| x == 0.0) && l.v.iter().step_by(997).all(|&x| x == 0.0)));
    }

    #[test]
    fn starts_zeroed_and_stores_rows_at_their_slots() {
        for dtype in [KvDType::F16, KvDType::F32] {
            let mut cache = CpuKvCache::new(layout(dtype)).unwrap();
            cache.write(1, &[1.0, 2.0, 3.0, 4.0], &[5.0, 6.0, 7.0, 8.0], &[5, 0], 2).unwrap();
            let (k, v): (Vec<f32>, Vec<f32>) = match &cache.store {
                KvStore::F16(l) => (l[1].k.iter().map(|x| x.to_f32()).collect(), l[1].v.iter().map(|x| x.to_f32()).collect()),
                KvStore::F32(l) => (l[1].k.clone(), l[1].v.clone()),
            };
            assert_eq!(k, vec![3.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0]);
            assert_eq!(v[10..], [5.0, 6.0]);
            assert!(cache.write(0, &[0.0; 2], &[0.0; 2], &[6], 1).is_err(), "slot past the pool");
        }
    }
}
