//! Encoding text files to a token file: raw little-endian uint16 or uint32 ids, in order.
//! Files are memory-mapped and cut into chunks that are encoded in parallel, a batch at a
//! time, so memory is bounded by threads x chunk size, not by the corpus.

use std::io::Write;
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
    let threads = pool.current_num_threads();
    // A writer thread writes one batch while the pool encodes the next.
    let (send, receive) = std::sync::mpsc::sync_channel::<Vec<Vec<u8>>>(1);
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<(), BpeError> {
            let mut file = file;
            for batch in receive {
                for bytes in batch {
                    file.write_all(&bytes).map_err(|e| BpeError::io(out, &e))?;
                }
            }
            file.sync_all().map_err(|e| BpeError::io(out, &e))
        });
        let encoded = encode_into_batches(encoder, inputs, itemsize, threads, pool, total, &mut report, progress, &send);
        drop(send);
        let written = writer.join().expect("writer thread");
        encoded.and(written)
    })?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Encodes the inputs chunk by chunk, `threads * 2` chunks at a time in parallel, each to
/// its bytes in the output format, and sends each batch to the writer.
#[allow(clippy::too_many_arguments)]
fn encode_into_batches(
    encoder: &Encoder,
    inputs: &[PathBuf],
    itemsize: usize,
    threads: usize,
    pool: &rayon::ThreadPool,
    total: u64,
    report: &mut EncodeFilesReport,
    progress: &mut dyn FnMut(u64, u64) -> bool,
    writer: &std::sync::mpsc::SyncSender<Vec<Vec<u8>>>,
) -> Result<(), BpeError> {
    let tokenizer = encoder.tokenizer();
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
            let encoded: Vec<(Vec<u8>, u64, u64)> = pool.install(|| {
                batch
                    .par_iter()
                    .map(|&(start, end)| {
                        let bytes = &map[start..end];
                        let (ids, invalid) = match std::str::from_utf8(bytes) {
                            Ok(text) => (encode_all_specials(encoder, text), 0),
                            Err(_) => {
                                let invalid = bytes.utf8_chunks().map(|c| c.invalid().len() as u64).sum();
                                (encode_all_specials(encoder, &String::from_utf8_lossy(bytes)), invalid)
                            }
                        };
                        let mut out = vec![0u8; ids.len() * itemsize];
                        write_le(&mut out, &ids, itemsize);
                        (out, ids.len() as u64, invalid)
                    })
                    .collect()
            });
            let mut bytes = Vec::with_capacity(encoded.len());
            for (out, num_tokens, invalid) in encoded {
                report.num_tokens += num_tokens;
                report.invalid_utf8_bytes += invalid;
                bytes.push(out);
            }
            if writer.send(bytes).is_err() {
                // The writer stopped on an error, which it returns.
                return Ok(());
            }
            report.bytes_read += batch.iter().map(|(s, e)| (e - s) as u64).sum::<u64>();
            release_pages(&map, first, batch[batch.len() - 1].1);
            if !progress(report.bytes_read, total) {
                return Err(BpeError::Interrupted);
            }
        }
    }
    Ok(())
}

fn encode_all_specials(encoder: &Encoder, text: &str) -> Vec<u32> {
    use crate::encode::Allowed;
    encoder.encode(text, &Allowed::All, &Allowed::None, None).expect("no special token is disallowed")
}

/// `ids` as little-endian integers of `itemsize` bytes (2 or 4) into `out`.
pub(crate) fn write_le(out: &mut [u8], ids: &[u32], itemsize: usize) {
    if itemsize == 2 {
        for (out, &id) in out.chunks_exact_mut(2).zip(ids) {
            out.copy_from_slice(&(id as u16).to_le_bytes());
        }
    } else {
        for (out, &id) in out.chunks_exact_mut(4).zip(ids) {
            out.copy_from_slice(&id.to_le_bytes());
        }
    }
}
