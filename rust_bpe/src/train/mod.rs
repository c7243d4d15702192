//! Byte-level BPE training with CS336 semantics.
//!
//! 1. Count pre-tokens: the corpus is cut into chunks at places where no pre-token or
//!    special token crosses, and the chunks are counted in parallel.
//! 2. Merge: the most frequent pair of adjacent tokens becomes a new token, ties going to
//!    the lexicographically greater pair of byte strings. Each merge touches only the
//!    words that contain its pair (an index pair -> words) and a lazy max-heap holds the
//!    pair counts, so no merge recounts the corpus.
//!
//! The result does not depend on the thread count or on where chunks are cut: the counts
//! are exact sums and the choice of each merge depends only on them.

mod count;
mod merge;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use rayon::prelude::*;
use rustc_hash::{FxBuildHasher, FxHashMap};

use crate::error::BpeError;
pub use crate::corpus::input::Input;
use crate::corpus::input::{read_ahead, Chunks, Source};
use crate::packed_table::{hash, PackedTable};
use crate::pretokenize::{pack_at, unpack, Pattern, Piece, SpecialTokens, MAX_PACKED, PATTERN_NAMES};
use crate::tokenizer::Tokenizer;
pub use self::count::*;
pub use self::merge::*;

#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// 256 byte tokens + special tokens + merges.
    pub vocab_size: u64,
    pub special_tokens: Vec<String>,
    pub pattern: Pattern,
    /// 0 means all cores.
    pub threads: usize,
    /// Refuse input that is not UTF-8 instead of replacing the bad bytes with U+FFFD.
    pub strict_utf8: bool,
}

#[derive(Clone, Debug, Default)]
pub struct TrainReport {
    pub bytes_read: u64,
    pub invalid_utf8_bytes: u64,
    pub pretokens: u64,
    pub unique_pretokens: u64,
    pub merges_requested: u64,
    pub merges_learned: u64,
    pub count_seconds: f64,
    pub merge_seconds: f64,
}

/// What training reports as it goes; the callback returns false to stop training.
#[derive(Clone, Copy, Debug)]
pub enum Progress {
    Counting { bytes_done: u64, bytes_total: Option<u64> },
    Merging { done: u64, total: u64 },
}

pub const MAX_VOCAB_SIZE: u64 = 1 << 31;

pub fn train(
    inputs: &[Input],
    options: &TrainOptions,
    progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<(Tokenizer, TrainReport), BpeError> {
    let specials = SpecialTokens::new(&options.special_tokens)?;
    let floor = 256 + options.special_tokens.len() as u64;
    if options.vocab_size < floor || options.vocab_size > MAX_VOCAB_SIZE {
        return Err(BpeError::InvalidVocabSize(format!(
            "vocab size {} is out of range: it must be at least {floor} (256 bytes + {} special tokens) and at most 2^31",
            options.vocab_size,
            options.special_tokens.len()
        )));
    }
    if inputs.is_empty() {
        return Err(BpeError::EmptyCorpus("no input files".into()));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.threads)
        .build()
        .map_err(|e| BpeError::InvalidArgument(format!("cannot start {} threads: {e}", options.threads)))?;
    let mut report = TrainReport { merges_requested: options.vocab_size - floor, ..Default::default() };

    let started = Instant::now();
    let coverage_before = options.pattern.coverage();
    let counts = count_pretokens(&pool, inputs, options, &specials, &mut report, progress)?;
    report.unique_pretokens = counts.len() as u64;
    report.count_seconds = started.elapsed().as_secs_f64();
    if let Some(share) = options.pattern.mostly_unmatched_since(coverage_before) {
        return Err(BpeError::EmptyCorpus(format!(
            "the pattern matched only {:.1}% of the text, and the rest would be left out of every token: check the \
             regular expression (the pattern names are {PATTERN_NAMES}, in any case)",
            100.0 * share
        )));
    }
    if counts.is_empty() {
        return Err(BpeError::EmptyCorpus(format!(
            "the corpus is empty: {} holds no text{}",
            inputs.iter().map(Input::name).collect::<Vec<_>>().join(", "),
            if specials.is_empty() { "" } else { " outside special tokens" }
        )));
    }

    let started = Instant::now();
    let (mut vocab, merges) = learn_merges(counts, report.merges_requested, progress)?;
    report.merges_learned = merges.len() as u64;
    report.merge_seconds = started.elapsed().as_secs_f64();

    let first_special = vocab.len() as u32;
    let special_tokens: Vec<(String, u32)> =
        options.special_tokens.iter().enumerate().map(|(i, s)| (s.clone(), first_special + i as u32)).collect();
    vocab.extend(options.special_tokens.iter().map(|s| s.as_bytes().to_vec()));
    let tokenizer = Tokenizer::new(vocab, merges, special_tokens, options.pattern.clone())?;
    Ok((tokenizer, report))
}
