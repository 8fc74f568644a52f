//! Activation calibrators with streaming state: a running min/max, then a fixed 8192-bin
//! histogram over that range. Memory per tensor is constant in the number of calibration
//! rows ([`Observer::state_bytes`]).
//!
//! - `minmax`: the observed range.
//! - `percentile`: the 0.01% / 99.99% quantiles (both tails).
//! - `entropy`: the clipping window minimizing KL(P || Q) between the histogram and its
//!   255-level quantization, TensorRT-style (outliers folded into the edge bins). Windows keep
//!   at least 4 bins per level (below that the histogram cannot see rounding error, and KL
//!   degenerates to "clip as hard as allowed"), and the bin holding zero stays its own level
//!   (zero is exact in u8, so ReLU's spike of zeros is not smeared over its neighbours).
//! - `mse`: the clipping window minimizing the expected squared quantization error.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::QParams;

/// Histogram bins.
pub const BINS: usize = 8192;

/// The fewest calibration rows a calibration may use: activation ranges from fewer rows are
/// noise.
pub const MIN_CALIBRATION_ROWS: usize = 32;

/// Quantization levels of a u8 activation range (255 steps).
const LEVELS: usize = 255;

/// The narrowest window the clipping calibrators consider: 4 histogram bins per level.
const MIN_WINDOW: usize = 4 * LEVELS;

/// How a range is chosen from observed activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Calibrator {
    /// Observed min and max.
    Minmax,
    /// 99.99th percentile on each side.
    Percentile,
    /// Minimum KL divergence (TensorRT-style).
    Entropy,
    /// Minimum mean squared error.
    Mse,
}

impl FromStr for Calibrator {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "minmax" => Ok(Self::Minmax),
            "percentile" => Ok(Self::Percentile),
            "entropy" => Ok(Self::Entropy),
            "mse" => Ok(Self::Mse),
            other => Err(format!("calibrator {other:?}: expected minmax, percentile, entropy or mse")),
        }
    }
}

impl Calibrator {
    /// All calibrators, for reports.
    pub const ALL: [Self; 4] = [Self::Minmax, Self::Percentile, Self::Entropy, Self::Mse];

    /// Name as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Minmax => "minmax",
            Self::Percentile => "percentile",
            Self::Entropy => "entropy",
            Self::Mse => "mse",
        }
    }

    /// Whether a histogram pass is needed after the min/max pass.
    pub fn needs_histogram(self) -> bool {
        self != Self::Minmax
    }
}

/// Streaming statistics of one activation tensor.
#[derive(Debug, Clone)]
pub struct Observer {
    /// Smallest value seen.
    pub min: f32,
    /// Largest value seen.
    pub max: f32,
    hist: Vec<u64>,
    lo: f32,
    width: f32,
}

impl Default for Observer {
    fn default() -> Self {
        Self { min: f32::INFINITY, max: f32::NEG_INFINITY, hist: Vec::new(), lo: 0.0, width: 1.0 }
    }
}

impl Observer {
    /// First pass: track the range.
    pub fn observe_range(&mut self, xs: &[f32]) {
        for &x in xs {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
    }

    /// Fixes the histogram range to the observed [min, max] (widened to include 0).
    pub fn start_histogram(&mut self) {
        self.lo = self.min.min(0.0);
        let hi = self.max.max(0.0);
        self.width = ((hi - self.lo) / BINS as f32).max(1e-12);
        self.hist = vec![0; BINS];
    }

    /// Second pass: accumulate the histogram.
    pub fn observe_histogram(&mut self, xs: &[f32]) {
        for &x in xs {
            let b = (((x - self.lo) / self.width) as usize).min(BINS - 1);
            self.hist[b] += 1;
        }
    }

    /// Bytes of state (constant: independent of how many rows were observed).
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.hist.capacity() * std::mem::size_of::<u64>()
    }

    /// The u8 quantization parameters the calibrator picks.
    pub fn qparams(&self, calibrator: Calibrator) -> QParams {
        if !self.min.is_finite() || !self.max.is_finite() {
            return QParams::from_range(0.0, 1.0);
        }
        if calibrator == Calibrator::Minmax || self.hist.is_empty() {
            return QParams::from_range(self.min, self.max);
        }
        let (a, b) = match calibrator {
            Calibrator::Percentile => self.percentile_bins(1e-4),
            Calibrator::Entropy => self.search(|h, a, b| kl_cost(h, a, b, self.zero_bin())),
            Calibrator::Mse => self.search(mse_cost),
            Calibrator::Minmax => (0, BINS),
        };
        QParams::from_range(self.lo + a as f32 * self.width, self.lo + b as f32 * self.width)
    }

    fn percentile_bins(&self, tail: f64) -> (usize, usize) {
        let total: u64 = self.hist.iter().sum();
        let cut = (total as f64 * tail) as u64;
        let (mut a, mut acc) = (0, 0u64);
        while a < BINS && acc + self.hist[a] <= cut {
            acc += self.hist[a];
            a += 1;
        }
        let (mut b, mut acc) = (BINS, 0u64);
        while b > a + 1 && acc + self.hist[b - 1] <= cut {
            acc += self.hist[b - 1];
            b -= 1;
        }
        (a, b)
    }

    /// The bin holding 0 (the histogram range always includes it).
    fn zero_bin(&self) -> usize {
        (((0.0 - self.lo) / self.width) as usize).min(BINS)
    }

    /// Candidate windows shrink the range towards the bin of zero, keeping at least
    /// [`MIN_WINDOW`] bins.
    fn search(&self, cost: impl Fn(&[u64], usize, usize) -> f64) -> (usize, usize) {
        let zero = self.zero_bin();
        let mut best = (f64::INFINITY, 0, BINS);
        for step in 0..=60 {
            let f = 1.0 - step as f64 / 64.0;
            let a = zero - ((zero as f64) * f).round() as usize;
            let b = zero + (((BINS - zero) as f64) * f).round() as usize;
            if b <= a || b - a < MIN_WINDOW {
                break;
            }
            let c = cost(&self.hist, a, b);
            if c < best.0 {
                best = (c, a, b);
            }
        }
        (best.1, best.2)
    }
}

/// Bins of `hist` clipped to `[a, b)`, outliers folded into the edge bins.
fn clipped(hist: &[u64], a: usize, b: usize) -> Vec<f64> {
    let mut p: Vec<f64> = hist[a..b].iter().map(|&c| c as f64).collect();
    let left: u64 = hist[..a].iter().sum();
    let right: u64 = hist[b..].iter().sum();
    p[0] += left as f64;
    let last = p.len() - 1;
    p[last] += right as f64;
    p
}

/// KL(P || Q), TensorRT-style: P is the histogram clipped to `[a, b)` with the outliers folded
/// into its edge bins; Q is the 255-level quantization of the in-window bins *without* the
/// outliers (each level's mass spread evenly over its non-empty bins). Clipping mass away
/// therefore costs KL, and so does a window too wide for 255 levels. The bin `zero` (if inside)
/// is a level of its own: zero is exactly representable.
fn kl_cost(hist: &[u64], a: usize, b: usize, zero: usize) -> f64 {
    let p = clipped(hist, a, b);
    let inner: Vec<f64> = hist[a..b].iter().map(|&c| c as f64).collect();
    let n = p.len();
    let z = zero.checked_sub(a).filter(|&z| z < n);
    let mut q = vec![0f64; n];
    for l in 0..LEVELS {
        let (s, e) = (l * n / LEVELS, ((l + 1) * n / LEVELS).min(n));
        let bins = (s..e).filter(|&i| Some(i) != z);
        let mass: f64 = bins.clone().map(|i| inner[i]).sum();
        let nonzero = bins.clone().filter(|&i| inner[i] > 0.0).count();
        for i in bins.filter(|&i| inner[i] > 0.0) {
            q[i] = mass / nonzero as f64;
        }
    }
    if let Some(z) = z {
        q[z] = inner[z];
    }
    let (ps, qs): (f64, f64) = (p.iter().sum(), q.iter().sum());
    if qs == 0.0 {
        return f64::INFINITY;
    }
    p.iter()
        .zip(&q)
        .filter(|(pi, _)| **pi > 0.0)
        .map(|(&pi, &qi)| {
            let (pn, qn) = (pi / ps, (qi / qs).max(1e-12));
            pn * (pn / qn).ln()
        })
        .sum()
}

/// Expected squared error (in bin units²) of quantizing the histogram to 255 steps over
/// `[a, b)`, clipping error included.
fn mse_cost(hist: &[u64], a: usize, b: usize) -> f64 {
    let step = (b - a) as f64 / LEVELS as f64;
    let mut err = 0.0;
    for (i, &c) in hist.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let x = i as f64 + 0.5;
        let xc = x.clamp(a as f64, b as f64);
        let q = a as f64 + ((xc - a as f64) / step).round() * step;
        err += c as f64 * (x - q).powi(2);
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn observe(xs: &[f32]) -> Observer {
        let mut o = Observer::default();
        for chunk in xs.chunks(1000) {
            o.observe_range(chunk);
        }
        o.start_histogram();
        for chunk in xs.chunks(1000) {
            o.observe_histogram(chunk);
        }
        o
    }

    #[test]
    fn minmax_covers_everything_and_clipping_calibrators_ignore_rare_outliers() {
        let mut r = Rng::new(3);
        // ReLU-like activations with a few huge outliers.
        let mut xs: Vec<f32> = (0..200_000).map(|_| (r.normal().max(0.0)) as f32).collect();
        xs.extend([80.0f32, 95.0, 100.0]);
        let o = observe(&xs);
        let mm = o.qparams(Calibrator::Minmax);
        assert!((mm.scale * 255.0 - 100.0).abs() < 0.5);
        assert_eq!(mm.zero_point, 0);
        for c in [Calibrator::Percentile, Calibrator::Entropy] {
            let q = o.qparams(c);
            let hi = q.scale * (255 - q.zero_point) as f32;
            assert!(hi < 60.0 && hi > 2.0, "{}: upper bound {hi}", c.name());
        }
    }

    #[test]
    fn mse_choice_never_has_more_error_than_minmax_and_clips_long_thin_tails() {
        let err = |xs: &[f32], q: QParams| {
            xs.iter().map(|&x| f64::from((q.dequantize(q.quantize(x)) - x).powi(2))).sum::<f64>()
        };
        let mut r = Rng::new(8);
        // Exponential(1): the long thin tail costs more in rounding than clipping it saves.
        let xs: Vec<f32> = (0..200_000).map(|_| (-(1.0 - r.uniform()).ln()) as f32).collect();
        let o = observe(&xs);
        let (mse, mm) = (o.qparams(Calibrator::Mse), o.qparams(Calibrator::Minmax));
        assert!(mse.scale < mm.scale, "mse kept the whole range");
        assert!(err(&xs, mse) < err(&xs, mm) * 0.9, "{} vs {}", err(&xs, mse), err(&xs, mm));
        // A few far outliers: clipping them would cost more than it saves, so MSE keeps them.
        let mut ys: Vec<f32> = (0..100_000).map(|_| r.normal() as f32).collect();
        ys.extend([40.0f32, -40.0]);
        let o = observe(&ys);
        assert!(err(&ys, o.qparams(Calibrator::Mse)) <= err(&ys, o.qparams(Calibrator::Minmax)) * 1.001);
    }

    fn sqnr_db(xs: &[f32], q: QParams) -> f64 {
        let signal: f64 = xs.iter().map(|&x| f64::from(x).powi(2)).sum();
        let noise: f64 = xs.iter().map(|&x| f64::from(q.dequantize(q.quantize(x)) - x).powi(2)).sum();
        10.0 * (signal / noise).log10()
    }

    #[test]
    fn entropy_keeps_the_bulk_of_relu_activations_and_their_exact_zeros() {
        // Post-ReLU activations: half exact zeros, half a normal's upper tail, as hidden layers see.
        let mut r = Rng::new(21);
        let xs: Vec<f32> = (0..200_000).map(|_| (r.normal().max(0.0) * 3.0) as f32).collect();
        let o = observe(&xs);
        let (kl, mse) = (o.qparams(Calibrator::Entropy), o.qparams(Calibrator::Mse));
        assert_eq!(kl.zero_point, 0, "ReLU zeros must stay exact");
        let (s_kl, s_mse) = (sqnr_db(&xs, kl), sqnr_db(&xs, mse));
        // 8-bit quantization of this distribution reaches ~40 dB; a window clipped to a few
        // bins' width (the degenerate KL minimum) falls to ~10 dB.
        assert!(s_kl > 32.0 && s_kl > s_mse - 4.0, "entropy {s_kl:.1} dB, mse {s_mse:.1} dB");
    }

    #[test]
    fn state_does_not_grow_with_rows() {
        let mut r = Rng::new(2);
        let small: Vec<f32> = (0..1_000).map(|_| r.normal() as f32).collect();
        let large: Vec<f32> = (0..100_000).map(|_| r.normal() as f32).collect();
        assert_eq!(observe(&small).state_bytes(), observe(&large).state_bytes());
    }

    #[test]
    fn calibrator_names_parse() {
        for c in Calibrator::ALL {
            assert_eq!(c.name().parse::<Calibrator>(), Ok(c));
        }
        assert!("kl".parse::<Calibrator>().is_err());
    }
}
