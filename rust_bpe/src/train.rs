//! Byte-level BPE training with CS336 semantics.
//!
//! 1. Count pre-tokens: the corpus is cut into chunks at places where no pre-token or
//!    special token crosses, and the chunks are counted in parallel.
//! 2. Merge: the most frequent pair of adjacent tokens becomes a new token, ties going to
//!    the lexicographically greater pair of byte strings. Each merge touches only the
//!    words that contain its pair (an index pair -> words) and a lazy max-heap holds the
//!    pair counts, so no merge recounts the corpus.
//!
//! The result does not depend on the thread count or on where chunks are cut: the counts
//! are exact sums and the choice of each merge depends only on them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use rayon::prelude::*;
use rustc_hash::{FxBuildHasher, FxHashMap};

use crate::error::BpeError;
pub use crate::input::Input;
use crate::input::{read_ahead, Chunks, Source};
use crate::packed_table::{hash, PackedTable};
use crate::pretokenize::{pack_at, unpack, Pattern, Piece, SpecialTokens, MAX_PACKED, PATTERN_NAMES};
use crate::tokenizer::Tokenizer;

#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// 256 byte tokens + special tokens + merges.
    pub vocab_size: u64,
    pub special_tokens: Vec<String>,
    pub pattern: Pattern,
    /// 0 means all cores.
    pub threads: usize,
    /// Refuse input that is not UTF-8 instead of replacing the bad bytes with U+FFFD.
    pub strict_utf8: bool,
}

#[derive(Clone, Debug, Default)]
pub struct TrainReport {
    pub bytes_read: u64,
    pub invalid_utf8_bytes: u64,
    pub pretokens: u64,
    pub unique_pretokens: u64,
    pub merges_requested: u64,
    pub merges_learned: u64,
    pub count_seconds: f64,
    pub merge_seconds: f64,
}

/// What training reports as it goes; the callback returns false to stop training.
#[derive(Clone, Copy, Debug)]
pub enum Progress {
    Counting { bytes_done: u64, bytes_total: Option<u64> },
    Merging { done: u64, total: u64 },
}

pub const MAX_VOCAB_SIZE: u64 = 1 << 31;

/// Counts of distinct pre-tokens: short ones keyed by their packed bytes, long ones by bytes.
#[derive(Default)]
pub struct WordCounts {
    short: PackedTable<u64>,
    long: HashMap<Box<[u8]>, u64, FxBuildHasher>,
}

impl WordCounts {
    pub fn len(&self) -> usize {
        self.short.len() + self.long.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts the pre-tokens `bytes[start..end]` of `ranges` (prefetching first, see PackedTable).
    #[inline(never)]
    fn add(&mut self, bytes: &[u8], ranges: &[(usize, usize)]) {
        let mut keys = [(0u128, 0u64); BATCH];
        for (key, &(start, end)) in keys.iter_mut().zip(ranges) {
            if end - start <= MAX_PACKED {
                let packed = pack_at(bytes, start, end);
                let h = hash(packed);
                self.short.prefetch(h);
                *key = (packed, h);
            }
        }
        for (&(key, h), &(start, end)) in keys.iter().zip(ranges) {
            if end - start <= MAX_PACKED {
                *self.short.entry(key, h) += 1;
            } else {
                let word = &bytes[start..end];
                match self.long.get_mut(word) {
                    Some(c) => *c += 1,
                    None => {
                        self.long.insert(word.into(), 1);
                    }
                }
            }
        }
    }

    fn absorb(&mut self, other: WordCounts) {
        for (key, count) in other.short.iter() {
            *self.short.entry(key, hash(key)) += count;
        }
        for (word, count) in other.long {
            *self.long.entry(word).or_insert(0) += count;
        }
    }

    /// Every pre-token with its count.
    pub fn into_words(self) -> impl Iterator<Item = (Vec<u8>, u64)> {
        let short: Vec<(u128, u64)> = self.short.iter().collect();
        short.into_iter().map(|(k, c)| (unpack(k), c)).chain(self.long.into_iter().map(|(w, c)| (w.into_vec(), c)))
    }
}

impl FromIterator<(Vec<u8>, u64)> for WordCounts {
    fn from_iter<I: IntoIterator<Item = (Vec<u8>, u64)>>(iter: I) -> WordCounts {
        let mut counts = WordCounts::default();
        for (word, count) in iter {
            for _ in 0..count {
                counts.add(&word, &[(0, word.len())]);
            }
        }
        counts
    }
}

pub fn train(
    inputs: &[Input],
    options: &TrainOptions,
    progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<(Tokenizer, TrainReport), BpeError> {
    let specials = SpecialTokens::new(&options.special_tokens)?;
    let floor = 256 + options.special_tokens.len() as u64;
    if options.vocab_size < floor || options.vocab_size > MAX_VOCAB_SIZE {
        return Err(BpeError::InvalidVocabSize(format!(
            "vocab size {} is out of range: it must be at least {floor} (256 bytes + {} special tokens) and at most 2^31",
            options.vocab_size,
            options.special_tokens.len()
        )));
    }
    if inputs.is_empty() {
        return Err(BpeError::EmptyCorpus("no input files".into()));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.threads)
        .build()
        .map_err(|e| BpeError::InvalidArgument(format!("cannot start {} threads: {e}", options.threads)))?;
    let mut report = TrainReport { merges_requested: options.vocab_size - floor, ..Default::default() };

    let started = Instant::now();
    let coverage_before = options.pattern.coverage();
    let counts = count_pretokens(&pool, inputs, options, &specials, &mut report, progress)?;
    report.unique_pretokens = counts.len() as u64;
    report.count_seconds = started.elapsed().as_secs_f64();
    if let Some(share) = options.pattern.mostly_unmatched_since(coverage_before) {
        return Err(BpeError::EmptyCorpus(format!(
            "the pattern matched only {:.1}% of the text, and the rest would be left out of every token: check the \
             regular expression (the pattern names are {PATTERN_NAMES}, in any case)",
            100.0 * share
        )));
    }
    if counts.is_empty() {
        return Err(BpeError::EmptyCorpus(format!(
            "the corpus is empty: {} holds no text{}",
            inputs.iter().map(Input::name).collect::<Vec<_>>().join(", "),
            if specials.is_empty() { "" } else { " outside special tokens" }
        )));
    }

    let started = Instant::now();
    let (mut vocab, merges) = learn_merges(counts, report.merges_requested, progress)?;
    report.merges_learned = merges.len() as u64;
    report.merge_seconds = started.elapsed().as_secs_f64();

    let first_special = vocab.len() as u32;
    let special_tokens: Vec<(String, u32)> =
        options.special_tokens.iter().enumerate().map(|(i, s)| (s.clone(), first_special + i as u32)).collect();
    vocab.extend(options.special_tokens.iter().map(|s| s.as_bytes().to_vec()));
    let tokenizer = Tokenizer::new(vocab, merges, special_tokens, options.pattern.clone())?;
    Ok((tokenizer, report))
}

// ---------------------------------------------------------------------------------------
// Counting pre-tokens

/// Bytes per chunk counted by one thread at a time.
const CHUNK_BYTES: usize = 1 << 20;

fn count_pretokens(
    pool: &rayon::ThreadPool,
    inputs: &[Input],
    options: &TrainOptions,
    specials: &SpecialTokens,
    report: &mut TrainReport,
    progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<WordCounts, BpeError> {
    let threads = pool.current_num_threads();
    let per_thread: Vec<Mutex<WordCounts>> = (0..=threads).map(|_| Mutex::new(WordCounts::default())).collect();
    let sources = inputs.iter().map(Source::open).collect::<Result<Vec<_>, _>>()?;
    let total = sources.iter().map(Source::size).sum::<Option<u64>>();
    for source in sources {
        let name = source.name().to_string();
        let target = source.size().map_or(CHUNK_BYTES, |len| (len as usize / (threads * 8)).clamp(64 << 10, CHUNK_BYTES));
        let chunks = read_ahead(Chunks::new(source, options.pattern.clone(), specials.clone()), target, threads * 4);
        let mut batch: Vec<(u64, Vec<u8>)> = Vec::with_capacity(threads * 4);
        let mut at_end = false;
        while !at_end {
            // As many chunks as there are places in a batch, or as came while waiting.
            while batch.len() < threads * 4 {
                match chunks.next_or_wait() {
                    Ok(Some(chunk)) => batch.push(chunk),
                    Ok(None) => {
                        at_end = true;
                        break;
                    }
                    Err(Some(e)) => return Err(e),
                    Err(None) if batch.is_empty() => {
                        if !progress(Progress::Counting { bytes_done: report.bytes_read, bytes_total: total }) {
                            return Err(BpeError::Interrupted);
                        }
                    }
                    Err(None) => break,
                }
            }
            if batch.is_empty() {
                continue;
            }
            let results: Vec<Result<(u64, u64), BpeError>> = pool.install(|| {
                batch
                    .par_iter()
                    .map(|(offset, bytes)| {
                        let slot = rayon::current_thread_index().unwrap_or(threads).min(threads);
                        let mut counts = per_thread[slot].lock().expect("count lock");
                        count_chunk(bytes, options, specials, &mut counts).map_err(|bad| invalid_utf8_error(&name, offset + bad as u64))
                    })
                    .collect()
            });
            for result in results {
                let (pretokens, invalid) = result?;
                report.pretokens += pretokens;
                report.invalid_utf8_bytes += invalid;
            }
            for (_, bytes) in batch.drain(..) {
                report.bytes_read += bytes.len() as u64;
                chunks.give_back(bytes);
            }
            if !progress(Progress::Counting { bytes_done: report.bytes_read, bytes_total: total }) {
                return Err(BpeError::Interrupted);
            }
        }
    }
    let mut maps: Vec<WordCounts> = per_thread.into_iter().map(|m| m.into_inner().expect("count lock")).collect();
    maps.sort_by_key(|m| std::cmp::Reverse(m.len()));
    let mut merged = maps.remove(0);
    for map in maps {
        merged.absorb(map);
    }
    Ok(merged)
}

fn invalid_utf8_error(name: &str, at: u64) -> BpeError {
    BpeError::InvalidUtf8(format!("{name}: invalid UTF-8 at byte {at} (without --strict the bad bytes are replaced)"))
}

/// Counts the pre-tokens of one chunk; returns (pre-tokens, invalid UTF-8 bytes replaced),
/// or with `strict_utf8` the offset of the first invalid byte.
fn count_chunk(bytes: &[u8], options: &TrainOptions, specials: &SpecialTokens, counts: &mut WordCounts) -> Result<(u64, u64), usize> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok((count_text(text, &options.pattern, specials, counts), 0)),
        Err(e) if options.strict_utf8 => Err(e.valid_up_to()),
        Err(_) => {
            let mut text = String::with_capacity(bytes.len() + 16);
            let mut invalid = 0u64;
            for chunk in bytes.utf8_chunks() {
                text.push_str(chunk.valid());
                if !chunk.invalid().is_empty() {
                    invalid += chunk.invalid().len() as u64;
                    text.push(char::REPLACEMENT_CHARACTER);
                }
            }
            Ok((count_text(&text, &options.pattern, specials, counts), invalid))
        }
    }
}

/// Pre-tokens counted together.
const BATCH: usize = 16;

fn count_text(text: &str, pattern: &Pattern, specials: &SpecialTokens, counts: &mut WordCounts) -> u64 {
    let mut n = 0u64;
    specials.for_each_piece(text, |piece| {
        if let Piece::Text(piece) = piece {
            let bytes = piece.as_bytes();
            let mut ranges = [(0usize, 0usize); BATCH];
            let mut splits = pattern.splits(piece);
            loop {
                let got = splits.fill(&mut ranges, 0);
                n += got as u64;
                counts.add(bytes, &ranges[..got]);
                if got < BATCH {
                    break;
                }
            }
        }
    });
    n
}

// ---------------------------------------------------------------------------------------
// Merging

#[inline(always)]
fn pair_key(a: u32, b: u32) -> u64 {
    ((a as u64) << 32) | b as u64
}

#[inline(always)]
fn pair_of(key: u64) -> (u32, u32) {
    ((key >> 32) as u32, key as u32)
}

/// Distinct pre-tokens as sequences of token ids, stored end to end.
struct Words {
    symbols: Vec<u32>,
    start: Vec<usize>,
    len: Vec<u32>,
    count: Vec<i64>,
}

/// A max-heap of (count, pair) whose order breaks count ties by the pair's bytes.
struct PairHeap {
    entries: Vec<(i64, u64)>,
}

impl PairHeap {
    #[inline]
    fn above(x: (i64, u64), y: (i64, u64), vocab: &[Vec<u8>]) -> bool {
        if x.0 != y.0 {
            return x.0 > y.0;
        }
        let ((xa, xb), (ya, yb)) = (pair_of(x.1), pair_of(y.1));
        (&vocab[xa as usize], &vocab[xb as usize]) > (&vocab[ya as usize], &vocab[yb as usize])
    }

    fn push(&mut self, entry: (i64, u64), vocab: &[Vec<u8>]) {
        self.entries.push(entry);
        let mut i = self.entries.len() - 1;
        while i > 0 {
            let parent = (i - 1) / 2;
            if !Self::above(self.entries[i], self.entries[parent], vocab) {
                break;
            }
            self.entries.swap(i, parent);
            i = parent;
        }
    }

    fn pop(&mut self, vocab: &[Vec<u8>]) -> Option<(i64, u64)> {
        if self.entries.is_empty() {
            return None;
        }
        let top = self.entries.swap_remove(0);
        let n = self.entries.len();
        let mut i = 0;
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut best = i;
            if l < n && Self::above(self.entries[l], self.entries[best], vocab) {
                best = l;
            }
            if r < n && Self::above(self.entries[r], self.entries[best], vocab) {
                best = r;
            }
            if best == i {
                break;
            }
            self.entries.swap(i, best);
            i = best;
        }
        Some(top)
    }

    fn from_counts(counts: &FxHashMap<u64, i64>, vocab: &[Vec<u8>]) -> PairHeap {
        let mut heap = PairHeap { entries: Vec::with_capacity(counts.len()) };
        for (&pair, &count) in counts {
            if count > 0 {
                heap.push((count, pair), vocab);
            }
        }
        heap
    }
}

/// Learns up to `num_merges` merges; returns the vocabulary (bytes, then merged tokens)
/// and the merges.
pub fn learn_merges(counts: WordCounts, num_merges: u64, progress: &mut dyn FnMut(Progress) -> bool) -> Result<(Vec<Vec<u8>>, Vec<(u32, u32)>), BpeError> {
    let mut vocab: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    let mut merges = Vec::new();

    let mut words = Words { symbols: Vec::new(), start: Vec::with_capacity(counts.len()), len: Vec::new(), count: Vec::new() };
    for (word, count) in counts.into_words() {
        words.start.push(words.symbols.len());
        words.len.push(word.len() as u32);
        words.count.push(count as i64);
        words.symbols.extend(word.iter().map(|&b| b as u32));
    }
    let mut pair_counts: FxHashMap<u64, i64> = FxHashMap::default();
    let mut where_pair: FxHashMap<u64, Vec<u32>> = FxHashMap::default();
    for w in 0..words.start.len() {
        let syms = &words.symbols[words.start[w]..words.start[w] + words.len[w] as usize];
        for pair in syms.windows(2) {
            let key = pair_key(pair[0], pair[1]);
            *pair_counts.entry(key).or_insert(0) += words.count[w];
            let list = where_pair.entry(key).or_default();
            if list.last() != Some(&(w as u32)) {
                list.push(w as u32);
            }
        }
    }
    let mut heap = PairHeap::from_counts(&pair_counts, &vocab);
    let mut seen_in_merge = vec![0u32; words.start.len()];
    let mut touched: Vec<u64> = Vec::new();

    while (merges.len() as u64) < num_merges {
        // The best pair: lazily drop entries whose count went down since they were pushed.
        let (count, key) = loop {
            let Some((count, key)) = heap.pop(&vocab) else { return Ok((vocab, merges)) };
            let actual = pair_counts.get(&key).copied().unwrap_or(0);
            if actual == count {
                break (count, key);
            }
            if actual > 0 {
                heap.push((actual, key), &vocab);
            }
        };
        if count <= 0 {
            break;
        }
        let (a, b) = pair_of(key);
        let new = vocab.len() as u32;
        vocab.push([vocab[a as usize].as_slice(), vocab[b as usize].as_slice()].concat());
        merges.push((a, b));
        let stamp = merges.len() as u32;

        let list = where_pair.remove(&key).unwrap_or_default();
        for &w in &list {
            let w = w as usize;
            if seen_in_merge[w] == stamp {
                continue;
            }
            seen_in_merge[w] = stamp;
            let c = words.count[w];
            let s = words.start[w];
            let l = words.len[w] as usize;
            let syms = &mut words.symbols[s..s + l];
            let mut add = |pair: u64, delta: i64| {
                let entry = pair_counts.entry(pair).or_insert(0);
                *entry += delta;
                if delta > 0 {
                    touched.push(pair);
                    let list = where_pair.entry(pair).or_default();
                    if list.last() != Some(&(w as u32)) {
                        list.push(w as u32);
                    }
                }
            };
            let (mut read, mut write) = (0, 0);
            while read < l {
                if read + 1 < l && syms[read] == a && syms[read + 1] == b {
                    add(key, -c);
                    if write > 0 {
                        add(pair_key(syms[read - 1], a), -c);
                        add(pair_key(syms[write - 1], new), c);
                    }
                    if read + 2 < l {
                        let next = syms[read + 2];
                        let next_merges_too = next == a && read + 3 < l && syms[read + 3] == b;
                        if !next_merges_too {
                            add(pair_key(b, next), -c);
                            add(pair_key(new, next), c);
                        }
                    }
                    syms[write] = new;
                    read += 2;
                } else {
                    syms[write] = syms[read];
                    read += 1;
                }
                write += 1;
            }
            words.len[w] = write as u32;
        }
        pair_counts.remove(&key);
        touched.sort_unstable();
        touched.dedup();
        for &pair in &touched {
            let count = pair_counts[&pair];
            if count > 0 {
                heap.push((count, pair), &vocab);
            }
        }
        touched.clear();
        if merges.len() % 64 == 0 || merges.len() as u64 == num_merges {
            if !progress(Progress::Merging { done: merges.len() as u64, total: num_merges }) {
                return Err(BpeError::Interrupted);
            }
        }
    }
    Ok((vocab, merges))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(words: &[(&str, u64)]) -> WordCounts {
        words.iter().map(|(w, c)| (w.as_bytes().to_vec(), *c)).collect()
    }

    fn merged_tokens(words: &[(&str, u64)], n: u64) -> Vec<String> {
        let (vocab, merges) = learn_merges(counts(words), n, &mut |_| true).unwrap();
        merges.iter().enumerate().map(|(i, _)| String::from_utf8_lossy(&vocab[256 + i]).into_owned()).collect()
    }

    #[test]
    fn most_frequent_pair_first_ties_to_greater_bytes() {
        // "st" 6 times, "ne" 3+3, "we" 3 ... the classic CS336 example.
        let words = [("low", 5), ("lower", 2), ("widest", 3), ("newest", 6)];
        assert_eq!(merged_tokens(&words, 6), vec!["st", "est", "ow", "low", "west", "ne"]);
    }

    #[test]
    fn overlapping_pairs_merge_left_to_right() {
        // "aaaa" -> "aa aa" -> "aaaa"; "aaa" -> "aa a".
        assert_eq!(merged_tokens(&[("aaaa", 1), ("aaa", 1)], 3), vec!["aa", "aaaa", "aaa"]);
    }

    #[test]
    fn stops_when_no_pairs_are_left() {
        assert_eq!(merged_tokens(&[("ab", 1), ("c", 9)], 10), vec!["ab"]);
    }
}
