//! SHA-256d nonce-scan kernel on the x86 SHA extensions for the rounds *and* the message
//! schedule, several nonces interleaved.
//!
//! The `sha-ni` kernel computes the message schedule on the SSE ALUs to spare a slow SHA unit.
//! Where the SHA message instructions are cheap (AMD Zen: `sha256msg1`/`sha256msg2` issue about
//! once per cycle beside `sha256rnds2`), the ALU schedule becomes the bottleneck instead, and the
//! classic layout (Intel's reference code: one `sha256msg1`, one `palignr`, one add and one
//! `sha256msg2` per four schedule words) is cheaper. This kernel is that layout with:
//! * [`STREAMS`] nonces interleaved, so that one nonce's `sha256rnds2` latency chain is hidden
//!   behind the others';
//! * everything that does not depend on the nonce computed once per call: rounds 0–3 of the
//!   header's second block (round 3 only adds W3 = nonce to `a` and `e`), the (W + K) operands of
//!   rounds 4–15 of the first hash and 8–15 of the second, and the `sha256msg1` results of
//!   constant word groups;
//! * the second hash cut short: after rounds 60 and 61 the `f` word is `e` after round 61, which
//!   is the final `h` (h64 = g63 = f62 = e61), the only word the top-word test needs. Rounds
//!   62–63 and the rest of the schedule are skipped; a candidate is then checked in full by the
//!   dispatcher.
//!
//! Per nonce: 61 `sha256rnds2` (30 + 31), 24 `sha256msg1`/`sha256msg2` pairs at most.
//!
//! State layout as in Intel's reference code: `ABEF = _mm_set_epi32(A, B, E, F)` and
//! `CDGH = _mm_set_epi32(C, D, G, H)`; a message group `[W(t), W(t+1), W(t+2), W(t+3)]` is one
//! vector with W(t) in lane 0.

use core::arch::x86_64::*;

use super::scalar::K;
use super::{Prepared, IV};

/// Nonces interleaved. Two hide `sha256rnds2`'s latency on the CPUs this kernel is for, and leave
/// registers for the schedule: per nonce, two state vectors and four message groups.
const STREAMS: usize = 2;

/// A vector from four words, lane 0 first.
#[inline(always)]
unsafe fn v4(w0: u32, w1: u32, w2: u32, w3: u32) -> __m128i {
    _mm_set_epi32(w3 as i32, w2 as i32, w1 as i32, w0 as i32)
}

/// `K[4g .. 4g + 4]` as a vector.
#[inline(always)]
unsafe fn kq(g: usize) -> __m128i {
    v4(K[4 * g], K[4 * g + 1], K[4 * g + 2], K[4 * g + 3])
}

/// Packs a standard-order state into (ABEF, CDGH).
#[inline(always)]
unsafe fn pack(s: &[u32; 8]) -> (__m128i, __m128i) {
    (v4(s[5], s[4], s[1], s[0]), v4(s[7], s[6], s[3], s[2]))
}

/// The next message group from the four before it (`m[g-4]`, `m[g-3]`, `m[g-2]`, `m[g-1]`).
#[inline(always)]
unsafe fn next_group(m4: __m128i, m3: __m128i, m2: __m128i, m1: __m128i) -> __m128i {
    next_group_from(_mm_sha256msg1_epu32(m4, m3), m2, m1)
}

/// The next message group when `sha256msg1(m[g-4], m[g-3])` is already known.
#[inline(always)]
unsafe fn next_group_from(msg1: __m128i, m2: __m128i, m1: __m128i) -> __m128i {
    _mm_sha256msg2_epu32(_mm_add_epi32(msg1, _mm_alignr_epi8::<4>(m1, m2)), m1)
}

/// The states of the interleaved nonces.
struct Streams {
    /// ABEF per nonce.
    abef: [__m128i; STREAMS],
    /// CDGH per nonce.
    cdgh: [__m128i; STREAMS],
}

impl Streams {
    /// Two rounds on every nonce; lanes 0 and 1 of `wk[l]` are nonce l's (W + K).
    #[inline(always)]
    unsafe fn rounds2(&mut self, wk: [__m128i; STREAMS]) {
        for (l, wk) in wk.into_iter().enumerate() {
            let n = _mm_sha256rnds2_epu32(self.cdgh[l], self.abef[l], wk);
            self.cdgh[l] = self.abef[l];
            self.abef[l] = n;
        }
    }

    /// Four rounds on every nonce with its own (W + K) group.
    #[inline(always)]
    unsafe fn rounds4(&mut self, wk: [__m128i; STREAMS]) {
        self.rounds2(wk);
        self.rounds2(wk.map(|v| _mm_shuffle_epi32::<0x0E>(v)));
    }

    /// Message groups `range` by the generic rule (`m[g % 4]` holds group `g`; on entry the four
    /// groups before the range), each followed by its four rounds.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    unsafe fn groups(&mut self, m: &mut [[__m128i; STREAMS]; 4], range: core::ops::Range<usize>) {
        for g in range {
            let i = g % 4;
            for l in 0..STREAMS {
                m[i][l] = next_group(
                    m[i][l],
                    m[(g + 1) % 4][l],
                    m[(g + 2) % 4][l],
                    m[(g + 3) % 4][l],
                );
            }
            self.rounds4_msg(&m[i], g);
        }
    }

    /// Four rounds on every nonce with message groups `m` and the constants of group `g`.
    #[inline(always)]
    unsafe fn rounds4_msg(&mut self, m: &[__m128i; STREAMS], g: usize) {
        let k = kq(g);
        self.rounds4(m.map(|v| _mm_add_epi32(v, k)));
    }
}

/// Per-call constants: everything that does not depend on the nonce.
struct Pre {
    /// The midstate as ABEF / CDGH (the first hash's feed-forward).
    mid_abef: __m128i,
    mid_cdgh: __m128i,
    /// ABEF after rounds 0–1 of the header's second block (= CDGH after rounds 0–3).
    abef2: __m128i,
    /// ABEF after rounds 0–3 with W3 = 0; the real one adds W3 to lanes 3 (A) and 1 (E).
    abef4: __m128i,
    /// Message group 0 of the first hash with W3 = 0.
    m0: __m128i,
    /// First hash: message groups 1 and 3 (group 2 is zero).
    m1: __m128i,
    m3: __m128i,
    /// First hash: `sha256msg1` of groups (1, 2) and (2, 3).
    msg1_12: __m128i,
    msg1_23: __m128i,
    /// Second hash: groups 2 and 3 (padding of a 32-byte message), and `sha256msg1(2, 3)`.
    n2: __m128i,
    n3: __m128i,
    n_msg1_23: __m128i,
    /// The IV as ABEF / CDGH.
    iv_abef: __m128i,
    iv_cdgh: __m128i,
}

#[inline(always)]
unsafe fn precompute(midstate: &[u32; 8], tail: &[u32; 3]) -> Pre {
    let [t0, t1, t2] = *tail;
    let (mid_abef, mid_cdgh) = pack(midstate);
    let abef2 = _mm_sha256rnds2_epu32(
        mid_cdgh,
        mid_abef,
        v4(t0.wrapping_add(K[0]), t1.wrapping_add(K[1]), 0, 0),
    );
    let abef4 = _mm_sha256rnds2_epu32(mid_abef, abef2, v4(t2.wrapping_add(K[2]), K[3], 0, 0));
    let z = _mm_setzero_si128();
    let m1 = v4(0x8000_0000, 0, 0, 0);
    let m3 = v4(0, 0, 0, 640);
    let n3 = v4(0, 0, 0, 256);
    let (iv_abef, iv_cdgh) = pack(&IV);
    Pre {
        mid_abef,
        mid_cdgh,
        abef2,
        abef4,
        m0: v4(t0, t1, t2, 0),
        m1,
        m3,
        msg1_12: _mm_sha256msg1_epu32(m1, z),
        msg1_23: _mm_sha256msg1_epu32(z, m3),
        n2: m1,
        n3,
        n_msg1_23: _mm_sha256msg1_epu32(m1, n3),
        iv_abef,
        iv_cdgh,
    }
}

/// The raw final state word 7 (before the byte swap) of SHA-256d for each nonce, given as W3
/// (the nonce byte-swapped).
// The stream index addresses several message groups at once.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
unsafe fn hash(p: &Pre, w3: [u32; STREAMS]) -> [u32; STREAMS] {
    let z = _mm_setzero_si128();
    // ---- First hash: the header's second block, from the midstate. ----
    let mut s = Streams {
        abef: w3.map(|w| _mm_add_epi32(p.abef4, v4(0, w, 0, w))),
        cdgh: [p.abef2; STREAMS],
    };
    let m0 = w3.map(|w| _mm_insert_epi32::<3>(p.m0, w as i32));
    // Rounds 4–15: W4..W15 are constants.
    let c1 = _mm_add_epi32(p.m1, kq(1));
    let c3 = _mm_add_epi32(p.m3, kq(3));
    s.rounds4([c1; STREAMS]);
    s.rounds4([kq(2); STREAMS]);
    s.rounds4([c3; STREAMS]);
    // Rounds 16–63, message groups 4–15; `m[g % 4]` holds group g.
    let mut m = [[z; STREAMS]; 4];
    for l in 0..STREAMS {
        m[0][l] = next_group(m0[l], p.m1, z, p.m3);
    }
    s.rounds4_msg(&m[0], 4);
    for l in 0..STREAMS {
        m[1][l] = next_group_from(p.msg1_12, p.m3, m[0][l]);
    }
    s.rounds4_msg(&m[1], 5);
    for l in 0..STREAMS {
        m[2][l] = next_group_from(p.msg1_23, m[0][l], m[1][l]);
    }
    s.rounds4_msg(&m[2], 6);
    for l in 0..STREAMS {
        m[3][l] = next_group(p.m3, m[0][l], m[1][l], m[2][l]);
    }
    s.rounds4_msg(&m[3], 7);
    s.groups(&mut m, 8..16);

    // ---- Second hash: W0..W7 = the first hash, then the padding of 32 bytes. ----
    let mut h0 = [z; STREAMS];
    let mut h1 = [z; STREAMS];
    for l in 0..STREAMS {
        let abef = _mm_add_epi32(s.abef[l], p.mid_abef); // [F, E, B, A]
        let cdgh = _mm_add_epi32(s.cdgh[l], p.mid_cdgh); // [H, G, D, C]
        h0[l] = _mm_shuffle_epi32::<0xB1>(_mm_unpackhi_epi64(abef, cdgh)); // [A, B, C, D]
        h1[l] = _mm_shuffle_epi32::<0xB1>(_mm_unpacklo_epi64(abef, cdgh)); // [E, F, G, H]
    }
    let mut s = Streams {
        abef: [p.iv_abef; STREAMS],
        cdgh: [p.iv_cdgh; STREAMS],
    };
    s.rounds4_msg(&h0, 0);
    s.rounds4_msg(&h1, 1);
    s.rounds4([_mm_add_epi32(p.n2, kq(2)); STREAMS]);
    s.rounds4([_mm_add_epi32(p.n3, kq(3)); STREAMS]);
    for l in 0..STREAMS {
        m[0][l] = next_group(h0[l], h1[l], p.n2, p.n3);
    }
    s.rounds4_msg(&m[0], 4);
    for l in 0..STREAMS {
        m[1][l] = next_group(h1[l], p.n2, p.n3, m[0][l]);
    }
    s.rounds4_msg(&m[1], 5);
    for l in 0..STREAMS {
        m[2][l] = next_group_from(p.n_msg1_23, m[0][l], m[1][l]);
    }
    s.rounds4_msg(&m[2], 6);
    for l in 0..STREAMS {
        m[3][l] = next_group(p.n3, m[0][l], m[1][l], m[2][l]);
    }
    s.rounds4_msg(&m[3], 7);
    s.groups(&mut m, 8..15);
    // Group 15: only rounds 60 and 61, and only W60 matters for e61.
    let k15 = kq(15);
    let mut wk = [z; STREAMS];
    for (l, v) in wk.iter_mut().enumerate() {
        let g15 = next_group(m[3][l], m[0][l], m[1][l], m[2][l]);
        *v = _mm_add_epi32(g15, k15);
    }
    s.rounds2(wk);
    // Lane 0 of ABEF is F = e after round 61 = the final h before the IV is added.
    s.abef
        .map(|v| (_mm_cvtsi128_si32(v) as u32).wrapping_add(IV[7]))
}

/// Scans nonces `start .. start + count` and appends, in increasing order, every nonce whose
/// SHA-256d top word (`final_state[7].swap_bytes()`) is `<= top_target`.
///
/// `p` holds the midstate of the header's first 64 bytes and its bytes 64..76 as big-endian
/// words; the nonce goes into bytes 76..80, little-endian. The caller guarantees
/// `start + count <= 2^32`; `count` may be any value, including 0.
///
/// # Safety
/// The CPU must support SHA-NI, SSSE3 and SSE4.1 (the dispatcher checks `Kernel::needs`).
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
pub unsafe fn scan(p: &Prepared, top_target: u32, start: u32, count: u32, out: &mut Vec<u32>) {
    let (midstate, tail) = (&p.midstate, &p.tail);
    let p = precompute(midstate, tail);
    let mut n = start;
    let mut left = count;
    while left != 0 {
        let lanes = (left as usize).min(STREAMS);
        let mut w3 = [0u32; STREAMS];
        for (l, w) in w3.iter_mut().enumerate() {
            *w = n.wrapping_add(l as u32).swap_bytes();
        }
        let h7 = hash(&p, w3);
        for (l, h) in h7.iter().enumerate().take(lanes) {
            if h.swap_bytes() <= top_target {
                out.push(n.wrapping_add(l as u32));
            }
        }
        left -= lanes as u32;
        n = n.wrapping_add(STREAMS as u32);
    }
}
