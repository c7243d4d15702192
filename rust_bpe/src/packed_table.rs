//! A hash table keyed by packed pre-tokens (see `pretokenize::pack`), made for lookups in
//! batches: the slots of a batch of keys are prefetched first, then probed, so the cache
//! misses of a large table overlap instead of waiting one after another.
//!
//! Open addressing with linear probing from an even slot: slots come in pairs that share
//! one cache line, so a probe nearly always reads one line. Key 0 marks an empty slot (a
//! packed key always holds a length of at least 1 in its top byte).

#[derive(Clone, Copy)]
#[repr(C)]
struct Slot<V: Copy> {
    key: u128,
    value: V,
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line<V: Copy>([Slot<V>; 2]);

#[derive(Clone)]
pub struct PackedTable<V: Copy + Default> {
    lines: Vec<Line<V>>,
    /// Number of slots - 1 (a power of two).
    mask: usize,
    len: usize,
}

/// A folded multiply of the two halves: fast, and it spreads keys that differ in any byte.
#[inline(always)]
pub fn hash(key: u128) -> u64 {
    const K1: u64 = 0x9E37_79B9_7F4A_7C15;
    const K2: u64 = 0xD6E8_FEB8_6659_FD93;
    let (lo, hi) = (key as u64 ^ K1, (key >> 64) as u64 ^ K2);
    let product = (lo as u128).wrapping_mul(hi as u128);
    (product as u64) ^ ((product >> 64) as u64)
}

impl<V: Copy + Default> Default for PackedTable<V> {
    fn default() -> Self {
        PackedTable::with_capacity(1024)
    }
}

impl<V: Copy + Default> PackedTable<V> {
    pub fn with_capacity(n: usize) -> PackedTable<V> {
        let size = (n * 2).next_power_of_two().max(64);
        let empty = Slot { key: 0, value: V::default() };
        let mut lines = crate::text::huge_pages::vec_with_capacity(size / 2);
        lines.resize(size / 2, Line([empty; 2]));
        PackedTable { lines, mask: size - 1, len: 0 }
    }

    #[inline(always)]
    fn slot(&self, i: usize) -> &Slot<V> {
        &self.lines[i >> 1].0[i & 1]
    }

    #[inline(always)]
    fn slot_mut(&mut self, i: usize) -> &mut Slot<V> {
        &mut self.lines[i >> 1].0[i & 1]
    }

    fn num_slots(&self) -> usize {
        self.mask + 1
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Asks the CPU to start loading the slot where `hash` begins its probe into L1.
    #[inline(always)]
    pub fn prefetch(&self, hash: u64) {
        #[cfg(target_arch = "x86_64")]
        {
            let line = &self.lines[(hash as usize & self.mask) >> 1] as *const Line<V> as *const i8;
            // SAFETY: prefetching is a hint; the address is that of a live slot.
            unsafe { std::arch::x86_64::_mm_prefetch(line, std::arch::x86_64::_MM_HINT_T0) };
        }
    }

    /// The same into L2 only: for a lookup hundreds of cycles away, without crowding L1.
    #[inline(always)]
    pub fn prefetch_l2(&self, hash: u64) {
        #[cfg(target_arch = "x86_64")]
        {
            let line = &self.lines[(hash as usize & self.mask) >> 1] as *const Line<V> as *const i8;
            // SAFETY: prefetching is a hint; the address is that of a live slot.
            unsafe { std::arch::x86_64::_mm_prefetch(line, std::arch::x86_64::_MM_HINT_T1) };
        }
    }

    #[inline(always)]
    pub fn get(&self, key: u128, hash: u64) -> Option<V> {
        let line_mask = self.mask >> 1;
        let mut at = (hash as usize & self.mask) >> 1;
        loop {
            let [first, second] = &self.lines[at].0;
            if first.key == key {
                return Some(first.value);
            }
            if second.key == key {
                return Some(second.value);
            }
            // Probes start at the first slot of a line, so an empty first slot means an
            // empty second one.
            if second.key == 0 {
                return None;
            }
            at = (at + 1) & line_mask;
        }
    }

    /// The value of `key`, inserted as `V::default()` first if missing.
    #[inline(always)]
    pub fn entry(&mut self, key: u128, hash: u64) -> &mut V {
        if (self.len + 1) * 2 > self.num_slots() {
            self.grow();
        }
        let mut i = hash as usize & self.mask & !1;
        loop {
            let slot_key = self.slot(i).key;
            if slot_key == key {
                return &mut self.slot_mut(i).value;
            }
            if slot_key == 0 {
                self.slot_mut(i).key = key;
                self.len += 1;
                return &mut self.slot_mut(i).value;
            }
            i = (i + 1) & self.mask;
        }
    }

    pub fn insert(&mut self, key: u128, value: V) {
        *self.entry(key, hash(key)) = value;
    }

    /// Makes room for `n` keys in all without growing again.
    pub fn reserve(&mut self, n: usize) {
        if n * 2 > self.num_slots() {
            self.rehash(n);
        }
    }

    fn grow(&mut self) {
        self.rehash(self.num_slots());
    }

    fn rehash(&mut self, capacity: usize) {
        let old = std::mem::replace(self, PackedTable::with_capacity(capacity));
        for slot in old.lines.iter().flat_map(|line| line.0).filter(|s| s.key != 0) {
            *self.entry(slot.key, hash(slot.key)) = slot.value;
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (u128, V)> + '_ {
        self.lines.iter().flat_map(|line| line.0).filter(|s| s.key != 0).map(|s| (s.key, s.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pretokenize::pack;

    #[test]
    fn holds_what_was_put_in_through_growth() {
        let mut table: PackedTable<u64> = PackedTable::with_capacity(4);
        let words: Vec<String> = (0..5000).map(|i| format!("w{i}")).collect();
        for (i, w) in words.iter().enumerate() {
            *table.entry(pack(w.as_bytes()), hash(pack(w.as_bytes()))) += i as u64 + 1;
        }
        assert_eq!(table.len(), words.len());
        for (i, w) in words.iter().enumerate() {
            assert_eq!(table.get(pack(w.as_bytes()), hash(pack(w.as_bytes()))), Some(i as u64 + 1));
        }
        assert_eq!(table.get(pack(b"absent"), hash(pack(b"absent"))), None);
        assert_eq!(table.iter().count(), words.len());
    }
}
