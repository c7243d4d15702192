fn main() {
    let args: Vec<String> = std::env::args().collect();
    let t = std::time::Instant::now();
    for _ in 0..20 {
        let tokenizer = rust_bpe::Tokenizer::load(std::path::Path::new(&args[1])).unwrap();
        let t2 = std::time::Instant::now();
        let e = rust_bpe::Encoder::new(tokenizer);
        eprintln!("build {:.4}", t2.elapsed().as_secs_f64());
        std::hint::black_box(e);
    }
    eprintln!("{:.4}", t.elapsed().as_secs_f64() / 20.0);
}
