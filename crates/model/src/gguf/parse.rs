//! The GGUF header parser. The file is hostile input: every count and length is checked against
//! the bytes left before anything is allocated, sizes use checked arithmetic, and every failure
//! is a `GgufError::Malformed` naming the offset and the field.

use std::collections::{HashMap, HashSet};

use rill_backend::DType;

use super::error::{GgufError, Malformation};
use super::value::MetaValue;
use super::TensorInfo;

/// Longest string accepted anywhere in the header (chat templates are a few KiB).
pub const MAX_STRING_LEN: u64 = 1 << 24;
/// Most elements in one metadata array (vocabularies and merge lists are ~10^5).
pub const MAX_ARRAY_LEN: u64 = 1 << 24;
/// Deepest nesting of arrays inside arrays.
pub const MAX_ARRAY_DEPTH: u32 = 2;
/// Most dimensions a tensor may have.
pub const MAX_DIMS: u32 = 4;
/// Default data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

const MAGIC: [u8; 4] = *b"GGUF";
/// Smallest encoding of one metadata entry: empty key (8) + type (4) + a u8 value (1).
const MIN_KV_BYTES: u64 = 13;
/// Smallest encoding of one tensor info: empty name (8) + n_dims (4) + one dim (8) + type (4) +
/// offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 32;
/// Most items reserved up front for any count read from the file. A count is only checked
/// against the bytes left at `min_item_bytes` each, while one parsed item takes several times
/// that in memory (a one-byte array element is a 32-byte `MetaValue`), so reserving the full
/// count would let a lying header in a multi-GiB file demand tens of GiB before failing.
/// Beyond this, collections grow as items are actually read.
const MAX_PREALLOC: u64 = 4096;

/// Capacity to reserve for `n` items read from the file.
fn prealloc(n: u64) -> usize {
    n.min(MAX_PREALLOC) as usize
}

/// The parsed header: everything before the tensor data.
pub struct Header {
    pub version: u32,
    pub metadata: HashMap<String, MetaValue>,
    /// Metadata keys in file order, so output is deterministic.
    pub key_order: Vec<String>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute file offset where tensor data starts.
    pub data_start: u64,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

fn malformed(offset: u64, field: &str, kind: Malformation) -> GgufError {
    GgufError::Malformed { offset, field: field.to_string(), kind }
}

impl<'a> Cursor<'a> {
    fn offset(&self) -> u64 {
        self.pos as u64
    }

    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, field: &str) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            let kind = Malformation::Truncated { needed: n, available: self.remaining() };
            return Err(malformed(self.offset(), field, kind));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], GgufError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64, field)?);
        Ok(out)
    }

    fn u32(&mut self, field: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// A count that must not exceed `limit` nor promise more than the file holds, given that each
    /// counted item takes at least `min_item_bytes`.
    fn count(&mut self, field: &str, limit: u64, min_item_bytes: u64) -> Result<u64, GgufError> {
        let at = self.offset();
        let n = self.u64(field)?;
        if n > limit {
            return Err(malformed(at, field, Malformation::LimitExceeded { value: n, limit }));
        }
        // Saturating: a product past u64::MAX is certainly more than the file holds.
        let needed = n.saturating_mul(min_item_bytes);
        if needed > self.remaining() {
            let kind = Malformation::Truncated { needed, available: self.remaining() };
            return Err(malformed(at, field, kind));
        }
        Ok(n)
    }

    fn string(&mut self, field: &str) -> Result<String, GgufError> {
        let len = self.count(field, MAX_STRING_LEN, 1)?;
        let at = self.offset();
        let raw = self.take(len, field)?;
        String::from_utf8(raw.to_vec()).map_err(|_| malformed(at, field, Malformation::InvalidUtf8))
    }

    fn value(&mut self, type_id: u32, field: &str, depth: u32) -> Result<MetaValue, GgufError> {
        let at = self.offset();
        Ok(match type_id {
            0 => MetaValue::U8(u8::from_le_bytes(self.array(field)?)),
            1 => MetaValue::I8(i8::from_le_bytes(self.array(field)?)),
            2 => MetaValue::U16(u16::from_le_bytes(self.array(field)?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.array(field)?)),
            4 => MetaValue::U32(self.u32(field)?),
            5 => MetaValue::I32(i32::from_le_bytes(self.array(field)?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.array(field)?)),
            7 => MetaValue::Bool(self.array::<1>(field)?[0] != 0),
            8 => MetaValue::String(self.string(field)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(malformed(at, field, Malformation::NestingTooDeep));
                }
                let elem_type = self.u32(field)?;
                let elem_bytes = min_value_bytes(elem_type)
                    .ok_or_else(|| malformed(at, field, Malformation::UnknownValueType(elem_type)))?;
                let n = self.count(field, MAX_ARRAY_LEN, elem_bytes)?;
                let mut items = Vec::with_capacity(prealloc(n));
                for _ in 0..n {
                    items.push(self.value(elem_type, field, depth + 1)?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::U64(self.u64(field)?),
            11 => MetaValue::I64(i64::from_le_bytes(self.array(field)?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.array(field)?)),
            other => return Err(malformed(at, field, Malformation::UnknownValueType(other))),
        })
    }
}

/// Fewest bytes a value of this type can occupy (strings and arrays: their length prefix).
fn min_value_bytes(type_id: u32) -> Option<u64> {
    Some(match type_id {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 => 8,
        9 => 12,
        10..=12 => 8,
        _ => return None,
    })
}

pub fn parse_header(bytes: &[u8]) -> Result<Header, GgufError> {
    let mut c = Cursor { bytes, pos: 0 };
    let magic: [u8; 4] = c.array("magic")?;
    if magic != MAGIC {
        return Err(malformed(0, "magic", Malformation::BadMagic(magic)));
    }
    let version = c.u32("version")?;
    if version != 2 && version != 3 {
        return Err(malformed(4, "version", Malformation::UnsupportedVersion(version)));
    }
    let tensor_count = c.count("tensor_count", u64::MAX, 0)?;
    let kv_count = c.count("metadata_kv_count", u64::MAX, MIN_KV_BYTES)?;
    // Checked once both counts are known: tensor infos follow the metadata.
    if tensor_count.saturating_mul(MIN_TENSOR_INFO_BYTES) > c.remaining() {
        let kind = Malformation::Truncated {
            needed: tensor_count.saturating_mul(MIN_TENSOR_INFO_BYTES),
            available: c.remaining(),
        };
        return Err(malformed(8, "tensor_count", kind));
    }

    let mut metadata = HashMap::with_capacity(prealloc(kv_count));
    let mut key_order = Vec::with_capacity(prealloc(kv_count));
    // Where the `general.alignment` value was read, for the error if it is unusable.
    let mut alignment_at = 0;
    for _ in 0..kv_count {
        let key_at = c.offset();
        let key = c.string("metadata key")?;
        let type_id = c.u32(&key)?;
        let value_at = c.offset();
        let value = c.value(type_id, &key, 0)?;
        if metadata.contains_key(&key) {
            return Err(malformed(key_at, "metadata key", Malformation::DuplicateKey(key)));
        }
        if key == "general.alignment" {
            alignment_at = value_at;
        }
        key_order.push(key.clone());
        metadata.insert(key, value);
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => {
            // Not a non-negative integer at all (a string, a negative number) reads as 0.
            let a = v.as_u64().unwrap_or(0);
            if !a.is_power_of_two() {
                return Err(malformed(alignment_at, "general.alignment", Malformation::BadAlignment(a)));
            }
            a
        }
    };

    let mut tensors = Vec::with_capacity(prealloc(tensor_count));
    let mut names = HashSet::with_capacity(prealloc(tensor_count));
    for _ in 0..tensor_count {
        let info_at = c.offset();
        let info = tensor_info(&mut c, alignment)?;
        if !names.insert(info.name.clone()) {
            let kind = Malformation::DuplicateTensor(info.name.clone());
            return Err(malformed(info_at, "tensor name", kind));
        }
        tensors.push(info);
    }

    let header_end = c.offset();
    let data_start = header_end
        .checked_next_multiple_of(alignment)
        .ok_or_else(|| malformed(header_end, "data section", Malformation::SizeOverflow))?;
    check_data_ranges(&mut tensors, data_start, bytes.len() as u64)?;
    Ok(Header { version, metadata, key_order, tensors, alignment, data_start })
}

fn tensor_info(c: &mut Cursor<'_>, alignment: u64) -> Result<TensorInfo, GgufError> {
    let name = c.string("tensor name")?;
    let dims_at = c.offset();
    let n_dims = c.u32("tensor n_dims")?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        let kind = Malformation::LimitExceeded { value: n_dims.into(), limit: MAX_DIMS.into() };
        return Err(malformed(dims_at, "tensor n_dims", kind));
    }
    let mut shape = Vec::with_capacity(n_dims as usize);
    let mut elements: u64 = 1;
    for _ in 0..n_dims {
        let at = c.offset();
        let d = c.u64("tensor dimension")?;
        if d == 0 {
            return Err(malformed(at, "tensor dimension", Malformation::ZeroDimension));
        }
        elements = elements
            .checked_mul(d)
            .filter(|&e| e <= i64::MAX as u64)
            .ok_or_else(|| malformed(at, "tensor dimension", Malformation::SizeOverflow))?;
        shape.push(d);
    }
    let type_at = c.offset();
    let type_id = c.u32("tensor type")?;
    let dtype = DType::from_ggml_id(type_id)
        .ok_or_else(|| malformed(type_at, "tensor type", Malformation::UnknownTensorType(type_id)))?;
    let block_len = dtype.block_len() as u64;
    if !shape[0].is_multiple_of(block_len) {
        let kind = Malformation::RowNotWholeBlocks { row_len: shape[0], block_len };
        return Err(malformed(dims_at, "tensor dimension", kind));
    }
    let n_bytes = (elements / block_len)
        .checked_mul(dtype.block_bytes() as u64)
        .ok_or_else(|| malformed(dims_at, "tensor size", Malformation::SizeOverflow))?;
    let offset_at = c.offset();
    let offset = c.u64("tensor offset")?;
    if !offset.is_multiple_of(alignment) {
        return Err(malformed(offset_at, "tensor offset", Malformation::Misaligned { offset, alignment }));
    }
    Ok(TensorInfo { name, shape, dtype, offset, n_bytes, info_offset: offset_at })
}

/// Every tensor's data lies inside the file, and no two overlap.
fn check_data_ranges(tensors: &mut [TensorInfo], data_start: u64, file_len: u64) -> Result<(), GgufError> {
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by_key(|&i| tensors[i].offset);
    let mut prev_end: Option<(u64, usize)> = None;
    for &i in &order {
        let t = &tensors[i];
        let field = "tensor offset";
        let overflow = || malformed(t.info_offset, field, Malformation::SizeOverflow);
        let start = data_start.checked_add(t.offset).ok_or_else(overflow)?;
        let end = start.checked_add(t.n_bytes).ok_or_else(overflow)?;
        if end > file_len {
            return Err(malformed(t.info_offset, field, Malformation::OutOfFile { end, file_len }));
        }
        if let Some((pend, pi)) = prev_end {
            if start < pend {
                let kind = Malformation::Overlap { other: tensors[pi].name.clone() };
                return Err(malformed(t.info_offset, field, kind));
            }
        }
        prev_end = Some((end, i));
    }
    Ok(())
}
