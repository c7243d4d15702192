//! Encoding text to token ids, with exactly tiktoken's result for the same ranks, pattern
//! and special tokens: each pre-token is merged by repeatedly joining the adjacent pair of
//! parts whose concatenation has the lowest rank (id), leftmost first.
//!
//! Speed comes from a per-thread cache of pre-token -> ids (pre-tokens of up to 15 bytes
//! are packed into one u128 key; every token of the vocabulary is in it from the start),
//! a pair table (left id, right id) -> merged id instead of hashing byte strings, and
//! parallel chunks cut where no pre-token or special token crosses.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use rayon::prelude::*;
use rustc_hash::FxHashMap;



use crate::error::BpeError;
use crate::packed_table::{hash, PackedTable};
use crate::pretokenize::{cut_points, pack, pack_at, Piece, SpecialTokens, MAX_PACKED};
use crate::tokenizer::Tokenizer;

/// Which special tokens are read as special tokens in the text.
#[derive(Clone, Debug)]
pub enum Allowed {
    None,
    All,
    Some(Vec<String>),
}

pub struct Encoder {
    tokenizer: Tokenizer,
    /// (left id << 32 | right id) -> id of the concatenation, for every token that splits
    /// into two tokens.
    pair_ranks: FxHashMap<u64, u32>,
    byte_ids: [u32; 256],
    /// The rank of each pair of single bytes (first byte << 8 | second), u32::MAX if none:
    /// the first round of every merge, without hashing.
    byte_pair_ranks: Vec<u32>,
    /// Every token of at most 15 bytes, by its packed bytes (the seed of every cache).
    short_tokens: PackedTable<u64>,
    /// Every longer token.
    long_tokens: FxHashMap<Box<[u8]>, u32>,
    id: u64,
}

/// Pre-tokens looked up together.
const BATCH: usize = 16;
/// A cache is reset to its seed when it grows past this many pre-tokens.
const MAX_CACHE_ENTRIES: usize = 1 << 21;

/// A cached encoding: one id, or (with bit 63 set) `len` ids at `offset` in the arena.
#[inline(always)]
fn single(id: u32) -> u64 {
    id as u64
}

const MULTI: u64 = 1 << 63;

/// Per-thread memory of pre-tokens already encoded.
struct Cache {
    encoder: u64,
    short: PackedTable<u64>,
    long: FxHashMap<Box<[u8]>, (u32, u32)>,
    arena: Vec<u32>,
    /// Scratch space of the merge loop.
    parts: Vec<u32>,
    ranks: Vec<u32>,
}

thread_local! {
    static CACHE: RefCell<Option<Cache>> = const { RefCell::new(None) };
}

static NEXT_ENCODER_ID: AtomicU64 = AtomicU64::new(1);

impl Encoder {
    pub fn new(tokenizer: Tokenizer) -> Encoder {
        let vocab = tokenizer.vocab();
        let mut ids: FxHashMap<&[u8], u32> = FxHashMap::default();
        for (id, bytes) in vocab.iter().enumerate() {
            if !tokenizer.is_special(id as u32) {
                ids.insert(bytes, id as u32);
            }
        }
        let mut byte_ids = [0u32; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            *slot = ids[&[b as u8][..]];
        }
        let mut pair_ranks = FxHashMap::default();
        let mut byte_pair_ranks = vec![u32::MAX; 1 << 16];
        let mut short_tokens = PackedTable::with_capacity(vocab.len());
        let mut long_tokens = FxHashMap::default();
        for (&bytes, &id) in &ids {
            for split in 1..bytes.len() {
                if let (Some(&a), Some(&b)) = (ids.get(&bytes[..split]), ids.get(&bytes[split..])) {
                    pair_ranks.insert(((a as u64) << 32) | b as u64, id);
                }
            }
            if bytes.len() == 2 {
                byte_pair_ranks[(bytes[0] as usize) << 8 | bytes[1] as usize] = id;
            }
            if bytes.len() <= MAX_PACKED {
                short_tokens.insert(pack(bytes), single(id));
            } else {
                long_tokens.insert(Box::from(bytes), id);
            }
        }
        Encoder {
            tokenizer,
            pair_ranks,
            byte_ids,
            byte_pair_ranks,
            short_tokens,
            long_tokens,
            id: NEXT_ENCODER_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    fn with_cache<R>(&self, f: impl FnOnce(&mut Cache) -> R) -> R {
        CACHE.with(|cell| {
            let mut slot = cell.borrow_mut();
            let stale = slot.as_ref().is_none_or(|c| c.encoder != self.id || c.short.len() + c.long.len() > MAX_CACHE_ENTRIES);
            if stale {
                *slot = Some(Cache {
                    encoder: self.id,
                    short: self.short_tokens.clone(),
                    long: FxHashMap::default(),
                    arena: Vec::new(),
                    parts: Vec::new(),
                    ranks: Vec::new(),
                });
            }
            f(slot.as_mut().expect("cache"))
        })
    }

    #[inline(always)]
    fn pair_rank(&self, a: u32, b: u32) -> u32 {
        self.pair_ranks.get(&(((a as u64) << 32) | b as u64)).copied().unwrap_or(u32::MAX)
    }

    /// Appends the ids of the pre-tokens of `text`, a batch at a time: the cache slots of a
    /// whole batch are prefetched before any is probed.
    fn encode_text(&self, text: &str, cache: &mut Cache, out: &mut Vec<u32>) {
        let bytes = text.as_bytes();
        let mut ranges = [(0usize, 0usize); BATCH];
        let mut n = 0;
        self.tokenizer.pattern().split_ranges(text, |start, end| {
            ranges[n] = (start, end);
            n += 1;
            if n == BATCH {
                self.encode_ranges(bytes, &ranges, cache, out);
                n = 0;
            }
        });
        self.encode_ranges(bytes, &ranges[..n], cache, out);
    }

    #[inline(never)]
    fn encode_ranges(&self, bytes: &[u8], ranges: &[(usize, usize)], cache: &mut Cache, out: &mut Vec<u32>) {
        let mut keys = [(0u128, 0u64); BATCH];
        for (key, &(start, end)) in keys.iter_mut().zip(ranges) {
            if end - start <= MAX_PACKED {
                let packed = pack_at(bytes, start, end);
                let h = hash(packed);
                cache.short.prefetch(h);
                *key = (packed, h);
            }
        }
        for (&(key, h), &(start, end)) in keys.iter().zip(ranges) {
            if end - start <= MAX_PACKED {
                let v = match cache.short.get(key, h) {
                    Some(v) => v,
                    None => {
                        let v = self.merge_into_cache(&bytes[start..end], cache);
                        *cache.short.entry(key, h) = v;
                        v
                    }
                };
                push_cached(v, &cache.arena, out);
            } else {
                self.encode_long_piece(&bytes[start..end], cache, out);
            }
        }
    }

    fn encode_long_piece(&self, piece: &[u8], cache: &mut Cache, out: &mut Vec<u32>) {
        if let Some(&id) = self.long_tokens.get(piece) {
            out.push(id);
            return;
        }
        if let Some(&(offset, len)) = cache.long.get(piece) {
            out.extend_from_slice(&cache.arena[offset as usize..(offset + len) as usize]);
            return;
        }
        let start = out.len();
        self.merge(piece, cache, out);
        let offset = cache.arena.len() as u32;
        cache.arena.extend_from_slice(&out[start..]);
        cache.long.insert(Box::from(piece), (offset, (out.len() - start) as u32));
    }

    fn merge_into_cache(&self, piece: &[u8], cache: &mut Cache) -> u64 {
        let mut ids = Vec::with_capacity(piece.len());
        self.merge(piece, cache, &mut ids);
        if ids.len() == 1 {
            return single(ids[0]);
        }
        let offset = cache.arena.len() as u64;
        cache.arena.extend_from_slice(&ids);
        MULTI | (ids.len() as u64) << 40 | offset
    }

    /// tiktoken's byte-pair merge of one pre-token.
    fn merge(&self, piece: &[u8], cache: &mut Cache, out: &mut Vec<u32>) {
        if piece.len() > 64 {
            return self.merge_long(piece, out);
        }
        let parts = &mut cache.parts;
        let ranks = &mut cache.ranks;
        parts.clear();
        parts.extend(piece.iter().map(|&b| self.byte_ids[b as usize]));
        ranks.clear();
        ranks.extend(piece.windows(2).map(|w| self.byte_pair_ranks[(w[0] as usize) << 8 | w[1] as usize]));
        loop {
            let mut best = u32::MAX;
            let mut at = 0;
            for (i, &r) in ranks.iter().enumerate() {
                if r < best {
                    best = r;
                    at = i;
                }
            }
            if best == u32::MAX {
                break;
            }
            parts[at] = best;
            parts.remove(at + 1);
            ranks.remove(at);
            if at > 0 {
                ranks[at - 1] = self.pair_rank(parts[at - 1], parts[at]);
            }
            if at < ranks.len() {
                ranks[at] = self.pair_rank(parts[at], parts[at + 1]);
            }
        }
        out.extend_from_slice(parts);
    }

    /// The same merge in O(n log n) for long pre-tokens (a megabyte of one character).
    fn merge_long(&self, piece: &[u8], out: &mut Vec<u32>) {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let n = piece.len();
        let mut sym: Vec<u32> = piece.iter().map(|&b| self.byte_ids[b as usize]).collect();
        let mut next: Vec<usize> = (1..=n).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut alive = vec![true; n];
        let mut heap: BinaryHeap<Reverse<(u32, usize)>> = BinaryHeap::with_capacity(n);
        for i in 0..n - 1 {
            let r = self.pair_rank(sym[i], sym[i + 1]);
            if r != u32::MAX {
                heap.push(Reverse((r, i)));
            }
        }
        while let Some(Reverse((rank, i))) = heap.pop() {
            if !alive[i] || next[i] >= n || self.pair_rank(sym[i], sym[next[i]]) != rank {
                continue;
            }
            let j = next[i];
            sym[i] = rank;
            alive[j] = false;
            next[i] = next[j];
            if next[i] < n {
                prev[next[i]] = i;
                let r = self.pair_rank(sym[i], sym[next[i]]);
                if r != u32::MAX {
                    heap.push(Reverse((r, i)));
                }
            }
            let p = prev[i];
            if p != usize::MAX {
                let r = self.pair_rank(sym[p], sym[i]);
                if r != u32::MAX {
                    heap.push(Reverse((r, p)));
                }
            }
        }
        let mut i = 0;
        while i < n {
            out.push(sym[i]);
            i = next[i];
        }
    }

    /// Ids of text with no special tokens read (tiktoken's `encode_ordinary`).
    pub fn encode_ordinary_into(&self, text: &str, out: &mut Vec<u32>) {
        self.with_cache(|cache| {
            self.encode_text(text, cache, out);
        })
    }

    /// Ids of text reading the special tokens `specials` recognises.
    fn encode_with_specials_into(&self, text: &str, specials: &SpecialTokens, ids: &[u32], out: &mut Vec<u32>) {
        self.with_cache(|cache| {
            specials.for_each_piece(text, |piece| match piece {
                Piece::Text(t) => self.encode_text(t, cache, out),
                Piece::Special(i) => out.push(ids[i]),
            });
        })
    }

    /// The special tokens read as such, with their ids; an error if the text holds a
    /// disallowed one (tiktoken's check: any occurrence of any disallowed special).
    fn prepare_specials(&self, text: &str, allowed: &Allowed, disallowed: &Allowed) -> Result<(SpecialTokens, Vec<u32>), BpeError> {
        let all = self.tokenizer.special_tokens();
        let is_allowed = |name: &str| match allowed {
            Allowed::None => false,
            Allowed::All => true,
            Allowed::Some(list) => list.iter().any(|s| s == name),
        };
        if let Allowed::Some(list) = allowed {
            if let Some(unknown) = list.iter().find(|s| !all.iter().any(|(n, _)| n == *s)) {
                return Err(BpeError::InvalidSpecialToken(format!("{unknown:?} is not a special token of this tokenizer")));
            }
        }
        let banned: Vec<&str> = all
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| match disallowed {
                Allowed::None => false,
                Allowed::All => !is_allowed(n),
                Allowed::Some(list) => list.iter().any(|s| s == n),
            })
            .collect();
        if !banned.is_empty() && !text.is_empty() {
            let matcher = AhoCorasick::builder()
                .kind(Some(AhoCorasickKind::DFA))
                .match_kind(MatchKind::LeftmostFirst)
                .build(&banned)
                .expect("special-token matcher");
            if let Some(m) = matcher.find(text) {
                return Err(BpeError::DisallowedSpecial(text[m.start()..m.end()].to_string()));
            }
        }
        let (names, ids): (Vec<String>, Vec<u32>) = all.iter().filter(|(n, _)| is_allowed(n)).cloned().unzip();
        Ok((SpecialTokens::new(&names)?, ids))
    }

    /// Encodes `text` (tiktoken's `encode`), in parallel chunks when `threads` > 1.
    pub fn encode(&self, text: &str, allowed: &Allowed, disallowed: &Allowed, pool: Option<&rayon::ThreadPool>) -> Result<Vec<u32>, BpeError> {
        let (specials, ids) = self.prepare_specials(text, allowed, disallowed)?;
        Ok(self.encode_chunks(text, &specials, &ids, pool))
    }

    fn encode_chunks(&self, text: &str, specials: &SpecialTokens, ids: &[u32], pool: Option<&rayon::ThreadPool>) -> Vec<u32> {
        let threads = pool.map_or(1, |p| p.current_num_threads());
        const MIN_CHUNK: usize = 256 << 10;
        if threads <= 1 || text.len() < 2 * MIN_CHUNK {
            let mut out = Vec::with_capacity(text.len() / 4 + 16);
            self.encode_with_specials_into(text, specials, ids, &mut out);
            return out;
        }
        let target = (text.len() / (threads * 4)).clamp(MIN_CHUNK, 8 << 20);
        // Cuts that the full special-token set does not cross are safe for any subset.
        let cuts = cut_points(text.as_bytes(), target, self.tokenizer.pattern(), if self.tokenizer.pattern().is_builtin() { self.tokenizer.specials() } else { specials });
        let pool = pool.expect("threads > 1 come with a pool");
        let parts: Vec<Vec<u32>> = pool.install(|| {
            cuts.par_windows(2)
                .map(|w| {
                    let mut out = Vec::with_capacity((w[1] - w[0]) / 4 + 16);
                    self.encode_with_specials_into(&text[w[0]..w[1]], specials, ids, &mut out);
                    out
                })
                .collect()
        });
        let mut out = Vec::with_capacity(parts.iter().map(Vec::len).sum());
        for part in parts {
            out.extend_from_slice(&part);
        }
        out
    }

    pub fn encode_ordinary(&self, text: &str, pool: Option<&rayon::ThreadPool>) -> Vec<u32> {
        let none = SpecialTokens::new(&[]).expect("no specials");
        self.encode_chunks(text, &none, &[], pool)
    }

    /// Encodes many texts, in parallel over the texts.
    pub fn encode_batch(&self, texts: &[String], allowed: &Allowed, disallowed: &Allowed, pool: &rayon::ThreadPool) -> Result<Vec<Vec<u32>>, BpeError> {
        pool.install(|| texts.par_iter().map(|t| self.encode(t, allowed, disallowed, None)).collect())
    }

    /// Token bytes of `ids` joined; an error naming the first id out of range.
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>, BpeError> {
        let vocab = self.tokenizer.vocab();
        let mut out = Vec::with_capacity(ids.len() * 4);
        for (i, &id) in ids.iter().enumerate() {
            let token = vocab.get(id as usize).ok_or_else(|| {
                BpeError::InvalidArgument(format!("id {id} at position {i} is out of range (vocab size {})", vocab.len()))
            })?;
            out.extend_from_slice(token);
        }
        Ok(out)
    }
}

#[inline(always)]
fn push_cached(v: u64, arena: &[u32], out: &mut Vec<u32>) {
    if v & MULTI == 0 {
        out.push(v as u32);
    } else {
        let len = ((v >> 40) & 0x7F_FFFF) as usize;
        let offset = (v & 0xFF_FFFF_FFFF) as usize;
        // Mostly 2-4 ids: a loop beats a call to memmove.
        for &id in &arena[offset..offset + len] {
            out.push(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pretokenize::Pattern;
    use crate::train::{train, Input, TrainOptions};

    fn trained() -> Encoder {
        let dir = std::env::temp_dir().join(format!("rust_bpe_encode_test_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("corpus.txt");
        let text = "the quick brown fox jumps over the lazy dog. aaaaaaaa  \n\n the end<|endoftext|>".repeat(50);
        std::fs::write(&path, text).unwrap();
        let options = TrainOptions {
            vocab_size: 320,
            special_tokens: vec!["<|endoftext|>".into()],
            pattern: Pattern::Gpt2,
            threads: 1,
            strict_utf8: false,
        };
        let (tok, _) = train(&[Input::File(path)], &options, &mut |_| true).unwrap();
        Encoder::new(tok)
    }

    #[test]
    fn round_trips_and_reads_specials() {
        let enc = trained();
        let text = "the lazy fox<|endoftext|>aaaaaaaaaaa é 😀";
        let eot = enc.tokenizer().special_tokens()[0].1;
        let ids = enc.encode(text, &Allowed::All, &Allowed::None, None).unwrap();
        assert_eq!(enc.decode_bytes(&ids).unwrap(), text.as_bytes());
        assert!(ids.contains(&eot));
        let ordinary = enc.encode_ordinary(text, None);
        assert!(!ordinary.contains(&eot));
        assert_eq!(enc.decode_bytes(&ordinary).unwrap(), text.as_bytes());
        assert!(matches!(enc.encode(text, &Allowed::None, &Allowed::All, None), Err(BpeError::DisallowedSpecial(_))));
    }

    #[test]
    fn long_pieces_merge_like_short_ones() {
        let enc = trained();
        for n in [10, 63, 64, 65, 200, 5000] {
            let piece = "a".repeat(n);
            let mut short = Vec::new();
            enc.with_cache(|cache| {
                let parts_len = piece.len();
                if parts_len <= 64 {
                    enc.merge(piece.as_bytes(), cache, &mut short);
                }
            });
            let mut long = Vec::new();
            enc.merge_long(piece.as_bytes(), &mut long);
            if n <= 64 {
                assert_eq!(short, long, "n = {n}");
            }
            assert_eq!(enc.decode_bytes(&long).unwrap(), piece.as_bytes());
        }
    }

    #[test]
    fn parallel_chunks_give_the_same_ids() {
        let enc = trained();
        let text = "the quick brown fox\njumps over the lazy dog<|endoftext|>\n".repeat(40_000);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let one = enc.encode(&text, &Allowed::All, &Allowed::None, None).unwrap();
        let many = enc.encode(&text, &Allowed::All, &Allowed::None, Some(&pool)).unwrap();
        assert_eq!(one, many);
    }
}
