//! The first-time merge of a pre-token of up to 15 bytes with its keys in one AVX-512
//! register.

use super::*;

impl Encoder {
    /// `merge_linked` of a pre-token of at most 15 bytes with its sixteen keys in one
    /// AVX-512 register (see `ShortMerge`).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,bmi1,lzcnt")]
    pub(super) unsafe fn merge_short_avx512(&self, piece: &[u8], ids: &mut [u32; MAX_PACKED]) -> usize {
        let PairRanks::Packed(pairs) = &self.pair_ranks else {
            return self.merge_linked::<{ MAX_PACKED + 1 }, 4>(piece, ids);
        };
        let mut merge = ShortMerge::new(self, piece);
        loop {
            let best = merge.lowest_key();
            if best == u32::MAX {
                break;
            }
            merge.round(best, pairs);
        }
        merge.ids(ids)
    }
}

/// tiktoken's merge of a pre-token of at most 15 bytes (as `Encoder::merge_linked`) with its
/// sixteen keys in one AVX-512 register instead of an array (the lowest found with one
/// reduction, three lanes set a round) and its parts linked by a bit mask of where each
/// starts: a round goes from its lookups to the next lowest key without a trip through
/// memory.
#[cfg(target_arch = "x86_64")]
pub(super) struct ShortMerge {
    pub(super) keys: std::arch::x86_64::__m512i,
    /// Bit i set where a part starts at byte i.
    pub(super) starts: u32,
    pub(super) len: usize,
    pub(super) parts: [u32; 16],
}

#[cfg(target_arch = "x86_64")]
impl ShortMerge {
    #[target_feature(enable = "avx512f,bmi1,lzcnt")]
    #[inline]
    pub(super) fn new(encoder: &Encoder, piece: &[u8]) -> ShortMerge {
        let n = piece.len();
        debug_assert!(n <= MAX_PACKED);
        let mut parts = [0u32; 16];
        for (part, &b) in parts.iter_mut().zip(piece) {
            *part = encoder.byte_ids[b as usize];
        }
        let mut keys = [u32::MAX; 16];
        for (j, pair) in piece.windows(2).enumerate() {
            keys[j] = Self::key(encoder.byte_pair_ranks[(pair[0] as usize) << 8 | pair[1] as usize], j as u32);
        }
        // SAFETY: `keys` is sixteen u32.
        let keys = unsafe { std::arch::x86_64::_mm512_loadu_si512(keys.as_ptr().cast()) };
        ShortMerge { keys, starts: (1 << n) - 1, len: n, parts }
    }

    /// The key of the pair at `at` that merges into `rank`: the lowest is merged first.
    #[inline(always)]
    pub(super) fn key(rank: u32, at: u32) -> u32 {
        if rank == u32::MAX { u32::MAX } else { rank << 4 | at }
    }

    /// The key of the pair to merge next; u32::MAX when none is left.
    #[target_feature(enable = "avx512f,bmi1,lzcnt")]
    #[inline]
    pub(super) fn lowest_key(&self) -> u32 {
        std::arch::x86_64::_mm512_reduce_min_epu32(self.keys)
    }

    /// Merges the pair of `best` (see `lowest_key`).
    #[target_feature(enable = "avx512f,bmi1,lzcnt")]
    #[inline]
    pub(super) fn round(&mut self, best: u32, pairs: &PackedPairs) {
        use std::arch::x86_64::{_mm512_mask_mov_epi32, _mm512_set1_epi32};
        let (i, merged) = (best & 15, best >> 4);
        // The part after i's (at j) goes; k follows it, p comes before i.
        let after_i = self.starts & !((2 << i) - 1);
        let j = after_i.trailing_zeros();
        let after_j = after_i & (after_i - 1);
        self.starts &= !(1 << j);
        let before_i = self.starts & ((1 << i) - 1);
        self.parts[i as usize] = merged;
        let k = after_j.trailing_zeros() as usize;
        let right = if k < self.len { Self::key(pairs.get(merged, self.parts[k]), i) } else { u32::MAX };
        self.keys = _mm512_mask_mov_epi32(self.keys, 1 << j, _mm512_set1_epi32(-1));
        self.keys = _mm512_mask_mov_epi32(self.keys, 1 << i, _mm512_set1_epi32(right as i32));
        if before_i != 0 {
            let p = 31 - before_i.leading_zeros();
            let left = Self::key(pairs.get(self.parts[p as usize], merged), p);
            self.keys = _mm512_mask_mov_epi32(self.keys, 1 << p, _mm512_set1_epi32(left as i32));
        }
    }

    /// Writes the ids to `ids` and returns how many.
    #[inline(always)]
    pub(super) fn ids(&self, ids: &mut [u32; MAX_PACKED]) -> usize {
        let (mut starts, mut count) = (self.starts, 0);
        while starts != 0 {
            ids[count] = self.parts[starts.trailing_zeros() as usize];
            count += 1;
            starts &= starts - 1;
        }
        count
    }
}
