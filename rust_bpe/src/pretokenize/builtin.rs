//! The built-in patterns as hand-written state machines over bytes (`gpt2_token_end`,
//! `gpt4_token_end`), and the character classes they read.

use std::sync::OnceLock;

/// The character classes the patterns use: `\p{L}`, `\p{N}`, `\s`, and everything else.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(crate) enum Class {
    Letter = 0,
    Number = 1,
    Space = 2,
    Other = 3,
}

pub(super) const fn ascii_class(b: u8) -> Class {
    match b {
        b'a'..=b'z' | b'A'..=b'Z' => Class::Letter,
        b'0'..=b'9' => Class::Number,
        b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' => Class::Space,
        _ => Class::Other,
    }
}

pub(super) const ASCII_CLASS: [Class; 128] = {
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
pub(super) fn code_point_class(cp: u32) -> Class {
    if cp < 0x80 {
        ASCII_CLASS[cp as usize]
    } else {
        non_ascii_class(cp)
    }
}

#[inline(always)]
pub(super) fn non_ascii_class(cp: u32) -> Class {
    match unicode_classes().get(cp as usize) {
        Some(0) => Class::Letter,
        Some(1) => Class::Number,
        Some(2) => Class::Space,
        _ => Class::Other,
    }
}

/// The class of the character starting at `at`, and its length in bytes.
#[inline(always)]
pub(super) fn class_at(bytes: &[u8], at: usize) -> (Class, usize) {
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
pub(super) const NON_ASCII: u8 = 4;
pub(super) const BYTE_CLASS: [u8; 256] = {
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
pub(super) fn run_end(bytes: &[u8], mut at: usize, class: Class) -> usize {
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
pub(super) fn space_run(bytes: &[u8], mut at: usize) -> (usize, usize) {
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
