//! Encoding text to token ids, with exactly tiktoken's result for the same ranks, pattern
//! and special tokens: each pre-token is merged by repeatedly joining the adjacent pair of
//! parts whose concatenation has the lowest rank (id), leftmost first.
//!
//! Speed comes from a cache of pre-token -> ids that every thread encoding with the encoder
//! shares (pre-tokens of up to 15 bytes are packed into one u128 key; it holds the whole
//! vocabulary from the first call on, and the pre-tokens met),
//! a pair table (left id, right id) -> merged id instead of hashing byte strings, and
//! parallel chunks cut where no pre-token or special token crosses.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, RwLockReadGuard};

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use rayon::prelude::*;
use rustc_hash::FxHashMap;



use crate::backtrack::Backtracking;
use crate::error::BpeError;
use crate::packed_table::{hash, PackedTable};
use crate::pair_ranks::{PackedPairs, PairRanks};
use crate::pretoken_cache::{hash_of_home, home, Cached, Inserts, PreTokenCache, IN_ARENA};
use crate::pretokenize::{cut_points, cut_points_chars, last_cut_after, pack, pack_at, Piece, SpecialTokens, MAX_PACKED};
use crate::utf8::{push_utf8, CodeUnit, Surrogate};
use crate::tokenizer::Tokenizer;

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

/// Pre-tokens of a text, encoded together (see `Encoder::encode_text`).
struct Block {
    /// Where each pre-token starts and ends in the text, or (`SPECIAL`, id) for a special
    /// token.
    ranges: [(usize, usize); BLOCK],
    /// The packed bytes of each pre-token and their hash (as `home` gives it); 0 for one too
    /// long to pack. (The `AHEAD` past the block's end, never read as keys, spare the loop
    /// that asks for the cache lines a check of its bounds.)
    keys: [(u128, u64); BLOCK + AHEAD],
    n: usize,
}

/// The special tokens an (allowed, disallowed) pair reads, their ids, and a matcher of
/// those it bans.
struct ChosenSpecials {
    specials: SpecialTokens,
    ids: Vec<u32>,
    banned: Option<AhoCorasick>,
}

/// The start of a range that stands for a special token.
const SPECIAL: usize = usize::MAX;

/// A thread's two blocks, one filling while the other waits for its cache slots.
struct Blocks {
    pair: Box<[Block; 2]>,
    filling: usize,
    waiting: bool,
}

impl Blocks {
    /// The cache's blocks (made once per thread: they are 24 KiB).
    fn of(cache: &mut Cache) -> Blocks {
        let pair = cache.local.blocks.take().unwrap_or_else(|| Box::new([Block::new(), Block::new()]));
        Blocks { pair, filling: 0, waiting: false }
    }
}

impl Block {
    fn new() -> Block {
        Block { ranges: [(0, 0); BLOCK], keys: [(0, 0); BLOCK + AHEAD], n: 0 }
    }

    /// Packs the keys (and asks the slots of `vocabulary`, where a pre-token missing from
    /// the cache is looked up next when the cache does not hold the vocabulary, into L2).
    #[inline(always)]
    fn prepare(&mut self, bytes: &[u8], vocabulary: Option<&PackedTable<Cached>>) {
        for (key, &(start, end)) in self.keys.iter_mut().zip(&self.ranges[..self.n]) {
            *key = if start != SPECIAL && end - start <= MAX_PACKED {
                let packed = pack_at(bytes, start, end);
                let h = hash(packed);
                if let Some(vocabulary) = vocabulary {
                    vocabulary.prefetch_l2(h);
                }
                (packed, home(h))
            } else {
                (0, 0)
            };
        }
    }

    /// The keys packed so far.
    fn keys(&self) -> &[(u128, u64)] {
        &self.keys[..self.n]
    }
}

/// What a thread needs besides the shared cache: pre-tokens longer than 15 bytes met (with
/// their ids in `long_ids`), scratch space, and what it put in the shared cache.
struct Scratch {
    encoder: u64,
    long: FxHashMap<Box<[u8]>, (u32, u32)>,
    long_ids: Vec<u32>,
    /// The bytes of the keys of `long`.
    long_bytes: usize,
    /// Scratch space of the merge loop.
    parts: Vec<u32>,
    ranks: Vec<u32>,
    blocks: Option<Box<[Block; 2]>>,
    inserts: Inserts,
}

impl Scratch {
    fn new(encoder: u64) -> Scratch {
        Scratch {
            encoder,
            long: FxHashMap::default(),
            long_ids: Vec::new(),
            long_bytes: 0,
            parts: Vec::new(),
            ranks: Vec::new(),
            blocks: None,
            inserts: Inserts::default(),
        }
    }
}

/// The shared cache, read-locked, with a thread's scratch space.
struct Cache<'e, 's> {
    /// Always Some, except while `make_room` swaps the lock for a bigger cache.
    shared: Option<RwLockReadGuard<'e, PreTokenCache>>,
    encoder: &'e Encoder,
    /// Pre-tokens the cache was sized for, for this text's whole job.
    wanted: usize,
    local: &'s mut Scratch,
}

impl Cache<'_, '_> {
    #[inline(always)]
    fn short(&self) -> &PreTokenCache {
        self.shared.as_deref().expect("a locked cache")
    }

    /// Whether the shared cache is past half full (or its arena past three quarters), or
    /// another thread waits to grow it.
    #[inline(always)]
    fn wants_room(&self) -> bool {
        let short = self.short();
        short.len() + self.local.inserts.unreported() >= short.capacity()
            || short.arena_crowded()
            || self.encoder.grow_pending.load(Ordering::Relaxed)
    }

    /// Unlocks the cache, grows it (waiting for the other threads to unlock it) and locks
    /// it again.
    fn make_room(&mut self) {
        let shared = self.shared.take().expect("a locked cache");
        self.local.inserts.report_to(&shared);
        drop(shared);
        self.shared = Some(self.encoder.cache_with_room(self.wanted, false));
    }
}

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

    /// Runs `f` with the shared cache, sized for `text_len` more bytes of text, and for
    /// `expected_len` bytes in all if that is more (the whole of a job the text is part of),
    /// and this thread's scratch space.
    fn with_cache<R>(&self, text_len: usize, expected_len: usize, f: impl FnOnce(&mut Cache) -> R) -> R {
        let seen = self.text_seen.fetch_add(text_len, Ordering::Relaxed) + text_len;
        // Distinct pre-tokens grow as a power of the text length (Heaps' law); room for
        // them up front saves growing the table step by step.
        let distinct = (seen.max(expected_len) as f64).powf(0.7) as usize;
        // The cache holds the whole vocabulary from the first call on (a pre-token it misses
        // is then merged without a look in the vocabulary first), with room besides for
        // the pre-tokens of a text of several MB, which then encodes without its growing.
        let vocabulary = self.short_tokens.len();
        let room = (VOCABULARY_ROOM * vocabulary).min(FIRST_ROOM_LIMIT).max(vocabulary);
        let wanted = (distinct + vocabulary).max(room).min(MAX_CACHE_ENTRIES);
        let shared = self.cache_with_room(wanted, true);
        SCRATCH.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.as_ref().is_none_or(|s| s.encoder != self.id || s.long.len() > MAX_CACHE_ENTRIES || s.long_bytes > MAX_LONG_BYTES) {
                *slot = Some(Scratch::new(self.id));
            }
            let mut cache = Cache { shared: Some(shared), encoder: self, wanted, local: slot.as_mut().expect("scratch") };
            let result = f(&mut cache);
            let shared = cache.shared.take().expect("a locked cache");
            cache.local.inserts.report_to(&shared);
            result
        })
    }

    /// The shared cache, read-locked, after it was made room for `wanted` pre-tokens when
    /// it needed to, and given the vocabulary if `with_vocabulary`.
    fn cache_with_room(&self, wanted: usize, with_vocabulary: bool) -> RwLockReadGuard<'_, PreTokenCache> {
        self.grow_cache(wanted);
        let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
        if with_vocabulary {
            cache.put_vocabulary(self.short_tokens.iter());
        }
        cache
    }

    /// Grows the shared cache for `wanted` pre-tokens, or when it is past half full (or its
    /// arena past three quarters), once the threads encoding with it have unlocked it (at
    /// the end of their block of pre-tokens, as they want the room too, or of their text);
    /// empties it when it holds more than `MAX_CACHE_ENTRIES`.
    fn grow_cache(&self, wanted: usize) {
        let needs_room = || {
            let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
            let full = cache.len() >= cache.capacity() || cache.arena_crowded() || cache.len() > MAX_CACHE_ENTRIES;
            full || wanted > cache.capacity()
        };
        if !needs_room() {
            if self.grow_pending.load(Ordering::Acquire) {
                drop(self.growing.lock().unwrap_or_else(PoisonError::into_inner));
            }
            return;
        }
        let _growing = self.growing.lock().unwrap_or_else(PoisonError::into_inner);
        if !needs_room() {
            return;
        }
        self.grow_pending.store(true, Ordering::Release);
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        self.grow_pending.store(false, Ordering::Release);
        if cache.len() > MAX_CACHE_ENTRIES {
            *cache = PreTokenCache::with_capacity(wanted);
            self.text_seen.store(0, Ordering::Relaxed);
        }
        let wanted = if cache.len() >= cache.capacity() { wanted.max(2 * cache.capacity()) } else { wanted };
        let arena = if cache.arena_crowded() { 2 * cache.arena_len() } else { 0 };
        cache.reserve(wanted, arena);
    }

    #[inline(always)]
    fn pair_rank(&self, a: u32, b: u32) -> u32 {
        self.pair_ranks.get(a, b)
    }

    /// Appends the ids of the pre-tokens of `text`, a block of them at a time: while one
    /// block is encoded, the cache slots of the block after it are asked into L2, so that
    /// by the time that block is encoded they have come from memory.
    fn encode_text<T: TokenId>(&self, text: &str, cache: &mut Cache, out: &mut Vec<T>) {
        let mut blocks = Blocks::of(cache);
        self.push_text(&mut blocks, text.as_bytes(), text, 0, cache, out);
        self.finish(blocks, text.as_bytes(), cache, out);
    }

    /// `encode_text` of the text between special tokens, and the ids of the special tokens,
    /// through the same blocks (a text of many short documents keeps them full).
    fn encode_pieces<T: TokenId>(&self, text: &str, specials: &SpecialTokens, ids: &[u32], cache: &mut Cache, out: &mut Vec<T>) {
        let mut blocks = Blocks::of(cache);
        let bytes = text.as_bytes();
        specials.for_each_piece(text, |piece| match piece {
            Piece::Text(t) => {
                let offset = t.as_ptr() as usize - bytes.as_ptr() as usize;
                self.push_text(&mut blocks, bytes, t, offset, cache, out);
            }
            Piece::Special(i) => self.push_range(&mut blocks, bytes, SPECIAL, ids[i] as usize, cache, out),
        });
        self.finish(blocks, bytes, cache, out);
    }

    /// Adds the pre-tokens of `piece`, which starts at `offset` in `bytes`, to the blocks.
    fn push_text<T: TokenId>(&self, blocks: &mut Blocks, bytes: &[u8], piece: &str, offset: usize, cache: &mut Cache, out: &mut Vec<T>) {
        let mut splits = self.tokenizer.pattern().splits(piece);
        loop {
            let block = &mut blocks.pair[blocks.filling];
            let room = BLOCK - block.n;
            let got = splits.fill(&mut block.ranges[block.n..], offset);
            block.n += got;
            if got < room {
                break;
            }
            self.rotate(blocks, bytes, cache, out);
        }
    }

    #[inline(always)]
    fn push_range<T: TokenId>(&self, blocks: &mut Blocks, bytes: &[u8], start: usize, end: usize, cache: &mut Cache, out: &mut Vec<T>) {
        let block = &mut blocks.pair[blocks.filling];
        block.ranges[block.n] = (start, end);
        block.n += 1;
        if block.n == BLOCK {
            self.rotate(blocks, bytes, cache, out);
        }
    }

    /// Packs a full block's keys; unless a block waits to be encoded (which asks for them
    /// as it goes), asks for the slots its lookups will read.
    #[inline(always)]
    fn prepare(&self, blocks: &mut Blocks, bytes: &[u8], cache: &Cache) {
        let short = cache.short();
        let block = &mut blocks.pair[blocks.filling];
        block.prepare(bytes, (!short.has_vocabulary()).then_some(&self.short_tokens));
        if !blocks.waiting {
            let lines = short.home_lines();
            block.keys().iter().for_each(|&(_, h)| lines.prefetch_l2(h));
        }
    }

    /// The filling block is full: its keys are packed, and the block before it is encoded
    /// (asking for the full block's cache slots as it goes) and emptied to be filled next.
    fn rotate<T: TokenId>(&self, blocks: &mut Blocks, bytes: &[u8], cache: &mut Cache, out: &mut Vec<T>) {
        if cache.wants_room() {
            cache.make_room();
        }
        self.prepare(blocks, bytes, cache);
        let (f, w) = (blocks.filling, blocks.filling ^ 1);
        if blocks.waiting {
            self.encode_block(bytes, &blocks.pair[w], Some(&blocks.pair[f]), cache, out);
            blocks.pair[w].n = 0;
        }
        blocks.waiting = true;
        blocks.filling = w;
    }

    fn finish<T: TokenId>(&self, mut blocks: Blocks, bytes: &[u8], cache: &mut Cache, out: &mut Vec<T>) {
        let filling = blocks.filling;
        self.prepare(&mut blocks, bytes, cache);
        if blocks.waiting {
            self.encode_block(bytes, &blocks.pair[filling ^ 1], Some(&blocks.pair[filling]), cache, out);
        }
        self.encode_block(bytes, &blocks.pair[filling], None, cache, out);
        for block in blocks.pair.iter_mut() {
            block.n = 0;
        }
        cache.local.blocks = Some(blocks.pair);
    }

    /// Encodes a prepared block of pre-tokens: each is looked up in the cache, whose slot
    /// is asked into L1 `AHEAD` lookups before. The loop over hits is kept small; anything
    /// else (a miss, a special token, a long pre-token) goes through `encode_other`.
    /// The slots of `next`, the block to be encoded after this one, are asked into L2 one
    /// a lookup, rather than all at once, which would wait for the CPU's line fill buffers.
    #[inline(never)]
    fn encode_block<T: TokenId>(&self, bytes: &[u8], block: &Block, next: Option<&Block>, cache: &mut Cache, out: &mut Vec<T>) {
        let n = block.n.min(BLOCK);
        let keys = &block.keys;
        // (Past `n`, both hold keys of an earlier block: their lines asked for in vain.)
        let next_keys = &next.unwrap_or(block).keys;
        let lines = cache.short().home_lines();
        keys[..AHEAD].iter().for_each(|&(_, h)| lines.prefetch(h));
        let mut i = 0;
        while i < n {
            // Room for three ids of each pre-token left, written whole and kept as many as
            // there are.
            out.reserve(3 * (n - i));
            let (table, dst, capacity) = (cache.short(), out.as_mut_ptr(), out.capacity());
            let lines = table.home_lines();
            let mut len = out.len();
            while i < n {
                lines.prefetch_l2(next_keys[i].1);
                lines.prefetch(keys[i + AHEAD].1);
                let (key, h) = keys[i];
                let (found, cached) = lines.probe(key, h);
                if !found | (key == 0) {
                    break; // a miss, a key past its home line, a special token or a long pre-token
                }
                if cached.count & IN_ARENA == 0 {
                    // SAFETY: there is room for three ids for each pre-token left (`reserve`
                    // above, and the check below for ids from the arena).
                    unsafe {
                        dst.add(len).write(T::from_id(cached.ids[0]));
                        dst.add(len + 1).write(T::from_id(cached.ids[1]));
                        dst.add(len + 2).write(T::from_id(cached.ids[2]));
                    }
                    len += cached.count as usize;
                } else {
                    let count = (cached.count & !IN_ARENA) as usize;
                    if len + count + 3 * (n - i - 1) > capacity {
                        break;
                    }
                    // SAFETY: checked just above.
                    unsafe { write_arena_ids(table, cached.ids[0], count, dst.add(len)) };
                    len += count;
                }
                i += 1;
            }
            // SAFETY: the ids up to `len` were written.
            unsafe { out.set_len(len) };
            if i < n {
                // (`next[i]` was asked for in the loop's iteration that stopped here.)
                self.encode_other(bytes, block, i, cache, out);
                i += 1;
            }
        }
        if let Some(rest) = next.and_then(|next| next.keys().get(n..)) {
            let lines = cache.short().home_lines();
            rest.iter().for_each(|&(_, h)| lines.prefetch_l2(h));
        }
    }

    /// Pre-token `i` of the block when the loop over hits did not take it.
    #[inline(never)]
    fn encode_other<T: TokenId>(&self, bytes: &[u8], block: &Block, i: usize, cache: &mut Cache, out: &mut Vec<T>) {
        let (key, h) = (block.keys[i].0, hash_of_home(block.keys[i].1));
        let (start, end) = block.ranges[i];
        if key == 0 {
            if start == SPECIAL {
                out.push(T::from_id(end as u32));
            } else {
                self.encode_long_piece(&bytes[start..end], cache, out);
            }
            return;
        }
        let short = cache.shared.as_deref().expect("a locked cache");
        let cached = match short.get(key, h) {
            Some(cached) => cached,
            None => {
                let token = if short.has_vocabulary() { None } else { self.short_tokens.get(key, h) };
                let cached = match token {
                    Some(token) => token,
                    None => {
                        let mut ids = [0u32; MAX_PACKED];
                        let count = self.merge_short(&bytes[start..end], &mut ids);
                        let ids = &ids[..count];
                        let stored = if count <= 3 { Some(Cached::inline(ids)) } else { short.store_in_arena(ids, &mut cache.local.inserts) };
                        let Some(stored) = stored else {
                            extend_ids(out, ids); // the arena is full until the cache grows
                            return;
                        };
                        stored
                    }
                };
                short.insert(key, h, cached, &mut cache.local.inserts);
                cached
            }
        };
        push_cached(&cached, short, out);
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
    fn merge_short(&self, piece: &[u8], ids: &mut [u32; MAX_PACKED]) -> usize {
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

    /// `merge_linked` of a pre-token of at most 15 bytes with its sixteen keys in one
    /// AVX-512 register (see `ShortMerge`).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,bmi1,lzcnt")]
    unsafe fn merge_short_avx512(&self, piece: &[u8], ids: &mut [u32; MAX_PACKED]) -> usize {
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

    /// `merge_linked` of a pre-token of 16 to 64 bytes, whose search for the lowest key
    /// goes through up to 63 keys a round: with AVX2 where the CPU has it.
    fn merge_medium(&self, piece: &[u8], ids: &mut [u32; 64]) -> usize {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { self.merge_medium_avx2(piece, ids) };
        }
        self.merge_linked::<65, 7>(piece, ids)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn merge_medium_avx2(&self, piece: &[u8], ids: &mut [u32; 64]) -> usize {
        self.merge_linked::<65, 7>(piece, ids)
    }

    /// tiktoken's merge of a pre-token of fewer than `N` bytes, on the stack: each pair is
    /// keyed (merged id << SHIFT | position of its left part; `N` <= 1 << SHIFT, and every
    /// id below 1 << (32 - SHIFT)), so the lowest key is the pair to merge next (lowest
    /// rank, leftmost first), and parts are linked instead of moved.
    /// Writes the ids to `ids` and returns how many.
    #[inline(always)]
    fn merge_linked<const N: usize, const SHIFT: u32>(&self, piece: &[u8], ids: &mut [u32]) -> usize {
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

    /// A pre-token of more than 15 bytes: looked up in the thread's own map of those met
    /// before (a long token among them, once met) if it is not too long to be kept there,
    /// then in the long tokens, then merged.
    fn encode_long_piece<T: TokenId>(&self, piece: &[u8], cache: &mut Cache, out: &mut Vec<T>) {
        let local = &mut *cache.local;
        if piece.len() > LONG_KEPT {
            match (piece.len() <= self.max_token_len).then(|| self.long_tokens.get(piece)).flatten() {
                Some(&id) => out.push(T::from_id(id)),
                None => self.merge_very_long(piece, out),
            }
            return;
        }
        let (offset, len) = match local.long.get(piece) {
            Some(&(offset, len)) => (offset as usize, len as usize),
            None => {
                let offset = local.long_ids.len();
                match self.long_tokens.get(piece) {
                    Some(&id) => local.long_ids.push(id),
                    None => self.merge_to_ids(piece, local),
                }
                let len = local.long_ids.len() - offset;
                local.long.insert(Box::from(piece), (offset as u32, len as u32));
                local.long_bytes += piece.len();
                (offset, len)
            }
        };
        extend_ids(out, &local.long_ids[offset..offset + len]);
    }

    /// tiktoken's byte-pair merge of one long pre-token, appended to the thread's `long_ids`.
    fn merge_to_ids(&self, piece: &[u8], local: &mut Scratch) {
        if piece.len() > 64 {
            return self.merge_long(piece, &mut local.long_ids);
        }
        if self.medium_keys_fit {
            let mut ids = [0u32; 64];
            let count = self.merge_medium(piece, &mut ids);
            local.long_ids.extend_from_slice(&ids[..count]);
            return;
        }
        self.merge_into(piece, &mut local.parts, &mut local.ranks);
        local.long_ids.extend_from_slice(&local.parts);
    }

    /// tiktoken's byte-pair merge of one pre-token of at most 64 bytes, into `parts`
    /// (`ranks` is scratch space).
    fn merge_into(&self, piece: &[u8], parts: &mut Vec<u32>, ranks: &mut Vec<u32>) {
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
    }

    /// tiktoken's merge of a pre-token of more than `LONG_KEPT` bytes, appended to `out`:
    /// by backtracking from `BACKTRACK_FROM` bytes on, by `merge_long` below that (and,
    /// were the backtracking to find no sequence, which cannot happen, there too).
    fn merge_very_long<T: TokenId>(&self, piece: &[u8], out: &mut Vec<T>) {
        if piece.len() >= BACKTRACK_FROM {
            if let Some(backtracking) = self.backtracking() {
                if backtracking.encode(piece, &self.pair_ranks, &self.byte_ids, out) {
                    return;
                }
            }
        }
        self.merge_long(piece, out);
    }

    /// What the backtracking merge needs, made at its first call.
    fn backtracking(&self) -> Option<&Backtracking> {
        self.backtracking
            .get_or_init(|| {
            let vocab = self.tokenizer.vocab();
            // Not a special token, an unused id, or the bytes of another id again.
            let is_token = |id: u32| {
                let bytes = &vocab[id as usize];
                if bytes.is_empty() || self.tokenizer.is_special(id) {
                    return false;
                }
                let found = if bytes.len() <= MAX_PACKED {
                    self.short_tokens.get(pack(bytes), hash(pack(bytes))).map(|cached| cached.ids[0])
                } else {
                    self.long_tokens.get(bytes.as_slice()).copied()
                };
                found == Some(id)
            };
            Backtracking::new(vocab, is_token, &self.byte_ids, &self.pair_ranks)
            })
            .as_ref()
    }

    /// The same merge in O(n log n) with a heap over every byte (40 bytes of memory a byte).
    fn merge_long<T: TokenId>(&self, piece: &[u8], out: &mut Vec<T>) {
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
            out.push(T::from_id(sym[i]));
            i = next[i];
        }
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

    /// The special tokens read as such, with their ids; an error if the text holds a
    /// disallowed one (tiktoken's check: any occurrence of any disallowed special).
    fn prepare_specials(&self, text: &str, allowed: &Allowed, disallowed: &Allowed) -> Result<Arc<ChosenSpecials>, BpeError> {
        let chosen = self.choose_specials(allowed, disallowed)?;
        check_banned(text.as_bytes(), chosen.banned.as_ref())?;
        Ok(chosen)
    }

    /// The special tokens read as such, with their ids, and a matcher of the disallowed ones
    /// (made once for each (allowed, disallowed), up to `CHOSEN_SPECIALS_KEPT` of them).
    fn choose_specials(&self, allowed: &Allowed, disallowed: &Allowed) -> Result<Arc<ChosenSpecials>, BpeError> {
        let mut kept = self.chosen_specials.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, _, chosen)) = kept.iter().find(|(a, d, _)| a == allowed && d == disallowed) {
            return Ok(chosen.clone());
        }
        let chosen = Arc::new(self.make_specials(allowed, disallowed)?);
        if kept.len() < CHOSEN_SPECIALS_KEPT {
            kept.push((allowed.clone(), disallowed.clone(), chosen.clone()));
        }
        Ok(chosen)
    }

    fn make_specials(&self, allowed: &Allowed, disallowed: &Allowed) -> Result<ChosenSpecials, BpeError> {
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
        let banned = (!banned.is_empty()).then(|| {
            AhoCorasick::builder()
                .kind(Some(AhoCorasickKind::DFA))
                .match_kind(MatchKind::LeftmostFirst)
                .build(&banned)
                .expect("special-token matcher")
        });
        let (names, ids): (Vec<String>, Vec<u32>) = all.iter().filter(|(n, _)| is_allowed(n)).cloned().unzip();
        Ok(ChosenSpecials { specials: SpecialTokens::new(&names)?, ids, banned })
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

    /// The ids of `text` in parts (one per chunk, in order), encoded in parallel when the
    /// pool has several threads; one part otherwise.
    fn encode_chunks<T: TokenId>(&self, text: &str, specials: &SpecialTokens, ids: &[u32], pool: Option<&rayon::ThreadPool>) -> Parts<T> {
        let threads = pool.map_or(1, |p| p.current_num_threads());
        let cuts = match chunk_target(text.len(), threads) {
            None => vec![0, text.len()],
            // Cuts that the full special-token set does not cross are safe for any subset.
            Some(target) => {
                let pattern = self.tokenizer.pattern();
                let safe_for = if pattern.is_builtin() { self.tokenizer.specials() } else { specials };
                tapered_cuts(text.len(), target, threads, |start, target| cut_points(&text.as_bytes()[start..], target, pattern, safe_for))
            }
        };
        let parts = run_chunks(cuts.len() - 1, text.len(), pool, |i, out| {
            self.encode_with_specials_into(&text[cuts[i]..cuts[i + 1]], specials, ids, text.len(), out);
            Ok(())
        });
        parts.expect("encoding UTF-8 text cannot fail")
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

    /// Encodes code points a window at a time: each window is turned into UTF-8 after what
    /// the window before left over, and encoded up to its last safe cut.
    #[allow(clippy::too_many_arguments)]
    fn encode_chars_into<T: TokenId, U: CodeUnit>(
        &self,
        chars: &[U],
        offset: usize,
        specials: &SpecialTokens,
        ids: &[u32],
        banned: Option<&AhoCorasick>,
        job_len: usize,
        out: &mut Vec<T>,
    ) -> Result<(), BpeError> {
        // The thread's window buffer from its last chunk (fresh memory faults a page at a
        // time); given back at the end (an error drops it).
        let mut utf8 = WINDOW_UTF8.with(|w| std::mem::take(&mut *w.borrow_mut()));
        utf8.clear();
        utf8.reserve(WINDOW_CHARS * U::MAX_UTF8);
        let (pattern, all) = (self.tokenizer.pattern(), self.tokenizer.specials());
        let (mut at, mut looked) = (0, 0);
        while at < chars.len() {
            let end = (at + WINDOW_CHARS).min(chars.len());
            push_utf8(&chars[at..end], &mut utf8).map_err(|Surrogate(i)| BpeError::LoneSurrogate(offset + at + i))?;
            at = end;
            let cut = if at == chars.len() {
                utf8.len()
            } else {
                // No special token crosses a cut, so each window can be checked on its own.
                let (cut, limit) = last_cut_after(&utf8, looked, pattern, all);
                looked = limit - cut;
                cut
            };
            if cut == 0 {
                continue;
            }
            check_banned(&utf8[..cut], banned)?;
            // SAFETY: UTF-8 made from code points, cut at a character boundary (a space, or after a newline).
            let window = unsafe { std::str::from_utf8_unchecked(&utf8[..cut]) };
            self.encode_with_specials_into(window, specials, ids, job_len, out);
            utf8.drain(..cut);
        }
        WINDOW_UTF8.with(|w| *w.borrow_mut() = utf8);
        Ok(())
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

/// tiktoken's merge of a pre-token of at most 15 bytes (as `Encoder::merge_linked`) with its
/// sixteen keys in one AVX-512 register instead of an array (the lowest found with one
/// reduction, three lanes set a round) and its parts linked by a bit mask of where each
/// starts: a round goes from its lookups to the next lowest key without a trip through
/// memory.
#[cfg(target_arch = "x86_64")]
struct ShortMerge {
    keys: std::arch::x86_64::__m512i,
    /// Bit i set where a part starts at byte i.
    starts: u32,
    len: usize,
    parts: [u32; 16],
}

#[cfg(target_arch = "x86_64")]
impl ShortMerge {
    #[target_feature(enable = "avx512f,bmi1,lzcnt")]
    #[inline]
    fn new(encoder: &Encoder, piece: &[u8]) -> ShortMerge {
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
    fn key(rank: u32, at: u32) -> u32 {
        if rank == u32::MAX { u32::MAX } else { rank << 4 | at }
    }

    /// The key of the pair to merge next; u32::MAX when none is left.
    #[target_feature(enable = "avx512f,bmi1,lzcnt")]
    #[inline]
    fn lowest_key(&self) -> u32 {
        std::arch::x86_64::_mm512_reduce_min_epu32(self.keys)
    }

    /// Merges the pair of `best` (see `lowest_key`).
    #[target_feature(enable = "avx512f,bmi1,lzcnt")]
    #[inline]
    fn round(&mut self, best: u32, pairs: &PackedPairs) {
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
    fn ids(&self, ids: &mut [u32; MAX_PACKED]) -> usize {
        let (mut starts, mut count) = (self.starts, 0);
        while starts != 0 {
            ids[count] = self.parts[starts.trailing_zeros() as usize];
            count += 1;
            starts &= starts - 1;
        }
        count
    }
}

/// Chunks of about what size a text of `len` bytes (or characters) is cut into for
/// `threads`; None for one chunk. Below a quarter of a megabyte, waking the other threads
/// costs more than they save.
fn chunk_target(len: usize, threads: usize) -> Option<usize> {
    const MIN_PARALLEL: usize = 256 << 10;
    const MIN_CHUNK: usize = 64 << 10;
    (threads > 1 && len >= MIN_PARALLEL).then(|| (len / (threads * 16)).clamp(MIN_CHUNK, 2 << 20))
}

/// Cut points of a text of `len` bytes (or characters) into chunks of about `target`, and of
/// a quarter of that in the quarter of the text around where the threads meet (see
/// `run_chunks`: 1/`threads` of the way in), so that they run out of work at about the same
/// time. `cut_points(start, target)`: the cut points of the text from `start` on, counted
/// from there (from 0 to its length); a cut point of the whole text is one of the rest from
/// there, as whether a place is a cut depends only on the text around it.
fn tapered_cuts(len: usize, target: usize, threads: usize, cut_points: impl Fn(usize, usize) -> Vec<usize>) -> Vec<usize> {
    let meet = len / threads.max(1);
    let (from, to) = (meet.saturating_sub(len / 8), meet + len / 8);
    let mut cuts = vec![0];
    for (end, target) in [(from, target), (to, target / 4), (len, target)] {
        let start = *cuts.last().expect("a cut");
        if start < end {
            let next = cut_points(start, target);
            let last = next.iter().position(|&cut| start + cut >= end).unwrap_or(next.len() - 1);
            cuts.extend(next[1..=last].iter().map(|cut| cut + start));
        }
    }
    cuts
}

/// Runs `encode_chunk` for chunks 0..n of a text of at most `text_len` bytes of UTF-8, on
/// the pool's threads when there is a pool, each appending the ids of the chunks it takes
/// to its own buffer; gives where they are, or the error of the first chunk that failed.
fn run_chunks<T: TokenId>(
    n: usize,
    text_len: usize,
    pool: Option<&rayon::ThreadPool>,
    encode_chunk: impl Fn(usize, &mut Vec<T>) -> Result<(), BpeError> + Sync,
) -> Result<Parts<T>, BpeError> {
    let Some(pool) = pool.filter(|_| n > 1) else {
        let mut buffer = ids_buffer(text_len);
        let mut chunks = Vec::with_capacity(n);
        for i in 0..n {
            let start = buffer.len();
            encode_chunk(i, &mut buffer)?;
            chunks.push((0, start, buffer.len()));
        }
        return Ok(Parts { buffers: vec![buffer], chunks });
    };
    let threads = pool.current_num_threads();
    // The chunks not taken yet, from .0 to .1: the calling thread takes them from the
    // front, the others from the back, so that its ids are the first of the text, in
    // order, and the others' are joined after them. None is taken from the first that
    // failed on: every chunk before that one runs, so its error is the first in the text.
    let untaken = Mutex::new((0, n));
    let first_failed = AtomicUsize::new(n);
    let first_error: Mutex<Option<(usize, BpeError)>> = Mutex::new(None);
    let chunks: Vec<Mutex<(usize, usize, usize)>> = (0..n).map(|_| Mutex::new((0, 0, 0))).collect();
    let buffers: Vec<Mutex<Vec<T>>> = (0..threads).map(|_| Mutex::new(Vec::new())).collect();
    let take_chunks = |thread: usize| {
        // The calling thread's buffer has room for every id (ids never outnumber bytes),
        // for the others' to be joined to; the others have room for a quarter more than a
        // thread's share.
        let mut buffer = ids_buffer(if thread == 0 { text_len } else { text_len / threads + text_len / (4 * threads) });
        loop {
            let i = {
                let mut untaken = untaken.lock().expect("the chunks");
                let (front, back) = &mut *untaken;
                *back = (*back).min(first_failed.load(Ordering::Relaxed));
                if *front >= *back {
                    break;
                }
                if thread == 0 {
                    *front += 1;
                    *front - 1
                } else {
                    *back -= 1;
                    *back
                }
            };
            let start = buffer.len();
            match encode_chunk(i, &mut buffer) {
                Ok(()) => *chunks[i].lock().expect("a chunk") = (thread, start, buffer.len()),
                Err(error) => {
                    first_failed.fetch_min(i, Ordering::Relaxed);
                    let mut first = first_error.lock().expect("an error");
                    if first.as_ref().is_none_or(|&(j, _)| i < j) {
                        *first = Some((i, error));
                    }
                }
            }
        }
        *buffers[thread].lock().expect("a buffer") = buffer;
    };
    // The calling thread takes chunks too, with the cache its earlier calls filled.
    pool.in_place_scope(|scope| {
        for thread in 1..threads {
            let take_chunks = &take_chunks;
            scope.spawn(move |_| take_chunks(thread));
        }
        take_chunks(0);
    });
    if let Some((_, error)) = first_error.into_inner().expect("an error") {
        return Err(error);
    }
    Ok(Parts {
        buffers: buffers.into_iter().map(|b| b.into_inner().expect("a buffer")).collect(),
        chunks: chunks.into_iter().map(|c| c.into_inner().expect("a chunk")).collect(),
    })
}

/// An error if `text` holds a special token that `banned` matches.
fn check_banned(text: &[u8], banned: Option<&AhoCorasick>) -> Result<(), BpeError> {
    match banned.and_then(|b| b.find(text)) {
        Some(m) => Err(BpeError::DisallowedSpecial(String::from_utf8_lossy(&text[m.start()..m.end()]).into_owned())),
        None => Ok(()),
    }
}

/// Room for the ids of up to `text_len` bytes of UTF-8. A large text gets room for one id
/// per byte (ids never outnumber bytes; 40 languages together take 1.5 bytes a GPT-2 token),
/// so that its buffer does not grow, and memory it never writes is never touched; but no
/// more than 64 Mi ids past one per two bytes (English takes over 4 bytes a token), so that
/// the room asked for stays well within the system's memory. A small text gets one id per
/// two bytes: growing costs little there, and the room is held as long as its ids are.
fn ids_buffer<T>(text_len: usize) -> Vec<T> {
    const LARGE: usize = 1 << 20;
    let room = if text_len < LARGE { text_len / 2 } else { text_len.min(text_len / 2 + (64 << 20)) };
    crate::huge_pages::vec_with_capacity(room + 16)
}

/// The ids of a text encoded in chunks, left in the buffers of the threads that encoded
/// them (a buffer per thread rather than per chunk: fresh memory takes a page fault every
/// 4 KiB that is not a huge page); joined, they are the ids of the text.
#[derive(Debug)]
pub struct Parts<T> {
    buffers: Vec<Vec<T>>,
    /// (buffer, start, end) of each chunk's ids, in the order of the text.
    chunks: Vec<(usize, usize, usize)>,
}

impl<T: TokenId> Parts<T> {
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// The ids joined: after the chunks at the start of the text that one buffer holds one
    /// after another from its start, in that buffer if it holds no other chunk and has room
    /// for the rest (as the calling thread's has, see `run_chunks`), else in a new one; the
    /// rest copied in parallel when there is a pool.
    pub fn join(mut self, pool: Option<&rayon::ThreadPool>) -> Vec<T> {
        let total = self.chunks.iter().map(|&(_, start, end)| end - start).sum();
        let home = self.chunks.first().map_or(0, |c| c.0);
        let prefix = self.chunks.iter().scan(0, |held, &(b, start, end)| (b == home && start == *held).then(|| *held = end)).count();
        let in_place = self.chunks[prefix..].iter().all(|c| c.0 != home) && self.buffers.get(home).is_some_and(|b| b.capacity() >= total);
        let (mut out, rest) = if in_place {
            let mut out = std::mem::take(&mut self.buffers[home]);
            out.truncate(self.chunks[..prefix].last().map_or(0, |c| c.2));
            (out, &self.chunks[prefix..])
        } else {
            (crate::huge_pages::vec_with_capacity(total), &self.chunks[..])
        };
        let done = out.len();
        let mut room = &mut out.spare_capacity_mut()[..total - done];
        let mut copies = Vec::with_capacity(rest.len());
        for &(buffer, start, end) in rest {
            let (head, tail) = room.split_at_mut(end - start);
            copies.push((head, &self.buffers[buffer][start..end]));
            room = tail;
        }
        let copy = |(dst, src): &mut (&mut [std::mem::MaybeUninit<T>], &[T])| {
            // SAFETY: `dst` has room for exactly `src.len()` items; T is a plain integer.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr() as *mut T, src.len()) }
        };
        match pool {
            Some(pool) if copies.len() > 1 => pool.install(|| copies.par_iter_mut().for_each(copy)),
            _ => copies.iter_mut().for_each(copy),
        }
        // SAFETY: the copies above wrote the `total - done` items after the first `done`.
        unsafe { out.set_len(total) };
        out
    }
}

/// Writes the ids of a cached pre-token whose ids are in the arena to `dst`, which must
/// have room for them (apart from the loop over hits, to keep that loop small).
#[inline(never)]
unsafe fn write_arena_ids<T: TokenId>(cache: &PreTokenCache, at: u32, count: usize, dst: *mut T) {
    for (k, id) in cache.arena_slice(at, count).iter().enumerate() {
        dst.add(k).write(T::from_id(id.load(std::sync::atomic::Ordering::Relaxed)));
    }
}

/// Appends the ids of a cached pre-token.
#[inline(always)]
fn push_cached<T: TokenId>(cached: &Cached, cache: &PreTokenCache, out: &mut Vec<T>) {
    if cached.count & IN_ARENA == 0 {
        extend_ids(out, &cached.ids[..cached.count as usize]);
    } else {
        out.extend(cache.arena_ids(cached).map(T::from_id));
    }
}

fn extend_ids<T: TokenId>(out: &mut Vec<T>, ids: &[u32]) {
    out.extend(ids.iter().map(|&id| T::from_id(id)));
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
    use crate::pretokenize::{pack, Pattern};
    use crate::train::{train, Input, TrainOptions};

    /// A tokenizer trained on a small text (its file is one per call: tests run in parallel).
    fn trained() -> Encoder {
        trained_on(&"the quick brown fox jumps over the lazy dog. aaaaaaaa  \n\n the end<|endoftext|>".repeat(50), 320)
    }

    pub(super) fn trained_on(text: &str, vocab_size: u64) -> Encoder {
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        let call = CALLS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("rust_bpe_encode_test_{}_{call}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("corpus.txt");
        std::fs::write(&path, text).unwrap();
        let options = TrainOptions {
            vocab_size,
            special_tokens: vec!["<|endoftext|>".into()],
            pattern: Pattern::Gpt2,
            threads: 1,
            strict_utf8: false,
        };
        let (tok, _) = train(&[Input::File(path)], &options, &mut |_| true).unwrap();
        std::fs::remove_dir_all(&dir).ok();
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
    fn each_choice_of_special_tokens_is_kept_apart() {
        let enc = trained();
        let text = "the fox<|endoftext|>the dog";
        let eot = enc.tokenizer().special_tokens()[0].1;
        let named = Allowed::Some(vec!["<|endoftext|>".into()]);
        // Twice round, so that the second round is answered from the kept choices.
        for _ in 0..2 {
            assert!(enc.encode(text, &Allowed::All, &Allowed::All, None).unwrap().contains(&eot));
            assert!(enc.encode(text, &named, &Allowed::All, None).unwrap().contains(&eot));
            assert!(matches!(enc.encode(text, &Allowed::None, &Allowed::All, None), Err(BpeError::DisallowedSpecial(_))));
            assert!(!enc.encode(text, &Allowed::None, &Allowed::None, None).unwrap().contains(&eot));
            let unknown = Allowed::Some(vec!["<|nope|>".into()]);
            assert!(matches!(enc.encode(text, &unknown, &Allowed::None, None), Err(BpeError::InvalidSpecialToken(_))));
        }
    }

    #[test]
    fn caches_with_and_without_the_vocabulary_agree() {
        let text = "the quick brown fox, then the lazy dogs jump over the end aaaa  \n\n the dog";
        let none = SpecialTokens::new(&[]).unwrap();
        let small = trained();
        // As while another thread puts the vocabulary in: each token is found in it.
        *small.cache.write().unwrap() = PreTokenCache::vocabulary_being_put_in(1 << 12);
        let mut found_one_by_one: Vec<u32> = Vec::new();
        small.encode_with_specials_into(text, &none, &[], text.len(), &mut found_one_by_one);
        assert!(!small.cache.read().unwrap().has_vocabulary());
        let big = trained();
        let mut all_at_once: Vec<u32> = Vec::new();
        big.encode_with_specials_into(text, &none, &[], 1 << 20, &mut all_at_once);
        assert!(big.cache.read().unwrap().has_vocabulary());
        assert_eq!(found_one_by_one, all_at_once);
        assert_eq!(big.decode_bytes(&all_at_once).unwrap(), text.as_bytes());
    }

    #[test]
    fn long_pieces_merge_like_short_ones() {
        let enc = trained();
        for n in [10, 15, 63, 64, 65, 200, 5000] {
            let piece = "a".repeat(n);
            let mut long = Vec::new();
            enc.merge_long(piece.as_bytes(), &mut long);
            if n <= 64 {
                let (mut parts, mut ranks) = (Vec::new(), Vec::new());
                enc.merge_into(piece.as_bytes(), &mut parts, &mut ranks);
                assert_eq!(parts, long, "n = {n}");
                let mut linked = [0; 64];
                let count = enc.merge_linked::<65, 7>(piece.as_bytes(), &mut linked);
                assert_eq!(linked[..count], long, "n = {n}");
            }
            if n <= MAX_PACKED {
                let mut short = [0; MAX_PACKED];
                let count = enc.merge_short(piece.as_bytes(), &mut short);
                assert_eq!(short[..count], long, "n = {n}");
            }
            assert_eq!(enc.decode_bytes(&long).unwrap(), piece.as_bytes());
        }
    }

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

    #[test]
    fn parallel_chunks_give_the_same_ids() {
        let enc = trained();
        // Past the length from which a text is encoded in parallel chunks (256 KiB).
        let text = "the quick brown fox\njumps over the lazy dog<|endoftext|>\n".repeat(30_000);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        assert!(enc.encode_parts::<u32>(&text, &Allowed::All, &Allowed::None, Some(&pool)).unwrap().chunk_count() > 1);
        let one = enc.encode(&text, &Allowed::All, &Allowed::None, None).unwrap();
        let many = enc.encode(&text, &Allowed::All, &Allowed::None, Some(&pool)).unwrap();
        assert_eq!(one, many);
        let narrow = enc.encode_parts::<u16>(&text, &Allowed::All, &Allowed::None, Some(&pool)).unwrap().join(None);
        assert!(one.iter().map(|&id| id as u16).eq(narrow));
    }

    /// The ids of `text` without any cache: each pre-token looked up in the vocabulary, or
    /// merged by `merge_long`.
    pub(super) fn uncached(enc: &Encoder, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        enc.tokenizer().pattern().split(text, |piece| {
            let bytes = piece.as_bytes();
            let token = if bytes.len() <= MAX_PACKED {
                enc.short_tokens.get(pack(bytes), hash(pack(bytes))).map(|cached| cached.ids[0])
            } else {
                enc.long_tokens.get(bytes).copied()
            };
            match token {
                Some(id) => out.push(id),
                None => enc.merge_long(bytes, &mut out),
            }
        });
        out
    }

    #[test]
    fn ids_from_the_arena_fit_an_output_with_little_room() {
        let enc = trained();
        // Words of four to fifteen letters, most with more than three ids (in the arena),
        // each met many times.
        let words: Vec<String> = (4..16).map(|n| " ".to_string() + &"zqxj".repeat(4)[..n]).collect();
        let text: String = (0..3000).map(|i| words[(i * 7) % words.len()].as_str()).collect();
        let expected = uncached(&enc, &text);
        assert!(expected.len() > 4 * 3000);
        enc.encode_ordinary_into(&text, &mut Vec::<u32>::new()); // every word now in the cache
        for room in [0, 1, 100, 3 * 256, expected.len()] {
            let mut out: Vec<u32> = Vec::with_capacity(room);
            enc.encode_ordinary_into(&text, &mut out);
            assert_eq!(out, expected, "room {room}");
        }
    }

    #[test]
    fn threads_share_a_cache_that_grows_while_they_encode() {
        let enc = trained();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        // About 200,000 distinct words in 1.5 MB: ten times what the cache is first sized
        // for, most with more than three ids (in the arena).
        let mut seed = 5u64;
        let mut text = String::new();
        while text.len() < 1_500_000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let len = 4 + (seed >> 60) as usize % 6;
            text.push(' ');
            text.extend((0..len).map(|i| (b'a' + ((seed >> (8 + 5 * i)) % 26) as u8) as char));
        }
        let expected = uncached(&enc, &text);
        assert_eq!(enc.encode_ordinary(&text, Some(&pool)), expected);
        let held = enc.cache.read().unwrap().len();
        assert!(held > 150_000, "{held}");
        // Encoded again, from the cache.
        assert_eq!(enc.encode_ordinary(&text, Some(&pool)), expected);
        assert_eq!(enc.encode_ordinary(&text, None), expected);
    }

    #[test]
    fn a_thread_that_waited_for_another_to_grow_the_cache_does_not_lock_it_again() {
        let enc = std::sync::Arc::new(trained());
        let capacity = enc.cache.read().unwrap().capacity();
        // Another thread is growing the cache when this one finds it too small.
        let growing = enc.growing.lock().unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn({
            let enc = enc.clone();
            move || {
                enc.grow_cache(4 * capacity);
                done.send(()).unwrap();
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        enc.cache.write().unwrap().reserve(4 * capacity, 0);
        drop(growing);
        // The grower encodes on, holding the read lock: the waiter must see the room made
        // and go on, not queue for the write lock behind it.
        let reading = enc.cache.read().unwrap();
        finished.recv_timeout(std::time::Duration::from_secs(10)).expect("the waiting thread went on");
        drop(reading);
        waiter.join().unwrap();
        assert!(!enc.grow_pending.load(Ordering::Relaxed));
    }

    #[test]
    fn threads_holding_the_cache_are_asked_to_unlock_it_for_a_grower() {
        let enc = std::sync::Arc::new(trained());
        let capacity = enc.cache.read().unwrap().capacity();
        let reading = enc.cache.read().unwrap();
        let grower = std::thread::spawn({
            let enc = enc.clone();
            move || enc.grow_cache(4 * capacity)
        });
        let asked = std::time::Instant::now();
        while !enc.grow_pending.load(Ordering::Relaxed) {
            assert!(asked.elapsed().as_secs() < 10, "the grower never asked for the lock");
            std::thread::yield_now();
        }
        drop(reading);
        grower.join().unwrap();
        assert!(!enc.grow_pending.load(Ordering::Relaxed));
        assert!(enc.cache.read().unwrap().capacity() >= 4 * capacity);
    }

    #[test]
    fn chunks_are_smaller_where_the_threads_meet() {
        // Every 10th place is a cut (counted in the whole text).
        let every_tenth = |start: usize, target: usize| {
            let mut cuts = vec![0];
            while *cuts.last().unwrap() < 1000 - start {
                let from = cuts.last().unwrap() + target;
                cuts.push(((start + from).next_multiple_of(10) - start).min(1000 - start));
            }
            cuts
        };
        let sizes = |threads| {
            let cuts = tapered_cuts(1000, 100, threads, every_tenth);
            cuts.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>()
        };
        // Two threads meet halfway: chunks of a quarter from 375 on to 625.
        assert_eq!(sizes(2), [[100; 4].as_slice(), &[30; 8], &[100, 100, 100, 60]].concat());
        // Four meet a quarter of the way in: from 125 to 375.
        assert_eq!(sizes(4), [[100; 2].as_slice(), &[30; 6], &[100; 6], &[20]].concat());
    }

    #[test]
    fn parts_join_in_the_order_of_the_text() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        // Chunks 0 and 2 taken by one thread, chunk 1 by the other.
        let spread = || Parts { buffers: vec![vec![1u32, 2, 5, 6], vec![3, 4]], chunks: vec![(0, 0, 2), (1, 0, 2), (0, 2, 4)] };
        assert_eq!(spread().join(None), [1, 2, 3, 4, 5, 6]);
        assert_eq!(spread().join(Some(&pool)), [1, 2, 3, 4, 5, 6]);
        // One thread took every chunk; the other's buffer is empty.
        let one = Parts { buffers: vec![vec![], vec![7u16, 8, 9]], chunks: vec![(1, 0, 1), (1, 1, 3)] };
        assert_eq!(one.join(Some(&pool)), [7, 8, 9]);
        // The first chunks in one buffer with room for all: the rest are joined after them,
        // in that buffer.
        let mut home = Vec::with_capacity(8);
        home.extend([1u32, 2, 3]);
        let at = home.as_ptr();
        let ends = Parts { buffers: vec![home, vec![6, 7, 8, 4, 5]], chunks: vec![(0, 0, 2), (0, 2, 3), (1, 3, 5), (1, 0, 3)] };
        let joined = ends.join(Some(&pool));
        assert_eq!(joined, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(joined.as_ptr(), at);
    }

    #[test]
    fn parts_join_whatever_buffers_hold_them() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let mut seed = 99u64;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for round in 0..300 {
            // Chunks of ids counting up, each appended to one of three buffers, some of them
            // with room for every id and some not; half the rounds take the chunks from
            // both ends, as `run_chunks` does.
            let n = 1 + next(12) as usize;
            let sizes: Vec<usize> = (0..n).map(|_| next(40) as usize).collect();
            let total: usize = sizes.iter().sum();
            let mut buffers: Vec<Vec<u32>> = (0..3).map(|_| Vec::with_capacity(if next(2) == 0 { total } else { 1 })).collect();
            let mut chunks = vec![(0, 0, 0); n];
            let (mut front, mut back) = (0, n);
            let starts: Vec<u32> = sizes.iter().scan(0, |at, &size| Some(std::mem::replace(at, *at + size as u32))).collect();
            while front < back {
                let b = next(3) as usize;
                let i = if round % 2 == 0 || b == 0 { front += 1; front - 1 } else { back -= 1; back };
                let start = buffers[b].len();
                buffers[b].extend(starts[i]..starts[i] + sizes[i] as u32);
                chunks[i] = (b, start, buffers[b].len());
            }
            let parts = Parts { buffers, chunks };
            let joined = if round % 4 < 2 { parts.join(None) } else { parts.join(Some(&pool)) };
            assert_eq!(joined, (0..total as u32).collect::<Vec<_>>(), "sizes {sizes:?}");
        }
    }

    #[test]
    fn the_first_error_in_the_text_is_the_one_reported() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        // The thread that takes chunks from the back meets chunk 9's error first; chunk 3's,
        // earlier in the text, is still found and reported.
        let result = run_chunks::<u32>(10, 1000, Some(&pool), |i, out| {
            if i < 3 {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            match i {
                3 | 9 => Err(BpeError::InvalidArgument(format!("chunk {i}"))),
                _ => Ok(out.push(i as u32)),
            }
        });
        assert!(matches!(result, Err(BpeError::InvalidArgument(ref m)) if m == "chunk 3"), "{result:?}");
        let parts = run_chunks::<u32>(10, 1000, Some(&pool), |i, out| Ok(out.push(i as u32))).unwrap();
        assert_eq!(parts.join(Some(&pool)), (0..10).collect::<Vec<_>>());
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

#[cfg(test)]
mod long_piece_tests {
    use super::*;
    use crate::backtrack::merge_recording;

    /// Numbers below n from a fixed seed.
    struct Draw(u64);

    impl Draw {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((self.0 >> 33) % n as u64) as usize
        }

        fn string(&mut self, alphabet: &[u8], len: usize) -> Vec<u8> {
            (0..len).map(|_| alphabet[self.below(alphabet.len())]).collect()
        }
    }

    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

    /// Text to train on whose vocabulary has many tokens of one letter, of short repeated
    /// patterns and of strings over a few letters, besides words.
    fn degenerate_corpus(draw: &mut Draw) -> String {
        let mut text = String::new();
        for round in 0..2000 {
            let (a, b, c) = (draw.below(6), draw.below(40), draw.below(12));
            let run = match round % 4 {
                0 => vec![b"abcxyz"[a]; 1 + b],
                1 => draw.string(&b"abcab"[..2 + a % 3], 2 + b % 4).repeat(1 + c),
                2 => draw.string(&b"abcde"[..2 + a % 4], 1 + b % 30),
                _ => draw.string(LETTERS, 3 + c % 8),
            };
            text.push(' ');
            text.push_str(std::str::from_utf8(&run).unwrap());
        }
        text.repeat(3)
    }

    /// The pieces the backtracking merge is compared with the heap merge on.
    fn degenerate_pieces(draw: &mut Draw, corpus: &str) -> Vec<Vec<u8>> {
        let mut pieces = Vec::new();
        for &letter in b"abcxyzQ" {
            pieces.extend((1..=130).map(|len| vec![letter; len]));
            pieces.push(vec![letter; 1000 + draw.below(3000)]);
        }
        for period in 2..=7 {
            for _ in 0..12 {
                let (letters, len, skip) = (2 + draw.below(4), 1 + draw.below(600), draw.below(period));
                let pattern = draw.string(&b"abcde"[..letters], period);
                pieces.push(pattern.iter().copied().cycle().skip(skip).take(len).collect());
            }
        }
        for alphabet in [&b"ab"[..], b"abc", b"abcd", b"abcde", b"xyz", b"aA"] {
            pieces.extend((0..40).map(|_| {
                let len = 1 + draw.below(1500);
                draw.string(alphabet, len)
            }));
        }
        pieces.extend((0..40).map(|_| {
            let len = 1 + draw.below(3000);
            draw.string(LETTERS, len)
        }));
        let all_bytes: Vec<u8> = (0..=255).collect();
        pieces.extend((0..40).map(|_| {
            let len = 1 + draw.below(2000);
            draw.string(&all_bytes, len)
        }));
        let squeezed: Vec<u8> = corpus.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        pieces.extend((0..40).map(|_| {
            let (start, len) = (draw.below(squeezed.len() - 1), 1 + draw.below(2000));
            squeezed[start..(start + len).min(squeezed.len())].to_vec()
        }));
        pieces
    }

    fn heap_merge(enc: &Encoder, piece: &[u8]) -> Vec<u32> {
        let mut ids = Vec::new();
        enc.merge_long(piece, &mut ids);
        ids
    }

    fn backtracked(enc: &Encoder, piece: &[u8]) -> Vec<u32> {
        let mut ids = Vec::new();
        assert!(enc.backtracking().unwrap().encode(piece, &enc.pair_ranks, &enc.byte_ids, &mut ids), "no sequence found for {piece:?}");
        ids
    }

    #[test]
    fn backtracking_gives_the_heap_merges_ids() {
        let mut draw = Draw(11);
        let corpus = degenerate_corpus(&mut draw);
        for vocab_size in [300, 700, 2000] {
            let enc = super::tests::trained_on(&corpus, vocab_size);
            assert!(enc.tokenizer().vocab_size() as u64 > vocab_size - 20, "{}", enc.tokenizer().vocab_size());
            for piece in degenerate_pieces(&mut draw, &corpus) {
                assert_eq!(backtracked(&enc, &piece), heap_merge(&enc, &piece), "vocab {vocab_size}, piece {:?}", String::from_utf8_lossy(&piece));
            }
        }
    }

    #[test]
    fn compatibility_found_by_undoing_merges_is_that_of_merging_the_two_tokens() {
        let mut draw = Draw(12);
        let corpus = degenerate_corpus(&mut draw);
        for vocab_size in [300, 1000] {
            let enc = super::tests::trained_on(&corpus, vocab_size);
            let backtracking = enc.backtracking().unwrap();
            let tokens = backtracking.tokens_in_order();
            assert!(tokens.len() > vocab_size as usize * 9 / 10, "{} of {vocab_size}", tokens.len());
            let ids: FxHashMap<&[u8], u32> = tokens.iter().map(|&(id, bytes)| (bytes, id)).collect();
            // Pairs of tokens drawn at random (most of them compatible), and every two tokens
            // that spell a third (most of them not).
            let mut pairs: Vec<(u32, u32)> = Vec::new();
            for &(left, _) in &tokens {
                let skip = draw.below(4);
                pairs.extend(tokens.iter().skip(skip).step_by(1 + vocab_size as usize / 300).map(|&(right, _)| (left, right)));
            }
            for &(_, bytes) in &tokens {
                pairs.extend((1..bytes.len()).filter_map(|at| Some((*ids.get(&bytes[..at])?, *ids.get(&bytes[at..])?))));
            }
            let bytes_of: FxHashMap<u32, &[u8]> = tokens.iter().copied().collect();
            let mut compatible = 0;
            for &(left, right) in &pairs {
                let (left_bytes, right_bytes) = (bytes_of[&left], bytes_of[&right]);
                let merged = merge_recording(&[left_bytes, right_bytes].concat(), &enc.byte_ids, &enc.pair_ranks).0;
                let holds = backtracking.boundary_holds(left, right, &enc.pair_ranks);
                assert_eq!(holds, merged == [left, right], "{:?} + {:?}", String::from_utf8_lossy(left_bytes), String::from_utf8_lossy(right_bytes));
                compatible += holds as usize;
            }
            let incompatible = pairs.len() - compatible;
            // (Each token's own two parts at least are not compatible.)
            assert!(compatible > 10_000 && incompatible >= tokens.len() - 256, "{compatible} compatible, {incompatible} not");
        }
    }

    #[test]
    fn vocabularies_with_merges_out_of_order_and_unreachable_tokens_give_the_heap_merges_ids() {
        let mut draw = Draw(13);
        let mut unordered = 0;
        for round in 0..30 {
            // Random strings over three letters, in random order of rank: some tokens are
            // never made by merging, some are made by merges that do not come in order.
            let mut vocab: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
            while vocab.len() < 256 + 40 + round * 4 {
                let len = 2 + draw.below(5);
                let token = draw.string(b"abc", len);
                if !vocab.contains(&token) {
                    vocab.push(token);
                }
            }
            let tok = crate::tokenizer::Tokenizer::unchecked(vocab, crate::pretokenize::Pattern::Gpt2);
            let enc = Encoder::new(tok);
            unordered += enc.tokenizer().vocab_size() - 256 - enc.backtracking().unwrap().tokens_in_order().iter().filter(|(t, _)| *t >= 256).count();
            for _ in 0..60 {
                let len = 1 + draw.below(300);
                let piece = draw.string(b"abc", len);
                assert_eq!(backtracked(&enc, &piece), heap_merge(&enc, &piece), "round {round}, piece {:?}", String::from_utf8_lossy(&piece));
            }
        }
        assert!(unordered > 100, "{unordered}");
    }

    #[test]
    fn a_pre_token_of_megabytes_gives_the_heap_merges_ids_and_is_not_kept() {
        let mut draw = Draw(14);
        let corpus = degenerate_corpus(&mut draw);
        let enc = super::tests::trained_on(&corpus, 1000);
        let run = String::from_utf8(draw.string(b"abcab", 3 << 20)).unwrap();
        let text = format!("the start {run} and{} the end", "a".repeat(BACKTRACK_FROM + 1));
        assert_eq!(enc.encode_ordinary(&text, None), super::tests::uncached(&enc, &text));
        let kept = SCRATCH.with(|s| s.borrow().as_ref().map(|s| (s.long.len(), s.long_bytes)));
        assert_eq!(kept, Some((0, 0)));
    }
}
