//! Block hashes for automatic prefix caching.
//!
//! A block's KV depends on its own tokens *and* on every token before it, so a block is named by a
//! hash chained over its parent's hash (the previous block of the same sequence), its token ids
//! and a per-model salt (two models, or two quantizations of one, must never share KV).
//!
//! The hash is written out by hand instead of using `std::hash::DefaultHasher`, whose output may
//! change between Rust releases: a block hash should mean the same thing in every build and every
//! process, so that a cache could one day be persisted or shared, and so that tests can pin values.
//!
//! Definition (stable; changing it is a format change): 64-bit FNV-1a over the bytes
//!
//! ```text
//! salt: u64 LE | 0x00 (first block) or 0x01, parent: u64 LE | token count: u64 LE | tokens: u32 LE each
//! ```
//!
//! followed by MurmurHash3's `fmix64` finalizer, because plain FNV-1a mixes its last bytes poorly
//! and the hash map keys on all 64 bits. A collision would hand out someone else's KV, so lookups
//! also compare the stored tokens and parent hash (see `BlockPool::lookup`).

/// A full block's identity: its chained content hash.
pub type BlockHash = u64;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The hash of a full block holding `tokens`, whose predecessor in the sequence hashed to
/// `parent` (`None` for a sequence's first block).
pub fn block_hash(salt: u64, parent: Option<BlockHash>, tokens: &[u32]) -> BlockHash {
    let mut h = Fnv1a::default();
    h.write(&salt.to_le_bytes());
    match parent {
        None => h.write(&[0]),
        Some(p) => {
            h.write(&[1]);
            h.write(&p.to_le_bytes());
        }
    }
    h.write(&(tokens.len() as u64).to_le_bytes());
    for t in tokens {
        h.write(&t.to_le_bytes());
    }
    fmix64(h.0)
}

struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Fnv1a {
        Fnv1a(FNV_OFFSET)
    }
}

impl Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
    }
}

/// MurmurHash3's 64-bit finalizer: every input bit affects every output bit.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        let fnv = |s: &[u8]| {
            let mut h = Fnv1a::default();
            h.write(s);
            h.0
        };
        assert_eq!(fnv(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn hash_is_pinned_across_builds() {
        // Values from an independent implementation of the definition in the module docs. If
        // this changes, every persisted or shared cache keyed by the hash is invalid.
        assert_eq!(block_hash(0, None, &[1, 2, 3, 4]), PINNED_ROOT);
        assert_eq!(block_hash(7, Some(PINNED_ROOT), &[5, 6, 7, 8]), PINNED_CHILD);
    }

    const PINNED_ROOT: u64 = 0xf09c_aabc_bb9e_a97f;
    const PINNED_CHILD: u64 = 0x157d_e852_beb6_59e7;

    #[test]
    fn every_input_changes_the_hash() {
        let base = block_hash(1, Some(9), &[10, 11, 12, 13]);
        assert_ne!(base, block_hash(2, Some(9), &[10, 11, 12, 13]), "salt");
        assert_ne!(base, block_hash(1, Some(8), &[10, 11, 12, 13]), "parent");
        assert_ne!(base, block_hash(1, None, &[10, 11, 12, 13]), "first block vs child");
        assert_ne!(base, block_hash(1, Some(9), &[10, 11, 13, 12]), "token order");
        assert_ne!(base, block_hash(1, Some(9), &[10, 11, 12]), "length");
        assert_eq!(base, block_hash(1, Some(9), &[10, 11, 12, 13]), "deterministic");
    }
}
