//! The AVX-512 kernel: 16 nonces per instruction, one nonce per 32-bit lane (the scan itself is
//! [`super::lanes::scan`]).
//!
//! Rotations are `vprord`, and Ch, Maj and the three-way XORs of the Σ/σ functions are single
//! `vpternlogd` instructions.

use core::arch::x86_64::*;

use super::lanes::{self, Lanes};
use super::Prepared;

/// Sixteen 32-bit lanes.
#[derive(Clone, Copy)]
struct Avx512(__m512i);

/// `x ^ y ^ z` in one instruction.
#[inline(always)]
unsafe fn xor3(x: __m512i, y: __m512i, z: __m512i) -> __m512i {
    _mm512_ternarylogic_epi32::<0x96>(x, y, z)
}

impl Lanes for Avx512 {
    const LANES: u32 = 16;
    const UNROLL: bool = true;

    #[inline(always)]
    unsafe fn splat(x: u32) -> Self {
        Avx512(_mm512_set1_epi32(x as i32))
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        Avx512(_mm512_add_epi32(a.0, b.0))
    }
    #[inline(always)]
    unsafe fn bs0(x: Self) -> Self {
        let x = x.0;
        Avx512(xor3(
            _mm512_ror_epi32::<2>(x),
            _mm512_ror_epi32::<13>(x),
            _mm512_ror_epi32::<22>(x),
        ))
    }
    #[inline(always)]
    unsafe fn bs1(x: Self) -> Self {
        let x = x.0;
        Avx512(xor3(
            _mm512_ror_epi32::<6>(x),
            _mm512_ror_epi32::<11>(x),
            _mm512_ror_epi32::<25>(x),
        ))
    }
    #[inline(always)]
    unsafe fn ss0(x: Self) -> Self {
        let x = x.0;
        Avx512(xor3(
            _mm512_ror_epi32::<7>(x),
            _mm512_ror_epi32::<18>(x),
            _mm512_srli_epi32::<3>(x),
        ))
    }
    #[inline(always)]
    unsafe fn ss1(x: Self) -> Self {
        let x = x.0;
        Avx512(xor3(
            _mm512_ror_epi32::<17>(x),
            _mm512_ror_epi32::<19>(x),
            _mm512_srli_epi32::<10>(x),
        ))
    }
    #[inline(always)]
    unsafe fn ch(e: Self, f: Self, g: Self) -> Self {
        Avx512(_mm512_ternarylogic_epi32::<0xCA>(e.0, f.0, g.0))
    }
    /// One `vpternlogd`; `bc` is not needed.
    #[inline(always)]
    unsafe fn maj(a: Self, b: Self, c: Self, _bc: &mut Self) -> Self {
        Avx512(_mm512_ternarylogic_epi32::<0xE8>(a.0, b.0, c.0))
    }
    #[inline(always)]
    unsafe fn nonces(base: u32) -> Self {
        Avx512(_mm512_add_epi32(
            _mm512_set1_epi32(base as i32),
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        ))
    }
    /// Bytes 3 and 1 from a rotation by 8, bytes 2 and 0 from a rotation by 24 (AVX-512F has no
    /// byte shuffle).
    #[inline(always)]
    unsafe fn bswap(x: Self) -> Self {
        Avx512(_mm512_ternarylogic_epi32::<0xCA>(
            _mm512_set1_epi32(0xFF00_FF00u32 as i32),
            _mm512_ror_epi32::<8>(x.0),
            _mm512_ror_epi32::<24>(x.0),
        ))
    }
    #[inline(always)]
    unsafe fn le_mask(top: Self, target: Self, lanes: u32) -> u32 {
        let valid = if lanes >= 16 {
            0xFFFF
        } else {
            (1u16 << lanes) - 1
        };
        u32::from(_mm512_mask_cmple_epu32_mask(valid, top.0, target.0))
    }
}

/// Scans nonces `start .. start + count`; see [`lanes::scan`].
///
/// # Safety
///
/// The CPU must support AVX-512F (the dispatcher checks `Kernel::needs`).
#[target_feature(enable = "avx512f")]
pub unsafe fn scan(p: &Prepared, top_target: u32, start: u32, count: u32, out: &mut Vec<u32>) {
    lanes::scan::<Avx512>(p, top_target, start, count, out)
}
