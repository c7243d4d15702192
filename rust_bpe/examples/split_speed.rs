//! Pre-tokenizer throughput on one file, one thread: `cargo run --release --example split_speed FILE`.
use std::time::Instant;

fn main() {
    let path = std::env::args().nth(1).expect("usage: split_speed FILE");
    let text = std::fs::read_to_string(&path).expect("a UTF-8 file");
    for name in ["gpt2", "gpt4"] {
        let pattern = rust_bpe::Pattern::parse(name).unwrap();
        let mut best = f64::MAX;
        let mut count = 0usize;
        for _ in 0..3 {
            let started = Instant::now();
            count = 0;
            pattern.split(&text, |_| count += 1);
            best = best.min(started.elapsed().as_secs_f64());
        }
        println!("{name}: {count} pre-tokens, {:.0} MB/s", text.len() as f64 / best / 1e6);
    }
}
