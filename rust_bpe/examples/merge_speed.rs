//! The first-time merge alone: every distinct pre-token of at most 15 bytes of FILE that is
//! not a token, merged as `encode` merges one it meets for the first time (one thread,
//! best of 5): `cargo run --release --example merge_speed TOKENIZER.json FILE`.
use std::collections::HashSet;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let tokenizer = rust_bpe::Tokenizer::load(std::path::Path::new(&args[1])).expect("a tokenizer file");
    let text = std::fs::read_to_string(&args[2]).expect("a UTF-8 file");
    let tokens: HashSet<&[u8]> = tokenizer.vocab().iter().map(|t| t.as_slice()).collect();
    let mut seen = HashSet::new();
    let mut pieces: Vec<&[u8]> = Vec::new();
    tokenizer.pattern().split(&text, |piece| {
        let piece = piece.as_bytes();
        if piece.len() <= rust_bpe::pretokenize::MAX_PACKED && !tokens.contains(piece) && seen.insert(piece) {
            pieces.push(piece);
        }
    });
    let tokens = tokens.len();
    let encoder = rust_bpe::Encoder::new(tokenizer);
    let bytes: usize = pieces.iter().map(|p| p.len()).sum();
    println!("{:.2} bytes a pre-token", bytes as f64 / pieces.len() as f64);
    for portable in [false, true, false, true] {
        let (mut best, mut digest) = (f64::MAX, 0);
        for _ in 0..5 {
            let started = Instant::now();
            digest = std::hint::black_box(encoder.merge_short_each(&pieces, portable));
            best = best.min(started.elapsed().as_secs_f64());
            if std::env::var_os("EACH").is_some() { eprint!("{:.1} ", started.elapsed().as_secs_f64() * 1e9 / pieces.len() as f64); }
        }
        let name = if portable { "portable" } else { "as encode" };
        println!("{name:>9}: {} pre-tokens ({tokens} tokens), {:.1} ns each, ids {digest:016x}", pieces.len(), best * 1e9 / pieces.len() as f64);
    }
}
