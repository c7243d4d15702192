//! Encoder throughput on one file: `cargo run --release --example encode_speed TOKENIZER.json FILE`.
//! The first encoding starts with a cold cache (as a file encoded once); later ones are warm
//! (`--cold` after FILE: only the first).
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let tokenizer = rust_bpe::Tokenizer::load(std::path::Path::new(&args[1])).expect("a tokenizer file");
    let text = std::fs::read_to_string(&args[2]).expect("a UTF-8 file");
    let started = Instant::now();
    let encoder = rust_bpe::Encoder::new(tokenizer);
    println!("encoder built in {:.3} s", started.elapsed().as_secs_f64());
    let mb = text.len() as f64 / 1e6;
    let started = Instant::now();
    let ids = encoder.encode_ordinary(&text, None);
    println!("cold: {} ids, {:.1} MB/s wall", ids.len(), mb / started.elapsed().as_secs_f64());
    if args.get(3).is_some_and(|a| a == "--cold") {
        return;
    }
    let mut best = f64::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        std::hint::black_box(encoder.encode_ordinary(&text, None));
        best = best.min(started.elapsed().as_secs_f64());
    }
    println!("warm: {:.1} MB/s wall (best of 5)", mb / best);
}
