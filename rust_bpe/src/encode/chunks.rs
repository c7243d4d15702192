//! A text cut into chunks encoded in parallel, and the ids they leave in the buffers of
//! the threads (`Parts`).

use super::*;

impl Encoder {
    /// The ids of `text` in parts (one per chunk, in order), encoded in parallel when the
    /// pool has several threads; one part otherwise.
    pub(super) fn encode_chunks<T: TokenId>(&self, text: &str, specials: &SpecialTokens, ids: &[u32], pool: Option<&rayon::ThreadPool>) -> Parts<T> {
        let threads = pool.map_or(1, |p| p.current_num_threads());
        let cuts = match chunk_target(text.len(), threads) {
            None => vec![0, text.len()],
            // Cuts that the full special-token set does not cross are safe for any subset.
            Some(target) => {
                let pattern = self.tokenizer.pattern();
                let safe_for = if pattern.is_builtin() { self.tokenizer.specials() } else { specials };
                tapered_cuts(text.len(), target, threads, |start, target| cut_points(&text.as_bytes()[start..], target, pattern, safe_for))
            }
        };
        let parts = run_chunks(cuts.len() - 1, text.len(), pool, |i, out| {
            self.encode_with_specials_into(&text[cuts[i]..cuts[i + 1]], specials, ids, text.len(), out);
            Ok(())
        });
        parts.expect("encoding UTF-8 text cannot fail")
    }

    /// Encodes code points a window at a time: each window is turned into UTF-8 after what
    /// the window before left over, and encoded up to its last safe cut.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn encode_chars_into<T: TokenId, U: CodeUnit>(
        &self,
        chars: &[U],
        offset: usize,
        specials: &SpecialTokens,
        ids: &[u32],
        banned: Option<&AhoCorasick>,
        job_len: usize,
        out: &mut Vec<T>,
    ) -> Result<(), BpeError> {
        // The thread's window buffer from its last chunk (fresh memory faults a page at a
        // time); given back at the end (an error drops it).
        let mut utf8 = WINDOW_UTF8.with(|w| std::mem::take(&mut *w.borrow_mut()));
        utf8.clear();
        utf8.reserve(WINDOW_CHARS * U::MAX_UTF8);
        let (pattern, all) = (self.tokenizer.pattern(), self.tokenizer.specials());
        let (mut at, mut looked) = (0, 0);
        while at < chars.len() {
            let end = (at + WINDOW_CHARS).min(chars.len());
            push_utf8(&chars[at..end], &mut utf8).map_err(|Surrogate(i)| BpeError::LoneSurrogate(offset + at + i))?;
            at = end;
            let cut = if at == chars.len() {
                utf8.len()
            } else {
                // No special token crosses a cut, so each window can be checked on its own.
                let (cut, limit) = last_cut_after(&utf8, looked, pattern, all);
                looked = limit - cut;
                cut
            };
            if cut == 0 {
                continue;
            }
            check_banned(&utf8[..cut], banned)?;
            // SAFETY: UTF-8 made from code points, cut at a character boundary (a space, or after a newline).
            let window = unsafe { std::str::from_utf8_unchecked(&utf8[..cut]) };
            self.encode_with_specials_into(window, specials, ids, job_len, out);
            utf8.drain(..cut);
        }
        WINDOW_UTF8.with(|w| *w.borrow_mut() = utf8);
        Ok(())
    }
}

/// Chunks of about what size a text of `len` bytes (or characters) is cut into for
/// `threads`; None for one chunk. Below a quarter of a megabyte, waking the other threads
/// costs more than they save.
pub(super) fn chunk_target(len: usize, threads: usize) -> Option<usize> {
    const MIN_PARALLEL: usize = 256 << 10;
    const MIN_CHUNK: usize = 64 << 10;
    (threads > 1 && len >= MIN_PARALLEL).then(|| (len / (threads * 16)).clamp(MIN_CHUNK, 2 << 20))
}

/// Cut points of a text of `len` bytes (or characters) into chunks of about `target`, and of
/// a quarter of that in the quarter of the text around where the threads meet (see
/// `run_chunks`: 1/`threads` of the way in), so that they run out of work at about the same
/// time. `cut_points(start, target)`: the cut points of the text from `start` on, counted
/// from there (from 0 to its length); a cut point of the whole text is one of the rest from
/// there, as whether a place is a cut depends only on the text around it.
pub(super) fn tapered_cuts(len: usize, target: usize, threads: usize, cut_points: impl Fn(usize, usize) -> Vec<usize>) -> Vec<usize> {
    let meet = len / threads.max(1);
    let (from, to) = (meet.saturating_sub(len / 8), meet + len / 8);
    let mut cuts = vec![0];
    for (end, target) in [(from, target), (to, target / 4), (len, target)] {
        let start = *cuts.last().expect("a cut");
        if start < end {
            let next = cut_points(start, target);
            let last = next.iter().position(|&cut| start + cut >= end).unwrap_or(next.len() - 1);
            cuts.extend(next[1..=last].iter().map(|cut| cut + start));
        }
    }
    cuts
}

/// Runs `encode_chunk` for chunks 0..n of a text of at most `text_len` bytes of UTF-8, on
/// the pool's threads when there is a pool, each appending the ids of the chunks it takes
/// to its own buffer; gives where they are, or the error of the first chunk that failed.
pub(super) fn run_chunks<T: TokenId>(
    n: usize,
    text_len: usize,
    pool: Option<&rayon::ThreadPool>,
    encode_chunk: impl Fn(usize, &mut Vec<T>) -> Result<(), BpeError> + Sync,
) -> Result<Parts<T>, BpeError> {
    let Some(pool) = pool.filter(|_| n > 1) else {
        let mut buffer = ids_buffer(text_len);
        let mut chunks = Vec::with_capacity(n);
        for i in 0..n {
            let start = buffer.len();
            encode_chunk(i, &mut buffer)?;
            chunks.push((0, start, buffer.len()));
        }
        return Ok(Parts { buffers: vec![buffer], chunks });
    };
    let threads = pool.current_num_threads();
    // The chunks not taken yet, from .0 to .1: the calling thread takes them from the
    // front, the others from the back, so that its ids are the first of the text, in
    // order, and the others' are joined after them. None is taken from the first that
    // failed on: every chunk before that one runs, so its error is the first in the text.
    let untaken = Mutex::new((0, n));
    let first_failed = AtomicUsize::new(n);
    let first_error: Mutex<Option<(usize, BpeError)>> = Mutex::new(None);
    let chunks: Vec<Mutex<(usize, usize, usize)>> = (0..n).map(|_| Mutex::new((0, 0, 0))).collect();
    let buffers: Vec<Mutex<Vec<T>>> = (0..threads).map(|_| Mutex::new(Vec::new())).collect();
    let take_chunks = |thread: usize| {
        // The calling thread's buffer has room for every id (ids never outnumber bytes),
        // for the others' to be joined to; the others have room for a quarter more than a
        // thread's share.
        let mut buffer = ids_buffer(if thread == 0 { text_len } else { text_len / threads + text_len / (4 * threads) });
        loop {
            let i = {
                let mut untaken = untaken.lock().expect("the chunks");
                let (front, back) = &mut *untaken;
                *back = (*back).min(first_failed.load(Ordering::Relaxed));
                if *front >= *back {
                    break;
                }
                if thread == 0 {
                    *front += 1;
                    *front - 1
                } else {
                    *back -= 1;
                    *back
                }
            };
            let start = buffer.len();
            match encode_chunk(i, &mut buffer) {
                Ok(()) => *chunks[i].lock().expect("a chunk") = (thread, start, buffer.len()),
                Err(error) => {
                    first_failed.fetch_min(i, Ordering::Relaxed);
                    let mut first = first_error.lock().expect("an error");
                    if first.as_ref().is_none_or(|&(j, _)| i < j) {
                        *first = Some((i, error));
                    }
                }
            }
        }
        *buffers[thread].lock().expect("a buffer") = buffer;
    };
    // The calling thread takes chunks too, with the cache its earlier calls filled.
    pool.in_place_scope(|scope| {
        for thread in 1..threads {
            let take_chunks = &take_chunks;
            scope.spawn(move |_| take_chunks(thread));
        }
        take_chunks(0);
    });
    if let Some((_, error)) = first_error.into_inner().expect("an error") {
        return Err(error);
    }
    Ok(Parts {
        buffers: buffers.into_iter().map(|b| b.into_inner().expect("a buffer")).collect(),
        chunks: chunks.into_iter().map(|c| c.into_inner().expect("a chunk")).collect(),
    })
}

/// Room for the ids of up to `text_len` bytes of UTF-8. A large text gets room for one id
/// per byte (ids never outnumber bytes; 40 languages together take 1.5 bytes a GPT-2 token),
/// so that its buffer does not grow, and memory it never writes is never touched; but no
/// more than 64 Mi ids past one per two bytes (English takes over 4 bytes a token), so that
/// the room asked for stays well within the system's memory. A small text gets one id per
/// two bytes: growing costs little there, and the room is held as long as its ids are.
pub(super) fn ids_buffer<T>(text_len: usize) -> Vec<T> {
    const LARGE: usize = 1 << 20;
    let room = if text_len < LARGE { text_len / 2 } else { text_len.min(text_len / 2 + (64 << 20)) };
    crate::text::huge_pages::vec_with_capacity(room + 16)
}

/// The ids of a text encoded in chunks, left in the buffers of the threads that encoded
/// them (a buffer per thread rather than per chunk: fresh memory takes a page fault every
/// 4 KiB that is not a huge page); joined, they are the ids of the text.
#[derive(Debug)]
pub struct Parts<T> {
    pub(super) buffers: Vec<Vec<T>>,
    /// (buffer, start, end) of each chunk's ids, in the order of the text.
    pub(super) chunks: Vec<(usize, usize, usize)>,
}

impl<T: TokenId> Parts<T> {
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// The ids joined: after the chunks at the start of the text that one buffer holds one
    /// after another from its start, in that buffer if it holds no other chunk and has room
    /// for the rest (as the calling thread's has, see `run_chunks`), else in a new one; the
    /// rest copied in parallel when there is a pool.
    pub fn join(mut self, pool: Option<&rayon::ThreadPool>) -> Vec<T> {
        let total = self.chunks.iter().map(|&(_, start, end)| end - start).sum();
        let home = self.chunks.first().map_or(0, |c| c.0);
        let prefix = self.chunks.iter().scan(0, |held, &(b, start, end)| (b == home && start == *held).then(|| *held = end)).count();
        let in_place = self.chunks[prefix..].iter().all(|c| c.0 != home) && self.buffers.get(home).is_some_and(|b| b.capacity() >= total);
        let (mut out, rest) = if in_place {
            let mut out = std::mem::take(&mut self.buffers[home]);
            out.truncate(self.chunks[..prefix].last().map_or(0, |c| c.2));
            (out, &self.chunks[prefix..])
        } else {
            (crate::text::huge_pages::vec_with_capacity(total), &self.chunks[..])
        };
        let done = out.len();
        let mut room = &mut out.spare_capacity_mut()[..total - done];
        let mut copies = Vec::with_capacity(rest.len());
        for &(buffer, start, end) in rest {
            let (head, tail) = room.split_at_mut(end - start);
            copies.push((head, &self.buffers[buffer][start..end]));
            room = tail;
        }
        let copy = |(dst, src): &mut (&mut [std::mem::MaybeUninit<T>], &[T])| {
            // SAFETY: `dst` has room for exactly `src.len()` items; T is a plain integer.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr() as *mut T, src.len()) }
        };
        match pool {
            Some(pool) if copies.len() > 1 => pool.install(|| copies.par_iter_mut().for_each(copy)),
            _ => copies.iter_mut().for_each(copy),
        }
        // SAFETY: the copies above wrote the `total - done` items after the first `done`.
        unsafe { out.set_len(total) };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::testing::*;

    #[test]
    fn parallel_chunks_give_the_same_ids() {
        let enc = trained();
        // Past the length from which a text is encoded in parallel chunks (256 KiB).
        let text = "the quick brown fox\njumps over the lazy dog<|endoftext|>\n".repeat(30_000);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        assert!(enc.encode_parts::<u32>(&text, &Allowed::All, &Allowed::None, Some(&pool)).unwrap().chunk_count() > 1);
        let one = enc.encode(&text, &Allowed::All, &Allowed::None, None).unwrap();
        let many = enc.encode(&text, &Allowed::All, &Allowed::None, Some(&pool)).unwrap();
        assert_eq!(one, many);
        let narrow = enc.encode_parts::<u16>(&text, &Allowed::All, &Allowed::None, Some(&pool)).unwrap().join(None);
        assert!(one.iter().map(|&id| id as u16).eq(narrow));
    }

    #[test]
    fn chunks_are_smaller_where_the_threads_meet() {
        // Every 10th place is a cut (counted in the whole text).
        let every_tenth = |start: usize, target: usize| {
            let mut cuts = vec![0];
            while *cuts.last().unwrap() < 1000 - start {
                let from = cuts.last().unwrap() + target;
                cuts.push(((start + from).next_multiple_of(10) - start).min(1000 - start));
            }
            cuts
        };
        let sizes = |threads| {
            let cuts = tapered_cuts(1000, 100, threads, every_tenth);
            cuts.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>()
        };
        // Two threads meet halfway: chunks of a quarter from 375 on to 625.
        assert_eq!(sizes(2), [[100; 4].as_slice(), &[30; 8], &[100, 100, 100, 60]].concat());
        // Four meet a quarter of the way in: from 125 to 375.
        assert_eq!(sizes(4), [[100; 2].as_slice(), &[30; 6], &[100; 6], &[20]].concat());
    }

    #[test]
    fn parts_join_in_the_order_of_the_text() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        // Chunks 0 and 2 taken by one thread, chunk 1 by the other.
        let spread = || Parts { buffers: vec![vec![1u32, 2, 5, 6], vec![3, 4]], chunks: vec![(0, 0, 2), (1, 0, 2), (0, 2, 4)] };
        assert_eq!(spread().join(None), [1, 2, 3, 4, 5, 6]);
        assert_eq!(spread().join(Some(&pool)), [1, 2, 3, 4, 5, 6]);
        // One thread took every chunk; the other's buffer is empty.
        let one = Parts { buffers: vec![vec![], vec![7u16, 8, 9]], chunks: vec![(1, 0, 1), (1, 1, 3)] };
        assert_eq!(one.join(Some(&pool)), [7, 8, 9]);
        // The first chunks in one buffer with room for all: the rest are joined after them,
        // in that buffer.
        let mut home = Vec::with_capacity(8);
        home.extend([1u32, 2, 3]);
        let at = home.as_ptr();
        let ends = Parts { buffers: vec![home, vec![6, 7, 8, 4, 5]], chunks: vec![(0, 0, 2), (0, 2, 3), (1, 3, 5), (1, 0, 3)] };
        let joined = ends.join(Some(&pool));
        assert_eq!(joined, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(joined.as_ptr(), at);
    }

    #[test]
    fn parts_join_whatever_buffers_hold_them() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let mut seed = 99u64;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for round in 0..300 {
            // Chunks of ids counting up, each appended to one of three buffers, some of them
            // with room for every id and some not; half the rounds take the chunks from
            // both ends, as `run_chunks` does.
            let n = 1 + next(12) as usize;
            let sizes: Vec<usize> = (0..n).map(|_| next(40) as usize).collect();
            let total: usize = sizes.iter().sum();
            let mut buffers: Vec<Vec<u32>> = (0..3).map(|_| Vec::with_capacity(if next(2) == 0 { total } else { 1 })).collect();
            let mut chunks = vec![(0, 0, 0); n];
            let (mut front, mut back) = (0, n);
            let starts: Vec<u32> = sizes.iter().scan(0, |at, &size| Some(std::mem::replace(at, *at + size as u32))).collect();
            while front < back {
                let b = next(3) as usize;
                let i = if round % 2 == 0 || b == 0 { front += 1; front - 1 } else { back -= 1; back };
                let start = buffers[b].len();
                buffers[b].extend(starts[i]..starts[i] + sizes[i] as u32);
                chunks[i] = (b, start, buffers[b].len());
            }
            let parts = Parts { buffers, chunks };
            let joined = if round % 4 < 2 { parts.join(None) } else { parts.join(Some(&pool)) };
            assert_eq!(joined, (0..total as u32).collect::<Vec<_>>(), "sizes {sizes:?}");
        }
    }

    #[test]
    fn the_first_error_in_the_text_is_the_one_reported() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        // The thread that takes chunks from the back meets chunk 9's error first; chunk 3's,
        // earlier in the text, is still found and reported.
        let result = run_chunks::<u32>(10, 1000, Some(&pool), |i, out| {
            if i < 3 {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            match i {
                3 | 9 => Err(BpeError::InvalidArgument(format!("chunk {i}"))),
                _ => Ok(out.push(i as u32)),
            }
        });
        assert!(matches!(result, Err(BpeError::InvalidArgument(ref m)) if m == "chunk 3"), "{result:?}");
        let parts = run_chunks::<u32>(10, 1000, Some(&pool), |i, out| Ok(out.push(i as u32))).unwrap();
        assert_eq!(parts.join(Some(&pool)), (0..10).collect::<Vec<_>>());
    }
}
