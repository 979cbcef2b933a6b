//! The AVX-512 kernel: 16 nonces per instruction, one nonce per 32-bit lane.
//!
//! Everything that does not depend on the nonce is computed once per call: the first three rounds
//! of the header's second block, the constant words and constant parts of its message schedule,
//! and the constant first round of the second hash. The second hash stops after round 60, which
//! already fixes the last state word (`H7 = e61 + IV7`), the only one the top word needs.
//! Rotations are `vprord`, and Ch, Maj and the three-way XORs of the Σ/σ functions are single
//! `vpternlogd` instructions.

use core::arch::x86_64::*;

/// SHA-256 round constants.
const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// The SHA-256 initial state.
const IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// Σ0 of the compression function.
const fn big_s0(x: u32) -> u32 {
    x.rotate_right(2) ^ x.rotate_right(13) ^ x.rotate_right(22)
}

/// Σ1 of the compression function.
const fn big_s1(x: u32) -> u32 {
    x.rotate_right(6) ^ x.rotate_right(11) ^ x.rotate_right(25)
}

/// σ0 of the message schedule.
const fn small_s0(x: u32) -> u32 {
    x.rotate_right(7) ^ x.rotate_right(18) ^ (x >> 3)
}

/// σ1 of the message schedule.
const fn small_s1(x: u32) -> u32 {
    x.rotate_right(17) ^ x.rotate_right(19) ^ (x >> 10)
}

/// The choose function.
const fn ch(e: u32, f: u32, g: u32) -> u32 {
    (e & f) ^ (!e & g)
}

/// The majority function.
const fn maj(a: u32, b: u32, c: u32) -> u32 {
    (a & b) ^ (a & c) ^ (b & c)
}

/// One scalar round on state `s` with `kw = K[i] + W[i]`.
fn scalar_round(s: &mut [u32; 8], kw: u32) {
    let [a, b, c, d, e, f, g, h] = *s;
    let t1 = h
        .wrapping_add(big_s1(e))
        .wrapping_add(ch(e, f, g))
        .wrapping_add(kw);
    let t2 = big_s0(a).wrapping_add(maj(a, b, c));
    *s = [t1.wrapping_add(t2), a, b, c, d.wrapping_add(t1), e, f, g];
}

/// Second hash, round 0 from the IV: the nonce-independent part of T1 (everything but W0).
const H2_T1: u32 = IV[7]
    .wrapping_add(big_s1(IV[4]))
    .wrapping_add(ch(IV[4], IV[5], IV[6]))
    .wrapping_add(K[0]);
/// Second hash: `a` after round 0 is `W0 + H2_A1`.
const H2_A1: u32 = H2_T1
    .wrapping_add(big_s0(IV[0]))
    .wrapping_add(maj(IV[0], IV[1], IV[2]));
/// Second hash: `e` after round 0 is `W0 + H2_E1`.
const H2_E1: u32 = H2_T1.wrapping_add(IV[3]);

macro_rules! splat {
    ($x:expr) => {
        _mm512_set1_epi32(($x) as i32)
    };
}
macro_rules! add {
    ($a:expr, $b:expr) => {
        _mm512_add_epi32($a, $b)
    };
    ($a:expr, $b:expr, $($r:expr),+) => {
        add!(_mm512_add_epi32($a, $b), $($r),+)
    };
}
macro_rules! xor3 {
    ($a:expr, $b:expr, $c:expr) => {
        _mm512_ternarylogic_epi32::<0x96>($a, $b, $c)
    };
}
macro_rules! ror {
    ($x:expr, $n:literal) => {
        _mm512_ror_epi32::<$n>($x)
    };
}
macro_rules! bs0 {
    ($x:expr) => {{
        let x = $x;
        xor3!(ror!(x, 2), ror!(x, 13), ror!(x, 22))
    }};
}
macro_rules! bs1 {
    ($x:expr) => {{
        let x = $x;
        xor3!(ror!(x, 6), ror!(x, 11), ror!(x, 25))
    }};
}
macro_rules! ss0 {
    ($x:expr) => {{
        let x = $x;
        xor3!(ror!(x, 7), ror!(x, 18), _mm512_srli_epi32::<3>(x))
    }};
}
macro_rules! ss1 {
    ($x:expr) => {{
        let x = $x;
        xor3!(ror!(x, 17), ror!(x, 19), _mm512_srli_epi32::<10>(x))
    }};
}
/// `e ? f : g`
macro_rules! vch {
    ($e:expr, $f:expr, $g:expr) => {
        _mm512_ternarylogic_epi32::<0xCA>($e, $f, $g)
    };
}
macro_rules! vmaj {
    ($a:expr, $b:expr, $c:expr) => {
        _mm512_ternarylogic_epi32::<0xE8>($a, $b, $c)
    };
}
/// Full round; `$hkw` is `h + K[i] + W[i]`.
macro_rules! rnd_hkw {
    ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $hkw:expr) => {{
        let t1 = add!($hkw, vch!($e, $f, $g), bs1!($e));
        $d = add!($d, t1);
        $h = add!(t1, vmaj!($a, $b, $c), bs0!($a));
    }};
}
/// Full round; `$kw` is `K[i] + W[i]`.
macro_rules! rnd {
    ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $kw:expr) => {
        rnd_hkw!($a, $b, $c, $d, $e, $f, $g, $h, add!($h, $kw))
    };
}
/// Round that computes only the new `e` (the new `a` is never needed again).
macro_rules! rnd_e {
    ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $kw:expr) => {{
        let t1 = add!(add!($h, $kw), vch!($e, $f, $g), bs1!($e));
        $d = add!($d, t1);
    }};
}
/// Eight rounds of `$m`, with the usual rotation of the state names.
macro_rules! r8 {
    ($m:ident, $a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident;
     $k0:expr, $k1:expr, $k2:expr, $k3:expr, $k4:expr, $k5:expr, $k6:expr, $k7:expr) => {
        $m!($a, $b, $c, $d, $e, $f, $g, $h, $k0);
        $m!($h, $a, $b, $c, $d, $e, $f, $g, $k1);
        $m!($g, $h, $a, $b, $c, $d, $e, $f, $k2);
        $m!($f, $g, $h, $a, $b, $c, $d, $e, $k3);
        $m!($e, $f, $g, $h, $a, $b, $c, $d, $k4);
        $m!($d, $e, $f, $g, $h, $a, $b, $c, $k5);
        $m!($c, $d, $e, $f, $g, $h, $a, $b, $k6);
        $m!($b, $c, $d, $e, $f, $g, $h, $a, $k7);
    };
}
/// `K[i] + W[i]` for a vector schedule word.
macro_rules! kw {
    ($w:ident, $i:literal) => {
        add!($w[$i], splat!(K[$i]))
    };
}
/// The generic message-schedule step for each listed index.
macro_rules! sched {
    ($w:ident; $($i:literal),*) => {
        $( $w[$i] = add!(ss1!($w[$i - 2]), $w[$i - 7], ss0!($w[$i - 15]), $w[$i - 16]); )*
    };
}

/// Scans nonces `start .. start + count` and pushes, in increasing order, every nonce whose
/// SHA-256d top word (`u32::from_le_bytes(hash[28..32])`) is ≤ `top_target`.
///
/// `midstate` is the SHA-256 state after the header's first 64 bytes and `tail` its bytes
/// 64..76 as big-endian words; the nonce goes into bytes 76..80, little-endian. The caller
/// guarantees `start + count <= 2^32`; `count` may be any value, including 0.
///
/// # Safety
///
/// The CPU must support AVX-512F (the caller checks `is_x86_feature_detected!("avx512f")`).
#[target_feature(enable = "avx512f")]
pub unsafe fn scan(
    midstate: &[u32; 8],
    tail: &[u32; 3],
    top_target: u32,
    start: u32,
    count: u32,
    out: &mut Vec<u32>,
) {
    if count == 0 {
        return;
    }
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

    let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let byte_mask = splat!(0xFF00_FF00u32);
    let target = splat!(top_target);

    let mut base = start;
    let mut left = count;
    loop {
        let n = left.min(16);
        let lanes: u16 = if n == 16 { 0xFFFF } else { (1u16 << n) - 1 };
        let nonce = add!(splat!(base), iota);
        // W3 = nonce byte-swapped: bytes 3,1 from ror 8, bytes 2,0 from ror 24.
        let w3 = _mm512_ternarylogic_epi32::<0xCA>(byte_mask, ror!(nonce, 8), ror!(nonce, 24));

        // ---- First hash, second block. ----
        let mut w = [_mm512_setzero_si512(); 64];
        w[16] = splat!(w16);
        w[17] = splat!(w17);
        w[18] = add!(ss0!(w3), splat!(c18));
        w[19] = add!(w3, splat!(c19));
        w[20] = add!(ss1!(w[18]), splat!(0x8000_0000u32));
        w[21] = ss1!(w[19]);
        w[22] = add!(ss1!(w[20]), splat!(640));
        w[23] = add!(ss1!(w[21]), w[16]);
        w[24] = add!(ss1!(w[22]), w[17]);
        w[25] = add!(ss1!(w[23]), w[18]);
        w[26] = add!(ss1!(w[24]), w[19]);
        w[27] = add!(ss1!(w[25]), w[20]);
        w[28] = add!(ss1!(w[26]), w[21]);
        w[29] = add!(ss1!(w[27]), w[22]);
        w[30] = add!(ss1!(w[28]), w[23], splat!(c30));
        w[31] = add!(ss1!(w[29]), w[24], splat!(c31));
        w[32] = add!(ss1!(w[30]), w[25], splat!(c32));
        w[33] = add!(ss1!(w[31]), w[26], ss0!(w[18]), w[17]);
        sched!(w; 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48);
        sched!(w; 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63);

        // State after round 3, laid out so that round i uses rotation i % 8.
        let mut e = add!(w3, splat!(a4c));
        let mut f = splat!(s3[0]);
        let mut g = splat!(s3[1]);
        let mut h = splat!(s3[2]);
        let mut a = add!(w3, splat!(e4c));
        let mut b = splat!(s3[4]);
        let mut c = splat!(s3[5]);
        let mut d: __m512i;
        rnd_hkw!(e, f, g, h, a, b, c, d, splat!(hkw4));
        rnd_hkw!(d, e, f, g, h, a, b, c, splat!(hkw5));
        rnd_hkw!(c, d, e, f, g, h, a, b, splat!(hkw6));
        rnd!(b, c, d, e, f, g, h, a, splat!(K[7]));
        r8!(rnd, a, b, c, d, e, f, g, h;
            splat!(K[8]), splat!(K[9]), splat!(K[10]), splat!(K[11]),
            splat!(K[12]), splat!(K[13]), splat!(K[14]), splat!(K[15].wrapping_add(640)));
        r8!(rnd, a, b, c, d, e, f, g, h;
            splat!(K[16].wrapping_add(w16)), splat!(K[17].wrapping_add(w17)), kw!(w, 18), kw!(w, 19),
            kw!(w, 20), kw!(w, 21), kw!(w, 22), kw!(w, 23));
        r8!(rnd, a, b, c, d, e, f, g, h;
            kw!(w, 24), kw!(w, 25), kw!(w, 26), kw!(w, 27), kw!(w, 28), kw!(w, 29), kw!(w, 30), kw!(w, 31));
        r8!(rnd, a, b, c, d, e, f, g, h;
            kw!(w, 32), kw!(w, 33), kw!(w, 34), kw!(w, 35), kw!(w, 36), kw!(w, 37), kw!(w, 38), kw!(w, 39));
        r8!(rnd, a, b, c, d, e, f, g, h;
            kw!(w, 40), kw!(w, 41), kw!(w, 42), kw!(w, 43), kw!(w, 44), kw!(w, 45), kw!(w, 46), kw!(w, 47));
        r8!(rnd, a, b, c, d, e, f, g, h;
            kw!(w, 48), kw!(w, 49), kw!(w, 50), kw!(w, 51), kw!(w, 52), kw!(w, 53), kw!(w, 54), kw!(w, 55));
        r8!(rnd, a, b, c, d, e, f, g, h;
            kw!(w, 56), kw!(w, 57), kw!(w, 58), kw!(w, 59), kw!(w, 60), kw!(w, 61), kw!(w, 62), kw!(w, 63));

        // ---- Second hash: one block, W0..W7 = first hash, then padding. ----
        let mut v = [_mm512_setzero_si512(); 61];
        v[0] = add!(a, splat!(midstate[0]));
        v[1] = add!(b, splat!(midstate[1]));
        v[2] = add!(c, splat!(midstate[2]));
        v[3] = add!(d, splat!(midstate[3]));
        v[4] = add!(e, splat!(midstate[4]));
        v[5] = add!(f, splat!(midstate[5]));
        v[6] = add!(g, splat!(midstate[6]));
        v[7] = add!(h, splat!(midstate[7]));
        v[16] = add!(ss0!(v[1]), v[0]);
        v[17] = add!(ss0!(v[2]), v[1], splat!(small_s1(256)));
        v[18] = add!(ss1!(v[16]), ss0!(v[3]), v[2]);
        v[19] = add!(ss1!(v[17]), ss0!(v[4]), v[3]);
        v[20] = add!(ss1!(v[18]), ss0!(v[5]), v[4]);
        v[21] = add!(ss1!(v[19]), ss0!(v[6]), v[5]);
        v[22] = add!(ss1!(v[20]), ss0!(v[7]), v[6], splat!(256));
        v[23] = add!(ss1!(v[21]), v[16], v[7], splat!(small_s0(0x8000_0000)));
        v[24] = add!(ss1!(v[22]), v[17], splat!(0x8000_0000u32));
        v[25] = add!(ss1!(v[23]), v[18]);
        v[26] = add!(ss1!(v[24]), v[19]);
        v[27] = add!(ss1!(v[25]), v[20]);
        v[28] = add!(ss1!(v[26]), v[21]);
        v[29] = add!(ss1!(v[27]), v[22]);
        v[30] = add!(ss1!(v[28]), v[23], splat!(small_s0(256)));
        v[31] = add!(ss1!(v[29]), v[24], ss0!(v[16]), splat!(256));
        sched!(v; 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46);
        sched!(v; 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60);

        // State after round 0, laid out so that round i uses rotation i % 8.
        h = add!(v[0], splat!(H2_A1));
        a = splat!(IV[0]);
        b = splat!(IV[1]);
        c = splat!(IV[2]);
        d = add!(v[0], splat!(H2_E1));
        e = splat!(IV[4]);
        f = splat!(IV[5]);
        rnd_hkw!(
            h,
            a,
            b,
            c,
            d,
            e,
            f,
            g,
            add!(v[1], splat!(IV[6].wrapping_add(K[1])))
        );
        rnd_hkw!(
            g,
            h,
            a,
            b,
            c,
            d,
            e,
            f,
            add!(v[2], splat!(IV[5].wrapping_add(K[2])))
        );
        rnd_hkw!(
            f,
            g,
            h,
            a,
            b,
            c,
            d,
            e,
            add!(v[3], splat!(IV[4].wrapping_add(K[3])))
        );
        rnd!(e, f, g, h, a, b, c, d, kw!(v, 4));
        rnd!(d, e, f, g, h, a, b, c, kw!(v, 5));
        rnd!(c, d, e, f, g, h, a, b, kw!(v, 6));
        rnd!(b, c, d, e, f, g, h, a, kw!(v, 7));
        r8!(rnd, a, b, c, d, e, f, g, h;
            splat!(K[8].wrapping_add(0x8000_0000)), splat!(K[9]), splat!(K[10]), splat!(K[11]),
            splat!(K[12]), splat!(K[13]), splat!(K[14]), splat!(K[15].wrapping_add(256)));
        r8!(rnd, a, b, c, d, e, f, g, h;
            kw!(v, 16), kw!(v, 17), kw!(v, 18), kw!(v, 19), kw!(v, 20), kw!(v, 21), kw!(v, 22), kw!(v, 23));
        r8!(rnd, a, b, c, d, e, f, g, h;
            kw!(v, 24), kw!(v, 25), kw!(v, 26), kw!(v, 27), kw!(v, 28), kw!(v, 29), kw!(v, 30), kw!(v, 31));
        r8!(rnd, a, b, c, d, e, f, g, h;
            kw!(v, 32), kw!(v, 33), kw!(v, 34), kw!(v, 35), kw!(v, 36), kw!(v, 37), kw!(v, 38), kw!(v, 39));
        r8!(rnd, a, b, c, d, e, f, g, h;
            kw!(v, 40), kw!(v, 41), kw!(v, 42), kw!(v, 43), kw!(v, 44), kw!(v, 45), kw!(v, 46), kw!(v, 47));
        r8!(rnd, a, b, c, d, e, f, g, h;
            kw!(v, 48), kw!(v, 49), kw!(v, 50), kw!(v, 51), kw!(v, 52), kw!(v, 53), kw!(v, 54), kw!(v, 55));
        rnd!(a, b, c, d, e, f, g, h, kw!(v, 56));
        // Rounds 57..60 only need `e`: round 60 leaves e61 in `h`, and H7 = e61 + IV7.
        rnd_e!(h, a, b, c, d, e, f, g, kw!(v, 57));
        rnd_e!(g, h, a, b, c, d, e, f, kw!(v, 58));
        rnd_e!(f, g, h, a, b, c, d, e, kw!(v, 59));
        rnd_e!(e, f, g, h, a, b, c, d, kw!(v, 60));

        let h7 = add!(h, splat!(IV[7]));
        let top = _mm512_ternarylogic_epi32::<0xCA>(byte_mask, ror!(h7, 8), ror!(h7, 24));
        let mut hits = _mm512_mask_cmple_epu32_mask(lanes, top, target);
        while hits != 0 {
            out.push(base.wrapping_add(hits.trailing_zeros()));
            hits &= hits - 1;
        }

        left -= n;
        if left == 0 {
            break;
        }
        base = base.wrapping_add(16);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use sha2::digest::generic_array::GenericArray;

    fn require() {
        assert!(
            std::arch::is_x86_feature_detected!("avx512f"),
            "this CPU lacks AVX-512F: the avx512 kernel cannot be tested here"
        );
    }

    fn compress(state: &mut [u32; 8], block: &[u8; 64]) {
        sha2::compress256(state, &[GenericArray::clone_from_slice(block)]);
    }

    /// The top word of one nonce, the slow way.
    fn top_word(midstate: &[u32; 8], tail: &[u32; 3], nonce: u32) -> u32 {
        let mut b = [0u8; 64];
        for (i, w) in tail.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
        b[12..16].copy_from_slice(&nonce.to_le_bytes());
        b[16] = 0x80;
        b[62..64].copy_from_slice(&640u16.to_be_bytes());
        let mut s1 = *midstate;
        compress(&mut s1, &b);
        let mut b2 = [0u8; 64];
        for (i, w) in s1.iter().enumerate() {
            b2[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
        b2[32] = 0x80;
        b2[62..64].copy_from_slice(&256u16.to_be_bytes());
        let mut s2 = IV;
        compress(&mut s2, &b2);
        let mut digest = [0u8; 32];
        for (i, w) in s2.iter().enumerate() {
            digest[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
        u32::from_le_bytes([digest[28], digest[29], digest[30], digest[31]])
    }

    fn reference(m: &[u32; 8], t: &[u32; 3], target: u32, start: u32, count: u32) -> Vec<u32> {
        (0..count)
            .map(|i| start.wrapping_add(i))
            .filter(|&n| top_word(m, t, n) <= target)
            .collect()
    }

    fn kernel(m: &[u32; 8], t: &[u32; 3], target: u32, start: u32, count: u32) -> Vec<u32> {
        let mut out = vec![7]; // the kernel must append, not overwrite
                               // SAFETY: `require()` checked the CPU feature.
        unsafe { scan(m, t, target, start, count, &mut out) };
        assert_eq!(out[0], 7);
        out.remove(0);
        out
    }

    #[test]
    fn matches_reference_on_random_headers() {
        require();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_0512);
        let counts = [0u32, 1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 1000, 4099];
        for round in 0..6 {
            let m: [u32; 8] = rng.random();
            let t: [u32; 3] = rng.random();
            for &count in &counts {
                let start = match round % 3 {
                    0 => rng.random(),
                    1 => {
                        (u64::from(u32::MAX) + 1 - u64::from(count)).min(u64::from(u32::MAX)) as u32
                    }
                    _ => rng.random_range(0..1 << 20),
                };
                let start = if u64::from(start) + u64::from(count) > 1 << 32 {
                    (u64::from(u32::MAX) + 1 - u64::from(count)) as u32
                } else {
                    start
                };
                for target in [0x1000_0000u32, 0x0100_0000, 0xF000_0000] {
                    let want = reference(&m, &t, target, start, count);
                    let got = kernel(&m, &t, target, start, count);
                    assert_eq!(
                        got, want,
                        "start {start:#x} count {count} target {target:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn end_of_nonce_space() {
        require();
        let mut rng = rand::rngs::StdRng::seed_from_u64(41);
        let m: [u32; 8] = rng.random();
        let t: [u32; 3] = rng.random();
        for (start, count) in [
            (u32::MAX - 40, 41),
            (u32::MAX - 40, 40),
            (u32::MAX - 15, 16),
            (u32::MAX, 1),
            (u32::MAX - 16, 17),
        ] {
            let want = reference(&m, &t, 0x1000_0000, start, count);
            assert_eq!(kernel(&m, &t, 0x1000_0000, start, count), want);
            let all = kernel(&m, &t, u32::MAX, start, count);
            assert_eq!(all, (0..count).map(|i| start + i).collect::<Vec<_>>());
        }
    }

    #[test]
    fn extreme_targets() {
        require();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let m: [u32; 8] = rng.random();
        let t: [u32; 3] = rng.random();
        let start = 123_456_789;
        let all = kernel(&m, &t, u32::MAX, start, 1003);
        assert_eq!(all, (start..start + 1003).collect::<Vec<_>>());
        assert_eq!(
            kernel(&m, &t, 0, start, 1003),
            reference(&m, &t, 0, start, 1003)
        );
        // A target equal to some nonce's top word must include that nonce (≤, not <).
        let tops: Vec<u32> = (0..64).map(|i| top_word(&m, &t, start + i)).collect();
        for &tw in &tops {
            assert_eq!(
                kernel(&m, &t, tw, start, 64),
                reference(&m, &t, tw, start, 64),
                "target {tw:#x}"
            );
        }
    }

    fn genesis() -> [u8; 80] {
        let hex = "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c";
        let mut h = [0u8; 80];
        for (i, byte) in h.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        h
    }

    #[test]
    fn finds_the_genesis_nonce() {
        require();
        let header = genesis();
        let mut m = IV;
        compress(&mut m, header[..64].try_into().unwrap());
        let word = |i: usize| u32::from_be_bytes(header[i..i + 4].try_into().unwrap());
        let t = [word(64), word(68), word(72)];
        let nonce = 0x7c2b_ac1d;
        assert_eq!(
            u32::from_le_bytes(header[76..80].try_into().unwrap()),
            nonce
        );

        // The reference itself agrees with a plain double SHA-256 of the header.
        use sha2::{Digest, Sha256};
        let mut hash: [u8; 32] = Sha256::digest(Sha256::digest(header)).into();
        hash.reverse();
        let display: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            display,
            "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
        );
        assert_eq!(top_word(&m, &t, nonce), 0);

        assert_eq!(kernel(&m, &t, 0, nonce - 1000, 2001), vec![nonce]);
        for start in nonce - 20..=nonce {
            assert_eq!(
                kernel(&m, &t, 0, start, 21),
                vec![nonce],
                "start {start:#x}"
            );
        }
        assert_eq!(kernel(&m, &t, 0, nonce + 1, 1000), Vec::<u32>::new());
    }
}
