//! Counting pre-tokens: the table of pre-token counts (`WordCounts`), and the corpus cut
//! into chunks at safe cuts that the threads count apart and then sum.

use super::*;

/// Counts of distinct pre-tokens: short ones keyed by their packed bytes, long ones by bytes.
#[derive(Default)]
pub struct WordCounts {
    pub(super) short: PackedTable<u64>,
    pub(super) long: HashMap<Box<[u8]>, u64, FxBuildHasher>,
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
    pub(super) fn add(&mut self, bytes: &[u8], ranges: &[(usize, usize)]) {
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

    pub(super) fn absorb(&mut self, other: WordCounts) {
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

/// Bytes per chunk counted by one thread at a time.
pub(super) const CHUNK_BYTES: usize = 1 << 20;

pub(super) fn count_pretokens(
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

pub(super) fn invalid_utf8_error(name: &str, at: u64) -> BpeError {
    BpeError::InvalidUtf8(format!("{name}: invalid UTF-8 at byte {at} (without --strict the bad bytes are replaced)"))
}

/// Counts the pre-tokens of one chunk; returns (pre-tokens, invalid UTF-8 bytes replaced),
/// or with `strict_utf8` the offset of the first invalid byte.
pub(super) fn count_chunk(bytes: &[u8], options: &TrainOptions, specials: &SpecialTokens, counts: &mut WordCounts) -> Result<(u64, u64), usize> {
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
pub(super) const BATCH: usize = 16;

pub(super) fn count_text(text: &str, pattern: &Pattern, specials: &SpecialTokens, counts: &mut WordCounts) -> u64 {
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
