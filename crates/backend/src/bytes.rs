//! Weights stay where the model file put them: a `SharedBytes` is a range inside a buffer kept
//! alive by reference count (usually the model's mmap), so handing a tensor to the CPU backend
//! copies nothing.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// Anything that owns bytes and can be shared across threads (an mmap, a `Vec<u8>`).
pub type ByteOwner = Arc<dyn AsRef<[u8]> + Send + Sync>;

#[derive(Clone)]
pub struct SharedBytes {
    owner: ByteOwner,
    start: usize,
    len: usize,
}

impl SharedBytes {
    /// The range `start..start + len` of `owner`, or `None` when it does not lie inside it.
    pub fn new(owner: ByteOwner, start: usize, len: usize) -> Option<SharedBytes> {
        let end = start.checked_add(len)?;
        if end > (*owner).as_ref().len() {
            return None;
        }
        Some(SharedBytes { owner, start, len })
    }

    /// The range `start..start + len` of these bytes, sharing the owner (a fused tensor's part:
    /// rows of every GGUF type are whole blocks, so a row range is a byte range).
    pub fn slice(&self, start: usize, len: usize) -> Option<SharedBytes> {
        if start.checked_add(len)? > self.len {
            return None;
        }
        Some(SharedBytes { owner: self.owner.clone(), start: self.start + start, len })
    }

    pub fn from_vec(bytes: Vec<u8>) -> SharedBytes {
        let len = bytes.len();
        SharedBytes { owner: Arc::new(bytes), start: 0, len }
    }
}

impl Deref for SharedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &(*self.owner).as_ref()[self.start..self.start + self.len]
    }
}

impl fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedBytes({} bytes at {})", self.len, self.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_stay_inside_their_range() {
        let b = SharedBytes::from_vec((0..10).collect()).slice(2, 6).unwrap();
        assert_eq!(&*b, &[2, 3, 4, 5, 6, 7]);
        assert_eq!(&*b.slice(4, 2).unwrap(), &[6, 7]);
        assert!(b.slice(4, 3).is_none() && b.slice(usize::MAX, 2).is_none());
    }
}
