//! Encoding text to a token file: raw little-endian uint16 or uint32 ids, in order.
//! Inputs (files, pipes, standard input) are read in chunks (see `input`) that the threads
//! take one after another and a writer takes in order, so memory is bounded by threads x
//! chunk size, not by the corpus.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use crate::encode::Encoder;
use crate::error::BpeError;
use crate::corpus::input::{read_ahead, Chunks, Input, Source};

const CHUNK_BYTES: usize = 4 << 20;

#[derive(Debug, Default)]
pub struct EncodeFilesReport {
    pub num_tokens: u64,
    pub bytes_read: u64,
    pub invalid_utf8_bytes: u64,
    /// (name, bytes read) of each input.
    pub sources: Vec<(String, u64)>,
    pub seconds: f64,
}

/// How a job is going: `progress(bytes_done, bytes_total)`, the total None while an input
/// is a stream; returns false to stop.
pub type EncodeProgress<'a> = &'a mut dyn FnMut(u64, Option<u64>) -> bool;

/// Writes the ids of `inputs` (special tokens read as such) to `out` as `itemsize`-byte
/// integers; errors name the output `out_name`.
pub fn encode_files(
    encoder: &Encoder,
    inputs: &[Input],
    out: &Path,
    out_name: &str,
    itemsize: usize,
    pool: &rayon::ThreadPool,
    progress: EncodeProgress<'_>,
) -> Result<EncodeFilesReport, BpeError> {
    let tokenizer = encoder.tokenizer();
    if itemsize == 2 && tokenizer.vocab_size() > 1 << 16 {
        return Err(BpeError::InvalidArgument(format!(
            "uint16 holds ids below 65536, but the vocabulary has {} tokens: use uint32",
            tokenizer.vocab_size()
        )));
    }
    let sources = inputs.iter().map(Source::open).collect::<Result<Vec<_>, _>>()?;
    let output_error = |e: std::io::Error| BpeError::io(Path::new(out_name), &e);
    let file = File::create(out).map_err(output_error)?;
    let mut written = 0;
    let report = encode_sources(encoder, sources, itemsize, pool, progress, |chunk| {
        let bytes = chunk.le_bytes();
        (&file).write_all(&bytes).map_err(output_error)?;
        start_writeback(&file, written, bytes.len());
        written += bytes.len();
        Ok(())
    })?;
    file.sync_all().map_err(output_error)?;
    Ok(report)
}

/// How many times each id occurs in the ids of `inputs` (special tokens read as such).
pub fn count_tokens(
    encoder: &Encoder,
    inputs: &[Input],
    pool: &rayon::ThreadPool,
    progress: EncodeProgress<'_>,
) -> Result<(Vec<u64>, EncodeFilesReport), BpeError> {
    let sources = inputs.iter().map(Source::open).collect::<Result<Vec<_>, _>>()?;
    let mut counts = vec![0u64; encoder.tokenizer().vocab_size()];
    let report = encode_sources(encoder, sources, 4, pool, progress, |chunk| {
        if let EncodedChunk::U32(ids) = chunk {
            for id in ids {
                counts[id as usize] += 1;
            }
        }
        Ok(())
    })?;
    Ok((counts, report))
}

/// Encodes `sources` one after another; `sink` takes the encoded chunks in order, on a
/// thread of its own, while the pool encodes more.
fn encode_sources(
    encoder: &Encoder,
    sources: Vec<Source>,
    itemsize: usize,
    pool: &rayon::ThreadPool,
    progress: EncodeProgress<'_>,
    sink: impl FnMut(EncodedChunk) -> Result<(), BpeError> + Send,
) -> Result<EncodeFilesReport, BpeError> {
    let started = Instant::now();
    let mut report = EncodeFilesReport::default();
    let total = sources.iter().map(Source::size).sum::<Option<u64>>();
    let threads = pool.current_num_threads();
    let (send, receive) = std::sync::mpsc::sync_channel::<EncodedChunk>(threads * 2);
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<(), BpeError> {
            let mut sink = sink;
            receive.into_iter().try_for_each(&mut sink)
        });
        let mut encoded = Ok(());
        for source in sources {
            encoded = encode_source(encoder, source, itemsize, pool, total, &mut report, progress, &send);
            if encoded.is_err() {
                break;
            }
        }
        drop(send);
        // A failed write stops the encoding: the write's error is the one to report.
        let written = writer.join().expect("writer thread");
        written.and(encoded)
    })?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Asks the kernel to start writing `len` bytes at `offset` of `file` to disk, without
/// waiting: the `fsync` at the end then has little left to wait for, and a large output
/// does not pile up in memory as dirty pages (Linux; elsewhere the `fsync` does it all).
fn start_writeback(file: &File, offset: usize, len: usize) {
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
    ready: BTreeMap<usize, (EncodedChunk, usize)>,
    next: usize,
}

/// What a thread did when it asked for the next chunk.
enum Step {
    Encoded,
    /// No chunk came in time (the input is a stream that has not sent more yet).
    Waited,
    /// No chunk is left, or the job stopped.
    Done,
}

/// Encodes one input, read in chunks on a thread of its own, that the threads of the pool
/// and the calling thread take one after another; each chunk goes to the writer as soon as
/// those before it have. At most `AHEAD` chunks per thread are held encoded. The calling
/// thread reports progress, also while a stream keeps it waiting.
#[allow(clippy::too_many_arguments)]
fn encode_source(
    encoder: &Encoder,
    source: Source,
    itemsize: usize,
    pool: &rayon::ThreadPool,
    total: Option<u64>,
    report: &mut EncodeFilesReport,
    progress: EncodeProgress<'_>,
    writer: &SyncSender<EncodedChunk>,
) -> Result<(), BpeError> {
    const AHEAD: usize = 3;
    let tokenizer = encoder.tokenizer();
    let threads = pool.current_num_threads();
    let name = source.name().to_string();
    let size = source.size();
    let target = size.map_or(CHUNK_BYTES, |len| (len as usize / (threads * 4)).clamp(256 << 10, CHUNK_BYTES));
    let job_len = size.unwrap_or(0) as usize;
    let chunks = Chunks::new(source, tokenizer.pattern().clone(), tokenizer.specials().clone());
    let reader = read_ahead(chunks, target, threads);
    let recycler = reader.recycler();
    let received = Mutex::new((reader, 0usize));
    let failed: Mutex<Option<BpeError>> = Mutex::new(None);
    let in_order = Mutex::new(InOrder { ready: BTreeMap::new(), next: 0 });
    let sent = Condvar::new();
    let (stop, bytes_done) = (AtomicBool::new(false), AtomicU64::new(0));
    let (num_tokens, invalid_bytes) = (AtomicU64::new(0), AtomicU64::new(0));
    let encode_next = || -> Step {
        if stop.load(Ordering::Relaxed) {
            return Step::Done;
        }
        let (i, bytes) = {
            let mut received = received.lock().expect("chunks");
            match received.0.next_or_wait() {
                Ok(Some((_, bytes))) => {
                    received.1 += 1;
                    (received.1 - 1, bytes)
                }
                Ok(None) => return Step::Done,
                Err(None) => return Step::Waited,
                Err(Some(e)) => {
                    *failed.lock().expect("error") = Some(e);
                    stop.store(true, Ordering::Relaxed);
                    sent.notify_all();
                    return Step::Done;
                }
            }
        };
        {
            let mut state = in_order.lock().expect("in order");
            while i >= state.next + AHEAD * threads && !stop.load(Ordering::Relaxed) {
                state = sent.wait(state).expect("in order");
            }
        }
        if stop.load(Ordering::Relaxed) {
            return Step::Done;
        }
        let (text, invalid) = match std::str::from_utf8(&bytes) {
            Ok(text) => (Cow::Borrowed(text), 0),
            Err(_) => (String::from_utf8_lossy(&bytes), bytes.utf8_chunks().map(|c| c.invalid().len() as u64).sum()),
        };
        let out = match itemsize {
            2 => EncodedChunk::U16(encoder.encode_all_specials(&text, job_len)),
            _ => EncodedChunk::U32(encoder.encode_all_specials(&text, job_len)),
        };
        drop(text);
        num_tokens.fetch_add(out.len() as u64, Ordering::Relaxed);
        invalid_bytes.fetch_add(invalid, Ordering::Relaxed);
        let len = bytes.len();
        recycler.give_back(bytes);
        let mut state = in_order.lock().expect("in order");
        state.ready.insert(i, (out, len));
        loop {
            let next = state.next;
            let Some((out, len)) = state.ready.remove(&next) else { break };
            if writer.send(out).is_err() {
                // The writer stopped on an error, which it returns.
                stop.store(true, Ordering::Relaxed);
                break;
            }
            bytes_done.fetch_add(len as u64, Ordering::Relaxed);
            state.next += 1;
        }
        sent.notify_all();
        Step::Encoded
    };
    let done_before = report.bytes_read;
    let mut interrupted = false;
    pool.in_place_scope(|scope| {
        for _ in 1..threads {
            scope.spawn(|_| loop {
                match encode_next() {
                    Step::Done => break,
                    // Lets the calling thread have the chunks' lock, to report progress.
                    Step::Waited => std::thread::sleep(std::time::Duration::from_millis(1)),
                    Step::Encoded => {}
                }
            });
        }
        while !matches!(encode_next(), Step::Done) {
            if !progress(done_before + bytes_done.load(Ordering::Relaxed), total) {
                interrupted = true;
                stop.store(true, Ordering::Relaxed);
                sent.notify_all();
            }
        }
    });
    let done = bytes_done.load(Ordering::Relaxed);
    report.bytes_read = done_before + done;
    report.sources.push((name, done));
    report.num_tokens += num_tokens.load(Ordering::Relaxed);
    report.invalid_utf8_bytes += invalid_bytes.load(Ordering::Relaxed);
    if let Some(e) = failed.into_inner().expect("error") {
        return Err(e);
    }
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
