//! UTF-8 of text stored as one code point per unit of a fixed width: the Latin-1 (u8),
//! UCS-2 (u16) and UCS-4 (u32) storage of a Python str, read in place, so that a str is
//! transcoded a window at a time by the thread that encodes it rather than all at once by
//! CPython before encoding starts.

/// A code point stored in one unit.
pub trait CodeUnit: Copy + Into<u32> + Send + Sync + 'static {
    /// The most UTF-8 bytes one unit takes.
    const MAX_UTF8: usize;
}

impl CodeUnit for u8 {
    const MAX_UTF8: usize = 2;
}

impl CodeUnit for u16 {
    const MAX_UTF8: usize = 3;
}

impl CodeUnit for u32 {
    const MAX_UTF8: usize = 4;
}

/// A lone surrogate, which UTF-8 cannot hold, at this index of the units.
#[derive(Debug, PartialEq, Eq)]
pub struct Surrogate(pub usize);

/// Appends the UTF-8 of `units` to `out`.
pub fn push_utf8<U: CodeUnit>(units: &[U], out: &mut Vec<u8>) -> Result<(), Surrogate> {
    out.reserve(units.len() * U::MAX_UTF8 + SLACK);
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512bw") && std::arch::is_x86_feature_detected!("avx512vbmi2") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { push_utf8_avx512(units, out) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { push_utf8_avx2(units, out) };
        }
    }
    push_utf8_reserved(units, out)
}

/// Sixteen units at a time: each becomes the (up to four) bytes of its UTF-8 in a 32-bit
/// lane, and the bytes in use are packed together (`vpcompressb`); a run of ASCII is
/// narrowed, 64 units at a time once sixteen were ASCII. A lone surrogate sends its sixteen
/// units through the scalar loop, which says where it is.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,avx2,bmi2")]
unsafe fn push_utf8_avx512<U: CodeUnit>(units: &[U], out: &mut Vec<u8>) -> Result<(), Surrogate> {
    use std::arch::x86_64::*;
    debug_assert!(out.capacity() - out.len() >= units.len() * U::MAX_UTF8 + SLACK);
    let src = units.as_ptr();
    let dst = out.as_mut_ptr();
    let mut len = out.len();
    let mut i = 0;
    let splat = |x: u32| _mm512_set1_epi32(x as i32);
    let mut after_ascii = true;
    while i + 16 <= units.len() {
        // Within a run of ASCII, 64 units at a time.
        if after_ascii && i + 64 <= units.len() {
            let at = src.add(i) as *const __m512i;
            let to = dst.add(len);
            let a = _mm512_loadu_si512(at);
            let b = if std::mem::size_of::<U>() > 1 { _mm512_loadu_si512(at.add(1)) } else { a };
            let (c, d) = if std::mem::size_of::<U>() > 2 { (_mm512_loadu_si512(at.add(2)), _mm512_loadu_si512(at.add(3))) } else { (a, b) };
            let ascii = match std::mem::size_of::<U>() {
                1 => _mm512_movepi8_mask(a) == 0,
                2 => _mm512_test_epi16_mask(_mm512_or_si512(a, b), _mm512_set1_epi16(!0x7F)) == 0,
                _ => _mm512_test_epi32_mask(_mm512_or_si512(_mm512_or_si512(a, b), _mm512_or_si512(c, d)), splat(!0x7F)) == 0,
            };
            if ascii {
                match std::mem::size_of::<U>() {
                    1 => _mm512_storeu_si512(to as *mut __m512i, a),
                    2 => {
                        _mm256_storeu_si256(to as *mut __m256i, _mm512_cvtepi16_epi8(a));
                        _mm256_storeu_si256(to.add(32) as *mut __m256i, _mm512_cvtepi16_epi8(b));
                    }
                    _ => {
                        for (k, v) in [a, b, c, d].into_iter().enumerate() {
                            _mm_storeu_si128(to.add(16 * k) as *mut __m128i, _mm512_cvtepi32_epi8(v));
                        }
                    }
                }
                len += 64;
                i += 64;
                continue;
            }
        }
        let c = match std::mem::size_of::<U>() {
            1 => _mm512_cvtepu8_epi32(_mm_loadu_si128(src.add(i) as *const __m128i)),
            2 => _mm512_cvtepu16_epi32(_mm256_loadu_si256(src.add(i) as *const __m256i)),
            _ => _mm512_loadu_si512(src.add(i) as *const __m512i),
        };
        let two_bytes = _mm512_cmpge_epu32_mask(c, splat(0x80));
        after_ascii = two_bytes == 0;
        if two_bytes == 0 {
            _mm_storeu_si128(dst.add(len) as *mut __m128i, _mm512_cvtepi32_epi8(c));
            len += 16;
            i += 16;
            continue;
        }
        if _mm512_cmpeq_epi32_mask(_mm512_and_si512(c, splat(!0x7FF)), splat(0xD800)) != 0 {
            out.set_len(len);
            return push_utf8_reserved(&units[i..i + 16], out).map_err(|Surrogate(k)| Surrogate(i + k));
        }
        let three_bytes = _mm512_cmpge_epu32_mask(c, splat(0x800));
        let four_bytes = _mm512_cmpge_epu32_mask(c, splat(0x10000));
        let low6 = |shift: u32| _mm512_or_si512(_mm512_and_si512(_mm512_srlv_epi32(c, splat(shift)), splat(0x3F)), splat(0x80));
        let (c0, c6, c12) = (low6(0), low6(6), low6(12));
        let lead = |shift: u32, bits: u32| _mm512_or_si512(_mm512_srlv_epi32(c, splat(shift)), splat(bits));
        let two = _mm512_or_si512(lead(6, 0xC0), _mm512_slli_epi32(c0, 8));
        let three = _mm512_or_si512(_mm512_or_si512(lead(12, 0xE0), _mm512_slli_epi32(c6, 8)), _mm512_slli_epi32(c0, 16));
        let four = _mm512_or_si512(
            _mm512_or_si512(lead(18, 0xF0), _mm512_slli_epi32(c12, 8)),
            _mm512_or_si512(_mm512_slli_epi32(c6, 16), _mm512_slli_epi32(c0, 24)),
        );
        let mut bytes = _mm512_mask_mov_epi32(c, two_bytes, two);
        bytes = _mm512_mask_mov_epi32(bytes, three_bytes, three);
        bytes = _mm512_mask_mov_epi32(bytes, four_bytes, four);
        let mut used = _mm512_mask_mov_epi32(splat(0xFF), two_bytes, splat(0xFFFF));
        used = _mm512_mask_mov_epi32(used, three_bytes, splat(0xFF_FFFF));
        used = _mm512_mask_mov_epi32(used, four_bytes, splat(u32::MAX));
        let keep = _mm512_test_epi8_mask(used, used);
        _mm512_storeu_si512(dst.add(len) as *mut __m512i, _mm512_maskz_compress_epi8(keep, bytes));
        len += keep.count_ones() as usize;
        i += 16;
    }
    out.set_len(len);
    push_utf8_reserved(&units[i..], out).map_err(|Surrogate(k)| Surrogate(i + k))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,bmi2")]
unsafe fn push_utf8_avx2<U: CodeUnit>(units: &[U], out: &mut Vec<u8>) -> Result<(), Surrogate> {
    push_utf8_reserved(units, out)
}

/// Bytes reserved past the worst case: for a character written as four bytes, and for
/// the whole 64-byte store of sixteen units' UTF-8 (`push_utf8_avx512`).
const SLACK: usize = 64;

/// The UTF-8 of code point `c` in the low `n` bytes of a little-endian u32, without
/// branches (the length changes from one character to the next in most scripts' text).
#[inline(always)]
fn utf8_bytes(c: u32) -> (u32, usize) {
    let n = 1 + (c >= 0x80) as usize + (c >= 0x800) as usize + (c >= 0x10000) as usize;
    // Each byte's bits of `c`, as the first byte of a sequence of each length takes them.
    let b0 = c >> (6 * (n as u32 - 1));
    let b1 = (c >> (6 * (n as u32).saturating_sub(2))) & 0x3F;
    let b2 = (c >> 6) & 0x3F;
    let b3 = c & 0x3F;
    let (lead, bits) = [(0x00, b0), (0xC0, b0 | (0x80 | b3) << 8), (0xE0, b0 | (0x80 | b1) << 8 | (0x80 | b3) << 16), (0xF0, b0 | (0x80 | b1) << 8 | (0x80 | b2) << 16 | (0x80 | b3) << 24)][n - 1];
    (lead | bits, n)
}

/// Runs of ASCII are found and narrowed this many units at a time (the compiler turns
/// both loops into vector instructions).
const LANES: usize = 32;

/// `push_utf8` into room already reserved for the worst case.
#[inline(always)]
fn push_utf8_reserved<U: CodeUnit>(units: &[U], out: &mut Vec<u8>) -> Result<(), Surrogate> {
    debug_assert!(out.capacity() - out.len() >= units.len() * U::MAX_UTF8 + SLACK);
    let dst = out.as_mut_ptr();
    let mut len = out.len();
    let mut i = 0;
    while i < units.len() {
        if let Some(run) = units.get(i..i + LANES) {
            if run.iter().fold(0u32, |any, &u| any | u.into()) < 0x80 {
                for (k, &u) in run.iter().enumerate() {
                    // SAFETY: the room reserved holds `MAX_UTF8` >= 1 bytes per unit.
                    unsafe { dst.add(len + k).write(u.into() as u8) };
                }
                len += LANES;
                i += LANES;
                continue;
            }
        }
        for (k, &u) in units[i..(i + LANES).min(units.len())].iter().enumerate() {
            let c: u32 = u.into();
            if c < 0x80 {
                // SAFETY: as below.
                unsafe { dst.add(len).write(c as u8) };
                len += 1;
                continue;
            }
            if c & !0x7FF == 0xD800 {
                // SAFETY: the bytes up to `len` were written.
                unsafe { out.set_len(len) };
                return Err(Surrogate(i + k));
            }
            let (bytes, n) = utf8_bytes(c);
            // SAFETY: four bytes are written where at most `MAX_UTF8` count; `SLACK` more
            // were reserved at the end for them.
            unsafe { (dst.add(len) as *mut [u8; 4]).write_unaligned(bytes.to_le_bytes()) };
            len += n;
        }
        i = (i + LANES).min(units.len());
    }
    // SAFETY: every byte up to `len` was written above.
    unsafe { out.set_len(len) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf8_of<U: CodeUnit>(units: &[U]) -> Result<String, Surrogate> {
        let mut out = b"before ".to_vec();
        push_utf8(units, &mut out)?;
        Ok(String::from_utf8(out).expect("valid UTF-8").strip_prefix("before ").expect("prefix kept").to_string())
    }

    #[test]
    fn every_width_gives_the_utf8_of_its_code_points() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..400 {
            // Long ASCII runs broken by characters of every UTF-8 length, at every offset.
            let len = (next() % 300) as usize;
            let text: String = (0..len)
                .map(|_| match next() % if round % 2 == 0 { 40 } else { 4 } {
                    0 => char::from_u32(0x80 + (next() % 0x780) as u32).unwrap(),
                    1 => char::from_u32(0xE000 + (next() % 0x1FFF) as u32).unwrap(),
                    2 => char::from_u32(0x10000 + (next() % 0xFFFFF) as u32).unwrap(),
                    _ => (b' ' + (next() % 95) as u8) as char,
                })
                .collect();
            let ucs4: Vec<u32> = text.chars().map(|c| c as u32).collect();
            assert_eq!(utf8_of(&ucs4).unwrap(), text);
            if text.chars().all(|c| (c as u32) < 0x10000) {
                let ucs2: Vec<u16> = ucs4.iter().map(|&c| c as u16).collect();
                assert_eq!(utf8_of(&ucs2).unwrap(), text);
            }
            let latin1: Vec<u8> = ucs4.iter().map(|&c| c as u8).collect();
            let expected: String = latin1.iter().map(|&b| b as char).collect();
            assert_eq!(utf8_of(&latin1).unwrap(), expected);
        }
    }

    #[test]
    fn ascii_runs_of_any_length_end_where_they_do() {
        for run in 0..200 {
            let text = format!("{}\u{e9}\u{20ac}\u{1f600}{}z", "x".repeat(run), "y".repeat(run % 150));
            let ucs4: Vec<u32> = text.chars().map(|c| c as u32).collect();
            assert_eq!(utf8_of(&ucs4).unwrap(), text);
            let bmp: String = text.chars().filter(|&c| (c as u32) < 0x10000).collect();
            let ucs2: Vec<u16> = bmp.chars().map(|c| c as u16).collect();
            assert_eq!(utf8_of(&ucs2).unwrap(), bmp);
            let latin1: String = text.chars().filter(|&c| (c as u32) < 0x100).collect();
            let units: Vec<u8> = latin1.chars().map(|c| c as u8).collect();
            assert_eq!(utf8_of(&units).unwrap(), latin1);
        }
    }

    #[test]
    fn a_lone_surrogate_is_reported_where_it_is() {
        let mut units: Vec<u16> = "a".repeat(70).encode_utf16().collect();
        units[45] = 0xDC00;
        assert_eq!(utf8_of(&units), Err(Surrogate(45)));
        let units: Vec<u32> = vec![0x61, 0xD800, 0x62];
        assert_eq!(utf8_of(&units), Err(Surrogate(1)));
        // Among characters of every length, wherever it falls in a run of sixteen units.
        let text: Vec<u32> = "a\u{e9}\u{20ac}b".repeat(20).chars().map(|c| c as u32).collect();
        for at in 0..text.len() {
            let mut ucs4 = text.clone();
            ucs4[at] = 0xDFFF;
            assert_eq!(utf8_of(&ucs4), Err(Surrogate(at)));
            let ucs2: Vec<u16> = ucs4.iter().map(|&c| c as u16).collect();
            assert_eq!(utf8_of(&ucs2), Err(Surrogate(at)));
        }
    }
}
