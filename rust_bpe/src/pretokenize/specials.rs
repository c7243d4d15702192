//! Special tokens: cut out of the text before it is split, longest match first.

use super::*;

/// Special tokens, matched longest first; text between them is pre-tokenized on its own.
#[derive(Clone, Debug)]
pub struct SpecialTokens {
    pub(super) tokens: Vec<String>,
    /// The tokens as code points.
    pub(super) chars: Vec<Vec<u32>>,
    pub(super) matcher: Option<AhoCorasick>,
    pub(super) max_len: usize,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specials_longest_first() {
        let specials = SpecialTokens::new(&["<|a|>".into(), "<|a|><|a|>".into()]).unwrap();
        let mut pieces = Vec::new();
        specials.for_each_piece("x<|a|><|a|>y<|a|>", |p| pieces.push(format!("{p:?}")));
        assert_eq!(pieces, vec!["Text(\"x\")", "Special(1)", "Text(\"y\")", "Special(0)"]);
        assert!(specials.crosses(b"x<|a|>y", 3));
        assert!(!specials.crosses(b"x<|a|>y", 1));
    }
}
