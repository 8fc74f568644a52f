//! x86-64 SIMD kernels (AVX2, AVX-512 VNNI) on the k-group interleaved weight layouts of
//! [`PackedWeights`]: each step broadcasts a few activation bytes of a row and multiplies a
//! whole block of output channels (8 i32 lanes on AVX2, 16 on AVX-512), 4 rows × 2 blocks
//! at a time. Each public entry checks the CPU feature again and falls back to the scalar
//! reference, so calling one on an unsupported CPU is safe.

use super::{PackedWeights, Sink, scalar};

/// True when AVX2 is available.
pub(crate) fn has_avx2() -> bool {
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
pub(crate) fn has_vnni() -> bool {
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

/// AVX2 GEMM: `vpmaddubsw` + `vpmaddwd` when |w| ≤ 63 (no i16 saturation possible), exact
/// `vpmaddwd` on i16-widened values otherwise.
pub(crate) fn gemm_avx2(x: &[u8], m: usize, w: &PackedWeights, mut sink: Sink<'_>) {
    check_sizes(x, m, w, &sink);
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        let small = w.max_abs <= 63 && super::has_layout(&w.k4_nb8, w.n, w.kp, 8, 4);
        let wide = super::has_layout(&w.k2_nb8, w.n, w.kp, 8, 2);
        // SAFETY: AVX2 is present; `check_sizes` checked `x` and the sink against the shape;
        // the layout used was checked to cover every block and group.
        unsafe {
            if w.n <= NARROW {
                narrow_into(x, m, w, sink, |xr, wr| avx2::dot(xr, wr));
                return;
            } else if small {
                avx2::gemm::<true>(x, m, w, &mut sink);
                return;
            } else if wide {
                avx2::gemm::<false>(x, m, w, &mut sink);
                return;
            }
        }
    }
    scalar_into(x, m, w, sink);
}

/// The size checks every SIMD entry point makes before running unchecked loads and stores:
/// `m` rows of `kp` input bytes, and a sink of `m · n` accumulators or `m` u8 rows.
fn check_sizes(x: &[u8], m: usize, w: &PackedWeights, sink: &Sink<'_>) {
    assert!(
        w.kp.is_multiple_of(super::K_ALIGN) && w.kp >= w.k && w.w8.len() == w.n * w.kp,
        "inconsistent packed weights"
    );
    assert!(x.len() >= super::len(m, w.kp), "input buffer too small");
    match sink {
        Sink::Acc(acc) => assert!(acc.len() >= super::len(m, w.n), "accumulator buffer too small"),
        Sink::U8 { ep, out, stride } => super::check_epilogue(ep, w.n, m, out.len(), *stride),
    }
}

/// Layers with at most this many output channels (the logit layer) take one dot product per
/// row and channel instead of channel blocks, which would compute 8 or 16 lanes to keep one.
pub(crate) const NARROW: usize = 2;

/// One SIMD dot product (`dot(x_row, w_row)` over `kp` bytes) per row and channel, into the
/// sink through the scalar epilogue.
fn narrow_into(x: &[u8], m: usize, w: &PackedWeights, mut sink: Sink<'_>, dot: impl Fn(&[u8], &[i8]) -> i32) {
    let (n, kp) = (w.n, w.kp);
    for r in 0..m {
        let xr = &x[r * kp..(r + 1) * kp];
        for c in 0..n {
            let v = dot(xr, &w.w8[c * kp..(c + 1) * kp]);
            match &mut sink {
                Sink::Acc(acc) => acc[r * n + c] = v,
                Sink::U8 { ep, out, stride } => out[r * *stride + c] = super::requantize_one(v, c, ep),
            }
        }
    }
}

/// The reference GEMM into any sink (CPUs without the SIMD feature).
fn scalar_into(x: &[u8], m: usize, w: &PackedWeights, sink: Sink<'_>) {
    match sink {
        Sink::Acc(acc) => scalar::gemm_u8s8(x, m, w, acc),
        Sink::U8 { ep, out, stride } => {
            let mut acc = vec![0i32; m * w.n];
            scalar::gemm_u8s8(x, m, w, &mut acc);
            super::requantize_scalar(&acc, m, ep, out, stride);
        }
    }
}

/// True when AVX-512 F, BW and VL are available.
pub(crate) fn has_avx512bw() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// [`vnni::quantize_rows`] when AVX-512 F, BW and VL are present (returns true), else
/// nothing (false: the caller's portable loop).
///
/// # Panics
/// When `x` holds fewer than `rows · width` values, `out` fewer than
/// `(rows - 1) · kp + width` bytes, or `kp < width`.
pub(crate) fn quantize_rows_avx512(
    x: &[f32],
    rows: usize,
    width: usize,
    kp: usize,
    qp: (f32, i32),
    out: &mut [u8],
) -> bool {
    assert!(
        x.len() >= super::len(rows, width) && out.len() >= super::span(rows, kp, width) && kp >= width,
        "quantize_rows: buffers too small"
    );
    #[cfg(target_arch = "x86_64")]
    if has_avx512bw() {
        // SAFETY: AVX-512 F, BW and VL are present; the sizes were checked above.
        unsafe { vnni::quantize_rows(x, rows, width, kp, qp.0, qp.1, out) };
        return true;
    }
    false
}

/// AVX-512 VNNI GEMM (`vpdpbusd`, no saturation).
pub(crate) fn gemm_vnni(x: &[u8], m: usize, w: &PackedWeights, mut sink: Sink<'_>) {
    check_sizes(x, m, w, &sink);
    #[cfg(target_arch = "x86_64")]
    if has_vnni() {
        if w.n <= NARROW {
            if let Sink::Acc(acc) = &mut sink {
                // SAFETY: AVX-512 F/BW/VNNI are present; sizes checked by `check_sizes`.
                unsafe { vnni::narrow(x, m, w, acc) };
            } else {
                // SAFETY: AVX-512 F/BW/VNNI are present; `dot` gets two rows of `kp` bytes.
                narrow_into(x, m, w, sink, |xr, wr| unsafe { vnni::dot(xr, wr) });
            }
            return;
        } else if super::has_layout(&w.k4_nb16, w.n, w.kp, 16, 4) {
            // SAFETY: AVX-512 F/BW/VNNI are present; sizes checked by `check_sizes`, the layout
            // by `has_layout`.
            unsafe { vnni::gemm(x, m, w, &mut sink) };
            return;
        }
    }
    scalar_into(x, m, w, sink);
}

/// Twelve register chains `$ins a_i, x, x` run `$steps` times (at least once) in `asm!`, so no
/// compiler merges identical chains or hoists them out of the loop: the peak loops.
#[cfg(target_arch = "x86_64")]
macro_rules! twelve_chains {
    ($ins:literal, $class:ident, $a:ident, $x:expr, $steps:expr) => {
        std::arch::asm!(
            "2:",
            concat!($ins, " {a0}, {x}, {x}"), concat!($ins, " {a1}, {x}, {x}"), concat!($ins, " {a2}, {x}, {x}"),
            concat!($ins, " {a3}, {x}, {x}"), concat!($ins, " {a4}, {x}, {x}"), concat!($ins, " {a5}, {x}, {x}"),
            concat!($ins, " {a6}, {x}, {x}"), concat!($ins, " {a7}, {x}, {x}"), concat!($ins, " {a8}, {x}, {x}"),
            concat!($ins, " {a9}, {x}, {x}"), concat!($ins, " {a10}, {x}, {x}"), concat!($ins, " {a11}, {x}, {x}"),
            "dec {n}",
            "jnz 2b",
            n = inout(reg) $steps.max(1) => _,
            x = in($class) $x,
            a0 = inout($class) $a[0], a1 = inout($class) $a[1], a2 = inout($class) $a[2],
            a3 = inout($class) $a[3], a4 = inout($class) $a[4], a5 = inout($class) $a[5],
            a6 = inout($class) $a[6], a7 = inout($class) $a[7], a8 = inout($class) $a[8],
            a9 = inout($class) $a[9], a10 = inout($class) $a[10], a11 = inout($class) $a[11],
            options(nomem, nostack),
        )
    };
}

/// Runs `steps` steps of the INT8 kernel's inner instruction on twelve register chains
/// (six on AVX2, which needs a temporary per chain) and returns the sum of lane 0 of every
/// chain: `66 + 48 · steps` with VNNI, `15 + 24 · steps` on AVX2 (each chain starts at its
/// index and gains 4 a step), which shows the loop ran. 0 for other kernels or CPUs.
pub(crate) fn peak_int8(kernel: super::Kernel, steps: usize) -> f32 {
    #[cfg(target_arch = "x86_64")]
    match kernel {
        // SAFETY: the features each loop needs are present.
        super::Kernel::Vnni if has_vnni() => return unsafe { vnni::peak(steps) },
        super::Kernel::Avx2 if has_avx2() => return unsafe { avx2::peak(steps) },
        _ => {}
    }
    let _ = (kernel, steps);
    0.0
}

/// Runs `steps` steps of twelve fused multiply-add chains of `lanes` (16: AVX-512, 8: FMA on
/// ymm) floats and returns the sum of lane 0 of every chain, `66 + 12 · steps` while that is
/// exact (each chain starts at its index and gains 1 a step). 0 without the features.
pub(crate) fn peak_f32(lanes: usize, steps: usize) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if lanes == 16 && std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512 F is present.
            return unsafe { vnni::peak_fma(steps) };
        }
        if lanes == 8 && has_avx2() && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: AVX2 and FMA are present.
            return unsafe { avx2::peak_fma(steps) };
        }
    }
    let _ = (lanes, steps);
    0.0
}

/// AVX2 epilogue over stored accumulators: 8 channels at a time through `requant8`, so results
/// equal the scalar reference.
#[cfg(test)]
pub(crate) fn requantize_avx2(acc: &[i32], m: usize, ep: &super::Epilogue, out: &mut [u8], out_stride: usize) {
    assert!(acc.len() >= super::len(m, ep.offset.len()), "accumulators too small");
    super::check_epilogue(ep, ep.offset.len(), m, out.len(), out_stride);
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: AVX2 is present; every access below is bounds-checked slicing or a load/store
        // of 8 lanes inside `[c, c + 8) ⊆ [0, n)`.
        unsafe { avx2::requantize(acc, m, ep, out, out_stride) };
        return;
    }
    super::requantize_scalar(acc, m, ep, out, out_stride);
}

/// The epilogue on 8 channels whose accumulators `v` already hold the offset:
/// `max(cvt(min(v · mul, hi)) + z_out, lo)` packed to 8 bytes in the low half of the result,
/// the AVX-512 epilogue's operations ([`vnni`]'s `store_tile`, which says why they equal the
/// scalar reference: `hi = 255 − z_out` caps the code, `cvtps2dq` rounds half to even, and a
/// product below −2^31 becomes `i32::MIN`, lifted to `lo`). Values are then in `[lo, 255]`,
/// so the saturating packs are exact.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn requant8(
    v: std::arch::x86_64::__m256i,
    mul: std::arch::x86_64::__m256,
    ep: &super::Epilogue,
) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::*;
    let hi = _mm256_set1_ps(ep.highest_before_zero_point());
    let lo = _mm256_set1_epi32(ep.lowest_code());
    let f = _mm256_min_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(v), mul), hi);
    let q = _mm256_max_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(f), _mm256_set1_epi32(ep.output_zero_point)), lo);
    let w16 = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256::<1>(q));
    _mm_packus_epi16(w16, w16)
}

/// The AVX2 tile store: 8 accumulators of output channels `c0..c0 + 8` of one row go to the
/// sink, either as i32 or requantized to u8 right here (the epilogue fused into the store, so
/// accumulators never make a round trip through memory; for a u8 sink they started at the
/// epilogue's offset, see `avx2::tile`). Channels past `n` (block padding) are dropped.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn store8(sink: &mut Sink<'_>, n: usize, row: usize, c0: usize, v: std::arch::x86_64::__m256i) {
    use std::arch::x86_64::*;
    let valid = 8.min(n - c0);
    match sink {
        Sink::Acc(acc) => {
            let dst = &mut acc[row * n + c0..row * n + c0 + valid];
            if valid == 8 {
                // SAFETY: `dst` holds 8 i32.
                unsafe { _mm256_storeu_si256(dst.as_mut_ptr().cast(), v) };
            } else {
                let mut lanes = [0i32; 8];
                // SAFETY: `lanes` holds 8 i32.
                unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), v) };
                dst.copy_from_slice(&lanes[..valid]);
            }
        }
        Sink::U8 { ep, out, stride } => {
            let row_out = &mut out[row * *stride + c0..row * *stride + c0 + valid];
            // SAFETY: a full block loads 8 lanes from `multiplier[c0..c0 + 8]` and stores 8
            // bytes into `row_out` (length 8); a partial one goes through local arrays.
            unsafe {
                let mul = if valid == 8 {
                    _mm256_loadu_ps(ep.multiplier[c0..c0 + 8].as_ptr())
                } else {
                    let mut m = [0f32; 8];
                    m[..valid].copy_from_slice(&ep.multiplier[c0..c0 + valid]);
                    _mm256_loadu_ps(m.as_ptr())
                };
                let b8 = requant8(v, mul, ep);
                if valid == 8 {
                    _mm_storel_epi64(row_out.as_mut_ptr().cast(), b8);
                } else {
                    let mut bytes = [0u8; 16];
                    _mm_storeu_si128(bytes.as_mut_ptr().cast(), b8);
                    row_out.copy_from_slice(&bytes[..valid]);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{PackedWeights, Sink, store8};

    /// The 4 (SMALL: 7-bit) or 2 (widened) activation values of group `g` of a row,
    /// broadcast to every i32 lane.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn bcast<const SMALL: bool>(xr: *const u8, g: usize) -> __m256i {
        if SMALL {
            // SAFETY: 4 bytes at 4g lie inside the padded row.
            _mm256_set1_epi32(unsafe { (xr.add(4 * g) as *const i32).read_unaligned() })
        } else {
            let (a, b) = unsafe { (*xr.add(2 * g), *xr.add(2 * g + 1)) };
            _mm256_set1_epi32(i32::from(a) | (i32::from(b) << 16))
        }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn wload<const SMALL: bool>(w: &PackedWeights, block: usize, groups: usize, g: usize) -> __m256i {
        // SAFETY: block < blocks and g < groups, so the 32 bytes lie inside the layout.
        unsafe {
            if SMALL {
                _mm256_loadu_si256(w.k4_nb8.as_ptr().add((block * groups + g) * 32).cast())
            } else {
                _mm256_loadu_si256(w.k2_nb8.as_ptr().add((block * groups + g) * 16).cast())
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn mac<const SMALL: bool>(acc: __m256i, xb: __m256i, wv: __m256i, ones: __m256i) -> __m256i {
        if SMALL {
            _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(xb, wv), ones))
        } else {
            _mm256_add_epi32(acc, _mm256_madd_epi16(xb, wv))
        }
    }

    /// `Σ x[j] · w[j]` over two rows of equal length (a multiple of 4): 16 values per step
    /// widened to i16 and multiplied with `vpmaddwd`, exact for any s8 weight.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot(x: &[u8], w: &[i8]) -> i32 {
        let len = x.len().min(w.len());
        let mut acc = _mm256_setzero_si256();
        let mut j = 0;
        while j + 16 <= len {
            // SAFETY: 16 bytes at `j` lie inside both rows.
            let (xv, wv) = unsafe {
                (
                    _mm256_cvtepu8_epi16(_mm_loadu_si128(x.as_ptr().add(j).cast())),
                    _mm256_cvtepi8_epi16(_mm_loadu_si128(w.as_ptr().add(j).cast())),
                )
            };
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(xv, wv));
            j += 16;
        }
        let s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256::<1>(acc));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        let tail: i32 = x[j..len].iter().zip(&w[j..len]).map(|(&a, &b)| i32::from(a) * i32::from(b)).sum();
        _mm_cvtsi128_si32(s) + tail
    }

    /// Rows `r0..r0+R` × channel blocks `b0..b0+C`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn tile<const SMALL: bool, const R: usize, const C: usize>(
        x: &[u8],
        r0: usize,
        b0: usize,
        w: &PackedWeights,
        sink: &mut Sink<'_>,
    ) {
        let groups = if SMALL { w.kp / 4 } else { w.kp / 2 };
        let ones = _mm256_set1_epi16(1);
        // For a u8 sink the accumulators start at the epilogue's offset (added once here
        // instead of at every store; i32 addition is associative: the same bits).
        let mut init = [_mm256_setzero_si256(); C];
        if let Sink::U8 { ep, .. } = sink {
            for (j, v) in init.iter_mut().enumerate() {
                let c0 = (b0 + j) * 8;
                let valid = 8.min(w.n - c0);
                let mut o = [0i32; 8];
                o[..valid].copy_from_slice(&ep.offset[c0..c0 + valid]);
                // SAFETY: `o` holds 8 i32.
                *v = unsafe { _mm256_loadu_si256(o.as_ptr().cast()) };
            }
        }
        let mut a = [init; R];
        let rows: [*const u8; R] = std::array::from_fn(|i| x[(r0 + i) * w.kp..].as_ptr());
        for g in 0..groups {
            let wv: [__m256i; C] = std::array::from_fn(|j| unsafe { wload::<SMALL>(w, b0 + j, groups, g) });
            for (ai, row) in a.iter_mut().zip(&rows) {
                let xb = unsafe { bcast::<SMALL>(*row, g) };
                for (aij, wj) in ai.iter_mut().zip(&wv) {
                    *aij = mac::<SMALL>(*aij, xb, *wj, ones);
                }
            }
        }
        for (i, ai) in a.iter().enumerate() {
            for (j, aij) in ai.iter().enumerate() {
                // SAFETY: AVX2 is enabled here; block b0 + j has channels below n.
                unsafe { store8(sink, w.n, r0 + i, (b0 + j) * 8, *aij) };
            }
        }
    }

    /// See [`super::peak_int8`]: six chains of `vpmaddubsw`, `vpmaddwd`, `vpaddd` on
    /// all-ones bytes (4 per i32 lane a step).
    #[target_feature(enable = "avx2")]
    pub unsafe fn peak(steps: usize) -> f32 {
        let (ones8, ones16) = (_mm256_set1_epi8(1), _mm256_set1_epi16(1));
        let mut a = [_mm256_setzero_si256(); 6];
        for (i, v) in a.iter_mut().enumerate() {
            *v = _mm256_set1_epi32(i as i32);
        }
        // SAFETY: AVX2 is present; registers only, `n` counts down to 0.
        unsafe {
            std::arch::asm!(
                "2:",
                "vpmaddubsw {t0}, {x}, {x}", "vpmaddubsw {t1}, {x}, {x}", "vpmaddubsw {t2}, {x}, {x}",
                "vpmaddubsw {t3}, {x}, {x}", "vpmaddubsw {t4}, {x}, {x}", "vpmaddubsw {t5}, {x}, {x}",
                "vpmaddwd {t0}, {t0}, {o}", "vpmaddwd {t1}, {t1}, {o}", "vpmaddwd {t2}, {t2}, {o}",
                "vpmaddwd {t3}, {t3}, {o}", "vpmaddwd {t4}, {t4}, {o}", "vpmaddwd {t5}, {t5}, {o}",
                "vpaddd {a0}, {a0}, {t0}", "vpaddd {a1}, {a1}, {t1}", "vpaddd {a2}, {a2}, {t2}",
                "vpaddd {a3}, {a3}, {t3}", "vpaddd {a4}, {a4}, {t4}", "vpaddd {a5}, {a5}, {t5}",
                "dec {n}",
                "jnz 2b",
                n = inout(reg) steps.max(1) => _,
                x = in(ymm_reg) ones8, o = in(ymm_reg) ones16,
                t0 = out(ymm_reg) _, t1 = out(ymm_reg) _, t2 = out(ymm_reg) _,
                t3 = out(ymm_reg) _, t4 = out(ymm_reg) _, t5 = out(ymm_reg) _,
                a0 = inout(ymm_reg) a[0], a1 = inout(ymm_reg) a[1], a2 = inout(ymm_reg) a[2],
                a3 = inout(ymm_reg) a[3], a4 = inout(ymm_reg) a[4], a5 = inout(ymm_reg) a[5],
                options(nomem, nostack),
            );
        }
        a.iter().map(|v| _mm256_cvtsi256_si32(*v) as f32).sum()
    }

    /// See [`super::peak_f32`]: twelve `vfmadd231ps` chains on ymm.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn peak_fma(steps: usize) -> f32 {
        let one = _mm256_set1_ps(1.0);
        let mut a = [_mm256_setzero_ps(); 12];
        for (i, v) in a.iter_mut().enumerate() {
            *v = _mm256_set1_ps(i as f32);
        }
        // SAFETY: AVX2 and FMA are present; registers only, `n` counts down to 0.
        unsafe {
            twelve_chains!("vfmadd231ps", ymm_reg, a, one, steps);
        }
        a.iter().map(|v| _mm256_cvtss_f32(*v)).sum()
    }

    #[target_feature(enable = "avx2")]
    #[cfg(test)]
    pub unsafe fn requantize(acc: &[i32], m: usize, ep: &super::super::Epilogue, out: &mut [u8], stride: usize) {
        let n = ep.offset.len();
        for r in 0..m {
            let a = &acc[r * n..(r + 1) * n];
            let o = &mut out[r * stride..r * stride + n];
            let mut c = 0;
            while c + 8 <= n {
                // SAFETY: c + 8 <= n for every slice read or written here.
                unsafe {
                    let v = _mm256_loadu_si256(a.as_ptr().add(c).cast());
                    let off = _mm256_loadu_si256(ep.offset.as_ptr().add(c).cast());
                    let mul = _mm256_loadu_ps(ep.multiplier.as_ptr().add(c));
                    let b8 = super::requant8(_mm256_add_epi32(v, off), mul, ep);
                    _mm_storel_epi64(o.as_mut_ptr().add(c).cast(), b8);
                }
                c += 8;
            }
            for cc in c..n {
                o[cc] = super::super::requantize_one(a[cc], cc, ep);
            }
        }
    }

    #[target_feature(enable = "avx2")]
    pub unsafe fn gemm<const SMALL: bool>(x: &[u8], m: usize, w: &PackedWeights, acc: &mut Sink<'_>) {
        let blocks = w.n.div_ceil(8);
        let mut r = 0;
        while r + 4 <= m {
            let mut b = 0;
            while b + 2 <= blocks {
                unsafe { tile::<SMALL, 4, 2>(x, r, b, w, acc) };
                b += 2;
            }
            if b < blocks {
                unsafe { tile::<SMALL, 4, 1>(x, r, b, w, acc) };
            }
            r += 4;
        }
        while r < m {
            let mut b = 0;
            while b + 4 <= blocks {
                unsafe { tile::<SMALL, 1, 4>(x, r, b, w, acc) };
                b += 4;
            }
            while b < blocks {
                unsafe { tile::<SMALL, 1, 1>(x, r, b, w, acc) };
                b += 1;
            }
            r += 1;
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod vnni {
    use std::arch::x86_64::*;

    use super::{PackedWeights, Sink};

    /// The lanes of `y = x · (1/s)` whose code might differ from that of `x / s`, the
    /// correctly rounded quotient [`QParams::quantize`](crate::quant::QParams::quantize)
    /// uses, given `r`, `y` rounded to the nearest integer (ties to even). With `1/s` and the
    /// product each rounded to nearest, `|y − x/s| ≤ |x/s|·2^-23` and the quotient is within
    /// `|x/s|·2^-24` of `x/s`, so `y` and the quotient are less than `|y|·2^-22` apart. The
    /// code is a step function of its input (clamp, round half to even, clamp) that only
    /// changes at half-integers: unless one lies that close to `y`, both give the same code.
    /// Flagged (four times the bound, so also a tie itself): `0.5 − |y − r| ≤ |y|·2^-20`, and
    /// every lane where that comparison is unordered (NaN or infinite inputs). Every lane with
    /// `|y| ≥ 2^19` is flagged too (the bound then exceeds 0.5), so unflagged lanes have small
    /// integer `r`, exact in the arithmetic after it. `y − r` and `0.5 − d` are exact.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn near_a_tie(y: __m512, r: __m512) -> __mmask16 {
        let abs =
            |v: __m512| _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7FFF_FFFF)));
        let gap = _mm512_sub_ps(_mm512_set1_ps(0.5), abs(_mm512_sub_ps(y, r)));
        let tol = _mm512_mul_ps(abs(y), _mm512_set1_ps(1.0 / 1_048_576.0));
        _mm512_cmp_ps_mask::<_CMP_NGT_UQ>(gap, tol)
    }

    /// The quantization of [`quantize_rows`], as constants for one scale and zero point.
    struct Quantizer {
        s: __m512,
        inv: __m512,
        fast: bool,
        z: __m512,
    }

    impl Quantizer {
        #[inline]
        #[target_feature(enable = "avx512f")]
        fn new(scale: f32, zero: i32) -> Self {
            // Multiplying by 1/scale is only trusted where it provably gives the quotient's
            // code (see `near_a_tie`); a scale whose reciprocal is not a normal number always
            // divides.
            let inv = 1.0 / scale;
            let fast = scale.is_normal() && inv.is_normal();
            Self { s: _mm512_set1_ps(scale), inv: _mm512_set1_ps(inv), fast, z: _mm512_set1_ps(zero as f32) }
        }

        /// The codes of the 16 values of `xv` (lanes outside `lanes` are not looked at).
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
        fn codes(&self, xv: __m512, lanes: __mmask16) -> __m128i {
            const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
            let (zero, top) = (_mm512_setzero_ps(), _mm512_set1_ps(255.0));
            let y = _mm512_mul_ps(xv, self.inv);
            let r = _mm512_roundscale_ps::<NEAREST>(y);
            let q = if self.fast && near_a_tie(y, r) & lanes == 0 {
                _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(r, self.z), zero), top)
            } else {
                // The reference's steps after the division: NaN to 0, clamp to ±2^22, round
                // half to even (adding and subtracting 1.5·2^23), zero point, code range.
                const MAGIC: f32 = 12_582_912.0;
                let v = _mm512_div_ps(xv, self.s);
                let v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_ORD_Q>(v, v), v);
                let v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-4_194_304.0)), _mm512_set1_ps(4_194_304.0));
                let magic = _mm512_set1_ps(MAGIC);
                let v = _mm512_add_ps(_mm512_sub_ps(_mm512_add_ps(v, magic), magic), self.z);
                _mm512_min_ps(_mm512_max_ps(v, zero), top)
            };
            _mm512_cvtusepi32_epi8(_mm512_cvttps_epi32(q))
        }

        /// Codes of `len` contiguous values from `src` to `len` contiguous bytes at `dst`: 16
        /// at a time, the last step masked.
        ///
        /// # Safety
        /// AVX-512 F, BW and VL are present; `src` holds `len` values and `dst` `len` bytes.
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
        unsafe fn run(&self, src: *const f32, len: usize, dst: *mut u8) {
            let mut p = 0;
            while p + 16 <= len {
                // SAFETY: values and bytes p..p + 16 lie inside the runs.
                unsafe { _mm_storeu_si128(dst.add(p).cast(), self.codes(_mm512_loadu_ps(src.add(p)), 0xFFFF)) };
                p += 16;
            }
            if p < len {
                let mask: __mmask16 = (1u16 << (len - p)) - 1;
                // SAFETY: the masks read and write only the `len - p` values and bytes left.
                unsafe {
                    let q = self.codes(_mm512_maskz_loadu_ps(mask, src.add(p)), mask);
                    _mm_mask_storeu_epi8(dst.add(p).cast(), mask, q);
                }
            }
        }
    }

    /// Quantizes rows of `width` floats (stride `width`) into u8 rows of stride `kp`, giving
    /// the codes [`QParams::quantize`](crate::quant::QParams::quantize) gives one value at a
    /// time: divide by the scale, NaN to 0, clamp to ±2^22, round half to even, add the zero
    /// point, clamp to [0, 255]. The division (most of the cost) is a multiplication by the
    /// reciprocal and one rounding instruction, except for the rare 16 values holding one that
    /// may lie next to a rounding tie or is not finite ([`near_a_tie`]), which go through the
    /// division and the reference's steps.
    ///
    /// Rows are a few dozen values, so per row the last 16-value step would be mostly empty,
    /// and masked stores are slow: short rows (a padded row of at most 64 bytes) are quantized
    /// as one contiguous run a block of rows at a time into a staging buffer, then each row is
    /// moved into place with one 64-byte load that zeroes the lanes past `width` and one
    /// 64-byte store (the zeros land on the row's padding and on later rows, which are written
    /// after it; rows within 64 bytes of the end take masked stores). Longer rows are one run
    /// each. Only bytes of the first `(rows - 1) · kp + width` of `out` are written, codes
    /// or, in padding columns, zeros.
    ///
    /// # Safety
    /// AVX-512 F, BW and VL are present; `x` holds `rows · width` values and `out`
    /// `(rows - 1) · kp + width` bytes, `kp ≥ width`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub unsafe fn quantize_rows(
        x: &[f32],
        rows: usize,
        width: usize,
        kp: usize,
        scale: f32,
        zero: i32,
        out: &mut [u8],
    ) {
        const STAGE: usize = 4096;
        let q = Quantizer::new(scale, zero);
        let (src, dst) = (x.as_ptr(), out.as_mut_ptr());
        if width == 0 || rows == 0 {
            return;
        }
        if kp == width {
            // SAFETY: one run of rows · width values into as many bytes.
            unsafe { q.run(src, rows * width, dst) };
            return;
        }
        if kp > 64 {
            for r in 0..rows {
                // SAFETY: row r < rows: values r·width.. and bytes r·kp.. hold `width` each.
                unsafe { q.run(src.add(r * width), width, dst.add(r * kp)) };
            }
            return;
        }
        let end = super::super::span(rows, kp, width);
        let per_block = STAGE / width;
        // 64 bytes of slack: each row's 64-byte load may reach past the block's codes.
        let mut stage = [0u8; STAGE + 64];
        let row_mask: __mmask64 = if width == 64 { u64::MAX } else { (1u64 << width) - 1 };
        let mut r0 = 0;
        while r0 < rows {
            let n = per_block.min(rows - r0);
            // SAFETY: rows r0..r0 + n of `x` into n · width ≤ STAGE staged bytes.
            unsafe { q.run(src.add(r0 * width), n * width, stage.as_mut_ptr()) };
            for i in 0..n {
                let at = (r0 + i) * kp;
                // SAFETY: the load reads stage[i · width..][..64] inside STAGE + 64 bytes;
                // a whole store writes out[at..at + 64] only when that lies before `end`, else
                // the mask writes the row's `width` bytes, which lie inside `out`.
                unsafe {
                    let v = _mm512_maskz_loadu_epi8(row_mask, stage.as_ptr().add(i * width).cast());
                    if at + 64 <= end {
                        _mm512_storeu_si512(dst.add(at).cast(), v);
                    } else {
                        _mm512_mask_storeu_epi8(dst.add(at).cast(), row_mask, v);
                    }
                }
            }
            r0 += n;
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn tile<const R: usize, const C: usize>(
        x: &[u8],
        r0: usize,
        b0: usize,
        w: &PackedWeights,
        sink: &mut Sink<'_>,
    ) {
        let groups = w.kp / 4;
        // The accumulators start at zero for raw accumulators, at the epilogue's per-channel
        // offset when the tile is requantized: the offset is then added by the first
        // `vpdpbusd` instead of once more at the store (i32 addition is associative: the same
        // bits). A plain loop, not `array::from_fn`, whose closure would not inherit this
        // function's target features and would be called per tile.
        let mut init = [_mm512_setzero_si512(); C];
        if let Sink::U8 { ep, .. } = sink {
            for (j, v) in init.iter_mut().enumerate() {
                let c0 = (b0 + j) * 16;
                let valid = 16.min(w.n - c0);
                let mask = first_lanes(valid);
                let off = &ep.offset[c0..c0 + valid];
                // SAFETY: the mask reads only the `valid` lanes `off` holds.
                *v = unsafe { _mm512_maskz_loadu_epi32(mask, off.as_ptr()) };
            }
        }
        let mut a = [init; R];
        let rows: [*const u8; R] = std::array::from_fn(|i| x[(r0 + i) * w.kp..].as_ptr());
        for g in 0..groups {
            // SAFETY: block and group are in range; 64 bytes per (block, group).
            let wv: [__m512i; C] = std::array::from_fn(|j| unsafe {
                _mm512_loadu_si512(w.k4_nb16.as_ptr().add(((b0 + j) * groups + g) * 64).cast())
            });
            for (ai, row) in a.iter_mut().zip(&rows) {
                // SAFETY: 4 bytes at 4g lie inside the padded row.
                let xb = _mm512_set1_epi32(unsafe { (row.add(4 * g) as *const i32).read_unaligned() });
                for (aij, wj) in ai.iter_mut().zip(&wv) {
                    *aij = _mm512_dpbusd_epi32(*aij, xb, *wj);
                }
            }
        }
        // SAFETY: AVX-512 F/BW are enabled here; blocks b0..b0 + C have channels below n.
        unsafe { store_tile(sink, w.n, r0, b0, &a) };
    }

    /// The AVX-512 version of [`store8`](super::store8) for a whole tile: 16 channels per
    /// block, masked stores for the last block, `vpmovusdb` to pack. The epilogue's
    /// constants are loaded once per block, not once per row. Always inlined into [`tile`]
    /// (whose AVX-512 features it then runs under): as a call, its accumulators would make a
    /// round trip through the stack.
    ///
    /// Requantization in 6 operations per 16 outputs, the offset already in the accumulator
    /// (see [`tile`]): `q = max(cvt(min(acc · mul, hi)) + z, lo)`, stored with unsigned
    /// saturation. This equals the reference `clamp(round_even(clamp(acc · mul, ±2^22)) + z,
    /// lo, 255)` for every finite product: the float clamp at `hi = 255 − z` (an integer)
    /// caps the code at 255 as the reference's upper clamp does (rounding is monotonic);
    /// `cvtps2dq` rounds half to even, and a product below −2^31 converts to `i32::MIN`,
    /// which `max(·, lo)` lifts to `lo` as the reference's clamp does (z ≥ 0, so adding it
    /// cannot overflow); `vpmovusdb` then only sees values in `[lo, 255]`. Multipliers are
    /// finite (capped where the runtime makes its epilogues), so the product is never NaN.
    ///
    /// # Safety
    /// AVX-512 F and BW are present; for a u8 sink, rows `r0..r0 + R` and the blocks' channels
    /// lie inside the output checked by `check_sizes` (`stride ≥ n`, `span(m, stride, n)`).
    #[inline(always)]
    unsafe fn store_tile<const R: usize, const C: usize>(
        sink: &mut Sink<'_>,
        n: usize,
        r0: usize,
        b0: usize,
        a: &[[__m512i; C]; R],
    ) {
        // SAFETY: the caller guarantees AVX-512 F and BW and the extents; every access is
        // masked to its `valid` lanes.
        unsafe {
            match sink {
                Sink::Acc(acc) => {
                    for j in 0..C {
                        let c0 = (b0 + j) * 16;
                        let valid = 16.min(n - c0);
                        let mask = first_lanes(valid);
                        for (i, ai) in a.iter().enumerate() {
                            let row = r0 + i;
                            let dst = &mut acc[row * n + c0..row * n + c0 + valid];
                            // The mask writes only the `valid` lanes that `dst` holds.
                            _mm512_mask_storeu_epi32(dst.as_mut_ptr(), mask, ai[j]);
                        }
                    }
                }
                Sink::U8 { ep, out, stride } => {
                    let hi = _mm512_set1_ps(ep.highest_before_zero_point());
                    let z = _mm512_set1_epi32(ep.output_zero_point);
                    let lo = _mm512_set1_epi32(ep.lowest_code());
                    let (stride, base) = (*stride, out.as_mut_ptr());
                    for j in 0..C {
                        let c0 = (b0 + j) * 16;
                        let valid = 16.min(n - c0);
                        let mask = first_lanes(valid);
                        let mul = &ep.multiplier[c0..c0 + valid];
                        let mul = _mm512_maskz_loadu_ps(mask, mul.as_ptr());
                        for (i, ai) in a.iter().enumerate() {
                            let f = _mm512_min_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(ai[j]), mul), hi);
                            // `cvtps2dq` under the default rounding mode: half to even.
                            let q = _mm512_max_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(f), z), lo);
                            // Row r0 + i < m and channels c0..c0 + valid ≤ n: inside the checked
                            // output; the mask writes only those bytes.
                            let dst = base.add((r0 + i) * stride + c0);
                            _mm512_mask_cvtusepi32_storeu_epi8(dst.cast(), mask, q);
                        }
                    }
                }
            }
        }
    }

    /// The accumulators of a layer with few outputs (the logit), 16 rows at a time: each row's
    /// 16 partial sums from [`dot_lanes`], then one transpose-and-add tree (unpack 32, unpack
    /// 64, two 128-bit shuffles) turns the 16 vectors into one vector of 16 row sums, where a
    /// horizontal sum per row would cost three times the instructions.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn narrow(x: &[u8], m: usize, w: &PackedWeights, acc: &mut [i32]) {
        let (n, kp) = (w.n, w.kp);
        for c in 0..n {
            let wr = &w.w8[c * kp..(c + 1) * kp];
            for r0 in (0..m).step_by(16) {
                let rows = 16.min(m - r0);
                let v: [__m512i; 16] = std::array::from_fn(|i| {
                    if i < rows {
                        // SAFETY: AVX-512 F/BW/VNNI are enabled here; both rows are `kp` bytes.
                        unsafe { dot_lanes(&x[(r0 + i) * kp..(r0 + i + 1) * kp], wr) }
                    } else {
                        _mm512_setzero_si512()
                    }
                });
                let mut sums = [0i32; 16];
                // SAFETY: `sums` holds 16 i32.
                unsafe { _mm512_storeu_si512(sums.as_mut_ptr().cast(), sum_rows(&v)) };
                for (i, &s) in sums[..rows].iter().enumerate() {
                    acc[(r0 + i) * n + c] = s;
                }
            }
        }
    }

    /// Lane `i` of the result is the sum of the 16 lanes of `v[i]`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn sum_rows(v: &[__m512i; 16]) -> __m512i {
        // Pairs: per 128-bit lane, [a0+a2, b0+b2, a1+a3, b1+b3].
        let t: [__m512i; 8] = std::array::from_fn(|i| {
            let (a, b) = (v[2 * i], v[2 * i + 1]);
            _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b))
        });
        // Quads: per 128-bit lane L, the lane-L sums of 4 consecutive rows.
        let u: [__m512i; 4] = std::array::from_fn(|i| {
            let (a, b) = (t[2 * i], t[2 * i + 1]);
            _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b))
        });
        // Across 128-bit lanes: 0x88 takes lanes 0 and 2 of each input, 0xDD lanes 1 and 3.
        let fold = |a: __m512i, b: __m512i| {
            _mm512_add_epi32(_mm512_shuffle_i32x4::<0x88>(a, b), _mm512_shuffle_i32x4::<0xDD>(a, b))
        };
        fold(fold(u[0], u[1]), fold(u[2], u[3]))
    }

    /// 16 partial sums of `Σ x[j] · w[j]` over two rows of equal length (their lane sum is the
    /// dot product): 64 products per `vpdpbusd`, the last partial step through masked loads.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn dot_lanes(x: &[u8], w: &[i8]) -> __m512i {
        let len = x.len().min(w.len());
        let mut acc = _mm512_setzero_si512();
        let mut j = 0;
        while j + 64 <= len {
            // SAFETY: 64 bytes at `j` lie inside both rows.
            let (xv, wv) =
                unsafe { (_mm512_loadu_si512(x.as_ptr().add(j).cast()), _mm512_loadu_si512(w.as_ptr().add(j).cast())) };
            acc = _mm512_dpbusd_epi32(acc, xv, wv);
            j += 64;
        }
        if j < len {
            let mask: __mmask64 = (1u64 << (len - j)) - 1;
            // SAFETY: the mask loads only the `len - j` bytes left in both rows.
            let (xv, wv) = unsafe {
                (
                    _mm512_maskz_loadu_epi8(mask, x.as_ptr().add(j).cast()),
                    _mm512_maskz_loadu_epi8(mask, w.as_ptr().add(j)),
                )
            };
            acc = _mm512_dpbusd_epi32(acc, xv, wv);
        }
        acc
    }

    /// `Σ x[j] · w[j]` over two rows of equal length (one row and channel).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn dot(x: &[u8], w: &[i8]) -> i32 {
        // SAFETY: the same features are enabled here.
        _mm512_reduce_add_epi32(unsafe { dot_lanes(x, w) })
    }

    /// The mask of the first `valid` (1 to 16) of 16 lanes: a channel block's channels below
    /// `n` (and the float kernels' last partial block of inputs).
    #[inline(always)]
    pub(in crate::kernels) fn first_lanes(valid: usize) -> __mmask16 {
        if valid == 16 { 0xFFFF } else { (1u16 << valid) - 1 }
    }

    /// See [`super::peak_int8`]: twelve `vpdpbusd` chains on all-ones bytes.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn peak(steps: usize) -> f32 {
        let ones = _mm512_set1_epi8(1);
        let mut a = [_mm512_setzero_si512(); 12];
        for (i, v) in a.iter_mut().enumerate() {
            *v = _mm512_set1_epi32(i as i32);
        }
        // SAFETY: AVX-512 VNNI is present; registers only, `n` counts down to 0.
        unsafe {
            twelve_chains!("vpdpbusd", zmm_reg, a, ones, steps);
        }
        a.iter().map(|v| _mm512_cvtsi512_si32(*v) as f32).sum()
    }

    /// See [`super::peak_f32`]: twelve `vfmadd231ps` chains on zmm.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn peak_fma(steps: usize) -> f32 {
        let one = _mm512_set1_ps(1.0);
        let mut a = [_mm512_setzero_ps(); 12];
        for (i, v) in a.iter_mut().enumerate() {
            *v = _mm512_set1_ps(i as f32);
        }
        // SAFETY: AVX-512 F is present; registers only, `n` counts down to 0.
        unsafe {
            twelve_chains!("vfmadd231ps", zmm_reg, a, one, steps);
        }
        a.iter().map(|v| _mm512_cvtss_f32(*v)).sum()
    }

    /// `vpdpbusd`: 64 u8·s8 products per instruction into 16 i32 lanes. Tiles of 4 rows × 4
    /// blocks keep 16 independent accumulators in flight (latency 5, up to two per cycle), with
    /// 8 loads per 16 `vpdpbusd`; narrower tiles take the edges.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn gemm(x: &[u8], m: usize, w: &PackedWeights, acc: &mut Sink<'_>) {
        let mut r = 0;
        while r + 4 <= m {
            unsafe { row_tiles::<4>(x, r, w, acc) };
            r += 4;
        }
        while r < m {
            unsafe { row_tiles::<1>(x, r, w, acc) };
            r += 1;
        }
    }

    /// Rows `r..r + R` across every channel block: 4, then 2, then 1 block at a time.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn row_tiles<const R: usize>(x: &[u8], r: usize, w: &PackedWeights, acc: &mut Sink<'_>) {
        let blocks = w.n.div_ceil(16);
        let mut b = 0;
        while b + 4 <= blocks {
            unsafe { tile::<R, 4>(x, r, b, w, acc) };
            b += 4;
        }
        if b + 2 <= blocks {
            unsafe { tile::<R, 2>(x, r, b, w, acc) };
            b += 2;
        }
        if b < blocks {
            unsafe { tile::<R, 1>(x, r, b, w, acc) };
        }
    }
}
