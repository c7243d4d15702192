//! The first-time merge of a pre-token of up to 64 bytes (tiktoken's, leftmost lowest
//! rank first) with its parts linked in an array: the portable form and its AVX2 build.

use super::*;

impl Encoder {
    #[inline(always)]
    pub(super) fn pair_rank(&self, a: u32, b: u32) -> u32 {
        self.pair_ranks.get(a, b)
    }

    /// The first-time merge of each of `pieces` (every one at most 15 bytes) as `encode`
    /// does it, or (`portable`) without AVX-512; a hash of all the ids. For
    /// `examples/merge_speed.rs`, which times it alone.
    #[doc(hidden)]
    pub fn merge_short_each(&self, pieces: &[&[u8]], portable: bool) -> u64 {
        let mut digest = 0u64;
        let mut ids = [0u32; MAX_PACKED];
        for piece in pieces {
            let count = if portable && self.short_keys_fit {
                self.merge_linked::<{ MAX_PACKED + 1 }, 4>(piece, &mut ids)
            } else {
                self.merge_short(piece, &mut ids)
            };
            for &id in &ids[..count] {
                digest = (digest ^ id as u64).wrapping_mul(0x100_0000_01B3);
            }
        }
        digest
    }

    /// tiktoken's merge of a pre-token of at most 15 bytes (see `merge_linked`).
    /// Writes the ids to `ids` and returns how many.
    pub(super) fn merge_short(&self, piece: &[u8], ids: &mut [u32; MAX_PACKED]) -> usize {
        debug_assert!(piece.len() <= MAX_PACKED);
        if !self.short_keys_fit {
            let (mut parts, mut ranks) = (Vec::new(), Vec::new());
            self.merge_into(piece, &mut parts, &mut ranks);
            ids[..parts.len()].copy_from_slice(&parts);
            return parts.len();
        }
        #[cfg(target_arch = "x86_64")]
        if self.avx512 {
            // SAFETY: the CPU has AVX-512F, BMI1 and LZCNT.
            return unsafe { self.merge_short_avx512(piece, ids) };
        }
        self.merge_linked::<{ MAX_PACKED + 1 }, 4>(piece, ids)
    }

    /// `merge_linked` of a pre-token of 16 to 64 bytes, whose search for the lowest key
    /// goes through up to 63 keys a round: with AVX2 where the CPU has it.
    pub(super) fn merge_medium(&self, piece: &[u8], ids: &mut [u32; 64]) -> usize {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { self.merge_medium_avx2(piece, ids) };
        }
        self.merge_linked::<65, 7>(piece, ids)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn merge_medium_avx2(&self, piece: &[u8], ids: &mut [u32; 64]) -> usize {
        self.merge_linked::<65, 7>(piece, ids)
    }

    /// tiktoken's merge of a pre-token of fewer than `N` bytes, on the stack: each pair is
    /// keyed (merged id << SHIFT | position of its left part; `N` <= 1 << SHIFT, and every
    /// id below 1 << (32 - SHIFT)), so the lowest key is the pair to merge next (lowest
    /// rank, leftmost first), and parts are linked instead of moved.
    /// Writes the ids to `ids` and returns how many.
    #[inline(always)]
    pub(super) fn merge_linked<const N: usize, const SHIFT: u32>(&self, piece: &[u8], ids: &mut [u32]) -> usize {
        let n = piece.len();
        debug_assert!(n < N && N <= 1 << SHIFT && u8::try_from(N).is_ok());
        let mut parts = [0u32; N];
        let mut keys = [u32::MAX; N];
        let mut next = [0u8; N];
        let mut prev = [0u8; N];
        for (j, &b) in piece.iter().enumerate() {
            parts[j] = self.byte_ids[b as usize];
            next[j] = j as u8 + 1;
            prev[j] = (j as u8).wrapping_sub(1);
        }
        let key = |rank: u32, at: usize| if rank == u32::MAX { u32::MAX } else { rank << SHIFT | at as u32 };
        // Parts past the end and before the start are 0 (index N - 1): a harmless address
        // for a prefetch.
        let part = |parts: &[u32; N], at: usize| parts[at.min(N - 1)];
        for j in 0..n.saturating_sub(1) {
            keys[j] = key(self.byte_pair_ranks[(piece[j] as usize) << 8 | piece[j + 1] as usize], j);
        }
        loop {
            let best = keys[..n.saturating_sub(1)].iter().fold(u32::MAX, |m, &k| m.min(k));
            if best == u32::MAX {
                break;
            }
            let (i, merged) = ((best & ((1 << SHIFT) - 1)) as usize, best >> SHIFT);
            let j = next[i] as usize;
            parts[i] = merged;
            keys[j] = u32::MAX;
            let k = next[j] as usize;
            next[i] = k as u8;
            let p = prev[i];
            // Both lookups' lines asked for before either is probed; and for a pair found,
            // the lines of the lookups its own merge will make, as most pairs keep their
            // neighbours until they merge (a round waits on no earlier round's lookups).
            self.pair_ranks.prefetch(merged, part(&parts, k));
            self.pair_ranks.prefetch(part(&parts, p as usize), merged);
            keys[i] = if k < n {
                prev[k] = i as u8;
                let rank = self.pair_ranks.get(merged, parts[k]);
                if rank != u32::MAX {
                    self.pair_ranks.prefetch(part(&parts, p as usize), rank);
                    self.pair_ranks.prefetch(rank, part(&parts, next[k] as usize));
                }
                key(rank, i)
            } else {
                u32::MAX
            };
            if p != u8::MAX {
                let rank = self.pair_ranks.get(parts[p as usize], merged);
                if rank != u32::MAX {
                    self.pair_ranks.prefetch(part(&parts, prev[p as usize] as usize), rank);
                    self.pair_ranks.prefetch(rank, part(&parts, k));
                }
                keys[p as usize] = key(rank, p as usize);
            }
        }
        let (mut count, mut at) = (0, 0);
        while at < n {
            ids[count] = parts[at];
            count += 1;
            at = next[at] as usize;
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::testing::*;

    #[test]
    fn the_merge_routines_agree_on_random_pieces() {
        let enc = trained();
        let text = "the quick brown fox jumps over the lazy dog. aaaaaaaa  \n\n the end thequickbrownfoxxx dogdogdog";
        let mut seed = 11u64;
        let mut next = move |n: usize| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        };
        for _ in 0..3000 {
            let len = 1 + next(64);
            let piece: Vec<u8> = (0..len).map(|_| if next(8) == 0 { next(256) as u8 } else { text.as_bytes()[next(text.len())] }).collect();
            let piece: Vec<u8> = if next(2) == 0 { piece } else { text.as_bytes()[..len.min(text.len())].to_vec() };
            let mut long = Vec::new();
            enc.merge_long(&piece, &mut long);
            let (mut parts, mut ranks) = (Vec::new(), Vec::new());
            enc.merge_into(&piece, &mut parts, &mut ranks);
            assert_eq!(parts, long, "{piece:?}");
            let mut linked = [0; 64];
            let count = enc.merge_linked::<65, 7>(&piece, &mut linked);
            assert_eq!(linked[..count], long, "{piece:?}");
            if piece.len() <= MAX_PACKED {
                assert_short_merges_agree(&enc, &piece, &long);
            }
        }
    }

    /// Every merge of pre-tokens of at most 15 bytes gives `expected` for `piece`.
    fn assert_short_merges_agree(enc: &Encoder, piece: &[u8], expected: &[u32]) {
        let mut short = [0; MAX_PACKED];
        let count = enc.merge_short(piece, &mut short);
        assert_eq!(short[..count], *expected, "{piece:?}");
        let count = enc.merge_linked::<{ MAX_PACKED + 1 }, 4>(piece, &mut short);
        assert_eq!(short[..count], *expected, "{piece:?}");
        #[cfg(target_arch = "x86_64")]
        if enc.avx512 {
            // SAFETY: the CPU has what it needs.
            let count = unsafe { enc.merge_short_avx512(piece, &mut short) };
            assert_eq!(short[..count], *expected, "{piece:?}");
        }
    }

    #[test]
    fn short_merges_agree_with_ids_past_the_pair_grid() {
        // Words of a few letters, drawn at random: a vocabulary of 1500 whose later tokens
        // pair ids of 512 and more, which the pair table hashes rather than reading its grid.
        let mut seed = 5u64;
        let mut next = move |n: usize| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        };
        let letters = b"etaoinshrdlucmfwypvbgkjqxz";
        let words: Vec<String> = (0..3000)
            .map(|_| {
                let len = 1 + next(6) + next(5);
                let word: String = (0..len).map(|_| letters[next(letters.len()).min(next(letters.len()))] as char).collect();
                if next(3) == 0 { word.to_uppercase() } else { word }
            })
            .collect();
        let text: String = (0..40_000).map(|_| format!(" {}", words[next(words.len()).min(next(words.len()))])).collect();
        let enc = trained_on(&text, 1500);
        assert!(enc.tokenizer().vocab_size() > 1400);
        let mut tried = 0;
        for _ in 0..5000 {
            let start = next(text.len() - 16);
            let piece = &text.as_bytes()[start..start + 1 + next(MAX_PACKED)];
            let mut long = Vec::new();
            enc.merge_long(piece, &mut long);
            assert_short_merges_agree(&enc, piece, &long);
            tried += long.iter().any(|&id| id >= 512) as usize;
        }
        assert!(tried > 1000, "only {tried} pieces with ids past the grid");
    }
}
