//! A pre-token of up to 15 bytes packed into one u128 (its bytes, then its length): the key
//! of the encoder's cache and of the trainer's counts.

/// Up to 15 bytes packed into one integer: the bytes little-endian, the length in the top byte.
/// Pre-tokens this short (nearly all of them) are keyed by it instead of by a byte string.
pub const MAX_PACKED: usize = 15;

#[inline(always)]
pub fn pack(piece: &[u8]) -> u128 {
    let mut buf = [0u8; 16];
    buf[..piece.len()].copy_from_slice(piece);
    buf[15] = piece.len() as u8;
    u128::from_le_bytes(buf)
}

/// `LOW_BYTES[n]` keeps the low `n` bytes of a u128.
pub(super) const LOW_BYTES: [u128; 16] = {
    let mut masks = [0u128; 16];
    let mut n = 1;
    while n < 16 {
        masks[n] = (1u128 << (8 * n)) - 1;
        n += 1;
    }
    masks
};

/// `pack(&bytes[start..end])`, reading 16 bytes at once where `bytes` has them.
#[inline(always)]
pub fn pack_at(bytes: &[u8], start: usize, end: usize) -> u128 {
    let len = end - start;
    debug_assert!(len <= MAX_PACKED);
    match bytes.get(start..start + 16) {
        Some(window) => {
            let word = u128::from_le_bytes(window.try_into().expect("16 bytes"));
            (word & LOW_BYTES[len & 15]) | ((len as u128) << 120)
        }
        None => pack(&bytes[start..end]),
    }
}

/// The bytes a packed key holds.
pub fn unpack(key: u128) -> Vec<u8> {
    let len = (key >> 120) as usize;
    key.to_le_bytes()[..len].to_vec()
}
