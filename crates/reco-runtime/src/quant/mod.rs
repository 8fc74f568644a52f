//! Quantization parameters and tensor quantizers (DESIGN §6).
//!
//! - activations: u8 asymmetric per tensor, [`QParams`] `(scale, zero_point)`, range from a
//!   [`calibrate::Calibrator`];
//! - dense weights: s8 symmetric per output channel (zero point 0), 8-bit (±127) or 7-bit
//!   (±63, which the AVX2 `vpmaddubsw` path needs to stay exact);
//! - biases: i32 at scale `s_x · s_w[c]`;
//! - embedding tables: row-wise u8 with one f32 scale and offset per row (FBGEMM layout).

pub mod calibrate;

use serde::{Deserialize, Serialize};

/// u8 affine quantization: `real = scale · (q - zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QParams {
    /// Step size (> 0).
    pub scale: f32,
    /// The u8 code of real 0.
    pub zero_point: i32,
}

impl QParams {
    /// Parameters covering `[lo, hi]` (widened to include 0, so 0 is exact).
    pub fn from_range(lo: f32, hi: f32) -> Self {
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let span = (hi - lo).max(1e-8);
        let scale = span / 255.0;
        let zero_point = ((-lo / scale).round() as i32).clamp(0, 255);
        Self { scale, zero_point }
    }

    /// Parameters covering the range of `xs` (dynamic, per-batch activations).
    pub fn covering(xs: &[f32]) -> Self {
        let (lo, hi) = xs.iter().fold((0f32, 0f32), |(a, b), &x| (a.min(x), b.max(x)));
        Self::from_range(lo, hi)
    }

    /// Quantizes one value: `clamp(round_half_even(x / scale) + zero_point, 0, 255)`, NaN to
    /// the zero point.
    #[inline]
    pub fn quantize(&self, x: f32) -> u8 {
        // All in f32 (exact: integers below 2^23), without the libm `rintf` call that
        // `round_ties_even` is in the baseline target, and without a saturating float-to-int
        // cast before the clamp, so loops over columns vectorize.
        const MAGIC: f32 = 12_582_912.0;
        let y = x / self.scale;
        let y = if y.is_nan() { 0.0 } else { y.clamp(-4_194_304.0, 4_194_304.0) };
        let q = (((y + MAGIC) - MAGIC) + self.zero_point as f32).clamp(0.0, 255.0);
        // SAFETY: `q` is an integer in [0, 255] (NaN was replaced above), so the conversion
        // is exact; unlike a saturating `as`, it vectorizes.
        unsafe { q.to_int_unchecked::<i32>() as u8 }
    }

    /// Dequantizes one code.
    pub fn dequantize(&self, q: u8) -> f32 {
        self.scale * (i32::from(q) - self.zero_point) as f32
    }
}

/// Symmetric s8 weights `[n, k]` per output channel (or one scale for the whole tensor).
/// Returns the codes and one scale per channel.
pub fn quantize_weights(w: &[f32], n: usize, k: usize, bits: u32, per_channel: bool) -> (Vec<i8>, Vec<f32>) {
    let qmax = ((1i32 << (bits - 1)) - 1) as f32;
    let tensor_max = w.iter().fold(0f32, |a, &v| a.max(v.abs()));
    let mut codes = vec![0i8; n * k];
    let mut scales = Vec::with_capacity(n);
    for c in 0..n {
        let row = &w[c * k..(c + 1) * k];
        let m = if per_channel { row.iter().fold(0f32, |a, &v| a.max(v.abs())) } else { tensor_max };
        let s = if m > 0.0 { m / qmax } else { 1.0 };
        for (q, &v) in codes[c * k..(c + 1) * k].iter_mut().zip(row) {
            *q = (v / s).round_ties_even().clamp(-qmax, qmax) as i8;
        }
        scales.push(s);
    }
    (codes, scales)
}

/// i32 bias at scale `s_x · s_w[c]`.
pub fn quantize_bias(b: &[f32], input_scale: f32, w_scales: &[f32]) -> Vec<i32> {
    b.iter()
        .zip(w_scales)
        .map(|(&v, &sw)| {
            let q = (f64::from(v) / (f64::from(input_scale) * f64::from(sw))).round();
            q.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
        })
        .collect()
}

/// Row-wise u8 embedding table: per row `scale = (max - min) / 255`, `offset = min`,
/// `value ≈ q · scale + offset`. Returns codes `[rows, dim]` and `[rows, 2]` (scale, offset).
pub fn quantize_rowwise(table: &[f32], rows: usize, dim: usize) -> (Vec<u8>, Vec<f32>) {
    let mut codes = vec![0u8; rows * dim];
    let mut so = Vec::with_capacity(rows * 2);
    for r in 0..rows {
        let row = &table[r * dim..(r + 1) * dim];
        let (lo, hi) = row.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
        for (q, &v) in codes[r * dim..(r + 1) * dim].iter_mut().zip(row) {
            *q = ((v - lo) / scale).round().clamp(0.0, 255.0) as u8;
        }
        so.push(scale);
        so.push(lo);
    }
    (codes, so)
}

/// Signal-to-quantization-noise ratio in dB: `10·log10(Σ y² / Σ (y - ŷ)²)`.
pub fn sqnr_db(reference: &[f32], approx: &[f32]) -> f64 {
    let (mut s, mut e) = (0f64, 0f64);
    for (&a, &b) in reference.iter().zip(approx) {
        s += f64::from(a) * f64::from(a);
        e += (f64::from(a) - f64::from(b)).powi(2);
    }
    if e == 0.0 { f64::INFINITY } else { 10.0 * (s / e).log10() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn qparams_represent_zero_exactly_and_bound_the_error_by_half_a_step() {
        for (lo, hi) in [(-1.0f32, 3.0), (0.0, 6.0), (-5.0, -1.0), (2.0, 9.0)] {
            let q = QParams::from_range(lo, hi);
            assert_eq!(q.dequantize(q.quantize(0.0)), 0.0, "{lo} {hi}");
            let mut r = Rng::new(1);
            for _ in 0..1000 {
                let x = lo.min(0.0) + (hi.max(0.0) - lo.min(0.0)) * r.uniform() as f32;
                assert!((q.dequantize(q.quantize(x)) - x).abs() <= q.scale / 2.0 + 1e-6);
            }
        }
    }

    #[test]
    fn quantize_rounds_half_to_even_saturates_and_maps_nan_to_the_zero_point() {
        // Reference: std's round_ties_even on the quotient, in i64, clamped.
        let reference = |q: &QParams, x: f32| -> u8 {
            let y = x / q.scale;
            if y.is_nan() {
                q.zero_point as u8
            } else {
                (y.round_ties_even() as i64).saturating_add(i64::from(q.zero_point)).clamp(0, 255) as u8
            }
        };
        let mut r = Rng::new(5);
        for q in [
            QParams { scale: 0.5, zero_point: 0 },
            QParams { scale: 0.5, zero_point: 128 },
            QParams::from_range(-3.0, 7.0),
        ] {
            let mut xs: Vec<f32> = vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, f32::MIN, 0.0, -0.0];
            // Exact ties around the edges of the code range and around zero.
            xs.extend((-300..300).map(|i| (i as f32 + 0.5) * q.scale));
            xs.extend((0..5000).map(|_| ((r.uniform() - 0.5) * 600.0) as f32 * q.scale));
            xs.extend((0..200).map(|_| ((r.uniform() - 0.5) * 1e9) as f32));
            for x in xs {
                assert_eq!(q.quantize(x), reference(&q, x), "x={x} scale={} zp={}", q.scale, q.zero_point);
            }
        }
    }

    #[test]
    fn per_channel_weights_use_each_rows_range_and_bits() {
        let w = [0.5f32, -1.0, 0.25, 0.01, 0.02, -0.04];
        let (q, s) = quantize_weights(&w, 2, 3, 8, true);
        assert_eq!(&q[..3], &[64, -127, 32]);
        assert_eq!(q[5], -127);
        assert!((s[0] - 1.0 / 127.0).abs() < 1e-9 && (s[1] - 0.04 / 127.0).abs() < 1e-9);
        let (q7, s7) = quantize_weights(&w, 2, 3, 7, true);
        assert!(q7.iter().all(|v| v.unsigned_abs() <= 63));
        assert!((s7[0] - 1.0 / 63.0).abs() < 1e-9);
        let (_, st) = quantize_weights(&w, 2, 3, 8, false);
        assert_eq!(st[0], st[1]);
        // RMSE bound: error per weight at most half a step.
        for (i, &v) in w.iter().enumerate() {
            assert!((f32::from(q[i]) * s[i / 3] - v).abs() <= s[i / 3] / 2.0 + 1e-7);
        }
    }

    #[test]
    fn rowwise_embeddings_reconstruct_within_half_a_step_per_row() {
        let mut r = Rng::new(4);
        let (rows, dim) = (20, 9);
        let t: Vec<f32> = (0..rows * dim).map(|i| (r.normal() * (1 + i / dim) as f64) as f32).collect();
        let (q, so) = quantize_rowwise(&t, rows, dim);
        for row in 0..rows {
            let (scale, off) = (so[2 * row], so[2 * row + 1]);
            for j in 0..dim {
                let v = f32::from(q[row * dim + j]) * scale + off;
                assert!((v - t[row * dim + j]).abs() <= scale / 2.0 + 1e-5);
            }
        }
    }

    #[test]
    fn sqnr_of_known_noise() {
        let y = [1.0f32, -1.0, 1.0, -1.0];
        let z = [1.1f32, -1.1, 1.1, -1.1];
        assert!((sqnr_db(&y, &z) - 20.0).abs() < 1e-3);
        assert!(sqnr_db(&y, &y).is_infinite());
    }
}
