//! tiktoken's merge of a very long pre-token (a file of one letter, or of letters with no
//! space) in linear time and in memory of one bit per byte besides its ids, by the
//! backtracking of GitHub's `bpe` crate instead of a heap over every byte.
//!
//! A token is reachable when the merge of its own bytes gives it back. A sequence of tokens
//! is the merge of the bytes they spell exactly when every token is reachable and every
//! two neighbours are compatible (the merge of their two tokens' bytes joined gives those
//! two tokens): the merge of the whole runs each token's own merges, interleaved by rank,
//! and two neighbours' parts meet across their boundary in the same states as in the merge
//! of the two alone. So there is one such sequence, and the encoder searches for it: the
//! longest reachable token at each position, a shorter one when it does not fit the token
//! before, and back one token when none fits (the position is then marked dead: whatever
//! reaches it reaches it with the same tokens).
//!
//! Whether two tokens are compatible is decided by undoing their merges from the last: at
//! each step the two parts that meet across the boundary must not join into a token of
//! lower rank than the merge that ends the step. That holds where each token's own merges
//! come in order of rank (every token of a trained vocabulary); for a token whose merges do
//! not, the two tokens' bytes are merged instead.

use rustc_hash::FxHashMap;

use crate::encode::TokenId;
use super::pair_ranks::PairRanks;

const NONE: u32 = u32::MAX;

pub(crate) struct Backtracking {
    /// Bytes of each token; empty for one that is not reachable (or special, or unused).
    bytes: Vec<Box<[u8]>>,
    /// What the search asks of each token, together.
    tokens: Vec<TokenInfo>,
    /// The reachable tokens, to find the longest at the start of a text.
    trie: Trie,
    max_len: usize,
}

impl Backtracking {
    /// `vocab`: the bytes of each id; `is_token(id)`: whether the encoder merges into it (not
    /// a special token, not an unused id, not another id's bytes again); `byte_ids`: the
    /// token of each byte. None if a token is longer than 64 KiB (a length this keeps in
    /// 16 bits).
    pub(crate) fn new(vocab: &[Vec<u8>], is_token: impl Fn(u32) -> bool, byte_ids: &[u32; 256], pairs: &PairRanks) -> Option<Backtracking> {
        if vocab.iter().any(|token| token.len() > u16::MAX as usize) {
            return None;
        }
        let n = vocab.len();
        let mut ids: FxHashMap<&[u8], u32> = FxHashMap::default();
        let mut bytes: Vec<Box<[u8]>> = vec![Box::default(); n];
        let mut split = vec![(NONE, NONE); n];
        let mut in_order = vec![false; n];
        for (id, token) in vocab.iter().enumerate() {
            let id = id as u32;
            if !is_token(id) || token.is_empty() {
                continue;
            }
            let (parts, last, ordered) = merge_recording(token, byte_ids, pairs);
            if parts.len() == 1 && parts[0] == id {
                bytes[id as usize] = token.as_slice().into();
                split[id as usize] = last.unwrap_or((id, id));
                in_order[id as usize] = ordered;
                ids.insert(token, id);
            }
        }
        let tokens = (0..n)
            .map(|id| TokenInfo {
                left: split[id].0,
                right: split[id].1,
                shorter: (1..bytes[id].len()).rev().find_map(|len| ids.get(&bytes[id][..len]).copied()).unwrap_or(NONE),
                len: bytes[id].len() as u16,
                in_order: in_order[id],
            })
            .collect();
        let trie = Trie::new(&bytes);
        let max_len = bytes.iter().map(|b| b.len()).max().unwrap_or(1);
        Some(Backtracking { bytes, tokens, trie, max_len })
    }

    /// The reachable tokens whose own merges come in order of rank, with their bytes.
    #[cfg(test)]
    pub(crate) fn tokens_in_order(&self) -> Vec<(u32, &[u8])> {
        (0..self.bytes.len()).filter(|&t| self.tokens[t].in_order).map(|t| (t as u32, &self.bytes[t][..])).collect()
    }

    #[inline(always)]
    fn len(&self, token: u32) -> usize {
        self.tokens[token as usize].len as usize
    }

    /// The longest reachable token that `text` (not empty) starts with.
    #[inline(always)]
    fn longest_at(&self, text: &[u8]) -> u32 {
        self.trie.longest_at(&text[..text.len().min(self.max_len)])
    }

    /// Whether the merge of `left`'s and `right`'s bytes joined gives `left`, `right`.
    #[inline(always)]
    fn compatible(&self, left: u32, right: u32, pairs: &PairRanks, byte_ids: &[u32; 256]) -> bool {
        if self.tokens[left as usize].in_order && self.tokens[right as usize].in_order {
            self.boundary_holds(left, right, pairs)
        } else {
            let joined = [&self.bytes[left as usize][..], &self.bytes[right as usize]].concat();
            merge_recording(&joined, byte_ids, pairs).0 == [left, right]
        }
    }

    /// `compatible` for two tokens whose merges come in order of rank: undoes the merges of
    /// the two, the later (higher rank; the right one's on a tie, as the left one's goes
    /// first) at each step, and checks that the two parts meeting across the boundary do not
    /// join into a token the merge would have taken before the step's merge: of lower rank
    /// than a merge on the left, of lower or equal rank than one on the right (the boundary
    /// is left of it).
    pub(crate) fn boundary_holds(&self, mut left: u32, mut right: u32, pairs: &PairRanks) -> bool {
        let mut limit = NONE;
        loop {
            if pairs.get(left, right) < limit {
                return false;
            }
            if left > right {
                limit = left;
                left = self.tokens[left as usize].right;
                if left == limit {
                    // A byte, there from the start.
                    limit = right + 1;
                    right = self.tokens[right as usize].left;
                    if right + 1 == limit {
                        return true;
                    }
                }
            } else {
                limit = right + 1;
                right = self.tokens[right as usize].left;
                if right + 1 == limit {
                    limit = left;
                    left = self.tokens[left as usize].right;
                    if left == limit {
                        return true;
                    }
                }
            }
        }
    }

    /// Appends the ids of `piece` (not empty) to `out`. False, with `out` as it was, if the
    /// search found no sequence (which the argument of the module's doc rules out).
    pub(crate) fn encode<T: TokenId>(&self, piece: &[u8], pairs: &PairRanks, byte_ids: &[u32; 256], out: &mut Vec<T>) -> bool {
        let start = out.len();
        let n = piece.len();
        // Bit p set while position p may still end a token.
        let mut alive = vec![u64::MAX; (n + 1).div_ceil(64)];
        let mut pos = 0;
        let mut next = self.longest_at(piece);
        loop {
            let mut token = next;
            let last = (out.len() > start).then(|| out[out.len() - 1].to_id());
            loop {
                let end = pos + self.len(token);
                if alive[end / 64] >> (end % 64) & 1 == 1 && last.is_none_or(|last| self.compatible(last, token, pairs, byte_ids)) {
                    out.push(T::from_id(token));
                    pos = end;
                    if pos == n {
                        return true;
                    }
                    next = self.longest_at(&piece[pos..]);
                    break;
                }
                let shorter = self.tokens[token as usize].shorter;
                if shorter != NONE {
                    token = shorter;
                    continue;
                }
                let Some(last) = last else {
                    out.truncate(start);
                    return false;
                };
                alive[pos / 64] &= !(1 << (pos % 64));
                out.pop();
                pos -= self.len(last);
                next = last;
                break;
            }
        }
    }
}

/// tiktoken's merge of `bytes` (lowest rank first, leftmost on ties), in quadratic time:
/// the ids, the last two parts joined (None if none was), and whether the merges came in
/// order of rank.
pub(crate) fn merge_recording(bytes: &[u8], byte_ids: &[u32; 256], pairs: &PairRanks) -> (Vec<u32>, Option<(u32, u32)>, bool) {
    let mut parts: Vec<u32> = bytes.iter().map(|&b| byte_ids[b as usize]).collect();
    let (mut last, mut in_order, mut last_rank) = (None, true, 0);
    loop {
        let mut best = (NONE, 0);
        for (i, w) in parts.windows(2).enumerate() {
            let rank = pairs.get(w[0], w[1]);
            if rank < best.0 {
                best = (rank, i);
            }
        }
        let (rank, at) = best;
        if rank == NONE {
            return (parts, last, in_order);
        }
        in_order &= rank >= last_rank;
        last_rank = rank;
        last = Some((parts[at], parts[at + 1]));
        parts[at] = rank;
        parts.remove(at + 1);
    }
}

#[derive(Clone, Copy)]
#[repr(align(16))]
struct TokenInfo {
    /// The two tokens whose merge makes a reachable token last; (t, t) for a byte.
    left: u32,
    right: u32,
    /// The longest reachable token that is a proper prefix of this one; NONE if none.
    shorter: u32,
    len: u16,
    /// Whether the token's own merges come in order of rank (see the module's doc).
    in_order: bool,
}

/// A double-array trie of byte strings: the child of the node in cell `s` by byte `b` is in
/// cell `cells[s].base + b`, if that cell's `parent` is `s`.
struct Trie {
    cells: Vec<Cell>,
}

#[derive(Clone, Copy)]
struct Cell {
    base: u32,
    parent: u32,
    /// The token spelled by the path to this node; NONE if none.
    token: u32,
}

const ROOT: u32 = 0;

impl Trie {
    /// The trie of `tokens[id]` (empty ones left out) for each id.
    fn new(tokens: &[Box<[u8]>]) -> Trie {
        let mut sorted: Vec<u32> = (0..tokens.len() as u32).filter(|&id| !tokens[id as usize].is_empty()).collect();
        sorted.sort_unstable_by(|&a, &b| tokens[a as usize].cmp(&tokens[b as usize]));
        let empty = Cell { base: 0, parent: NONE, token: NONE };
        let mut cells = vec![Cell { parent: ROOT, ..empty }];
        // Cells below this one are all taken.
        let mut first_free = 1usize;
        // (cell, depth, the range of `sorted` below the node), placed but not yet given children.
        let mut pending = vec![(ROOT, 0usize, 0..sorted.len())];
        let mut labels: Vec<(u8, std::ops::Range<usize>)> = Vec::new();
        while let Some((cell, depth, range)) = pending.pop() {
            labels.clear();
            let mut at = range.start;
            if at < range.end && tokens[sorted[at] as usize].len() == depth {
                cells[cell as usize].token = sorted[at];
                at += 1;
            }
            while at < range.end {
                let label = tokens[sorted[at] as usize][depth];
                let end = at + sorted[at..range.end].partition_point(|&id| tokens[id as usize][depth] == label);
                labels.push((label, at..end));
                at = end;
            }
            if labels.is_empty() {
                continue;
            }
            while first_free < cells.len() && cells[first_free].parent != NONE {
                first_free += 1;
            }
            let lowest = labels[0].0 as usize;
            let mut base = first_free.saturating_sub(lowest).max(1);
            loop {
                let fits = labels.iter().all(|(label, _)| cells.get(base + *label as usize).is_none_or(|c| c.parent == NONE));
                if fits {
                    break;
                }
                base += 1;
            }
            if cells.len() < base + 256 {
                cells.resize(base + 256, empty);
            }
            cells[cell as usize].base = base as u32;
            for (label, below) in labels.drain(..) {
                let child = base + label as usize;
                cells[child].parent = cell;
                pending.push((child as u32, depth + 1, below));
            }
        }
        Trie { cells }
    }

    /// The longest token that `text` starts with; NONE if none.
    #[inline(always)]
    fn longest_at(&self, text: &[u8]) -> u32 {
        let (mut node, mut found) = (ROOT, NONE);
        for &b in text {
            let child = self.cells[node as usize].base + b as u32;
            let cell = self.cells[child as usize];
            if cell.parent != node {
                break;
            }
            node = child;
            if cell.token != NONE {
                found = cell.token;
            }
        }
        found
    }
}
