//! Pre-tokenization: special tokens are cut out first (longest match first), then every
//! piece of text between them is split into pre-tokens by the pattern.
//!
//! The built-in patterns (`gpt2` = r50k, `gpt4` = cl100k) are hand-written state machines
//! that give exactly the splits of the regular expressions in [`GPT2_REGEX`] and
//! [`GPT4_REGEX`]; any other pattern goes through `fancy-regex` (general, slower).

mod blocks;
mod builtin;
mod cuts;
mod pack;
mod specials;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};

use crate::error::BpeError;
use crate::text::utf8::CodeUnit;
use self::blocks::{BlockSplits, Gpt2Rules, Gpt4Rules};
pub use self::builtin::*;
pub use self::cuts::*;
pub use self::pack::*;
pub use self::specials::*;

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

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn split(pattern: &Pattern, text: &str) -> Vec<String> {
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
}
