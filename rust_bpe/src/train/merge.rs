//! The merge loop: the most frequent pair becomes a token, each merge touching only the
//! words that hold its pair, with a lazy max-heap of the pair counts.

use super::*;

#[inline(always)]
pub(super) fn pair_key(a: u32, b: u32) -> u64 {
    ((a as u64) << 32) | b as u64
}

#[inline(always)]
pub(super) fn pair_of(key: u64) -> (u32, u32) {
    ((key >> 32) as u32, key as u32)
}

/// Distinct pre-tokens as sequences of token ids, stored end to end.
pub(super) struct Words {
    pub(super) symbols: Vec<u32>,
    pub(super) start: Vec<usize>,
    pub(super) len: Vec<u32>,
    pub(super) count: Vec<i64>,
}

/// A max-heap of (count, pair) whose order breaks count ties by the pair's bytes.
pub(super) struct PairHeap {
    pub(super) entries: Vec<(i64, u64)>,
}

impl PairHeap {
    #[inline]
    pub(super) fn above(x: (i64, u64), y: (i64, u64), vocab: &[Vec<u8>]) -> bool {
        if x.0 != y.0 {
            return x.0 > y.0;
        }
        let ((xa, xb), (ya, yb)) = (pair_of(x.1), pair_of(y.1));
        (&vocab[xa as usize], &vocab[xb as usize]) > (&vocab[ya as usize], &vocab[yb as usize])
    }

    pub(super) fn push(&mut self, entry: (i64, u64), vocab: &[Vec<u8>]) {
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

    pub(super) fn pop(&mut self, vocab: &[Vec<u8>]) -> Option<(i64, u64)> {
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

    pub(super) fn from_counts(counts: &FxHashMap<u64, i64>, vocab: &[Vec<u8>]) -> PairHeap {
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
