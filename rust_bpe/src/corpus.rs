//! Encoding text files to a token file: raw little-endian uint16 or uint32 ids, in order.
//! Files are memory-mapped and cut into chunks that the threads take one after another and
//! the writer writes in order, so memory is bounded by threads x chunk size, not by the corpus.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

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
    // A writer thread writes the encoded chunks, in order, while the pool encodes more.
    let threads = pool.current_num_threads();
    let (send, receive) = std::sync::mpsc::sync_channel::<EncodedChunk>(threads * 2);
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<(), BpeError> {
            let mut file = file;
            let mut written = 0;
            for chunk in receive {
                let bytes = chunk.le_bytes();
                file.write_all(&bytes).map_err(|e| BpeError::io(out, &e))?;
                start_writeback(&file, written, bytes.len());
                written += bytes.len();
            }
            file.sync_all().map_err(|e| BpeError::io(out, &e))
        });
        let mut encoded = Ok(());
        for path in inputs {
            encoded = encode_file(encoder, path, itemsize, pool, total, &mut report, progress, &send);
            if encoded.is_err() {
                break;
            }
        }
        drop(send);
        let written = writer.join().expect("writer thread");
        encoded.and(written)
    })?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Asks the kernel to start writing `len` bytes at `offset` of `file` to disk, without
/// waiting: the `fsync` at the end then has little left to wait for, and a large output
/// does not pile up in memory as dirty pages (Linux; elsewhere the `fsync` does it all).
fn start_writeback(file: &std::fs::File, offset: usize, len: usize) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a hint on a range of an open file; it reads no memory of ours.
        unsafe { libc::sync_file_range(file.as_raw_fd(), offset as libc::off64_t, len as libc::off64_t, libc::SYNC_FILE_RANGE_WRITE) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// Chunks encoded but not yet sent to the writer, which takes them in order.
struct InOrder {
    ready: BTreeMap<usize, (EncodedChunk, usize, usize)>,
    next: usize,
}

/// Encodes one file, cut into chunks that the threads of the pool and the calling thread
/// take one after another; each chunk goes to the writer as soon as those before it have.
/// At most `AHEAD` chunks per thread are held in memory. The calling thread reports progress.
#[allow(clippy::too_many_arguments)]
fn encode_file(
    encoder: &Encoder,
    path: &Path,
    itemsize: usize,
    pool: &rayon::ThreadPool,
    total: u64,
    report: &mut EncodeFilesReport,
    progress: &mut dyn FnMut(u64, u64) -> bool,
    writer: &std::sync::mpsc::SyncSender<EncodedChunk>,
) -> Result<(), BpeError> {
    const AHEAD: usize = 3;
    let tokenizer = encoder.tokenizer();
    let file = std::fs::File::open(path).map_err(|e| BpeError::io(path, &e))?;
    let len = file.metadata().map_err(|e| BpeError::io(path, &e))?.len();
    report.sources.push((path.display().to_string(), len));
    if len == 0 {
        return Ok(());
    }
    // SAFETY: read-only map; a file changed while it is encoded gives wrong ids, nothing worse.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| BpeError::io(path, &e))?;
    #[cfg(unix)]
    let _ = map.advise(memmap2::Advice::Sequential);
    let threads = pool.current_num_threads();
    let target = (map.len() / (threads * 4)).clamp(256 << 10, CHUNK_BYTES);
    let chunks = Mutex::new((0usize, chunks(&map, target, tokenizer.pattern(), tokenizer.specials())));
    let in_order = Mutex::new(InOrder { ready: BTreeMap::new(), next: 0 });
    let sent = Condvar::new();
    let (stop, bytes_done) = (AtomicBool::new(false), AtomicU64::new(0));
    let (num_tokens, invalid_bytes) = (AtomicU64::new(0), AtomicU64::new(0));
    // Encodes the next chunk; false when there is none left (or the job stopped).
    let encode_next = || -> bool {
        let Some((i, (start, end))) = ({
            let mut next = chunks.lock().expect("chunks");
            let i = next.0;
            next.0 += 1;
            next.1.next().map(|chunk| (i, chunk))
        }) else {
            return false;
        };
        {
            let mut state = in_order.lock().expect("in order");
            while i >= state.next + AHEAD * threads && !stop.load(Ordering::Relaxed) {
                state = sent.wait(state).expect("in order");
            }
        }
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let bytes = &map[start..end];
        let (text, invalid) = match std::str::from_utf8(bytes) {
            Ok(text) => (Cow::Borrowed(text), 0),
            Err(_) => (String::from_utf8_lossy(bytes), bytes.utf8_chunks().map(|c| c.invalid().len() as u64).sum()),
        };
        let out = match itemsize {
            2 => EncodedChunk::U16(encoder.encode_all_specials(&text, map.len())),
            _ => EncodedChunk::U32(encoder.encode_all_specials(&text, map.len())),
        };
        num_tokens.fetch_add(out.len() as u64, Ordering::Relaxed);
        invalid_bytes.fetch_add(invalid, Ordering::Relaxed);
        let mut state = in_order.lock().expect("in order");
        state.ready.insert(i, (out, start, end));
        loop {
            let next = state.next;
            let Some((out, start, end)) = state.ready.remove(&next) else { break };
            if writer.send(out).is_err() {
                // The writer stopped on an error, which it returns.
                stop.store(true, Ordering::Relaxed);
                break;
            }
            release_pages(&map, start, end);
            bytes_done.fetch_add((end - start) as u64, Ordering::Relaxed);
            state.next += 1;
        }
        sent.notify_all();
        true
    };
    let done_before = report.bytes_read;
    let mut interrupted = false;
    pool.in_place_scope(|scope| {
        for _ in 1..threads {
            scope.spawn(|_| while encode_next() {});
        }
        while encode_next() {
            if !progress(done_before + bytes_done.load(Ordering::Relaxed), total) {
                interrupted = true;
                stop.store(true, Ordering::Relaxed);
                sent.notify_all();
            }
        }
    });
    report.bytes_read = done_before + bytes_done.load(Ordering::Relaxed);
    report.num_tokens += num_tokens.load(Ordering::Relaxed);
    report.invalid_utf8_bytes += invalid_bytes.load(Ordering::Relaxed);
    if interrupted {
        return Err(BpeError::Interrupted);
    }
    if !stop.load(Ordering::Relaxed) && !progress(report.bytes_read, total) {
        return Err(BpeError::Interrupted);
    }
    Ok(())
}

/// The ids of a chunk, as the token file holds them.
enum EncodedChunk {
    U16(Vec<u16>),
    U32(Vec<u32>),
}

impl EncodedChunk {
    fn len(&self) -> usize {
        match self {
            EncodedChunk::U16(ids) => ids.len(),
            EncodedChunk::U32(ids) => ids.len(),
        }
    }

    /// The ids as little-endian bytes (the ids' own memory on a little-endian machine).
    fn le_bytes(&self) -> Cow<'_, [u8]> {
        fn bytes<T>(ids: &[T]) -> &[u8] {
            // SAFETY: u16 and u32 have no padding; any byte of them may be read.
            unsafe { std::slice::from_raw_parts(ids.as_ptr() as *const u8, std::mem::size_of_val(ids)) }
        }
        match self {
            EncodedChunk::U16(ids) if cfg!(target_endian = "little") => Cow::Borrowed(bytes(ids)),
            EncodedChunk::U32(ids) if cfg!(target_endian = "little") => Cow::Borrowed(bytes(ids)),
            EncodedChunk::U16(ids) => Cow::Owned(ids.iter().flat_map(|id| id.to_le_bytes()).collect()),
            EncodedChunk::U32(ids) => Cow::Owned(ids.iter().flat_map(|id| id.to_le_bytes()).collect()),
        }
    }
}
