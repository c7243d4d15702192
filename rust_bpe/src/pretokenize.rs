//! Pre-tokenization: special tokens are cut out first (longest match first), then every
//! piece of text between them is split into pre-tokens by the pattern.
//!
//! The built-in patterns (`gpt2` = r50k, `gpt4` = cl100k) are hand-written state machines
//! that give exactly the splits of the regular expressions in [`GPT2_REGEX`] and
//! [`GPT4_REGEX`]; any other pattern goes through `fancy-regex` (general, slower).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use aho_corasick::{AhoCorasick, MatchKind};

use crate::ascii_blocks::{BlockSplits, Gpt2Rules, Gpt4Rules};
use crate::error::BpeError;
use crate::utf8::CodeUnit;

pub const GPT2_REGEX: &str =
    r"'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
pub const GPT4_REGEX: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";
/// tiktoken's spelling of the GPT-2 pattern (r50k, p50k), which splits as [`GPT2_REGEX`] does.
pub const TIKTOKEN_R50K_REGEX: &str = r"'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s";
/// tiktoken's o200k pattern (GPT-4o); it has no built-in splitter, so it runs as a regex.
pub const O200K_REGEX: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|\p{N}{1,3}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n/]*",
    r"|\s*[\r\n]+",
    r"|\s+(?!\S)",
    r"|\s+",
);

/// The pattern names `Pattern::parse` knows, as they are written in messages.
pub const PATTERN_NAMES: &str = "gpt2 (also r50k, p50k), gpt4 (also cl100k) and o200k";

/// How text is split into pre-tokens.
#[derive(Clone, Debug)]
pub enum Pattern {
    Gpt2,
    Gpt4,
    Custom(Box<CustomPattern>),
}

/// A regular expression, and how much of the text it has been given it matched: text no
/// pre-token covers is left out of every token.
#[derive(Clone, Debug)]
pub struct CustomPattern {
    regex: fancy_regex::Regex,
    /// Shared by the clones of a pattern (a tokenizer and its encoder).
    coverage: Arc<Coverage>,
}

#[derive(Debug, Default)]
pub(crate) struct Coverage {
    matched: AtomicU64,
    seen: AtomicU64,
}

impl Pattern {
    /// A pattern name (any case): `gpt2` (also `r50k`, `r50k_base`, `p50k`, `p50k_base`),
    /// `gpt4` (also `cl100k`, `cl100k_base`), `o200k` (also `o200k_base`); else a regular
    /// expression.
    pub fn parse(spec: &str) -> Result<Pattern, BpeError> {
        match spec.to_ascii_lowercase().as_str() {
            "gpt2" | "r50k" | "r50k_base" | "p50k" | "p50k_base" => return Ok(Pattern::Gpt2),
            "gpt4" | "cl100k" | "cl100k_base" => return Ok(Pattern::Gpt4),
            "o200k" | "o200k_base" => return Pattern::parse(O200K_REGEX),
            _ => {}
        }
        if spec == GPT2_REGEX || spec == TIKTOKEN_R50K_REGEX {
            return Ok(Pattern::Gpt2);
        }
        if spec == GPT4_REGEX {
            return Ok(Pattern::Gpt4);
        }
        if spec.is_empty() {
            return Err(BpeError::InvalidPattern("the pattern is empty".into()));
        }
        let regex = fancy_regex::Regex::new(spec).map_err(|e| BpeError::InvalidPattern(format!("{spec:?}: {e}")))?;
        Ok(Pattern::Custom(Box::new(CustomPattern { regex, coverage: Arc::default() })))
    }

    /// The name of a built-in pattern, or the regex itself.
    pub fn name(&self) -> &str {
        match self {
            Pattern::Gpt2 => "gpt2",
            Pattern::Gpt4 => "gpt4",
            Pattern::Custom(custom) => custom.regex.as_str(),
        }
    }

    /// The regular expression this pattern is equal to.
    pub fn regex(&self) -> &str {
        match self {
            Pattern::Gpt2 => GPT2_REGEX,
            Pattern::Gpt4 => GPT4_REGEX,
            Pattern::Custom(custom) => custom.regex.as_str(),
        }
    }

    /// For a regular expression: the bytes of text its pre-tokens covered, and the bytes of
    /// text it was given, in all splits so far (by this pattern and its clones). None for a
    /// built-in pattern, whose pre-tokens cover all text.
    pub fn coverage(&self) -> Option<(u64, u64)> {
        match self {
            Pattern::Custom(custom) => {
                Some((custom.coverage.matched.load(Ordering::Relaxed), custom.coverage.seen.load(Ordering::Relaxed)))
            }
            _ => None,
        }
    }

    /// For a regular expression whose pre-tokens covered less than half of the text it was
    /// given since `before` (its `coverage()` then): the share they covered.
    pub fn mostly_unmatched_since(&self, before: Option<(u64, u64)>) -> Option<f64> {
        let ((matched_before, seen_before), (matched, seen)) = (before?, self.coverage()?);
        let (matched, seen) = (matched - matched_before, seen - seen_before);
        (matched * 2 < seen).then(|| matched as f64 / seen as f64)
    }

    pub fn is_builtin(&self) -> bool {
        !matches!(self, Pattern::Custom(_))
    }

    /// Calls `emit` with each pre-token of `text`, in order; together they cover `text`.
    pub fn split<'t>(&self, text: &'t str, mut emit: impl FnMut(&'t str)) {
        self.split_ranges(text, |start, end| emit(&text[start..end]));
    }

    /// Calls `emit(start, end)` with the byte range of each pre-token of `text`, in order.
    #[inline]
    pub fn split_ranges(&self, text: &str, mut emit: impl FnMut(usize, usize)) {
        let mut splits = self.splits(text);
        let mut batch = [(0, 0); 64];
        loop {
            let got = splits.fill(&mut batch, 0);
            for &(start, end) in &batch[..got] {
                emit(start, end);
            }
            if got < batch.len() {
                break;
            }
        }
    }

    /// The pre-tokens of `text`, to be taken a batch at a time.
    pub(crate) fn splits<'a>(&'a self, text: &'a str) -> Splits<'a> {
        match self {
            Pattern::Gpt2 => Splits::Gpt2(BlockSplits::new(text.as_bytes())),
            Pattern::Gpt4 => Splits::Gpt4(BlockSplits::new(text.as_bytes())),
            Pattern::Custom(custom) => {
                custom.coverage.seen.fetch_add(text.len() as u64, Ordering::Relaxed);
                Splits::Custom { re: &custom.regex, coverage: &custom.coverage, text, at: 0 }
            }
        }
    }

    /// Where UTF-8 text may be cut so that splitting the two halves apart gives the same
    /// pre-tokens as splitting the whole: before a space that follows a character other
    /// than whitespace, or after a newline between two such characters. Under both built-in
    /// patterns no pre-token runs from such a character on into the space or past the
    /// newline (GPT-4's punctuation takes the newline along, and ends there), and nothing
    /// there looks ahead. Custom patterns have no such places (they are cut only at special
    /// tokens).
    pub fn is_safe_cut(&self, text: &[u8], at: usize) -> bool {
        let space_ending_at = |end: usize| {
            // The character's first byte: UTF-8 continuation bytes are 0b10xx_xxxx.
            let start = (end.saturating_sub(4)..end).rev().find(|&i| text[i] & 0xC0 != 0x80).unwrap_or(0);
            class_at(text, start).0 == Class::Space
        };
        self.is_safe_cut_with(text.len(), at, |i| text[i] as u32, space_ending_at, |i| class_at(text, i).0 == Class::Space)
    }

    /// `is_safe_cut` in text given as code points.
    pub fn is_safe_cut_chars<U: CodeUnit>(&self, chars: &[U], at: usize) -> bool {
        let space_at = |i: usize| code_point_class(chars[i].into()) == Class::Space;
        self.is_safe_cut_with(chars.len(), at, |i| chars[i].into(), |end| space_at(end - 1), space_at)
    }

    /// `is_safe_cut` given the text's `len` units, the unit at an index, and whether the
    /// character that ends before an index, and the one that starts there, is whitespace.
    fn is_safe_cut_with(
        &self,
        len: usize,
        at: usize,
        unit: impl Fn(usize) -> u32,
        space_ending_at: impl Fn(usize) -> bool,
        space_starting_at: impl Fn(usize) -> bool,
    ) -> bool {
        if !self.is_builtin() || at == 0 || at >= len {
            return false;
        }
        if unit(at) == b' ' as u32 {
            return !space_ending_at(at);
        }
        at >= 2 && unit(at - 1) == b'\n' as u32 && !space_ending_at(at - 1) && !space_starting_at(at)
    }
}

/// The pre-tokens of a text under a pattern, a batch at a time.
pub(crate) enum Splits<'a> {
    Gpt2(BlockSplits<'a, Gpt2Rules>),
    Gpt4(BlockSplits<'a, Gpt4Rules>),
    Custom { re: &'a fancy_regex::Regex, coverage: &'a Coverage, text: &'a str, at: usize },
}

impl Splits<'_> {
    /// Writes the (start, end) of the next pre-tokens, plus `offset`, into `out`; returns
    /// how many: all of `out` unless the text ends first.
    #[inline]
    pub(crate) fn fill(&mut self, out: &mut [(usize, usize)], offset: usize) -> usize {
        match self {
            Splits::Gpt2(splits) => splits.fill(out, offset),
            Splits::Gpt4(splits) => splits.fill(out, offset),
            Splits::Custom { re, coverage, text, at } => {
                let mut filled = 0;
                let mut matched = 0;
                // A regex that matches nothing somewhere leaves that text out, as `findall` does.
                while filled < out.len() && *at <= text.len() {
                    let Ok(Some(m)) = re.find_from_pos(text, *at) else {
                        *at = text.len() + 1;
                        break;
                    };
                    if m.end() > m.start() {
                        out[filled] = (m.start() + offset, m.end() + offset);
                        filled += 1;
                        matched += m.end() - m.start();
                        *at = m.end();
                    } else {
                        *at = m.end() + text[m.end()..].chars().next().map_or(1, char::len_utf8);
                    }
                }
                coverage.matched.fetch_add(matched as u64, Ordering::Relaxed);
                filled
            }
        }
    }
}

/// Up to 15 bytes packed into one integer: the bytes little-endian, the length in the top byte.
/// Pre-tokens this short (nearly all of them) are keyed by it instead of by a byte string.
pub const MAX_PACKED: usize = 15;

#[inline(always)]
pub fn pack(piece: &[u8]) -> u128 {
    let mut buf = [0u8; 16];
    buf[..piece.len()].copy_from_slice(piece);
    buf[15] = piece.len() as u8;
    u128::from_le_bytes(buf)
}

/// `LOW_BYTES[n]` keeps the low `n` bytes of a u128.
const LOW_BYTES: [u128; 16] = {
    let mut masks = [0u128; 16];
    let mut n = 1;
    while n < 16 {
        masks[n] = (1u128 << (8 * n)) - 1;
        n += 1;
    }
    masks
};

/// `pack(&bytes[start..end])`, reading 16 bytes at once where `bytes` has them.
#[inline(always)]
pub fn pack_at(bytes: &[u8], start: usize, end: usize) -> u128 {
    let len = end - start;
    debug_assert!(len <= MAX_PACKED);
    match bytes.get(start..start + 16) {
        Some(window) => {
            let word = u128::from_le_bytes(window.try_into().expect("16 bytes"));
            (word & LOW_BYTES[len & 15]) | ((len as u128) << 120)
        }
        None => pack(&bytes[start..end]),
    }
}

/// The bytes a packed key holds.
pub fn unpack(key: u128) -> Vec<u8> {
    let len = (key >> 120) as usize;
    key.to_le_bytes()[..len].to_vec()
}

/// The character classes the patterns use: `\p{L}`, `\p{N}`, `\s`, and everything else.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(crate) enum Class {
    Letter = 0,
    Number = 1,
    Space = 2,
    Other = 3,
}

const fn ascii_class(b: u8) -> Class {
    match b {
        b'a'..=b'z' | b'A'..=b'Z' => Class::Letter,
        b'0'..=b'9' => Class::Number,
        b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' => Class::Space,
        _ => Class::Other,
    }
}

const ASCII_CLASS: [Class; 128] = {
    let mut table = [Class::Other; 128];
    let mut b = 0;
    while b < 128 {
        table[b] = ascii_class(b as u8);
        b += 1;
    }
    table
};

/// One class per code point (0 letter, 1 number, 2 space, 3 other), from the Unicode
/// tables of the `regex` crates, which tiktoken uses too.
pub fn unicode_classes() -> &'static [u8] {
    static TABLE: OnceLock<Vec<u8>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = vec![Class::Other as u8; 0x11_0000];
        for (class_regex, class) in [(r"\s", Class::Space), (r"\p{N}", Class::Number), (r"\p{L}", Class::Letter)] {
            let hir = regex_syntax::Parser::new().parse(class_regex).expect("class regex");
            let regex_syntax::hir::HirKind::Class(regex_syntax::hir::Class::Unicode(ranges)) = hir.kind() else {
                unreachable!("{class_regex} is a Unicode class")
            };
            for range in ranges.iter() {
                for cp in range.start() as usize..=range.end() as usize {
                    table[cp] = class as u8;
                }
            }
        }
        table
    })
}

/// The class of a code point (a lone surrogate is `Other`).
fn code_point_class(cp: u32) -> Class {
    if cp < 0x80 {
        ASCII_CLASS[cp as usize]
    } else {
        non_ascii_class(cp)
    }
}

#[inline(always)]
fn non_ascii_class(cp: u32) -> Class {
    match unicode_classes().get(cp as usize) {
        Some(0) => Class::Letter,
        Some(1) => Class::Number,
        Some(2) => Class::Space,
        _ => Class::Other,
    }
}

/// The class of the character starting at `at`, and its length in bytes.
#[inline(always)]
fn class_at(bytes: &[u8], at: usize) -> (Class, usize) {
    let b = bytes[at];
    if b < 0x80 {
        return (ASCII_CLASS[b as usize], 1);
    }
    let (cp, len) = decode_utf8(bytes, at);
    (non_ascii_class(cp), len)
}

/// Decodes the (valid) UTF-8 character of two or more bytes starting at `at`.
#[inline(always)]
pub(crate) fn decode_utf8(bytes: &[u8], at: usize) -> (u32, usize) {
    let b0 = bytes[at] as u32;
    if b0 < 0xE0 {
        (((b0 & 0x1F) << 6) | (bytes[at + 1] as u32 & 0x3F), 2)
    } else if b0 < 0xF0 {
        (((b0 & 0x0F) << 12) | ((bytes[at + 1] as u32 & 0x3F) << 6) | (bytes[at + 2] as u32 & 0x3F), 3)
    } else {
        (
            ((b0 & 0x07) << 18)
                | ((bytes[at + 1] as u32 & 0x3F) << 12)
                | ((bytes[at + 2] as u32 & 0x3F) << 6)
                | (bytes[at + 3] as u32 & 0x3F),
            4,
        )
    }
}

/// Class codes of single bytes: the class of an ASCII byte, NON_ASCII for the rest.
const NON_ASCII: u8 = 4;
const BYTE_CLASS: [u8; 256] = {
    let mut table = [NON_ASCII; 256];
    let mut b = 0;
    while b < 128 {
        table[b] = ascii_class(b as u8) as u8;
        b += 1;
    }
    table
};

/// The end of the run of characters of `class` that starts at `at`.
#[inline(always)]
fn run_end(bytes: &[u8], mut at: usize, class: Class) -> usize {
    let n = bytes.len();
    loop {
        while at < n && BYTE_CLASS[bytes[at] as usize] == class as u8 {
            at += 1;
        }
        if at < n && bytes[at] >= 0x80 {
            let (c, len) = class_at(bytes, at);
            if c == class {
                at += len;
                continue;
            }
        }
        return at;
    }
}

/// The end of the whitespace run starting at `at`, and where its last character starts.
#[inline(always)]
fn space_run(bytes: &[u8], mut at: usize) -> (usize, usize) {
    let mut last = at;
    while at < bytes.len() {
        let (c, len) = class_at(bytes, at);
        if c != Class::Space {
            break;
        }
        last = at;
        at += len;
    }
    (at, last)
}

/// `'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
#[inline(always)]
pub(crate) fn gpt2_token_end(bytes: &[u8], at: usize) -> usize {
    let n = bytes.len();
    if bytes[at] == b'\'' && at + 1 < n {
        match bytes[at + 1] {
            b's' | b'd' | b'm' | b't' => return at + 2,
            b'l' if bytes.get(at + 2) == Some(&b'l') => return at + 3,
            b'v' | b'r' if bytes.get(at + 2) == Some(&b'e') => return at + 3,
            _ => {}
        }
    }
    let (class, len) = class_at(bytes, at);
    match class {
        Class::Space => {
            if bytes[at] == b' ' && at + 1 < n {
                let (next, _) = class_at(bytes, at + 1);
                if next != Class::Space {
                    return run_end(bytes, at + 1, next);
                }
            }
            let (end, last) = space_run(bytes, at);
            if end < n && last > at {
                last // \s+(?!\S): leave the last space for the next token
            } else {
                end
            }
        }
        _ => run_end(bytes, at + len, class),
    }
}

/// `'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s`
#[inline(always)]
pub(crate) fn gpt4_token_end(bytes: &[u8], at: usize) -> usize {
    let n = bytes.len();
    if bytes[at] == b'\'' && at + 1 < n {
        let lower = |i: usize| bytes.get(i).map(u8::to_ascii_lowercase);
        match lower(at + 1) {
            Some(b's' | b'd' | b'm' | b't') => return at + 2,
            Some(b'l') if lower(at + 2) == Some(b'l') => return at + 3,
            Some(b'v' | b'r') if lower(at + 2) == Some(b'e') => return at + 3,
            // U+017F LATIN SMALL LETTER LONG S case-folds to 's'.
            _ if bytes[at + 1..].starts_with("\u{17F}".as_bytes()) => return at + 3,
            _ => {}
        }
    }
    let (class, len) = class_at(bytes, at);
    match class {
        Class::Letter => run_end(bytes, at + len, Class::Letter),
        Class::Number => {
            let mut end = at + len;
            for _ in 0..2 {
                if end < n {
                    let (c, l) = class_at(bytes, end);
                    if c == Class::Number {
                        end += l;
                        continue;
                    }
                }
                break;
            }
            end
        }
        Class::Other | Class::Space => {
            // [^\r\n\p{L}\p{N}]?+\p{L}++
            if bytes[at] != b'\r' && bytes[at] != b'\n' && at + len < n && class_at(bytes, at + len).0 == Class::Letter {
                return run_end(bytes, at + len, Class::Letter);
            }
            // ` ?[^\s\p{L}\p{N}]++[\r\n]*+`
            let others_from = if class == Class::Other {
                Some(at)
            } else if bytes[at] == b' ' && at + 1 < n && class_at(bytes, at + 1).0 == Class::Other {
                Some(at + 1)
            } else {
                None
            };
            if let Some(from) = others_from {
                let mut end = run_end(bytes, from, Class::Other);
                while end < n && (bytes[end] == b'\r' || bytes[end] == b'\n') {
                    end += 1;
                }
                return end;
            }
            let (end, last) = space_run(bytes, at);
            if end == n {
                return end; // \s++$
            }
            if let Some(newline) = bytes[at..end].iter().rposition(|&b| b == b'\r' || b == b'\n') {
                return at + newline + 1; // \s*[\r\n]
            }
            if last > at {
                last // \s+(?!\S)
            } else {
                at + len // \s
            }
        }
    }
}

/// Special tokens, matched longest first; text between them is pre-tokenized on its own.
#[derive(Clone, Debug)]
pub struct SpecialTokens {
    tokens: Vec<String>,
    /// The tokens as code points.
    chars: Vec<Vec<u32>>,
    matcher: Option<AhoCorasick>,
    max_len: usize,
}

/// A piece of text between special tokens, or the index of a special token.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'t> {
    Text(&'t str),
    Special(usize),
}

impl SpecialTokens {
    pub fn new(tokens: &[String]) -> Result<SpecialTokens, BpeError> {
        let mut seen = std::collections::HashSet::new();
        for token in tokens {
            if token.is_empty() {
                return Err(BpeError::InvalidSpecialToken("a special token is empty".into()));
            }
            if !seen.insert(token) {
                return Err(BpeError::InvalidSpecialToken(format!("{token:?} is given twice")));
            }
        }
        let matcher = if tokens.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(tokens)
                    .expect("special-token matcher"),
            )
        };
        Ok(SpecialTokens {
            tokens: tokens.to_vec(),
            chars: tokens.iter().map(|t| t.chars().map(u32::from).collect()).collect(),
            matcher,
            max_len: tokens.iter().map(String::len).max().unwrap_or(0),
        })
    }

    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Calls `emit` with the text pieces and special tokens of `text`, in order.
    pub fn for_each_piece<'t>(&self, text: &'t str, mut emit: impl FnMut(Piece<'t>)) {
        let Some(matcher) = &self.matcher else {
            if !text.is_empty() {
                emit(Piece::Text(text));
            }
            return;
        };
        let mut start = 0;
        for m in matcher.find_iter(text) {
            if m.start() > start {
                emit(Piece::Text(&text[start..m.start()]));
            }
            emit(Piece::Special(m.pattern().as_usize()));
            start = m.end();
        }
        if start < text.len() {
            emit(Piece::Text(&text[start..]));
        }
    }

    /// Whether a special token occurrence covers both `bytes[at - 1]` and `bytes[at]`.
    pub fn crosses(&self, bytes: &[u8], at: usize) -> bool {
        if self.max_len < 2 {
            return false;
        }
        let from = at.saturating_sub(self.max_len - 1);
        (from..at).any(|s| self.tokens.iter().any(|t| t.len() > at - s && bytes[s..].starts_with(t.as_bytes())))
    }

    /// `crosses`, in text given as code points.
    pub fn crosses_chars<U: CodeUnit>(&self, chars: &[U], at: usize) -> bool {
        self.chars.iter().any(|t| {
            (at.saturating_sub(t.len() - 1)..at)
                .any(|s| s + t.len() <= chars.len() && chars[s..s + t.len()].iter().zip(t).all(|(&c, &u)| c.into() == u))
        })
    }

    /// Where each special token ends, scanning `bytes` from its start (longest first).
    pub fn match_ends<'b>(&'b self, bytes: &'b [u8]) -> impl Iterator<Item = usize> + 'b {
        self.matcher.iter().flat_map(move |m| m.find_iter(bytes).map(|m| m.end()))
    }

    /// The length in bytes of the longest special token.
    pub fn max_len(&self) -> usize {
        self.max_len
    }
}

/// Chunk boundaries of `bytes`, about `target` bytes apart (the first is 0, the last the
/// length): safe cuts of the pattern that no special token crosses or, for custom
/// patterns, ends of special tokens.
pub fn cut_points(bytes: &[u8], target: usize, pattern: &Pattern, specials: &SpecialTokens) -> Vec<usize> {
    let mut cuts = vec![0];
    cuts.extend(chunks(bytes, target, pattern, specials).map(|(_, end)| end));
    cuts
}

/// The chunks between `cut_points`, found as they are asked for: for the built-in patterns a
/// chunk's end is looked for only when the chunk is reached, so pages of a mapped file are
/// not touched ahead of their turn.
pub fn chunks<'a>(
    bytes: &'a [u8],
    target: usize,
    pattern: &'a Pattern,
    specials: &'a SpecialTokens,
) -> Box<dyn Iterator<Item = (usize, usize)> + Send + 'a> {
    if pattern.is_builtin() {
        let mut start = 0;
        Box::new(std::iter::from_fn(move || {
            if start >= bytes.len() {
                return None;
            }
            let end = next_cut(bytes.len(), start + target, |at| pattern.is_safe_cut(bytes, at) && !specials.crosses(bytes, at));
            let chunk = (start, end);
            start = chunk.1;
            Some(chunk)
        }))
    } else {
        // Special tokens must be found by one scan from the start, as the whole text is scanned.
        let mut cuts = vec![0];
        for end in specials.match_ends(bytes) {
            if end - cuts.last().unwrap() >= target {
                cuts.push(end);
            }
        }
        if *cuts.last().unwrap() != bytes.len() {
            cuts.push(bytes.len());
        }
        Box::new((0..cuts.len() - 1).map(move |i| (cuts[i], cuts[i + 1])))
    }
}

/// The last place where a stream block may be cut (0 if none yet), far enough from its
/// end that what comes next in the stream cannot change it.
pub fn last_cut(block: &[u8], pattern: &Pattern, specials: &SpecialTokens) -> usize {
    let limit = block.len().saturating_sub(specials.max_len() + 2);
    if pattern.is_builtin() {
        last_cut_after(block, limit.saturating_sub(1 << 20), pattern, specials).0
    } else {
        specials.match_ends(block).take_while(|&end| end <= limit).last().unwrap_or(0)
    }
}

/// `last_cut` of a built-in pattern, looking no further back than `from`; and how far it
/// looked: a block that grows can be asked again from there.
pub fn last_cut_after(block: &[u8], from: usize, pattern: &Pattern, specials: &SpecialTokens) -> (usize, usize) {
    let limit = block.len().saturating_sub(specials.max_len() + 2);
    let cut = (from..limit).rev().find(|&at| pattern.is_safe_cut(block, at) && !specials.crosses(block, at));
    (cut.unwrap_or(0), limit.max(from))
}

/// `cut_points` of a built-in pattern in text given as code points.
pub fn cut_points_chars<U: CodeUnit>(chars: &[U], target: usize, pattern: &Pattern, specials: &SpecialTokens) -> Vec<usize> {
    assert!(pattern.is_builtin(), "text as code points is cut only for the built-in patterns");
    let mut cuts = vec![0];
    while *cuts.last().unwrap() < chars.len() {
        let from = cuts.last().unwrap() + target;
        cuts.push(next_cut(chars.len(), from, |at| pattern.is_safe_cut_chars(chars, at) && !specials.crosses_chars(chars, at)));
    }
    cuts
}

/// The first place from `from` where `is_cut` holds, or the end `len`.
fn next_cut(len: usize, from: usize, is_cut: impl Fn(usize) -> bool) -> usize {
    (from..len).find(|&at| is_cut(at)).unwrap_or(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pattern: &Pattern, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        pattern.split(text, |t| out.push(t.to_string()));
        out
    }

    fn regex_split(regex: &str, text: &str) -> Vec<String> {
        let re = fancy_regex::Regex::new(regex).unwrap();
        re.find_iter(text).map(|m| m.unwrap().as_str().to_string()).collect()
    }

    const SAMPLES: &[&str] = &[
        "Hello world",
        "Hello, world! It's 2024 and I'll've they're WE'RE we'Ve",
        "   leading spaces\n\n\ntrailing   ",
        "tabs\tand\r\nwindows\r\n\r\nlines",
        "numbers 1234567 and 3.14159 and ١٢٣",
        "emoji 😀👍🏽 and CJK 中文字符 and Ελληνικά and עברית",
        "combining e\u{301} and \u{300}alone",
        "a  b   c\u{a0}\u{a0}d\u{3000}e",
        "'s 'S 'LL 'ſ ''s x's",
        "!!!??? ... ---\n\n",
        "\n",
        " ",
        "  ",
        "x \n y",
        "end with space ",
        "\u{85}\u{2028}mixed\u{2029}",
        "don't stop-believin' 'til",
        " !\r\n\r\n?",
    ];

    #[test]
    fn builtin_patterns_match_their_regexes() {
        for (pattern, regex) in [(Pattern::Gpt2, GPT2_REGEX), (Pattern::Gpt4, GPT4_REGEX)] {
            for text in SAMPLES {
                assert_eq!(split(&pattern, text), regex_split(regex, text), "{} on {text:?}", pattern.name());
            }
        }
    }

    #[test]
    fn pattern_names_are_read_in_any_case() {
        for name in ["gpt2", "GPT2", "Gpt2", "r50k", "R50K_BASE", "p50k_base"] {
            assert!(matches!(Pattern::parse(name), Ok(Pattern::Gpt2)), "{name}");
        }
        for name in ["gpt4", "GPT4", "Gpt4", "cl100k", "CL100K_BASE"] {
            assert!(matches!(Pattern::parse(name), Ok(Pattern::Gpt4)), "{name}");
        }
        for name in ["o200k", "O200K_base"] {
            assert_eq!(Pattern::parse(name).unwrap().regex(), O200K_REGEX);
        }
        assert!(matches!(Pattern::parse(TIKTOKEN_R50K_REGEX), Ok(Pattern::Gpt2)));
    }

    #[test]
    fn a_regex_counts_how_much_of_the_text_its_pre_tokens_cover() {
        let pattern = Pattern::parse(r"[a-z]+").unwrap();
        let before = pattern.coverage();
        assert_eq!(split(&pattern, "abc, D ef"), vec!["abc", "ef"]);
        assert_eq!(pattern.coverage(), Some((5, 9)));
        assert_eq!(pattern.mostly_unmatched_since(before), None);
        let before = pattern.coverage();
        split(&pattern.clone(), "ab, CD, EF, GH");
        assert_eq!(pattern.mostly_unmatched_since(before), Some(2.0 / 14.0));
        assert_eq!(Pattern::Gpt2.coverage(), None);
    }

    #[test]
    fn custom_pattern_uses_the_regex() {
        let pattern = Pattern::parse(r"\w+|\s+|[^\w\s]+").unwrap();
        assert_eq!(split(&pattern, "ab, cd"), vec!["ab", ",", " ", "cd"]);
        assert!(matches!(Pattern::parse("(unclosed"), Err(BpeError::InvalidPattern(_))));
    }

    #[test]
    fn safe_cuts_do_not_change_splits() {
        let text = "one two\nthree four.\nFive six 7\n\nseven eight";
        for pattern in [Pattern::Gpt2, Pattern::Gpt4] {
            let whole = split(&pattern, text);
            for at in 0..text.len() {
                if pattern.is_safe_cut(text.as_bytes(), at) {
                    let mut halves = split(&pattern, &text[..at]);
                    halves.extend(split(&pattern, &text[at..]));
                    assert_eq!(halves, whole, "cut at {at}");
                }
            }
        }
    }

    #[test]
    fn safe_cuts_hold_on_random_text() {
        // ASCII and non-ASCII letters, numbers, marks, punctuation and whitespace (U+0085,
        // U+00A0, U+2028 and U+3000 are `\s`; U+001C is not).
        let alphabet = [
            "a", "B", " ", "\n", "\t", "!", "1", "'", "s", "\r", "\u{3000}", "\u{e9}", "\u{4e2d}", "\u{301}", "\u{a0}", "\u{85}",
            "\u{2028}", "\u{661}", "\u{1c}", "\u{3002}", "\u{1f600}", "\u{e01}",
        ];
        let patterns = [Pattern::Gpt2, Pattern::Gpt4].map(|p| {
            let regex = fancy_regex::Regex::new(p.regex()).unwrap();
            (p, regex)
        });
        let mut seed = 12345u64;
        let mut cuts_seen = 0;
        for _ in 0..5000 {
            let mut text = String::new();
            for _ in 0..12 {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                text.push_str(alphabet[(seed >> 33) as usize % alphabet.len()]);
            }
            let chars: Vec<u32> = text.chars().map(|c| c as u32).collect();
            for (pattern, regex) in &patterns {
                let matches = |text: &str| regex.find_iter(text).map(|m| m.unwrap().as_str().to_string()).collect::<Vec<_>>();
                let whole = split(pattern, &text);
                assert_eq!(whole, matches(&text), "{text:?}");
                for (i, (at, _)) in text.char_indices().enumerate() {
                    let safe = pattern.is_safe_cut(text.as_bytes(), at);
                    assert_eq!(pattern.is_safe_cut_chars(&chars, i), safe, "{text:?} at {at}");
                    if safe {
                        let mut halves = matches(&text[..at]);
                        halves.extend(matches(&text[at..]));
                        assert_eq!(halves, whole, "{text:?} cut at {at}");
                        cuts_seen += 1;
                    }
                }
            }
        }
        assert!(cuts_seen > 3_000, "{cuts_seen}");
    }

    #[test]
    fn text_in_any_script_has_safe_cuts() {
        let text = "\u{4e2d}\u{6587}\u{3002}\n\u{65e5}\u{672c} \u{e01}\u{e02}\u{a0} x\u{301} y";
        let cuts: Vec<usize> = (0..text.len()).filter(|&at| Pattern::Gpt2.is_safe_cut(text.as_bytes(), at)).collect();
        // After the newline between two CJK characters, before the space after one, and
        // before the space after a combining mark; not before the space after U+00A0.
        let expected = [text.find('\n').unwrap() + 1, text.find(' ').unwrap(), text.rfind(' ').unwrap()];
        assert_eq!(cuts, expected);
    }

    #[test]
    fn specials_longest_first() {
        let specials = SpecialTokens::new(&["<|a|>".into(), "<|a|><|a|>".into()]).unwrap();
        let mut pieces = Vec::new();
        specials.for_each_piece("x<|a|><|a|>y<|a|>", |p| pieces.push(format!("{p:?}")));
        assert_eq!(pieces, vec!["Text(\"x\")", "Special(1)", "Text(\"y\")", "Special(0)"]);
        assert!(specials.crosses(b"x<|a|>y", 3));
        assert!(!specials.crosses(b"x<|a|>y", 1));
    }

    #[test]
    fn cut_points_avoid_special_tokens() {
        let specials = SpecialTokens::new(&["x y".into()]).unwrap();
        let text = b"aa bb\ncc x y dd";
        let cuts = cut_points(text, 1, &Pattern::Gpt2, &specials);
        assert!(!cuts.contains(&10), "{cuts:?}");
        assert_eq!(*cuts.last().unwrap(), text.len());
    }

    #[test]
    fn cut_points_in_code_points_are_the_cut_points_of_the_utf8() {
        let specials = SpecialTokens::new(&["x y".into(), "\u{e9}\n\u{e9}".into()]).unwrap();
        let text = "aa bb\ncc x y dd \u{e9}\n\u{e9} ee\nff gg h\u{3b1} ii jj";
        let chars: Vec<u16> = text.encode_utf16().collect();
        let cuts = cut_points_chars(&chars, 1, &Pattern::Gpt2, &specials);
        let byte_cuts: Vec<usize> = cuts.iter().map(|&c| text.chars().take(c).map(char::len_utf8).sum()).collect();
        assert_eq!(byte_cuts, cut_points(text.as_bytes(), 1, &Pattern::Gpt2, &specials));
        assert!(!cuts.contains(&10), "{cuts:?}");
        assert!(specials.crosses_chars(&chars, 10) && specials.crosses_chars(&chars, 11) && !specials.crosses_chars(&chars, 9));
    }
}
