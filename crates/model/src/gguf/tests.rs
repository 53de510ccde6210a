//! A tiny GGUF writer for building well-formed and deliberately broken files in tests.

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
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.bytes.extend_from_slice(s.as_bytes());
        self
    }
    pub fn kv_u32(&mut self, k: &str, v: u32) -> &mut Self {
        self.str(k).u32(4).u32(v)
    }
    pub fn kv_str(&mut self, k: &str, v: &str) -> &mut Self {
        self.str(k).u32(8).str(v)
    }
    pub fn tensor(&mut self, name: &str, shape: &[u64], ggml_type: u32, offset: u64) -> &mut Self {
        self.str(name).u32(shape.len() as u32);
        for &d in shape {
            self.u64(d);
        }
        self.u32(ggml_type).u64(offset)
    }
    pub fn pad_to(&mut self, alignment: usize) -> &mut Self {
        while self.bytes.len() % alignment != 0 {
            self.bytes.push(0);
        }
        self
    }
}

fn kind(err: GgufError) -> Malformation {
    match err {
        GgufError::Malformed { kind, .. } => kind,
        other => panic!("expected a malformed-file error, got {other}"),
    }
}

fn small_file() -> Vec<u8> {
    let mut w = Writer::header(3, 2, 2);
    w.kv_str("general.architecture", "llama").kv_u32("llama.block_count", 1);
    w.tensor("a", &[4, 2], 0, 0).tensor("b", &[32], 8, 32);
    w.pad_to(32);
    w.bytes.extend((0..32u8).map(|i| i * 3));
    w.bytes.extend(std::iter::repeat_n(7u8, 34));
    w.bytes
}

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
fn bad_magic_and_version() {
    let mut bytes = small_file();
    bytes[0] = b'X';
    assert!(matches!(kind(GgufFile::from_bytes(bytes).unwrap_err()), Malformation::BadMagic(_)));
    let mut bytes = small_file();
    bytes[4] = 1;
    assert_eq!(kind(GgufFile::from_bytes(bytes).unwrap_err()), Malformation::UnsupportedVersion(1));
}
