//! Idle cached blocks in least-recently-released order, as an intrusive doubly linked list over
//! block ids. A prefix hit revives a block from wherever it sits in the order, so the list needs
//! O(1) removal from the middle as well as O(1) push-newest and pop-oldest; links live in two
//! arrays indexed by block id, so nothing is allocated after construction.

const NIL: u32 = u32::MAX;

pub(crate) struct LruList {
    /// `[capacity]` the next-older block, or `NIL`.
    prev: Vec<u32>,
    /// `[capacity]` the next-newer block, or `NIL`.
    next: Vec<u32>,
    /// `[capacity]` whether the block is in the list.
    linked: Vec<bool>,
    /// Oldest block (evicted first).
    head: u32,
    /// Newest block.
    tail: u32,
    len: usize,
}

impl LruList {
    /// An empty list over ids `0..capacity` (`capacity < u32::MAX`, checked by the caller).
    pub fn new(capacity: usize) -> LruList {
        LruList { prev: vec![NIL; capacity], next: vec![NIL; capacity], linked: vec![false; capacity], head: NIL, tail: NIL, len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn contains(&self, id: u32) -> bool {
        self.linked.get(id as usize).copied().unwrap_or(false)
    }

    /// Makes `id` the newest entry. Returns false (and does nothing) if it is out of range or
    /// already listed.
    pub fn push_back(&mut self, id: u32) -> bool {
        if id as usize >= self.linked.len() || self.linked[id as usize] {
            return false;
        }
        let i = id as usize;
        self.linked[i] = true;
        self.prev[i] = self.tail;
        self.next[i] = NIL;
        if self.tail == NIL {
            self.head = id;
        } else {
            self.next[self.tail as usize] = id;
        }
        self.tail = id;
        self.len += 1;
        true
    }

    /// Removes and returns the oldest entry.
    pub fn pop_front(&mut self) -> Option<u32> {
        let id = self.head;
        (id != NIL && self.remove(id)).then_some(id)
    }

    /// Unlinks `id` wherever it is. Returns false if it was not listed.
    pub fn remove(&mut self, id: u32) -> bool {
        if !self.contains(id) {
            return false;
        }
        let i = id as usize;
        let (p, n) = (self.prev[i], self.next[i]);
        if p == NIL {
            self.head = n;
        } else {
            self.next[p as usize] = n;
        }
        if n == NIL {
            self.tail = p;
        } else {
            self.prev[n as usize] = p;
        }
        self.linked[i] = false;
        self.prev[i] = NIL;
        self.next[i] = NIL;
        self.len -= 1;
        true
    }

    /// Entries from oldest to newest.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        let mut cur = self.head;
        std::iter::from_fn(move || {
            (cur != NIL).then(|| {
                let id = cur;
                cur = self.next[id as usize];
                id
            })
        })
    }

    /// The links agree with each other, with `linked` and with `len`.
    pub fn check(&self) -> Result<(), String> {
        let mut count = 0;
        let mut prev = NIL;
        let mut cur = self.head;
        while cur != NIL {
            let i = cur as usize;
            if i >= self.linked.len() || !self.linked[i] {
                return Err(format!("lru: block {cur} is linked but not marked as listed"));
            }
            if self.prev[i] != prev {
                return Err(format!("lru: block {cur} has prev {} instead of {prev}", self.prev[i]));
            }
            count += 1;
            if count > self.len {
                return Err(format!("lru: more than {} entries (cycle?)", self.len));
            }
            prev = cur;
            cur = self.next[i];
        }
        if prev != self.tail {
            return Err(format!("lru: walk ends at {prev}, tail is {}", self.tail));
        }
        let marked = self.linked.iter().filter(|&&l| l).count();
        if count != self.len || marked != self.len {
            return Err(format!("lru: len {} but {count} linked and {marked} marked", self.len));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_through_pushes_pops_and_middle_removals() {
        let mut l = LruList::new(6);
        for id in [3, 1, 4, 0, 5] {
            assert!(l.push_back(id));
        }
        assert!(!l.push_back(4), "already listed");
        assert!(!l.push_back(6), "out of range");
        assert!(l.remove(4));
        assert!(!l.remove(4));
        assert!(!l.remove(2));
        assert_eq!(l.iter().collect::<Vec<_>>(), vec![3, 1, 0, 5]);
        assert_eq!(l.pop_front(), Some(3));
        assert!(l.remove(5));
        assert!(l.push_back(3));
        assert_eq!(l.iter().collect::<Vec<_>>(), vec![1, 0, 3]);
        l.check().unwrap();
        assert_eq!((l.pop_front(), l.pop_front(), l.pop_front(), l.pop_front()), (Some(1), Some(0), Some(3), None));
        assert_eq!(l.len(), 0);
        l.check().unwrap();
    }
}
