//! Every way the core can fail, each with a one-line message for the user.

use std::fmt;
use std::path::Path;

#[derive(Debug)]
pub enum BpeError {
    /// A file could not be read or written.
    Io(String),
    /// Input is not UTF-8 and strict decoding was asked for.
    InvalidUtf8(String),
    /// The corpus holds no text to learn from.
    EmptyCorpus(String),
    InvalidVocabSize(String),
    InvalidPattern(String),
    InvalidSpecialToken(String),
    /// A tokenizer file that is not one, or is damaged.
    TokenizerFile(String),
    /// Anything else the caller asked for that cannot be done.
    InvalidArgument(String),
    /// Text holds a special token that the caller did not allow.
    DisallowedSpecial(String),
    /// Text (given as code points) holds a lone surrogate, which UTF-8 cannot encode, at
    /// this character.
    LoneSurrogate(usize),
    /// Stopped by the caller (Ctrl-C).
    Interrupted,
}

impl BpeError {
    pub fn io(path: &Path, err: &std::io::Error) -> BpeError {
        let what = match err.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            std::io::ErrorKind::IsADirectory => "is a directory".to_string(),
            std::io::ErrorKind::StorageFull => "no space left on the device (disk full)".to_string(),
            _ => err.to_string(),
        };
        BpeError::Io(format!("{}: {what}", path.display()))
    }
}

impl fmt::Display for BpeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BpeError::Io(m)
            | BpeError::InvalidUtf8(m)
            | BpeError::EmptyCorpus(m)
            | BpeError::InvalidVocabSize(m)
            | BpeError::InvalidPattern(m)
            | BpeError::InvalidSpecialToken(m)
            | BpeError::TokenizerFile(m)
            | BpeError::InvalidArgument(m) => f.write_str(m),
            BpeError::DisallowedSpecial(token) => write!(
                f,
                "the text contains the special token {token:?}, which is disallowed: pass allowed_special to encode it \
                 as a special token, or disallowed_special=() to encode it as text"
            ),
            BpeError::LoneSurrogate(at) => write!(f, "the text holds a lone surrogate at character {at}, which UTF-8 cannot encode"),
            BpeError::Interrupted => f.write_str("interrupted"),
        }
    }
}

impl std::error::Error for BpeError {}
