use std::fmt;

/// A GGUF file could not be read. Every malformed-file error names the byte offset where the
/// problem was found and the field being read there.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("malformed GGUF at offset {offset} ({field}): {kind}")]
    Malformed { offset: u64, field: String, kind: Malformation },
    #[error("GGUF metadata key {key:?}: {problem}")]
    Metadata { key: String, problem: String },
    #[error("GGUF tensor {name:?}: {problem}")]
    Tensor { name: String, problem: String },
}

/// What exactly was wrong at the offset a `GgufError::Malformed` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformation {
    BadMagic([u8; 4]),
    UnsupportedVersion(u32),
    Truncated { needed: u64, available: u64 },
    LimitExceeded { value: u64, limit: u64 },
    UnknownValueType(u32),
    UnknownTensorType(u32),
    InvalidUtf8,
    DuplicateKey(String),
    DuplicateTensor(String),
    BadAlignment(u64),
    ZeroDimension,
    SizeOverflow,
    RowNotWholeBlocks { row_len: u64, block_len: u64 },
    Misaligned { offset: u64, alignment: u64 },
    OutOfFile { end: u64, file_len: u64 },
    Overlap { other: String },
    NestingTooDeep,
}

impl fmt::Display for Malformation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Malformation::*;
        match self {
            BadMagic(m) => write!(f, "not a GGUF file (magic {m:02x?}, expected \"GGUF\")"),
            UnsupportedVersion(v) => write!(f, "unsupported GGUF version {v} (2 and 3 are)"),
            Truncated { needed, available } => {
                write!(f, "file truncated: needs {needed} more bytes, {available} left")
            }
            LimitExceeded { value, limit } => write!(f, "value {value} exceeds the limit {limit}"),
            UnknownValueType(t) => write!(f, "unknown metadata value type {t}"),
            UnknownTensorType(t) => write!(f, "unknown tensor type id {t}"),
            InvalidUtf8 => write!(f, "string is not valid UTF-8"),
            DuplicateKey(k) => write!(f, "duplicate metadata key {k:?}"),
            DuplicateTensor(n) => write!(f, "duplicate tensor name {n:?}"),
            BadAlignment(a) => write!(f, "alignment {a} is not a power of two"),
            ZeroDimension => write!(f, "tensor has a zero-sized dimension"),
            SizeOverflow => write!(f, "tensor size overflows"),
            RowNotWholeBlocks { row_len, block_len } => {
                write!(f, "row of {row_len} elements is not a whole number of {block_len}-element blocks")
            }
            Misaligned { offset, alignment } => {
                write!(f, "data offset {offset} is not a multiple of the alignment {alignment}")
            }
            OutOfFile { end, file_len } => {
                write!(f, "data ends at byte {end}, past the end of the file ({file_len} bytes)")
            }
            Overlap { other } => write!(f, "data overlaps tensor {other:?}"),
            NestingTooDeep => write!(f, "arrays nested too deeply"),
        }
    }
}
