//! The portable kernel: two `sha2::compress256` calls per nonce from the header's midstate.

use sha2::digest::generic_array::GenericArray;

use super::IV;

/// The second block of the first hash, with the nonce word left for the caller.
pub(super) fn first_block(tail: &[u32; 3]) -> [u8; 64] {
    let mut b = [0u8; 64];
    for (i, w) in tail.iter().enumerate() {
        b[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
    }
    b[16] = 0x80;
    b[62..64].copy_from_slice(&640u16.to_be_bytes());
    b
}

/// The final SHA-256d state words of one nonce.
pub(super) fn hash_state(midstate: &[u32; 8], block: &mut [u8; 64], nonce: u32) -> [u32; 8] {
    block[12..16].copy_from_slice(&nonce.to_le_bytes());
    let mut s1 = *midstate;
    sha2::compress256(&mut s1, &[GenericArray::clone_from_slice(block)]);
    let mut second = [0u8; 64];
    for (i, w) in s1.iter().enumerate() {
        second[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
    }
    second[32] = 0x80;
    second[62..64].copy_from_slice(&256u16.to_be_bytes());
    let mut s2 = IV;
    sha2::compress256(&mut s2, &[GenericArray::clone_from_slice(&second)]);
    s2
}

/// Scans `start .. start + count`, pushing nonces whose top word is ≤ `top_target`.
pub fn scan(
    midstate: &[u32; 8],
    tail: &[u32; 3],
    top_target: u32,
    start: u32,
    count: u32,
    out: &mut Vec<u32>,
) {
    let mut block = first_block(tail);
    for i in 0..count {
        let nonce = start.wrapping_add(i);
        if hash_state(midstate, &mut block, nonce)[7].swap_bytes() <= top_target {
            out.push(nonce);
        }
    }
}
