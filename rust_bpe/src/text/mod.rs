//! Text plumbing: UTF-8 of text stored as fixed-width code points (a Python str's own
//! storage, read in place), and buffers on huge pages.

pub(crate) mod huge_pages;
#[cfg(feature = "python")]
pub(crate) mod str_storage;
pub mod utf8;
