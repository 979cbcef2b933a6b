//! The AVX-512 kernel: 16 nonces per instruction, one nonce per 32-bit lane.
//!
//! Everything that does not depend on the nonce is computed once per call: the first three rounds
//! of the header's second block, the constant words and constant parts of its message schedule,
//! and the constant first round of the second hash. The second hash stops after round 60, which
//! already fixes the last state word (`H7 = e61 + IV7`), the only one the top word needs.
//! Rotations are `vprord`, and Ch, Maj and the three-way XORs of the Σ/σ functions are single
//! `vpternlogd` instructions.

use core::arch::x86_64::*;

use super::scalar::*;
use super::IV;

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
