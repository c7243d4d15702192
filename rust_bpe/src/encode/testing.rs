//! Encoders trained on small texts, and ids found without the cache, for the tests.

use super::*;
use crate::pretokenize::{pack, Pattern};
use crate::train::{train, Input, TrainOptions};

/// A tokenizer trained on a small text (its file is one per call: tests run in parallel).
pub(crate) fn trained() -> Encoder {
    trained_on(&"the quick brown fox jumps over the lazy dog. aaaaaaaa  \n\n the end<|endoftext|>".repeat(50), 320)
}

pub(crate) fn trained_on(text: &str, vocab_size: u64) -> Encoder {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("rust_bpe_encode_test_{}_{call}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("corpus.txt");
    std::fs::write(&path, text).unwrap();
    let options = TrainOptions {
        vocab_size,
        special_tokens: vec!["<|endoftext|>".into()],
        pattern: Pattern::Gpt2,
        threads: 1,
        strict_utf8: false,
    };
    let (tok, _) = train(&[Input::File(path)], &options, &mut |_| true).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    Encoder::new(tok)
}

/// The ids of `text` without any cache: each pre-token looked up in the vocabulary, or
/// merged by `merge_long`.
pub(crate) fn uncached(enc: &Encoder, text: &str) -> Vec<u32> {
    let mut out = Vec::new();
    enc.tokenizer().pattern().split(text, |piece| {
        let bytes = piece.as_bytes();
        let token = if bytes.len() <= MAX_PACKED {
            enc.short_tokens.get(pack(bytes), hash(pack(bytes))).map(|cached| cached.ids[0])
        } else {
            enc.long_tokens.get(bytes).copied()
        };
        match token {
            Some(id) => out.push(id),
            None => enc.merge_long(bytes, &mut out),
        }
    });
    out
}
