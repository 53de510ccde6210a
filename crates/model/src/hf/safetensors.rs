//! Safetensors weights, one file or sharded (`model.safetensors.index.json`), memory-mapped:
//! every tensor is handed out as a `SharedBytes` range of its file's mmap, never copied.
//!
//! A weights file is untrusted input. The `safetensors` crate validates the header (JSON,
//! known dtypes, contiguous non-overlapping offsets, sizes matching shapes, the data section
//! exactly filling the file); before it runs we check that the declared header length fits the
//! file and that no tensor's offsets reach past the data, so its own arithmetic cannot
//! overflow. Shapes and dtypes are then checked against the model config per tensor.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rill_backend::{quant, ByteOwner, DType, MatrixSource, SharedBytes};
use safetensors::tensor::{Dtype, SafeTensors};
use serde::Deserialize;

use super::HfError;
use crate::weights::{TensorSource, Weight, WeightsError};

pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// The element types a weight may have.
pub const SUPPORTED_DTYPES: &str = "F32, F16, BF16";

#[derive(Debug, Clone)]
struct Entry {
    file: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    /// Byte range in the file.
    start: usize,
    len: usize,
}

/// Every tensor of a model's safetensors files, by name.
pub struct SafetensorsSet {
    files: Vec<ByteOwner>,
    tensors: HashMap<String, Entry>,
    /// The family has post-attention and post-FFN norms, which changes what
    /// `post_attention_layernorm` means (see `Weight::hf_name`).
    post_norms: bool,
}

impl std::fmt::Debug for SafetensorsSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsSet").field("files", &self.files.len()).field("tensors", &self.tensors.len()).finish()
    }
}

#[derive(Deserialize)]
struct Index {
    weight_map: HashMap<String, String>,
}

impl SafetensorsSet {
    /// Names the weights as a family with (or without) post-norms does.
    pub fn with_post_norms(self, post_norms: bool) -> SafetensorsSet {
        SafetensorsSet { post_norms, ..self }
    }

    /// Opens `dir/model.safetensors`, or else the shards named by
    /// `dir/model.safetensors.index.json`.
    pub fn open_dir(dir: &Path) -> Result<SafetensorsSet, HfError> {
        let single = dir.join(SINGLE_FILE);
        if single.is_file() {
            let mut set = SafetensorsSet { files: Vec::new(), tensors: HashMap::new(), post_norms: false };
            set.add(&single, map_file(&single)?)?;
            return Ok(set);
        }
        let index_path = dir.join(INDEX_FILE);
        if !index_path.is_file() {
            return Err(HfError::NoWeights { dir: dir.to_path_buf() });
        }
        let text = super::read_text(&index_path)?;
        let index: Index = serde_json::from_str(&text).map_err(|e| HfError::Json { path: index_path.clone(), message: e.to_string() })?;
        let shards: BTreeSet<&str> = index.weight_map.values().map(String::as_str).collect();
        let mut set = SafetensorsSet { files: Vec::new(), tensors: HashMap::new(), post_norms: false };
        let mut shard_of = HashMap::new();
        for shard in shards {
            // Shard names come from the index: plain file names inside `dir` only.
            let plain = !shard.is_empty() && shard != "." && shard != ".." && !shard.contains(['/', '\\']);
            if !plain {
                return Err(HfError::Json { path: index_path.clone(), message: format!("shard name {shard:?} is not a plain file name") });
            }
            let path = dir.join(shard);
            shard_of.insert(shard, set.files.len());
            set.add(&path, map_file(&path)?)?;
        }
        for (name, shard) in &index.weight_map {
            if set.tensors.get(name).map(|e| e.file) != shard_of.get(shard.as_str()).copied() {
                return Err(HfError::Json { path: index_path.clone(), message: format!("tensor {name:?} is not in its shard {shard:?}") });
            }
        }
        Ok(set)
    }

    /// One safetensors image held in memory (tests).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<SafetensorsSet, HfError> {
        let mut set = SafetensorsSet { files: Vec::new(), tensors: HashMap::new(), post_norms: false };
        set.add(Path::new("<memory>"), Arc::new(bytes))?;
        Ok(set)
    }

    fn add(&mut self, path: &Path, owner: ByteOwner) -> Result<(), HfError> {
        let file = self.files.len();
        let entries = parse_header(path, (*owner).as_ref())?;
        for (name, mut entry) in entries {
            entry.file = file;
            if self.tensors.insert(name.clone(), entry).is_some() {
                return Err(HfError::Safetensors { path: path.to_path_buf(), message: format!("tensor {name:?} also appears in another shard") });
            }
        }
        self.files.push(owner);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// A tensor's dtype (as rill names it, if it has a name for it) and shape.
    pub fn info(&self, name: &str) -> Option<(Result<DType, String>, &[usize])> {
        self.tensors.get(name).map(|e| (to_dtype(e.dtype), &e.shape[..]))
    }

    /// The tensor `name` with the given shape, as an element type rill loads.
    fn checked(&self, name: &str, shape: &[usize]) -> Result<(DType, SharedBytes), WeightsError> {
        let e = self.tensors.get(name).ok_or_else(|| WeightsError::Missing(name.to_string()))?;
        let dtype = to_dtype(e.dtype).map_err(|found| WeightsError::DType { name: name.into(), found, supported: SUPPORTED_DTYPES })?;
        if e.shape != shape {
            let dims = |s: &[usize]| s.iter().map(|&d| d as u64).collect();
            return Err(WeightsError::Shape { name: name.into(), found: dims(&e.shape), expected: dims(shape) });
        }
        let bytes = SharedBytes::new(self.files[e.file].clone(), e.start, e.len)
            .ok_or_else(|| WeightsError::Convert { name: name.into(), problem: "data outside its file".into() })?;
        Ok((dtype, bytes))
    }
}

fn to_dtype(d: Dtype) -> Result<DType, String> {
    match d {
        Dtype::F32 => Ok(DType::F32),
        Dtype::F16 => Ok(DType::F16),
        Dtype::BF16 => Ok(DType::BF16),
        other => Err(format!("{other:?}")),
    }
}

fn map_file(path: &Path) -> Result<ByteOwner, HfError> {
    let io = |source| HfError::Io { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(io)?;
    // SAFETY: read-only map; as with GGUF, a weights file changed underneath a running server
    // is an operator error that cannot be guarded against in-process.
    let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    Ok(Arc::new(mmap))
}

/// Header length prefix.
const N_LEN: usize = 8;

fn parse_header(path: &Path, buf: &[u8]) -> Result<Vec<(String, Entry)>, HfError> {
    let bad = |message: String| HfError::Safetensors { path: path.to_path_buf(), message };
    let Some(prefix) = buf.get(..N_LEN) else {
        return Err(bad(format!("{} bytes: too short for a safetensors header", buf.len())));
    };
    let n = u64::from_le_bytes(prefix.try_into().expect("8 bytes"));
    let available = (buf.len() - N_LEN) as u64;
    if n > available {
        return Err(bad(format!("header of {n} bytes runs past the end of the file ({} bytes)", buf.len())));
    }
    let n = n as usize;
    let data_len = available as usize - n;
    // Pre-check the offsets so that nothing downstream adds up numbers near usize::MAX.
    let raw: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&buf[N_LEN..N_LEN + n]).map_err(|e| bad(format!("invalid header: {e}")))?;
    for (name, info) in &raw {
        if name == "__metadata__" {
            continue;
        }
        let end = info.get("data_offsets").and_then(|o| o.get(1)).and_then(serde_json::Value::as_u64);
        match end {
            Some(end) if end <= data_len as u64 => {}
            _ => return Err(bad(format!("tensor {name:?}: data_offsets missing or past the {data_len} data bytes"))),
        }
    }
    let (_, metadata) = SafeTensors::read_metadata(buf).map_err(|e| bad(format!("invalid header: {e}")))?;
    let data_start = N_LEN + n;
    Ok(metadata
        .tensors()
        .into_iter()
        .map(|(name, info)| {
            let (s, e) = info.data_offsets;
            (name, Entry { file: 0, dtype: info.dtype, shape: info.shape.clone(), start: data_start + s, len: e - s })
        })
        .collect())
}

impl TensorSource for SafetensorsSet {
    fn name(&self, w: Weight) -> String {
        w.hf_name(self.post_norms)
    }

    fn contains(&self, w: Weight) -> bool {
        self.contains(&w.hf_name(self.post_norms))
    }

    fn norms_without_offset(&self) -> bool {
        true
    }

    /// Hugging Face stores a linear layer's weight as `[out_features, in_features]`: our
    /// `(rows, cols)` as it is.
    fn matrix(&self, w: Weight, rows: usize, cols: usize) -> Result<MatrixSource, WeightsError> {
        let name = w.hf_name(self.post_norms);
        let (dtype, bytes) = self.checked(&name, &[rows, cols])?;
        Ok(MatrixSource { name, dtype, rows, cols, bytes })
    }

    fn vector(&self, w: Weight, len: usize) -> Result<Vec<f32>, WeightsError> {
        let name = w.hf_name(self.post_norms);
        let (dtype, bytes) = self.checked(&name, &[len])?;
        let mut out = vec![0.0; len];
        quant::dequantize_row(dtype, &bytes, &mut out).map_err(|e| WeightsError::Convert { name, problem: e.to_string() })?;
        Ok(out)
    }
}

/// Where the weights of `dir` are: for messages.
pub fn describe(dir: &Path) -> PathBuf {
    let single = dir.join(SINGLE_FILE);
    if single.is_file() { single } else { dir.join(INDEX_FILE) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::LayerWeight;
    use safetensors::tensor::TensorView;

    fn image(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
        let views: Vec<(String, TensorView<'_>)> =
            tensors.iter().map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
        safetensors::serialize(views, None).unwrap()
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn message(r: Result<SafetensorsSet, HfError>) -> String {
        match r {
            Err(HfError::Safetensors { message, .. }) => message,
            Err(other) => panic!("unexpected error kind: {other}"),
            Ok(_) => panic!("malformed image accepted"),
        }
    }

    #[test]
    fn reads_tensors_in_place_with_checked_shape_and_dtype() {
        let q = Weight::Layer(0, LayerWeight::Q);
        let norm = Weight::Layer(0, LayerWeight::AttnNorm);
        let bytes = image(&[
            (&q.hf_name(false), Dtype::F32, vec![2, 3], f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])),
            (&norm.hf_name(false), Dtype::BF16, vec![2], vec![0x80, 0x3f, 0x00, 0x40]),
            ("model.layers.0.mlp.up_proj.weight", Dtype::I64, vec![1], vec![0; 8]),
        ]);
        let set = SafetensorsSet::from_bytes(bytes).unwrap();
        assert_eq!(set.len(), 3);
        let m = set.matrix(q, 2, 3).unwrap();
        assert_eq!((m.dtype, m.rows, m.cols, m.bytes.len()), (DType::F32, 2, 3, 24));
        assert_eq!(&m.bytes[..4], &1.0f32.to_le_bytes());
        assert_eq!(set.vector(norm, 2).unwrap(), vec![1.0, 2.0]);
        match set.matrix(q, 3, 2) {
            Err(WeightsError::Shape { found, expected, .. }) => assert_eq!((found, expected), (vec![2, 3], vec![3, 2])),
            other => panic!("{other:?}"),
        }
        match set.matrix(Weight::Layer(0, LayerWeight::Up), 1, 1) {
            Err(WeightsError::DType { name, found, .. }) => assert_eq!((name.as_str(), found.as_str()), ("model.layers.0.mlp.up_proj.weight", "I64")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(set.matrix(Weight::Output, 1, 1), Err(WeightsError::Missing(n)) if n == "lm_head.weight"));
    }

    #[test]
    fn malformed_files_are_errors_not_panics() {
        let good = image(&[("a", Dtype::F32, vec![2], f32_bytes(&[1.0, 2.0]))]);
        assert!(SafetensorsSet::from_bytes(good.clone()).is_ok());
        // Too short for the length prefix; header length past the end; header cut short.
        assert!(message(SafetensorsSet::from_bytes(vec![1, 2, 3])).contains("too short"));
        let mut huge = good.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(message(SafetensorsSet::from_bytes(huge)).contains("runs past"));
        for cut in [9, 20, good.len() - 9, good.len() - 1] {
            assert!(SafetensorsSet::from_bytes(good[..cut].to_vec()).is_err(), "cut at {cut}");
        }
        // Hand-written headers: unknown dtype, offsets past the data, offsets near usize::MAX,
        // sizes that do not match the shape, overlapping tensors, a shape that overflows.
        let with_header = |header: &str, data: usize| {
            let mut b = (header.len() as u64).to_le_bytes().to_vec();
            b.extend_from_slice(header.as_bytes());
            b.resize(b.len() + data, 0);
            b
        };
        let cases = [
            (r#"{"a":{"dtype":"F99","shape":[2],"data_offsets":[0,8]}}"#, 8),
            (r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,800]}}"#, 8),
            (r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]}}"#, 8),
            (r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, 8),
            (r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, 12),
            (r#"{"a":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,8]}}"#, 8),
            (r#"{"a":{"dtype":"F32","shape":[2]}}"#, 8),
            (r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, 9),
            (r#"[1,2]"#, 0),
            ("{\"a\":\u{0}", 0),
        ];
        for (header, data) in cases {
            let r = SafetensorsSet::from_bytes(with_header(header, data));
            assert!(matches!(r, Err(HfError::Safetensors { .. })), "{header}: {r:?}");
        }
        let mut not_utf8 = with_header(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, 8);
        not_utf8[10] = 0xff;
        assert!(SafetensorsSet::from_bytes(not_utf8).is_err());
    }
}
