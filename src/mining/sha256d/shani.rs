//! SHA-256d nonce-scan kernel using the x86 SHA extensions (SHA-NI), four nonces interleaved.
//!
//! Design (measured on an Ice Lake Xeon, where `sha256rnds2`, `sha256msg1` and `sha256msg2` all
//! compete for one SHA unit with a reciprocal throughput of about 3 cycles each):
//! * the 64 rounds of both compressions use `sha256rnds2`, four nonces interleaved so that the
//!   serial dependency chain of each nonce never leaves the SHA unit idle;
//! * the message schedule is *not* computed with `sha256msg1/2` (that would almost double the SHA
//!   unit's load); it is computed "vertically" with plain SSE2 shifts/xors/adds, one nonce per
//!   32-bit lane, which runs on the ordinary vector ALUs in parallel with the SHA unit. Two
//!   unpacks per round pair turn the vertical (W + K) words into the per-nonce operands;
//! * everything that does not depend on the nonce is precomputed once per call: rounds 0-3 of the
//!   header's second block (round 3 only adds W3 = nonce to `a` and `e`, so no `sha256rnds2` is
//!   spent there), the (W + K) operands of rounds 4..18 of the first hash and of rounds 8..16 of
//!   the second hash, and the constant parts of the schedule words;
//! * the second hash runs 60 rounds with `sha256rnds2`, then computes only the new `e` of round 60
//!   vertically: the final `h` equals `e` after round 61, so rounds 61-63 are skipped. The top
//!   words of the four nonces end up in one vector and are compared with one SSE4.1 `pminud`.
//!
//! Total per nonce: 60 `sha256rnds2`, no `sha256msg1/2`.
//!
//! State layout as in Intel's reference code: `ABEF = _mm_set_epi32(A, B, E, F)` and
//! `CDGH = _mm_set_epi32(C, D, G, H)`.

use core::arch::x86_64::*;

/// Nonces processed per group (one per 32-bit lane of the vertical message schedule).
const LANES: usize = 4;

use super::scalar::{small_s0 as s0, small_s1 as s1, K};
use super::{Prepared, IV};

/// Broadcasts a `u32` to all four lanes.
#[inline(always)]
unsafe fn splat(x: u32) -> __m128i {
    _mm_set1_epi32(x as i32)
}

/// Lane-wise wrapping addition.
#[inline(always)]
unsafe fn add(a: __m128i, b: __m128i) -> __m128i {
    _mm_add_epi32(a, b)
}

/// Defines a lane-wise small σ as `(x ^ ((x ^ x >> A) >> B)) >> C ^ (x ^ x << A) << D`.
///
/// Written in assembly because LLVM rewrites the factored form back into five independent shifts,
/// which costs three more register copies per call without AVX's three-operand forms.
macro_rules! small_sigma {
    ($(#[$doc:meta])* $name:ident, $a:literal, $b:literal, $c:literal, $d:literal) => {
        $(#[$doc])*
        #[inline(always)]
        unsafe fn $name(x: __m128i) -> __m128i {
            let r: __m128i;
            core::arch::asm!(
                "movdqa {r}, {x}",
                "psrld {r}, {a}",
                "movdqa {t}, {x}",
                "pslld {t}, {a}",
                "pxor {r}, {x}",
                "pxor {t}, {x}",
                "psrld {r}, {b}",
                "pslld {t}, {d}",
                "pxor {r}, {x}",
                "psrld {r}, {c}",
                "pxor {r}, {t}",
                x = in(xmm_reg) x,
                r = out(xmm_reg) r,
                t = out(xmm_reg) _,
                a = const $a,
                b = const $b,
                c = const $c,
                d = const $d,
                options(pure, nomem, nostack, preserves_flags)
            );
            r
        }
    };
}
small_sigma!(
    /// Lane-wise σ0 (rotr 7 ^ rotr 18 ^ shr 3).
    vs0, 11, 4, 3, 14
);
small_sigma!(
    /// Lane-wise σ1 (rotr 17 ^ rotr 19 ^ shr 10).
    vs1, 2, 7, 10, 13
);

/// Packs a standard-order state into (ABEF, CDGH).
#[inline(always)]
unsafe fn pack(s: &[u32; 8]) -> (__m128i, __m128i) {
    (
        _mm_set_epi32(s[0] as i32, s[1] as i32, s[4] as i32, s[5] as i32),
        _mm_set_epi32(s[2] as i32, s[3] as i32, s[6] as i32, s[7] as i32),
    )
}

/// A (W + K) operand whose low two lanes are `lo`, `hi` (the upper lanes are ignored by rnds2).
#[inline(always)]
unsafe fn pair_const(lo: u32, hi: u32) -> __m128i {
    _mm_set_epi32(0, 0, hi as i32, lo as i32)
}

/// 4x4 transpose of 32-bit lanes: returns the columns of the rows `r`.
#[inline(always)]
unsafe fn transpose(r: [__m128i; 4]) -> [__m128i; 4] {
    let t0 = _mm_unpacklo_epi32(r[0], r[1]);
    let t1 = _mm_unpacklo_epi32(r[2], r[3]);
    let t2 = _mm_unpackhi_epi32(r[0], r[1]);
    let t3 = _mm_unpackhi_epi32(r[2], r[3]);
    [
        _mm_unpacklo_epi64(t0, t1),
        _mm_unpackhi_epi64(t0, t1),
        _mm_unpacklo_epi64(t2, t3),
        _mm_unpackhi_epi64(t2, t3),
    ]
}

/// Per-nonce SHA-NI state: `a` = current ABEF, `c` = current CDGH.
#[derive(Clone, Copy)]
struct St {
    a: [__m128i; LANES],
    c: [__m128i; LANES],
}

impl St {
    /// Optimisation barrier: pins all states in registers at this point of the program so that
    /// LLVM keeps the four nonces' round chains interleaved instead of serialising them.
    #[inline(always)]
    unsafe fn pin(&mut self) {
        core::arch::asm!(
            "/* {0} {1} {2} {3} {4} {5} {6} {7} */",
            inout(xmm_reg) self.a[0], inout(xmm_reg) self.a[1],
            inout(xmm_reg) self.a[2], inout(xmm_reg) self.a[3],
            inout(xmm_reg) self.c[0], inout(xmm_reg) self.c[1],
            inout(xmm_reg) self.c[2], inout(xmm_reg) self.c[3],
            options(pure, nomem, nostack, preserves_flags)
        );
    }

    /// Two rounds on every nonce with a shared (W + K) operand.
    #[inline(always)]
    unsafe fn rounds_const(&mut self, wk: __m128i) {
        for l in 0..LANES {
            let n = _mm_sha256rnds2_epu32(self.c[l], self.a[l], wk);
            self.c[l] = self.a[l];
            self.a[l] = n;
        }
        self.pin();
    }

    /// Two rounds on every nonce; `x`, `y` hold (W + K) of the two rounds, one nonce per lane.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    unsafe fn rounds_vert(&mut self, x: __m128i, y: __m128i) {
        let lo = _mm_unpacklo_epi32(x, y); // [x0, y0, x1, y1]
        let hi = _mm_unpackhi_epi32(x, y); // [x2, y2, x3, y3]
        let m = [
            lo,
            _mm_unpackhi_epi64(lo, lo),
            hi,
            _mm_unpackhi_epi64(hi, hi),
        ];
        for l in 0..LANES {
            let n = _mm_sha256rnds2_epu32(self.c[l], self.a[l], m[l]);
            self.c[l] = self.a[l];
            self.a[l] = n;
        }
        self.pin();
    }
}

/// Per-call constants (everything that does not depend on the nonce).
struct Pre {
    /// Midstate packed as ABEF / CDGH (feed-forward of the first hash).
    mid_abef: __m128i,
    mid_cdgh: __m128i,
    /// ABEF after rounds 0-1 of the header's second block (= CDGH after rounds 0-3).
    abef2: __m128i,
    /// ABEF after rounds 0-3 computed with W3 = 0. Round 3 is the first to see the nonce, and it
    /// only adds W3 to the new `a` and `e`, so the real ABEF is this plus W3 in lanes 3 (A) and 1 (E).
    abef4: __m128i,
    /// (W + K) operands of the first hash's rounds 4..18 (W16, W17 do not depend on the nonce).
    c1: [__m128i; 7],
    /// First-hash schedule constants (splats): W16, W17 and the constant parts of W18, W19, W31, W32.
    w16: __m128i,
    w17: __m128i,
    c18: __m128i,
    c19: __m128i,
    c31: __m128i,
    c32: __m128i,
}

/// Computes the per-call constants.
#[inline(always)]
unsafe fn precompute(midstate: &[u32; 8], tail: &[u32; 3]) -> Pre {
    let mut w = [0u32; 18];
    w[0] = tail[0];
    w[1] = tail[1];
    w[2] = tail[2];
    w[4] = 0x8000_0000;
    w[15] = 640;
    w[16] = s1(w[14])
        .wrapping_add(w[9])
        .wrapping_add(s0(w[1]))
        .wrapping_add(w[0]);
    w[17] = s1(w[15])
        .wrapping_add(w[10])
        .wrapping_add(s0(w[2]))
        .wrapping_add(w[1]);
    let wk = |t: usize| w[t].wrapping_add(K[t]);

    let (mid_abef, mid_cdgh) = pack(midstate);
    let abef2 = _mm_sha256rnds2_epu32(mid_cdgh, mid_abef, pair_const(wk(0), wk(1)));
    let abef4 = _mm_sha256rnds2_epu32(mid_abef, abef2, pair_const(wk(2), K[3]));
    let mut c1 = [_mm_setzero_si128(); 7];
    for (i, v) in c1.iter_mut().enumerate() {
        *v = pair_const(wk(4 + 2 * i), wk(5 + 2 * i));
    }
    Pre {
        mid_abef,
        mid_cdgh,
        abef2,
        abef4,
        c1,
        w16: splat(w[16]),
        w17: splat(w[17]),
        // W18 = σ1(W16) + W11 + σ0(W3) + W2
        c18: splat(s1(w[16]).wrapping_add(w[11]).wrapping_add(w[2])),
        // W19 = σ1(W17) + W12 + σ0(W4) + W3
        c19: splat(s1(w[17]).wrapping_add(w[12]).wrapping_add(s0(w[4]))),
        // W31 = σ1(W29) + W24 + σ0(W16) + W15
        c31: splat(s0(w[16]).wrapping_add(w[15])),
        // W32 = σ1(W30) + W25 + σ0(W17) + W16
        c32: splat(s0(w[17]).wrapping_add(w[16])),
    }
}

/// Generic schedule step: W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16].
macro_rules! sched {
    ($w:ident, $t:expr) => {
        $w[$t] = add(
            add(vs1($w[$t - 2]), $w[$t - 7]),
            add(vs0($w[$t - 15]), $w[$t - 16]),
        )
    };
}

/// Two rounds `t`, `t + 1` from the vertical words `w[t]`, `w[t + 1]`.
macro_rules! rv {
    ($st:ident, $w:ident, $t:expr) => {
        $st.rounds_vert(add($w[$t], splat(K[$t])), add($w[$t + 1], splat(K[$t + 1])))
    };
}

/// Computes, for the four nonces whose byte-swapped values (W3) are the lanes of `nbe`, the raw
/// final state word 7 (before the byte swap) of SHA-256d, one nonce per lane.
#[inline(always)]
unsafe fn hash4(p: &Pre, nbe: __m128i) -> __m128i {
    // ------------- first hash: the header's second block, from the midstate -------------
    let z = _mm_setzero_si128();
    let mut w = [z; 64];
    // Rounds 0-3: ABEF = abef4 + [0, W3, 0, W3] (see `Pre::abef4`); pshufb picks nonce l's W3
    // into lanes 1 and 3 and zeroes lanes 0 and 2.
    let mut a = [z; LANES];
    for (l, v) in a.iter_mut().enumerate() {
        let b = 4 * l as i8;
        let pick = _mm_setr_epi8(
            -1,
            -1,
            -1,
            -1,
            b,
            b + 1,
            b + 2,
            b + 3,
            -1,
            -1,
            -1,
            -1,
            b,
            b + 1,
            b + 2,
            b + 3,
        );
        *v = add(p.abef4, _mm_shuffle_epi8(nbe, pick));
    }
    let mut st = St {
        a,
        c: [p.abef2; LANES],
    };
    // Rounds 4..18: W4..W17 do not depend on the nonce.
    for &wk in &p.c1 {
        st.rounds_const(wk);
    }
    // W18..W32 with their constant parts folded (W5..W14 = 0, W4 = 0x80000000, W15 = 640).
    w[16] = p.w16;
    w[17] = p.w17;
    w[18] = add(p.c18, vs0(nbe));
    w[19] = add(p.c19, nbe);
    rv!(st, w, 18);
    w[20] = add(vs1(w[18]), splat(0x8000_0000));
    w[21] = vs1(w[19]);
    rv!(st, w, 20);
    w[22] = add(vs1(w[20]), splat(640));
    w[23] = add(vs1(w[21]), w[16]);
    rv!(st, w, 22);
    w[24] = add(vs1(w[22]), w[17]);
    w[25] = add(vs1(w[23]), w[18]);
    rv!(st, w, 24);
    w[26] = add(vs1(w[24]), w[19]);
    w[27] = add(vs1(w[25]), w[20]);
    rv!(st, w, 26);
    w[28] = add(vs1(w[26]), w[21]);
    w[29] = add(vs1(w[27]), w[22]);
    rv!(st, w, 28);
    w[30] = add(add(vs1(w[28]), w[23]), splat(const { s0(640) }));
    w[31] = add(add(vs1(w[29]), w[24]), p.c31);
    rv!(st, w, 30);
    w[32] = add(add(vs1(w[30]), w[25]), p.c32);
    w[33] = add(add(vs1(w[31]), w[26]), add(vs0(w[18]), w[17]));
    rv!(st, w, 32);
    macro_rules! gen1 {
        ($($t:literal)*) => {$(
            sched!(w, $t);
            sched!(w, $t + 1);
            rv!(st, w, $t);
        )*};
    }
    gen1!(34 36 38 40 42 44 46 48 50 52 54 56 58 60 62);

    // Feed-forward, then transpose into the second hash's vertical message words.
    let mut abef = [z; LANES];
    let mut cdgh = [z; LANES];
    for l in 0..LANES {
        abef[l] = add(st.a[l], p.mid_abef);
        cdgh[l] = add(st.c[l], p.mid_cdgh);
    }
    let [f, e, b, a] = transpose(abef);
    let [h, g, d, c] = transpose(cdgh);

    // ------------- second hash: one block, W8 = 0x80000000, W9..W14 = 0, W15 = 256 -------------
    let (iv_abef, iv_cdgh) = pack(&IV);
    let mut st = St {
        a: [iv_abef; LANES],
        c: [iv_cdgh; LANES],
    };
    let mut w = [z; 64];
    w[0] = a;
    w[1] = b;
    w[2] = c;
    w[3] = d;
    w[4] = e;
    w[5] = f;
    w[6] = g;
    w[7] = h;
    rv!(st, w, 0);
    rv!(st, w, 2);
    rv!(st, w, 4);
    rv!(st, w, 6);
    const P: [u32; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0x8000_0000, 0, 0, 0, 0, 0, 0, 256];
    for t in (8..16).step_by(2) {
        st.rounds_const(pair_const(
            P[t].wrapping_add(K[t]),
            P[t + 1].wrapping_add(K[t + 1]),
        ));
    }
    w[16] = add(vs0(w[1]), w[0]);
    w[17] = add(add(vs0(w[2]), w[1]), splat(const { s1(256) }));
    rv!(st, w, 16);
    w[18] = add(add(vs1(w[16]), w[2]), vs0(w[3]));
    w[19] = add(add(vs1(w[17]), w[3]), vs0(w[4]));
    rv!(st, w, 18);
    w[20] = add(add(vs1(w[18]), w[4]), vs0(w[5]));
    w[21] = add(add(vs1(w[19]), w[5]), vs0(w[6]));
    rv!(st, w, 20);
    w[22] = add(add(vs1(w[20]), w[6]), add(vs0(w[7]), splat(256)));
    w[23] = add(
        add(vs1(w[21]), w[7]),
        add(w[16], splat(const { s0(0x8000_0000) })),
    );
    rv!(st, w, 22);
    w[24] = add(add(vs1(w[22]), w[17]), splat(0x8000_0000));
    w[25] = add(vs1(w[23]), w[18]);
    rv!(st, w, 24);
    w[26] = add(vs1(w[24]), w[19]);
    w[27] = add(vs1(w[25]), w[20]);
    rv!(st, w, 26);
    w[28] = add(vs1(w[26]), w[21]);
    w[29] = add(vs1(w[27]), w[22]);
    rv!(st, w, 28);
    w[30] = add(add(vs1(w[28]), w[23]), splat(const { s0(256) }));
    w[31] = add(add(vs1(w[29]), w[24]), add(vs0(w[16]), splat(256)));
    rv!(st, w, 30);
    macro_rules! gen2 {
        ($($t:literal)*) => {$(
            sched!(w, $t);
            sched!(w, $t + 1);
            rv!(st, w, $t);
        )*};
    }
    gen2!(32 34 36 38 40 42 44 46 48 50 52 54 56 58);
    // Round 60 only, vertically: the final h is e after round 61 (h64 = g63 = f62 = e61), and
    // e61 = d60 + h60 + Σ1(e60) + Ch(e60, f60, g60) + K60 + W60.
    sched!(w, 60);
    let t0 = _mm_unpacklo_epi32(st.a[0], st.a[1]); // [F0, F1, E0, E1]
    let t1 = _mm_unpacklo_epi32(st.a[2], st.a[3]);
    let f = _mm_unpacklo_epi64(t0, t1);
    let e = _mm_unpackhi_epi64(t0, t1);
    let t0 = _mm_unpacklo_epi32(st.c[0], st.c[1]); // [H0, H1, G0, G1]
    let t1 = _mm_unpacklo_epi32(st.c[2], st.c[3]);
    let h = _mm_unpacklo_epi64(t0, t1);
    let g = _mm_unpackhi_epi64(t0, t1);
    let t0 = _mm_unpackhi_epi32(st.c[0], st.c[1]); // [D0, D1, C0, C1]
    let t1 = _mm_unpackhi_epi32(st.c[2], st.c[3]);
    let d = _mm_unpacklo_epi64(t0, t1);
    let ch = _mm_xor_si128(g, _mm_and_si128(e, _mm_xor_si128(f, g)));
    let r = _mm_xor_si128(
        _mm_xor_si128(_mm_srli_epi32(e, 6), _mm_slli_epi32(e, 26)),
        _mm_xor_si128(_mm_srli_epi32(e, 11), _mm_slli_epi32(e, 21)),
    );
    let bs1 = _mm_xor_si128(
        r,
        _mm_xor_si128(_mm_srli_epi32(e, 25), _mm_slli_epi32(e, 7)),
    );
    add(
        add(add(d, h), add(bs1, ch)),
        add(w[60], splat(K[60].wrapping_add(IV[7]))),
    )
}

/// Scans nonces `start .. start + count` and appends, in increasing order, every nonce whose
/// double-SHA-256 top word (`final_state[7].swap_bytes()`) is `<= top_target`.
///
/// `p` holds the midstate of the header's first 64 bytes and its bytes 64..76 as big-endian
/// words; the nonce goes into bytes 76..80, little-endian. The caller guarantees
/// `start + count <= 2^32`; `count` may be any value, including 0.
///
/// # Safety
/// The CPU must support SHA-NI, SSE2, SSSE3 and SSE4.1 (check with
/// `is_x86_feature_detected!("sha")` and `is_x86_feature_detected!("sse4.1")`).
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
pub unsafe fn scan(p: &Prepared, top_target: u32, start: u32, count: u32, out: &mut Vec<u32>) {
    let (midstate, tail) = (&p.midstate, &p.tail);
    let p = precompute(midstate, tail);
    // Byte-swaps every 32-bit lane (nonces are little-endian in the header, W3 is big-endian).
    let bswap = _mm_set_epi8(12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3);
    let step = splat(LANES as u32);
    // Lane l holds start + l (wrapping; lanes past the end of the range are ignored).
    let mut nv = add(splat(start), _mm_set_epi32(3, 2, 1, 0));
    let target = splat(top_target);
    let mut n = start;
    let mut left = count;
    while left != 0 {
        // Top word = byte-swapped final state word 7; unsigned `top <= target` <=> min(top, target) == top.
        let top = _mm_shuffle_epi8(hash4(&p, _mm_shuffle_epi8(nv, bswap)), bswap);
        let hit = _mm_cmpeq_epi32(_mm_min_epu32(top, target), top);
        let lanes = if left >= LANES as u32 {
            LANES
        } else {
            left as usize
        };
        let mut mask = (_mm_movemask_ps(_mm_castsi128_ps(hit)) as u32) & ((1u32 << lanes) - 1);
        while mask != 0 {
            out.push(n.wrapping_add(mask.trailing_zeros()));
            mask &= mask - 1;
        }
        left -= lanes as u32;
        n = n.wrapping_add(LANES as u32);
        nv = add(nv, step);
    }
}
