//! The AVX2 kernel: 8 nonces per instruction, one nonce per 32-bit lane.
//!
//! Everything that does not depend on the nonce is computed once per call: the first three rounds
//! of the header's second block, the constant words and constant parts of its message schedule,
//! and the constant first round of the second hash. The second hash stops after round 60, which
//! already fixes the last state word (`H7 = e61 + IV7`), the only one the top word needs.
//! AVX2 has no vector rotate, so rotations are shift pairs combined by XOR; Maj reuses the
//! previous round's `a ^ b` as this round's `b ^ c`.

use core::arch::x86_64::*;

use super::scalar::*;
use super::IV;

macro_rules! splat {
    ($x:expr) => {
        _mm256_set1_epi32(($x) as i32)
    };
}
macro_rules! add {
    ($a:expr, $b:expr) => {
        _mm256_add_epi32($a, $b)
    };
    ($a:expr, $b:expr, $($r:expr),+) => {
        add!(_mm256_add_epi32($a, $b), $($r),+)
    };
}
macro_rules! xor {
    ($a:expr, $b:expr) => {
        _mm256_xor_si256($a, $b)
    };
}
/// `x >>> n` as two shifts, for combining by XOR.
macro_rules! ror {
    ($x:expr, $n:literal) => {
        xor!(
            _mm256_srli_epi32::<$n>($x),
            _mm256_slli_epi32::<{ 32 - $n }>($x)
        )
    };
}
macro_rules! bs0 {
    ($x:expr) => {{
        let x = $x;
        xor!(xor!(ror!(x, 2), ror!(x, 13)), ror!(x, 22))
    }};
}
macro_rules! bs1 {
    ($x:expr) => {{
        let x = $x;
        xor!(xor!(ror!(x, 6), ror!(x, 11)), ror!(x, 25))
    }};
}
macro_rules! ss0 {
    ($x:expr) => {{
        let x = $x;
        xor!(xor!(ror!(x, 7), ror!(x, 18)), _mm256_srli_epi32::<3>(x))
    }};
}
macro_rules! ss1 {
    ($x:expr) => {{
        let x = $x;
        xor!(xor!(ror!(x, 17), ror!(x, 19)), _mm256_srli_epi32::<10>(x))
    }};
}
/// `e ? f : g` as `((f ^ g) & e) ^ g`.
macro_rules! vch {
    ($e:expr, $f:expr, $g:expr) => {
        xor!(_mm256_and_si256(xor!($f, $g), $e), $g)
    };
}
/// Full round; `$hkw` is `h + K[i] + W[i]`. Maj(a, b, c) = b ^ ((a ^ b) & (b ^ c)), where
/// `$bc` carries `b ^ c` over from the previous round's `a ^ b`.
macro_rules! rnd_hkw {
    ($bc:ident, $a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $hkw:expr) => {{
        let t1 = add!($hkw, vch!($e, $f, $g), bs1!($e));
        $d = add!($d, t1);
        let ab = xor!($a, $b);
        let maj = xor!($b, _mm256_and_si256(ab, $bc));
        $bc = ab;
        $h = add!(t1, maj, bs0!($a));
    }};
}
/// Full round; `$kw` is `K[i] + W[i]`.
macro_rules! rnd {
    ($bc:ident, $a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $kw:expr) => {
        rnd_hkw!($bc, $a, $b, $c, $d, $e, $f, $g, $h, add!($h, $kw))
    };
}
/// Round that computes only the new `e` (the new `a` is never needed again).
macro_rules! rnd_e {
    ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $kw:expr) => {{
        let t1 = add!(add!($h, $kw), vch!($e, $f, $g), bs1!($e));
        $d = add!($d, t1);
    }};
}
/// Eight full rounds, with the usual rotation of the state names.
macro_rules! r8 {
    ($bc:ident, $a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident;
     $k0:expr, $k1:expr, $k2:expr, $k3:expr, $k4:expr, $k5:expr, $k6:expr, $k7:expr) => {
        rnd!($bc, $a, $b, $c, $d, $e, $f, $g, $h, $k0);
        rnd!($bc, $h, $a, $b, $c, $d, $e, $f, $g, $k1);
        rnd!($bc, $g, $h, $a, $b, $c, $d, $e, $f, $k2);
        rnd!($bc, $f, $g, $h, $a, $b, $c, $d, $e, $k3);
        rnd!($bc, $e, $f, $g, $h, $a, $b, $c, $d, $k4);
        rnd!($bc, $d, $e, $f, $g, $h, $a, $b, $c, $k5);
        rnd!($bc, $c, $d, $e, $f, $g, $h, $a, $b, $k6);
        rnd!($bc, $b, $c, $d, $e, $f, $g, $h, $a, $k7);
    };
}
/// `K[i] + W[i]` for a vector schedule word.
macro_rules! kw {
    ($w:ident, $i:literal) => {
        add!($w[$i], splat!(K[$i]))
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
/// The CPU must support AVX2 (the caller checks `is_x86_feature_detected!("avx2")`).
#[target_feature(enable = "avx2")]
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

    // Nonce-independent part of the header's second block.
    let BlockConstants {
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
    } = block_constants(midstate, tail);

    let iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    // Reverses the bytes of each 32-bit word (per 128-bit lane, as `vpshufb` works).
    let bswap = _mm256_setr_epi8(
        3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12, 3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8,
        15, 14, 13, 12,
    );
    let target = splat!(top_target);

    // K[i] + W[i] for both schedules: the constant words now, the others per batch.
    let mut kw1 = [_mm256_setzero_si256(); 64];
    let mut kw2 = [_mm256_setzero_si256(); 56];
    for i in 8..16 {
        kw1[i] = splat!(K[i]);
        kw2[i] = splat!(K[i]);
    }
    kw1[15] = splat!(K[15].wrapping_add(640));
    kw1[16] = splat!(K[16].wrapping_add(w16));
    kw1[17] = splat!(K[17].wrapping_add(w17));
    kw2[8] = splat!(K[8].wrapping_add(0x8000_0000));
    kw2[15] = splat!(K[15].wrapping_add(256));
    // The message schedules (first hash from W16, second hash from W0).
    let mut w = [_mm256_setzero_si256(); 64];
    w[16] = splat!(w16);
    w[17] = splat!(w17);
    let mut v = [_mm256_setzero_si256(); 61];

    let mut base = start;
    let mut left = count;
    loop {
        let n = left.min(8);
        let lanes: u32 = (1u32 << n) - 1;
        let nonce = add!(splat!(base), iota);
        let w3 = _mm256_shuffle_epi8(nonce, bswap);

        // ---- First hash, second block. ----
        // The nonce-dependent schedule words; the generic part is a loop to keep the code small
        // (a fully unrolled AVX2 kernel overflows the instruction cache and decoders).
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
        for i in 34..64 {
            w[i] = add!(ss1!(w[i - 2]), w[i - 7], ss0!(w[i - 15]), w[i - 16]);
        }
        for i in 18..64 {
            kw1[i] = add!(w[i], splat!(K[i]));
        }

        // State after round 3, laid out so that round i uses rotation i % 8.
        let mut e = add!(w3, splat!(a4c));
        let mut f = splat!(s3[0]);
        let mut g = splat!(s3[1]);
        let mut h = splat!(s3[2]);
        let mut a = add!(w3, splat!(e4c));
        let mut b = splat!(s3[4]);
        let mut c = splat!(s3[5]);
        let mut d: __m256i;
        let mut bc = splat!(s3[0] ^ s3[1]);
        rnd_hkw!(bc, e, f, g, h, a, b, c, d, splat!(hkw4));
        rnd_hkw!(bc, d, e, f, g, h, a, b, c, splat!(hkw5));
        rnd_hkw!(bc, c, d, e, f, g, h, a, b, splat!(hkw6));
        rnd!(bc, b, c, d, e, f, g, h, a, splat!(K[7]));
        for k in kw1[8..64].chunks_exact(8) {
            r8!(bc, a, b, c, d, e, f, g, h; k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]);
        }

        // ---- Second hash: one block, W0..W7 = first hash, then padding. ----
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
        for i in 32..61 {
            v[i] = add!(ss1!(v[i - 2]), v[i - 7], ss0!(v[i - 15]), v[i - 16]);
        }
        for i in 16..56 {
            kw2[i] = add!(v[i], splat!(K[i]));
        }

        // State after round 0, laid out so that round i uses rotation i % 8.
        h = add!(v[0], splat!(H2_A1));
        a = splat!(IV[0]);
        b = splat!(IV[1]);
        c = splat!(IV[2]);
        d = add!(v[0], splat!(H2_E1));
        e = splat!(IV[4]);
        f = splat!(IV[5]);
        bc = splat!(IV[0] ^ IV[1]);
        rnd_hkw!(
            bc,
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
            bc,
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
            bc,
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
        rnd!(bc, e, f, g, h, a, b, c, d, kw!(v, 4));
        rnd!(bc, d, e, f, g, h, a, b, c, kw!(v, 5));
        rnd!(bc, c, d, e, f, g, h, a, b, kw!(v, 6));
        rnd!(bc, b, c, d, e, f, g, h, a, kw!(v, 7));
        for k in kw2[8..56].chunks_exact(8) {
            r8!(bc, a, b, c, d, e, f, g, h; k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]);
        }
        rnd!(bc, a, b, c, d, e, f, g, h, kw!(v, 56));
        // Rounds 57..60 only need `e`: round 60 leaves e61 in `h`, and H7 = e61 + IV7.
        rnd_e!(h, a, b, c, d, e, f, g, kw!(v, 57));
        rnd_e!(g, h, a, b, c, d, e, f, kw!(v, 58));
        rnd_e!(f, g, h, a, b, c, d, e, kw!(v, 59));
        rnd_e!(e, f, g, h, a, b, c, d, kw!(v, 60));
        let h7 = add!(h, splat!(IV[7]));
        let top = _mm256_shuffle_epi8(h7, bswap);
        // Unsigned top <= target  <=>  max(top, target) == target.
        let le = _mm256_cmpeq_epi32(_mm256_max_epu32(top, target), target);
        let mut hits = _mm256_movemask_ps(_mm256_castsi256_ps(le)) as u32 & lanes;
        while hits != 0 {
            out.push(base.wrapping_add(hits.trailing_zeros()));
            hits &= hits - 1;
        }

        left -= n;
        if left == 0 {
            break;
        }
        base = base.wrapping_add(8);
    }
}
