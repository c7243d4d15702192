//! Pre-tokens of more than 15 bytes: the thread's map of those met, the long tokens, and
//! the heap merge (or, past `BACKTRACK_FROM` bytes, backtracking) of the rest.

use super::*;

impl Encoder {
    /// A pre-token of more than 15 bytes: looked up in the thread's own map of those met
    /// before (a long token among them, once met) if it is not too long to be kept there,
    /// then in the long tokens, then merged.
    pub(super) fn encode_long_piece<T: TokenId>(&self, piece: &[u8], cache: &mut Cache, out: &mut Vec<T>) {
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
    pub(super) fn merge_to_ids(&self, piece: &[u8], local: &mut Scratch) {
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
    pub(super) fn merge_into(&self, piece: &[u8], parts: &mut Vec<u32>, ranks: &mut Vec<u32>) {
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
    pub(super) fn merge_very_long<T: TokenId>(&self, piece: &[u8], out: &mut Vec<T>) {
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
    pub(super) fn backtracking(&self) -> Option<&Backtracking> {
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
    pub(super) fn merge_long<T: TokenId>(&self, piece: &[u8], out: &mut Vec<T>) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::testing::*;

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
}

#[cfg(test)]
mod long_piece_tests {
    use super::*;
    use crate::encode::backtrack::merge_recording;

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
            let enc = crate::encode::testing::trained_on(&corpus, vocab_size);
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
            let enc = crate::encode::testing::trained_on(&corpus, vocab_size);
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
        let enc = crate::encode::testing::trained_on(&corpus, 1000);
        let run = String::from_utf8(draw.string(b"abcab", 3 << 20)).unwrap();
        let text = format!("the start {run} and{} the end", "a".repeat(BACKTRACK_FROM + 1));
        assert_eq!(enc.encode_ordinary(&text, None), crate::encode::testing::uncached(&enc, &text));
        let kept = SCRATCH.with(|s| s.borrow().as_ref().map(|s| (s.long.len(), s.long_bytes)));
        assert_eq!(kept, Some((0, 0)));
    }
}
