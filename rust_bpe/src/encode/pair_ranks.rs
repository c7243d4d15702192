//! The merge table of the encoder: (left id, right id) -> id of their concatenation.
//!
//! Looked up a dozen times for each pre-token met for the first time, so it is laid out
//! for the cache: one u64 per pair (left and right id in 21 bits each, the merged id in
//! the low 22), in buckets of eight that fill one cache line, at most about half full, so
//! that a lookup, found or not, nearly always reads one line. Most pairs asked for are not
//! there: a bit filter of 128 KiB answers most of those without reading the table.
//! Vocabularies of 2^21 tokens or more fall back to a hash map.
//!
//! Most pairs asked for are of the first few hundred tokens (bytes and the earliest
//! merges: about 60% of the lookups of GPT-2's first-time merges on English are of two ids
//! below 512): those are read from a grid of 512 x 512 u16 instead, one load without a
//! hash, where every id fits in a u16.

use rustc_hash::FxHashMap;

const ID_BITS: u32 = 21;
const RANK_BITS: u32 = 22;
const EMPTY: u64 = u64::MAX;
const BUCKET: usize = 8;
/// Pairs of ids below 1 << DENSE_BITS are in the grid.
const DENSE_BITS: u32 = 9;

#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(crate) struct Bucket([u64; BUCKET]);

pub(crate) enum PairRanks {
    Packed(PackedPairs),
    Map(FxHashMap<u64, u32>),
}

pub(crate) struct PackedPairs {
    buckets: Vec<Bucket>,
    shift: u32,
    filter: Vec<u64>,
    /// The grid, row by left id; u16::MAX where no pair.
    dense: Vec<u16>,
    /// 1 << DENSE_BITS, or 0 where the grid is empty (ids past u16).
    dense_below: u32,
}

#[inline(always)]
fn packed_key(a: u32, b: u32) -> u64 {
    ((a as u64) << ID_BITS) | b as u64
}

impl PairRanks {
    /// `pairs` are (left, right, merged) ids; `vocab_size` bounds every id.
    pub(crate) fn new(pairs: &[(u32, u32, u32)], vocab_size: usize) -> PairRanks {
        if vocab_size >= (1 << ID_BITS) - 1 {
            return PairRanks::Map(pairs.iter().map(|&(a, b, id)| (((a as u64) << 32) | b as u64, id)).collect());
        }
        let wanted = (pairs.len() * 2 / BUCKET).next_power_of_two().max(2);
        let shift = 64 - wanted.trailing_zeros();
        let mut buckets = vec![Bucket([EMPTY; BUCKET]); wanted];
        let mask = wanted - 1;
        let mut filter = vec![0u64; FILTER_BITS / 64];
        for &(a, b, id) in pairs {
            let key = packed_key(a, b);
            let bit = filter_bit(key);
            filter[bit / 64] |= 1 << (bit % 64);
            let mut at = bucket_of(key, shift);
            'place: loop {
                for slot in buckets[at].0.iter_mut() {
                    if *slot == EMPTY {
                        *slot = (key << RANK_BITS) | id as u64;
                        break 'place;
                    }
                }
                at = (at + 1) & mask;
            }
        }
        let with_grid = vocab_size < u16::MAX as usize;
        let mut dense = vec![u16::MAX; if with_grid { 1 << (2 * DENSE_BITS) } else { 0 }];
        if with_grid {
            for &(a, b, id) in pairs.iter().filter(|&&(a, b, _)| (a | b) >> DENSE_BITS == 0) {
                dense[(a << DENSE_BITS | b) as usize] = id as u16;
            }
        }
        let dense_below = if with_grid { 1 << DENSE_BITS } else { 0 };
        PairRanks::Packed(PackedPairs { buckets, shift, filter, dense, dense_below })
    }

    /// The id that `a` followed by `b` merge into, u32::MAX if none.
    #[inline(always)]
    pub(crate) fn get(&self, a: u32, b: u32) -> u32 {
        match self {
            PairRanks::Packed(pairs) => pairs.get(a, b),
            PairRanks::Map(map) => map.get(&(((a as u64) << 32) | b as u64)).copied().unwrap_or(u32::MAX),
        }
    }

    /// Asks for the filter word and the bucket that `get(a, b)` reads (for a pair outside
    /// the grid).
    #[inline(always)]
    pub(crate) fn prefetch(&self, a: u32, b: u32) {
        if let PairRanks::Packed(pairs) = self {
            pairs.prefetch(a, b);
        }
    }
}

impl PackedPairs {
    /// The id that `a` followed by `b` merge into, u32::MAX if none.
    #[inline(always)]
    pub(crate) fn get(&self, a: u32, b: u32) -> u32 {
        if (a | b) < self.dense_below {
            // SAFETY: both ids are below 1 << DENSE_BITS, and the grid has them all.
            let id = unsafe { *self.dense.get_unchecked((a << DENSE_BITS | b) as usize) };
            return if id == u16::MAX { u32::MAX } else { id as u32 };
        }
        let key = packed_key(a, b);
        let bit = filter_bit(key);
        // SAFETY: `filter_bit` is below FILTER_BITS.
        if unsafe { *self.filter.get_unchecked(bit / 64) } & (1 << (bit % 64)) == 0 {
            return u32::MAX;
        }
        let mask = self.buckets.len() - 1;
        let mut at = bucket_of(key, self.shift);
        loop {
            // SAFETY: `at` is masked to the buckets (the first by its shift).
            let bucket = unsafe { &self.buckets.get_unchecked(at).0 };
            let mut found = u32::MAX;
            let mut full = true;
            for &slot in bucket {
                if slot >> RANK_BITS == key {
                    found = (slot & ((1 << RANK_BITS) - 1)) as u32;
                }
                full &= slot != EMPTY;
            }
            if found != u32::MAX || !full {
                return found;
            }
            at = (at + 1) & mask;
        }
    }

    /// Asks for the filter word and the bucket that `get(a, b)` reads (for a pair outside
    /// the grid).
    #[inline(always)]
    pub(crate) fn prefetch(&self, a: u32, b: u32) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let key = packed_key(a, b);
            // SAFETY: prefetching is a hint; both addresses are in live tables.
            unsafe {
                _mm_prefetch(self.filter.as_ptr().add(filter_bit(key) / 64) as *const i8, _MM_HINT_T0);
                _mm_prefetch(self.buckets.as_ptr().add(bucket_of(key, self.shift)) as *const i8, _MM_HINT_T0);
            }
        }
    }
}

const FILTER_BITS: usize = 1 << 20;

#[inline(always)]
fn filter_bit(key: u64) -> usize {
    (key.wrapping_mul(0xD6E8_FEB8_6659_FD93) >> 44) as usize
}

#[inline(always)]
fn bucket_of(key: u64, shift: u32) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_pair_and_nothing_else() {
        // With the grid, hashed only, and a hash map.
        for vocab_size in [1000usize, 100_000, 1 << 22] {
            let pairs: Vec<(u32, u32, u32)> =
                (0..5000u32).map(|i| (i % 997, (i * 31) % 1009, (i * 7 + 3) % vocab_size as u32)).collect();
            let mut unique: FxHashMap<(u32, u32), u32> = FxHashMap::default();
            for &(a, b, id) in &pairs {
                unique.entry((a, b)).or_insert(id);
            }
            let pairs: Vec<(u32, u32, u32)> = unique.iter().map(|(&(a, b), &id)| (a, b, id)).collect();
            let table = PairRanks::new(&pairs, vocab_size);
            for &(a, b, id) in &pairs {
                assert_eq!(table.get(a, b), id);
            }
            for a in 0..300 {
                for b in 0..300 {
                    if !unique.contains_key(&(a, b)) {
                        assert_eq!(table.get(a, b), u32::MAX);
                    }
                }
            }
        }
    }
}
