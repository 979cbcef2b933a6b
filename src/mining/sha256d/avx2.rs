//! The AVX2 kernel: 8 nonces per instruction, one nonce per 32-bit lane (the scan itself is
//! [`super::lanes::scan`]).
//!
//! AVX2 has no vector rotate, so rotations are shift pairs combined by XOR; Maj reuses the
//! previous round's `a ^ b` as this round's `b ^ c`.

use core::arch::x86_64::*;

use super::lanes::{self, Lanes};
use super::Prepared;

/// Eight 32-bit lanes.
#[derive(Clone, Copy)]
struct Avx2(__m256i);

/// `x >>> n` as two shifts combined by XOR.
macro_rules! ror {
    ($x:expr, $n:literal) => {
        _mm256_xor_si256(
            _mm256_srli_epi32::<$n>($x),
            _mm256_slli_epi32::<{ 32 - $n }>($x),
        )
    };
}

/// `x ^ y ^ z`.
#[inline(always)]
unsafe fn xor3(x: __m256i, y: __m256i, z: __m256i) -> __m256i {
    _mm256_xor_si256(_mm256_xor_si256(x, y), z)
}

impl Lanes for Avx2 {
    const LANES: u32 = 8;
    const UNROLL: bool = false;

    #[inline(always)]
    unsafe fn splat(x: u32) -> Self {
        Avx2(_mm256_set1_epi32(x as i32))
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        Avx2(_mm256_add_epi32(a.0, b.0))
    }
    #[inline(always)]
    unsafe fn bs0(x: Self) -> Self {
        Avx2(xor3(ror!(x.0, 2), ror!(x.0, 13), ror!(x.0, 22)))
    }
    #[inline(always)]
    unsafe fn bs1(x: Self) -> Self {
        Avx2(xor3(ror!(x.0, 6), ror!(x.0, 11), ror!(x.0, 25)))
    }
    #[inline(always)]
    unsafe fn ss0(x: Self) -> Self {
        Avx2(xor3(
            ror!(x.0, 7),
            ror!(x.0, 18),
            _mm256_srli_epi32::<3>(x.0),
        ))
    }
    #[inline(always)]
    unsafe fn ss1(x: Self) -> Self {
        Avx2(xor3(
            ror!(x.0, 17),
            ror!(x.0, 19),
            _mm256_srli_epi32::<10>(x.0),
        ))
    }
    /// `((f ^ g) & e) ^ g`.
    #[inline(always)]
    unsafe fn ch(e: Self, f: Self, g: Self) -> Self {
        Avx2(_mm256_xor_si256(
            _mm256_and_si256(_mm256_xor_si256(f.0, g.0), e.0),
            g.0,
        ))
    }
    /// `b ^ ((a ^ b) & (b ^ c))`, with `b ^ c` carried over from the previous round's `a ^ b`.
    #[inline(always)]
    unsafe fn maj(a: Self, b: Self, _c: Self, bc: &mut Self) -> Self {
        let ab = _mm256_xor_si256(a.0, b.0);
        let m = _mm256_xor_si256(b.0, _mm256_and_si256(ab, bc.0));
        *bc = Avx2(ab);
        Avx2(m)
    }
    #[inline(always)]
    unsafe fn nonces(base: u32) -> Self {
        Avx2(_mm256_add_epi32(
            _mm256_set1_epi32(base as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        ))
    }
    /// `vpshufb` within each 128-bit half.
    #[inline(always)]
    unsafe fn bswap(x: Self) -> Self {
        let m = _mm256_setr_epi8(
            3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12, 3, 2, 1, 0, 7, 6, 5, 4, 11, 10,
            9, 8, 15, 14, 13, 12,
        );
        Avx2(_mm256_shuffle_epi8(x.0, m))
    }
    /// Unsigned `top <= target` as `max(top, target) == target`.
    #[inline(always)]
    unsafe fn le_mask(top: Self, target: Self, lanes: u32) -> u32 {
        let le = _mm256_cmpeq_epi32(_mm256_max_epu32(top.0, target.0), target.0);
        (_mm256_movemask_ps(_mm256_castsi256_ps(le)) as u32) & ((1u32 << lanes) - 1)
    }
}

/// Scans nonces `start .. start + count`; see [`lanes::scan`].
///
/// # Safety
///
/// The CPU must support AVX2 (the dispatcher checks `Kernel::needs`).
#[target_feature(enable = "avx2")]
pub unsafe fn scan(p: &Prepared, top_target: u32, start: u32, count: u32, out: &mut Vec<u32>) {
    lanes::scan::<Avx2>(p, top_target, start, count, out)
}
