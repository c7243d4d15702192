//! rust_bpe: the core of pybpe. A pre-tokenizer, a byte-level BPE trainer with CS336
//! semantics, a tiktoken-exact encoder, the tokenizer file format; `python` holds the pyo3 bindings.

pub mod corpus;
pub mod encode;
pub mod error;
pub mod input;
mod huge_pages;
pub mod packed_table;
pub mod pretokenize;
pub mod tokenizer;
pub mod train;
pub mod utf8;

#[cfg(feature = "python")]
mod python;
#[cfg(feature = "python")]
mod str_storage;

pub use encode::{Allowed, Encoder, Parts};
pub use error::BpeError;
pub use pretokenize::{Pattern, SpecialTokens};
pub use tokenizer::Tokenizer;
pub use train::{train, Input, Progress, TrainOptions, TrainReport};
