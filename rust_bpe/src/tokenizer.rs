//! A trained tokenizer: its vocabulary, merges, special tokens and pattern, and the
//! JSON file it is saved as.
//!
//! The file is one readable JSON document:
//! ```json
//! {"format": "pybpe", "version": 1, "pattern": "gpt2",
//!  "special_tokens": {"<|endoftext|>": 32255},
//!  "vocab": {"Ā": 0, ..., "Ġt": 256, ...},
//!  "merges": [["Ġ", "t"], ...]}
//! ```
//! Token bytes are written with GPT-2's byte-to-unicode characters, as in GPT-2's own
//! `vocab.json` and `merges.txt`.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

use std::sync::OnceLock;

use rustc_hash::FxHashMap;
use serde_json::Value;

use crate::error::BpeError;
use crate::pretokenize::{Pattern, SpecialTokens};

pub const FORMAT_NAME: &str = "pybpe";
pub const FORMAT_VERSION: u64 = 1;

#[derive(Clone, Debug)]
pub struct Tokenizer {
    /// Token bytes by id, for every id below `vocab_size()` (special tokens included); empty
    /// for an id that is not used (tiktoken's cl100k leaves some between its special tokens).
    vocab: Vec<Vec<u8>>,
    /// Merges in the order they were learned, as pairs of token ids.
    merges: Vec<(u32, u32)>,
    /// Special tokens and their ids, in the order they were given.
    special_tokens: Vec<(String, u32)>,
    pattern: Pattern,
    specials: SpecialTokens,
    /// Whether each id is a special token.
    special_flags: Vec<bool>,
}

impl Tokenizer {
    /// Checks the vocabulary (every byte a token, no token twice, at most as many unused
    /// ids as tokens: an empty entry that is not a special token is an unused id) and that
    /// the merges rebuild it (see `check_merges`).
    pub fn new(
        vocab: Vec<Vec<u8>>,
        merges: Vec<(u32, u32)>,
        special_tokens: Vec<(String, u32)>,
        pattern: Pattern,
    ) -> Result<Tokenizer, BpeError> {
        Tokenizer::with_merge_names(vocab, merges, special_tokens, pattern, &|i| format!("merge {i}"))
    }

    /// `new`, with `merge_name(i)` naming merge i in what is wrong (e.g. its line in a file).
    pub fn with_merge_names(
        vocab: Vec<Vec<u8>>,
        merges: Vec<(u32, u32)>,
        special_tokens: Vec<(String, u32)>,
        pattern: Pattern,
        merge_name: &dyn Fn(usize) -> String,
    ) -> Result<Tokenizer, BpeError> {
        let invalid = BpeError::TokenizerFile;
        let n = vocab.len() as u64;
        if n > u32::MAX as u64 {
            return Err(invalid("too many tokens".into()));
        }
        let mut ids_by_bytes: FxHashMap<&[u8], u32> = FxHashMap::default();
        ids_by_bytes.reserve(vocab.len());
        let mut special_flags = vec![false; vocab.len()];
        for (name, id) in &special_tokens {
            if *id as u64 >= n {
                return Err(invalid(format!("special token {name:?} has id {id}, outside the vocabulary of {n}")));
            }
            if vocab[*id as usize] != name.as_bytes() {
                return Err(invalid(format!("special token {name:?} has id {id}, which holds other bytes")));
            }
            special_flags[*id as usize] = true;
        }
        let special_count = special_flags.iter().filter(|&&s| s).count();
        for (id, bytes) in vocab.iter().enumerate() {
            if special_flags[id] || bytes.is_empty() {
                continue; // a special token, or an unused id
            }
            if ids_by_bytes.insert(bytes, id as u32).is_some() {
                return Err(invalid(format!("token {id} ({}) appears twice", printable(bytes))));
            }
        }
        check_unused_ids(vocab.len(), ids_by_bytes.len() + special_count).map_err(invalid)?;
        for byte in 0..=255u8 {
            if !ids_by_bytes.contains_key(&[byte][..]) {
                return Err(invalid(format!("the single byte {byte:#04x} is not a token")));
            }
        }
        check_merges(&vocab, &merges, &ids_by_bytes, &special_flags, merge_name).map_err(invalid)?;
        drop(ids_by_bytes);
        let names: Vec<String> = special_tokens.iter().map(|(s, _)| s.clone()).collect();
        let specials = SpecialTokens::new(&names).map_err(|e| invalid(e.to_string()))?;
        Ok(Tokenizer { vocab, merges, special_tokens, pattern, specials, special_flags })
    }

    /// A vocabulary with no merges and no checks: tests of the encoder on vocabularies that
    /// no merges rebuild (tokens merges cannot make, ranks out of merge order).
    #[cfg(test)]
    pub(crate) fn unchecked(vocab: Vec<Vec<u8>>, pattern: Pattern) -> Tokenizer {
        let special_flags = vec![false; vocab.len()];
        let specials = SpecialTokens::new(&[]).expect("no special tokens");
        Tokenizer { vocab, merges: Vec::new(), special_tokens: Vec::new(), pattern, specials, special_flags }
    }

    pub fn vocab(&self) -> &[Vec<u8>] {
        &self.vocab
    }
    /// One past the largest id (as tiktoken's `n_vocab`).
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// Whether `id` is below `vocab_size()` but no token's.
    pub fn is_unused(&self, id: u32) -> bool {
        self.vocab.get(id as usize).is_some_and(|bytes| bytes.is_empty()) && !self.is_special(id)
    }

    pub fn merges(&self) -> &[(u32, u32)] {
        &self.merges
    }
    pub fn special_tokens(&self) -> &[(String, u32)] {
        &self.special_tokens
    }
    pub fn specials(&self) -> &SpecialTokens {
        &self.specials
    }
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    pub fn is_special(&self, id: u32) -> bool {
        self.special_flags.get(id as usize).copied().unwrap_or(false)
    }

    pub fn to_json(&self) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(64 * self.vocab.len());
        let _ = write!(out, "{{\n  \"format\": \"{FORMAT_NAME}\",\n  \"version\": {FORMAT_VERSION},\n  \"pattern\": ");
        push_json_str(&mut out, self.pattern.name());
        out.push_str(",\n  \"special_tokens\": {");
        for (i, (name, id)) in self.special_tokens.iter().enumerate() {
            out.push_str(if i == 0 { "\n    " } else { ",\n    " });
            push_json_str(&mut out, name);
            let _ = write!(out, ": {id}");
        }
        out.push_str(if self.special_tokens.is_empty() { "},\n" } else { "\n  },\n" });
        out.push_str("  \"vocab\": {");
        let mut first = true;
        for (id, bytes) in self.vocab.iter().enumerate() {
            if self.is_special(id as u32) || bytes.is_empty() {
                continue;
            }
            out.push_str(if first { "\n    " } else { ",\n    " });
            first = false;
            push_token(&mut out, bytes);
            let _ = write!(out, ": {id}");
        }
        out.push_str("\n  },\n  \"merges\": [");
        for (i, &(a, b)) in self.merges.iter().enumerate() {
            out.push_str(if i == 0 { "\n    [" } else { ",\n    [" });
            push_token(&mut out, &self.vocab[a as usize]);
            out.push_str(", ");
            push_token(&mut out, &self.vocab[b as usize]);
            out.push(']');
        }
        out.push_str(if self.merges.is_empty() { "]\n}\n" } else { "\n  ]\n}\n" });
        out
    }

    pub fn from_json(text: &str) -> Result<Tokenizer, BpeError> {
        // A well-formed file is read straight into typed fields (tokens borrowed from the
        // text); anything else through a JSON tree, which can say what is wrong.
        match serde_json::from_str::<TokenizerFile>(text) {
            Ok(file) => file.build(),
            Err(_) => TokenizerFile::from_tree(text)?.build(),
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), BpeError> {
        write_atomically(path, self.to_json().as_bytes())
    }

    pub fn load(path: &Path) -> Result<Tokenizer, BpeError> {
        if path.is_dir() {
            return Err(BpeError::Io(format!("{}: is a directory, not a tokenizer file", path.display())));
        }
        let text = std::fs::read(path).map_err(|e| BpeError::io(path, &e))?;
        let text = String::from_utf8(text)
            .map_err(|_| BpeError::TokenizerFile(format!("{}: not a tokenizer file (not UTF-8 text)", path.display())))?;
        Tokenizer::from_json(&text).map_err(|e| BpeError::TokenizerFile(format!("{}: {e}", path.display())))
    }
}

/// The fields of a tokenizer file, as they are in the text.
#[derive(serde::Deserialize)]
struct TokenizerFile<'a> {
    #[serde(borrow)]
    format: Option<JsonStr<'a>>,
    version: Option<u64>,
    #[serde(borrow)]
    pattern: Option<JsonStr<'a>>,
    #[serde(borrow)]
    special_tokens: Option<Entries<'a>>,
    #[serde(borrow)]
    vocab: Option<Entries<'a>>,
    #[serde(borrow)]
    merges: Option<Vec<(JsonStr<'a>, JsonStr<'a>)>>,
    /// What is wrong with the first id that is not a whole number (read through a JSON tree).
    #[serde(skip)]
    bad_id: Option<String>,
}

/// A JSON string, borrowed from the text unless it holds escapes.
#[derive(serde::Deserialize)]
struct JsonStr<'a>(#[serde(borrow)] Cow<'a, str>);

/// A JSON object of string -> id, in the order of the text.
struct Entries<'a>(Vec<(JsonStr<'a>, u64)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Entries<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of string -> id")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Entries<'de>, M::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

impl<'a> TokenizerFile<'a> {
    /// The fields of a file that did not read as typed fields, or what is wrong with it.
    fn from_tree(text: &str) -> Result<TokenizerFile<'static>, BpeError> {
        let invalid = BpeError::TokenizerFile;
        let doc: Value = serde_json::from_str(text).map_err(|e| invalid(format!("not valid JSON ({e})")))?;
        let Value::Object(doc) = doc else { return Err(invalid("not a JSON object".into())) };
        let string = |name: &str| doc.get(name).and_then(Value::as_str).map(|s| JsonStr(Cow::Owned(s.to_string())));
        let mut bad_id = None;
        let mut entries = |name: &str, what: &str| -> Result<Option<Entries<'static>>, BpeError> {
            let Some(v) = doc.get(name) else { return Ok(None) };
            let object = v.as_object().ok_or_else(|| invalid(format!("no \"{name}\" object")))?;
            let mut out = Vec::with_capacity(object.len());
            for (key, id) in object {
                // Not an id: `build` says so, after the checks that come first.
                let id = id.as_u64().unwrap_or_else(|| {
                    bad_id.get_or_insert_with(|| format!("{what} {key:?} has id {id}; ids are whole numbers from 0"));
                    0
                });
                out.push((JsonStr(Cow::Owned(key.clone())), id));
            }
            Ok(Some(Entries(out)))
        };
        let special_tokens = entries("special_tokens", "special token")?;
        let vocab = entries("vocab", "vocab entry")?;
        let merges = match doc.get("merges") {
            None => None,
            Some(v) => {
                let list = v.as_array().ok_or_else(|| invalid("no \"merges\" list".into()))?;
                let mut out = Vec::with_capacity(list.len());
                for (rank, merge) in list.iter().enumerate() {
                    let pair = merge.as_array().filter(|p| p.len() == 2);
                    let pair = pair.and_then(|p| Some((p[0].as_str()?, p[1].as_str()?)));
                    let Some((a, b)) = pair else { return Err(invalid(format!("merge {rank} is not a pair of strings"))) };
                    out.push((JsonStr(Cow::Owned(a.to_string())), JsonStr(Cow::Owned(b.to_string()))));
                }
                Some(out)
            }
        };
        Ok(TokenizerFile {
            format: string("format"),
            version: doc.get("version").and_then(Value::as_u64),
            pattern: string("pattern"),
            special_tokens,
            vocab,
            merges,
            bad_id,
        })
    }

    fn build(self) -> Result<Tokenizer, BpeError> {
        let invalid = BpeError::TokenizerFile;
        if self.format.as_ref().map(|f| f.0.as_ref()) != Some(FORMAT_NAME) {
            return Err(invalid(format!("not a pybpe tokenizer (no \"format\": \"{FORMAT_NAME}\")")));
        }
        match self.version {
            Some(FORMAT_VERSION) => {}
            Some(v) => return Err(invalid(format!("format version {v} is not supported (this pybpe reads {FORMAT_VERSION})"))),
            None => return Err(invalid("no format version".into())),
        }
        let pattern = self.pattern.ok_or_else(|| invalid("no \"pattern\"".into()))?;
        let pattern = Pattern::parse(&pattern.0).map_err(|e| invalid(e.to_string()))?;
        if let Some(bad_id) = self.bad_id {
            return Err(invalid(bad_id));
        }
        let id_of = |id: u64, what: &dyn Fn() -> String| {
            Some(id).filter(|&id| id < u32::MAX as u64).map(|id| id as u32).ok_or_else(|| invalid(format!("{} has id {id}, past the largest id a tokenizer can have ({})", what(), u32::MAX - 1)))
        };
        let mut special_tokens = Vec::new();
        for (name, id) in self.special_tokens.ok_or_else(|| invalid("no \"special_tokens\" object".into()))?.0 {
            let id = id_of(id, &|| format!("special token {:?}", name.0))?;
            special_tokens.push((name.0.into_owned(), id));
        }
        let vocab_entries = self.vocab.ok_or_else(|| invalid("no \"vocab\" object".into()))?.0;
        let largest = vocab_entries.iter().map(|(_, id)| *id).chain(special_tokens.iter().map(|&(_, id)| id as u64)).max();
        let size = largest.map_or(0, |id| id.saturating_add(1) as usize);
        check_unused_ids(size, vocab_entries.len() + special_tokens.len()).map_err(invalid)?;
        let mut vocab: Vec<Option<Vec<u8>>> = vec![None; size];
        let mut place = |id: u32, bytes: Vec<u8>, what: &dyn Fn() -> String| -> Result<(), BpeError> {
            match vocab.get_mut(id as usize) {
                None => Err(invalid(format!("{} has id {id}, past the largest id {}", what(), size - 1))),
                Some(Some(_)) => Err(invalid(format!("id {id} is used twice"))),
                Some(slot) => {
                    *slot = Some(bytes);
                    Ok(())
                }
            }
        };
        let mut ids: FxHashMap<&str, u32> = FxHashMap::default();
        ids.reserve(vocab_entries.len());
        for (token, id) in &vocab_entries {
            let token = token.0.as_ref();
            let bytes = unicode_string_to_bytes(token).ok_or_else(|| invalid(format!("vocab entry {token:?} is not in byte-to-unicode form")))?;
            let what = || format!("vocab entry {token:?}");
            let id = id_of(*id, &what)?;
            place(id, bytes, &what)?;
            ids.insert(token, id);
        }
        for (name, id) in &special_tokens {
            place(*id, name.as_bytes().to_vec(), &|| format!("special token {name:?}"))?;
        }
        let vocab: Vec<Vec<u8>> = vocab.into_iter().map(Option::unwrap_or_default).collect();
        let merge_list = self.merges.ok_or_else(|| invalid("no \"merges\" list".into()))?;
        let mut merges = Vec::with_capacity(merge_list.len());
        for (rank, (a, b)) in merge_list.iter().enumerate() {
            let (a, b) = (a.0.as_ref(), b.0.as_ref());
            let (Some(&a), Some(&b)) = (ids.get(a), ids.get(b)) else {
                return Err(invalid(format!("merge {rank} ({a:?}, {b:?}) uses a token that is not in the vocab")));
            };
            merges.push((a, b));
        }
        Tokenizer::new(vocab, merges, special_tokens, pattern)
    }
}

/// Checks that the merges rebuild the vocabulary, as BPE learned it: merge i joins two
/// tokens, each a single byte or made by an earlier merge, into a token of the vocabulary
/// with a higher id than the merge before made (the ids are the ranks the encoder merges
/// by); no token is made twice, and every token longer than a byte that is not a special
/// token is made by a merge. Says what is wrong with the first merge that breaks a rule.
fn check_merges(
    vocab: &[Vec<u8>],
    merges: &[(u32, u32)],
    ids_by_bytes: &FxHashMap<&[u8], u32>,
    special: &[bool],
    merge_name: &dyn Fn(usize) -> String,
) -> Result<(), String> {
    const NONE: u32 = u32::MAX;
    let n = vocab.len();
    // The first merge that makes each id, and the id each merge makes (NONE: not a token).
    let mut made_by = vec![NONE; n];
    let mut made = Vec::with_capacity(merges.len());
    let mut joined = Vec::new();
    for (i, &(a, b)) in merges.iter().enumerate() {
        let id = match (vocab.get(a as usize), vocab.get(b as usize)) {
            (Some(left), Some(right)) => {
                joined.clear();
                joined.extend_from_slice(left);
                joined.extend_from_slice(right);
                ids_by_bytes.get(joined.as_slice()).copied().unwrap_or(NONE)
            }
            _ => NONE,
        };
        if id != NONE && made_by[id as usize] == NONE {
            made_by[id as usize] = i as u32;
        }
        made.push(id);
    }
    let show = |id: u32| printable(&vocab[id as usize]);
    let mut previous: Option<u32> = None;
    for (i, &(a, b)) in merges.iter().enumerate() {
        let name = || {
            let part = |id: u32| if (id as usize) < n { show(id) } else { format!("id {id}") };
            format!("{} ({} + {})", merge_name(i), part(a), part(b))
        };
        for side in [a, b] {
            if side as usize >= n {
                return Err(format!("{} uses id {side}, outside the vocabulary of {n}", name()));
            }
            if special[side as usize] {
                return Err(format!("{} uses the special token {} (id {side}), which merges never make or use", name(), show(side)));
            }
            if vocab[side as usize].is_empty() {
                return Err(format!("{} uses id {side}, which is no token's", name()));
            }
            let maker = made_by[side as usize];
            if vocab[side as usize].len() > 1 && maker as usize >= i {
                return Err(if maker == NONE {
                    format!("{} uses {} (id {side}), which no merge makes", name(), show(side))
                } else {
                    format!(
                        "{} uses {} (id {side}), which {} makes only later: the merges are out of order",
                        name(),
                        show(side),
                        merge_name(maker as usize)
                    )
                });
            }
        }
        let id = made[i];
        if id == NONE {
            let joined = [vocab[a as usize].as_slice(), vocab[b as usize].as_slice()].concat();
            return Err(format!("{} makes {}, which is not in the vocabulary", name(), printable(&joined)));
        }
        let first = made_by[id as usize] as usize;
        if first != i {
            return Err(format!("{} makes {} again ({} made it already)", name(), show(id), merge_name(first)));
        }
        if let Some(before) = previous.filter(|&before| id <= before) {
            return Err(format!(
                "{} makes token {id}, but the merge before it made token {before}: merges must come in the order \
                 of the ids they make (the ids are the ranks tokens are merged by)",
                name()
            ));
        }
        previous = Some(id);
    }
    let unmade = |id: usize| vocab[id].len() > 1 && !special[id] && made_by[id] == NONE;
    if let Some(id) = (0..n).find(|&id| unmade(id)) {
        if merges.is_empty() {
            let count = (0..n).filter(|&id| unmade(id)).count();
            return Err(format!(
                "there are no merges, but {count} tokens are longer than a byte (the first: token {id}, {})",
                show(id as u32)
            ));
        }
        return Err(format!("token {id} ({}) is made by no merge: a merge is missing", show(id as u32)));
    }
    Ok(())
}

/// Ids up to `size` for `used` tokens leave `size - used` unused: at most as many as the
/// tokens, or 65,536 (an id far past the others is a damaged file, not a vocabulary).
fn check_unused_ids(size: usize, used: usize) -> Result<(), String> {
    let unused = size.saturating_sub(used);
    if unused > used.max(1 << 16) {
        return Err(format!("its ids go up to {}, which leaves {unused} ids unused among {used} tokens", size - 1));
    }
    Ok(())
}

/// Writes `data` to a temporary file beside `path` and renames it into place, so that
/// `path` is never left half-written.
pub fn write_atomically(path: &Path, data: &[u8]) -> Result<(), BpeError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(BpeError::Io(format!("{}: the directory {} does not exist", path.display(), dir.display())));
    }
    let name = path.file_name().ok_or_else(|| BpeError::Io(format!("{}: not a file name", path.display())))?;
    let tmp = dir.join(format!(".{}.tmp{}", name.to_string_lossy(), std::process::id()));
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(data).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(BpeError::io(path, &e));
    }
    Ok(())
}

/// GPT-2's table from bytes to printable characters: printable Latin-1 bytes stand for
/// themselves, the others are moved to U+0100 and up.
pub fn byte_to_unicode() -> &'static [char; 256] {
    static TABLE: OnceLock<[char; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = ['\0'; 256];
        let mut next = 256u32;
        for b in 0..256u32 {
            let printable = (b'!' as u32..=b'~' as u32).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
            table[b as usize] = if printable {
                char::from_u32(b).unwrap()
            } else {
                next += 1;
                char::from_u32(next - 1).unwrap()
            };
        }
        table
    })
}

/// The inverse of `byte_to_unicode`, by code point (every character it uses is below U+0144).
fn unicode_to_byte() -> &'static [Option<u8>; 0x144] {
    static TABLE: OnceLock<[Option<u8>; 0x144]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = [None; 0x144];
        for (b, &c) in byte_to_unicode().iter().enumerate() {
            table[c as usize] = Some(b as u8);
        }
        table
    })
}

pub fn bytes_to_unicode_string(bytes: &[u8]) -> String {
    let table = byte_to_unicode();
    bytes.iter().map(|&b| table[b as usize]).collect()
}

pub fn unicode_string_to_bytes(s: &str) -> Option<Vec<u8>> {
    let table = unicode_to_byte();
    s.chars().map(|c| table.get(c as usize).copied().flatten()).collect()
}

/// Appends `s` as a JSON string, escaped as serde_json does.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends the bytes of a token as a JSON string of GPT-2's characters.
fn push_token(out: &mut String, bytes: &[u8]) {
    let table = byte_to_unicode();
    out.push('"');
    for &b in bytes {
        // GPT-2's characters need no escaping but `"` and `\`.
        match table[b as usize] {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Bytes shown as text where they are UTF-8, escaped where not.
pub fn printable(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Tokenizer {
        let mut vocab: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        vocab.push(b" t".to_vec());
        vocab.push(b" th".to_vec());
        vocab.push(b"<|endoftext|>".to_vec());
        let merges = vec![(b' ' as u32, b't' as u32), (256, b'h' as u32)];
        Tokenizer::new(vocab, merges, vec![("<|endoftext|>".into(), 258)], Pattern::Gpt2).unwrap()
    }

    #[test]
    fn json_round_trips() {
        let tok = tiny();
        let back = Tokenizer::from_json(&tok.to_json()).unwrap();
        assert_eq!(back.vocab(), tok.vocab());
        assert_eq!(back.merges(), tok.merges());
        assert_eq!(back.special_tokens(), tok.special_tokens());
        assert_eq!(back.to_json(), tok.to_json());
    }

    #[test]
    fn unused_ids_stay_unused_through_json() {
        let mut vocab = tiny().vocab().to_vec();
        vocab[258] = Vec::new();
        vocab.push(b"<|endoftext|>".to_vec());
        let tok = Tokenizer::new(vocab, tiny().merges().to_vec(), vec![("<|endoftext|>".into(), 259)], Pattern::Gpt2).unwrap();
        assert!(tok.is_unused(258) && !tok.is_unused(257) && !tok.is_unused(259) && !tok.is_unused(260));
        let back = Tokenizer::from_json(&tok.to_json()).unwrap();
        assert_eq!((back.vocab(), back.vocab_size()), (tok.vocab(), 260));
        assert!(back.is_unused(258));
    }

    #[test]
    fn json_strings_are_escaped_as_serde_json_does() {
        for text in ["plain", "quote \" and \\ backslash", "\n\r\t\u{8}\u{c}\u{1}\u{1f}", "é中😀\u{7f}", "<|endoftext|>"] {
            let mut out = String::new();
            push_json_str(&mut out, text);
            assert_eq!(out, serde_json::to_string(text).unwrap());
        }
        for b in 0..=255u8 {
            let mut out = String::new();
            push_token(&mut out, &[b]);
            assert_eq!(out, serde_json::to_string(&bytes_to_unicode_string(&[b])).unwrap());
        }
    }

    #[test]
    fn byte_to_unicode_is_gpt2s() {
        let t = byte_to_unicode();
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(unicode_string_to_bytes("Ġthe").unwrap(), b" the");
    }

    /// Bytes, then " t", " th", " the", "he" made by merges in that order, then a special token.
    fn four_merges() -> (Vec<Vec<u8>>, Vec<(u32, u32)>) {
        let mut vocab: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        vocab.extend([b" t".to_vec(), b" th".to_vec(), b" the".to_vec(), b"he".to_vec(), b"<|endoftext|>".to_vec()]);
        let merges = vec![(b' ' as u32, b't' as u32), (256, b'h' as u32), (257, b'e' as u32), (b'h' as u32, b'e' as u32)];
        (vocab, merges)
    }

    fn refusal(vocab: Vec<Vec<u8>>, merges: Vec<(u32, u32)>) -> String {
        match Tokenizer::new(vocab, merges, vec![("<|endoftext|>".into(), 260)], Pattern::Gpt2) {
            Err(BpeError::TokenizerFile(message)) => message,
            other => panic!("accepted, or refused otherwise: {other:?}"),
        }
    }

    #[test]
    fn merges_that_do_not_rebuild_the_vocabulary_are_refused_naming_the_first_bad_one() {
        let (vocab, merges) = four_merges();
        assert!(Tokenizer::new(vocab.clone(), merges.clone(), vec![("<|endoftext|>".into(), 260)], Pattern::Gpt2).is_ok());

        let mut duplicated = merges.clone();
        duplicated.insert(2, merges[1]);
        assert_eq!(refusal(vocab.clone(), duplicated), "merge 2 (\" t\" + \"h\") makes \" th\" again (merge 1 made it already)");

        let mut swapped = merges.clone();
        swapped.swap(0, 1);
        assert_eq!(
            refusal(vocab.clone(), swapped),
            "merge 0 (\" t\" + \"h\") uses \" t\" (id 256), which merge 1 makes only later: the merges are out of order"
        );

        let mut out_of_id_order = merges.clone();
        out_of_id_order.swap(2, 3);
        assert!(refusal(vocab.clone(), out_of_id_order).starts_with("merge 3 (\" th\" + \"e\") makes token 258, but the merge before it made token 259"));

        assert_eq!(refusal(vocab.clone(), merges[..3].to_vec()), "token 259 (\"he\") is made by no merge: a merge is missing");
        assert_eq!(
            refusal(vocab.clone(), vec![merges[0], merges[2], merges[3]]),
            "merge 1 (\" th\" + \"e\") uses \" th\" (id 257), which no merge makes"
        );
        assert_eq!(
            refusal(vocab.clone(), Vec::new()),
            "there are no merges, but 4 tokens are longer than a byte (the first: token 256, \" t\")"
        );
        let mut with_special = merges.clone();
        with_special.push((260, b'h' as u32));
        assert!(refusal(vocab.clone(), with_special).starts_with("merge 4 (\"<|endoftext|>\" + \"h\") uses the special token"));
        let mut outside = merges;
        outside[1] = (256, 9999);
        assert_eq!(refusal(vocab, outside), "merge 1 (\" t\" + id 9999) uses id 9999, outside the vocabulary of 261");
    }

    #[test]
    fn a_bad_merge_is_named_as_the_caller_asks() {
        let (vocab, mut merges) = four_merges();
        merges.swap(0, 1);
        let name = |i: usize| format!("line {}", i + 2);
        let refused = Tokenizer::with_merge_names(vocab, merges, vec![("<|endoftext|>".into(), 260)], Pattern::Gpt2, &name);
        assert!(matches!(refused, Err(BpeError::TokenizerFile(m)) if m.starts_with("line 2 (\" t\" + \"h\") uses \" t\" (id 256), which line 3 makes")));
    }

    #[test]
    fn an_id_that_is_not_a_whole_number_is_named_as_written() {
        let good = tiny().to_json();
        for (written, shown) in [("-1", "-1"), ("1.5", "1.5"), ("\"abc\"", "\"abc\""), ("null", "null")] {
            let bad = good.replace("\"Ġth\": 257", &format!("\"Ġth\": {written}"));
            let Err(BpeError::TokenizerFile(message)) = Tokenizer::from_json(&bad) else { panic!("{written} accepted") };
            assert_eq!(message, format!("vocab entry \"Ġth\" has id {shown}; ids are whole numbers from 0"));
            let bad = good.replace("\"<|endoftext|>\": 258", &format!("\"<|endoftext|>\": {written}"));
            let Err(BpeError::TokenizerFile(message)) = Tokenizer::from_json(&bad) else { panic!("{written} accepted") };
            assert_eq!(message, format!("special token \"<|endoftext|>\" has id {shown}; ids are whole numbers from 0"));
        }
    }

    #[test]
    fn damaged_files_are_refused() {
        let good = tiny().to_json();
        for bad in [
            "{",
            "[]",
            "{\"format\": \"other\"}",
            &good.replace("\"version\": 1", "\"version\": 9"),
            &good.replace("[\"Ġ\", \"t\"]", "[\"Ġ\", \"zz\"]"),
            &good.replace("\"Ġth\": 257", "\"Ġth\": 9000000"),
            &good.replace("\"Ġth\": 257", "\"Ġth\": 18446744073709551615"),
        ] {
            assert!(matches!(Tokenizer::from_json(bad), Err(BpeError::TokenizerFile(_))), "{bad:.60}");
        }
    }
}
