//! Encoding text files to a token file: raw little-endian uint16 or uint32 ids, in order.
//! Files are memory-mapped and cut into chunks that are encoded in parallel, a batch at a
//! time, so memory is bounded by threads x chunk size, not by the corpus.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use crate::encode::Encoder;
use crate::error::BpeError;
use crate::pretokenize::chunks;
use crate::train::release_pages;

const CHUNK_BYTES: usize = 4 << 20;

#[derive(Debug, Default)]
pub struct EncodeFilesReport {
    pub num_tokens: u64,
    pub bytes_read: u64,
    pub invalid_utf8_bytes: u64,
    /// (path, bytes) of each input.
    pub sources: Vec<(String, u64)>,
    pub seconds: f64,
}

/// Writes the ids of `inputs` (special tokens read as such) to `out` as `itemsize`-byte
/// integers. `progress(bytes_done, bytes_total)` returns false to stop.
pub fn encode_files(
    encoder: &Encoder,
    inputs: &[PathBuf],
    out: &Path,
    itemsize: usize,
    pool: &rayon::ThreadPool,
    progress: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<EncodeFilesReport, BpeError> {
    let tokenizer = encoder.tokenizer();
    if itemsize == 2 && tokenizer.vocab_size() > 1 << 16 {
        return Err(BpeError::InvalidArgument(format!(
            "uint16 holds ids below 65536, but the vocabulary has {} tokens: use uint32",
            tokenizer.vocab_size()
        )));
    }
    let started = Instant::now();
    let mut report = EncodeFilesReport::default();
    let mut total = 0u64;
    for path in inputs {
        let meta = std::fs::metadata(path).map_err(|e| BpeError::io(path, &e))?;
        if meta.is_dir() {
            return Err(BpeError::Io(format!("{}: is a directory, not a text file", path.display())));
        }
        std::fs::File::open(path).map_err(|e| BpeError::io(path, &e))?;
        total += meta.len();
    }
    let file = std::fs::File::create(out).map_err(|e| BpeError::io(out, &e))?;
    let mut writer = BufWriter::with_capacity(8 << 20, file);
    let threads = pool.current_num_threads();
    let mut bytes_out = Vec::new();
    for path in inputs {
        let file = std::fs::File::open(path).map_err(|e| BpeError::io(path, &e))?;
        let len = file.metadata().map_err(|e| BpeError::io(path, &e))?.len();
        report.sources.push((path.display().to_string(), len));
        if len == 0 {
            continue;
        }
        // SAFETY: read-only map; a file changed while it is encoded gives wrong ids, nothing worse.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| BpeError::io(path, &e))?;
        #[cfg(unix)]
        let _ = map.advise(memmap2::Advice::Sequential);
        let target = (map.len() / (threads * 4)).clamp(256 << 10, CHUNK_BYTES);
        let mut chunks = chunks(&map, target, tokenizer.pattern(), tokenizer.specials());
        loop {
            let batch: Vec<(usize, usize)> = chunks.by_ref().take(threads * 2).collect();
            let Some(&(first, _)) = batch.first() else { break };
            let batch = &batch[..];
            let encoded: Vec<(Vec<u32>, u64)> = pool.install(|| {
                batch
                    .par_iter()
                    .map(|&(start, end)| {
                        let bytes = &map[start..end];
                        match std::str::from_utf8(bytes) {
                            Ok(text) => (encode_all_specials(encoder, text), 0),
                            Err(_) => {
                                let invalid = bytes.utf8_chunks().map(|c| c.invalid().len() as u64).sum();
                                (encode_all_specials(encoder, &String::from_utf8_lossy(bytes)), invalid)
                            }
                        }
                    })
                    .collect()
            });
            for (ids, invalid) in encoded {
                report.num_tokens += ids.len() as u64;
                report.invalid_utf8_bytes += invalid;
                bytes_out.clear();
                if itemsize == 2 {
                    bytes_out.extend(ids.iter().flat_map(|&id| (id as u16).to_le_bytes()));
                } else {
                    bytes_out.extend(ids.iter().flat_map(|&id| id.to_le_bytes()));
                }
                writer.write_all(&bytes_out).map_err(|e| BpeError::io(out, &e))?;
            }
            report.bytes_read += batch.iter().map(|(s, e)| (e - s) as u64).sum::<u64>();
            release_pages(&map, first, batch[batch.len() - 1].1);
            if !progress(report.bytes_read, total) {
                return Err(BpeError::Interrupted);
            }
        }
    }
    writer.flush().map_err(|e| BpeError::io(out, &e))?;
    writer.get_ref().sync_all().map_err(|e| BpeError::io(out, &e))?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn encode_all_specials(encoder: &Encoder, text: &str) -> Vec<u32> {
    use crate::encode::Allowed;
    encoder.encode(text, &Allowed::All, &Allowed::None, None).expect("no special token is disallowed")
}
