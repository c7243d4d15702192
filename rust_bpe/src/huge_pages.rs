//! Buffers backed by 2 MiB pages where the system offers them (Linux transparent huge
//! pages, in "madvise" mode on most systems): random lookups in a table of tens of
//! megabytes then rarely miss the TLB, and a fresh buffer takes 1/512 as many page faults.

/// A vector with room for `capacity` items whose memory is asked to be huge pages.
pub fn vec_with_capacity<T>(capacity: usize) -> Vec<T> {
    let v = Vec::with_capacity(capacity);
    advise(v.as_ptr() as *const u8, v.capacity() * std::mem::size_of::<T>());
    v
}

/// Asks the kernel to back `len` bytes at `start` with huge pages when they are first
/// written (a hint; nothing happens where it is not supported).
fn advise(start: *const u8, len: usize) {
    #[cfg(target_os = "linux")]
    {
        const HUGE_PAGE: usize = 2 << 20;
        if len < HUGE_PAGE {
            return;
        }
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let begin = (start as usize).div_ceil(page) * page;
        let end = (start as usize + len) / page * page;
        if end > begin {
            // SAFETY: the range lies inside memory the caller owns; MADV_HUGEPAGE changes
            // only how it is backed, never its contents.
            unsafe { libc::madvise(begin as *mut libc::c_void, end - begin, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (start, len);
}
