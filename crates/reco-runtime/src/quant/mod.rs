//! Quantization parameters and tensor quantizers (DESIGN §6).
//!
//! - activations: u8 asymmetric per tensor, [`QParams`] `(scale, zero_point)`, range from a
//!   [`calibrate::Calibrator`];
//! - dense weights: s8 symmetric per output channel (zero point 0), 8-bit (±127) or 7-bit
//!   (±63, which the AVX2 `vpmaddubsw` path needs to stay exact);
//! - biases: i32 at scale `s_x · s_w[c]`;
//! - embedding tables: row-wise 8- or 4-bit codes with an fp16 scale and bias per row
//!   (FBGEMM's layout), [`EmbeddingBits`] chosen per table.

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
/// Returns the codes and one scale per channel: the smallest fp16 value at or above
/// `max |w| / qmax` (so an artifact stores it in two bytes, and every code stays within
/// `±qmax`); beyond fp16's range, `max |w| / qmax` in f32.
pub fn quantize_weights(w: &[f32], n: usize, k: usize, bits: u32, per_channel: bool) -> (Vec<i8>, Vec<f32>) {
    let qmax = ((1i32 << (bits - 1)) - 1) as f32;
    let tensor_max = w.iter().fold(0f32, |a, &v| a.max(v.abs()));
    let mut codes = vec![0i8; n * k];
    let mut scales = Vec::with_capacity(n);
    for c in 0..n {
        let row = &w[c * k..(c + 1) * k];
        let m = if per_channel { row.iter().fold(0f32, |a, &v| a.max(v.abs())) } else { tensor_max };
        let s = match f16_toward(m / qmax, true) {
            _ if m <= 0.0 => 1.0,
            h if h.is_finite() => h,
            _ => m / qmax,
        };
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

/// Bits per code of a row-wise embedding table: 8 (one code per byte) or 4 (two per byte,
/// the lower nibble first: FBGEMM's layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum EmbeddingBits {
    /// Codes 0..=15.
    Four,
    /// Codes 0..=255.
    Eight,
}

impl EmbeddingBits {
    /// The suffix of a table's codes tensor (`embedding.<col>.codes` or `.codes4`), in the
    /// artifact and in the ONNX graph alike.
    pub fn codes_suffix(self) -> &'static str {
        match self {
            Self::Eight => "codes",
            Self::Four => "codes4",
        }
    }

    /// The largest code.
    pub fn max_code(self) -> u8 {
        match self {
            Self::Four => 15,
            Self::Eight => 255,
        }
    }

    /// Bytes of one row's codes.
    pub fn row_bytes(self, dim: usize) -> usize {
        match self {
            Self::Four => dim.div_ceil(2),
            Self::Eight => dim,
        }
    }

    /// Code `j` of a row's packed codes.
    #[inline]
    pub fn code(self, row: &[u8], j: usize) -> u8 {
        match self {
            Self::Four => (row[j / 2] >> (4 * (j % 2))) & 0x0f,
            Self::Eight => row[j],
        }
    }
}

impl TryFrom<u8> for EmbeddingBits {
    type Error = String;
    fn try_from(v: u8) -> std::result::Result<Self, String> {
        match v {
            4 => Ok(Self::Four),
            8 => Ok(Self::Eight),
            _ => Err(format!("{v}: expected 4 or 8")),
        }
    }
}

impl From<EmbeddingBits> for u8 {
    fn from(b: EmbeddingBits) -> u8 {
        match b {
            EmbeddingBits::Four => 4,
            EmbeddingBits::Eight => 8,
        }
    }
}

/// How a quantized embedding table is stored: its code width and whether each row has its own
/// fp16 scale and bias or the whole table shares one pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TableLayout {
    /// 4-bit codes, a scale and bias per row: `⌈dim/2⌉ + 4` bytes a row.
    #[serde(rename = "int4")]
    Int4,
    /// 8-bit codes, one scale and bias for the table: `dim` bytes a row. Smaller than
    /// [`TableLayout::Int4`] for rows of up to 7 values, where the per-row fp16 pair costs
    /// more than the codes.
    #[serde(rename = "int8-table")]
    Int8Table,
    /// 8-bit codes, a scale and bias per row (FBGEMM's row-wise INT8): `dim + 4` bytes a row.
    #[serde(rename = "int8")]
    Int8,
}

impl TableLayout {
    /// The code width.
    pub fn bits(self) -> EmbeddingBits {
        match self {
            Self::Int4 => EmbeddingBits::Four,
            Self::Int8Table | Self::Int8 => EmbeddingBits::Eight,
        }
    }

    /// One scale and bias for the whole table.
    pub fn per_table(self) -> bool {
        self == Self::Int8Table
    }

    /// Bytes stored for a `[rows, dim]` table: codes, and 4 per fp16 scale and bias pair.
    pub fn bytes(self, rows: usize, dim: usize) -> usize {
        rows * self.bits().row_bytes(dim) + 4 * if self.per_table() { 1 } else { rows }
    }

    /// The smaller of [`TableLayout::Int4`] and [`TableLayout::Int8Table`] for a table (the
    /// more precise one on a tie): where `auto` starts. Rows of up to 7 values take
    /// `Int8Table`.
    pub fn smallest(rows: usize, dim: usize) -> Self {
        if Self::Int8Table.bytes(rows, dim) <= Self::Int4.bytes(rows, dim) { Self::Int8Table } else { Self::Int4 }
    }

    /// `int4`, `int8-table` or `int8`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Int4 => "int4",
            Self::Int8Table => "int8-table",
            Self::Int8 => "int8",
        }
    }
}

/// `x` rounded to the nearest fp16 value, as f32 (exact).
pub fn to_f16(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
}

/// The largest fp16 value at or below `x` (`up`: the smallest at or above), as f32; an
/// infinity beyond fp16's range.
fn f16_toward(x: f32, up: bool) -> f32 {
    let h = half::f16::from_f32(x);
    let v = h.to_f32();
    if (up && v >= x) || (!up && v <= x) || v.is_nan() {
        return v;
    }
    // One fp16 step toward the side asked: the bits move away from zero on the side of x's sign.
    let bits = h.to_bits();
    let away = (x > v) == (bits & 0x8000 == 0);
    let next = match (bits & 0x7fff, away) {
        (0, _) => {
            if up {
                0x0001
            } else {
                0x8001
            }
        }
        (_, true) => bits + 1,
        (_, false) => bits - 1,
    };
    half::f16::from_bits(next).to_f32()
}

/// The smallest positive fp16 value (a subnormal): the step of a row whose range rounds to 0.
const F16_MIN_STEP: f32 = 5.960_464_5e-8;

/// Row-wise embedding table at `bits` per code: per row the bias is the largest fp16 value at
/// or below `lo` and the scale the smallest fp16 value at or above `(hi - bias) / max_code`,
/// codes `clamp(round((v - bias) / scale), 0, max_code)`, so that `value ≈ code · scale + bias`
/// and every value in `[lo, hi]` is within half a step of its code's value. At 8 bits `[lo, hi]`
/// is the row's range; at 4 bits it is chosen by [`greedy_range`], which
/// may clip a few outlying values to halve the step for the rest.
/// Returns the packed codes `[rows, bits.row_bytes(dim)]` and `[rows, 2]` (scale, bias), each an
/// fp16 value held in f32. `Err(row)`: a row whose bias or scale fp16 cannot hold (a minimum
/// below -65504, or a range wider than 65504 steps).
pub fn quantize_rowwise(
    table: &[f32],
    rows: usize,
    dim: usize,
    bits: EmbeddingBits,
) -> std::result::Result<(Vec<u8>, Vec<f32>), usize> {
    quantize_rowwise_for(table, rows, dim, bits, None)
}

/// [`quantize_rowwise`] for a model whose first layer takes its input as u8 codes at `input`:
/// the runtime requantizes each stored value to that grid, so a row's error is what is left
/// after both roundings. Each row then takes whichever has less of it: its own scale and bias
/// (above), or a scale that is a whole number of grid steps and a bias on the grid (searched
/// like [`greedy_range`] in grid steps), whose values requantize without a second rounding.
pub fn quantize_rowwise_for(
    table: &[f32],
    rows: usize,
    dim: usize,
    bits: EmbeddingBits,
    input: Option<&QParams>,
) -> std::result::Result<(Vec<u8>, Vec<f32>), usize> {
    let stride = bits.row_bytes(dim);
    let mut codes = vec![0u8; rows * stride];
    let mut so = Vec::with_capacity(rows * 2);
    for r in 0..rows {
        let row = &table[r * dim..(r + 1) * dim];
        let (lo, hi) = row.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let (lo, hi) = if dim == 0 { (0.0, 0.0) } else { (lo, hi) };
        let own = match bits {
            EmbeddingBits::Four => greedy_range(row, lo, hi, bits),
            EmbeddingBits::Eight => row_params(lo, hi, bits),
        };
        let (scale, bias) = match input {
            Some(qp) => on_grid(row, (lo, hi), own, bits, qp),
            None => own,
        };
        if !(scale.is_finite() && bias.is_finite()) {
            return Err(r);
        }
        let out = &mut codes[r * stride..(r + 1) * stride];
        for (j, &v) in row.iter().enumerate() {
            let q = code(v, scale, bias, bits);
            match bits {
                EmbeddingBits::Four => out[j / 2] |= q << (4 * (j % 2)),
                EmbeddingBits::Eight => out[j] = q,
            }
        }
        so.push(scale);
        so.push(bias);
    }
    Ok((codes, so))
}

/// The fp16 scale and bias covering `[lo, hi]`.
fn row_params(lo: f32, hi: f32, bits: EmbeddingBits) -> (f32, f32) {
    let bias = f16_toward(lo, false);
    let scale = if hi > bias { f16_toward((hi - bias) / f32::from(bits.max_code()), true) } else { 1.0 };
    (if scale == 0.0 { F16_MIN_STEP } else { scale }, bias)
}

/// One value's code.
#[inline]
fn code(v: f32, scale: f32, bias: f32, bits: EmbeddingBits) -> u8 {
    ((v - bias) / scale).round().clamp(0.0, f32::from(bits.max_code())) as u8
}

/// Squared error of a row stored with `scale` and `bias`.
fn row_error(row: &[f32], scale: f32, bias: f32, bits: EmbeddingBits) -> f64 {
    row.iter().map(|&v| f64::from(f32::from(code(v, scale, bias, bits)) * scale + bias - v).powi(2)).sum()
}

/// Bins the greedy search divides a row's range into, and the share of them it may clip.
const GREEDY_BINS: usize = 200;
const GREEDY_CLIP: f64 = 0.16;

/// The scale and bias of a row at `bits` that minimize its squared error, by the greedy range
/// search of Guan et al. (arXiv:1911.02079, FBGEMM's `param_search_greedy`): from `[lo, hi]`,
/// move whichever end lowers the error more inward by one of [`GREEDY_BINS`] bins, up to
/// [`GREEDY_CLIP`] of the range, keeping the best range seen (the full range when nothing
/// beats it).
fn greedy_range(row: &[f32], lo: f32, hi: f32, bits: EmbeddingBits) -> (f32, f32) {
    let full = row_params(lo, hi, bits);
    if hi <= lo {
        return full;
    }
    let error = |a: f32, b: f32| {
        let (s, o) = row_params(a, b, bits);
        (row_error(row, s, o, bits), (s, o))
    };
    let step = (hi - lo) / GREEDY_BINS as f32;
    let (mut best, mut best_params) = (row_error(row, full.0, full.1, bits), full);
    let (mut a, mut b) = (lo, hi);
    for _ in 0..(GREEDY_BINS as f64 * GREEDY_CLIP) as usize {
        let (left, right) = (error(a + step, b), error(a, b - step));
        let (e, p) = if left.0 < right.0 {
            a += step;
            left
        } else {
            b -= step;
            right
        };
        if e < best {
            (best, best_params) = (e, p);
        }
    }
    best_params
}

/// Squared error of a row stored with `scale` and `bias` as a first layer reading u8 codes at
/// `qp` sees it: each stored value requantized to that grid.
fn row_error_through(row: &[f32], scale: f32, bias: f32, bits: EmbeddingBits, qp: &QParams) -> f64 {
    let stored = |v: f32| f32::from(code(v, scale, bias, bits)) * scale + bias;
    row.iter().map(|&v| f64::from(qp.dequantize(qp.quantize(stored(v))) - v).powi(2)).sum()
}

/// Most grid steps the search moves a row's ends inward (bounds its cost on fine grids).
const GRID_SEARCH_STEPS: usize = 64;

/// The scale and bias with the least error through `qp`'s grid: `own`, or a grid-aligned pair
/// (scale `k` grid steps, bias a grid point) over `[a, b]` in grid units, from the row's whole
/// range inward one step at a time at the end that lowers the error more (at 4 bits, up to
/// [`GREEDY_CLIP`] of the range; at 8 bits a row rarely spans more than 255 steps).
fn on_grid(row: &[f32], (lo, hi): (f32, f32), own: (f32, f32), bits: EmbeddingBits, qp: &QParams) -> (f32, f32) {
    let err = |p: (f32, f32)| row_error_through(row, p.0, p.1, bits, qp);
    let mut best = (err(own), own);
    let g = qp.scale;
    if hi <= lo || !(g > 0.0 && g.is_finite()) {
        return best.1;
    }
    let max = f32::from(bits.max_code());
    let aligned = |a: f32, b: f32| {
        let p = (to_f16(((b - a) / max).ceil().max(1.0) * g), to_f16(a * g));
        let usable = p.0 > 0.0 && p.0.is_finite() && p.1.is_finite();
        usable.then(|| (err(p), p))
    };
    let (mut a, mut b) = ((lo / g).floor(), (hi / g).ceil());
    let mut consider = |c: Option<(f64, (f32, f32))>| {
        if let Some(c) = c.filter(|c| c.0 < best.0) {
            best = c;
        }
    };
    consider(aligned(a, b));
    let steps = if bits == EmbeddingBits::Four { ((b - a) as f64 * GREEDY_CLIP) as usize } else { 0 };
    for _ in 0..steps.min(GRID_SEARCH_STEPS) {
        let (left, right) = (aligned(a + 1.0, b), aligned(a, b - 1.0));
        let left_better = left.map_or(f64::INFINITY, |l| l.0) < right.map_or(f64::INFINITY, |r| r.0);
        if left_better {
            a += 1.0;
            consider(left);
        } else {
            b -= 1.0;
            consider(right);
        }
    }
    best.1
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
        assert_eq!(&q[..3], &[63, -127, 32], "0.5 / s, s just above 1 / 127: 63.49");
        assert_eq!(q[5], -127);
        // Scales: the smallest fp16 values at or above max |w| / 127.
        for (&s, m) in s.iter().zip([1.0f32, 0.04]) {
            assert_eq!(to_f16(s), s, "an fp16 value");
            assert!(s >= m / 127.0 && f16_toward(s * (1.0 - 1e-4), false) < m / 127.0, "{s} for {m}");
        }
        let (q7, s7) = quantize_weights(&w, 2, 3, 7, true);
        assert!(q7.iter().all(|v| v.unsigned_abs() <= 63));
        assert_eq!(s7[0], f16_toward(1.0 / 63.0, true));
        let (_, st) = quantize_weights(&w, 2, 3, 8, false);
        assert_eq!(st[0], st[1]);
        // RMSE bound: error per weight at most half a step.
        for (i, &v) in w.iter().enumerate() {
            assert!((f32::from(q[i]) * s[i / 3] - v).abs() <= s[i / 3] / 2.0 + 1e-7);
        }
    }

    #[test]
    fn rowwise_embeddings_reconstruct_within_half_a_step_at_8_bits_and_better_than_min_max_at_4() {
        let mut r = Rng::new(4);
        let (rows, dim) = (40, 9);
        let t: Vec<f32> = (0..rows * dim).map(|i| (r.normal() * (1 + i / dim) as f64) as f32).collect();
        let (mut greedy, mut min_max) = (0f64, 0f64);
        for bits in [EmbeddingBits::Eight, EmbeddingBits::Four] {
            let (q, so) = quantize_rowwise(&t, rows, dim, bits).unwrap();
            let stride = bits.row_bytes(dim);
            assert_eq!(q.len(), rows * stride);
            for row in 0..rows {
                let (scale, bias) = (so[2 * row], so[2 * row + 1]);
                assert_eq!((to_f16(scale), to_f16(bias)), (scale, bias), "fp16 values");
                let exact = &t[row * dim..(row + 1) * dim];
                let (lo, hi) = exact.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
                let max = f32::from(bits.max_code());
                // The bias at or below the minimum, the top code at or above the maximum: half
                // a step (and f32's rounding of the arithmetic).
                if bits == EmbeddingBits::Eight {
                    assert!(bias <= lo && bias + max * scale >= hi, "row {row}: [{lo}, {hi}] by {scale}, {bias}");
                }
                let slack = scale / 2.0 * (1.0 + 1e-5) + 1e-6 * hi.abs().max(lo.abs());
                let (mut e, mut e_min_max) = (0f64, 0f64);
                let (s_mm, o_mm) = row_params(lo, hi, bits);
                for (j, &v) in exact.iter().enumerate() {
                    let c = bits.code(&q[row * stride..(row + 1) * stride], j);
                    assert!(c <= bits.max_code());
                    let back = f32::from(c) * scale + bias;
                    if bits == EmbeddingBits::Eight {
                        assert!((back - v).abs() <= slack, "{bits:?} row {row} col {j}: {back} vs {v}");
                    }
                    e += f64::from(back - v).powi(2);
                    let c_mm = ((v - o_mm) / s_mm).round().clamp(0.0, max);
                    e_min_max += f64::from(c_mm * s_mm + o_mm - v).powi(2);
                }
                if bits == EmbeddingBits::Four {
                    // The greedy range is never worse than the row's full range, row by row.
                    assert!(e <= e_min_max + 1e-12, "row {row}: {e} > {e_min_max}");
                    (greedy, min_max) = (greedy + e, min_max + e_min_max);
                }
            }
        }
        assert!(greedy < 0.95 * min_max, "the search should pay on normal rows: {greedy} vs {min_max}");
    }

    #[test]
    fn four_bit_codes_pack_two_per_byte_lower_nibble_first() {
        // One row 0, 1, ..., 15 (and an odd width: the last byte's upper nibble stays 0).
        let t: Vec<f32> = (0..15).map(|i| i as f32).collect();
        let (q, so) = quantize_rowwise(&t, 1, 15, EmbeddingBits::Four).unwrap();
        let expect: Vec<u8> = t.iter().map(|v| ((v - so[1]) / so[0]).round().clamp(0.0, 15.0) as u8).collect();
        assert_eq!((expect[0], expect[14]), (0, 15), "the evenly spread row uses every code");
        assert_eq!(q.len(), 8);
        for (b, pair) in q.iter().zip(expect.chunks(2)) {
            assert_eq!(b & 0x0f, pair[0]);
            assert_eq!(b >> 4, pair.get(1).copied().unwrap_or(0));
        }
    }

    #[test]
    fn rows_for_an_integer_first_layer_lose_nothing_more_than_its_input_grid_at_8_bits() {
        let qp = QParams { scale: 0.01, zero_point: 128 };
        let mut r = Rng::new(9);
        let (rows, dim) = (50, 16);
        let t: Vec<f32> = (0..rows * dim).map(|_| (r.normal() * 0.2) as f32).collect();
        // Rows span fewer than 255 grid steps: stored on the grid (to fp16's precision), values
        // requantize to the code the float value gets but for a few within fp16's rounding of a
        // tie; a row's own finer scale puts a second rounding on top of the grid's.
        let mismatches = |(q, so): &(Vec<u8>, Vec<f32>)| {
            let mut n = 0;
            for (i, &v) in t.iter().enumerate() {
                let row = i / dim;
                let stored = f32::from(q[i]) * so[2 * row] + so[2 * row + 1];
                let d = i32::from(qp.quantize(stored)) - i32::from(qp.quantize(v));
                assert!(d.abs() <= 1, "{v} stored {stored}");
                n += usize::from(d != 0);
            }
            n
        };
        let grid = mismatches(&quantize_rowwise_for(&t, rows, dim, EmbeddingBits::Eight, Some(&qp)).unwrap());
        let own = mismatches(&quantize_rowwise(&t, rows, dim, EmbeddingBits::Eight).unwrap());
        assert!(grid * 100 <= t.len() && grid * 5 < own, "{grid} vs {own} of {}", t.len());
        // At 4 bits the choice is never worse through the grid than the row's own scale.
        let (rows4, rows_own) = (
            quantize_rowwise_for(&t, rows, dim, EmbeddingBits::Four, Some(&qp)).unwrap(),
            quantize_rowwise(&t, rows, dim, EmbeddingBits::Four).unwrap(),
        );
        let through = |(q, so): &(Vec<u8>, Vec<f32>)| -> f64 {
            (0..rows)
                .map(|row| {
                    let codes = &q[row * 8..(row + 1) * 8];
                    (0..dim)
                        .map(|j| {
                            let stored = f32::from(EmbeddingBits::Four.code(codes, j)) * so[2 * row] + so[2 * row + 1];
                            f64::from(qp.dequantize(qp.quantize(stored)) - t[row * dim + j]).powi(2)
                        })
                        .sum::<f64>()
                })
                .sum()
        };
        assert!(through(&rows4) < through(&rows_own), "{} vs {}", through(&rows4), through(&rows_own));
    }

    #[test]
    fn a_narrow_row_far_from_zero_keeps_its_precision() {
        // fp16 steps are 0.5 near 1000: a bias rounded to the nearest (1000.5) would put the
        // whole row below it, every code 0, errors of 0.2 on a row 0.01 wide.
        let row = [1000.3f32, 1000.305, 1000.31];
        for bits in [EmbeddingBits::Eight, EmbeddingBits::Four] {
            let (q, so) = quantize_rowwise(&row, 1, 3, bits).unwrap();
            let worst =
                (0..3).map(|j| (f32::from(bits.code(&q, j)) * so[0] + so[1] - row[j]).abs()).fold(0f32, f32::max);
            let step = (row[2] - 1000.0) / f32::from(bits.max_code());
            assert!(so[1] <= row[0] && worst <= step, "{bits:?}: error {worst}, step {step}");
        }
    }

    #[test]
    fn fp16_rounding_toward_either_side_brackets_the_value() {
        for x in [0.0f32, 1e-9, -1e-9, 0.1, -0.1, 1000.3, -1000.3, 65504.0, 7e4, -7e4, 3.0] {
            let (down, up) = (f16_toward(x, false), f16_toward(x, true));
            assert!(down <= x && x <= up, "{x}: {down} {up}");
            assert_eq!((to_f16(down), to_f16(up)), (down, up), "{x}: fp16 values");
            // Neighbours: nothing representable strictly between them and x.
            assert!(
                down == x
                    || up == x
                    || half::f16::from_f32(down).to_bits().abs_diff(half::f16::from_f32(up).to_bits()) <= 2
            );
        }
        assert!(f16_toward(7e4, true).is_infinite() && f16_toward(7e4, false) == 65504.0);
    }

    #[test]
    fn rows_beyond_fp16_are_refused_and_tiny_ranges_keep_a_positive_step() {
        assert_eq!(quantize_rowwise(&[0.0, 1.0, -1e6, 2.0], 2, 2, EmbeddingBits::Eight), Err(1));
        let (q, so) = quantize_rowwise(&[1.0, 1.0 + 1e-7], 1, 2, EmbeddingBits::Four).unwrap();
        assert!(so[0] > 0.0 && so[0].is_finite());
        let back = |c: u8| so[1] + so[0] * f32::from(c);
        assert!((back(q[0] & 0x0f) - 1.0).abs() <= so[0] && (back(q[0] >> 4) - (1.0 + 1e-7)).abs() <= so[0]);
    }

    #[test]
    fn sqnr_of_known_noise() {
        let y = [1.0f32, -1.0, 1.0, -1.0];
        let z = [1.1f32, -1.1, 1.1, -1.1];
        assert!((sqnr_db(&y, &z) - 20.0).abs() < 1e-3);
        assert!(sqnr_db(&y, &y).is_infinite());
    }
}
