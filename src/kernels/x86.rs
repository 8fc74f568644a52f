//! x86-64 SIMD kernels (AVX2, AVX-512 VNNI). Each public entry checks the CPU feature again and
//! falls back to the scalar reference, so calling one on an unsupported CPU is safe.

use super::{PackedWeights, scalar};

/// True when AVX2 is available.
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// True when AVX-512 F/BW and VNNI are available.
pub fn has_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// AVX2 GEMM (exact for any s8 weights; see the module docs of `kernels`).
pub fn gemm_avx2(x: &[u8], m: usize, w: &PackedWeights, acc: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: AVX2 is present (checked above); buffer sizes are checked by the caller
        // (`x.len() >= m * kp`, `acc.len() >= m * n`) and rows are padded to `kp`.
        unsafe {
            if w.max_abs <= 63 {
                avx2::gemm_maddubs(x, m, w, acc);
            } else {
                avx2::gemm_madd16(x, m, w, acc);
            }
        }
        return;
    }
    scalar::gemm_u8s8(x, m, w, acc);
}

/// AVX-512 VNNI GEMM.
pub fn gemm_vnni(x: &[u8], m: usize, w: &PackedWeights, acc: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if has_vnni() {
        // SAFETY: AVX-512 F/BW/VNNI are present; sizes as in `gemm_avx2`.
        unsafe { vnni::gemm(x, m, w, acc) };
        return;
    }
    scalar::gemm_u8s8(x, m, w, acc);
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::PackedWeights;

    #[target_feature(enable = "avx2")]
    fn hsum(v: __m256i) -> i32 {
        let lo = _mm256_castsi256_si128(v);
        let hi = _mm256_extracti128_si256(v, 1);
        let s = _mm_add_epi32(lo, hi);
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        _mm_cvtsi128_si32(s)
    }

    /// 7-bit weights: `vpmaddubsw` (u8·s8 pairs -> i16, no saturation since |w| ≤ 63) then
    /// `vpmaddwd` with ones (-> i32). Four output channels share each activation load.
    #[target_feature(enable = "avx2")]
    pub unsafe fn gemm_maddubs(x: &[u8], m: usize, w: &PackedWeights, acc: &mut [i32]) {
        let (n, kp) = (w.n, w.kp);
        let ones = _mm256_set1_epi16(1);
        for r in 0..m {
            let xr = x[r * kp..].as_ptr();
            let mut c = 0;
            while c + 4 <= n {
                let mut a = [_mm256_setzero_si256(); 4];
                let mut k = 0;
                while k < kp {
                    // SAFETY: k + 32 <= kp and every row holds kp bytes.
                    let xv = unsafe { _mm256_loadu_si256(xr.add(k).cast()) };
                    for (j, aj) in a.iter_mut().enumerate() {
                        let wv = unsafe { _mm256_loadu_si256(w.w8.as_ptr().add((c + j) * kp + k).cast()) };
                        *aj = _mm256_add_epi32(*aj, _mm256_madd_epi16(_mm256_maddubs_epi16(xv, wv), ones));
                    }
                    k += 32;
                }
                for (j, aj) in a.iter().enumerate() {
                    acc[r * n + c + j] = hsum(*aj);
                }
                c += 4;
            }
            while c < n {
                let mut a = _mm256_setzero_si256();
                let mut k = 0;
                while k < kp {
                    let xv = unsafe { _mm256_loadu_si256(xr.add(k).cast()) };
                    let wv = unsafe { _mm256_loadu_si256(w.w8.as_ptr().add(c * kp + k).cast()) };
                    a = _mm256_add_epi32(a, _mm256_madd_epi16(_mm256_maddubs_epi16(xv, wv), ones));
                    k += 32;
                }
                acc[r * n + c] = hsum(a);
                c += 1;
            }
        }
    }

    /// Any s8 weights: widen activations to i16 once per row, `vpmaddwd` against the i16
    /// weight copy (exact).
    #[target_feature(enable = "avx2")]
    pub unsafe fn gemm_madd16(x: &[u8], m: usize, w: &PackedWeights, acc: &mut [i32]) {
        let (n, kp) = (w.n, w.kp);
        let mut xs = vec![0i16; kp];
        for r in 0..m {
            for (d, &s) in xs.iter_mut().zip(&x[r * kp..(r + 1) * kp]) {
                *d = i16::from(s);
            }
            let mut c = 0;
            while c + 4 <= n {
                let mut a = [_mm256_setzero_si256(); 4];
                let mut k = 0;
                while k < kp {
                    // SAFETY: k + 16 <= kp; xs and each weight row hold kp i16 values.
                    let xv = unsafe { _mm256_loadu_si256(xs.as_ptr().add(k).cast()) };
                    for (j, aj) in a.iter_mut().enumerate() {
                        let wv = unsafe { _mm256_loadu_si256(w.w16.as_ptr().add((c + j) * kp + k).cast()) };
                        *aj = _mm256_add_epi32(*aj, _mm256_madd_epi16(xv, wv));
                    }
                    k += 16;
                }
                for (j, aj) in a.iter().enumerate() {
                    acc[r * n + c + j] = hsum(*aj);
                }
                c += 4;
            }
            while c < n {
                let mut a = _mm256_setzero_si256();
                let mut k = 0;
                while k < kp {
                    let xv = unsafe { _mm256_loadu_si256(xs.as_ptr().add(k).cast()) };
                    let wv = unsafe { _mm256_loadu_si256(w.w16.as_ptr().add(c * kp + k).cast()) };
                    a = _mm256_add_epi32(a, _mm256_madd_epi16(xv, wv));
                    k += 16;
                }
                acc[r * n + c] = hsum(a);
                c += 1;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use std::arch::x86_64::*;

    use super::PackedWeights;

    /// `vpdpbusd`: 64 u8·s8 products per instruction into 16 i32 lanes, no saturation.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn gemm(x: &[u8], m: usize, w: &PackedWeights, acc: &mut [i32]) {
        let (n, kp) = (w.n, w.kp);
        for r in 0..m {
            let xr = x[r * kp..].as_ptr();
            let mut c = 0;
            while c + 4 <= n {
                let mut a = [_mm512_setzero_si512(); 4];
                let mut k = 0;
                while k < kp {
                    // SAFETY: k + 64 <= kp and every row holds kp bytes.
                    let xv = unsafe { _mm512_loadu_si512(xr.add(k).cast()) };
                    for (j, aj) in a.iter_mut().enumerate() {
                        let wv = unsafe { _mm512_loadu_si512(w.w8.as_ptr().add((c + j) * kp + k).cast()) };
                        *aj = _mm512_dpbusd_epi32(*aj, xv, wv);
                    }
                    k += 64;
                }
                for (j, aj) in a.iter().enumerate() {
                    acc[r * n + c + j] = _mm512_reduce_add_epi32(*aj);
                }
                c += 4;
            }
            while c < n {
                let mut a = _mm512_setzero_si512();
                let mut k = 0;
                while k < kp {
                    let xv = unsafe { _mm512_loadu_si512(xr.add(k).cast()) };
                    let wv = unsafe { _mm512_loadu_si512(w.w8.as_ptr().add(c * kp + k).cast()) };
                    a = _mm512_dpbusd_epi32(a, xv, wv);
                    k += 64;
                }
                acc[r * n + c] = _mm512_reduce_add_epi32(a);
                c += 1;
            }
        }
    }
}
