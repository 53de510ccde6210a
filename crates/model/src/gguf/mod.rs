//! Our own GGUF reader on `memmap2`. The published GGUF crates are dormant or heavy, and a model
//! file is untrusted input, so the parser is ours to harden (see `parse.rs`). Tensor data is
//! never copied: tensors hand out `SharedBytes` ranges of the mmap.

mod error;
mod parse;
mod value;

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use rill_backend::{ByteOwner, DType, SharedBytes};

pub use error::{GgufError, Malformation};
pub use parse::{DEFAULT_ALIGNMENT, MAX_ARRAY_DEPTH, MAX_ARRAY_LEN, MAX_DIMS, MAX_STRING_LEN};
pub use value::MetaValue;

/// Where one tensor is and what it holds. `shape[0]` is the innermost (contiguous) dimension,
/// as in ggml: a weight matrix of `rows` outputs over `cols` inputs has shape `[cols, rows]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<u64>,
    pub dtype: DType,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
    pub n_bytes: u64,
    /// Where this tensor's info record ends in the header, for error messages.
    pub info_offset: u64,
}

/// An opened GGUF file: its metadata, tensor directory and the bytes behind them.
pub struct GgufFile {
    pub version: u32,
    pub alignment: u64,
    metadata: HashMap<String, MetaValue>,
    key_order: Vec<String>,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
    data_start: u64,
    bytes: ByteOwner,
}

impl GgufFile {
    /// Memory-maps and parses `path`.
    pub fn open(path: &Path) -> Result<GgufFile, GgufError> {
        let io = |source| GgufError::Io { path: path.display().to_string(), source };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; rill never writes model files, and a file truncated
        // underneath a running server is an operator error we cannot guard against in-process.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Self::from_owner(Arc::new(mmap))
    }

    /// Parses an in-memory GGUF image (tests, fuzzing).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        Self::from_owner(Arc::new(bytes))
    }

    fn from_owner(bytes: ByteOwner) -> Result<GgufFile, GgufError> {
        let header = parse::parse_header((*bytes).as_ref())?;
        let by_name = header.tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        Ok(GgufFile {
            version: header.version,
            alignment: header.alignment,
            metadata: header.metadata,
            key_order: header.key_order,
            tensors: header.tensors,
            by_name,
            data_start: header.data_start,
            bytes,
        })
    }

    pub fn file_len(&self) -> u64 {
        (*self.bytes).as_ref().len() as u64
    }

    /// Metadata entries in file order.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, &MetaValue)> {
        self.key_order.iter().map(|k| (k.as_str(), &self.metadata[k]))
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// The tensor's bytes, still inside the mapped file.
    pub fn tensor_data(&self, info: &TensorInfo) -> SharedBytes {
        // Ranges were checked against the file length while parsing.
        let start = (self.data_start + info.offset) as usize;
        SharedBytes::new(self.bytes.clone(), start, info.n_bytes as usize)
            .expect("tensor ranges are validated at parse time")
    }

    // Typed accessors: a missing key is `Ok(None)`, a key of the wrong type is an error.

    pub fn get_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.typed(key, "a string", MetaValue::as_str)
    }

    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.typed(key, "a non-negative integer", MetaValue::as_u64)
    }

    pub fn get_f64(&self, key: &str) -> Result<Option<f64>, GgufError> {
        self.typed(key, "a number", MetaValue::as_f64)
    }

    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.typed(key, "a bool", MetaValue::as_bool)
    }

    pub fn get_array(&self, key: &str) -> Result<Option<&[MetaValue]>, GgufError> {
        self.typed(key, "an array", MetaValue::as_array)
    }

    /// An array of strings (vocabularies, merges).
    pub fn get_str_array(&self, key: &str) -> Result<Option<Vec<&str>>, GgufError> {
        self.array_of(key, "an array of strings", MetaValue::as_str)
    }

    /// An array of integers (token types).
    pub fn get_int_array(&self, key: &str) -> Result<Option<Vec<i64>>, GgufError> {
        self.array_of(key, "an array of integers", MetaValue::as_i64)
    }

    fn array_of<'a, T>(&'a self, key: &str, expected: &str, convert: impl Fn(&'a MetaValue) -> Option<T>) -> Result<Option<Vec<T>>, GgufError> {
        let Some(items) = self.get_array(key)? else { return Ok(None) };
        items.iter().map(|v| convert(v).ok_or_else(|| type_error(key, expected, v))).collect::<Result<Vec<_>, _>>().map(Some)
    }

    fn typed<'a, T>(
        &'a self,
        key: &str,
        expected: &str,
        convert: impl Fn(&'a MetaValue) -> Option<T>,
    ) -> Result<Option<T>, GgufError> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(v) => convert(v).map(Some).ok_or_else(|| type_error(key, expected, v)),
        }
    }
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (keys, tensors) = (self.key_order.len(), self.tensors.len());
        f.debug_struct("GgufFile").field("version", &self.version).field("metadata_keys", &keys).field("tensors", &tensors).finish()
    }
}

fn type_error(key: &str, expected: &str, found: &MetaValue) -> GgufError {
    GgufError::Metadata {
        key: key.to_string(),
        problem: format!("expected {expected}, found {}", found.type_name()),
    }
}

#[cfg(test)]
mod tests;
