//! Training time per phase: `cargo run --release --example train_speed FILE VOCAB [THREADS]`.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let options = rust_bpe::TrainOptions {
        vocab_size: args[2].parse().expect("a vocab size"),
        special_tokens: vec!["<|endoftext|>".into()],
        pattern: rust_bpe::Pattern::Gpt2,
        threads: args.get(3).map_or(0, |t| t.parse().expect("a thread count")),
        strict_utf8: false,
    };
    let inputs = [rust_bpe::Input::File(args[1].clone().into())];
    let (tok, report) = rust_bpe::train(&inputs, &options, &mut |_| true).expect("training");
    println!("{} merges; count {:.3} s, merge {:.3} s", tok.merges().len(), report.count_seconds, report.merge_seconds);
}
