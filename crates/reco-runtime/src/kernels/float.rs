//! Float dense layers: `y[r, c] = act(Σ_k x[r, k] · w[c, k] + b[c])` on weights packed once
//! at load ([`PackedF32`]), with the bias and ReLU fused into the tile store.
//!
//! Every kernel computes each output the same way, bit for bit: one fused multiply-add per
//! input in order `k = 0, 1, …` starting from +0, then one rounded addition of the bias, then
//! `v > 0 ? v : 0`. So a row scores the same alone or at any position of any batch, on the
//! scalar reference (`f32::mul_add`), AVX2 + FMA and AVX-512. A GEMM that sums each output
//! with FMAs in order and then adds the bias gives the same bits too: ONNX Runtime's MLAS
//! does within its K block (our FP32 exports score exactly as we do on layers of up to 256
//! inputs, measured); on longer inputs it sums block by block and agrees to float rounding.
//!
//! Layout: output channels in panels of [`LANES`] (16, zero-padded), each panel's weights
//! `[k][16]`, so one weight load per input serves a row's 16 outputs and a broadcast of
//! `x[r, k]` is the other operand. AVX-512 runs tiles of 8 rows × 2 panels (16 accumulators),
//! AVX2 4 rows × 1 panel (8). A one-output layer (a logit) with AVX-512 puts 16 rows in the
//! lanes instead, transposing blocks of 16 × 16 inputs in registers, so no lane is padding.
//! Outputs are written whole panels wide (padding lanes hold the sum over zero weights, 0,
//! or NaN for non-finite inputs, or 0 from the one-output path; nothing reads them).
//!
//! Inputs that are mostly exact zeros (a ReLU's outputs) can skip them
//! ([`dense_f32_skipping_zeros`], AVX-512): each row's nonzero inputs are listed (position and
//! value) and only those are multiplied in, in the same order, so the sums are the same
//! (`fma(0, w, acc)` is `acc` for finite `w`). Each step is one broadcast and one weight load
//! per panel, without the dense tiles' reuse of a weight load across 8 rows, so it pays below
//! about 55% nonzero on layers of more than 32 outputs (3 panels or more), only on nearly
//! all-zero inputs on narrower ones, and never on one-output layers (rows as lanes win).

use super::Kernel;

/// Output channels per panel.
pub const LANES: usize = 16;

/// One input's weights for a panel's [`LANES`] channels, 64-byte aligned: a vector load of it
/// never spans two cache lines (the tiles that skip zero inputs load one per multiply-add).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[repr(C, align(64))]
struct PanelRow([f32; LANES]);

/// A growable buffer of floats whose start is 64-byte aligned: rows of whole panels in it
/// (a layer's activations) start on cache lines, so the tiles' vector loads and stores of
/// them never span two.
#[derive(Debug, Default)]
pub struct AlignedF32 {
    lines: Vec<PanelRow>,
}

impl AlignedF32 {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self { lines: Vec::new() }
    }

    /// The first `len` floats, zero-filled where never written, growing the buffer if needed.
    pub fn get_mut(&mut self, len: usize) -> &mut [f32] {
        let lines = len.div_ceil(LANES);
        if self.lines.len() < lines {
            self.lines.resize(lines, PanelRow::default());
        }
        // SAFETY: `PanelRow` is `repr(C)` of LANES f32s, so `lines` rows are that many
        // contiguous initialized f32s, at least `len`; the borrow is `self`'s.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<f32>(), len) }
    }
}

/// A float layer's weights `[n, k]` and bias `[n]` in panels of [`LANES`] channels.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedF32 {
    n: usize,
    k: usize,
    /// `[panels][k]` rows of `LANES`, channels past `n` zero.
    panels: Vec<PanelRow>,
    /// `[panels · LANES]`, padding zero.
    bias: Vec<f32>,
    /// Every weight is finite, so an input of zero adds nothing whatever it meets: the
    /// condition for [`dense_f32_skipping_zeros`] to skip it.
    finite: bool,
}

impl PackedF32 {
    /// Packs row-major `[n, k]` weights and their bias.
    ///
    /// # Panics
    /// When `weight` is not `n · k` values or `bias` not `n`.
    pub fn new(weight: &[f32], bias: &[f32], n: usize, k: usize) -> Self {
        assert!(weight.len() == n * k && bias.len() == n, "weights must be [n, k] and bias [n]");
        let np = n.div_ceil(LANES) * LANES;
        let mut panels = vec![PanelRow::default(); np / LANES * k];
        for c in 0..n {
            let (p, lane) = (c / LANES, c % LANES);
            for i in 0..k {
                panels[p * k + i].0[lane] = weight[c * k + i];
            }
        }
        let mut padded = vec![0f32; np];
        padded[..n].copy_from_slice(bias);
        let finite = weight.iter().all(|v| v.is_finite());
        Self { n, k, panels, bias: padded, finite }
    }

    /// Output channels.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input width.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output channels rounded up to whole panels: the narrowest output row stride.
    pub fn np(&self) -> usize {
        self.bias.len()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        4 * (self.panels.len() * LANES + self.bias.len())
    }

    /// The packed weights as `[panels][k][LANES]` floats.
    fn weights(&self) -> *const f32 {
        self.panels.as_ptr().cast()
    }
}

/// Which float code runs for an INT8 [`Kernel`] choice: AVX-512 F with VNNI, AVX2 when FMA
/// is present too, the reference otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Scalar,
    Avx2,
    Avx512,
}

fn path_of(kernel: Kernel) -> Path {
    match kernel {
        Kernel::Vnni if has_avx512f() => Path::Avx512,
        Kernel::Avx2 | Kernel::Vnni if has_avx2_fma() => Path::Avx2,
        _ => Path::Scalar,
    }
}

/// Floats per fused multiply-add of the float kernel that runs for `kernel` (16 with AVX-512,
/// 8 with AVX2 + FMA), `None` for the scalar reference.
pub fn vector_lanes(kernel: Kernel) -> Option<usize> {
    match path_of(kernel) {
        Path::Avx512 => Some(16),
        Path::Avx2 => Some(8),
        Path::Scalar => None,
    }
}

/// `rows` rows of floats, `stride` values apart.
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    /// The values.
    pub data: &'a [f32],
    /// Distance between the starts of consecutive rows.
    pub stride: usize,
    /// Number of rows.
    pub rows: usize,
}

/// Output rows, `stride` values apart.
#[derive(Debug)]
pub struct RowsMut<'a> {
    /// The values.
    pub data: &'a mut [f32],
    /// Distance between the starts of consecutive rows.
    pub stride: usize,
}

/// One dense layer on the rows of `x` (at least `k` values read from each) into rows of
/// `out` (stride ≥ [`PackedF32::np`]; every panel lane written).
///
/// # Panics
/// When a stride or buffer is too small for the shapes.
pub fn dense_f32(kernel: Kernel, x: Rows<'_>, w: &PackedF32, relu: bool, out: RowsMut<'_>) {
    let (m, xs, os) = (x.rows, x.stride, out.stride);
    let (x, out) = (x.data, out.data);
    if m == 0 {
        return;
    }
    check_buffers(m, (x.len(), xs), w, (out.len(), os));
    match path_of(kernel) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512 F is present (`path_of`); the sizes were checked above, and the
        // tiles read `k` values of rows < m and write `np` values of rows < m.
        Path::Avx512 => unsafe { x86::dense512(x, xs, m, w, relu, out, os) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 and FMA are present (`path_of`); sizes checked as above.
        Path::Avx2 => unsafe { x86::dense256(x, xs, m, w, relu, out, os) },
        _ => scalar(Rows { data: x, stride: xs, rows: m }, w, relu, RowsMut { data: out, stride: os }),
    }
}

/// Asserts that `m` rows fit both buffers: `k` inputs a row in `x_len` values `xs` apart,
/// and whole panels a row in `out_len` values `os` apart.
///
/// # Panics
/// When a stride or buffer is too small for the shapes.
fn check_buffers(m: usize, (x_len, xs): (usize, usize), w: &PackedF32, (out_len, os): (usize, usize)) {
    assert!(xs >= w.k && x_len >= super::span(m, xs, w.k), "dense_f32: input buffer too small");
    assert!(os >= w.np() && out_len >= super::span(m, os, w.np()), "dense_f32: output buffer too small");
}

/// Rows per decision of [`dense_f32_skipping_zeros`].
const SPARSE_BLOCK: usize = 64;

/// Room for one row's nonzero indices in a pass of [`dense_f32_skipping_zeros`]: the pass's
/// inputs, and 16 more for the last full-width store.
const SPARSE_ROOM: usize = 64 + LANES;

#[cfg(target_arch = "x86_64")]
/// Lines per row list: [`SPARSE_ROOM`] values.
const ROOM_LINES: usize = SPARSE_ROOM / LANES;
#[cfg(target_arch = "x86_64")]
const _: () = assert!(SPARSE_ROOM.is_multiple_of(LANES), "row lists are whole lines");

#[cfg(target_arch = "x86_64")]
/// Each row's nonzero inputs in a pass of [`dense_f32_skipping_zeros`]: for each of
/// `SPARSE_BLOCK` rows, `SPARSE_ROOM` positions then the values at them, in one buffer of
/// aligned lines (two separate vectors could land a multiple of 4 KB apart, and their
/// loads and stores then falsely depend on each other).
#[derive(Default)]
struct Lists {
    lines: Vec<PanelRow>,
}

#[cfg(target_arch = "x86_64")]
impl Lists {
    fn reserve(&mut self) {
        self.lines.resize(SPARSE_BLOCK * 2 * ROOM_LINES, PanelRow::default());
    }

    /// Row `r`'s positions and values, `SPARSE_ROOM` each.
    ///
    /// # Panics
    /// When `r` is past the rows reserved.
    fn row_mut(&mut self, r: usize) -> (&mut [u32], &mut [f32]) {
        let (idx, vals) = self.lines[r * 2 * ROOM_LINES..(r + 1) * 2 * ROOM_LINES].split_at_mut(ROOM_LINES);
        // SAFETY: `PanelRow` is `repr(C)` of f32s, so its lines are ROOM_LINES · 16 contiguous
        // f32s; a u32 has an f32's size and alignment, and every bit pattern is valid for both.
        unsafe {
            (
                std::slice::from_raw_parts_mut(idx.as_mut_ptr().cast::<u32>(), SPARSE_ROOM),
                std::slice::from_raw_parts_mut(vals.as_mut_ptr().cast::<f32>(), SPARSE_ROOM),
            )
        }
    }

    /// The first `len` positions and values of row `r`.
    ///
    /// # Panics
    /// When `r` is past the rows reserved or `len > SPARSE_ROOM`.
    fn row(&self, r: usize, len: usize) -> (&[u32], &[f32]) {
        assert!(len <= SPARSE_ROOM, "a row list holds at most SPARSE_ROOM values");
        let (idx, vals) = self.lines[r * 2 * ROOM_LINES..(r + 1) * 2 * ROOM_LINES].split_at(ROOM_LINES);
        // SAFETY: as in `row_mut`.
        unsafe {
            (
                std::slice::from_raw_parts(idx.as_ptr().cast::<u32>(), len),
                std::slice::from_raw_parts(vals.as_ptr().cast::<f32>(), len),
            )
        }
    }
}

#[cfg(target_arch = "x86_64")]
thread_local! {
    /// Reused lists of [`dense_f32_skipping_zeros`].
    static SPARSE_LISTS: std::cell::RefCell<Lists> = std::cell::RefCell::new(Lists::default());
}

/// [`dense_f32`] for inputs with many exact zeros, such as the previous layer's ReLU outputs.
///
/// With AVX-512, each block of [`SPARSE_BLOCK`] rows whose first rows' inputs are at most
/// 55% nonzero (20% for layers of 2 to 32 outputs) is computed over each row's nonzero
/// inputs only, in order; a denser block, the other kernels, weights holding a non-finite
/// value and one-output layers (whose 16-rows-as-lanes path beat the lists even on 93% and
/// 97% zeros) go to [`dense_f32`]. (On the ReLU MLPs trained here, 53–97% of hidden
/// activations are exact zeros.)
///
/// Skipping is exact: with finite weights, `fma(±0, w, acc)` is `acc`, so every output has
/// [`dense_f32`]'s value, bit for bit, except that a sum that is exactly -0 (only reachable
/// through products below the smallest subnormal) may stay -0 where the dense sum turns it
/// into +0, which compares equal.
///
/// # Panics
/// As [`dense_f32`].
pub fn dense_f32_skipping_zeros(kernel: Kernel, x: Rows<'_>, w: &PackedF32, relu: bool, out: RowsMut<'_>) {
    if path_of(kernel) != Path::Avx512 || !has_popcnt() || !w.finite || x.rows == 0 || w.n == 1 {
        return dense_f32(kernel, x, w, relu, out);
    }
    #[cfg(target_arch = "x86_64")]
    skip_blocks(x, w, relu, out);
}

#[cfg(test)]
thread_local! {
    /// Blocks [`dense_f32_skipping_zeros`] ran over lists, for the tests to see it did.
    static LISTED_BLOCKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// [`dense_f32_skipping_zeros`] once AVX-512 F and POPCNT are known present and the weights
/// finite: every block of [`SPARSE_BLOCK`] rows through the x86 driver.
#[cfg(target_arch = "x86_64")]
fn skip_blocks(x: Rows<'_>, w: &PackedF32, relu: bool, out: RowsMut<'_>) {
    let (m, xs, os) = (x.rows, x.stride, out.stride);
    let (x, out) = (x.data, out.data);
    check_buffers(m, (x.len(), xs), w, (out.len(), os));
    SPARSE_LISTS.with(|cell| {
        let mut lists = cell.borrow_mut();
        lists.reserve();
        for start in (0..m).step_by(SPARSE_BLOCK) {
            let rows = SPARSE_BLOCK.min(m - start);
            let (xb, ob) = (&x[start * xs..], &mut out[start * os..]);
            // SAFETY: AVX-512 F and POPCNT are present (the caller); rows start.. < m were
            // checked against both buffers above; `lists` holds SPARSE_BLOCK · SPARSE_ROOM.
            let listed = unsafe { x86::skipping512(xb, xs, rows, w, relu, ob, os, &mut lists) };
            #[cfg(test)]
            LISTED_BLOCKS.with(|c| c.set(c.get() + usize::from(listed)));
            #[cfg(not(test))]
            let _ = listed;
        }
    });
}

/// The reference: the same operations in the same order as the SIMD tiles.
fn scalar(x: Rows<'_>, w: &PackedF32, relu: bool, out: RowsMut<'_>) {
    let (xs, m, os) = (x.stride, x.rows, out.stride);
    let (x, out) = (x.data, out.data);
    let k = w.k;
    for r in 0..m {
        let xr = &x[r * xs..r * xs + k];
        for p in 0..w.np() / LANES {
            let panel = &w.panels[p * k..(p + 1) * k];
            for lane in 0..LANES {
                let mut acc = 0f32;
                for (&v, row) in xr.iter().zip(panel) {
                    acc = v.mul_add(row.0[lane], acc);
                }
                let y = acc + w.bias[p * LANES + lane];
                out[r * os + p * LANES + lane] = if relu { relu_one(y) } else { y };
            }
        }
    }
}

/// ReLU as `maxps(v, 0)` computes it: `v` when `v > 0`, else +0 (also for NaN and -0).
#[inline]
fn relu_one(v: f32) -> f32 {
    if v > 0.0 { v } else { 0.0 }
}

fn has_avx512f() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn has_popcnt() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("popcnt")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The SIMD tiles: `MR` rows × `P` panels of accumulators, one weight load per panel and
    //! one broadcast per row for each input.

    use std::arch::x86_64::*;

    use super::{LANES, PackedF32};
    use crate::kernels::x86::vnni::first_lanes;

    /// A vector register of `LANES` floats: one zmm, or two ymm.
    pub(super) trait Vector: Copy {
        unsafe fn zero() -> Self;
        unsafe fn load(p: *const f32) -> Self;
        unsafe fn splat(v: f32) -> Self;
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
        unsafe fn add(a: Self, b: Self) -> Self;
        unsafe fn relu(a: Self) -> Self;
        unsafe fn store(self, p: *mut f32);
    }

    /// AVX-512: one zmm per panel.
    #[derive(Clone, Copy)]
    pub(super) struct Z(__m512);

    /// AVX2: two ymm per panel.
    #[derive(Clone, Copy)]
    pub(super) struct Y(__m256, __m256);

    impl Vector for Z {
        #[inline(always)]
        unsafe fn zero() -> Self {
            Z(unsafe { _mm512_setzero_ps() })
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Z(unsafe { _mm512_loadu_ps(p) })
        }
        #[inline(always)]
        unsafe fn splat(v: f32) -> Self {
            Z(unsafe { _mm512_set1_ps(v) })
        }
        #[inline(always)]
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
            Z(unsafe { _mm512_fmadd_ps(a.0, b.0, c.0) })
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            Z(unsafe { _mm512_add_ps(a.0, b.0) })
        }
        #[inline(always)]
        unsafe fn relu(a: Self) -> Self {
            Z(unsafe { _mm512_max_ps(a.0, _mm512_setzero_ps()) })
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            unsafe { _mm512_storeu_ps(p, self.0) }
        }
    }

    impl Vector for Y {
        #[inline(always)]
        unsafe fn zero() -> Self {
            unsafe { Y(_mm256_setzero_ps(), _mm256_setzero_ps()) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            unsafe { Y(_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))) }
        }
        #[inline(always)]
        unsafe fn splat(v: f32) -> Self {
            unsafe { Y(_mm256_set1_ps(v), _mm256_set1_ps(v)) }
        }
        #[inline(always)]
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
            unsafe { Y(_mm256_fmadd_ps(a.0, b.0, c.0), _mm256_fmadd_ps(a.1, b.1, c.1)) }
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            unsafe { Y(_mm256_add_ps(a.0, b.0), _mm256_add_ps(a.1, b.1)) }
        }
        #[inline(always)]
        unsafe fn relu(a: Self) -> Self {
            unsafe {
                let z = _mm256_setzero_ps();
                Y(_mm256_max_ps(a.0, z), _mm256_max_ps(a.1, z))
            }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            unsafe {
                _mm256_storeu_ps(p, self.0);
                _mm256_storeu_ps(p.add(8), self.1);
            }
        }
    }

    /// Which part of the inputs a pass covers: `k0..k1`, starting from zero (the first pass,
    /// `k0 = 0`) or from the partial sums a previous pass left in the output, and ending with
    /// the bias and activation (the last, `k1 = k`) or with the partial sums stored. A stored
    /// partial sum is the register's f32 value, so continuing from it gives the same bits as
    /// one pass.
    #[derive(Clone, Copy)]
    struct Pass {
        k0: usize,
        k1: usize,
        relu: bool,
    }

    impl Pass {
        fn first(self) -> bool {
            self.k0 == 0
        }

        fn last(self, w: &PackedF32) -> bool {
            self.k1 == w.k
        }
    }

    /// The passes over `k` inputs, `kc` at a time, in order (one empty pass when `k = 0`).
    fn passes(k: usize, kc: usize, relu: bool) -> impl Iterator<Item = Pass> {
        (0..k.div_ceil(kc).max(1)).map(move |p| Pass { k0: p * kc, k1: ((p + 1) * kc).min(k), relu })
    }

    /// One tile: `R` rows × panels `p0..p0 + P`, over the inputs of `pass`.
    ///
    /// # Safety
    /// The vector type's CPU features are present; `R` rows exist in `x` (stride `xs`, `k`
    /// values each) and `out` (stride `os`, panels `p0..p0 + P` wide), and the panels exist in
    /// `w`.
    #[inline(always)]
    unsafe fn tile<V: Vector, const R: usize, const P: usize>(
        x: *const f32,
        xs: usize,
        w: &PackedF32,
        p0: usize,
        pass: Pass,
        out: *mut f32,
        os: usize,
    ) {
        let k = w.k;
        // SAFETY: the caller guarantees the features and extents used below.
        unsafe {
            let outs: [*mut f32; R] = std::array::from_fn(|r| out.add(r * os));
            let mut acc = resume::<V, R, P>(&outs, p0, pass);
            let rows: [*const f32; R] = std::array::from_fn(|r| x.add(r * xs));
            let panels: [*const f32; P] = std::array::from_fn(|j| w.weights().add((p0 + j) * k * LANES));
            for i in pass.k0..pass.k1 {
                let wv: [V; P] = std::array::from_fn(|j| V::load(panels[j].add(i * LANES)));
                for (row, &xr) in acc.iter_mut().zip(&rows) {
                    let xb = V::splat(*xr.add(i));
                    for (a, &wj) in row.iter_mut().zip(&wv) {
                        *a = V::fma(xb, wj, *a);
                    }
                }
            }
            finish(&acc, &outs, w, p0, pass);
        }
    }

    /// A tile's accumulators at the start of `pass`: zero on the first pass, else the partial
    /// sums the previous pass stored in panels `p0..p0 + P` of each output row `outs[r]`.
    ///
    /// # Safety
    /// The vector type's CPU features are present; each output row has those panels.
    #[inline(always)]
    unsafe fn resume<V: Vector, const R: usize, const P: usize>(
        outs: &[*mut f32; R],
        p0: usize,
        pass: Pass,
    ) -> [[V; P]; R] {
        // SAFETY: the caller guarantees the features and extents used below.
        unsafe {
            let mut acc = [[V::zero(); P]; R];
            if !pass.first() {
                for (a, &o) in acc.iter_mut().zip(outs) {
                    for (j, v) in a.iter_mut().enumerate() {
                        *v = V::load(o.add((p0 + j) * LANES));
                    }
                }
            }
            acc
        }
    }

    /// Stores a tile's accumulators into panels `p0..p0 + P` of each output row `outs[r]`:
    /// on the last pass with the bias added and then the ReLU, else as partial sums.
    ///
    /// # Safety
    /// As [`resume`]; the panels exist in `w`.
    #[inline(always)]
    unsafe fn finish<V: Vector, const R: usize, const P: usize>(
        acc: &[[V; P]; R],
        outs: &[*mut f32; R],
        w: &PackedF32,
        p0: usize,
        pass: Pass,
    ) {
        let last = pass.last(w);
        // SAFETY: the caller guarantees the features and extents used below.
        unsafe {
            for j in 0..P {
                let b = V::load(w.bias.as_ptr().add((p0 + j) * LANES));
                for (a, &o) in acc.iter().zip(outs) {
                    let y = if last { V::add(a[j], b) } else { a[j] };
                    let y = if last && pass.relu { V::relu(y) } else { y };
                    y.store(o.add((p0 + j) * LANES));
                }
            }
        }
    }

    /// `rows` rows (at most `MR`) of panels `p0..p0 + P`: one tile of `MR`, or of the row
    /// count left.
    ///
    /// # Safety
    /// As [`tile`], for `rows` rows.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tiles<V: Vector, const MR: usize, const P: usize>(
        rows: usize,
        x: *const f32,
        xs: usize,
        w: &PackedF32,
        p0: usize,
        pass: Pass,
        out: *mut f32,
        os: usize,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe {
            match rows {
                r if r >= MR => tile::<V, MR, P>(x, xs, w, p0, pass, out, os),
                1 => tile::<V, 1, P>(x, xs, w, p0, pass, out, os),
                2 => tile::<V, 2, P>(x, xs, w, p0, pass, out, os),
                3 => tile::<V, 3, P>(x, xs, w, p0, pass, out, os),
                4 => tile::<V, 4, P>(x, xs, w, p0, pass, out, os),
                5 => tile::<V, 5, P>(x, xs, w, p0, pass, out, os),
                6 => tile::<V, 6, P>(x, xs, w, p0, pass, out, os),
                _ => tile::<V, 7, P>(x, xs, w, p0, pass, out, os),
            }
        }
    }

    /// Inputs per pass: a tile's panels of weights for this many inputs (`KC · P · 64`
    /// bytes) stay in L1 while a block of rows goes by.
    const KC: usize = 128;
    /// Rows per block: the block's inputs for one pass (`RB · KC · 4` bytes) stay in L1/L2
    /// while every panel goes by.
    const RB: usize = 64;

    /// Every row and panel: passes over the inputs `KC` at a time; in each, blocks of `RB`
    /// rows; in each block, panels `P` at a time (then one), each over the block's rows `MR`
    /// at a time.
    ///
    /// # Safety
    /// As [`tile`], for `m` rows and every panel.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn dense<V: Vector, const MR: usize, const P: usize>(
        x: *const f32,
        xs: usize,
        m: usize,
        w: &PackedF32,
        relu: bool,
        out: *mut f32,
        os: usize,
    ) {
        let panels = w.np() / LANES;
        for pass in passes(w.k, KC, relu) {
            let mut b = 0;
            while b < m {
                let rows = RB.min(m - b);
                let mut p = 0;
                while p < panels {
                    let wide = p + P <= panels;
                    let mut r = b;
                    while r < b + rows {
                        let n = MR.min(b + rows - r);
                        // SAFETY: rows r..r + n < m and panels p.. < panels, from the caller.
                        unsafe {
                            let (xr, or) = (x.add(r * xs), out.add(r * os));
                            if wide {
                                tiles::<V, MR, P>(n, xr, xs, w, p, pass, or, os);
                            } else {
                                tiles::<V, MR, 1>(n, xr, xs, w, p, pass, or, os);
                            }
                        }
                        r += n;
                    }
                    p += if wide { P } else { 1 };
                }
                b += rows;
            }
        }
    }

    /// The share of nonzero inputs (in percent, over the sampled rows) above which
    /// [`skipping`] runs the dense tiles, for layers of 3 panels or more and for narrower
    /// ones. Measured with criterion (`relu inputs`, AMD EPYC, 64 rows): [128 → 64] and
    /// [256 → 128] layers ran 1.39× / 1.50× the dense tiles at 35% nonzero, 1.28× / 1.42× at
    /// 45%, 1.09× / 1.19× at 55%; a [64 → 32] layer (2 panels, 4 rows padded together) ran
    /// 0.8–0.96× at 35–55%, so narrow layers only skip when nearly all zero. One-output
    /// layers never come here: [`column`] beats the lists. (AVX2 has no skipping: without a
    /// compress instruction, lists built one input at a time ran the quickstart models 6–8%
    /// slower.)
    const MAX_NONZERO_PERCENT: (usize, usize) = (55, 20);

    /// Writes the positions of `x[..k]`'s nonzero values (NaN included) in order to `idx`,
    /// as byte offsets of their rows in a panel (`i · 64`), and the values to `vals`, each
    /// with room for `k + 16`; returns how many. `k ≤ 2^26`.
    ///
    /// Sixteen inputs at a time: a compare, a compress of their indices in a register (a
    /// compressing store to memory is slow on some CPUs) and one full-width store.
    ///
    /// # Safety
    /// AVX-512 F is present; `k` values exist at `x`, and `k + 16` at `idx` and `vals`.
    #[inline(always)]
    unsafe fn nonzeros(x: *const f32, k: usize, idx: *mut u32, vals: *mut f32) -> usize {
        // SAFETY: lanes past `k` are masked off the load; each store writes 16 values
        // at `n ≤ i`, within the `k + 16` the caller provides.
        unsafe {
            let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            let (mut n, mut i) = (0, 0);
            while i < k {
                let lanes = first_lanes((k - i).min(LANES));
                let v = _mm512_maskz_loadu_ps(lanes, x.add(i));
                let nz = _mm512_mask_cmp_ps_mask::<_CMP_NEQ_UQ>(lanes, v, _mm512_setzero_ps());
                let at = _mm512_slli_epi32::<6>(_mm512_add_epi32(iota, _mm512_set1_epi32(i as i32)));
                _mm512_storeu_si512(idx.add(n).cast(), _mm512_maskz_compress_epi32(nz, at));
                _mm512_storeu_ps(vals.add(n), _mm512_maskz_compress_ps(nz, v));
                n += nz.count_ones() as usize;
                i += 16;
            }
            n
        }
    }
    /// How many of `x[..k]` are nonzero (NaN included).
    ///
    /// # Safety
    /// AVX-512 F is present; `k` values exist at `x`.
    #[inline(always)]
    unsafe fn count_nonzeros(x: *const f32, k: usize) -> usize {
        // SAFETY: lanes past `k` are masked off the load.
        unsafe {
            let (mut n, mut i) = (0, 0);
            while i < k {
                let lanes = first_lanes((k - i).min(LANES));
                let v = _mm512_maskz_loadu_ps(lanes, x.add(i));
                n += _mm512_mask_cmp_ps_mask::<_CMP_NEQ_UQ>(lanes, v, _mm512_setzero_ps()).count_ones() as usize;
                i += 16;
            }
            n
        }
    }

    /// One row's part of a pass for [`sparse_tile`]: the positions (byte offsets from the
    /// pass's first panel row, ascending) of its nonzero inputs, the values there, and its
    /// output row.
    #[derive(Clone, Copy)]
    struct Sparse<'a> {
        idx: &'a [u32],
        vals: &'a [f32],
        out: *mut f32,
    }

    /// `R` rows × panels `p0..p0 + P` over each row's nonzero inputs of `pass` in order: the
    /// dense tile's sums less the zero inputs' multiply-adds. The rows advance together
    /// through their common length (independent accumulators), then each alone.
    ///
    /// # Safety
    /// The vector type's CPU features are present; every position is of an input
    /// `< pass.k1 - pass.k0`, each `out` has panels `p0..p0 + P`, which exist in `w`.
    #[inline(always)]
    unsafe fn sparse_tile<V: Vector, const R: usize, const P: usize>(
        rows: [Sparse<'_>; R],
        w: &PackedF32,
        p0: usize,
        pass: Pass,
    ) {
        // SAFETY: the caller guarantees the features and extents used below.
        unsafe {
            let panels: [*const f32; P] = std::array::from_fn(|j| w.weights().add(((p0 + j) * w.k + pass.k0) * LANES));
            let outs: [*mut f32; R] = std::array::from_fn(|r| rows[r].out);
            let mut acc = resume::<V, R, P>(&outs, p0, pass);
            let common = rows.iter().map(|r| r.idx.len()).min().unwrap_or(0);
            for t in 0..common {
                for (a, r) in acc.iter_mut().zip(&rows) {
                    sparse_step(a, &panels, *r.idx.get_unchecked(t), *r.vals.get_unchecked(t));
                }
            }
            for (a, r) in acc.iter_mut().zip(&rows) {
                for (&i, &v) in r.idx[common..].iter().zip(&r.vals[common..]) {
                    sparse_step(a, &panels, i, v);
                }
            }
            finish(&acc, &outs, w, p0, pass);
        }
    }

    /// The input at byte offset `i` in a panel (its row), of value `v`, of one row into its
    /// `P` accumulators.
    ///
    /// # Safety
    /// As [`sparse_tile`].
    #[inline(always)]
    unsafe fn sparse_step<V: Vector, const P: usize>(acc: &mut [V; P], panels: &[*const f32; P], i: u32, v: f32) {
        // SAFETY: `i` is a row within the pass (the caller), so each panel's row exists.
        unsafe {
            let xb = V::splat(v);
            for (a, &p) in acc.iter_mut().zip(panels) {
                *a = V::fma(xb, V::load(p.byte_add(i as usize)), *a);
            }
        }
    }

    /// Panels `p0..` (at most 4 of them) of `R` rows: [`sparse_tile`] of that width.
    ///
    /// # Safety
    /// As [`sparse_tile`], for `min(4, panels - p0)` panels.
    #[inline(always)]
    unsafe fn sparse_tiles<V: Vector, const R: usize>(rows: [Sparse<'_>; R], w: &PackedF32, p0: usize, pass: Pass) {
        // SAFETY: forwarded from the caller.
        unsafe {
            match w.np() / LANES - p0 {
                1 => sparse_tile::<V, R, 1>(rows, w, p0, pass),
                2 => sparse_tile::<V, R, 2>(rows, w, p0, pass),
                3 => sparse_tile::<V, R, 3>(rows, w, p0, pass),
                _ => sparse_tile::<V, R, 4>(rows, w, p0, pass),
            }
        }
    }

    /// Rows whose inputs are counted to choose between [`skipping`]'s paths.
    const SAMPLE: usize = 8;

    /// Inputs per pass of [`skipping`]: four panels' weights for this many inputs (16 KB)
    /// stay in L1 while the rows, touching them at their nonzero inputs, go by.
    const SPARSE_KC: usize = super::SPARSE_ROOM - LANES;

    /// At most [`super::SPARSE_BLOCK`] rows, with AVX-512. When the first [`SAMPLE`] rows'
    /// inputs are at most [`MAX_NONZERO_PERCENT`] nonzero (by the layer's width): passes of
    /// [`SPARSE_KC`] inputs; in each, every row's nonzero inputs of the pass listed, then
    /// [`sparse_tiles`] over 4 panels at a time. Otherwise [`dense_z`].
    ///
    /// Layers of 3 panels or more run pairs of rows (up to 8 independent accumulators), each
    /// finishing its longer list alone. Narrower layers run 4 rows at a time, their lists
    /// padded to the longest of the 4 with zeros at index 0 (adding nothing, as a skipped
    /// zero adds nothing), so no row runs alone on 1 or 2 accumulators.
    ///
    /// # Safety
    /// As [`dense`] with AVX-512 F and POPCNT, `m ≤ SPARSE_BLOCK` and `lists` holding
    /// `SPARSE_BLOCK · SPARSE_ROOM` of each kind.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn skipping(
        x: *const f32,
        xs: usize,
        m: usize,
        w: &PackedF32,
        relu: bool,
        out: *mut f32,
        os: usize,
        lists: &mut super::Lists,
    ) -> bool {
        let k = w.k;
        // SAFETY: rows < m ≤ SPARSE_BLOCK exist in x and out (the caller); a row's lists
        // have SPARSE_ROOM: room for the pass's ≤ SPARSE_KC inputs + 16.
        unsafe {
            let sample = m.min(SAMPLE);
            let mut nonzero = 0;
            for r in 0..sample {
                nonzero += count_nonzeros(x.add(r * xs), k);
            }
            let narrow = w.np() <= 2 * LANES;
            let most = if narrow { MAX_NONZERO_PERCENT.1 } else { MAX_NONZERO_PERCENT.0 };
            if 100 * nonzero > most * sample * k {
                dense_z(x, xs, m, w, relu, out, os);
                return false;
            }
            let mut counts = [0usize; super::SPARSE_BLOCK];
            for pass in passes(k, SPARSE_KC, relu) {
                for (r, c) in counts.iter_mut().enumerate().take(m) {
                    let (idx, vals) = lists.row_mut(r);
                    let x = x.add(r * xs + pass.k0);
                    *c = nonzeros(x, pass.k1 - pass.k0, idx.as_mut_ptr(), vals.as_mut_ptr());
                }
                if narrow {
                    pad(lists, &mut counts[..m]);
                }
                let lists = &*lists;
                let row = |r: usize| {
                    let (idx, vals) = lists.row(r, counts[r]);
                    Sparse { idx, vals, out: out.add(r * os) }
                };
                for p0 in (0..w.np() / LANES).step_by(4) {
                    let mut r = 0;
                    if narrow {
                        while r + 4 <= m {
                            sparse_tiles::<Z, 4>([row(r), row(r + 1), row(r + 2), row(r + 3)], w, p0, pass);
                            r += 4;
                        }
                    }
                    while r + 2 <= m {
                        sparse_tiles::<Z, 2>([row(r), row(r + 1)], w, p0, pass);
                        r += 2;
                    }
                    if r < m {
                        sparse_tiles::<Z, 1>([row(r)], w, p0, pass);
                    }
                }
            }
        }
        true
    }

    /// Pads each group of 4 rows' lists to the group's longest with zeros at offset 0 (the
    /// pass's first input row, which exists: a list is only padded when another in its group
    /// is longer, so the pass has inputs).
    fn pad(lists: &mut super::Lists, counts: &mut [usize]) {
        for (g, group) in counts.chunks_mut(4).enumerate() {
            let longest = group.iter().copied().max().unwrap_or(0);
            for (i, c) in group.iter_mut().enumerate() {
                let (idx, vals) = lists.row_mut(4 * g + i);
                // Whole 16-value stores (the room leaves 16 past the longest list): a call
                // to memset per row costs more than the padding.
                for j in (*c..longest).step_by(LANES) {
                    idx[j..j + LANES].copy_from_slice(&[0; LANES]);
                    vals[j..j + LANES].copy_from_slice(&[0.0; LANES]);
                }
                *c = longest;
            }
        }
    }

    /// Every row with AVX-512: [`column`] for a one-output layer, else [`dense`].
    ///
    /// # Safety
    /// AVX-512 F is present, and the buffers were checked by [`super::dense_f32`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dense512(
        x: &[f32],
        xs: usize,
        m: usize,
        w: &PackedF32,
        relu: bool,
        out: &mut [f32],
        os: usize,
    ) {
        // SAFETY: the caller checked every row and panel against the buffers.
        unsafe { dense_z(x.as_ptr(), xs, m, w, relu, out.as_mut_ptr(), os) }
    }

    /// [`dense512`] on pointers.
    ///
    /// # Safety
    /// As [`dense`], with AVX-512 F.
    #[inline(always)]
    unsafe fn dense_z(x: *const f32, xs: usize, m: usize, w: &PackedF32, relu: bool, out: *mut f32, os: usize) {
        // SAFETY: forwarded from the caller.
        unsafe {
            if w.n == 1 {
                column(x, xs, m, w, relu, out, os);
            } else {
                dense::<Z, 8, 2>(x, xs, m, w, relu, out, os);
            }
        }
    }

    /// A one-output layer (a logit), 16 rows at a time as the lanes of one register: each
    /// block of 16 inputs of the 16 rows is transposed in registers, so that one
    /// multiply-add by a broadcast weight serves 16 rows, where a panel would compute 1
    /// useful lane of 16. Each row's sum is the same sequence of fused multiply-adds from +0,
    /// then the bias and the ReLU, so the bits are the panel tiles'. The output rows are
    /// written a panel wide, the padding lanes 0; rows past the last 16 go to [`dense`].
    ///
    /// # Safety
    /// As [`dense`], with AVX-512 F and `w.n == 1`.
    #[inline(always)]
    unsafe fn column(x: *const f32, xs: usize, m: usize, w: &PackedF32, relu: bool, out: *mut f32, os: usize) {
        let full = m / LANES * LANES;
        // SAFETY: rows < m exist in x (k values each) and out (a panel each), from the caller;
        // masked-off lanes of a load are not read.
        unsafe {
            let weights = w.weights();
            let bias = _mm512_set1_ps(*w.bias.as_ptr());
            for r0 in (0..full).step_by(LANES) {
                let rows = x.add(r0 * xs);
                let mut acc = _mm512_setzero_ps();
                for i in (0..w.k).step_by(LANES) {
                    let cols = (w.k - i).min(LANES);
                    let lanes = first_lanes(cols);
                    let block: [__m512; LANES] =
                        std::array::from_fn(|r| _mm512_maskz_loadu_ps(lanes, rows.add(r * xs + i)));
                    for (c, col) in transpose(block).iter().enumerate().take(cols) {
                        acc = _mm512_fmadd_ps(*col, _mm512_set1_ps(*weights.add((i + c) * LANES)), acc);
                    }
                }
                let y = _mm512_add_ps(acc, bias);
                let y = if relu { _mm512_max_ps(y, _mm512_setzero_ps()) } else { y };
                for r in 0..LANES {
                    let lane = _mm512_maskz_permutexvar_ps(1, _mm512_set1_epi32(r as i32), y);
                    _mm512_storeu_ps(out.add((r0 + r) * os), lane);
                }
            }
            if full < m {
                dense::<Z, 8, 2>(x.add(full * xs), xs, m - full, w, relu, out.add(full * os), os);
            }
        }
    }

    /// A 16 × 16 transpose: row `r` of the result holds element `r` of every input row.
    /// Pairs of rows interleaved by 32 then 64 bits within 128-bit lanes, then the 128-bit
    /// lanes of each group of four gathered (64 shuffles).
    ///
    /// # Safety
    /// AVX-512 F is present.
    #[inline(always)]
    unsafe fn transpose(a: [__m512; LANES]) -> [__m512; LANES] {
        // SAFETY: register-only AVX-512 F operations (the caller guarantees the feature).
        unsafe {
            // b[2j] lane L: rows 2j, 2j+1 at columns 4L, 4L+1; b[2j+1]: at 4L+2, 4L+3.
            let b: [__m512; LANES] = std::array::from_fn(|i| {
                let (x, y) = (a[i & !1], a[i | 1]);
                if i % 2 == 0 { _mm512_unpacklo_ps(x, y) } else { _mm512_unpackhi_ps(x, y) }
            });
            // c[4j + q] lane L: column 4L + q of rows 4j..4j+3.
            let c: [__m512; LANES] = std::array::from_fn(|i| {
                let (j, q) = (i / 4, i % 4);
                let (x, y) = (_mm512_castps_pd(b[4 * j + q / 2]), _mm512_castps_pd(b[4 * j + 2 + q / 2]));
                _mm512_castpd_ps(if q % 2 == 0 { _mm512_unpacklo_pd(x, y) } else { _mm512_unpackhi_pd(x, y) })
            });
            // d[4L + q]: lane L of c[q], c[4 + q], c[8 + q], c[12 + q].
            let mut d = [_mm512_setzero_ps(); LANES];
            for q in 0..4 {
                let e0 = _mm512_shuffle_f32x4::<0x44>(c[q], c[4 + q]);
                let e1 = _mm512_shuffle_f32x4::<0xEE>(c[q], c[4 + q]);
                let e2 = _mm512_shuffle_f32x4::<0x44>(c[8 + q], c[12 + q]);
                let e3 = _mm512_shuffle_f32x4::<0xEE>(c[8 + q], c[12 + q]);
                d[q] = _mm512_shuffle_f32x4::<0x88>(e0, e2);
                d[4 + q] = _mm512_shuffle_f32x4::<0xDD>(e0, e2);
                d[8 + q] = _mm512_shuffle_f32x4::<0x88>(e1, e3);
                d[12 + q] = _mm512_shuffle_f32x4::<0xDD>(e1, e3);
            }
            d
        }
    }

    /// Every row with AVX2 + FMA: [`dense`] in tiles of 4 rows × 1 panel.
    ///
    /// # Safety
    /// AVX2 and FMA are present, and the buffers were checked by [`super::dense_f32`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dense256(
        x: &[f32],
        xs: usize,
        m: usize,
        w: &PackedF32,
        relu: bool,
        out: &mut [f32],
        os: usize,
    ) {
        // SAFETY: the caller checked every row and panel against the buffers.
        unsafe { dense::<Y, 4, 1>(x.as_ptr(), xs, m, w, relu, out.as_mut_ptr(), os) }
    }

    /// At most [`super::SPARSE_BLOCK`] rows through [`skipping`]; whether it ran the lists.
    ///
    /// # Safety
    /// AVX-512 F and POPCNT are present, the buffers were checked by
    /// [`super::dense_f32_skipping_zeros`], `m ≤ SPARSE_BLOCK` and `lists` holds
    /// `SPARSE_BLOCK · SPARSE_ROOM` values of each kind.
    #[target_feature(enable = "avx512f,popcnt")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn skipping512(
        x: &[f32],
        xs: usize,
        m: usize,
        w: &PackedF32,
        relu: bool,
        out: &mut [f32],
        os: usize,
        lists: &mut super::Lists,
    ) -> bool {
        // SAFETY: the caller checked every row and panel against the buffers.
        unsafe { skipping(x.as_ptr(), xs, m, w, relu, out.as_mut_ptr(), os, lists) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Row-major weights, no packing: the sequential fused sum written out directly.
    fn direct(x: Rows<'_>, (w, b): (&[f32], &[f32]), n: usize, k: usize, relu: bool) -> Vec<f32> {
        let (x, xs, m) = (x.data, x.stride, x.rows);
        let mut out = vec![0f32; m * n];
        for r in 0..m {
            for c in 0..n {
                let acc = (0..k).fold(0f32, |acc, i| x[r * xs + i].mul_add(w[c * k + i], acc));
                let y = acc + b[c];
                out[r * n + c] = if relu { y.max(0.0) } else { y };
            }
        }
        out
    }

    fn values(rng: &mut Rng, len: usize, scale: f64) -> Vec<f32> {
        (0..len).map(|_| (rng.normal() * scale) as f32).collect()
    }

    /// Runs `kernel` with output stride `os` and returns the `[m, n]` part, after checking that
    /// every padding lane up to `np` was written as 0.
    fn run(kernel: Kernel, x: &[f32], xs: usize, m: usize, p: &PackedF32, relu: bool, os: usize) -> Vec<f32> {
        let mut out = vec![f32::NAN; m * os];
        dense_f32(kernel, Rows { data: x, stride: xs, rows: m }, p, relu, RowsMut { data: &mut out, stride: os });
        let mut got = Vec::with_capacity(m * p.n());
        for r in 0..m {
            got.extend_from_slice(&out[r * os..r * os + p.n()]);
            let pad = &out[r * os + p.n()..r * os + p.np()];
            assert!(pad.iter().all(|&v| v == 0.0), "padding lanes of row {r} not zero: {pad:?}");
            assert!(out[r * os + p.np()..(r + 1) * os].iter().all(|v| v.is_nan()), "wrote past the panels");
        }
        got
    }

    #[test]
    fn every_kernel_gives_the_direct_sums_bit_for_bit() {
        let mut rng = Rng::new(7);
        // k past 128 runs several passes that continue from stored partial sums (129: one
        // input in the second, 300: three passes); m past 64 several row blocks.
        for &(m, k, n) in &[
            (1, 1, 1),
            (3, 35, 1),
            (9, 35, 128),
            (17, 128, 64),
            (8, 7, 16),
            (13, 20, 17),
            (70, 33, 47),
            (5, 129, 3),
            (130, 300, 40),
            (40, 35, 1),
            (33, 64, 1),
            (16, 130, 1),
            (16, 0, 1),
            (17, 9, 1),
            (48, 16, 1),
        ] {
            for relu in [false, true] {
                let xs = k + 3;
                let x = values(&mut rng, m * xs, 2.0);
                let (w, b) = (values(&mut rng, n * k, 0.3), values(&mut rng, n, 0.5));
                let p = PackedF32::new(&w, &b, n, k);
                let want = direct(Rows { data: &x, stride: xs, rows: m }, (&w, &b), n, k, relu);
                for kernel in Kernel::available() {
                    let got = run(kernel, &x, xs, m, &p, relu, p.np() + 5);
                    assert_eq!(got, want, "{} m={m} k={k} n={n} relu={relu}", kernel.name());
                }
                // And close to the exact sum (the direct loop is not wrong in some shared way).
                for (r, row) in want.chunks(n).enumerate() {
                    for (c, &v) in row.iter().enumerate() {
                        let exact = f64::from(b[c])
                            + (0..k).map(|i| f64::from(x[r * xs + i]) * f64::from(w[c * k + i])).sum::<f64>();
                        let exact = if relu { exact.max(0.0) } else { exact };
                        assert!((f64::from(v) - exact).abs() < 1e-4 * (1.0 + exact.abs()), "{v} vs {exact}");
                    }
                }
            }
        }
    }

    /// `values`, with each value zeroed with probability `zeros`.
    fn sparse_values(rng: &mut Rng, len: usize, scale: f64, zeros: f64) -> Vec<f32> {
        (0..len).map(|_| if rng.uniform() < zeros { 0.0 } else { (rng.normal() * scale) as f32 }).collect()
    }

    /// [`dense_f32_skipping_zeros`] with output stride `os`, checked like [`run`] (padding
    /// lanes 0, nothing written past the panels); the `[m, n]` part and whether any block
    /// ran over lists.
    fn run_skipping(kernel: Kernel, x: Rows<'_>, p: &PackedF32, relu: bool, os: usize) -> (Vec<f32>, bool) {
        let m = x.rows;
        let mut out = vec![f32::NAN; m * os];
        let before = LISTED_BLOCKS.with(std::cell::Cell::get);
        dense_f32_skipping_zeros(kernel, x, p, relu, RowsMut { data: &mut out, stride: os });
        let listed = LISTED_BLOCKS.with(std::cell::Cell::get) > before;
        let mut got = Vec::with_capacity(m * p.n());
        for r in 0..m {
            got.extend_from_slice(&out[r * os..r * os + p.n()]);
            let pad = &out[r * os + p.n()..r * os + p.np()];
            assert!(pad.iter().all(|&v| v == 0.0), "padding lanes of row {r} not zero: {pad:?}");
            assert!(out[r * os + p.np()..(r + 1) * os].iter().all(|v| v.is_nan()), "wrote past the panels");
        }
        (got, listed)
    }

    /// Whether some block of 64 rows has its first 8 rows' inputs at most 55% nonzero (20%
    /// for layers of 2 to 32 outputs; never for one output).
    fn sampled_sparse(x: &[f32], xs: usize, m: usize, k: usize, n: usize) -> bool {
        if n == 1 {
            return false;
        }
        let most = if n <= 32 { 20 } else { 55 };
        (0..m).step_by(64).any(|start| {
            let sample = (m - start).min(8);
            let nonzero = (start..start + sample).map(|r| x[r * xs..r * xs + k].iter().filter(|&&v| v != 0.0).count());
            100 * nonzero.sum::<usize>() <= most * sample * k
        })
    }

    #[test]
    fn skipping_zeros_gives_the_direct_sums_bit_for_bit() {
        let mut rng = Rng::new(17);
        let mut listed_shapes = 0;
        // Panel counts 1–9 (groups of 4 with remainders of 1, 2 and 3), one to four passes
        // of 64 inputs (k 1 to 200, not multiples of 16), row counts odd, below and past a
        // pair or group of 4, and several blocks; zero shares on both sides of the switch
        // to the dense tiles, and all zero.
        for &(m, k, n) in &[
            (1, 1, 1),
            (7, 64, 1),
            (9, 65, 33),
            (70, 128, 64),
            (5, 129, 48),
            (131, 200, 140),
            (4, 30, 16),
            (7, 130, 20),
            (11, 70, 90),
            (6, 100, 110),
            (3, 150, 7),
            (37, 64, 1),
            (19, 90, 1),
        ] {
            for zeros in [1.0, 0.97, 0.7, 0.55, 0.2] {
                for relu in [false, true] {
                    let xs = k + 2;
                    let x = sparse_values(&mut rng, m * xs, 1.5, zeros);
                    let (w, b) = (values(&mut rng, n * k, 0.3), values(&mut rng, n, 0.5));
                    let p = PackedF32::new(&w, &b, n, k);
                    let want = direct(Rows { data: &x, stride: xs, rows: m }, (&w, &b), n, k, relu);
                    for kernel in Kernel::available() {
                        let rows = Rows { data: &x, stride: xs, rows: m };
                        let (got, listed) = run_skipping(kernel, rows, &p, relu, p.np() + 3);
                        let same = got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{} m={m} k={k} n={n} zeros={zeros} relu={relu}", kernel.name());
                        let expected = vector_lanes(kernel) == Some(16) && sampled_sparse(&x, xs, m, k, n);
                        assert_eq!(listed, expected, "{} m={m} k={k} zeros={zeros}: lists ran", kernel.name());
                        listed_shapes += usize::from(listed);
                    }
                }
            }
        }
        eprintln!("{listed_shapes} runs went over lists");
    }

    #[test]
    fn skipping_zeros_with_no_inputs_and_tight_buffers_gives_the_dense_bits() {
        let mut rng = Rng::new(23);
        // k = 0: the outputs are the bias.
        let p = PackedF32::new(&[], &[0.5, -1.0, 2.0], 3, 0);
        for kernel in Kernel::available() {
            let (got, _) = run_skipping(kernel, Rows { data: &[], stride: 0, rows: 2 }, &p, false, LANES);
            assert_eq!(got, [0.5, -1.0, 2.0, 0.5, -1.0, 2.0], "{}", kernel.name());
        }
        // Buffers exactly (m - 1) · stride + width long.
        tight_buffers(dense_f32_skipping_zeros, &mut rng, (90, 20, 97, 40), &[1, 2, 5, 9, 66], 0.8);
    }

    /// A layer entry point: [`dense_f32`] or [`dense_f32_skipping_zeros`].
    type Layer = fn(Kernel, Rows<'_>, &PackedF32, bool, RowsMut<'_>);

    /// `layer` on inputs and outputs exactly `(m - 1) · stride + width` long, with strides
    /// wider than the rows, for each row count: the direct sums, bit for bit.
    fn tight_buffers(
        layer: Layer,
        rng: &mut Rng,
        (k, n, xs, os): (usize, usize, usize, usize),
        ms: &[usize],
        zeros: f64,
    ) {
        let (w, b) = (values(rng, n * k, 0.5), values(rng, n, 0.5));
        let p = PackedF32::new(&w, &b, n, k);
        for &m in ms {
            let x = sparse_values(rng, (m - 1) * xs + k, 1.0, zeros);
            let want = direct(Rows { data: &x, stride: xs, rows: m }, (&w, &b), n, k, true);
            for kernel in Kernel::available() {
                let mut out = vec![0f32; (m - 1) * os + p.np()];
                layer(kernel, Rows { data: &x, stride: xs, rows: m }, &p, true, RowsMut { data: &mut out, stride: os });
                let got: Vec<f32> = (0..m).flat_map(|r| out[r * os..r * os + n].to_vec()).collect();
                assert_eq!(got, want, "{} n={n} m={m}", kernel.name());
            }
        }
    }

    #[test]
    fn skipping_zeros_still_meets_infinite_weights_and_nan_inputs() {
        // 0 · ∞ is NaN: a layer holding an infinite weight is not skipped; a NaN input is
        // not a zero.
        let (k, n, m) = (70, 20, 9);
        let mut rng = Rng::new(5);
        let mut x = sparse_values(&mut rng, m * k, 1.0, 0.9);
        x[3 * k + 5] = f32::NAN;
        let mut w = values(&mut rng, n * k, 0.3);
        let b = values(&mut rng, n, 0.5);
        for infinite in [false, true] {
            if infinite {
                w[2 * k + 7] = f32::INFINITY;
            }
            let p = PackedF32::new(&w, &b, n, k);
            let want = direct(Rows { data: &x, stride: k, rows: m }, (&w, &b), n, k, false);
            for kernel in Kernel::available() {
                let mut out = vec![0f32; m * p.np()];
                let rows = Rows { data: &x, stride: k, rows: m };
                dense_f32_skipping_zeros(kernel, rows, &p, false, RowsMut { data: &mut out, stride: p.np() });
                for r in 0..m {
                    for c in 0..n {
                        let (g, e) = (out[r * p.np() + c], want[r * n + c]);
                        assert!(
                            g.to_bits() == e.to_bits(),
                            "{} infinite={infinite} ({r}, {c}): {g} vs {e}",
                            kernel.name()
                        );
                    }
                }
                assert!(out[3 * p.np()..3 * p.np() + n].iter().all(|v| v.is_nan()), "the NaN input reaches row 3");
            }
        }
    }

    #[test]
    fn packed_weights_and_activation_buffers_start_on_cache_lines() {
        for (n, k) in [(1, 1), (3, 5), (40, 35), (128, 256)] {
            let p = PackedF32::new(&vec![1.0; n * k], &vec![0.0; n], n, k);
            assert_eq!(p.weights() as usize % 64, 0, "n={n} k={k}");
        }
        let mut a = AlignedF32::new();
        a.get_mut(4).copy_from_slice(&[1.0, 2.0, 3.0, 4.0]);
        for len in [1, 16, 17, 1000, 5000] {
            let s = a.get_mut(len);
            assert_eq!((s.len(), s.as_ptr() as usize % 64), (len, 0), "len {len}");
        }
        assert_eq!(a.get_mut(4), [1.0, 2.0, 3.0, 4.0], "values survive growth");
    }

    #[test]
    fn a_row_gives_the_same_bits_alone_and_at_any_position() {
        let mut rng = Rng::new(11);
        // n = 1: a row alone runs the panel tiles, in a batch of 29 the 16-row lanes.
        for (k, n, m) in [(35, 40, 29), (35, 1, 29)] {
            let x = values(&mut rng, m * k, 1.5);
            let p = PackedF32::new(&values(&mut rng, n * k, 0.2), &values(&mut rng, n, 0.1), n, k);
            for kernel in Kernel::available() {
                let all = run(kernel, &x, k, m, &p, true, p.np());
                for r in [0, 7, 8, 15, 28] {
                    let alone = run(kernel, &x[r * k..(r + 1) * k], k, 1, &p, true, p.np());
                    assert_eq!(alone, all[r * n..(r + 1) * n], "{} n={n} row {r}", kernel.name());
                }
            }
        }
    }

    #[test]
    fn relu_maps_nan_and_negative_zero_to_zero_on_every_kernel() {
        // One input, weight 1, bias 0: the outputs are the inputs (+0 added), then ReLU.
        // Three times over, so that 16 rows go through the one-output lanes too.
        let x = [f32::NAN, -0.0, -1.5, 2.5, f32::INFINITY, f32::NEG_INFINITY].repeat(3);
        let p = PackedF32::new(&[1.0], &[0.0], 1, 1);
        for kernel in Kernel::available() {
            let got = run(kernel, &x, 1, x.len(), &p, true, LANES);
            let bits: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
            let want: Vec<u32> =
                [0.0, 0.0, 0.0, 2.5, f32::INFINITY, 0.0].repeat(3).iter().map(|v: &f32| v.to_bits()).collect();
            assert_eq!(bits, want, "{}", kernel.name());
        }
    }

    #[test]
    fn tight_buffers_zero_inputs_and_every_row_count_work_on_every_kernel() {
        let mut rng = Rng::new(3);
        // k = 0: the outputs are the bias.
        let p = PackedF32::new(&[], &[0.5, -1.0, 2.0], 3, 0);
        for kernel in Kernel::available() {
            assert_eq!(run(kernel, &[], 0, 2, &p, false, LANES), [0.5, -1.0, 2.0, 0.5, -1.0, 2.0], "{}", kernel.name());
        }
        // Buffers exactly (m - 1) · stride + width long, strides wider than the rows, every
        // row count around the tile heights.
        // n = 1 takes 16 rows as lanes with AVX-512.
        let ms: Vec<usize> = (1..=33).collect();
        for shape in [(9, 20, 13, 40), (9, 1, 13, 21)] {
            tight_buffers(dense_f32, &mut rng, shape, &ms, 0.0);
        }
    }

    #[test]
    #[should_panic(expected = "input buffer too small")]
    fn a_stride_whose_extent_overflows_is_refused_not_wrapped() {
        let p = PackedF32::new(&[1.0; 16], &[0.0; 16], 16, 1);
        let mut out = vec![0f32; 64];
        let x = Rows { data: &[1.0, 2.0], stride: usize::MAX, rows: 2 };
        dense_f32(Kernel::best(), x, &p, false, RowsMut { data: &mut out, stride: 16 });
    }

    #[test]
    #[should_panic(expected = "output buffer too small")]
    fn an_output_stride_narrower_than_the_panels_is_refused() {
        let p = PackedF32::new(&[1.0; 17], &[0.0; 17], 17, 1);
        let mut out = vec![0f32; 64];
        let x = Rows { data: &[1.0, 2.0], stride: 1, rows: 2 };
        dense_f32(Kernel::best(), x, &p, false, RowsMut { data: &mut out, stride: 17 });
    }
}
