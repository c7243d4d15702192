//! Encoding text to token ids, with exactly tiktoken's result for the same ranks, pattern
//! and special tokens: each pre-token is merged by repeatedly joining the adjacent pair of
//! parts whose concatenation has the lowest rank (id), leftmost first.
//!
//! Speed comes from a cache of pre-token -> ids that every thread encoding with the encoder
//! shares (pre-tokens of up to 15 bytes are packed into one u128 key; it holds the whole
//! vocabulary from the first call on, and the pre-tokens met),
//! a pair table (left id, right id) -> merged id instead of hashing byte strings, and
//! parallel chunks cut where no pre-token or special token crosses.

mod backtrack;
mod blocks;
mod chunks;
mod long;
mod merge;
mod merge_avx512;
mod pair_ranks;
mod pretoken_cache;
mod specials;
#[cfg(test)]
mod testing;
mod thread_cache;

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, RwLockReadGuard};

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::error::BpeError;
use crate::packed_table::{hash, PackedTable};
use crate::pretokenize::{cut_points, cut_points_chars, last_cut_after, pack, pack_at, Piece, SpecialTokens, MAX_PACKED};
use crate::text::utf8::{push_utf8, CodeUnit, Surrogate};
use crate::tokenizer::Tokenizer;
use self::backtrack::Backtracking;
use self::blocks::*;
use self::chunks::*;
use self::pair_ranks::{PackedPairs, PairRanks};
use self::pretoken_cache::{hash_of_home, home, Cached, Inserts, PreTokenCache, IN_ARENA};
use self::specials::*;
use self::thread_cache::*;
pub use self::chunks::Parts;

/// Which special tokens are read as special tokens in the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allowed {
    None,
    All,
    Some(Vec<String>),
}

pub struct Encoder {
    tokenizer: Tokenizer,
    /// (left id << 32 | right id) -> id of the concatenation, for every token that splits
    /// into two tokens.
    pair_ranks: PairRanks,
    byte_ids: [u32; 256],
    /// The rank of each pair of single bytes (first byte << 8 | second), u32::MAX if none:
    /// the first round of every merge, without hashing.
    byte_pair_ranks: Vec<u32>,
    /// Whether every id fits in 28 bits, as `merge_short` needs, and in 25 bits, as the
    /// same merge of up to 64 bytes needs.
    short_keys_fit: bool,
    medium_keys_fit: bool,
    /// Whether the CPU has what `merge_short_avx512` needs.
    avx512: bool,
    /// Every token of at most 15 bytes, by its packed bytes: put in the cache at its first
    /// call, and asked for a pre-token the cache misses while it does not hold them yet
    /// (while another thread puts them in).
    short_tokens: PackedTable<Cached>,
    /// Every longer token.
    long_tokens: FxHashMap<Box<[u8]>, u32>,
    /// What the merge of a pre-token of `BACKTRACK_FROM` bytes or more needs, made at the
    /// first one (None for a vocabulary with a token past 64 KiB: merged with the heap).
    backtracking: OnceLock<Option<Backtracking>>,
    /// Bytes of the longest token.
    max_token_len: usize,
    /// Pre-tokens of up to 15 bytes met so far, for every thread: read and added to under
    /// the read lock, grown under the write lock.
    cache: RwLock<PreTokenCache>,
    /// Held by the one thread growing the cache. Another that found it full waits here and
    /// checks again, rather than queueing for the write lock: readers can take the lock
    /// back between blocks faster than a queued writer wakes, so a writer whose growth was
    /// already done could wait for as long as they encode.
    growing: Mutex<()>,
    /// Set while a thread waits to grow the cache: the others unlock it at the end of their
    /// block and wait for the growth before they lock it again.
    grow_pending: AtomicBool,
    /// Bytes of text the cache was sized for so far.
    text_seen: AtomicUsize,
    /// The special tokens read and banned for each (allowed, disallowed) asked for so far (a
    /// few): their matchers take longer to build than a short text takes to encode.
    chosen_specials: Mutex<Vec<(Allowed, Allowed, Arc<ChosenSpecials>)>>,
    id: u64,
}

/// Pre-tokens encoded together (see `encode_block`).
const BLOCK: usize = 256;
/// How many lookups ahead a cache slot is prefetched.
const AHEAD: usize = 16;
/// Code points turned into UTF-8 at a time (see `encode_chars_into`).
const WINDOW_CHARS: usize = 64 << 10;
/// How many (allowed, disallowed) pairs an encoder keeps the special-token matchers of.
const CHOSEN_SPECIALS_KEPT: usize = 16;
/// A cache is emptied when it grows past this many pre-tokens (checked between texts).
const MAX_CACHE_ENTRIES: usize = 1 << 21;
/// Pre-tokens of more than 15 bytes and at most this many are kept with their ids in the
/// thread's map of those met: a longer one is seldom met again, and its bytes would be
/// copied into the map.
const LONG_KEPT: usize = 1 << 10;
/// A thread's map of long pre-tokens is emptied when their bytes pass this (between texts).
const MAX_LONG_BYTES: usize = 64 << 20;
/// Pre-tokens of this many bytes or more are merged by backtracking (see `backtrack`):
/// in linear time and one bit of memory a byte, where the heap merge takes 40 bytes a byte.
const BACKTRACK_FROM: usize = 64 << 10;
/// The room the cache has from its first call: three times the vocabulary's short tokens,
/// at most 2^18 pre-tokens unless the vocabulary alone is more.
const VOCABULARY_ROOM: usize = 3;
const FIRST_ROOM_LIMIT: usize = 1 << 18;

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
    /// UTF-8 of the window of code points a thread is encoding (`encode_chars_into`).
    static WINDOW_UTF8: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

static NEXT_ENCODER_ID: AtomicU64 = AtomicU64::new(1);

impl Encoder {
    pub fn new(tokenizer: Tokenizer) -> Encoder {
        let vocab = tokenizer.vocab();
        let mut ids: FxHashMap<&[u8], u32> = FxHashMap::default();
        for (id, bytes) in vocab.iter().enumerate() {
            if !tokenizer.is_special(id as u32) && !bytes.is_empty() {
                ids.insert(bytes, id as u32);
            }
        }
        let mut byte_ids = [0u32; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            *slot = ids[&[b as u8][..]];
        }
        // Every split of every token into two tokens (a hundred thousand lookups for GPT-2;
        // spread over the threads, as this is on the way to the first ids).
        let tokens: Vec<(&[u8], u32)> = ids.iter().map(|(&bytes, &id)| (bytes, id)).collect();
        let ids = &ids;
        let pairs: Vec<(u32, u32, u32)> = tokens
            .par_chunks(4096)
            .flat_map_iter(|chunk| {
                chunk.iter().flat_map(|&(bytes, id)| {
                    (1..bytes.len()).filter_map(move |split| Some((*ids.get(&bytes[..split])?, *ids.get(&bytes[split..])?, id)))
                })
            })
            .collect();
        let mut byte_pair_ranks = vec![u32::MAX; 1 << 16];
        let mut short_tokens = PackedTable::with_capacity(vocab.len());
        let mut long_tokens = FxHashMap::default();
        for &(bytes, id) in &tokens {
            if bytes.len() == 2 {
                byte_pair_ranks[(bytes[0] as usize) << 8 | bytes[1] as usize] = id;
            }
            if bytes.len() <= MAX_PACKED {
                short_tokens.insert(pack(bytes), Cached::single(id));
            } else {
                long_tokens.insert(Box::from(bytes), id);
            }
        }
        let pair_ranks = PairRanks::new(&pairs, vocab.len());
        let max_token_len = vocab.iter().map(|t| t.len()).max().unwrap_or(0);
        let (short_keys_fit, medium_keys_fit) = (vocab.len() < 1 << 28, vocab.len() < 1 << 25);
        #[cfg(target_arch = "x86_64")]
        let avx512 = std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("bmi1")
            && std::arch::is_x86_feature_detected!("lzcnt");
        #[cfg(not(target_arch = "x86_64"))]
        let avx512 = false;
        Encoder {
            tokenizer,
            pair_ranks,
            byte_ids,
            byte_pair_ranks,
            short_keys_fit,
            medium_keys_fit,
            avx512,
            short_tokens,
            long_tokens,
            backtracking: OnceLock::new(),
            max_token_len,
            cache: RwLock::new(PreTokenCache::with_capacity(0)),
            growing: Mutex::new(()),
            grow_pending: AtomicBool::new(false),
            text_seen: AtomicUsize::new(0),
            chosen_specials: Mutex::new(Vec::new()),
            id: NEXT_ENCODER_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Ids of text with no special tokens read (tiktoken's `encode_ordinary`).
    pub fn encode_ordinary_into<T: TokenId>(&self, text: &str, out: &mut Vec<T>) {
        self.with_cache(text.len(), 0, |cache| {
            self.encode_text(text, cache, out);
        })
    }

    /// Ids of text reading the special tokens `specials` recognises.
    /// `job_len`: how much text the job this text is part of holds in all (a parallel job's
    /// threads share the cache, which is sized for it once).
    fn encode_with_specials_into<T: TokenId>(&self, text: &str, specials: &SpecialTokens, ids: &[u32], job_len: usize, out: &mut Vec<T>) {
        self.with_cache(text.len(), job_len, |cache| self.encode_pieces(text, specials, ids, cache, out))
    }

    /// Ids of `text` with every special token read as such, part of a job of `job_len`
    /// bytes in all (the cache is sized for it once).
    pub(crate) fn encode_all_specials<T: TokenId>(&self, text: &str, job_len: usize) -> Vec<T> {
        let ids: Vec<u32> = self.tokenizer.special_tokens().iter().map(|&(_, id)| id).collect();
        let mut out = ids_buffer(text.len());
        self.encode_with_specials_into(text, self.tokenizer.specials(), &ids, job_len, &mut out);
        out
    }

    /// Encodes `text` (tiktoken's `encode`), in parallel chunks when `threads` > 1.
    pub fn encode(&self, text: &str, allowed: &Allowed, disallowed: &Allowed, pool: Option<&rayon::ThreadPool>) -> Result<Vec<u32>, BpeError> {
        Ok(self.encode_parts(text, allowed, disallowed, pool)?.join(pool))
    }

    /// `encode`, with the ids left in the parts that were encoded in parallel (joined, they
    /// are the ids of `text`): for callers that copy them out anyway.
    pub fn encode_parts<T: TokenId>(&self, text: &str, allowed: &Allowed, disallowed: &Allowed, pool: Option<&rayon::ThreadPool>) -> Result<Parts<T>, BpeError> {
        let chosen = self.prepare_specials(text, allowed, disallowed)?;
        Ok(self.encode_chunks(text, &chosen.specials, &chosen.ids, pool))
    }

    /// Whether `encode_chars_parts` can encode text for this tokenizer: its pattern is a
    /// built-in one, whose cuts it finds in the code points.
    pub fn encodes_chars(&self) -> bool {
        self.tokenizer.pattern().is_builtin()
    }

    /// `encode_parts` of text given as code points (a Python str's own storage), which each
    /// thread turns into UTF-8 a window at a time as it encodes its chunks.
    pub fn encode_chars_parts<T: TokenId, U: CodeUnit>(
        &self,
        chars: &[U],
        allowed: &Allowed,
        disallowed: &Allowed,
        pool: Option<&rayon::ThreadPool>,
    ) -> Result<Parts<T>, BpeError> {
        assert!(self.encodes_chars(), "text as code points is encoded only with a built-in pattern");
        let chosen = self.choose_specials(allowed, disallowed)?;
        let threads = pool.map_or(1, |p| p.current_num_threads());
        let cuts = match chunk_target(chars.len(), threads) {
            None => vec![0, chars.len()],
            Some(target) => tapered_cuts(chars.len(), target, threads, |start, target| {
                cut_points_chars(&chars[start..], target, self.tokenizer.pattern(), self.tokenizer.specials())
            }),
        };
        run_chunks(cuts.len() - 1, chars.len() * U::MAX_UTF8, pool, |i, out| {
            self.encode_chars_into(&chars[cuts[i]..cuts[i + 1]], cuts[i], &chosen.specials, &chosen.ids, chosen.banned.as_ref(), chars.len(), out)
        })
    }

    pub fn encode_ordinary(&self, text: &str, pool: Option<&rayon::ThreadPool>) -> Vec<u32> {
        let none = SpecialTokens::new(&[]).expect("no specials");
        self.encode_chunks(text, &none, &[], pool).join(pool)
    }

    /// Encodes many texts, in parallel over the texts.
    pub fn encode_batch(&self, texts: &[&str], allowed: &Allowed, disallowed: &Allowed, pool: &rayon::ThreadPool) -> Result<Vec<Vec<u32>>, BpeError> {
        pool.install(|| texts.par_iter().map(|t| self.encode(t, allowed, disallowed, None)).collect())
    }

    /// Token bytes of `ids` joined; an error naming the first id out of range or unused.
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>, BpeError> {
        let vocab = self.tokenizer.vocab();
        let mut out = Vec::with_capacity(ids.len() * 4);
        for (i, &id) in ids.iter().enumerate() {
            let token = vocab.get(id as usize).ok_or_else(|| {
                BpeError::InvalidArgument(format!("id {id} at position {i} is out of range (vocab size {})", vocab.len()))
            })?;
            if token.is_empty() && self.tokenizer.is_unused(id) {
                return Err(BpeError::InvalidArgument(format!("id {id} at position {i} is an unused id, no token's")));
            }
            out.extend_from_slice(token);
        }
        Ok(out)
    }
}

/// How ids are written out: as u32, or as u16 when every id of the vocabulary fits.
pub trait TokenId: Copy + Send + Sync + 'static {
    fn from_id(id: u32) -> Self;
    fn to_id(self) -> u32;
}

impl TokenId for u32 {
    #[inline(always)]
    fn from_id(id: u32) -> u32 {
        id
    }
    #[inline(always)]
    fn to_id(self) -> u32 {
        self
    }
}

impl TokenId for u16 {
    #[inline(always)]
    fn from_id(id: u32) -> u16 {
        id as u16
    }
    #[inline(always)]
    fn to_id(self) -> u32 {
        self as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::testing::*;

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

    /// Encodes `text` given as code points of width U, joined.
    fn encode_chars<U: CodeUnit + TryFrom<u32>>(enc: &Encoder, text: &str, allowed: &Allowed, disallowed: &Allowed, pool: Option<&rayon::ThreadPool>) -> Result<Vec<u32>, BpeError> {
        let chars: Vec<U> = text.chars().map(|c| U::try_from(c as u32).ok().expect("fits the width")).collect();
        Ok(enc.encode_chars_parts::<u32, U>(&chars, allowed, disallowed, pool)?.join(None))
    }

    #[test]
    fn text_as_code_points_gives_the_ids_of_its_utf8() {
        let enc = trained();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let mut seed = 7u64;
        let mut next = move |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        // Text of each storage width, past 256 KiB (parallel chunks) and many 64K windows; a
        // special token across a window's end; a run with no safe cut longer than a window.
        for extra in [&["\u{e9}", "\u{ff}"][..], &["\u{3b1}", "\u{4e2d}", "\u{e9}"], &["\u{1f600}", "\u{3b1}"]] {
            let words = ["the", "quick", "fox", " ", "\n", "  ", "\n\n", ".", "aaaaaaaa", "<|endoftext|>", extra[0], extra[1]];
            let mut text = String::new();
            while text.chars().count() < (64 << 10) - 5 {
                text += words[next(words.len() as u64) as usize];
            }
            text += "<|endoftext|>";
            text += &extra[0].repeat(150_000);
            while text.len() < 1_300_000 {
                text += words[next(words.len() as u64) as usize];
                text += if next(3) == 0 { " " } else { "" };
            }
            let expected = enc.encode(&text, &Allowed::All, &Allowed::None, None).unwrap();
            let ordinary = enc.encode_ordinary(&text, None);
            let widest = text.chars().map(|c| c as u32).max().unwrap();
            for pool in [None, Some(&pool)] {
                assert_eq!(encode_chars::<u32>(&enc, &text, &Allowed::All, &Allowed::None, pool).unwrap(), expected);
                assert_eq!(encode_chars::<u32>(&enc, &text, &Allowed::None, &Allowed::None, pool).unwrap(), ordinary);
                if widest < 0x10000 {
                    assert_eq!(encode_chars::<u16>(&enc, &text, &Allowed::All, &Allowed::None, pool).unwrap(), expected);
                }
                if widest < 0x100 {
                    assert_eq!(encode_chars::<u8>(&enc, &text, &Allowed::All, &Allowed::None, pool).unwrap(), expected);
                }
                let refused = encode_chars::<u32>(&enc, &text, &Allowed::None, &Allowed::All, pool);
                assert!(matches!(refused, Err(BpeError::DisallowedSpecial(t)) if t == "<|endoftext|>"));
            }
        }
    }

    #[test]
    fn code_points_find_a_special_token_late_in_the_text_and_lone_surrogates() {
        let enc = trained();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let text = "caf\u{e9} the fox ".repeat(100_000) + "<|endoftext|>";
        for pool in [None, Some(&pool)] {
            let refused = encode_chars::<u16>(&enc, &text, &Allowed::None, &Allowed::All, pool);
            assert!(matches!(refused, Err(BpeError::DisallowedSpecial(_))), "{refused:?}");
            let mut chars: Vec<u16> = text.encode_utf16().collect();
            chars[1_000_003] = 0xDFFF;
            let lone = enc.encode_chars_parts::<u32, u16>(&chars, &Allowed::All, &Allowed::None, pool);
            assert!(matches!(lone, Err(BpeError::LoneSurrogate(1_000_003))), "{lone:?}");
        }
    }
}
