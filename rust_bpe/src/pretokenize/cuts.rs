//! Safe cuts: places where text may be cut into chunks that are split (or encoded) apart
//! with the same pre-tokens as the whole, and the chunks and cut points found with them.

use super::*;

impl Pattern {
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
    pub(super) fn is_safe_cut_with(
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
pub(super) fn next_cut(len: usize, from: usize, is_cut: impl Fn(usize) -> bool) -> usize {
    (from..len).find(|&at| is_cut(at)).unwrap_or(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pretokenize::tests::split;

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
