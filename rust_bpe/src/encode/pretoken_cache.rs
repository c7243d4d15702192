//! The encoder's memory of pre-tokens already encoded (packed pre-token -> ids), one for
//! all the threads that encode with it: a word the text repeats is merged once, by the
//! first thread that meets it, and not once per thread.
//!
//! Open addressing with linear probing from an even slot, two 32-byte slots to a cache line
//! (as `PackedTable`). Threads look up and insert at once through `&PreTokenCache`; only
//! growing takes `&mut` (the encoder's write lock). A slot is claimed by a compare-exchange
//! of its key's high half from 0 to `CLAIMED`, filled, and published by a release store of
//! the real high half: a reader that acquires that half sees the rest. Slots are never
//! emptied, so a probe that meets an empty slot has seen every slot its key could be in. A
//! pre-token that two threads meet at the same moment may be put in twice, in two slots
//! with the same ids: harmless.
//!
//! Ids of pre-tokens that have more than three go to an arena of the same kind: a thread
//! takes room in it a block at a time, writes the ids, then publishes the slot that points
//! to them.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::text::huge_pages::ZeroedBuffer;

/// The ids of a pre-token: `count` (at most three) ids in `ids`, or (`count` with
/// `IN_ARENA` set) `count & !IN_ARENA` ids at offset `ids[0]` of the cache's arena.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct Cached {
    pub ids: [u32; 3],
    pub count: u32,
}

pub(crate) const IN_ARENA: u32 = 1 << 31;

impl Cached {
    pub fn single(id: u32) -> Cached {
        Cached { ids: [id, 0, 0], count: 1 }
    }

    /// At most three ids, held in the value itself.
    pub fn inline(ids: &[u32]) -> Cached {
        let mut inline = [0u32; 3];
        inline[..ids.len()].copy_from_slice(ids);
        Cached { ids: inline, count: ids.len() as u32 }
    }

    fn from_words(words: [u64; 2]) -> Cached {
        Cached { ids: [words[0] as u32, (words[0] >> 32) as u32, words[1] as u32], count: (words[1] >> 32) as u32 }
    }

    fn to_words(self) -> [u64; 2] {
        [self.ids[0] as u64 | (self.ids[1] as u64) << 32, self.ids[2] as u64 | (self.count as u64) << 32]
    }
}

/// The high half of a key whose slot a thread is filling (a packed key's top byte is its
/// length, at most 15).
const CLAIMED: u64 = u64::MAX;

#[repr(C)]
struct Slot {
    /// Low and high halves of the packed pre-token; high 0: the slot is empty.
    key: [AtomicU64; 2],
    value: [AtomicU64; 2],
}

#[repr(C, align(64))]
struct Line([Slot; 2]);

/// Room in the arena a thread takes at a time.
const ARENA_BLOCK: usize = 256;

pub(crate) struct PreTokenCache {
    lines: ZeroedBuffer<Line>,
    /// Number of slots - 1 (a power of two).
    mask: usize,
    /// Slots taken, as the threads have reported them (see `Inserts`).
    len: AtomicUsize,
    arena: ZeroedBuffer<AtomicU32>,
    arena_used: AtomicUsize,
    /// Changes whenever the arena is made anew (room taken in an older one is not used).
    generation: u64,
    /// Whether every token of the encoder's vocabulary is in (set with release once the
    /// last is).
    has_vocabulary: AtomicBool,
    /// Whether a thread has taken on putting the vocabulary in.
    vocabulary_taken: AtomicBool,
}

/// A cache's lines with the mask that picks one, copied out of the cache so that they stay
/// in registers through a loop that writes ids through raw pointers. Its lookups take a key's
/// hash as `home` gives it: shifted so that, masked, it is the byte offset of the key's home
/// line (one instruction, where the hash would take three).
#[derive(Clone, Copy)]
pub(crate) struct HomeLines<'c> {
    lines: *const u8,
    /// (Lines - 1) * 64.
    byte_mask: usize,
    cache: std::marker::PhantomData<&'c PreTokenCache>,
}

/// `hash` as `HomeLines` takes it (the hash's low bits, which alone pick a line, are kept:
/// `hash_of_home` gives a hash that picks the same lines as `hash`).
#[inline(always)]
pub(crate) fn home(hash: u64) -> u64 {
    hash << 5
}

#[inline(always)]
pub(crate) fn hash_of_home(home: u64) -> u64 {
    home >> 5
}

impl<'c> HomeLines<'c> {
    /// The line where the probe of the hash `home` stands for begins.
    #[inline(always)]
    fn line(&self, home: u64) -> &'c Line {
        // SAFETY: the offset is masked to the cache's lines, which live as long as 'c.
        unsafe { &*(self.lines.add(home as usize & self.byte_mask) as *const Line) }
    }

    /// Asks the CPU to start loading the home line of `home` into L1.
    #[inline(always)]
    pub fn prefetch(&self, home: u64) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: prefetching is a hint; the address is that of a live line.
        unsafe { std::arch::x86_64::_mm_prefetch(self.line(home) as *const Line as *const i8, std::arch::x86_64::_MM_HINT_T0) };
    }

    /// The same into L2 only: for a lookup hundreds of cycles away, without crowding L1.
    #[inline(always)]
    pub fn prefetch_l2(&self, home: u64) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `prefetch`.
        unsafe { std::arch::x86_64::_mm_prefetch(self.line(home) as *const Line as *const i8, std::arch::x86_64::_MM_HINT_T1) };
    }

    /// `key`'s value if it is in the line where its probe begins, which is where nearly
    /// every key is (`PreTokenCache::get` walks on from there): both slots are read and the
    /// value picked without a branch, as which of the two holds a key is anybody's guess.
    /// The flag says whether it was found; the value is another slot's when not.
    #[inline(always)]
    pub fn probe(&self, key: u128, home: u64) -> (bool, Cached) {
        let (lo, hi) = (key as u64, (key >> 64) as u64);
        let [first, second] = &self.line(home).0;
        let in_first = (first.key[1].load(Ordering::Acquire) == hi) & (first.key[0].load(Ordering::Relaxed) == lo);
        let in_second = (second.key[1].load(Ordering::Acquire) == hi) & (second.key[0].load(Ordering::Relaxed) == lo);
        let pick = (in_first as u64).wrapping_neg();
        let word = |i: usize| first.value[i].load(Ordering::Relaxed) & pick | second.value[i].load(Ordering::Relaxed) & !pick;
        (in_first | in_second, Cached::from_words([word(0), word(1)]))
    }
}

/// Zeroed memory for `n` items of `T`, taken from the kernel page by page as it is used.
fn zeroed<T: ZeroValid>(n: usize) -> ZeroedBuffer<T> {
    // SAFETY: all-zero bytes are a valid T (`ZeroValid`).
    unsafe { ZeroedBuffer::new(n) }
}

/// Types valid when all their bytes are zero.
trait ZeroValid {}
impl ZeroValid for Line {}
impl ZeroValid for AtomicU32 {}

static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

impl PreTokenCache {
    /// A cache with room for `n` pre-tokens (at half load), and an arena of eight ids for
    /// each (memory that is never written is never touched: the arena is filled from its
    /// start, so room to spare costs nothing).
    pub fn with_capacity(n: usize) -> PreTokenCache {
        let slots = (n * 2).next_power_of_two().max(1024);
        PreTokenCache {
            lines: zeroed(slots / 2),
            mask: slots - 1,
            len: AtomicUsize::new(0),
            arena: zeroed(4 * slots),
            arena_used: AtomicUsize::new(0),
            generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
            has_vocabulary: AtomicBool::new(false),
            vocabulary_taken: AtomicBool::new(false),
        }
    }

    /// An empty cache whose vocabulary another thread has taken on putting in (and never
    /// will): the encoder looks every pre-token it misses up in the vocabulary.
    #[cfg(test)]
    pub fn vocabulary_being_put_in(n: usize) -> PreTokenCache {
        let cache = PreTokenCache::with_capacity(n);
        cache.vocabulary_taken.store(true, Ordering::Relaxed);
        cache
    }

    /// Whether every token of the vocabulary is in: a pre-token missing from the cache is
    /// then not a token.
    #[inline(always)]
    pub fn has_vocabulary(&self) -> bool {
        self.has_vocabulary.load(Ordering::Acquire)
    }

    /// Puts the vocabulary's tokens in, unless a thread has already begun to. While it
    /// does, the other threads go on encoding, looking up in the vocabulary what they miss.
    pub fn put_vocabulary(&self, tokens: impl Iterator<Item = (u128, Cached)>) {
        if self.vocabulary_taken.load(Ordering::Relaxed) || self.vocabulary_taken.swap(true, Ordering::Relaxed) {
            return;
        }
        let mut inserts = Inserts::default();
        let mut all_in = true;
        for (key, value) in tokens {
            all_in &= self.insert(key, crate::packed_table::hash(key), value, &mut inserts);
        }
        inserts.report(&self.len);
        // A cache too full to take them all goes on looking tokens up in the vocabulary.
        if all_in {
            self.has_vocabulary.store(true, Ordering::Release);
        }
    }

    /// Pre-tokens held (as reported so far).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// How many pre-tokens it holds before it should grow (half its slots).
    pub fn capacity(&self) -> usize {
        (self.mask >> 1) + 1
    }

    /// Past this many, inserts are refused (probes would grow long); the encoder grows the
    /// cache between calls before that.
    fn limit(&self) -> usize {
        (self.mask + 1) / 4 * 3
    }

    /// Whether the arena should grow: past three quarters full.
    pub fn arena_crowded(&self) -> bool {
        self.arena_used.load(Ordering::Relaxed) > self.arena.len() / 4 * 3
    }

    #[inline(always)]
    fn line_of(&self, hash: u64) -> usize {
        (hash as usize & self.mask) >> 1
    }

    /// The slot's value if it holds `key` (published).
    #[inline(always)]
    fn value_if(slot: &Slot, lo: u64, hi: u64) -> Option<Cached> {
        if slot.key[1].load(Ordering::Acquire) == hi && slot.key[0].load(Ordering::Relaxed) == lo {
            return Some(Cached::from_words([slot.value[0].load(Ordering::Relaxed), slot.value[1].load(Ordering::Relaxed)]));
        }
        None
    }

    /// The table's lines, for `HomeLines::probe` over a block of lookups.
    #[inline(always)]
    pub fn home_lines(&self) -> HomeLines<'_> {
        HomeLines { lines: self.lines.as_ptr() as *const u8, byte_mask: (self.mask >> 1) * std::mem::size_of::<Line>(), cache: std::marker::PhantomData }
    }

    #[inline(always)]
    pub fn get(&self, key: u128, hash: u64) -> Option<Cached> {
        let (lo, hi) = (key as u64, (key >> 64) as u64);
        let line_mask = self.mask >> 1;
        let mut at = self.line_of(hash);
        loop {
            let [first, second] = &self.lines[at].0;
            if let Some(value) = Self::value_if(first, lo, hi) {
                return Some(value);
            }
            if let Some(value) = Self::value_if(second, lo, hi) {
                return Some(value);
            }
            // Probes start at the first slot of a line and slots are taken in probe order,
            // so an empty second slot ends the probe.
            if second.key[1].load(Ordering::Relaxed) == 0 {
                return None;
            }
            at = (at + 1) & line_mask;
        }
    }

    /// Puts `key` in with `value` unless it is there already; false if the cache is too
    /// full to take it. `inserts` counts the slots this thread took.
    pub fn insert(&self, key: u128, hash: u64, value: Cached, inserts: &mut Inserts) -> bool {
        if self.len.load(Ordering::Relaxed) + inserts.unreported >= self.limit() {
            return false;
        }
        let (lo, hi) = (key as u64, (key >> 64) as u64);
        debug_assert!(hi != 0 && hi != CLAIMED);
        let mut i = hash as usize & self.mask & !1;
        loop {
            let slot = &self.lines[i >> 1].0[i & 1];
            let mut seen = slot.key[1].load(Ordering::Acquire);
            if seen == 0 {
                match slot.key[1].compare_exchange(0, CLAIMED, Ordering::Acquire, Ordering::Acquire) {
                    Ok(_) => {
                        let [v0, v1] = value.to_words();
                        slot.key[0].store(lo, Ordering::Relaxed);
                        slot.value[0].store(v0, Ordering::Relaxed);
                        slot.value[1].store(v1, Ordering::Relaxed);
                        slot.key[1].store(hi, Ordering::Release);
                        inserts.took_slot(&self.len);
                        return true;
                    }
                    Err(now) => seen = now,
                }
            }
            if seen == hi && slot.key[0].load(Ordering::Relaxed) == lo {
                return true;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// `ids` (more than three) written to the arena, as the value that points to them; None
    /// when the arena is full. `inserts` holds the room this thread has taken.
    pub fn store_in_arena(&self, ids: &[u32], inserts: &mut Inserts) -> Option<Cached> {
        if inserts.generation != self.generation || inserts.arena_at + ids.len() > inserts.arena_end {
            let at = self.arena_used.fetch_add(ARENA_BLOCK, Ordering::Relaxed);
            if at + ARENA_BLOCK > self.arena.len() {
                return None;
            }
            (inserts.generation, inserts.arena_at, inserts.arena_end) = (self.generation, at, at + ARENA_BLOCK);
        }
        let at = inserts.arena_at;
        for (cell, &id) in self.arena[at..at + ids.len()].iter().zip(ids) {
            cell.store(id, Ordering::Relaxed);
        }
        inserts.arena_at += ids.len();
        Some(Cached { ids: [at as u32, 0, 0], count: IN_ARENA | ids.len() as u32 })
    }

    /// The ids of an arena value (read after the slot that holds it).
    #[inline(always)]
    pub fn arena_ids(&self, cached: &Cached) -> impl Iterator<Item = u32> + '_ {
        let count = (cached.count & !IN_ARENA) as usize;
        self.arena_slice(cached.ids[0], count).iter().map(|cell| cell.load(Ordering::Relaxed))
    }

    /// The `count` ids at `at` in the arena.
    #[inline(always)]
    pub fn arena_slice(&self, at: u32, count: usize) -> &[AtomicU32] {
        &self.arena[at as usize..at as usize + count]
    }

    /// Room for `n` pre-tokens without growing, and an arena of at least `arena` ids; what it
    /// held is kept unless it is little next to the new room.
    pub fn reserve(&mut self, n: usize, arena: usize) {
        if n <= self.capacity() && arena <= self.arena.len() {
            return;
        }
        let mut grown = PreTokenCache::with_capacity(n.max(self.capacity()));
        if self.len() * 16 < grown.capacity() {
            // Too few to be worth touching every page of the new table now, on one thread
            // while the others wait: they are merged again when met.
            *self = grown;
            return;
        }
        let has_vocabulary = self.has_vocabulary();
        *grown.has_vocabulary.get_mut() = has_vocabulary;
        *grown.vocabulary_taken.get_mut() = has_vocabulary;
        if arena > grown.arena.len() {
            grown.arena = zeroed(arena);
        }
        let used = self.arena_used.load(Ordering::Relaxed).min(self.arena.len());
        for (to, from) in grown.arena.iter_mut().zip(&self.arena[..used]) {
            *to.get_mut() = from.load(Ordering::Relaxed);
        }
        *grown.arena_used.get_mut() = used;
        // The slots moved a batch at a time, each batch's lines asked for first, so that
        // their cache misses overlap.
        const BATCH: usize = 32;
        let mut batch = [(0u128, 0u64, [0u64; 2]); BATCH];
        let mut filled = 0;
        for slot in self.lines.iter().flat_map(|line| &line.0) {
            let hi = slot.key[1].load(Ordering::Relaxed);
            if hi == 0 {
                continue;
            }
            let key = (hi as u128) << 64 | slot.key[0].load(Ordering::Relaxed) as u128;
            let hash = crate::packed_table::hash(key);
            grown.home_lines().prefetch(home(hash));
            batch[filled] = (key, hash, [slot.value[0].load(Ordering::Relaxed), slot.value[1].load(Ordering::Relaxed)]);
            filled += 1;
            if filled == BATCH {
                grown.put_all_owned(&batch);
                filled = 0;
            }
        }
        grown.put_all_owned(&batch[..filled]);
        *self = grown;
    }

    /// Puts each (key, hash, value) in the first empty slot of its probe (the cache is not
    /// shared while it is borrowed mutably: no compare-exchange; the keys are missing).
    fn put_all_owned(&mut self, entries: &[(u128, u64, [u64; 2])]) {
        for &(key, hash, value) in entries {
            let mut i = hash as usize & self.mask & !1;
            loop {
                let slot = &mut self.lines[i >> 1].0[i & 1];
                if *slot.key[1].get_mut() == 0 {
                    *slot.key[0].get_mut() = key as u64;
                    *slot.key[1].get_mut() = (key >> 64) as u64;
                    *slot.value[0].get_mut() = value[0];
                    *slot.value[1].get_mut() = value[1];
                    break;
                }
                i = (i + 1) & self.mask;
            }
        }
        *self.len.get_mut() += entries.len();
    }

    /// Arena room in use (for growing it).
    pub fn arena_len(&self) -> usize {
        self.arena.len()
    }
}

/// What one thread has put in a cache and not yet told the others: slots taken (added to
/// the shared count every so often, not at every insert, which would bounce its cache line
/// between the cores), and the arena room it holds.
#[derive(Default)]
pub(crate) struct Inserts {
    unreported: usize,
    generation: u64,
    arena_at: usize,
    arena_end: usize,
}

impl Inserts {
    const REPORT_EVERY: usize = 64;

    #[inline(always)]
    fn took_slot(&mut self, len: &AtomicUsize) {
        self.unreported += 1;
        if self.unreported == Self::REPORT_EVERY {
            self.report(len);
        }
    }

    pub fn unreported(&self) -> usize {
        self.unreported
    }

    fn report(&mut self, len: &AtomicUsize) {
        len.fetch_add(self.unreported, Ordering::Relaxed);
        self.unreported = 0;
    }

    /// Adds the slots not yet reported to `cache`'s count.
    pub fn report_to(&mut self, cache: &PreTokenCache) {
        self.report(&cache.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packed_table::hash;
    use crate::pretokenize::pack;

    fn key(i: usize) -> u128 {
        pack(format!("w{i}").as_bytes())
    }

    #[test]
    fn threads_inserting_the_same_words_find_every_one() {
        let cache = PreTokenCache::with_capacity(20_000);
        std::thread::scope(|scope| {
            for t in 0..4 {
                let cache = &cache;
                scope.spawn(move || {
                    let mut inserts = Inserts::default();
                    // Each thread takes every word, in an order of its own.
                    let stride = [1, 7, 11, 13][t];
                    for j in 0..15_000 {
                        let i = (j * stride + t * 1000) % 15_000;
                        // As the encoder does: a word is stored when a lookup missed it.
                        if cache.get(key(i), hash(key(i))).is_none() {
                            let value = if i % 3 == 0 {
                                cache.store_in_arena(&[i as u32, 1, 2, 3, 4], &mut inserts).expect("room in the arena")
                            } else {
                                Cached::single(i as u32)
                            };
                            assert!(cache.insert(key(i), hash(key(i)), value, &mut inserts));
                        }
                        let found = cache.get(key(i), hash(key(i))).expect("just put in");
                        if i % 3 == 0 {
                            assert_eq!(cache.arena_ids(&found).collect::<Vec<_>>(), [i as u32, 1, 2, 3, 4]);
                        } else {
                            assert_eq!(found, Cached::single(i as u32));
                        }
                    }
                    inserts.report_to(cache);
                });
            }
        });
        let mut cache = cache;
        let held = cache.len();
        assert!((15_000..=15_000 + 4 * 64).contains(&held), "{held}");
        cache.reserve(100_000, 0);
        for i in 0..15_000 {
            let found = cache.get(key(i), hash(key(i))).expect("every word");
            if i % 3 == 0 {
                assert_eq!(cache.arena_ids(&found).collect::<Vec<_>>(), [i as u32, 1, 2, 3, 4]);
            } else {
                assert_eq!(found, Cached::single(i as u32));
            }
        }
        assert_eq!(cache.get(key(15_000), hash(key(15_000))), None);
    }

    #[test]
    fn a_full_cache_refuses_inserts_and_still_answers() {
        let cache = PreTokenCache::with_capacity(10);
        let mut inserts = Inserts::default();
        let taken = (0..5000).take_while(|&i| cache.insert(key(i), hash(key(i)), Cached::single(i as u32), &mut inserts)).count();
        assert_eq!(taken, cache.limit());
        for i in 0..taken {
            assert_eq!(cache.get(key(i), hash(key(i))), Some(Cached::single(i as u32)));
        }
        assert_eq!(cache.get(key(taken), hash(key(taken))), None);
        let mut arena_full = Inserts::default();
        let stored = (0..).take_while(|_| cache.store_in_arena(&[1, 2, 3, 4], &mut arena_full).is_some()).count();
        assert_eq!(stored, cache.arena_len() / ARENA_BLOCK * (ARENA_BLOCK / 4));
    }

    #[test]
    fn a_probe_finds_either_slot_of_the_home_line_and_nothing_past_it() {
        let cache = PreTokenCache::with_capacity(1000);
        let mut inserts = Inserts::default();
        // Four keys given the same hash: the first two fill its line, the others the next.
        let h = 6;
        for i in 0..4 {
            assert!(cache.insert(key(i), h, Cached::inline(&[i as u32, 10 + i as u32]), &mut inserts));
        }
        let lines = cache.home_lines();
        for i in 0..2 {
            assert_eq!(lines.probe(key(i), home(h)), (true, Cached::inline(&[i as u32, 10 + i as u32])));
        }
        for i in 2..5 {
            assert!(!lines.probe(key(i), home(h)).0, "key {i}");
            assert_eq!(cache.get(key(i), h).is_some(), i < 4);
        }
        // A key whose home line is empty.
        assert!(!lines.probe(key(0), home(h + 2)).0);
    }
}
