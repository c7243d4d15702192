//! rust_bpe: the core of pybpe. A pre-tokenizer, a byte-level BPE trainer with CS336
//! semantics, a tiktoken-exact encoder, the tokenizer file format; `python` holds the pyo3 bindings.
//!
//! - `pretokenize/`: patterns (`mod.rs`), the built-in state machines (`builtin.rs`), their
//!   64-byte block rules (`blocks.rs`), special tokens, safe cuts, packed pre-tokens.
//! - `train/`: the trainer's entry (`mod.rs`), counting pre-tokens (`count.rs`), the merge
//!   loop (`merge.rs`).
//! - `encode/`: the encoder's public face (`mod.rs`), the block loop over pre-tokens
//!   (`blocks.rs`), the shared pre-token cache (`pretoken_cache.rs`) and a thread's hold on
//!   it (`thread_cache.rs`), the first-time merge (`merge.rs`, `merge_avx512.rs`), the pair
//!   table (`pair_ranks.rs`), long pre-tokens (`long.rs`, `backtrack.rs`), special tokens
//!   (`specials.rs`), parallel chunks (`chunks.rs`).
//! - `tokenizer.rs`: the tokenizer and its file; `packed_table.rs`: the hash table of packed
//!   pre-tokens that training and encoding share.
//! - `corpus/`: input read in chunks, and encoding to token files; `text/`: UTF-8 of a str's
//!   storage, huge pages; `error.rs`; `python.rs`.

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
