//! The paged KV cache in host memory: per layer, K and V each `[num_blocks * block_size,
//! kv_heads, head_dim]`, so a slot (`block * block_size + offset`) is one contiguous row.

use half::f16;
use rill_backend::{BackendError, BackendResult, KvDType, KvLayout};

use crate::check_len;

/// A KV element type: what the cache stores and how attention reads it back.
pub trait KvElem: Copy + Send + Sync + 'static {
    fn from_f32(v: f32) -> Self;
    fn to_f32(self) -> f32;
}

impl KvElem for f32 {
    fn from_f32(v: f32) -> f32 {
        v
    }
    fn to_f32(self) -> f32 {
        self
    }
}

impl KvElem for f16 {
    fn from_f32(v: f32) -> f16 {
        f16::from_f32(v)
    }
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
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
        let mut k = Vec::new();
        let mut v = Vec::new();
        k.try_reserve_exact(elems).map_err(|_| oom(layout))?;
        v.try_reserve_exact(elems).map_err(|_| oom(layout))?;
        k.resize(elems, T::from_f32(0.0));
        v.resize(elems, T::from_f32(0.0));
        out.push(LayerKv { k, v });
    }
    Ok(out)
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
