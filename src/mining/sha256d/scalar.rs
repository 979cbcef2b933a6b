//! Scalar SHA-256 pieces: round constants and the Σ/σ/Ch/Maj functions (used by the portable
//! kernel), and for the SIMD kernels a scalar round for per-call precomputation and the
//! nonce-independent part of the second hash's first round.

#[cfg(target_arch = "x86_64")]
use super::IV;

/// SHA-256 round constants.
pub(super) const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// Σ0 of the compression function.
pub(super) const fn big_s0(x: u32) -> u32 {
    x.rotate_right(2) ^ x.rotate_right(13) ^ x.rotate_right(22)
}

/// Σ1 of the compression function.
pub(super) const fn big_s1(x: u32) -> u32 {
    x.rotate_right(6) ^ x.rotate_right(11) ^ x.rotate_right(25)
}

/// σ0 of the message schedule.
pub(super) const fn small_s0(x: u32) -> u32 {
    x.rotate_right(7) ^ x.rotate_right(18) ^ (x >> 3)
}

/// σ1 of the message schedule.
pub(super) const fn small_s1(x: u32) -> u32 {
    x.rotate_right(17) ^ x.rotate_right(19) ^ (x >> 10)
}

/// The choose function.
pub(super) const fn ch(e: u32, f: u32, g: u32) -> u32 {
    (e & f) ^ (!e & g)
}

/// The majority function.
pub(super) const fn maj(a: u32, b: u32, c: u32) -> u32 {
    (a & b) ^ (a & c) ^ (b & c)
}

#[cfg(target_arch = "x86_64")]
/// One scalar round on state `s` with `kw = K[i] + W[i]`.
pub(super) fn scalar_round(s: &mut [u32; 8], kw: u32) {
    let [a, b, c, d, e, f, g, h] = *s;
    let t1 = h
        .wrapping_add(big_s1(e))
        .wrapping_add(ch(e, f, g))
        .wrapping_add(kw);
    let t2 = big_s0(a).wrapping_add(maj(a, b, c));
    *s = [t1.wrapping_add(t2), a, b, c, d.wrapping_add(t1), e, f, g];
}

#[cfg(target_arch = "x86_64")]
/// Second hash, round 0 from the IV: the nonce-independent part of T1 (everything but W0).
pub(super) const H2_T1: u32 = IV[7]
    .wrapping_add(big_s1(IV[4]))
    .wrapping_add(ch(IV[4], IV[5], IV[6]))
    .wrapping_add(K[0]);
#[cfg(target_arch = "x86_64")]
/// Second hash: `a` after round 0 is `W0 + H2_A1`.
pub(super) const H2_A1: u32 = H2_T1
    .wrapping_add(big_s0(IV[0]))
    .wrapping_add(maj(IV[0], IV[1], IV[2]));
#[cfg(target_arch = "x86_64")]
/// Second hash: `e` after round 0 is `W0 + H2_E1`.
pub(super) const H2_E1: u32 = H2_T1.wrapping_add(IV[3]);

#[cfg(target_arch = "x86_64")]
/// Everything about the header's second block that does not depend on the nonce, computed once
/// per scan call by the SIMD kernels.
pub(super) struct BlockConstants {
    /// State after rounds 0..2 (which use only W0..W2).
    pub s3: [u32; 8],
    /// `a` after round 3, less W3.
    pub a4c: u32,
    /// `e` after round 3, less W3.
    pub e4c: u32,
    /// `h + K + W` of rounds 4..6, where `h` is still constant.
    pub hkw4: u32,
    /// See `hkw4`.
    pub hkw5: u32,
    /// See `hkw4`.
    pub hkw6: u32,
    /// Schedule word 16 (constant).
    pub w16: u32,
    /// Schedule word 17 (constant).
    pub w17: u32,
    /// Constant part of W18.
    pub c18: u32,
    /// Constant part of W19.
    pub c19: u32,
    /// Constant part of W30.
    pub c30: u32,
    /// Constant part of W31.
    pub c31: u32,
    /// Constant part of W32.
    pub c32: u32,
}

#[cfg(target_arch = "x86_64")]
/// Computes the nonce-independent constants of the header's second block.
pub(super) fn block_constants(midstate: &[u32; 8], tail: &[u32; 3]) -> BlockConstants {
    let [t0, t1, t2] = *tail;
    // ---- First hash, second block: nonce-independent precomputation. ----
    // Rounds 0..2 use only W0..W2.
    let mut s3 = *midstate;
    scalar_round(&mut s3, K[0].wrapping_add(t0));
    scalar_round(&mut s3, K[1].wrapping_add(t1));
    scalar_round(&mut s3, K[2].wrapping_add(t2));
    // Round 3: T1 = t1c + W3.
    let t1c = s3[7]
        .wrapping_add(big_s1(s3[4]))
        .wrapping_add(ch(s3[4], s3[5], s3[6]))
        .wrapping_add(K[3]);
    let a4c = t1c
        .wrapping_add(big_s0(s3[0]))
        .wrapping_add(maj(s3[0], s3[1], s3[2]));
    let e4c = s3[3].wrapping_add(t1c);
    // Rounds 4..6: `h` is still a constant, W4 = 0x80000000, W5 = W6 = 0.
    let hkw4 = s3[6].wrapping_add(K[4]).wrapping_add(0x8000_0000);
    let hkw5 = s3[5].wrapping_add(K[5]);
    let hkw6 = s3[4].wrapping_add(K[6]);
    // Schedule: W16 and W17 are constant; W18..W33 have constant parts.
    let w16 = small_s0(t1).wrapping_add(t0);
    let w17 = small_s1(640).wrapping_add(small_s0(t2)).wrapping_add(t1);
    let c18 = small_s1(w16).wrapping_add(t2);
    let c19 = small_s1(w17).wrapping_add(small_s0(0x8000_0000));
    let c30 = small_s0(640);
    let c31 = small_s0(w16).wrapping_add(640);
    let c32 = small_s0(w17).wrapping_add(w16);
    BlockConstants {
        s3,
        a4c,
        e4c,
        hkw4,
        hkw5,
        hkw6,
        w16,
        w17,
        c18,
        c19,
        c30,
        c31,
        c32,
    }
}
