//! rust_bpe: the core of pybpe. A pre-tokenizer, a byte-level BPE trainer with CS336
//! semantics, a tiktoken-exact encoder, the tokenizer file format; `python` holds the pyo3 bindings.

pub mod corpus;
pub mod encode;
pub mod error;
pub mod packed_table;
pub mod pretokenize;
pub mod text;
pub mod tokenizer;
pub mod train;

#[cfg(feature = "python")]
mod python;

pub use encode::{Allowed, Encoder, Parts};
pub use error::BpeError;
pub use pretokenize::{Pattern, SpecialTokens};
pub use tokenizer::Tokenizer;
pub use train::{train, Input, Progress, TrainOptions, TrainReport};
