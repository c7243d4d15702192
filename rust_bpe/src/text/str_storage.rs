//! A Python str's characters read where CPython keeps them (PEP 393: one byte, two or four
//! per character), so that a non-ASCII str is transcoded to UTF-8 in windows by the
//! threads that encode it instead of whole, on one thread, by `PyUnicode_AsUTF8String`.
//!
//! The stable ABI has no call that gives this storage, so it is read at the offsets CPython
//! 3.9–3.11 and 3.12–3.14 use. The reading is trusted only after it has given back, for one
//! probe str of each width, exactly the characters the probe was made of, and each str read
//! must be compact with a length equal to `PyUnicode_GetLength`; otherwise the caller
//! falls back to CPython's UTF-8.

use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;

/// The characters of a non-ASCII str, as stored.
pub enum StrStorage<'a> {
    Latin1(&'a [u8]),
    Ucs2(&'a [u16]),
    Ucs4(&'a [u32]),
}

/// Where the fields of a compact str are, for this interpreter.
#[derive(Clone, Copy)]
struct Layout {
    /// The `state` bit field: kind in bits 2-4, compact bit 5, ascii bit 6.
    state: usize,
    length: usize,
    /// Where the characters of a compact non-ASCII str start (`sizeof(PyCompactUnicodeObject)`).
    data: usize,
}

fn layout(py: Python<'_>) -> Option<Layout> {
    static LAYOUT: OnceLock<Option<Layout>> = OnceLock::new();
    *LAYOUT.get_or_init(|| {
        let version = py.version_info();
        let data = match (version.major, version.minor) {
            (3, 9..=11) => 72,  // PyASCIIObject has `wstr`, PyCompactUnicodeObject `wstr_length`
            (3, 12..=14) => 56,
            _ => return None,
        };
        let layout = Layout { state: 32, length: 16, data };
        let probes = ["caf\u{e9} \u{ff}", "\u{100}a\u{3b1}\u{20ac}\u{ffff}", "a\u{10000}\u{e9}\u{1f600}\u{10ffff}"];
        let trusted = probes.iter().all(|probe| {
            let s = PyString::new(py, probe);
            let expected: Vec<u32> = probe.chars().map(|c| c as u32).collect();
            // SAFETY: `s` is a live str made just now; `read` checks its fields before
            // reading its characters.
            match unsafe { read(&s, layout) } {
                Some(StrStorage::Latin1(units)) => units.iter().map(|&u| u as u32).eq(expected),
                Some(StrStorage::Ucs2(units)) => units.iter().map(|&u| u as u32).eq(expected),
                Some(StrStorage::Ucs4(units)) => units.iter().copied().eq(expected),
                None => false,
            }
        });
        trusted.then_some(layout)
    })
}

/// The characters of `text` as CPython stores them, or None for an ASCII str (its UTF-8 is
/// itself), a str not stored compactly, or an interpreter whose layout is not known.
pub fn storage<'a>(text: &'a Bound<'_, PyString>) -> Option<StrStorage<'a>> {
    let layout = layout(text.py())?;
    // SAFETY: `read` checks the fields against the limited API before using them; the
    // characters live as long as the borrowed str, which is immutable.
    unsafe { read(text, layout) }
}

unsafe fn read<'a>(text: &'a Bound<'_, PyString>, layout: Layout) -> Option<StrStorage<'a>> {
    let object = text.as_ptr() as *const u8;
    let state = (object.add(layout.state) as *const u32).read();
    let (kind, compact, ascii) = ((state >> 2) & 7, (state >> 5) & 1 == 1, (state >> 6) & 1 == 1);
    let length = (object.add(layout.length) as *const ffi::Py_ssize_t).read();
    if !compact || ascii || length != ffi::PyUnicode_GetLength(text.as_ptr()) {
        return None;
    }
    let data = object.add(layout.data);
    let length = length as usize;
    match kind {
        1 => Some(StrStorage::Latin1(std::slice::from_raw_parts(data, length))),
        2 => Some(StrStorage::Ucs2(std::slice::from_raw_parts(data as *const u16, length))),
        4 => Some(StrStorage::Ucs4(std::slice::from_raw_parts(data as *const u32, length))),
        _ => None,
    }
}
