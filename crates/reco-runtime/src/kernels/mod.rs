//! Integer GEMM kernels (the float dense layers are in [`float`]): `acc[m, n] = Σ_k x[m, k] · w[n, k]` with u8 activations, s8 weights
//! and i32 accumulation, plus the requantization epilogue (zero-point correction from
//! precomputed weight row sums, int32 bias, rescale to the next layer's u8 with fused ReLU).
//!
//! [`scalar`] is the reference. [`x86`] holds AVX2 and AVX-512 VNNI (`vpdpbusd`) versions,
//! chosen at run time by CPU feature detection ([`Kernel::detect`]; `RECO_KERNEL=scalar|avx2|
//! vnni` forces one). AVX2 has no exact u8·s8 dot product: `vpmaddubsw` saturates its i16 pair
//! sums, so it is used only when every weight fits in 7 bits (|w| ≤ 63, pair sum ≤ 32130);
//! otherwise AVX2 widens to i16 and uses `vpmaddwd`, which is exact for any s8 weight
//! (`quantize --weight-bits 7`, the default, makes every layer take the fast path).
//! Kernels know slices, shapes and qparams only — not files or models.
//!
//! The public surface is what benchmarks and other runtimes need ([`Kernel`],
//! [`PackedWeights`], [`gemm_u8s8`], and [`float`]'s packed layers and `dense_f32`); every
//! safe entry point checks slice lengths against the shapes (saturating, [`span`])
//! before any SIMD code runs, so wrong sizes panic instead of reading out of bounds.
//! Epilogues, sinks and the SIMD modules are crate-internal.

pub mod float;
pub mod peak;
pub(crate) mod scalar;
pub(crate) mod x86;

use crate::error::{Error, Result};

/// Rows of `x` and `w` are padded to a multiple of this many bytes (zeros): the SIMD layouts
/// read activations in groups of 4.
pub const K_ALIGN: usize = 4;

/// The values `rows` rows of `width` values, `stride` apart, span: `(rows - 1) · stride +
/// width` (0 for no rows). Every size check before SIMD code goes through this or [`len`].
/// An extent past `usize` saturates to `usize::MAX`, which no buffer holds, so the check
/// fails (a wrapped one would pass and let the kernels run past the buffers).
pub(crate) fn span(rows: usize, stride: usize, width: usize) -> usize {
    if rows == 0 {
        return 0;
    }
    (rows - 1).checked_mul(stride).and_then(|v| v.checked_add(width)).unwrap_or(usize::MAX)
}

/// `rows · width`, saturating like [`span`].
pub(crate) fn len(rows: usize, width: usize) -> usize {
    rows.saturating_mul(width)
}

/// `k` rounded up to [`K_ALIGN`].
pub fn padded(k: usize) -> usize {
    k.div_ceil(K_ALIGN) * K_ALIGN
}

/// Which implementation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Plain Rust loops (the reference).
    Scalar,
    /// AVX2: `vpmaddubsw` for 7-bit weights, `vpmaddwd` on widened i16 otherwise.
    Avx2,
    /// AVX-512 VNNI `vpdpbusd`.
    Vnni,
}

impl Kernel {
    /// The fastest kernel this CPU supports.
    pub fn best() -> Self {
        if x86::has_vnni() {
            Self::Vnni
        } else if x86::has_avx2() {
            Self::Avx2
        } else {
            Self::Scalar
        }
    }

    /// [`Kernel::best`], unless `RECO_KERNEL` names one: an unknown name, or a kernel this
    /// CPU cannot run, is an error (never a silent fallback to another kernel).
    pub fn detect() -> Result<Self> {
        match std::env::var("RECO_KERNEL") {
            Err(std::env::VarError::NotPresent) => Ok(Self::best()),
            Err(std::env::VarError::NotUnicode(v)) => {
                Err(Error::input(format!("RECO_KERNEL={v:?}: expected auto, scalar, avx2 or vnni")))
            }
            Ok(name) if name.is_empty() => Ok(Self::best()),
            Ok(name) => Self::parse(&name),
        }
    }

    /// The kernel named `auto` (the best), `scalar`, `avx2` or `vnni`, if this CPU runs it.
    pub fn parse(name: &str) -> Result<Self> {
        let (kernel, supported) = match name {
            "auto" => (Self::best(), true),
            "scalar" => (Self::Scalar, true),
            "avx2" => (Self::Avx2, x86::has_avx2()),
            "vnni" | "avx512-vnni" => (Self::Vnni, x86::has_vnni()),
            other => return Err(Error::input(format!("RECO_KERNEL={other:?}: expected auto, scalar, avx2 or vnni"))),
        };
        if !supported {
            return Err(Error::input(format!("RECO_KERNEL={name}: this CPU does not support {}", kernel.name())));
        }
        Ok(kernel)
    }

    /// Every kernel this CPU can run (for tests and benchmarks).
    pub fn available() -> Vec<Self> {
        let mut v = vec![Self::Scalar];
        if x86::has_avx2() {
            v.push(Self::Avx2);
        }
        if x86::has_vnni() {
            v.push(Self::Vnni);
        }
        v
    }

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Scalar => "scalar",
            Self::Avx2 => "avx2",
            Self::Vnni => "avx512-vnni",
        }
    }
}

/// s8 weights `[n, k]` packed for every kernel, plus the row sums used for zero-point
/// correction.
///
/// The SIMD layouts are "k-group interleaved": output channels in blocks of `NB` (one i32
/// lane each), and for each block the weights of `G` consecutive inputs side by side, so one
/// broadcast of `G` activation values multiplies `NB` channels at once and no horizontal sums
/// are needed: `index = ((block · groups + g) · NB + lane) · G + j` for input `k = g · G + j`.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedWeights {
    /// Output channels.
    pub(crate) n: usize,
    /// Input width.
    pub(crate) k: usize,
    /// Padded input width (row stride of activations and of `w8`).
    pub(crate) kp: usize,
    /// `[n, kp]` s8, row-major (the scalar reference).
    pub(crate) w8: Vec<i8>,
    /// AVX2 `vpmaddubsw` layout: NB = 8, G = 4, s8.
    pub(crate) k4_nb8: Vec<i8>,
    /// AVX2 `vpmaddwd` layout: NB = 8, G = 2, i16.
    pub(crate) k2_nb8: Vec<i16>,
    /// AVX-512 VNNI layout: NB = 16, G = 4, s8.
    pub(crate) k4_nb16: Vec<i8>,
    /// Σ_k w[n, k] per output channel.
    pub(crate) row_sums: Vec<i32>,
    /// Largest |w|; ≤ 63 enables the AVX2 `vpmaddubsw` path.
    pub(crate) max_abs: u8,
}

/// Interleaves `[n, kp]` weights into blocks of `nb` channels and groups of `g` inputs.
fn interleave<T: Copy + Default>(w: &[T], n: usize, kp: usize, nb: usize, g: usize) -> Vec<T> {
    let blocks = n.div_ceil(nb);
    let groups = kp / g;
    let mut out = vec![T::default(); blocks * groups * nb * g];
    for c in 0..n {
        let (b, lane) = (c / nb, c % nb);
        for k in 0..kp {
            let (gi, j) = (k / g, k % g);
            out[((b * groups + gi) * nb + lane) * g + j] = w[c * kp + k];
        }
    }
    out
}

/// True when `v` holds exactly the interleaved layout of `n` channels in blocks of `nb` and
/// `kp` inputs in groups of `g`: the SIMD kernels check this before reading it.
pub(crate) fn has_layout<T>(v: &[T], n: usize, kp: usize, nb: usize, g: usize) -> bool {
    v.len() == n.div_ceil(nb) * (kp / g) * nb * g
}

impl PackedWeights {
    /// Packs row-major `[n, k]` weights in every kernel's layout (tests, benchmarks).
    pub fn new(w: &[i8], n: usize, k: usize) -> Self {
        let mut p = Self::for_kernel(w, n, k, Kernel::Scalar);
        p.k4_nb8 = interleave(&p.w8, n, p.kp, 8, 4);
        p.k2_nb8 = interleave(&p.w8.iter().map(|&v| i16::from(v)).collect::<Vec<_>>(), n, p.kp, 8, 2);
        p.k4_nb16 = interleave(&p.w8, n, p.kp, 16, 4);
        p
    }

    /// Packs row-major `[n, k]` weights for one kernel only: the scalar rows plus that
    /// kernel's layout (a loaded model keeps one copy of its weights per layout it runs).
    /// Another kernel given these weights falls back to the scalar reference.
    pub fn for_kernel(w: &[i8], n: usize, k: usize, kernel: Kernel) -> Self {
        assert_eq!(w.len(), n * k, "weights must be [n, k]");
        let kp = padded(k);
        let mut w8 = vec![0i8; n * kp];
        for r in 0..n {
            w8[r * kp..r * kp + k].copy_from_slice(&w[r * k..(r + 1) * k]);
        }
        let row_sums = (0..n).map(|r| w[r * k..(r + 1) * k].iter().map(|&v| i32::from(v)).sum()).collect();
        let max_abs = w.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0);
        let (mut k4_nb8, mut k2_nb8, mut k4_nb16) = (Vec::new(), Vec::new(), Vec::new());
        let narrow = n <= x86::NARROW;
        match kernel {
            Kernel::Scalar => {}
            Kernel::Avx2 if narrow => {}
            Kernel::Avx2 if max_abs <= 63 => k4_nb8 = interleave(&w8, n, kp, 8, 4),
            Kernel::Avx2 => k2_nb8 = interleave(&w8.iter().map(|&v| i16::from(v)).collect::<Vec<_>>(), n, kp, 8, 2),
            Kernel::Vnni if narrow => {}
            Kernel::Vnni => k4_nb16 = interleave(&w8, n, kp, 16, 4),
        }
        Self { n, k, kp, w8, k4_nb8, k2_nb8, k4_nb16, row_sums, max_abs }
    }

    /// Output channels.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input width.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Padded input width: the row stride of activations.
    pub fn kp(&self) -> usize {
        self.kp
    }

    /// Bytes held (every layout kept).
    pub fn bytes(&self) -> usize {
        self.w8.len() + self.k4_nb8.len() + 2 * self.k2_nb8.len() + self.k4_nb16.len() + 4 * self.row_sums.len()
    }

    /// The per-channel epilogue offset `bias_q - input_zero_point · Σ_k w`: the zero-point
    /// correction and the bias folded into one i32 per output channel.
    pub(crate) fn offsets(&self, bias_q: &[i32], input_zero_point: i32) -> Vec<i32> {
        bias_q.iter().zip(&self.row_sums).map(|(&b, &s)| b - input_zero_point * s).collect()
    }
}

/// Round half to even for |x| < 2^22 (larger magnitudes are clamped first), without SSE4.1:
/// adding and subtracting 1.5·2^23 leaves the nearest-even integer, as `cvtps2dq` does.
#[inline]
pub(crate) fn round_even(x: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0;
    let x = x.clamp(-4_194_304.0, 4_194_304.0);
    ((x + MAGIC) - MAGIC) as i32
}

/// Where a GEMM's results go.
pub(crate) enum Sink<'a> {
    /// Raw i32 accumulators, `[m, n]` row-major.
    Acc(&'a mut [i32]),
    /// Requantized u8 rows of stride `stride`, the epilogue applied as each tile is stored.
    U8 {
        /// The requantization.
        ep: &'a Epilogue,
        /// Output rows.
        out: &'a mut [u8],
        /// Output row stride (the next layer's padded width).
        stride: usize,
    },
}

/// `acc[r * n + c] = Σ_k x[r * kp + k] · w[c, k]` for `m` rows of padded u8 activations.
///
/// # Panics
/// When `x` holds fewer than `m · kp` bytes or `acc` fewer than `m · n` values.
pub fn gemm_u8s8(kernel: Kernel, x: &[u8], m: usize, w: &PackedWeights, acc: &mut [i32]) {
    assert!(x.len() >= len(m, w.kp) && acc.len() >= len(m, w.n), "buffers too small");
    match kernel {
        Kernel::Scalar => scalar::gemm_u8s8(x, m, w, acc),
        Kernel::Avx2 => x86::gemm_avx2(x, m, w, Sink::Acc(acc)),
        Kernel::Vnni => x86::gemm_vnni(x, m, w, Sink::Acc(acc)),
    }
}

/// GEMM followed by [`requantize`], fused: the same bytes as running the two one after the
/// other (the scalar kernel does exactly that), without storing the accumulators.
pub(crate) fn gemm_requantize(
    kernel: Kernel,
    x: &[u8],
    m: usize,
    w: &PackedWeights,
    ep: &Epilogue,
    out: &mut [u8],
    stride: usize,
) {
    assert!(x.len() >= len(m, w.kp), "input buffer too small");
    check_epilogue(ep, w.n, m, out.len(), stride);
    match kernel {
        Kernel::Scalar => {
            let mut acc = vec![0i32; m * w.n];
            scalar::gemm_u8s8(x, m, w, &mut acc);
            requantize_scalar(&acc, m, ep, out, stride);
        }
        Kernel::Avx2 => x86::gemm_avx2(x, m, w, Sink::U8 { ep, out, stride }),
        Kernel::Vnni => x86::gemm_vnni(x, m, w, Sink::U8 { ep, out, stride }),
    }
}

/// How one layer's i32 accumulators become its output.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Epilogue {
    /// Zero point of the layer's input activations.
    pub(crate) input_zero_point: i32,
    /// Per output channel: `bias_q - input_zero_point · row_sum` (folded at load time).
    pub(crate) offset: Vec<i32>,
    /// Per output channel: `s_x · s_w / s_y` (hidden) or `s_x · s_w` (float output).
    pub(crate) multiplier: Vec<f32>,
    /// Zero point of the output activations (hidden layers).
    pub(crate) output_zero_point: i32,
    /// Clamp the output at the zero point (fused ReLU).
    pub(crate) relu: bool,
}

/// Requantizes `acc [m, n]` to u8: `clamp(round_even((acc + offset) · multiplier) + z_out)`,
/// lower bound `z_out` with ReLU, else 0. Writes rows with stride `out_stride`.
#[cfg(test)]
pub(crate) fn requantize(acc: &[i32], m: usize, ep: &Epilogue, out: &mut [u8], out_stride: usize) {
    if x86::has_avx2() {
        x86::requantize_avx2(acc, m, ep, out, out_stride);
    } else {
        requantize_scalar(acc, m, ep, out, out_stride);
    }
}

/// The reference epilogue (same results as the AVX2 one, bit for bit).
pub(crate) fn requantize_scalar(acc: &[i32], m: usize, ep: &Epilogue, out: &mut [u8], out_stride: usize) {
    let n = ep.offset.len();
    assert!(acc.len() >= len(m, n), "accumulators too small");
    check_epilogue(ep, n, m, out.len(), out_stride);
    for r in 0..m {
        let a = &acc[r * n..(r + 1) * n];
        let o = &mut out[r * out_stride..r * out_stride + n];
        for c in 0..n {
            o[c] = requantize_one(a[c], c, ep);
        }
    }
}

/// Checks an epilogue of `n` channels and a u8 output of `m` rows of stride `stride`.
pub(crate) fn check_epilogue(ep: &Epilogue, n: usize, m: usize, out_len: usize, stride: usize) {
    assert!(ep.offset.len() == n && ep.multiplier.len() == n, "epilogue must have n channels");
    assert!(stride >= n && out_len >= span(m, stride, n), "output buffer too small");
}

impl Epilogue {
    /// The lowest output code: the zero point with ReLU (fused ReLU clamps there), else 0.
    pub(crate) fn lowest_code(&self) -> i32 {
        if self.relu { self.output_zero_point } else { 0 }
    }

    /// `255 - z_out` as f32: the largest rounded value before the zero point is added, where
    /// the SIMD epilogues clamp in float before rounding (an integer, so the same codes).
    pub(crate) fn highest_before_zero_point(&self) -> f32 {
        (255 - self.output_zero_point) as f32
    }
}

/// The reference epilogue of one accumulator of channel `c`.
#[inline]
pub(crate) fn requantize_one(acc: i32, c: usize, ep: &Epilogue) -> u8 {
    let v = round_even((acc + ep.offset[c]) as f32 * ep.multiplier[c]) + ep.output_zero_point;
    v.clamp(ep.lowest_code(), 255) as u8
}

/// Float outputs: `(acc + offset) · multiplier` (the final logit layer).
pub(crate) fn dequantize_output(acc: &[i32], m: usize, ep: &Epilogue, out: &mut [f32]) {
    let n = ep.offset.len();
    assert!(ep.multiplier.len() == n && acc.len() >= len(m, n) && out.len() >= len(m, n), "buffers too small");
    if n == 1 {
        // The logit layer: one flat loop the compiler vectorizes (same operations per value).
        let (off, mul) = (ep.offset[0], ep.multiplier[0]);
        for (o, &a) in out[..m].iter_mut().zip(&acc[..m]) {
            *o = (a + off) as f32 * mul;
        }
        return;
    }
    for r in 0..m {
        for c in 0..n {
            out[r * n + c] = (acc[r * n + c] + ep.offset[c]) as f32 * ep.multiplier[c];
        }
    }
}

#[cfg(test)]
mod tests;
