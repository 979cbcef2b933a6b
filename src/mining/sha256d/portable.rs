//! The portable kernel: plain scalar SHA-256, two full compressions per nonce from the header's
//! midstate. No CPU extension and no nonce-specific shortcut: the honest baseline the other
//! kernels are compared with, and the kernel of any CPU that is not x86-64.

use super::scalar::{big_s0, big_s1, ch, maj, small_s0, small_s1, K};
use super::{Prepared, IV};

/// One SHA-256 compression of the 16-word block `w` into `state`.
fn compress(state: &mut [u32; 8], block: &[u32; 16]) {
    let mut w = [0u32; 64];
    w[..16].copy_from_slice(block);
    for t in 16..64 {
        w[t] = small_s1(w[t - 2])
            .wrapping_add(w[t - 7])
            .wrapping_add(small_s0(w[t - 15]))
            .wrapping_add(w[t - 16]);
    }
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
    for t in 0..64 {
        let t1 = h
            .wrapping_add(big_s1(e))
            .wrapping_add(ch(e, f, g))
            .wrapping_add(K[t])
            .wrapping_add(w[t]);
        let t2 = big_s0(a).wrapping_add(maj(a, b, c));
        h = g;
        g = f;
        f = e;
        e = d.wrapping_add(t1);
        d = c;
        c = b;
        b = a;
        a = t1.wrapping_add(t2);
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *s = s.wrapping_add(v);
    }
}

/// Scans `start .. start + count`, pushing nonces whose top word is ≤ `top_target`.
pub fn scan(p: &Prepared, top_target: u32, start: u32, count: u32, out: &mut Vec<u32>) {
    let (midstate, tail) = (&p.midstate, &p.tail);
    // The header's second block: bytes 64..80 and the padding of an 80-byte message.
    let mut first = [0u32; 16];
    first[..3].copy_from_slice(tail);
    first[4] = 0x8000_0000;
    first[15] = 640;
    // The second hash's block: the 32-byte digest and the padding of a 32-byte message.
    let mut second = [0u32; 16];
    second[8] = 0x8000_0000;
    second[15] = 256;
    for i in 0..count {
        let nonce = start.wrapping_add(i);
        first[3] = nonce.swap_bytes();
        let mut s1 = *midstate;
        compress(&mut s1, &first);
        second[..8].copy_from_slice(&s1);
        let mut s2 = IV;
        compress(&mut s2, &second);
        if s2[7].swap_bytes() <= top_target {
            out.push(nonce);
        }
    }
}
