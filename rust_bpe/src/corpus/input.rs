//! Reading input text: regular files, pipes, FIFOs and standard input alike, with `read`
//! into owned chunks cut where no pre-token or special token crosses, so that each chunk
//! can be encoded or counted on its own and memory holds a few chunks, not the input.
//!
//! A regular file must give exactly the bytes its size said when it was opened: one that
//! ends early or grows while it is read is reported as changed, never read in part.
//! Devices other than a terminal (`/dev/zero`, a disk) are refused.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

use crate::error::BpeError;
use crate::text::huge_pages;
use crate::pretokenize::{Pattern, SpecialTokens};

/// Where text comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    File(PathBuf),
    Stdin,
}

impl Input {
    /// "-" is standard input; anything else a path (`./-` names a file called "-").
    pub fn from_arg(arg: &str) -> Input {
        if arg == "-" {
            Input::Stdin
        } else {
            Input::File(PathBuf::from(arg))
        }
    }

    pub fn name(&self) -> String {
        match self {
            Input::File(p) => p.display().to_string(),
            Input::Stdin => "<stdin>".into(),
        }
    }
}

/// An input opened for reading, with its size if it is a regular file.
pub struct Source {
    name: String,
    /// None for a FIFO until it is first read: opening one waits for its writer, which
    /// happens on the reader thread, so that whoever waits for the text can still stop.
    file: Option<File>,
    fifo: Option<PathBuf>,
    size: Option<u64>,
}

impl Source {
    /// Opens `input`; refuses a directory or a device.
    pub fn open(input: &Input) -> Result<Source, BpeError> {
        let name = input.name();
        let file = match input {
            Input::File(path) => {
                let kind = std::fs::metadata(path).map_err(|e| BpeError::io(path, &e))?;
                if is_fifo(&kind.file_type()) {
                    return Ok(Source { name, file: None, fifo: Some(path.clone()), size: None });
                }
                File::open(path).map_err(|e| BpeError::io(path, &e))?
            }
            Input::Stdin => stdin_file().map_err(|e| BpeError::Io(format!("{name}: {e}")))?,
        };
        let kind = file.metadata().map_err(|e| BpeError::Io(format!("{name}: {e}")))?;
        if kind.is_dir() {
            return Err(BpeError::Io(format!("{name}: is a directory, not a text file")));
        }
        let size = kind.is_file().then_some(kind.len());
        if is_device(&kind.file_type()) && !std::io::IsTerminal::is_terminal(&file) {
            return Err(BpeError::Io(format!(
                "{name}: is a device, not a text file (pybpe reads files, pipes, FIFOs and standard input)"
            )));
        }
        Ok(Source { name, file: Some(file), fifo: None, size })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The size of a regular file; None for a stream, whose end is known when it comes.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// The open file (a FIFO is opened here, once its writer comes).
    fn file(&mut self) -> Result<&mut File, BpeError> {
        if self.file.is_none() {
            let path = self.fifo.as_ref().expect("a FIFO's path");
            self.file = Some(File::open(path).map_err(|e| BpeError::io(path, &e))?);
        }
        Ok(self.file.as_mut().expect("an open file"))
    }
}

#[cfg(unix)]
fn stdin_file() -> std::io::Result<File> {
    use std::os::fd::AsFd;
    Ok(File::from(std::io::stdin().as_fd().try_clone_to_owned()?))
}

#[cfg(windows)]
fn stdin_file() -> std::io::Result<File> {
    use std::os::windows::io::AsHandle;
    Ok(File::from(std::io::stdin().as_handle().try_clone_to_owned()?))
}

#[cfg(unix)]
fn is_device(kind: &std::fs::FileType) -> bool {
    use std::os::unix::fs::FileTypeExt;
    kind.is_char_device() || kind.is_block_device()
}

#[cfg(not(unix))]
fn is_device(_: &std::fs::FileType) -> bool {
    false
}

#[cfg(unix)]
fn is_fifo(kind: &std::fs::FileType) -> bool {
    use std::os::unix::fs::FileTypeExt;
    kind.is_fifo()
}

#[cfg(not(unix))]
fn is_fifo(_: &std::fs::FileType) -> bool {
    false
}

/// Bytes read past a chunk's target before its cut is looked for.
const READ_AHEAD: usize = 64 << 10;

/// The text of a source, chunk by chunk.
pub struct Chunks {
    source: Source,
    pattern: Pattern,
    specials: SpecialTokens,
    /// Bytes read and not yet handed out, starting at `offset` of the input.
    buf: Vec<u8>,
    offset: u64,
    /// Bytes read from the source in all.
    read: u64,
    at_end: bool,
    /// No cut lies before this index of `buf` past the target (built-in patterns).
    searched: usize,
    /// Buffers of chunks handed out before, given back to be filled again: memory that is
    /// already the process's, which `read` fills without a page fault on every page.
    spare: Option<Receiver<Vec<u8>>>,
}

impl Chunks {
    pub fn new(source: Source, pattern: Pattern, specials: SpecialTokens) -> Chunks {
        Chunks { source, pattern, specials, buf: Vec::new(), offset: 0, read: 0, at_end: false, searched: 0, spare: None }
    }

    pub fn name(&self) -> &str {
        self.source.name()
    }

    /// The next chunk and its offset in the input: at least `target` bytes up to a place
    /// where no pre-token or special token crosses, or what is left at the end; None after
    /// the last. Custom patterns are cut only after special tokens.
    pub fn next_chunk(&mut self, target: usize) -> Result<Option<(u64, Vec<u8>)>, BpeError> {
        let target = target.max(1);
        loop {
            if let Some(cut) = self.find_cut(target) {
                return Ok(Some(self.take(cut, target)));
            }
            if self.at_end {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let all = self.buf.len();
                return Ok(Some(self.take(all, target)));
            }
            // No cut yet: read as much again, so that a long stretch without one is read in
            // a number of steps that grows with the log of its length.
            let want = (target + READ_AHEAD).max(self.buf.len() * 2);
            self.fill(want)?;
        }
    }

    /// Where the next chunk ends, if the bytes read tell already.
    fn find_cut(&self, target: usize) -> Option<usize> {
        let len = self.buf.len();
        // A cut is safe once what follows it can no longer change it: a special token that
        // would cross it, or the character after it.
        let limit = if self.at_end { len } else { self.settled() };
        if limit <= target {
            return None;
        }
        if self.pattern.is_builtin() {
            let from = target.max(self.searched);
            (from..limit).find(|&at| self.pattern.is_safe_cut(&self.buf, at) && !self.specials.crosses(&self.buf, at))
        } else {
            // Special tokens are found by one scan from the start of the chunk, which is the
            // start of the input or the end of a special token: as a scan of the whole input.
            self.specials.match_ends(&self.buf).take_while(|&end| end <= limit).find(|&end| end >= target)
        }
    }

    /// How much of `buf` what is read next cannot change: a cut there could be crossed by
    /// a special token, or depend on the character after it, only within this margin.
    fn settled(&self) -> usize {
        self.buf.len().saturating_sub(self.specials.max_len() + 8)
    }

    /// Hands out `buf[..cut]`; what follows stays for the next chunk.
    fn take(&mut self, cut: usize, target: usize) -> (u64, Vec<u8>) {
        let room = (target + READ_AHEAD).max(self.buf.len() - cut);
        let mut rest = match self.spare.as_ref().and_then(|spare| spare.try_recv().ok()) {
            Some(mut spare) => {
                spare.clear();
                spare.reserve_exact(room);
                spare
            }
            None => huge_pages::vec_with_capacity(room),
        };
        rest.extend_from_slice(&self.buf[cut..]);
        self.buf.truncate(cut);
        let chunk = std::mem::replace(&mut self.buf, rest);
        let offset = self.offset;
        self.offset += cut as u64;
        self.searched = 0;
        (offset, chunk)
    }

    /// Reads until `buf` holds `want` bytes or the input ends.
    fn fill(&mut self, want: usize) -> Result<(), BpeError> {
        // `find_cut` looked as far as this and found nothing.
        self.searched = self.settled();
        let missing = want.saturating_sub(self.buf.len());
        if self.buf.capacity() == 0 {
            self.buf = huge_pages::vec_with_capacity(want);
        }
        self.buf.reserve_exact(missing);
        let got = self
            .source
            .file()?
            .take(missing as u64)
            .read_to_end(&mut self.buf)
            .map_err(|e| BpeError::Io(format!("{}: {e}", self.source.name)))?;
        self.read += got as u64;
        self.at_end = got < missing;
        if let Some(size) = self.source.size {
            if self.read > size || (self.at_end && self.read < size) {
                return Err(changed(&self.source.name, size, self.read, self.at_end));
            }
        }
        Ok(())
    }
}

fn changed(name: &str, size: u64, read: u64, at_end: bool) -> BpeError {
    let what = if read > size {
        format!("it had {size} bytes when opened, and more came")
    } else {
        format!("it had {size} bytes when opened, but ended after {read}")
    };
    debug_assert!(at_end || read > size);
    BpeError::Io(format!("{name}: the file changed while it was read ({what}); read it again once it no longer changes"))
}

/// What the reader thread hands over: a chunk and its offset in the input.
pub type Chunk = Result<(u64, Vec<u8>), BpeError>;

/// The receiving end of `read_ahead`.
pub struct Reader {
    chunks: Receiver<Chunk>,
    spare: SyncSender<Vec<u8>>,
}

/// Reads `chunks` on a thread of its own, up to `depth` chunks ahead of the receiver, so
/// that reading overlaps the work on the chunks before. The thread ends at the end of the
/// input, after an error (the last thing it sends), or when the receiver is dropped; it is
/// not joined, so that a stalled pipe never holds up a caller that stops.
pub fn read_ahead(mut chunks: Chunks, target: usize, depth: usize) -> Reader {
    let depth = depth.max(1);
    let (send, receive) = std::sync::mpsc::sync_channel(depth);
    let (give_back, spare) = std::sync::mpsc::sync_channel(depth + 2);
    chunks.spare = Some(spare);
    std::thread::Builder::new()
        .name("pybpe-reader".into())
        .spawn(move || loop {
            match chunks.next_chunk(target) {
                Ok(Some(chunk)) => {
                    if send.send(Ok(chunk)).is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = send.send(Err(e));
                    return;
                }
            }
        })
        .expect("a reader thread");
    Reader { chunks: receive, spare: give_back }
}

/// How long a wait for the next chunk lasts before the waiter may do something else (say,
/// see whether it was asked to stop).
pub const WAIT: Duration = Duration::from_millis(100);

impl Reader {
    /// The next chunk: Ok(None) at the end of the input, Err(None) when none came within `WAIT`.
    pub fn next_or_wait(&self) -> Result<Option<(u64, Vec<u8>)>, Option<BpeError>> {
        match self.chunks.recv_timeout(WAIT) {
            Ok(Ok(chunk)) => Ok(Some(chunk)),
            Ok(Err(e)) => Err(Some(e)),
            Err(RecvTimeoutError::Timeout) => Err(None),
            Err(RecvTimeoutError::Disconnected) => Ok(None),
        }
    }

    /// Gives the buffer of a chunk that is done with back to the reader, to fill again.
    pub fn give_back(&self, buffer: Vec<u8>) {
        let _ = self.spare.try_send(buffer);
    }

    /// `give_back` for threads that do not hold the reader.
    pub fn recycler(&self) -> Recycler {
        Recycler(self.spare.clone())
    }
}

/// Gives buffers of chunks back to a `Reader`.
pub struct Recycler(SyncSender<Vec<u8>>);

impl Recycler {
    pub fn give_back(&self, buffer: Vec<u8>) {
        let _ = self.0.try_send(buffer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn chunks_of(text: &[u8], pattern: Pattern, specials: &[&str], target: usize) -> Vec<(u64, Vec<u8>)> {
        let mut file = tempfile();
        file.write_all(text).unwrap();
        let path = file_path(&file);
        let specials = SpecialTokens::new(&specials.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let source = Source::open(&Input::File(path)).unwrap();
        let mut chunks = Chunks::new(source, pattern, specials);
        let mut out = Vec::new();
        while let Some(chunk) = chunks.next_chunk(target).unwrap() {
            out.push(chunk);
        }
        out
    }

    struct TempFile(File, PathBuf);

    impl std::ops::Deref for TempFile {
        type Target = File;
        fn deref(&self) -> &File {
            &self.0
        }
    }

    impl Write for TempFile {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.0.flush()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.1);
        }
    }

    fn tempfile() -> TempFile {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!("rust_bpe_input_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        TempFile(File::create(&path).unwrap(), path)
    }

    fn file_path(file: &TempFile) -> PathBuf {
        file.1.clone()
    }

    #[test]
    fn chunks_cover_the_input_in_order_and_end_at_safe_cuts() {
        let text = "Hello world, it's a test.\n\n<|endoftext|>Another  line   here\n".repeat(20_000);
        for pattern in [Pattern::Gpt2, Pattern::Gpt4] {
            let got = chunks_of(text.as_bytes(), pattern.clone(), &["<|endoftext|>"], 100_000);
            assert!(got.len() > 5);
            let mut at = 0u64;
            for (offset, chunk) in &got {
                assert_eq!(*offset, at);
                at += chunk.len() as u64;
                assert!(chunk.len() >= 100_000 || *offset + chunk.len() as u64 == text.len() as u64);
                let end = *offset as usize + chunk.len();
                assert!(end == text.len() || pattern.is_safe_cut(text.as_bytes(), end));
            }
            assert_eq!(got.into_iter().flat_map(|(_, c)| c).collect::<Vec<u8>>(), text.as_bytes());
        }
    }

    #[test]
    fn custom_patterns_are_cut_only_after_special_tokens() {
        let text = "abc def<|endoftext|>".repeat(10_000);
        let pattern = Pattern::parse(r"\w+|\s+|.").unwrap();
        let got = chunks_of(text.as_bytes(), pattern, &["<|endoftext|>"], 50_000);
        assert!(got.len() > 2);
        for (_, chunk) in &got {
            assert!(chunk.ends_with(b"<|endoftext|>"));
        }
    }

    #[test]
    fn a_long_stretch_without_a_cut_is_one_chunk() {
        let text = "a".repeat(3 << 20);
        let got = chunks_of(text.as_bytes(), Pattern::Gpt2, &[], 1000);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.len(), text.len());
    }

    #[test]
    fn a_file_that_ends_before_its_size_is_reported_as_changed() {
        let mut file = tempfile();
        file.write_all(&b"some words ".repeat(100_000)).unwrap();
        let source = Source::open(&Input::File(file_path(&file))).unwrap();
        file.0.set_len(1000).unwrap();
        let mut chunks = Chunks::new(source, Pattern::Gpt2, SpecialTokens::new(&[]).unwrap());
        let err = loop {
            match chunks.next_chunk(4096) {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the change went unseen"),
                Err(e) => break e.to_string(),
            }
        };
        assert!(err.contains("changed while it was read") && err.contains("1100000 bytes"), "{err}");
    }

    #[test]
    fn a_file_that_grows_while_read_is_reported_as_changed() {
        let mut file = tempfile();
        file.write_all(&b"some words ".repeat(1000)).unwrap();
        let source = Source::open(&Input::File(file_path(&file))).unwrap();
        file.write_all(b"more words").unwrap();
        let mut chunks = Chunks::new(source, Pattern::Gpt2, SpecialTokens::new(&[]).unwrap());
        let err = chunks.next_chunk(1 << 20).unwrap_err().to_string();
        assert!(err.contains("changed while it was read") && err.contains("more came"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn devices_are_refused_and_directories_too() {
        let err = Source::open(&Input::File("/dev/zero".into())).err().unwrap().to_string();
        assert!(err.contains("/dev/zero: is a device"), "{err}");
        let err = Source::open(&Input::File(std::env::temp_dir())).err().unwrap().to_string();
        assert!(err.contains("is a directory"), "{err}");
    }
}
