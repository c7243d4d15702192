//! Encoder throughput on one file: `cargo run --release --example encode_speed TOKENIZER.json FILE`.
//! The first encoding starts with a cold cache (as a file encoded once); later ones are warm
//! (`--cold` after FILE: only the first; `--threads N`: chunks encoded on N threads).
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
    let threads = args.iter().position(|a| a == "--threads").map_or(1, |i| args[i + 1].parse().expect("a thread count"));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a thread pool");
    let pool = (threads > 1).then_some(&pool);
    // The ids as u16, joined, as `encode_to_numpy` has them.
    let encode = || encoder.encode_parts::<u16>(&text, &rust_bpe::Allowed::All, &rust_bpe::Allowed::None, pool).expect("encodable").join(pool);
    let ids = encode().len();
    println!("cold: {ids} ids, {:.1} MB/s wall", mb / started.elapsed().as_secs_f64());
    if args.iter().any(|a| a == "--cold") {
        return;
    }
    let mut best = f64::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        std::hint::black_box(encode());
        best = best.min(started.elapsed().as_secs_f64());
    }
    println!("warm: {:.1} MB/s wall (best of 5)", mb / best);
}
