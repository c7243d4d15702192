//! A thread's hold on the shared pre-token cache: the read lock, its scratch space and
//! long pre-tokens met, and the growth of the cache when it fills (under the write lock).

use super::*;

/// What a thread needs besides the shared cache: pre-tokens longer than 15 bytes met (with
/// their ids in `long_ids`), scratch space, and what it put in the shared cache.
pub(super) struct Scratch {
    pub(super) encoder: u64,
    pub(super) long: FxHashMap<Box<[u8]>, (u32, u32)>,
    pub(super) long_ids: Vec<u32>,
    /// The bytes of the keys of `long`.
    pub(super) long_bytes: usize,
    /// Scratch space of the merge loop.
    pub(super) parts: Vec<u32>,
    pub(super) ranks: Vec<u32>,
    pub(super) blocks: Option<Box<[Block; 2]>>,
    pub(super) inserts: Inserts,
}

impl Scratch {
    pub(super) fn new(encoder: u64) -> Scratch {
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
pub(super) struct Cache<'e, 's> {
    /// Always Some, except while `make_room` swaps the lock for a bigger cache.
    pub(super) shared: Option<RwLockReadGuard<'e, PreTokenCache>>,
    pub(super) encoder: &'e Encoder,
    /// Pre-tokens the cache was sized for, for this text's whole job.
    pub(super) wanted: usize,
    pub(super) local: &'s mut Scratch,
}

impl Cache<'_, '_> {
    #[inline(always)]
    pub(super) fn short(&self) -> &PreTokenCache {
        self.shared.as_deref().expect("a locked cache")
    }

    /// Whether the shared cache is past half full (or its arena past three quarters), or
    /// another thread waits to grow it.
    #[inline(always)]
    pub(super) fn wants_room(&self) -> bool {
        let short = self.short();
        short.len() + self.local.inserts.unreported() >= short.capacity()
            || short.arena_crowded()
            || self.encoder.grow_pending.load(Ordering::Relaxed)
    }

    /// Unlocks the cache, grows it (waiting for the other threads to unlock it) and locks
    /// it again.
    pub(super) fn make_room(&mut self) {
        let shared = self.shared.take().expect("a locked cache");
        self.local.inserts.report_to(&shared);
        drop(shared);
        self.shared = Some(self.encoder.cache_with_room(self.wanted, false));
    }
}

impl Encoder {
    /// Runs `f` with the shared cache, sized for `text_len` more bytes of text, and for
    /// `expected_len` bytes in all if that is more (the whole of a job the text is part of),
    /// and this thread's scratch space.
    pub(super) fn with_cache<R>(&self, text_len: usize, expected_len: usize, f: impl FnOnce(&mut Cache) -> R) -> R {
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
    pub(super) fn cache_with_room(&self, wanted: usize, with_vocabulary: bool) -> RwLockReadGuard<'_, PreTokenCache> {
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
    pub(super) fn grow_cache(&self, wanted: usize) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::testing::*;

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
}
