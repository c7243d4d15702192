//! The loop over a text's pre-tokens, a block of them at a time: the cache slots of the
//! next block are prefetched while this one is looked up, and the misses are merged.

use super::*;

/// Pre-tokens of a text, encoded together (see `Encoder::encode_text`).
pub(super) struct Block {
    /// Where each pre-token starts and ends in the text, or (`SPECIAL`, id) for a special
    /// token.
    pub(super) ranges: [(usize, usize); BLOCK],
    /// The packed bytes of each pre-token and their hash (as `home` gives it); 0 for one too
    /// long to pack. (The `AHEAD` past the block's end, never read as keys, spare the loop
    /// that asks for the cache lines a check of its bounds.)
    pub(super) keys: [(u128, u64); BLOCK + AHEAD],
    pub(super) n: usize,
}

/// A thread's two blocks, one filling while the other waits for its cache slots.
pub(super) struct Blocks {
    pub(super) pair: Box<[Block; 2]>,
    pub(super) filling: usize,
    pub(super) waiting: bool,
}

impl Blocks {
    /// The cache's blocks (made once per thread: they are 24 KiB).
    pub(super) fn of(cache: &mut Cache) -> Blocks {
        let pair = cache.local.blocks.take().unwrap_or_else(|| Box::new([Block::new(), Block::new()]));
        Blocks { pair, filling: 0, waiting: false }
    }
}

impl Block {
    pub(super) fn new() -> Block {
        Block { ranges: [(0, 0); BLOCK], keys: [(0, 0); BLOCK + AHEAD], n: 0 }
    }

    /// Packs the keys (and asks the slots of `vocabulary`, where a pre-token missing from
    /// the cache is looked up next when the cache does not hold the vocabulary, into L2).
    #[inline(always)]
    pub(super) fn prepare(&mut self, bytes: &[u8], vocabulary: Option<&PackedTable<Cached>>) {
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
    pub(super) fn keys(&self) -> &[(u128, u64)] {
        &self.keys[..self.n]
    }
}

impl Encoder {
    /// Appends the ids of the pre-tokens of `text`, a block of them at a time: while one
    /// block is encoded, the cache slots of the block after it are asked into L2, so that
    /// by the time that block is encoded they have come from memory.
    pub(super) fn encode_text<T: TokenId>(&self, text: &str, cache: &mut Cache, out: &mut Vec<T>) {
        let mut blocks = Blocks::of(cache);
        self.push_text(&mut blocks, text.as_bytes(), text, 0, cache, out);
        self.finish(blocks, text.as_bytes(), cache, out);
    }

    /// `encode_text` of the text between special tokens, and the ids of the special tokens,
    /// through the same blocks (a text of many short documents keeps them full).
    pub(super) fn encode_pieces<T: TokenId>(&self, text: &str, specials: &SpecialTokens, ids: &[u32], cache: &mut Cache, out: &mut Vec<T>) {
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
    pub(super) fn push_text<T: TokenId>(&self, blocks: &mut Blocks, bytes: &[u8], piece: &str, offset: usize, cache: &mut Cache, out: &mut Vec<T>) {
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
    pub(super) fn push_range<T: TokenId>(&self, blocks: &mut Blocks, bytes: &[u8], start: usize, end: usize, cache: &mut Cache, out: &mut Vec<T>) {
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
    pub(super) fn prepare(&self, blocks: &mut Blocks, bytes: &[u8], cache: &Cache) {
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
    pub(super) fn rotate<T: TokenId>(&self, blocks: &mut Blocks, bytes: &[u8], cache: &mut Cache, out: &mut Vec<T>) {
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

    pub(super) fn finish<T: TokenId>(&self, mut blocks: Blocks, bytes: &[u8], cache: &mut Cache, out: &mut Vec<T>) {
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
    pub(super) fn encode_block<T: TokenId>(&self, bytes: &[u8], block: &Block, next: Option<&Block>, cache: &mut Cache, out: &mut Vec<T>) {
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
    pub(super) fn encode_other<T: TokenId>(&self, bytes: &[u8], block: &Block, i: usize, cache: &mut Cache, out: &mut Vec<T>) {
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
}

/// Writes the ids of a cached pre-token whose ids are in the arena to `dst`, which must
/// have room for them (apart from the loop over hits, to keep that loop small).
#[inline(never)]
pub(super) unsafe fn write_arena_ids<T: TokenId>(cache: &PreTokenCache, at: u32, count: usize, dst: *mut T) {
    for (k, id) in cache.arena_slice(at, count).iter().enumerate() {
        dst.add(k).write(T::from_id(id.load(std::sync::atomic::Ordering::Relaxed)));
    }
}

/// Appends the ids of a cached pre-token.
#[inline(always)]
pub(super) fn push_cached<T: TokenId>(cached: &Cached, cache: &PreTokenCache, out: &mut Vec<T>) {
    if cached.count & IN_ARENA == 0 {
        extend_ids(out, &cached.ids[..cached.count as usize]);
    } else {
        out.extend(cache.arena_ids(cached).map(T::from_id));
    }
}

pub(super) fn extend_ids<T: TokenId>(out: &mut Vec<T>, ids: &[u32]) {
    out.extend(ids.iter().map(|&id| T::from_id(id)));
}

#[cfg(test)]
mod tests {
    use crate::encode::testing::*;

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
}
