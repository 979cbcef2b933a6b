//! The multi-lane SHA-256d scan, written once for every vector width: one nonce per 32-bit lane.
//!
//! [`Lanes`] is the narrow seam: a vector of 32-bit lanes and the handful of SHA-256 operations
//! on it. The AVX2 (8 lanes) and AVX-512 (16 lanes) kernels implement it with their own
//! instructions (shift pairs against `vprord`, XOR chains against `vpternlogd`) and call [`scan`]
//! from a function compiled for their features; everything is `#[inline(always)]`, so each
//! kernel is one function compiled for its own target.
//!
//! Everything that does not depend on the nonce is computed once per call: the first three
//! rounds of the header's second block, the constant words and constant parts of its message
//! schedule, and the constant first round of the second hash. The second hash stops after round
//! 60, which already fixes the last state word (`H7 = e61 + IV7`), the only one the top word
//! needs; a candidate is checked in full by the dispatcher.

use super::scalar::*;
use super::{Prepared, IV};

/// A vector of 32-bit lanes and the SHA-256 operations on it.
pub(super) trait Lanes: Copy {
    /// Lanes per vector (nonces per step).
    const LANES: u32;
    /// Whether the scan is fully unrolled. With 32 vector registers (AVX-512) the unrolled
    /// schedule stays in registers; with 16 (AVX2) it spills anyway and only overflows the
    /// instruction cache and decoders, so the loops stay loops.
    const UNROLL: bool;
    /// Every lane `x`.
    unsafe fn splat(x: u32) -> Self;
    /// Lane-wise wrapping addition.
    unsafe fn add(a: Self, b: Self) -> Self;
    /// Σ0.
    unsafe fn bs0(x: Self) -> Self;
    /// Σ1.
    unsafe fn bs1(x: Self) -> Self;
    /// σ0.
    unsafe fn ss0(x: Self) -> Self;
    /// σ1.
    unsafe fn ss1(x: Self) -> Self;
    /// Ch(e, f, g).
    unsafe fn ch(e: Self, f: Self, g: Self) -> Self;
    /// Maj(a, b, c). `bc` holds `b ^ c` on entry and `a ^ b` on return, for kernels that build
    /// Maj from it; others ignore it (and the compiler drops it).
    unsafe fn maj(a: Self, b: Self, c: Self, bc: &mut Self) -> Self;
    /// `base + lane` in each lane.
    unsafe fn nonces(base: u32) -> Self;
    /// Each lane's bytes reversed.
    unsafe fn bswap(x: Self) -> Self;
    /// Bit `l` set where lane `l` of `top` is ≤ lane `l` of `target`, for lanes below `lanes`.
    unsafe fn le_mask(top: Self, target: Self, lanes: u32) -> u32;
}

/// `a + b + …`.
macro_rules! add {
    ($a:expr, $b:expr) => { V::add($a, $b) };
    ($a:expr, $b:expr, $($r:expr),+) => { add!(V::add($a, $b), $($r),+) };
}

/// One round; `hkw` is `h + K[i] + W[i]`. Writes the new `e` into `d` and the new `a` into `h`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn round_hkw<V: Lanes>(
    bc: &mut V,
    (a, b, c): (V, V, V),
    d: &mut V,
    (e, f, g): (V, V, V),
    h: &mut V,
    hkw: V,
) {
    let t1 = add!(hkw, V::ch(e, f, g), V::bs1(e));
    *d = V::add(*d, t1);
    *h = add!(t1, V::maj(a, b, c, bc), V::bs0(a));
}

/// One round; `kw` is `K[i] + W[i]`.
macro_rules! rnd {
    ($bc:ident, $a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $kw:expr) => {{
        let hkw = V::add($h, $kw);
        round_hkw(&mut $bc, ($a, $b, $c), &mut $d, ($e, $f, $g), &mut $h, hkw)
    }};
}
/// One round; `hkw` is `h + K[i] + W[i]`.
macro_rules! rnd_hkw {
    ($bc:ident, $a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $hkw:expr) => {
        round_hkw(&mut $bc, ($a, $b, $c), &mut $d, ($e, $f, $g), &mut $h, $hkw)
    };
}
/// A round that computes only the new `e` (the new `a` is never needed again).
macro_rules! rnd_e {
    ($d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $kw:expr) => {
        $d = add!($d, V::add($h, $kw), V::ch($e, $f, $g), V::bs1($e))
    };
}
/// Eight rounds, with the usual rotation of the state names.
macro_rules! r8 {
    ($bc:ident, $a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident; $k:expr) => {
        let k = $k;
        rnd!($bc, $a, $b, $c, $d, $e, $f, $g, $h, k[0]);
        rnd!($bc, $h, $a, $b, $c, $d, $e, $f, $g, k[1]);
        rnd!($bc, $g, $h, $a, $b, $c, $d, $e, $f, k[2]);
        rnd!($bc, $f, $g, $h, $a, $b, $c, $d, $e, k[3]);
        rnd!($bc, $e, $f, $g, $h, $a, $b, $c, $d, k[4]);
        rnd!($bc, $d, $e, $f, $g, $h, $a, $b, $c, k[5]);
        rnd!($bc, $c, $d, $e, $f, $g, $h, $a, $b, k[6]);
        rnd!($bc, $b, $c, $d, $e, $f, $g, $h, $a, k[7]);
    };
}

/// The generic schedule step for words `t` of `w`: unrolled for the listed words where
/// `V::UNROLL`, else a loop over the same range.
macro_rules! sched_words {
    ($w:ident; $range:expr; $($t:literal)*) => {
        if V::UNROLL {
            $( $w[$t] = sched(&$w, $t); )*
        } else {
            for t in $range {
                $w[t] = sched(&$w, t);
            }
        }
    };
}
/// Rounds `i .. i + 8` for each listed `i` from the `K + W` array `kw`: unrolled where
/// `V::UNROLL`, else a loop.
macro_rules! rounds {
    ($bc:ident, $a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident; $kw:ident; $($i:literal)*) => {
        if V::UNROLL {
            $( r8!($bc, $a, $b, $c, $d, $e, $f, $g, $h; &$kw[$i..$i + 8]); )*
        } else {
            for i in [$($i),*] {
                r8!($bc, $a, $b, $c, $d, $e, $f, $g, $h; &$kw[i..i + 8]);
            }
        }
    };
}

/// The generic message-schedule step: `W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16]`.
#[inline(always)]
unsafe fn sched<V: Lanes>(w: &[V], t: usize) -> V {
    add!(V::ss1(w[t - 2]), w[t - 7], V::ss0(w[t - 15]), w[t - 16])
}

/// Scans nonces `start .. start + count` and pushes, in increasing order, every nonce whose
/// SHA-256d top word (`u32::from_le_bytes(hash[28..32])`) is ≤ `top_target`.
///
/// `p` holds the midstate of the header's first 64 bytes and its bytes 64..76 as big-endian
/// words; the nonce goes into bytes 76..80, little-endian. The caller guarantees
/// `start + count <= 2^32`; `count` may be any value, including 0.
///
/// # Safety
///
/// Only from a function compiled for, and running on a CPU with, the features `V` uses.
#[inline(always)]
pub(super) unsafe fn scan<V: Lanes>(
    p: &Prepared,
    top_target: u32,
    start: u32,
    count: u32,
    out: &mut Vec<u32>,
) {
    let (midstate, tail) = (&p.midstate, &p.tail);
    if count == 0 {
        return;
    }
    // Nonce-independent part of the header's second block.
    let bk = block_constants(midstate, tail);
    let (s3, w16, w17) = (bk.s3, bk.w16, bk.w17);
    let splat = |x: u32| V::splat(x);
    let target = splat(top_target);

    // K[i] + W[i] for both schedules: the constant words now, the others per step.
    let mut kw1 = [splat(0); 64];
    let mut kw2 = [splat(0); 56];
    for i in 8..16 {
        kw1[i] = splat(K[i]);
        kw2[i] = splat(K[i]);
    }
    kw1[15] = splat(K[15].wrapping_add(640));
    kw1[16] = splat(K[16].wrapping_add(w16));
    kw1[17] = splat(K[17].wrapping_add(w17));
    kw2[8] = splat(K[8].wrapping_add(0x8000_0000));
    kw2[15] = splat(K[15].wrapping_add(256));
    // The message schedules (first hash from W16, second hash from W0).
    let mut w = [splat(0); 64];
    w[16] = splat(w16);
    w[17] = splat(w17);
    let mut v = [splat(0); 61];

    let mut base = start;
    let mut left = count;
    loop {
        let n = left.min(V::LANES);
        let w3 = V::bswap(V::nonces(base));

        // ---- First hash, second block. ----
        // The nonce-dependent schedule words.
        w[18] = add!(V::ss0(w3), splat(bk.c18));
        w[19] = add!(w3, splat(bk.c19));
        w[20] = add!(V::ss1(w[18]), splat(0x8000_0000));
        w[21] = V::ss1(w[19]);
        w[22] = add!(V::ss1(w[20]), splat(640));
        for t in 23..30 {
            w[t] = add!(V::ss1(w[t - 2]), w[t - 7]);
        }
        w[30] = add!(V::ss1(w[28]), w[23], splat(bk.c30));
        w[31] = add!(V::ss1(w[29]), w[24], splat(bk.c31));
        w[32] = add!(V::ss1(w[30]), w[25], splat(bk.c32));
        w[33] = add!(V::ss1(w[31]), w[26], V::ss0(w[18]), w[17]);
        sched_words!(w; 34..64; 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63);
        for t in 18..64 {
            kw1[t] = add!(w[t], splat(K[t]));
        }

        // State after round 3, laid out so that round i uses rotation i % 8.
        let mut e = add!(w3, splat(bk.a4c));
        let mut f = splat(s3[0]);
        let mut g = splat(s3[1]);
        let mut h = splat(s3[2]);
        let mut a = add!(w3, splat(bk.e4c));
        let mut b = splat(s3[4]);
        let mut c = splat(s3[5]);
        let mut d = splat(0);
        let mut bc = splat(s3[0] ^ s3[1]);
        rnd_hkw!(bc, e, f, g, h, a, b, c, d, splat(bk.hkw4));
        rnd_hkw!(bc, d, e, f, g, h, a, b, c, splat(bk.hkw5));
        rnd_hkw!(bc, c, d, e, f, g, h, a, b, splat(bk.hkw6));
        rnd!(bc, b, c, d, e, f, g, h, a, splat(K[7]));
        rounds!(bc, a, b, c, d, e, f, g, h; kw1; 8 16 24 32 40 48 56);

        // ---- Second hash: one block, W0..W7 = first hash, then padding. ----
        for (t, x) in [a, b, c, d, e, f, g, h].into_iter().enumerate() {
            v[t] = add!(x, splat(midstate[t]));
        }
        v[16] = add!(V::ss0(v[1]), v[0]);
        v[17] = add!(V::ss0(v[2]), v[1], splat(small_s1(256)));
        for t in 18..22 {
            v[t] = add!(V::ss1(v[t - 2]), V::ss0(v[t - 15]), v[t - 16]);
        }
        v[22] = add!(V::ss1(v[20]), V::ss0(v[7]), v[6], splat(256));
        v[23] = add!(V::ss1(v[21]), v[16], v[7], splat(small_s0(0x8000_0000)));
        v[24] = add!(V::ss1(v[22]), v[17], splat(0x8000_0000));
        for t in 25..30 {
            v[t] = add!(V::ss1(v[t - 2]), v[t - 7]);
        }
        v[30] = add!(V::ss1(v[28]), v[23], splat(small_s0(256)));
        v[31] = add!(V::ss1(v[29]), v[24], V::ss0(v[16]), splat(256));
        sched_words!(v; 32..61; 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60);
        for t in 16..56 {
            kw2[t] = add!(v[t], splat(K[t]));
        }

        // State after round 0, laid out so that round i uses rotation i % 8.
        h = add!(v[0], splat(H2_A1));
        a = splat(IV[0]);
        b = splat(IV[1]);
        c = splat(IV[2]);
        d = add!(v[0], splat(H2_E1));
        e = splat(IV[4]);
        f = splat(IV[5]);
        bc = splat(IV[0] ^ IV[1]);
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
            add!(v[1], splat(IV[6].wrapping_add(K[1])))
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
            add!(v[2], splat(IV[5].wrapping_add(K[2])))
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
            add!(v[3], splat(IV[4].wrapping_add(K[3])))
        );
        rnd!(bc, e, f, g, h, a, b, c, d, add!(v[4], splat(K[4])));
        rnd!(bc, d, e, f, g, h, a, b, c, add!(v[5], splat(K[5])));
        rnd!(bc, c, d, e, f, g, h, a, b, add!(v[6], splat(K[6])));
        rnd!(bc, b, c, d, e, f, g, h, a, add!(v[7], splat(K[7])));
        rounds!(bc, a, b, c, d, e, f, g, h; kw2; 8 16 24 32 40 48);
        rnd!(bc, a, b, c, d, e, f, g, h, add!(v[56], splat(K[56])));
        // Rounds 57..60 only need `e`: round 60 leaves e61 in `h`, and H7 = e61 + IV7.
        rnd_e!(c, d, e, f, g, add!(v[57], splat(K[57])));
        rnd_e!(b, c, d, e, f, add!(v[58], splat(K[58])));
        rnd_e!(a, b, c, d, e, add!(v[59], splat(K[59])));
        rnd_e!(h, a, b, c, d, add!(v[60], splat(K[60])));
        let top = V::bswap(add!(h, splat(IV[7])));
        let mut hits = V::le_mask(top, target, n);
        while hits != 0 {
            out.push(base.wrapping_add(hits.trailing_zeros()));
            hits &= hits - 1;
        }

        left -= n;
        if left == 0 {
            break;
        }
        base = base.wrapping_add(V::LANES);
    }
}
