//! Pre-token boundaries of the built-in patterns found 64 bytes at a time.
//!
//! The character classes of a block become bit masks (bit i for byte i), and each
//! pattern's rules become shifts and ands of them (`gpt2_starts`, `gpt4_starts`). The
//! bytes of a non-ASCII letter, number or other character take its class
//! (`classify_non_ascii`), so no rule starts a pre-token inside it.
//!
//! A block starts where a pre-token starts. Only the boundaries that the bytes of the
//! block decide are taken: none at its last byte (that needs the byte after it) and none
//! from the byte before its first byte of unknown class on (non-ASCII whitespace, a
//! character the block's end cuts, or under GPT-4 a non-ASCII number); the pattern's
//! scalar state machine in `pretokenize` goes on from there.

use std::marker::PhantomData;

use crate::pretokenize::{decode_utf8, gpt2_token_end, gpt4_token_end, unicode_classes, Class};

/// One bit per byte of a 64-byte block.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct Masks {
    letter: u64,
    digit: u64,
    /// `\s`: tab, line feed, vertical tab, form feed, carriage return, space.
    space: u64,
    /// ' ' alone.
    blank: u64,
    /// '\r' and '\n'.
    newline: u64,
    high: u64,
    /// The first bytes of non-ASCII characters (0xC0 and up).
    lead: u64,
    /// The other bytes of the non-ASCII characters `classify_non_ascii` classified.
    continuation: u64,
    apostrophe: u64,
    /// The letters that follow an apostrophe in a contraction: s d m t, l, v or r, e (in
    /// either case where the pattern ignores case).
    sdmt: u64,
    l: u64,
    v_or_r: u64,
    e: u64,
}

/// The masks byte by byte (any architecture; the reference for the vector versions).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
pub(crate) fn masks_portable(block: &[u8; 64], fold_case: bool) -> Masks {
    let mut m = Masks::default();
    for (i, &b) in block.iter().enumerate() {
        let bit = 1u64 << i;
        let set = |mask: &mut u64, yes: bool| {
            if yes {
                *mask |= bit
            }
        };
        let folded = if fold_case { b.to_ascii_lowercase() } else { b };
        set(&mut m.letter, b.is_ascii_alphabetic());
        set(&mut m.digit, b.is_ascii_digit());
        set(&mut m.space, matches!(b, b' ' | b'\t'..=b'\r'));
        set(&mut m.blank, b == b' ');
        set(&mut m.newline, matches!(b, b'\r' | b'\n'));
        set(&mut m.high, b >= 0x80);
        set(&mut m.lead, b >= 0xC0);
        set(&mut m.apostrophe, b == b'\'');
        set(&mut m.sdmt, matches!(folded, b's' | b'd' | b'm' | b't'));
        set(&mut m.l, folded == b'l');
        set(&mut m.v_or_r, matches!(folded, b'v' | b'r'));
        set(&mut m.e, folded == b'e');
    }
    m
}

/// The masks with AVX2, 32 bytes per instruction. Only called from functions compiled
/// with AVX2 (`fill_avx2`), into which it is inlined.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn masks_avx2(block: &[u8; 64], fold_case: bool) -> Masks {
    use std::arch::x86_64::*;
    let lo = _mm256_loadu_si256(block.as_ptr() as *const __m256i);
    let hi = _mm256_loadu_si256(block.as_ptr().add(32) as *const __m256i);
    let bits = |lo_mask: __m256i, hi_mask: __m256i| -> u64 {
        (_mm256_movemask_epi8(lo_mask) as u32 as u64) | ((_mm256_movemask_epi8(hi_mask) as u32 as u64) << 32)
    };
    let eq = |c: u8| -> u64 {
        let c = _mm256_set1_epi8(c as i8);
        bits(_mm256_cmpeq_epi8(lo, c), _mm256_cmpeq_epi8(hi, c))
    };
    // Signed comparisons: right for ASCII bytes; bytes >= 0x80 are negative and fall outside.
    let within = |x: __m256i, first: u8, last: u8| -> __m256i {
        let above = _mm256_cmpgt_epi8(x, _mm256_set1_epi8(first as i8 - 1));
        let below = _mm256_cmpgt_epi8(_mm256_set1_epi8(last as i8 + 1), x);
        _mm256_and_si256(above, below)
    };
    let case = _mm256_set1_epi8(0x20);
    let (lo_folded, hi_folded) = (_mm256_or_si256(lo, case), _mm256_or_si256(hi, case));
    let letter = bits(within(lo_folded, b'a', b'z'), within(hi_folded, b'a', b'z'));
    // Only 'x' and 'X' are 'x' once 0x20 is set.
    let eq_folded = |c: u8| -> u64 {
        let c = _mm256_set1_epi8(c as i8);
        bits(_mm256_cmpeq_epi8(lo_folded, c), _mm256_cmpeq_epi8(hi_folded, c))
    };
    let digit = bits(within(lo, b'0', b'9'), within(hi, b'0', b'9'));
    let blank = eq(b' ');
    let space = blank | bits(within(lo, b'\t', b'\r'), within(hi, b'\t', b'\r'));
    let newline = eq(b'\n') | eq(b'\r');
    let high = bits(lo, hi);
    let lead = if high == 0 {
        0
    } else {
        let above_continuation = _mm256_set1_epi8(0xBF_u8 as i8);
        high & bits(_mm256_cmpgt_epi8(lo, above_continuation), _mm256_cmpgt_epi8(hi, above_continuation))
    };
    let apostrophe = eq(b'\'');
    let mut m = Masks { letter, digit, space, blank, newline, high, lead, apostrophe, ..Masks::default() };
    if apostrophe != 0 && fold_case {
        m.sdmt = eq_folded(b's') | eq_folded(b'd') | eq_folded(b'm') | eq_folded(b't');
        m.l = eq_folded(b'l');
        m.v_or_r = eq_folded(b'v') | eq_folded(b'r');
        m.e = eq_folded(b'e');
    } else if apostrophe != 0 {
        m.sdmt = eq(b's') | eq(b'd') | eq(b'm') | eq(b't');
        m.l = eq(b'l');
        m.v_or_r = eq(b'v') | eq(b'r');
        m.e = eq(b'e');
    }
    m
}

/// The masks with AVX-512BW: the 64 bytes in one register, each class a compare into a
/// mask register. Only called from functions compiled with it (`fill_avx512`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn masks_avx512(block: &[u8; 64], fold_case: bool) -> Masks {
    use std::arch::x86_64::*;
    let bytes = _mm512_loadu_si512(block.as_ptr().cast());
    let eq = |x: __m512i, c: u8| _mm512_cmpeq_epi8_mask(x, _mm512_set1_epi8(c as i8));
    // x - first, unsigned, is at most last - first only for first..=last.
    let within = |x: __m512i, first: u8, last: u8| {
        _mm512_cmple_epu8_mask(_mm512_sub_epi8(x, _mm512_set1_epi8(first as i8)), _mm512_set1_epi8((last - first) as i8))
    };
    let folded = _mm512_or_si512(bytes, _mm512_set1_epi8(0x20));
    let letter = within(folded, b'a', b'z');
    let digit = within(bytes, b'0', b'9');
    let blank = eq(bytes, b' ');
    let space = blank | within(bytes, b'\t', b'\r');
    let newline = eq(bytes, b'\n') | eq(bytes, b'\r');
    let high = _mm512_movepi8_mask(bytes);
    let lead = if high == 0 { 0 } else { _mm512_cmpge_epu8_mask(bytes, _mm512_set1_epi8(0xC0_u8 as i8)) };
    let apostrophe = eq(bytes, b'\'');
    let mut m = Masks { letter, digit, space, blank, newline, high, lead, apostrophe, ..Masks::default() };
    if apostrophe != 0 {
        // Only 'x' and 'X' are 'x' once 0x20 is set.
        let x = if fold_case { folded } else { bytes };
        m.sdmt = eq(x, b's') | eq(x, b'd') | eq(x, b'm') | eq(x, b't');
        m.l = eq(x, b'l');
        m.v_or_r = eq(x, b'v') | eq(x, b'r');
        m.e = eq(x, b'e');
    }
    m
}

/// Puts the block's non-ASCII letters and numbers into the class masks, and takes every
/// non-ASCII character it classifies out of `high` (an other is what is in no mask). It
/// stops at non-ASCII whitespace, which the rules read byte by byte, at a non-ASCII number
/// unless `numbers` (GPT-4's rules count digits by bytes), at U+017F if `fold_case` (it
/// folds to 's', which the contraction masks know only in ASCII), and at a character the
/// block's end cuts: `high` keeps the bytes from there on.
#[inline(always)]
fn classify_non_ascii(block: &[u8; 64], m: &mut Masks, numbers: bool, fold_case: bool) {
    // The table once per block rather than `non_ascii_class` per character, which checks
    // that the table is built each time (split_speed on alice: 336-484 against 288-362 MB/s).
    let classes = unicode_classes();
    let mut leads = m.lead;
    let mut unknown = 64u32;
    while leads != 0 {
        let at = leads.trailing_zeros() as usize;
        leads &= leads - 1;
        let len = 2 + (block[at] >= 0xE0) as usize + (block[at] >= 0xF0) as usize;
        if at + len > 64 {
            unknown = at as u32;
            break;
        }
        let (cp, _) = decode_utf8(block, at);
        let class = classes[cp as usize];
        if class == Class::Space as u8 || (!numbers && class == Class::Number as u8) || (fold_case && cp == 0x17F) {
            unknown = at as u32;
            break;
        }
        let bits = ((1u64 << len) - 1) << at;
        m.continuation |= bits & !(1 << at);
        m.letter |= bits & 0u64.wrapping_sub((class == Class::Letter as u8) as u64);
        m.digit |= bits & 0u64.wrapping_sub((class == Class::Number as u8) as u64);
    }
    m.high &= u64::MAX.checked_shl(unknown).unwrap_or(0);
}

/// Bits 1..=ascii-2 of the block, where `ascii` bytes start it: a start at byte i needs
/// bytes i-1, i and i+1 (bit 0 is where the block starts, a start by definition).
#[inline(always)]
fn decided(m: &Masks) -> u64 {
    let ascii = m.high.trailing_zeros();
    if ascii < 3 {
        return 0;
    }
    ((1u64 << (ascii - 1)) - 1) & !1
}

/// bit i: byte i-1 is in x.
#[inline(always)]
fn after(x: u64) -> u64 {
    x << 1
}

/// bit i: byte i+1 is in x.
#[inline(always)]
fn before(x: u64) -> u64 {
    x >> 1
}

/// GPT-2 pre-token starts decided by the block (bit i: one starts at byte i), bit 0
/// excluded. `'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
/// starts a pre-token at byte i exactly when (each byte of a non-ASCII character having
/// its class, and whitespace being ASCII):
/// - bytes i-1 and i are both non-space and of different classes (letter, digit, other),
///   except inside a contraction such as `'ll`;
/// - byte i-1 is whitespace other than ' ' and byte i is not whitespace (a ' ' joins the
///   pre-token after it);
/// - byte i is whitespace and byte i-1 is not;
/// - bytes i-1 and i are whitespace and byte i+1 is not (`\s+(?!\S)` leaves the last
///   whitespace character of a run to the next pre-token);
/// - a contraction that starts a pre-token ends at i.
#[inline(always)]
pub(crate) fn gpt2_starts(m: &Masks) -> u64 {
    let decided = decided(m);
    if decided == 0 {
        return 0;
    }
    let other = !(m.letter | m.digit | m.space | m.high);
    let solid = m.letter | m.digit | other;
    let mut starts = (m.letter & after(m.digit | other))
        | (m.digit & after(m.letter | other))
        | (other & after(m.letter | m.digit))
        | (solid & after(m.space & !m.blank))
        | (m.space & after(solid))
        | (m.space & after(m.space) & before(solid))
        | 1;
    if m.apostrophe != 0 {
        let two = m.apostrophe & starts & before(m.sdmt);
        let three = m.apostrophe & starts & ((before(m.l) & (m.l >> 2)) | (before(m.v_or_r) & (m.e >> 2)));
        starts = (starts & !((two | three) << 1)) | (two << 2) | (three << 3);
    }
    starts & decided
}

/// GPT-4 (cl100k) pre-token starts decided by the block, bit 0 excluded.
/// `'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s`
/// each byte of a non-ASCII character having its class, and whitespace and digits being
/// ASCII:
/// - letters run together, and take along the one character before them when it starts
///   a pre-token and is neither a newline nor a digit: a ' ', a tab, or a lone other
///   character (one that neither follows another nor a ' ');
/// - digits go in threes from the start of their run;
/// - a run of other characters is one pre-token, with a ' ' before it and the newlines
///   ('\r', '\n') right after it;
/// - a run of whitespace (less the newlines an others' run took) starts a pre-token; so does
///   the character after its last newline, and its last character unless that is a
///   newline (`\s*[\r\n]`, then `\s+(?!\S)`); that last one joins letters, or others
///   when it is a ' ';
/// - an apostrophe that starts a pre-token, followed by s, d, m, t, ll, ve or re in either
///   case, is a contraction, and a pre-token starts after it.
#[inline(always)]
pub(crate) fn gpt4_starts(m: &Masks) -> u64 {
    let ascii = m.high.trailing_zeros();
    let decided = decided(m);
    if decided == 0 {
        return 0;
    }
    let other = !(m.letter | m.digit | m.space | m.high);
    // Newlines right after others belong to their pre-token: the runs of newlines
    // that a carry from an other's side clears.
    let takes_newlines = m.newline & after(other);
    let taken = m.newline & !m.newline.wrapping_add(takes_newlines);
    let white = m.space & !taken;
    // Others that start a pre-token: not after another other, nor after a ' ' (which takes them).
    let lone_start = other & !after(other) & !after(m.blank);
    // The bytes of those characters: a carry from after a lone one's first byte clears
    // the run of continuation bytes that follows it.
    let lone = lone_start | (m.continuation & !m.continuation.wrapping_add(lone_start << 1));
    let mut starts = 1
        | (m.letter & after(m.digit | m.newline | (other & !lone)))
        | (m.digit & !after(m.digit))
        | (other & after(m.letter | m.digit | (m.space & !m.blank)))
        | (white & !after(white))
        | (white & !before(white) & !m.newline);
    let mut group = m.digit & !after(m.digit);
    loop {
        group = (group << 3) & m.digit & (m.digit << 1) & (m.digit << 2);
        if group == 0 {
            break;
        }
        starts |= group;
    }
    if m.apostrophe != 0 {
        let apostrophe = m.apostrophe & lone_start;
        let two = apostrophe & before(m.sdmt);
        let three = apostrophe & ((before(m.l) & (m.l >> 2)) | (before(m.v_or_r) & (m.e >> 2)));
        starts |= (two << 2) | (three << 3);
    }
    // After a run's last newline: where whitespace without newlines follows a newline and
    // runs into a character that is not whitespace.
    let blanks = white & !m.newline;
    let mut after_newline = blanks & after(white & m.newline);
    while after_newline != 0 {
        let at = after_newline.trailing_zeros();
        let run_end = (!blanks & (u64::MAX << at)).trailing_zeros();
        if run_end >= ascii {
            // The run goes on past the block's ASCII bytes: no start from here on is decided.
            break;
        }
        if m.newline & (1 << run_end) == 0 {
            starts |= 1 << at;
        }
        after_newline &= after_newline - 1;
    }
    starts & decided
}

/// A built-in pattern's boundaries in ASCII blocks and its scalar state machine.
pub(crate) trait BlockRules {
    /// Whether contractions match in either case.
    const FOLD_CASE: bool;
    /// Whether `classify_non_ascii` puts non-ASCII numbers in the masks.
    const NON_ASCII_NUMBERS: bool;
    fn starts(m: &Masks) -> u64;
    fn token_end(bytes: &[u8], at: usize) -> usize;
}

pub(crate) struct Gpt2Rules;

impl BlockRules for Gpt2Rules {
    const FOLD_CASE: bool = false;
    const NON_ASCII_NUMBERS: bool = true;

    #[inline(always)]
    fn starts(m: &Masks) -> u64 {
        gpt2_starts(m)
    }

    #[inline(always)]
    fn token_end(bytes: &[u8], at: usize) -> usize {
        gpt2_token_end(bytes, at)
    }
}

pub(crate) struct Gpt4Rules;

impl BlockRules for Gpt4Rules {
    const FOLD_CASE: bool = true;
    const NON_ASCII_NUMBERS: bool = false;

    #[inline(always)]
    fn starts(m: &Masks) -> u64 {
        gpt4_starts(m)
    }

    #[inline(always)]
    fn token_end(bytes: &[u8], at: usize) -> usize {
        gpt4_token_end(bytes, at)
    }
}

/// The pre-tokens of a text under a built-in pattern, a batch at a time (see `fill`).
pub(crate) struct BlockSplits<'a, R> {
    bytes: &'a [u8],
    /// Where the next pre-token starts.
    start: usize,
    /// Starts found in a block and not given out yet (bit i: byte `base + i`).
    pending: u64,
    base: usize,
    /// Blocks are not tried again until here: after a non-ASCII byte or a pre-token longer
    /// than a block, which the scalar state machine reads.
    scalar_until: usize,
    avx2: bool,
    avx512: bool,
    rules: PhantomData<R>,
}

impl<'a, R: BlockRules> BlockSplits<'a, R> {
    /// `bytes` must be valid UTF-8.
    pub(crate) fn new(bytes: &'a [u8]) -> BlockSplits<'a, R> {
        #[cfg(target_arch = "x86_64")]
        let avx2 = std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("bmi1");
        #[cfg(target_arch = "x86_64")]
        let avx512 = avx2 && std::arch::is_x86_feature_detected!("avx512bw");
        #[cfg(not(target_arch = "x86_64"))]
        let (avx2, avx512) = (false, false);
        BlockSplits { bytes, start: 0, pending: 0, base: 0, scalar_until: 0, avx2, avx512, rules: PhantomData }
    }

    #[cfg(test)]
    fn portable(bytes: &'a [u8]) -> BlockSplits<'a, R> {
        BlockSplits { avx2: false, avx512: false, ..BlockSplits::new(bytes) }
    }

    #[cfg(test)]
    fn avx2_only(bytes: &'a [u8]) -> BlockSplits<'a, R> {
        BlockSplits { avx512: false, ..BlockSplits::new(bytes) }
    }

    /// Writes the (start, end) of the next pre-tokens, plus `offset`, into `out`; returns
    /// how many: all of `out` unless the text ends first.
    #[inline]
    pub(crate) fn fill(&mut self, out: &mut [(usize, usize)], offset: usize) -> usize {
        #[cfg(target_arch = "x86_64")]
        if self.avx512 {
            // SAFETY: the CPU has AVX-512BW, AVX2 and BMI1 (checked in `new`).
            return unsafe { self.fill_avx512(out, offset) };
        }
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: the CPU has AVX2 and BMI1 (checked in `new`).
            return unsafe { self.fill_avx2(out, offset) };
        }
        self.fill_with(out, offset, |block| masks_portable(block, R::FOLD_CASE))
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,bmi1")]
    unsafe fn fill_avx2(&mut self, out: &mut [(usize, usize)], offset: usize) -> usize {
        self.fill_with(out, offset, |block| unsafe { masks_avx2(block, R::FOLD_CASE) })
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx2,bmi1")]
    unsafe fn fill_avx512(&mut self, out: &mut [(usize, usize)], offset: usize) -> usize {
        self.fill_with(out, offset, |block| unsafe { masks_avx512(block, R::FOLD_CASE) })
    }

    #[inline(always)]
    fn fill_with(&mut self, out: &mut [(usize, usize)], offset: usize, masks: impl Fn(&[u8; 64]) -> Masks) -> usize {
        let bytes = self.bytes;
        let n = bytes.len();
        let (mut start, mut pending, mut filled) = (self.start, self.pending, 0);
        while filled < out.len() {
            if pending != 0 {
                let end = self.base + pending.trailing_zeros() as usize;
                out[filled] = (start + offset, end + offset);
                filled += 1;
                start = end;
                pending &= pending - 1;
                continue;
            }
            if start >= n {
                break;
            }
            if start >= self.scalar_until && start + 64 <= n {
                let block: &[u8; 64] = bytes[start..start + 64].try_into().expect("64 bytes");
                let mut m = masks(block);
                if m.high != 0 {
                    classify_non_ascii(block, &mut m, R::NON_ASCII_NUMBERS, R::FOLD_CASE);
                }
                pending = R::starts(&m);
                if pending != 0 {
                    self.base = start;
                    continue;
                }
                self.scalar_until = start + m.high.trailing_zeros() as usize + 1;
            }
            let end = R::token_end(bytes, start);
            out[filled] = (start + offset, end + offset);
            filled += 1;
            start = end;
        }
        (self.start, self.pending) = (start, pending);
        filled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar<R: BlockRules>(text: &str) -> Vec<(usize, usize)> {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut start = 0;
        while start < bytes.len() {
            let end = R::token_end(bytes, start);
            out.push((start, end));
            start = end;
        }
        out
    }

    /// Which masks a test's blocks are made with.
    #[derive(Clone, Copy)]
    enum Masker {
        Best,
        Avx2,
        Portable,
    }

    fn blocks<R: BlockRules>(text: &str, masker: Masker) -> Vec<(usize, usize)> {
        let mut splits = match masker {
            Masker::Best => BlockSplits::<R>::new(text.as_bytes()),
            Masker::Avx2 => BlockSplits::<R>::avx2_only(text.as_bytes()),
            Masker::Portable => BlockSplits::<R>::portable(text.as_bytes()),
        };
        let mut out = Vec::new();
        // Batches of odd sizes, so that a batch often ends inside a block.
        let mut batch = [(0, 0); 7];
        for round in 0.. {
            let want = 1 + round % 7;
            let got = splits.fill(&mut batch[..want], 0);
            out.extend_from_slice(&batch[..got]);
            if got < want {
                break;
            }
        }
        out
    }

    /// Blocks, with every masker, split as the state machine does.
    fn assert_blocks_split_like_the_state_machine(text: &str) {
        let gpt2 = scalar::<Gpt2Rules>(text);
        let gpt4 = scalar::<Gpt4Rules>(text);
        for masker in [Masker::Best, Masker::Avx2, Masker::Portable] {
            assert_eq!(blocks::<Gpt2Rules>(text, masker), gpt2, "gpt2 {text:?}");
            assert_eq!(blocks::<Gpt4Rules>(text, masker), gpt4, "gpt4 {text:?}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_masks_equal_portable_masks() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let mut seed = 7u64;
        for round in 0..4000 {
            let mut block = [0u8; 64];
            for b in block.iter_mut() {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                *b = (seed >> 56) as u8;
                if round % 2 == 1 {
                    let contraction_bytes = b"'sSdDmMtTlLvVrReE \n\r";
                    *b = contraction_bytes[*b as usize % contraction_bytes.len()];
                }
            }
            for fold_case in [false, true] {
                // SAFETY: AVX2 is present (checked above).
                let vector = unsafe { masks_avx2(&block, fold_case) };
                let mut portable = masks_portable(&block, fold_case);
                if portable.apostrophe == 0 {
                    (portable.sdmt, portable.l, portable.v_or_r, portable.e) = (0, 0, 0, 0);
                }
                assert_eq!(vector, portable, "{block:?}");
                if std::arch::is_x86_feature_detected!("avx512bw") {
                    // SAFETY: AVX-512BW is present.
                    assert_eq!(unsafe { masks_avx512(&block, fold_case) }, portable, "{block:?}");
                }
            }
        }
    }

    #[test]
    fn blocks_split_like_the_state_machine() {
        let alphabet = [
            "a", "B", "s", "l", "e", "v", "t", "re", " ", " ", "  ", "\n", "\t", "\r\n", "!", ".", "1", "42", "'", "'s",
            "'ll", "'ve", "'S", "'LL", "'Ve", "\r", "\x0b", "\x0c", "12345", "\n\n", " \n", "\t\n", "?!", ".\n", ",", "\x1c",
            "word ", " the",
            // Non-ASCII: letters, numbers, others (a combining mark is one) and whitespace of
            // two to four bytes.
            "é", "中", "ж", "жизнь", " Ωμέγα", "\u{10348}", "٣", "²", "\u{1d7d9}", "—", "«", "€", "\u{301}", "😀", "'\u{17f}", "\u{a0}",
            "\u{3000}", "\u{85}", "\u{2028}",
        ];
        let ascii = alphabet.iter().position(|piece| !piece.is_ascii()).expect("non-ASCII pieces");
        let mut seed = 99u64;
        for round in 0..9000 {
            let mut text = String::new();
            let pieces = 20 + round % 150;
            for _ in 0..pieces {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                // Texts of three kinds in turn: ASCII, as English is, so that blocks are
                // taken; any piece; mostly non-ASCII.
                let i = (seed >> 33) as usize % alphabet.len();
                let i = match round % 3 {
                    0 => i % ascii,
                    1 => i,
                    _ if i % 4 == 0 => i % ascii,
                    _ => ascii + i % (alphabet.len() - ascii),
                };
                text.push_str(alphabet[i]);
            }
            assert_blocks_split_like_the_state_machine(&text);
        }
    }

    #[test]
    fn long_runs_and_text_ends() {
        for text in [
            "a".repeat(200),
            " ".repeat(200),
            format!("{}x", " ".repeat(100)),
            format!("{}\n\nend", "word ".repeat(30)),
            format!("{}'ll've're's", "x".repeat(61)),
            format!("{}'LL'Ve'rE'S", "x".repeat(61)),
            "!?".repeat(100),
            "1234567890".repeat(20),
            format!("{}\n{}x", "a".repeat(40), " ".repeat(60)),
            format!("{}\n{}\nx", "a".repeat(40), " ".repeat(60)),
            format!("{}\n  {}", "a".repeat(50), "\u{a0}x".repeat(10)),
            format!("{}\n  \n", "a b".repeat(20)),
            format!("{}.\r\n\r\n  x", "a b".repeat(20)),
        ] {
            assert_blocks_split_like_the_state_machine(&text);
        }
    }
}
