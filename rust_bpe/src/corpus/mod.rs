//! Corpora as files, pipes or standard input: read in chunks cut at safe places (`input`),
//! and encoded to token files (`token_file`).

pub mod input;
mod token_file;

pub use self::token_file::*;
