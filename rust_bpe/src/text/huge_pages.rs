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
pub(crate) fn advise(start: *const u8, len: usize) {
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

/// `len` items of `T`, all bytes zero, in memory mapped for them alone: the kernel hands
/// out zeroed pages as they are first touched (on 2 MiB pages from 2 MiB on), so a large
/// table costs nothing up front and its zeroing falls to whichever threads first use it.
pub(crate) struct ZeroedBuffer<T> {
    items: *mut T,
    len: usize,
    /// The mapping (start, bytes), to unmap; None when it came from the allocator.
    mapping: Option<(*mut u8, usize)>,
}

// SAFETY: the buffer owns its items like a Box<[T]>.
unsafe impl<T: Send> Send for ZeroedBuffer<T> {}
// SAFETY: as above; shared access gives only &[T].
unsafe impl<T: Sync> Sync for ZeroedBuffer<T> {}

impl<T> ZeroedBuffer<T> {
    /// # Safety
    /// All-zero bytes must be a valid `T` (integers, atomics, structs of them).
    pub(crate) unsafe fn new(len: usize) -> ZeroedBuffer<T> {
        let len = len.max(1);
        let layout = std::alloc::Layout::array::<T>(len).expect("a buffer size");
        // A mapping starts on a page, which any alignment up to a page's meets.
        #[cfg(target_os = "linux")]
        if layout.align() <= 4096 {
            const HUGE_PAGE: usize = 2 << 20;
            let extra = if layout.size() >= HUGE_PAGE { HUGE_PAGE } else { 0 };
            let bytes = layout.size() + extra;
            // SAFETY: an anonymous private mapping; no memory is touched.
            let start = unsafe {
                libc::mmap(std::ptr::null_mut(), bytes, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
            };
            if start != libc::MAP_FAILED {
                let start = start as *mut u8;
                let items = if extra > 0 { (start as usize).next_multiple_of(HUGE_PAGE) as *mut u8 } else { start };
                advise(items, layout.size());
                return ZeroedBuffer { items: items as *mut T, len, mapping: Some((start, bytes)) };
            }
        }
        // SAFETY: the layout is not empty.
        let items = unsafe { std::alloc::alloc_zeroed(layout) } as *mut T;
        if items.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        ZeroedBuffer { items, len, mapping: None }
    }
}

impl<T> std::ops::Deref for ZeroedBuffer<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `len` zero-valid items live at `items` for as long as the buffer.
        unsafe { std::slice::from_raw_parts(self.items, self.len) }
    }
}

impl<T> std::ops::DerefMut for ZeroedBuffer<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and the buffer is borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.items, self.len) }
    }
}

impl<T> Drop for ZeroedBuffer<T> {
    fn drop(&mut self) {
        // SAFETY: the items need no drop (zero-valid plain data); the memory is given back
        // the way it was got.
        unsafe {
            match self.mapping {
                #[cfg(target_os = "linux")]
                Some((start, bytes)) => {
                    libc::munmap(start as *mut libc::c_void, bytes);
                }
                #[cfg(not(target_os = "linux"))]
                Some(_) => unreachable!("mapped only on Linux"),
                None => std::alloc::dealloc(self.items as *mut u8, std::alloc::Layout::array::<T>(self.len).expect("a buffer size")),
            }
        }
    }
}
