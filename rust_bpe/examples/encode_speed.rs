//! Encoder throughput on one file: `cargo run --release --example encode_speed TOKENIZER.json FILE`.
use std::time::Instant;

/// CPU seconds this thread has used (from /proc, in clock ticks of 10 ms): unlike wall
/// time, it does not count the time other processes had the core.
fn thread_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let tokenizer = rust_bpe::Tokenizer::load(std::path::Path::new(&args[1])).expect("a tokenizer file");
    let text = std::fs::read_to_string(&args[2]).expect("a UTF-8 file");
    let started = Instant::now();
    let encoder = rust_bpe::Encoder::new(tokenizer);
    println!("encoder built in {:.3} s", started.elapsed().as_secs_f64());
    for round in 0..3 {
        let (started, cpu) = (Instant::now(), thread_cpu_seconds());
        let mut ids = Vec::new();
        let mut repeats = 0;
        while repeats == 0 || thread_cpu_seconds() - cpu < 1.0 {
            ids = encoder.encode_ordinary(&text, None);
            repeats += 1;
        }
        let (wall, cpu) = (started.elapsed().as_secs_f64(), thread_cpu_seconds() - cpu);
        let mb = text.len() as f64 * repeats as f64 / 1e6;
        println!("round {round}: {} ids, {:.1} MB/s of CPU time ({:.1} MB/s wall)", ids.len(), mb / cpu, mb / wall);
    }
}
