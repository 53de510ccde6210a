//! A tiny GGUF writer for building well-formed and deliberately broken files, and a corpus of
//! malformed files, each pinned to the `Malformation` (and offset and field) it must produce.

use super::*;

pub(crate) struct Writer {
    pub bytes: Vec<u8>,
}

impl Writer {
    pub fn header(version: u32, tensors: u64, kvs: u64) -> Writer {
        let mut w = Writer { bytes: b"GGUF".to_vec() };
        w.u32(version).u64(tensors).u64(kvs);
        w
    }
    /// Current length: the offset the next field will be written at.
    pub fn at(&self) -> u64 {
        self.bytes.len() as u64
    }
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(bytes);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64).raw(s.as_bytes())
    }
    pub fn kv_u32(&mut self, k: &str, v: u32) -> &mut Self {
        self.str(k).u32(4).u32(v)
    }
    pub fn kv_str(&mut self, k: &str, v: &str) -> &mut Self {
        self.str(k).u32(8).str(v)
    }
    /// A metadata entry of any value type.
    pub fn kv(&mut self, k: &str, v: &MetaValue) -> &mut Self {
        self.str(k).u32(type_id(v)).value(v)
    }
    /// A value's payload, without its type id. An array's element type is that of its first
    /// element (u8 when empty).
    pub fn value(&mut self, v: &MetaValue) -> &mut Self {
        match v {
            MetaValue::U8(x) => self.raw(&x.to_le_bytes()),
            MetaValue::I8(x) => self.raw(&x.to_le_bytes()),
            MetaValue::U16(x) => self.raw(&x.to_le_bytes()),
            MetaValue::I16(x) => self.raw(&x.to_le_bytes()),
            MetaValue::U32(x) => self.raw(&x.to_le_bytes()),
            MetaValue::I32(x) => self.raw(&x.to_le_bytes()),
            MetaValue::F32(x) => self.raw(&x.to_le_bytes()),
            MetaValue::Bool(x) => self.raw(&[u8::from(*x)]),
            MetaValue::String(s) => self.str(s),
            MetaValue::Array(items) => {
                self.u32(items.first().map_or(0, type_id)).u64(items.len() as u64);
                for item in items {
                    self.value(item);
                }
                self
            }
            MetaValue::U64(x) => self.raw(&x.to_le_bytes()),
            MetaValue::I64(x) => self.raw(&x.to_le_bytes()),
            MetaValue::F64(x) => self.raw(&x.to_le_bytes()),
        }
    }
    pub fn tensor(&mut self, name: &str, shape: &[u64], ggml_type: u32, offset: u64) -> &mut Self {
        self.str(name).u32(shape.len() as u32);
        for &d in shape {
            self.u64(d);
        }
        self.u32(ggml_type).u64(offset)
    }
    pub fn pad_to(&mut self, alignment: usize) -> &mut Self {
        self.bytes.resize(self.bytes.len().next_multiple_of(alignment), 0);
        self
    }
    /// `n` bytes of tensor data.
    pub fn data(&mut self, n: usize, byte: u8) -> &mut Self {
        self.bytes.extend(std::iter::repeat_n(byte, n));
        self
    }
}

fn type_id(v: &MetaValue) -> u32 {
    match v {
        MetaValue::U8(_) => 0,
        MetaValue::I8(_) => 1,
        MetaValue::U16(_) => 2,
        MetaValue::I16(_) => 3,
        MetaValue::U32(_) => 4,
        MetaValue::I32(_) => 5,
        MetaValue::F32(_) => 6,
        MetaValue::Bool(_) => 7,
        MetaValue::String(_) => 8,
        MetaValue::Array(_) => 9,
        MetaValue::U64(_) => 10,
        MetaValue::I64(_) => 11,
        MetaValue::F64(_) => 12,
    }
}

fn kind(err: GgufError) -> Malformation {
    malformed(err).2
}

/// The offset, field and kind of a malformed-file error.
fn malformed(err: GgufError) -> (u64, String, Malformation) {
    match err {
        GgufError::Malformed { offset, field, kind } => (offset, field, kind),
        other => panic!("expected a malformed-file error, got {other}"),
    }
}

fn parse_err(bytes: Vec<u8>) -> (u64, String, Malformation) {
    match GgufFile::from_bytes(bytes) {
        Ok(f) => panic!("expected an error, parsed {f:?}"),
        Err(e) => malformed(e),
    }
}

/// Asserts that parsing fails with exactly this offset, field and kind.
#[track_caller]
fn assert_malformed(bytes: Vec<u8>, offset: u64, field: &str, kind: Malformation) {
    assert_eq!(parse_err(bytes), (offset, field.to_string(), kind));
}

const F32: u32 = 0;
const Q4_0: u32 = 2;
const Q8_0: u32 = 8;
const Q4_K: u32 = 12;
const I8: u32 = 24;
const F64: u32 = 28;

fn small_file() -> Vec<u8> {
    let mut w = Writer::header(3, 2, 2);
    w.kv_str("general.architecture", "llama").kv_u32("llama.block_count", 1);
    w.tensor("a", &[4, 2], 0, 0).tensor("b", &[32], 8, 32);
    w.pad_to(32);
    w.bytes.extend((0..32u8).map(|i| i * 3));
    w.bytes.extend(std::iter::repeat_n(7u8, 34));
    w.bytes
}

/// One metadata entry of every value type, arrays (of scalars, strings, arrays) included.
fn every_value_type() -> Vec<(&'static str, MetaValue)> {
    use MetaValue::*;
    vec![
        ("u8", U8(200)),
        ("i8", I8(-5)),
        ("u16", U16(60_000)),
        ("i16", I16(-300)),
        ("u32", U32(4_000_000_000)),
        ("i32", I32(-70_000)),
        ("f32", F32(1.5)),
        ("bool.true", Bool(true)),
        ("bool.false", Bool(false)),
        ("string", String("héllo ✓".into())),
        ("string.empty", String(std::string::String::new())),
        ("array.u32", Array(vec![U32(1), U32(2), U32(3)])),
        ("array.string", Array(vec![String("a".into()), String("".into()), String("bc".into())])),
        ("array.empty", Array(vec![])),
        ("array.nested", Array(vec![Array(vec![I8(1), I8(-1)]), Array(vec![])])),
        ("array.f64", Array(vec![F64(0.5), F64(-1e300)])),
        ("u64", U64(u64::MAX)),
        ("i64", I64(i64::MIN)),
        ("f64", F64(-2.25)),
    ]
}

fn every_value_type_file() -> Vec<u8> {
    let kvs = every_value_type();
    let mut w = Writer::header(3, 0, kvs.len() as u64);
    for (k, v) in &kvs {
        w.kv(k, v);
    }
    w.bytes
}

// ---- well-formed files ----

#[test]
fn reads_metadata_and_tensors_without_copying() {
    let f = GgufFile::from_bytes(small_file()).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.get_str("general.architecture").unwrap(), Some("llama"));
    assert_eq!(f.get_u64("llama.block_count").unwrap(), Some(1));
    assert!(f.get_u64("general.architecture").is_err(), "type mismatch is an error");
    let a = f.tensor_info("a").unwrap();
    assert_eq!((a.dtype, a.n_bytes, a.shape.clone()), (DType::F32, 32, vec![4, 2]));
    assert_eq!(&f.tensor_data(a)[..4], &[0, 3, 6, 9]);
    let b = f.tensor_info("b").unwrap();
    assert_eq!((b.dtype, b.n_bytes), (DType::Q8_0, 34));
    assert!(f.tensor_data(b).iter().all(|&x| x == 7));
}

#[test]
fn v2_file_parses() {
    let mut bytes = small_file();
    bytes[4] = 2;
    let f = GgufFile::from_bytes(bytes).unwrap();
    assert_eq!(f.version, 2);
    assert_eq!(f.get_str("general.architecture").unwrap(), Some("llama"));
    assert_eq!(f.tensors().len(), 2);
    assert!(f.tensor_data(f.tensor_info("b").unwrap()).iter().all(|&x| x == 7));
}

#[test]
fn empty_file_with_no_tensors_or_metadata_parses() {
    let f = GgufFile::from_bytes(Writer::header(3, 0, 0).bytes).unwrap();
    assert_eq!((f.metadata().count(), f.tensors().len(), f.alignment), (0, 0, DEFAULT_ALIGNMENT));
}

#[test]
fn every_value_type_round_trips() {
    let f = GgufFile::from_bytes(every_value_type_file()).unwrap();
    let read: Vec<(&str, MetaValue)> = f.metadata().map(|(k, v)| (k, v.clone())).collect();
    assert_eq!(read, every_value_type(), "values and file order survive");
    for (k, v) in every_value_type() {
        assert_eq!(f.get(k), Some(&v));
        assert_eq!(f.get(k).unwrap().type_name(), k.split('.').next().unwrap());
    }
    assert_eq!(f.get_bool("bool.false").unwrap(), Some(false));
    assert_eq!(f.get_u64("u64").unwrap(), Some(u64::MAX));
    assert_eq!(f.get_f64("i64").unwrap(), Some(i64::MIN as f64));
    assert_eq!(f.get_str_array("array.string").unwrap(), Some(vec!["a", "", "bc"]));
    assert_eq!(f.get_int_array("array.u32").unwrap(), Some(vec![1, 2, 3]));
    assert!(f.get_int_array("array.string").is_err());
}

#[test]
fn bool_is_any_nonzero_byte() {
    let mut w = Writer::header(3, 0, 1);
    w.str("b").u32(7).raw(&[2]);
    assert_eq!(GgufFile::from_bytes(w.bytes).unwrap().get_bool("b").unwrap(), Some(true));
}

#[test]
fn custom_alignment_places_data_on_its_boundary() {
    for alignment in [MetaValue::U32(64), MetaValue::U8(64), MetaValue::U64(64), MetaValue::I32(64)] {
        let mut w = Writer::header(3, 2, 1);
        w.kv("general.alignment", &alignment);
        w.tensor("a", &[3], I8, 0).tensor("b", &[2], F32, 64);
        w.pad_to(64).data(3, 1).pad_to(64).data(8, 2);
        let f = GgufFile::from_bytes(w.bytes).unwrap();
        assert_eq!(f.alignment, 64);
        assert_eq!(&f.tensor_data(f.tensor_info("a").unwrap())[..], &[1, 1, 1]);
        assert_eq!(&f.tensor_data(f.tensor_info("b").unwrap())[..], &[2; 8]);
    }
}

#[test]
fn four_dims_and_whole_quantized_blocks_parse() {
    let mut w = Writer::header(3, 2, 0);
    w.tensor("q", &[256, 2], Q4_K, 0).tensor("d4", &[2, 1, 3, 1], I8, 288);
    w.pad_to(32).data(288, 0).pad_to(32).data(6, 0);
    let f = GgufFile::from_bytes(w.bytes).unwrap();
    assert_eq!(f.tensor_info("q").unwrap().n_bytes, 2 * 144);
    assert_eq!(f.tensor_info("d4").unwrap().shape, vec![2, 1, 3, 1]);
}

#[test]
fn adjacent_tensors_and_data_ending_at_eof_are_fine() {
    let mut w = Writer::header(3, 2, 1);
    w.kv("general.alignment", &MetaValue::U32(1));
    w.tensor("b", &[3], I8, 3).tensor("a", &[3], I8, 0);
    w.data(6, 9);
    let f = GgufFile::from_bytes(w.bytes).unwrap();
    assert_eq!(f.tensors().iter().map(|t| t.offset).collect::<Vec<_>>(), vec![3, 0]);
}

// ---- truncation and mangling: always an error, never a panic ----

#[test]
fn every_prefix_of_a_valid_file_is_an_error() {
    let full = small_file();
    let header_len = {
        let f = GgufFile::from_bytes(full.clone()).unwrap();
        f.data_start as usize
    };
    for len in 0..full.len() {
        let (offset, field, kind) = parse_err(full[..len].to_vec());
        let len64 = len as u64;
        assert!(offset <= len64, "prefix {len}: offset {offset} past the end ({field})");
        match kind {
            Malformation::Truncated { needed, available } => {
                assert!(needed > available, "prefix {len}: {needed} <= {available}");
                assert!(available <= len64 - offset, "prefix {len}: {available} left at {offset}");
            }
            // Header complete, tensor data cut short.
            Malformation::OutOfFile { end, file_len } => {
                assert!(len >= header_len - 31, "prefix {len}: OutOfFile inside the header");
                assert_eq!(file_len, len64);
                assert!(end > file_len);
                assert_eq!(field, "tensor offset");
            }
            other => panic!("prefix {len}: unexpected {other:?} at {offset} ({field})"),
        }
    }
}

#[test]
fn every_prefix_of_the_metadata_is_truncated() {
    let full = every_value_type_file();
    GgufFile::from_bytes(full.clone()).unwrap();
    for len in 0..full.len() {
        let kind = kind(GgufFile::from_bytes(full[..len].to_vec()).unwrap_err());
        assert!(matches!(kind, Malformation::Truncated { .. }), "prefix {len}: {kind:?}");
    }
}

#[test]
fn mangling_any_byte_never_panics() {
    for base in [small_file(), every_value_type_file()] {
        for i in 0..base.len() {
            for byte in [0x00, 0x01, 0x7f, 0x80, 0xff, base[i].wrapping_add(1)] {
                let mut bytes = base.clone();
                bytes[i] = byte;
                if let Ok(f) = GgufFile::from_bytes(bytes) {
                    for t in f.tensors() {
                        assert_eq!(f.tensor_data(t).len() as u64, t.n_bytes);
                    }
                }
            }
        }
    }
}

// ---- magic and version ----

#[test]
fn bad_magic_and_version() {
    let mut bytes = small_file();
    bytes[0] = b'X';
    assert_malformed(bytes, 0, "magic", Malformation::BadMagic(*b"XGUF"));
    assert_malformed(b"GGML\x03\0\0\0".to_vec(), 0, "magic", Malformation::BadMagic(*b"GGML"));
    for version in [0, 1, 4, u32::MAX] {
        let mut bytes = small_file();
        bytes[4..8].copy_from_slice(&version.to_le_bytes());
        assert_malformed(bytes, 4, "version", Malformation::UnsupportedVersion(version));
    }
}

#[test]
fn big_endian_version_is_unsupported() {
    // A big-endian v3 file reads as version 3 << 24 on a little-endian reader.
    assert_malformed(
        Writer::header(3u32.swap_bytes(), 0, 0).bytes,
        4,
        "version",
        Malformation::UnsupportedVersion(0x0300_0000),
    );
}

// ---- huge counts and lengths: rejected before anything is allocated ----

#[test]
fn huge_tensor_count_fails_before_allocating() {
    for n in [u64::MAX, u64::MAX / 32 + 1, 1 << 40] {
        let mut w = Writer::header(3, n, 0);
        w.data(64, 0);
        let ((offset, field, kind), largest) = alloc_probe::largest_alloc(move || parse_err(w.bytes));
        assert_eq!((offset, field.as_str()), (8, "tensor_count"));
        assert!(matches!(kind, Malformation::Truncated { available: 64, .. }), "{n}: {kind:?}");
        assert!(largest < 4096, "{n}: allocated {largest} bytes");
    }
    // Just over what the bytes left can hold: two 32-byte tensor infos in 63 bytes.
    let mut w = Writer::header(3, 2, 0);
    w.data(63, 0);
    assert_malformed(w.bytes, 8, "tensor_count", Malformation::Truncated { needed: 64, available: 63 });
}

#[test]
fn huge_kv_count_fails_before_allocating() {
    for n in [u64::MAX, u64::MAX / 13 + 1, 1 << 40] {
        let mut w = Writer::header(3, 0, n);
        w.data(64, 0);
        let ((offset, field, kind), largest) = alloc_probe::largest_alloc(move || parse_err(w.bytes));
        assert_eq!((offset, field.as_str()), (16, "metadata_kv_count"));
        let needed = n.saturating_mul(13);
        assert_eq!(kind, Malformation::Truncated { needed, available: 64 }, "{n}");
        assert!(largest < 4096, "{n}: allocated {largest} bytes");
    }
    // Just over: five entries need at least 65 bytes.
    let mut w = Writer::header(3, 0, 5);
    w.data(64, 0);
    assert_malformed(w.bytes, 16, "metadata_kv_count", Malformation::Truncated { needed: 65, available: 64 });
}

#[test]
fn huge_string_lengths_fail_before_allocating() {
    let cases = [
        (u64::MAX, Malformation::LimitExceeded { value: u64::MAX, limit: MAX_STRING_LEN }),
        (
            MAX_STRING_LEN + 1,
            Malformation::LimitExceeded { value: MAX_STRING_LEN + 1, limit: MAX_STRING_LEN },
        ),
        (MAX_STRING_LEN, Malformation::Truncated { needed: MAX_STRING_LEN, available: 16 }),
        (17, Malformation::Truncated { needed: 17, available: 16 }),
    ];
    for (len, expected) in cases {
        // As a key.
        let mut w = Writer::header(3, 0, 1);
        w.u64(len).data(16, b'k');
        let (got, largest) = alloc_probe::largest_alloc(move || parse_err(w.bytes));
        assert_eq!(got, (24, "metadata key".to_string(), expected.clone()));
        assert!(largest < 4096, "key of {len}: allocated {largest} bytes");
        // As a string value, named after its key.
        let mut w = Writer::header(3, 0, 1);
        w.str("k").u32(8).u64(len).data(16, b'v');
        assert_malformed(w.bytes, 37, "k", expected);
    }
    // As a tensor name (the tensor_count check wants 32 bytes after the counts).
    let cases = [
        (u64::MAX, Malformation::LimitExceeded { value: u64::MAX, limit: MAX_STRING_LEN }),
        (
            MAX_STRING_LEN + 1,
            Malformation::LimitExceeded { value: MAX_STRING_LEN + 1, limit: MAX_STRING_LEN },
        ),
        (MAX_STRING_LEN, Malformation::Truncated { needed: MAX_STRING_LEN, available: 24 }),
    ];
    for (len, expected) in cases {
        let mut w = Writer::header(3, 1, 0);
        w.u64(len).data(24, b'n');
        let (got, largest) = alloc_probe::largest_alloc(move || parse_err(w.bytes));
        assert_eq!(got, (24, "tensor name".to_string(), expected));
        assert!(largest < 4096, "tensor name of {len}: allocated {largest} bytes");
    }
}

#[test]
fn huge_array_lengths_fail_before_allocating() {
    let over = MAX_ARRAY_LEN + 1;
    let cases = [
        (0, u64::MAX, Malformation::LimitExceeded { value: u64::MAX, limit: MAX_ARRAY_LEN }),
        (0, over, Malformation::LimitExceeded { value: over, limit: MAX_ARRAY_LEN }),
        (10, MAX_ARRAY_LEN, Malformation::Truncated { needed: MAX_ARRAY_LEN * 8, available: 16 }),
        (8, 3, Malformation::Truncated { needed: 24, available: 16 }),
        (9, 2, Malformation::Truncated { needed: 24, available: 16 }),
        (0, 17, Malformation::Truncated { needed: 17, available: 16 }),
    ];
    for (elem_type, n, expected) in cases {
        let mut w = Writer::header(3, 0, 1);
        w.str("arr").u32(9).u32(elem_type).u64(n).data(16, 0);
        let (got, largest) = alloc_probe::largest_alloc(move || parse_err(w.bytes));
        // The count is reported where it starts, after the key (11), type and element type.
        assert_eq!(got, (43, "arr".to_string(), expected), "type {elem_type} x {n}");
        assert!(largest < 4096, "type {elem_type} x {n}: allocated {largest} bytes");
    }
}

/// Regression: counts were only checked against the bytes left at the smallest encoding of an
/// item, then reserved in full although one parsed item takes several times that in memory, so
/// a lying header in a big file could demand memory far beyond the file's size before failing.
#[test]
fn lying_counts_in_a_big_file_reserve_little() {
    const BIG: usize = 4 << 20;
    // kv_count as large as the bytes allow; the second (empty, u8) key is a duplicate.
    let mut w = Writer::header(3, 0, BIG as u64 / 13);
    w.data(BIG, 0);
    let (got, largest) = alloc_probe::largest_alloc(move || parse_err(w.bytes));
    assert_eq!(got, (37, "metadata key".to_string(), Malformation::DuplicateKey(String::new())));
    assert!(largest < 1 << 20, "kv_count: allocated {largest} bytes");

    // An array of strings as long as the bytes allow, whose first element is over the limit.
    let mut w = Writer::header(3, 0, 1);
    w.str("a").u32(9).u32(8).u64(BIG as u64 / 8).data(BIG, 0xff);
    let (got, largest) = alloc_probe::largest_alloc(move || parse_err(w.bytes));
    assert_eq!(got.2, Malformation::LimitExceeded { value: u64::MAX, limit: MAX_STRING_LEN });
    assert!(largest < 1 << 20, "array: allocated {largest} bytes");

    // tensor_count as large as the bytes allow; the first info has n_dims 0.
    let mut w = Writer::header(3, BIG as u64 / 32, 0);
    w.data(BIG, 0);
    let (got, largest) = alloc_probe::largest_alloc(move || parse_err(w.bytes));
    assert_eq!(got, (32, "tensor n_dims".to_string(), Malformation::LimitExceeded { value: 0, limit: 4 }));
    assert!(largest < 1 << 20, "tensor_count: allocated {largest} bytes");
}

// ---- metadata ----

#[test]
fn alignment_must_be_a_power_of_two() {
    for a in [0u32, 3, 48, 100, u32::MAX] {
        let mut w = Writer::header(3, 0, 1);
        w.kv_u32("general.alignment", a);
        // Reported at the value: after the 8-byte length, 17-byte key and type id.
        assert_malformed(w.bytes, 24 + 8 + 17 + 4, "general.alignment", Malformation::BadAlignment(a.into()));
    }
    let mut w = Writer::header(3, 0, 1);
    w.kv("general.alignment", &MetaValue::U64((1 << 40) + 1));
    assert_eq!(kind(GgufFile::from_bytes(w.bytes).unwrap_err()), Malformation::BadAlignment((1 << 40) + 1));
}

#[test]
fn alignment_of_the_wrong_type_is_rejected() {
    let wrong = [
        MetaValue::String("32".into()),
        MetaValue::I32(-32),
        MetaValue::F32(32.0),
        MetaValue::Bool(true),
        MetaValue::Array(vec![MetaValue::U32(32)]),
    ];
    for v in wrong {
        let mut w = Writer::header(3, 0, 2);
        w.kv_str("general.name", "x").kv("general.alignment", &v);
        let at = Writer::header(3, 0, 0).at() + 8 + 12 + 4 + 8 + 1 + 8 + 17 + 4;
        assert_malformed(w.bytes, at, "general.alignment", Malformation::BadAlignment(0));
    }
}

#[test]
fn unknown_value_types_are_rejected() {
    for t in [13, 14, 100, u32::MAX] {
        let mut w = Writer::header(3, 0, 1);
        w.str("k").u32(t).data(16, 0);
        assert_malformed(w.bytes, 37, "k", Malformation::UnknownValueType(t));
        // As an array's element type, reported at the array.
        let mut w = Writer::header(3, 0, 1);
        w.str("k").u32(9).u32(t).u64(1).data(16, 0);
        assert_malformed(w.bytes, 37, "k", Malformation::UnknownValueType(t));
    }
}

#[test]
fn arrays_nested_too_deep_are_rejected() {
    use MetaValue::{Array, U8};
    assert_eq!(MAX_ARRAY_DEPTH, 2);
    let ok = Array(vec![Array(vec![U8(1)])]);
    let mut w = Writer::header(3, 0, 1);
    w.kv("k", &ok);
    assert_eq!(GgufFile::from_bytes(w.bytes).unwrap().get("k"), Some(&ok));

    let mut w = Writer::header(3, 0, 1);
    w.kv("k", &Array(vec![Array(vec![Array(vec![U8(1)])])]));
    // The third array starts after key (9), type (4), two array headers (12 each).
    assert_malformed(w.bytes, 24 + 9 + 4 + 12 + 12, "k", Malformation::NestingTooDeep);

    // Nesting far past the limit is refused at the same depth, never recursed into.
    let mut w = Writer::header(3, 0, 1);
    w.str("k").u32(9);
    for _ in 0..10_000 {
        w.u32(9).u64(1);
    }
    w.u32(0).u64(1).raw(&[0]);
    assert_malformed(w.bytes, 24 + 9 + 4 + 12 + 12, "k", Malformation::NestingTooDeep);
}

#[test]
fn invalid_utf8_is_rejected() {
    let bad = [b'o', 0xff, 0xfe];
    let mut w = Writer::header(3, 0, 1);
    w.u64(3).raw(&bad).u32(0).raw(&[0]);
    assert_malformed(w.bytes, 32, "metadata key", Malformation::InvalidUtf8);

    let mut w = Writer::header(3, 0, 1);
    w.str("k").u32(8).u64(3).raw(&bad);
    assert_malformed(w.bytes, 45, "k", Malformation::InvalidUtf8);

    let mut w = Writer::header(3, 1, 0);
    w.u64(3).raw(&bad).u32(1).u64(1).u32(I8).u64(0).pad_to(32).data(1, 0);
    assert_malformed(w.bytes, 32, "tensor name", Malformation::InvalidUtf8);

    // A truncated multi-byte sequence at the end of a string.
    let mut w = Writer::header(3, 0, 1);
    w.u64(2).raw(&[b'a', 0xc3]).u32(0).raw(&[0]);
    assert_malformed(w.bytes, 32, "metadata key", Malformation::InvalidUtf8);
}

#[test]
fn duplicate_keys_are_rejected() {
    let mut w = Writer::header(3, 0, 3);
    w.kv_u32("a", 1).kv_str("b", "x");
    let at = w.at();
    w.kv_str("a", "again");
    assert_malformed(w.bytes, at, "metadata key", Malformation::DuplicateKey("a".into()));
}

// ---- tensor infos ----

/// A file with one tensor info (plus whatever data `data` bytes follow the padded header).
fn one_tensor(shape: &[u64], ggml_type: u32, offset: u64, data: usize) -> Vec<u8> {
    let mut w = Writer::header(3, 1, 0);
    w.tensor("t", shape, ggml_type, offset).pad_to(32).data(data, 0);
    w.bytes
}

/// Offset of `one_tensor`'s n_dims, where shape-wide problems are reported.
const SHAPE_AT: u64 = 24 + 9;

/// Offset of the `i`th dimension of `one_tensor`'s info.
fn dim_at(i: u64) -> u64 {
    24 + 9 + 4 + 8 * i
}

#[test]
fn duplicate_tensor_names_are_rejected() {
    let mut w = Writer::header(3, 2, 0);
    w.tensor("t", &[4], F32, 0);
    let at = w.at();
    w.tensor("t", &[4], F32, 32).pad_to(32).data(64, 0);
    assert_malformed(w.bytes, at, "tensor name", Malformation::DuplicateTensor("t".into()));
}

#[test]
fn n_dims_must_be_one_to_four() {
    for n in [0, 5, 64, u32::MAX] {
        let mut w = Writer::header(3, 1, 0);
        w.str("t").u32(n).data(64, 1);
        assert_malformed(
            w.bytes,
            33,
            "tensor n_dims",
            Malformation::LimitExceeded { value: n.into(), limit: 4 },
        );
    }
}

#[test]
fn zero_dimension_is_rejected() {
    assert_malformed(one_tensor(&[0], F32, 0, 0), dim_at(0), "tensor dimension", Malformation::ZeroDimension);
    assert_malformed(
        one_tensor(&[4, 2, 0], F32, 0, 0),
        dim_at(2),
        "tensor dimension",
        Malformation::ZeroDimension,
    );
}

#[test]
fn overflowing_shapes_are_rejected() {
    let dim = "tensor dimension";
    // Product overflows u64.
    assert_malformed(one_tensor(&[1 << 32, 1 << 32], F32, 0, 0), dim_at(1), dim, Malformation::SizeOverflow);
    assert_malformed(one_tensor(&[u64::MAX, 2], I8, 0, 0), dim_at(0), dim, Malformation::SizeOverflow);
    assert_malformed(one_tensor(&[3, u64::MAX / 2], I8, 0, 0), dim_at(1), dim, Malformation::SizeOverflow);
    // Fits u64 but not i64.
    assert_malformed(one_tensor(&[1 << 32, 1 << 31], I8, 0, 0), dim_at(1), dim, Malformation::SizeOverflow);
    assert_malformed(one_tensor(&[1 << 63], I8, 0, 0), dim_at(0), dim, Malformation::SizeOverflow);
    assert_malformed(
        one_tensor(&[2, 2, 1 << 30, 1 << 31], I8, 0, 0),
        dim_at(3),
        dim,
        Malformation::SizeOverflow,
    );
    // Element count fits i64, byte count overflows u64: reported at the shape.
    assert_malformed(one_tensor(&[1 << 62], F64, 0, 0), SHAPE_AT, "tensor size", Malformation::SizeOverflow);
    // i64::MAX elements is a legal shape; its data just is not in the file.
    let (offset, field, kind) = parse_err(one_tensor(&[i64::MAX as u64], I8, 0, 0));
    assert_eq!((offset, field.as_str()), (dim_at(1) + 4, "tensor offset"));
    assert!(matches!(kind, Malformation::OutOfFile { end, .. } if end == 64 + i64::MAX as u64));
}

#[test]
fn rows_must_be_whole_quantized_blocks() {
    let cases = [(Q4_0, &[16u64, 2][..], 16, 32), (Q8_0, &[33][..], 33, 32), (Q4_K, &[32, 8][..], 32, 256)];
    for (t, shape, row_len, block_len) in cases {
        assert_malformed(
            one_tensor(shape, t, 0, 4096),
            SHAPE_AT,
            "tensor dimension",
            Malformation::RowNotWholeBlocks { row_len, block_len },
        );
    }
    // Only the innermost dimension has to be whole blocks.
    GgufFile::from_bytes(one_tensor(&[32, 3], Q4_0, 0, 3 * 18)).unwrap();
}

#[test]
fn unknown_tensor_types_are_rejected() {
    // 4 and 5 were Q4_2/Q4_3, removed from ggml; 31+ are not types we read.
    for t in [4, 5, 16, 29, 31, 1000, u32::MAX] {
        assert_malformed(
            one_tensor(&[4], t, 0, 64),
            dim_at(1),
            "tensor type",
            Malformation::UnknownTensorType(t),
        );
    }
}

#[test]
fn misaligned_offsets_are_rejected() {
    for offset in [1, 4, 31, 33, u64::MAX] {
        assert_malformed(
            one_tensor(&[4], F32, offset, 64),
            dim_at(1) + 4,
            "tensor offset",
            Malformation::Misaligned { offset, alignment: 32 },
        );
    }
}

#[test]
fn data_past_the_end_of_the_file_is_rejected() {
    // 4 f32 = 16 bytes, 15 present after the 64-byte header.
    assert_malformed(
        one_tensor(&[4], F32, 0, 15),
        dim_at(1) + 4,
        "tensor offset",
        Malformation::OutOfFile { end: 80, file_len: 79 },
    );
    // Aligned offset far past the end.
    assert_malformed(
        one_tensor(&[4], F32, 1 << 40, 64),
        dim_at(1) + 4,
        "tensor offset",
        Malformation::OutOfFile { end: 64 + (1 << 40) + 16, file_len: 128 },
    );
    // Header padding itself missing: data would start at 64, the file ends at 57.
    let mut w = Writer::header(3, 1, 0);
    w.tensor("t", &[1], I8, 0);
    assert_malformed(
        w.bytes,
        dim_at(1) + 4,
        "tensor offset",
        Malformation::OutOfFile { end: 65, file_len: 57 },
    );
    // The largest aligned offset overflows when added to the data start.
    assert_malformed(
        one_tensor(&[4], F32, !31, 64),
        dim_at(1) + 4,
        "tensor offset",
        Malformation::SizeOverflow,
    );
}

#[test]
fn overlapping_tensors_are_rejected() {
    // Same offset.
    let mut w = Writer::header(3, 2, 0);
    w.tensor("a", &[8], F32, 0);
    let b_at = w.at() + 9 + 4 + 8 + 4;
    w.tensor("b", &[8], F32, 0).pad_to(32).data(64, 0);
    assert_malformed(w.bytes, b_at, "tensor offset", Malformation::Overlap { other: "a".into() });

    // Partial overlap, listed out of order: the later-starting one is reported.
    let mut w = Writer::header(3, 3, 0);
    w.tensor("late", &[16], F32, 32);
    let late_at = w.at() - 8;
    w.tensor("early", &[12], F32, 0).tensor("far", &[1], F32, 128).pad_to(32).data(160, 0);
    assert_malformed(w.bytes, late_at, "tensor offset", Malformation::Overlap { other: "early".into() });

    // A small tensor inside a big one.
    let mut w = Writer::header(3, 2, 1);
    w.kv_u32("general.alignment", 1);
    w.tensor("big", &[64], I8, 0);
    let small_at = w.at() + 13 + 4 + 8 + 4;
    w.tensor("small", &[2], I8, 10).data(64, 0);
    assert_malformed(w.bytes, small_at, "tensor offset", Malformation::Overlap { other: "big".into() });
}

/// Forwards to the system allocator and remembers, per thread, the largest single allocation
/// made while armed: how the tests prove that a lying count fails before anything big is
/// reserved.
mod alloc_probe {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    struct Probe;

    thread_local! {
        static ARMED: Cell<bool> = const { Cell::new(false) };
        static LARGEST: Cell<usize> = const { Cell::new(0) };
    }

    fn note(size: usize) {
        // `try_with`: never fail inside the allocator, even while a thread is being torn down.
        if ARMED.try_with(Cell::get).unwrap_or(false) {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    }

    // SAFETY: every call is forwarded unchanged to `System`.
    unsafe impl GlobalAlloc for Probe {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note(new_size);
            unsafe { System.realloc(ptr, layout, new_size) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static PROBE: Probe = Probe;

    /// Runs `f` and returns its result with the largest single allocation it made on this
    /// thread (the result itself is dropped outside the measurement).
    pub fn largest_alloc<R>(f: impl FnOnce() -> R) -> (R, usize) {
        LARGEST.with(|l| l.set(0));
        ARMED.with(|a| a.set(true));
        let r = f();
        ARMED.with(|a| a.set(false));
        (r, LARGEST.with(Cell::get))
    }
}
