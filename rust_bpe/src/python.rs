//! The pyo3 bindings: `pybpe._core`. Thin: conversions, the GIL released around the work,
//! and errors turned into the exception types below.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use pyo3::exceptions::{PyException, PyKeyboardInterrupt};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use crate::corpus::{count_tokens, encode_files, EncodeFilesReport};
use crate::encode::{Allowed, Encoder, Parts, TokenId};
use crate::error::BpeError;
use crate::pretokenize::Pattern;
use crate::text::str_storage::{self, StrStorage};
use crate::tokenizer::Tokenizer;
use crate::train::{self, Input, Progress, TrainOptions};

pyo3::create_exception!(pybpe, PybpeError, PyException, "Base class of every error pybpe raises.");
pyo3::create_exception!(pybpe, FileError, PybpeError, "A file could not be read or written.");
pyo3::create_exception!(pybpe, CorpusError, PybpeError, "The training text cannot be used (empty, or not UTF-8 under strict decoding).");
pyo3::create_exception!(pybpe, ConfigError, PybpeError, "An argument is out of range or malformed (vocab size, pattern, special tokens).");
pyo3::create_exception!(pybpe, TokenizerFileError, PybpeError, "A tokenizer file is not one, or is damaged.");
pyo3::create_exception!(
    pybpe,
    SpecialTokenError,
    pyo3::exceptions::PyValueError,
    "Text holds a special token that is disallowed (a ValueError, as in tiktoken)."
);

fn to_py_err(err: BpeError) -> PyErr {
    let message = err.to_string();
    match err {
        BpeError::Io(_) => FileError::new_err(message),
        BpeError::InvalidUtf8(_) | BpeError::EmptyCorpus(_) => CorpusError::new_err(message),
        BpeError::InvalidVocabSize(_)
        | BpeError::InvalidPattern(_)
        | BpeError::InvalidSpecialToken(_)
        | BpeError::InvalidArgument(_) => ConfigError::new_err(message),
        BpeError::TokenizerFile(_) => TokenizerFileError::new_err(message),
        BpeError::DisallowedSpecial(_) => SpecialTokenError::new_err(message),
        BpeError::LoneSurrogate(_) => pyo3::exceptions::PyValueError::new_err(message),
        BpeError::Interrupted => PyKeyboardInterrupt::new_err(message),
    }
}

/// A Python str's UTF-8, read without copying it into a Rust `String` (pyo3's abi3-py39
/// extraction copies it twice). An ASCII str is its own UTF-8 and is borrowed as it is; any
/// other is encoded once into a bytes object, which CPython does faster than it fills the
/// str's own UTF-8 cache.
enum Utf8<'py> {
    Ascii(Bound<'py, PyString>),
    Encoded(Bound<'py, PyBytes>),
}

impl<'py> Utf8<'py> {
    fn of(text: &Bound<'py, PyString>) -> PyResult<Utf8<'py>> {
        if text.call_method0(pyo3::intern!(text.py(), "isascii"))?.is_truthy()? {
            return Ok(Utf8::Ascii(text.clone()));
        }
        // SAFETY: PyUnicode_AsUTF8String returns a new reference or NULL with an exception set.
        let bytes = unsafe { Bound::from_owned_ptr_or_err(text.py(), pyo3::ffi::PyUnicode_AsUTF8String(text.as_ptr()))? };
        Ok(Utf8::Encoded(bytes.cast_into::<PyBytes>()?))
    }

    fn as_str(&self) -> &str {
        match self {
            Utf8::Ascii(text) => {
                extern "C" {
                    // In the stable ABI from 3.10 and exported by every CPython 3.
                    fn PyUnicode_AsUTF8AndSize(unicode: *mut pyo3::ffi::PyObject, size: *mut pyo3::ffi::Py_ssize_t) -> *const u8;
                }
                let mut size: pyo3::ffi::Py_ssize_t = 0;
                // SAFETY: for an ASCII str this returns its own characters and cannot fail;
                // they live as long as the str, which is immutable.
                unsafe {
                    let data = PyUnicode_AsUTF8AndSize(text.as_ptr(), &mut size);
                    std::str::from_utf8_unchecked(std::slice::from_raw_parts(data, size as usize))
                }
            }
            // SAFETY: the bytes were encoded from a str as strict UTF-8.
            Utf8::Encoded(bytes) => unsafe { std::str::from_utf8_unchecked(bytes.as_bytes()) },
        }
    }
}

/// A thread pool per thread count, kept for the life of the process; 1 thread means none.
fn pool(threads: usize) -> PyResult<Option<Arc<rayon::ThreadPool>>> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    // (Asking the system reads cgroup files: longer than a short text takes to encode.)
    static CORES: OnceLock<usize> = OnceLock::new();
    let threads = if threads == 0 { *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get())) } else { threads };
    if threads == 1 {
        return Ok(None);
    }
    let mut pools = POOLS.get_or_init(Default::default).lock().expect("pool lock");
    if let Some(p) = pools.get(&threads) {
        return Ok(Some(p.clone()));
    }
    let p = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| ConfigError::new_err(format!("cannot start {threads} threads: {e}")))?;
    let p = Arc::new(p);
    pools.insert(threads, p.clone());
    Ok(Some(p))
}

/// Runs a Python progress callback from work that runs without the GIL. On Ctrl-C, or an
/// exception in the callback, keeps the error and returns false so that the work stops.
fn call_progress(error: &mut Option<PyErr>, call: impl FnOnce(Python<'_>) -> PyResult<()>) -> bool {
    Python::attach(|py| match py.check_signals().and_then(|_| call(py)) {
        Ok(()) => true,
        Err(e) => {
            *error = Some(e);
            false
        }
    })
}

/// "all", or an iterable of special-token names.
fn allowed_from(obj: &Bound<'_, PyAny>) -> PyResult<Allowed> {
    if let Ok(s) = obj.extract::<String>() {
        return if s == "all" {
            Ok(Allowed::All)
        } else {
            Err(ConfigError::new_err(format!("expected \"all\" or a collection of special tokens, not the string {s:?}")))
        };
    }
    let names: Vec<String> = obj.try_iter()?.map(|n| n?.extract::<String>()).collect::<PyResult<_>>()?;
    Ok(if names.is_empty() { Allowed::None } else { Allowed::Some(names) })
}

/// The Rust tokenizer behind `pybpe.Tokenizer`.
#[pyclass(frozen, module = "pybpe._core")]
struct CoreTokenizer {
    inner: Tokenizer,
    encoder: OnceLock<Encoder>,
}

impl CoreTokenizer {
    fn new(inner: Tokenizer) -> CoreTokenizer {
        CoreTokenizer { inner, encoder: OnceLock::new() }
    }

    fn encoder(&self) -> &Encoder {
        self.encoder.get_or_init(|| Encoder::new(self.inner.clone()))
    }
}

#[pymethods]
impl CoreTokenizer {
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<CoreTokenizer> {
        let inner = py.detach(|| Tokenizer::load(&path)).map_err(to_py_err)?;
        Ok(CoreTokenizer::new(inner))
    }

    #[staticmethod]
    fn from_json(py: Python<'_>, text: &str) -> PyResult<CoreTokenizer> {
        let text = text.to_owned();
        let inner = py.detach(|| Tokenizer::from_json(&text)).map_err(to_py_err)?;
        Ok(CoreTokenizer::new(inner))
    }

    /// Builds a tokenizer from token bytes by id, merges as id pairs, and special tokens;
    /// `merge_names`, if given, names each merge in what is wrong with it (e.g. its line).
    #[staticmethod]
    #[pyo3(signature = (vocab, merges, special_tokens, pattern, merge_names=None))]
    fn from_parts(
        vocab: Vec<Vec<u8>>,
        merges: Vec<(u32, u32)>,
        special_tokens: Vec<(String, u32)>,
        pattern: &str,
        merge_names: Option<Vec<String>>,
    ) -> PyResult<CoreTokenizer> {
        let pattern = Pattern::parse(pattern).map_err(to_py_err)?;
        let merge_name = |i: usize| match merge_names.as_ref().and_then(|names| names.get(i)) {
            Some(name) => name.clone(),
            None => format!("merge {i}"),
        };
        let inner = Tokenizer::with_merge_names(vocab, merges, special_tokens, pattern, &merge_name).map_err(to_py_err)?;
        Ok(CoreTokenizer::new(inner))
    }

    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| self.inner.save(&path)).map_err(to_py_err)
    }

    fn to_json(&self) -> String {
        self.inner.to_json()
    }

    fn vocab<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (id, bytes) in self.inner.vocab().iter().enumerate() {
            if !self.inner.is_unused(id as u32) {
                dict.set_item(id, PyBytes::new(py, bytes))?;
            }
        }
        Ok(dict)
    }

    fn merges<'py>(&self, py: Python<'py>) -> Vec<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        let vocab = self.inner.vocab();
        self.inner
            .merges()
            .iter()
            .map(|&(a, b)| (PyBytes::new(py, &vocab[a as usize]), PyBytes::new(py, &vocab[b as usize])))
            .collect()
    }

    fn merge_ids(&self) -> Vec<(u32, u32)> {
        self.inner.merges().to_vec()
    }

    fn special_tokens(&self) -> Vec<(String, u32)> {
        self.inner.special_tokens().to_vec()
    }

    fn pattern(&self) -> String {
        self.inner.pattern().name().to_string()
    }

    fn pattern_regex(&self) -> String {
        self.inner.pattern().regex().to_string()
    }

    /// For a regular-expression pattern: (bytes its pre-tokens covered, bytes of text it
    /// was given), counted over everything this tokenizer split; None for a built-in one.
    fn pattern_coverage(&self) -> Option<(u64, u64)> {
        self.inner.pattern().coverage()
    }

    /// The share of the text split since `before` (a `pattern_coverage()`) that pre-tokens
    /// covered, when that is less than half; else None.
    fn pattern_mostly_unmatched_since(&self, before: Option<(u64, u64)>) -> Option<f64> {
        self.inner.pattern().mostly_unmatched_since(before)
    }

    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    fn encode(&self, py: Python<'_>, text: &Bound<'_, PyString>, allowed_special: &Bound<'_, PyAny>, disallowed_special: &Bound<'_, PyAny>, threads: usize) -> PyResult<Vec<u32>> {
        let (allowed, disallowed) = (allowed_from(allowed_special)?, allowed_from(disallowed_special)?);
        let pool = pool(threads)?;
        let parts = self.encode_str::<u32>(py, text, &allowed, &disallowed, pool.as_deref())?;
        Ok(py.detach(|| parts.join(pool.as_deref())))
    }

    fn encode_ordinary(&self, py: Python<'_>, text: &Bound<'_, PyString>, threads: usize) -> PyResult<Vec<u32>> {
        let pool = pool(threads)?;
        let parts = self.encode_str::<u32>(py, text, &Allowed::None, &Allowed::None, pool.as_deref())?;
        Ok(py.detach(|| parts.join(pool.as_deref())))
    }

    /// The ids as u16 (`itemsize` 2) or u32 (4), in an array numpy takes without a copy.
    fn encode_to_array(
        &self,
        py: Python<'_>,
        text: &Bound<'_, PyString>,
        allowed_special: &Bound<'_, PyAny>,
        disallowed_special: &Bound<'_, PyAny>,
        threads: usize,
        itemsize: usize,
    ) -> PyResult<TokenArray> {
        let (allowed, disallowed) = (allowed_from(allowed_special)?, allowed_from(disallowed_special)?);
        let pool = pool(threads)?;
        let pool = pool.as_deref();
        match itemsize {
            2 => {
                let parts = self.encode_str::<u16>(py, text, &allowed, &disallowed, pool)?;
                Ok(py.detach(|| TokenArray::new(parts.join(pool), "<u2")))
            }
            4 => {
                let parts = self.encode_str::<u32>(py, text, &allowed, &disallowed, pool)?;
                Ok(py.detach(|| TokenArray::new(parts.join(pool), "<u4")))
            }
            _ => Err(ConfigError::new_err(format!("itemsize must be 2 or 4, not {itemsize}"))),
        }
    }

    fn encode_batch(&self, py: Python<'_>, texts: Vec<Bound<'_, PyString>>, allowed_special: &Bound<'_, PyAny>, disallowed_special: &Bound<'_, PyAny>, threads: usize) -> PyResult<Vec<Vec<u32>>> {
        let (allowed, disallowed) = (allowed_from(allowed_special)?, allowed_from(disallowed_special)?);
        let texts = texts.iter().map(Utf8::of).collect::<PyResult<Vec<_>>>()?;
        let texts: Vec<&str> = texts.iter().map(Utf8::as_str).collect();
        match pool(threads)? {
            Some(p) => py.detach(|| self.encoder().encode_batch(&texts, &allowed, &disallowed, &p)).map_err(to_py_err),
            None => py
                .detach(|| texts.iter().map(|t| self.encoder().encode(t, &allowed, &disallowed, None)).collect::<Result<Vec<_>, _>>())
                .map_err(to_py_err),
        }
    }

    fn decode_bytes<'py>(&self, py: Python<'py>, ids: Vec<u32>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = py.detach(|| self.encoder().decode_bytes(&ids)).map_err(to_py_err)?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Decodes ids given as little-endian integers of `itemsize` bytes.
    fn decode_buffer<'py>(&self, py: Python<'py>, data: &[u8], itemsize: usize) -> PyResult<Bound<'py, PyBytes>> {
        let ids: Vec<u32> = match itemsize {
            2 => data.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as u32).collect(),
            4 => data.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            _ => return Err(ConfigError::new_err(format!("itemsize must be 2 or 4, not {itemsize}"))),
        };
        self.decode_bytes(py, ids)
    }

    /// How many characters at the start of `text` can be encoded on their own: the last
    /// place where no pre-token or special token crosses and what follows cannot matter.
    fn safe_prefix_chars(&self, text: &Bound<'_, PyString>, allowed_special: &Bound<'_, PyAny>) -> PyResult<usize> {
        let text = Utf8::of(text)?;
        let text = text.as_str();
        let allowed = allowed_from(allowed_special)?;
        let pattern = self.inner.pattern();
        let cut = if pattern.is_builtin() {
            crate::pretokenize::last_cut(text.as_bytes(), pattern, self.inner.specials())
        } else {
            let names: Vec<String> = self
                .inner
                .special_tokens()
                .iter()
                .map(|(n, _)| n.clone())
                .filter(|n| match &allowed {
                    Allowed::None => false,
                    Allowed::All => true,
                    Allowed::Some(list) => list.contains(n),
                })
                .collect();
            let specials = crate::pretokenize::SpecialTokens::new(&names).map_err(to_py_err)?;
            crate::pretokenize::last_cut(text.as_bytes(), pattern, &specials)
        };
        Ok(text[..cut].chars().count())
    }

    /// Encodes files ("-" is standard input) to a token file at `out` (special tokens read
    /// as such; errors name the output `out_name`); returns a report.
    #[pyo3(signature = (paths, out, itemsize, threads, progress = None, out_name = None))]
    #[allow(clippy::too_many_arguments)]
    fn encode_files<'py>(
        &self,
        py: Python<'py>,
        paths: Vec<String>,
        out: PathBuf,
        itemsize: usize,
        threads: usize,
        progress: Option<Py<PyAny>>,
        out_name: Option<String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let inputs: Vec<Input> = paths.iter().map(|p| Input::from_arg(p)).collect();
        let out_name = out_name.unwrap_or_else(|| out.display().to_string());
        let pool = encode_pool(threads)?;
        let mut callback_error: Option<PyErr> = None;
        let result = py.detach(|| {
            let mut report_progress = progress_reporter(&mut callback_error, &progress);
            encode_files(self.encoder(), &inputs, &out, &out_name, itemsize, &pool, &mut report_progress)
        });
        let report = result.map_err(|e| callback_error.unwrap_or_else(|| to_py_err(e)))?;
        encode_report(py, &report)
    }

    /// How many times each id occurs in the ids of files ("-" is standard input), special
    /// tokens read as such: little-endian uint64 counts by id, and a report.
    #[pyo3(signature = (paths, threads, progress = None))]
    fn count_tokens<'py>(
        &self,
        py: Python<'py>,
        paths: Vec<String>,
        threads: usize,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyDict>)> {
        let inputs: Vec<Input> = paths.iter().map(|p| Input::from_arg(p)).collect();
        let pool = encode_pool(threads)?;
        let mut callback_error: Option<PyErr> = None;
        let result = py.detach(|| {
            let mut report_progress = progress_reporter(&mut callback_error, &progress);
            count_tokens(self.encoder(), &inputs, &pool, &mut report_progress)
        });
        let (counts, report) = result.map_err(|e| callback_error.unwrap_or_else(|| to_py_err(e)))?;
        let counts: Vec<u8> = counts.iter().flat_map(|c| c.to_le_bytes()).collect();
        Ok((PyBytes::new(py, &counts), encode_report(py, &report)?))
    }
}

/// The pool of `pool(threads)`, or one of a single thread.
fn encode_pool(threads: usize) -> PyResult<Arc<rayon::ThreadPool>> {
    match pool(threads)? {
        Some(p) => Ok(p),
        None => Ok(Arc::new(rayon::ThreadPoolBuilder::new().num_threads(1).build().map_err(|e| ConfigError::new_err(e.to_string()))?)),
    }
}

/// `progress(done, total)` of an encoding job as a call of the Python callback, if any.
fn progress_reporter<'a>(
    error: &'a mut Option<PyErr>,
    progress: &'a Option<Py<PyAny>>,
) -> impl FnMut(u64, Option<u64>) -> bool + 'a {
    move |done, total| {
        call_progress(error, |py| match progress {
            Some(cb) => cb.call1(py, (done, total)).map(drop),
            None => Ok(()),
        })
    }
}

fn encode_report<'py>(py: Python<'py>, report: &EncodeFilesReport) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("num_tokens", report.num_tokens)?;
    dict.set_item("bytes_read", report.bytes_read)?;
    dict.set_item("invalid_utf8_bytes", report.invalid_utf8_bytes)?;
    dict.set_item("sources", report.sources.clone())?;
    dict.set_item("seconds", report.seconds)?;
    Ok(dict)
}

impl CoreTokenizer {
    /// The ids of a str in parts (see `Encoder::encode_parts`), without the GIL. A non-ASCII
    /// str is read in its own storage and turned into UTF-8 window by window as it is
    /// encoded, where that storage can be read and the pattern is a built-in one; otherwise
    /// (and to raise CPython's UnicodeEncodeError for a lone surrogate) its UTF-8 is made first.
    fn encode_str<T: TokenId>(
        &self,
        py: Python<'_>,
        text: &Bound<'_, PyString>,
        allowed: &Allowed,
        disallowed: &Allowed,
        pool: Option<&rayon::ThreadPool>,
    ) -> PyResult<Parts<T>> {
        let encoder = self.encoder();
        let storage = if encoder.encodes_chars() { str_storage::storage(text) } else { None };
        if let Some(storage) = storage {
            let parts = py.detach(|| match storage {
                StrStorage::Latin1(chars) => encoder.encode_chars_parts::<T, u8>(chars, allowed, disallowed, pool),
                StrStorage::Ucs2(chars) => encoder.encode_chars_parts::<T, u16>(chars, allowed, disallowed, pool),
                StrStorage::Ucs4(chars) => encoder.encode_chars_parts::<T, u32>(chars, allowed, disallowed, pool),
            });
            match parts {
                Err(BpeError::LoneSurrogate(_)) => {}
                parts => return parts.map_err(to_py_err),
            }
        }
        let text = Utf8::of(text)?;
        let text = text.as_str();
        py.detach(|| encoder.encode_parts::<T>(text, allowed, disallowed, pool)).map_err(to_py_err)
    }
}

/// Whether a non-ASCII str is encoded from its own storage on this interpreter (see
/// `str_storage`); if not, its UTF-8 is made by CPython first.
#[pyfunction]
fn reads_str_storage(py: Python<'_>) -> bool {
    str_storage::storage(&PyString::new(py, "\u{e9}")).is_some()
}

/// Token ids owned here and shown to numpy through `__array_interface__`, so that
/// `numpy.asarray` makes an array of them without a copy (the array keeps this alive).
#[pyclass(module = "pybpe._core", frozen)]
struct TokenArray {
    /// The ids' memory, which numpy may write to; given back in `drop`.
    data: *mut u8,
    len: usize,
    capacity: usize,
    typestr: &'static str,
}

// SAFETY: the memory is owned by this object alone, and reached only through numpy.
unsafe impl Send for TokenArray {}
unsafe impl Sync for TokenArray {}

impl TokenArray {
    fn new<T: TokenId>(ids: Vec<T>, typestr: &'static str) -> TokenArray {
        let mut ids = std::mem::ManuallyDrop::new(ids);
        TokenArray { data: ids.as_mut_ptr() as *mut u8, len: ids.len(), capacity: ids.capacity(), typestr }
    }
}

impl Drop for TokenArray {
    fn drop(&mut self) {
        // SAFETY: rebuilds the vector `new` took apart, with its element type.
        unsafe {
            match self.typestr {
                "<u2" => drop(Vec::from_raw_parts(self.data as *mut u16, self.len, self.capacity)),
                _ => drop(Vec::from_raw_parts(self.data as *mut u32, self.len, self.capacity)),
            }
        }
    }
}

#[pymethods]
impl TokenArray {
    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let interface = PyDict::new(py);
        interface.set_item("shape", (self.len,))?;
        interface.set_item("typestr", self.typestr)?;
        interface.set_item("data", (self.data as usize, false))?;
        interface.set_item("version", 3)?;
        Ok(interface)
    }

    fn __len__(&self) -> usize {
        self.len
    }
}

/// Splits `text` into pre-tokens (special tokens cut out first and returned whole).
#[pyfunction]
#[pyo3(signature = (text, pattern = "gpt2", special_tokens = Vec::new()))]
fn pretokenize(py: Python<'_>, text: &str, pattern: &str, special_tokens: Vec<String>) -> PyResult<Vec<String>> {
    let pattern = Pattern::parse(pattern).map_err(to_py_err)?;
    let specials = crate::pretokenize::SpecialTokens::new(&special_tokens).map_err(to_py_err)?;
    let text = text.to_owned();
    Ok(py.detach(|| {
        let mut out = Vec::new();
        specials.for_each_piece(&text, |piece| match piece {
            crate::pretokenize::Piece::Text(t) => pattern.split(t, |w| out.push(w.to_string())),
            crate::pretokenize::Piece::Special(i) => out.push(special_tokens[i].clone()),
        });
        out
    }))
}

/// The class of every code point as the built-in patterns see it: 0 letter (\p{L}),
/// 1 number (\p{N}), 2 whitespace (\s), 3 anything else.
#[pyfunction]
fn char_classes(py: Python<'_>) -> Bound<'_, PyBytes> {
    PyBytes::new(py, crate::pretokenize::unicode_classes())
}

/// Trains a tokenizer; returns it and a report (a dict). `progress(phase, done, total)` is
/// called now and then, `total` None while the size of the input is unknown.
#[pyfunction]
#[pyo3(signature = (files, vocab_size, special_tokens, pattern, threads, strict_utf8, progress = None))]
#[allow(clippy::too_many_arguments)]
fn train_bpe<'py>(
    py: Python<'py>,
    files: Vec<String>,
    vocab_size: u64,
    special_tokens: Vec<String>,
    pattern: &str,
    threads: usize,
    strict_utf8: bool,
    progress: Option<Py<PyAny>>,
) -> PyResult<(CoreTokenizer, Bound<'py, PyDict>)> {
    let pattern = Pattern::parse(pattern).map_err(to_py_err)?;
    let inputs: Vec<Input> =
        files.iter().map(|f| Input::from_arg(f)).collect();
    let options = TrainOptions { vocab_size, special_tokens, pattern, threads, strict_utf8 };
    let mut callback_error: Option<PyErr> = None;
    let result = py.detach(|| {
        let mut report_progress = |p: Progress| {
            call_progress(&mut callback_error, |py| {
                let Some(cb) = &progress else { return Ok(()) };
                match p {
                    Progress::Counting { bytes_done, bytes_total } => cb.call1(py, ("count", bytes_done, bytes_total)),
                    Progress::Merging { done, total } => cb.call1(py, ("merge", done, Some(total))),
                }
                .map(drop)
            })
        };
        train::train(&inputs, &options, &mut report_progress)
    });
    let (tokenizer, report) = result.map_err(|e| callback_error.unwrap_or_else(|| to_py_err(e)))?;
    let dict = PyDict::new(py);
    dict.set_item("bytes_read", report.bytes_read)?;
    dict.set_item("invalid_utf8_bytes", report.invalid_utf8_bytes)?;
    dict.set_item("pretokens", report.pretokens)?;
    dict.set_item("unique_pretokens", report.unique_pretokens)?;
    dict.set_item("merges_requested", report.merges_requested)?;
    dict.set_item("merges_learned", report.merges_learned)?;
    dict.set_item("count_seconds", report.count_seconds)?;
    dict.set_item("merge_seconds", report.merge_seconds)?;
    Ok((CoreTokenizer::new(tokenizer), dict))
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<CoreTokenizer>()?;
    m.add_class::<TokenArray>()?;
    m.add_function(wrap_pyfunction!(train_bpe, m)?)?;
    m.add_function(wrap_pyfunction!(pretokenize, m)?)?;
    m.add_function(wrap_pyfunction!(char_classes, m)?)?;
    m.add_function(wrap_pyfunction!(reads_str_storage, m)?)?;
    m.add("PybpeError", py.get_type::<PybpeError>())?;
    m.add("FileError", py.get_type::<FileError>())?;
    m.add("CorpusError", py.get_type::<CorpusError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("TokenizerFileError", py.get_type::<TokenizerFileError>())?;
    m.add("SpecialTokenError", py.get_type::<SpecialTokenError>())?;
    m.add("GPT2_REGEX", crate::pretokenize::GPT2_REGEX)?;
    m.add("GPT4_REGEX", crate::pretokenize::GPT4_REGEX)?;
    Ok(())
}
