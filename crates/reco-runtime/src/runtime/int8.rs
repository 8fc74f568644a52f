//! INT8 inference: u8 activations × s8 weights with i32 accumulation in our kernels, zero-point
//! correction and bias folded into one per-channel offset, requantization with fused ReLU
//! between integer layers, float only for the final logit (and around layers the accuracy gate
//! kept in float). Dynamic mode quantizes each layer's input with the batch's own range.
//!
//! A dot interaction term enters layer 0 in the form its input takes: from the u8 input codes
//! of a static integer layer 0 as an exact integer dot ([`dot_codes`]), else from the
//! dequantized row-wise embeddings as the float runtime computes it
//! ([`dot_f32`](crate::runtime::dot_f32)); either way the ONNX export reproduces it bit for bit.

use std::borrow::Cow;
use std::ops::Range;
use std::path::Path;

use crate::artifact::manifest::{Architecture, Interaction, Manifest};
use crate::artifact::qweights::{QLayer, QuantWeights, RowwiseTable};
use crate::artifact::spec::FeatureSpec;
use crate::artifact::spec::IdsRef;
use crate::artifact::{self, WEIGHTS};
use crate::error::Result;
use crate::kernels::{self, Epilogue, Kernel, PackedWeights, float::PackedF32};
use crate::quant::QParams;
use crate::runtime::{ColumnsRef, Encoded, chunks, input_matrix, pack, run_layers, score_in_chunks};

/// One executable layer.
#[derive(Debug, Clone)]
enum Exec {
    Int8 {
        packed: PackedWeights,
        weight_scale: Vec<f32>,
        /// Static input: bias_q, input qparams.
        input: Option<(Vec<i32>, QParams)>,
        bias: Vec<f32>,
    },
    /// A layer the accuracy gate kept in float.
    Float(PackedF32),
}

/// Epilogues of a static integer layer, computed once at load.
#[derive(Debug, Clone)]
struct Plan {
    /// This layer's input qparams.
    input: QParams,
    /// Requantize to the next integer layer's input (hidden layer followed by a static one):
    /// epilogue, the next layer's row stride, its input qparams.
    to_u8: Option<(Epilogue, usize, QParams)>,
    /// Float output (`s_x · s_w` multiplier): last layer, or before a float/dynamic layer.
    to_f32: Epilogue,
}

/// How layer 0's input is built. Each form keeps one copy of the embeddings, no larger than
/// the stored codes.
#[derive(Debug, Clone)]
enum Input {
    /// A static integer layer 0: every embedding row already quantized to its input qparams
    /// (one byte per value), so rows are copied, not computed; with layer 0's padded width
    /// and input qparams.
    Codes(Vec<Vec<u8>>, usize, QParams),
    /// A float or dynamic layer 0: the stored row-wise codes, dequantized as rows are gathered.
    Rowwise(Vec<RowwiseTable>),
}

/// An INT8 model ready to score.
#[derive(Debug, Clone)]
pub struct Int8Model {
    /// Input encoding.
    pub spec: FeatureSpec,
    /// Layer sizes.
    pub arch: Architecture,
    input: Input,
    layers: Vec<Exec>,
    plans: Vec<Option<Plan>>,
    kernel: Kernel,
}

/// Activations between layers (floats borrowed for a caller's input, owned after a layer).
enum Act<'a> {
    Float(Cow<'a, [f32]>),
    /// Padded u8 rows `[m, kp]` with their qparams.
    Quant(Vec<u8>, QParams),
}

/// A pooled u8 activation buffer and the (width, padded width, length) it was last used with.
type U8Buffer = ((usize, usize, usize), Vec<u8>);

thread_local! {
    /// Reused scratch buffers: per-call zeroed allocations cost ~20% of INT8 scoring time.
    static ACC: std::cell::RefCell<Vec<i32>> = const { std::cell::RefCell::new(Vec::new()) };
    static U8: std::cell::RefCell<Vec<U8Buffer>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An i32 buffer of at least `len` (contents unspecified: every kernel overwrites what it
/// uses). Never shrunk, so alternating sizes do not zero-fill it again on every call.
fn take_acc(len: usize) -> Vec<i32> {
    let mut v = ACC.with(|b| std::mem::take(&mut *b.borrow_mut()));
    if v.len() < len {
        v.resize(len, 0);
    }
    v
}

fn give_acc(v: Vec<i32>) {
    ACC.with(|b| *b.borrow_mut() = v);
}

/// Pooled u8 buffers kept per thread: a model uses one per layer input, and a caller may
/// alternate a few batch sizes.
const U8_POOL: usize = 8;

/// A u8 buffer of `m` rows of stride `kp` whose padding columns `width..kp` are zero: a pooled
/// buffer last used with the same shape (its padding is still zero: nothing writes there), or
/// a new zeroed one. Buffers never change shape, so the steady state neither allocates nor
/// zero-fills.
fn take_u8(m: usize, width: usize, kp: usize) -> Vec<u8> {
    let shape = (width, kp, m * kp);
    U8.with(|b| {
        let mut pool = b.borrow_mut();
        pool.iter().position(|(s, _)| *s == shape).map(|i| pool.remove(i).1)
    })
    .unwrap_or_else(|| vec![0; m * kp])
}

/// Returns a buffer from [`take_u8`] (or any with zero padding) with the shape it holds; the
/// least recently returned one is dropped when the pool is full.
fn give_u8(v: Vec<u8>, m: usize, width: usize, kp: usize) {
    U8.with(|b| {
        let mut pool = b.borrow_mut();
        if pool.len() == U8_POOL {
            pool.remove(0);
        }
        pool.push(((width, kp, m * kp), v));
    });
}

impl Int8Model {
    /// Builds the executable model from stored tensors (consumed: the model keeps no second
    /// copy), with the kernel [`Kernel::detect`] picks.
    pub fn new(spec: FeatureSpec, arch: Architecture, weights: QuantWeights) -> Result<Self> {
        arch.validate()?;
        Ok(Self::with_kernel(spec, arch, weights, Kernel::detect()?))
    }

    /// Same, with an explicit kernel (tests, benchmarks). `arch` is taken as valid
    /// ([`Architecture::validate`], which [`Int8Model::new`] checks).
    pub fn with_kernel(spec: FeatureSpec, arch: Architecture, weights: QuantWeights, kernel: Kernel) -> Self {
        let QuantWeights { embeddings, layers } = weights;
        let layers = layers
            .into_iter()
            .map(|l| match l {
                QLayer::Int8 { weight, weight_scale, static_input, bias, input, output } => Exec::Int8 {
                    packed: PackedWeights::for_kernel(&weight, output, input, kernel),
                    weight_scale,
                    input: static_input,
                    bias,
                },
                QLayer::Float(d) => Exec::Float(pack(&d)),
            })
            .collect::<Vec<_>>();
        let plans = (0..layers.len())
            .map(|i| match &layers[i] {
                Exec::Int8 { packed, weight_scale, input: Some((bias_q, qp)), .. } => {
                    Some(plan(packed, weight_scale, layers.get(i + 1), bias_q, *qp))
                }
                _ => None,
            })
            .collect();
        let input = match layers.first() {
            Some(Exec::Int8 { input: Some((_, qp)), packed, .. }) => {
                Input::Codes(embeddings.iter().map(|t| requantized_codes(t, qp)).collect(), packed.kp(), *qp)
            }
            _ => Input::Rowwise(embeddings),
        };
        Self { spec, arch, input, layers, plans, kernel }
    }

    /// Bytes of tensors this model holds in memory (embeddings, packed weights, epilogues).
    pub fn resident_bytes(&self) -> usize {
        let embeddings: usize = match &self.input {
            Input::Codes(c, _, _) => c.iter().map(Vec::len).sum(),
            Input::Rowwise(t) => t.iter().map(|t| t.codes.len() + 4 * t.scale_offset.len()).sum(),
        };
        let layers: usize = self
            .layers
            .iter()
            .map(|l| match l {
                Exec::Int8 { packed, weight_scale, bias, .. } => packed.bytes() + 4 * (weight_scale.len() + bias.len()),
                Exec::Float(d) => d.bytes(),
            })
            .sum();
        let plans: usize = self
            .plans
            .iter()
            .flatten()
            .map(|p| 8 * (p.to_f32.offset.len() + p.to_u8.as_ref().map_or(0, |(e, _, _)| e.offset.len())))
            .sum();
        embeddings + layers + plans
    }

    /// Opens an INT8 artifact directory (hashes verified first).
    pub fn open(dir: &Path) -> Result<(Manifest, Self)> {
        let manifest = artifact::open(dir)?;
        let path = dir.join(WEIGHTS);
        let weights =
            QuantWeights::load(&path, &manifest.feature_spec, &manifest.architecture)?.matching(&manifest, &path)?;
        let model = Self::new(manifest.feature_spec.clone(), manifest.architecture.clone(), weights)?;
        Ok((manifest, model))
    }

    /// The kernel in use.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Indices of layers kept in float.
    pub fn float_layers(&self) -> Vec<usize> {
        self.layers.iter().enumerate().filter(|(_, l)| matches!(l, Exec::Float(_))).map(|(i, _)| i).collect()
    }

    /// Logits for every row. With a static integer first layer, its u8 input is built straight
    /// from the raw columns (lookup, normalization and quantization in one pass per column, no
    /// float encoding); otherwise through the float encoding.
    pub fn logits(&self, cols: &ColumnsRef<'_>) -> Result<Vec<f32>> {
        let has_bag = self.spec.categorical.iter().any(|c| c.bag.is_some());
        let Some((codes, kp, qp)) = self.static_input().filter(|_| !has_bag) else {
            return score_in_chunks(&self.spec, cols, |enc| self.logits_encoded(enc));
        };
        cols.check(&self.spec)?;
        let mut out = Vec::with_capacity(cols.rows);
        for rows in chunks(cols.rows) {
            let m = rows.len();
            let x = self.quantized_input(cols, rows, codes, kp, &qp);
            out.extend(self.forward(Act::Quant(x, qp), m));
        }
        Ok(out)
    }

    /// The pre-quantized embedding codes, padded width and input qparams of a static integer
    /// layer 0.
    fn static_input(&self) -> Option<(&[Vec<u8>], usize, QParams)> {
        match &self.input {
            Input::Codes(codes, kp, qp) => Some((codes, *kp, *qp)),
            Input::Rowwise(_) => None,
        }
    }

    /// Layer 0's u8 input for `rows` of `cols`: each categorical column's looked-up embedding
    /// codes copied into place, each numeric column normalized and quantized (as
    /// [`encode`](crate::runtime::encode) then [`QParams::quantize`] would: same codes).
    fn quantized_input(
        &self,
        cols: &ColumnsRef<'_>,
        rows: Range<usize>,
        codes: &[Vec<u8>],
        kp: usize,
        qp: &QParams,
    ) -> Vec<u8> {
        let width = self.arch.input_dim(&self.spec);
        let mut x = take_u8(rows.len(), width, kp);
        let mut off = 0;
        for ((c, &dim), (codes, values)) in
            self.spec.categorical.iter().zip(&self.arch.embedding_dims).zip(codes.iter().zip(&cols.categorical))
        {
            let lookup = c.lookup();
            match values {
                IdsRef::Int(v) => {
                    let v = &v[rows.clone()];
                    copy_embedding(&mut x, kp, off, dim, |r| lookup.row(v[r]), codes);
                }
                IdsRef::Str(v) => {
                    let v = &v[rows.clone()];
                    copy_embedding(&mut x, kp, off, dim, |r| lookup.row_str(&v[r]), codes);
                }
            }
            off += dim;
        }
        numeric_codes(&self.spec, cols, rows, qp, &mut x, kp, off);
        self.interaction_codes(&mut x, kp, qp);
        x
    }

    /// With [`Interaction::Dot`], column `input width − 1` of each u8 row of layer 0's input
    /// (stride `kp`, its embedding codes in place): [`dot_codes`] of the first two embedding
    /// blocks, quantized to layer 0's input `qp`.
    fn interaction_codes(&self, x: &mut [u8], kp: usize, qp: &QParams) {
        if self.arch.interaction != Interaction::Dot {
            return;
        }
        let d = self.arch.embedding_dims[0];
        let col = self.arch.input_dim(&self.spec) - 1;
        for row in x.chunks_exact_mut(kp) {
            row[col] = qp.quantize(dot_codes(&row[..d], &row[d..2 * d], qp));
        }
    }

    /// Logits for encoded rows.
    pub fn logits_encoded(&self, enc: &Encoded) -> Vec<f32> {
        self.forward(self.layer0_input(enc), enc.rows)
    }

    /// The float MLP input `[rows, input width]` of encoded rows, as layer 0 sees it (with a
    /// static integer layer 0: its u8 codes dequantized, which quantize back to the same
    /// codes).
    pub fn input_matrix(&self, enc: &Encoded) -> Vec<f32> {
        match self.layer0_input(enc) {
            Act::Float(v) => v.into_owned(),
            Act::Quant(q, qp) => {
                let x = dequantize_padded(&q, enc.rows, self.arch.input_dim(&self.spec), &qp);
                give_u8(q, enc.rows, self.arch.input_dim(&self.spec), q_stride(&self.input));
                x
            }
        }
    }

    /// The dense layers alone (input quantization, integer layers, float logit) on `m` rows
    /// of [`Int8Model::input_matrix`]: what a benchmark of the layers times.
    ///
    /// # Panics
    /// When `x` holds fewer than `m` rows of the input width.
    pub fn dense(&self, x: &[f32], m: usize) -> Vec<f32> {
        let width = self.arch.input_dim(&self.spec);
        assert!(x.len() >= m * width, "dense: input holds {} values, expected {m} x {width}", x.len());
        self.forward(Act::Float(Cow::Borrowed(&x[..m * width])), m)
    }

    /// Layer 0's input for encoded rows: u8 codes for a static integer layer 0, else floats.
    fn layer0_input(&self, enc: &Encoded) -> Act<'static> {
        let k = self.spec.numeric.len();
        match &self.input {
            Input::Codes(codes, kp, qp) => {
                let (kp, qp) = (*kp, *qp);
                let width = self.arch.input_dim(&self.spec);
                let mut x = take_u8(enc.rows, width, kp);
                let mut off = 0;
                for (c, ((&dim, codes), ids)) in self.arch.embedding_dims.iter().zip(codes).zip(&enc.ids).enumerate() {
                    match enc.bag(&self.spec, c) {
                        Some(bag) => pool_codes(&mut x, kp, off, dim, &qp, |r, out, scratch| {
                            let deq = |i: usize, o: &mut [f32]| {
                                for (v, &q) in o.iter_mut().zip(&codes[i * dim..(i + 1) * dim]) {
                                    *v = qp.dequantize(q);
                                }
                            };
                            bag.pool(enc.rows_at(c, r), out, scratch, deq)
                        }),
                        None => copy_embedding(&mut x, kp, off, dim, |r| ids[r], codes),
                    }
                    off += dim;
                }
                for (r, row) in x.chunks_exact_mut(kp).enumerate() {
                    for (q, &v) in row[off..off + k].iter_mut().zip(&enc.numeric[r * k..(r + 1) * k]) {
                        *q = qp.quantize(v);
                    }
                }
                self.interaction_codes(&mut x, kp, &qp);
                Act::Quant(x, qp)
            }
            Input::Rowwise(tables) => {
                Act::Float(Cow::Owned(input_matrix(&self.spec, tables, enc, k, self.arch.interaction)))
            }
        }
    }

    /// Runs every layer on `m` rows of layer 0's input.
    fn forward(&self, mut act: Act<'_>, m: usize) -> Vec<f32> {
        let mut width = self.arch.input_dim(&self.spec);
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            let hidden = i < last;
            act = match (layer, &self.plans[i]) {
                (Exec::Float(d), _) => {
                    let x = match act {
                        Act::Float(v) => v,
                        Act::Quant(q, qp) => Cow::Owned(dequantize_padded(&q, m, width, &qp)),
                    };
                    Act::Float(Cow::Owned(run_layers(self.kernel, std::slice::from_ref(d), &x, m, hidden)))
                }
                (Exec::Int8 { packed, weight_scale, bias, .. }, static_plan) => {
                    let dynamic_plan;
                    let (xq, plan) = match (static_plan, act) {
                        (Some(p), Act::Quant(q, _)) => (q, p),
                        (Some(p), Act::Float(v)) => (quantize_padded(&v, m, width, packed.kp(), &p.input), p),
                        (None, a) => {
                            // Dynamic: this batch's own range, the bias requantized to match.
                            let v = match a {
                                Act::Float(v) => v,
                                Act::Quant(q, qp) => Cow::Owned(dequantize_padded(&q, m, width, &qp)),
                            };
                            let (qp, bias_q) = dynamic_input(&v, bias, weight_scale);
                            dynamic_plan = plan(packed, weight_scale, self.layers.get(i + 1), &bias_q, qp);
                            (quantize_padded(&v, m, width, packed.kp(), &qp), &dynamic_plan)
                        }
                    };
                    let next = match &plan.to_u8 {
                        Some((ep, kp_next, nq)) => {
                            let mut out = take_u8(m, packed.n(), *kp_next);
                            kernels::gemm_requantize(self.kernel, &xq, m, packed, ep, &mut out, *kp_next);
                            Act::Quant(out, *nq)
                        }
                        None => {
                            let mut y = float_output(self.kernel, &xq, m, packed, &plan.to_f32);
                            if hidden {
                                y.iter_mut().for_each(|v| *v = v.max(0.0));
                            }
                            Act::Float(Cow::Owned(y))
                        }
                    };
                    give_u8(xq, m, width, packed.kp());
                    next
                }
            };
            width = match layer {
                Exec::Float(d) => d.n(),
                Exec::Int8 { packed, .. } => packed.n(),
            };
        }
        match act {
            Act::Float(v) => v.into_owned(),
            Act::Quant(q, qp) => dequantize_padded(&q, m, width, &qp),
        }
    }
}

/// The numeric columns' codes for `rows` of `cols` into columns `off..off + k` of the u8 rows
/// of `x` (stride `kp`): each column normalized into a contiguous run of floats and quantized
/// as one row by [`quantize_padded`]'s loops (the same codes as `QParams::quantize`), then the
/// codes placed row by row, `k` contiguous bytes per row (column by column, every pass would
/// stream the whole buffer through the cache for one byte a row).
fn numeric_codes(
    spec: &FeatureSpec,
    cols: &ColumnsRef<'_>,
    rows: Range<usize>,
    qp: &QParams,
    x: &mut [u8],
    kp: usize,
    off: usize,
) {
    let (m, k) = (rows.len(), spec.numeric.len());
    if k == 0 {
        return;
    }
    let mut codes = vec![0u8; k * m];
    let mut floats = vec![0f32; m];
    for ((n, values), column) in spec.numeric.iter().zip(&cols.numeric).zip(codes.chunks_exact_mut(m)) {
        let normalize = n.normalizer();
        for (f, &v) in floats.iter_mut().zip(&values[rows.clone()]) {
            *f = normalize(v);
        }
        quantize_into(&floats, 1, m, m, qp, column);
    }
    for (r, row) in x.chunks_exact_mut(kp).take(m).enumerate() {
        for (j, q) in row[off..off + k].iter_mut().enumerate() {
            *q = codes[j * m + r];
        }
    }
}

/// The dot product of two embedding rows held as u8 codes at `qp` (layer 0's input codes):
/// `Σ (a[i] − z)·(b[i] − z)` in i32, exact in any order, then one f32 multiply by
/// `scale · scale` (rounded to f32 first). The exported QDQ graph computes the same bits with
/// `QuantizeLinear`, `Cast`, `Sub`, `Mul`, `ReduceSum` (int32), `Cast` and `Mul`.
/// Widths up to [`MAX_DOT_DIM`](crate::artifact::manifest::MAX_DOT_DIM) cannot overflow.
pub fn dot_codes(a: &[u8], b: &[u8], qp: &QParams) -> f32 {
    let z = qp.zero_point;
    let acc: i32 = a.iter().zip(b).map(|(&x, &y)| (i32::from(x) - z) * (i32::from(y) - z)).sum();
    acc as f32 * (qp.scale * qp.scale)
}

/// A row-wise table's values re-quantized to `qp` (layer 0's input codes), one value at a
/// time: the same codes as quantizing [`RowwiseTable::dequantize`], without its f32 copy of
/// the whole table.
pub fn requantized_codes(t: &RowwiseTable, qp: &QParams) -> Vec<u8> {
    let mut out = Vec::with_capacity(t.rows * t.dim);
    let mut row = vec![0f32; t.dim];
    for r in 0..t.rows {
        t.row_into(r, &mut row);
        out.extend(row.iter().map(|&v| qp.quantize(v)));
    }
    out
}

/// Copies the `dim`-byte embedding code row `row(r)` into columns `off..off + dim` of each
/// row `r` of `x`. Embedding rows are a few bytes, where a memcpy call costs more than the
/// copy: fixed-size moves for the usual widths.
#[inline]
fn copy_embedding(x: &mut [u8], kp: usize, off: usize, dim: usize, row: impl Fn(usize) -> u32, codes: &[u8]) {
    match dim {
        4 => copy_codes::<4>(x, kp, off, dim, row, codes),
        8 => copy_codes::<8>(x, kp, off, dim, row, codes),
        16 => copy_codes::<16>(x, kp, off, dim, row, codes),
        _ => copy_codes::<0>(x, kp, off, dim, row, codes),
    }
}

/// [`copy_embedding`] for one width: `D > 0` fixes it at compile time (one fixed-size move
/// per row); `D = 0` takes `dim` as given.
#[inline]
fn copy_codes<const D: usize>(
    x: &mut [u8],
    kp: usize,
    off: usize,
    dim: usize,
    row: impl Fn(usize) -> u32,
    codes: &[u8],
) {
    let dim = if D > 0 { D } else { dim };
    for (r, dst) in x.chunks_exact_mut(kp).enumerate() {
        let i = row(r) as usize;
        dst[off..off + dim].copy_from_slice(&codes[i * dim..i * dim + dim]);
    }
}

/// A multi-valued column's block of each row `r` of `x` (stride `kp`, columns
/// `off..off + dim`): `pool(r, block, scratch)` pools its rows dequantized from their u8 codes
/// at `qp` in f32, and the block is quantized back to `qp`, as the exported graph's
/// `DequantizeLinear`, pooling and `QuantizeLinear` do.
fn pool_codes(
    x: &mut [u8],
    kp: usize,
    off: usize,
    dim: usize,
    qp: &QParams,
    pool: impl Fn(usize, &mut [f32], &mut [f32]),
) {
    let (mut block, mut scratch) = (vec![0f32; dim], vec![0f32; dim]);
    for (r, dst) in x.chunks_exact_mut(kp).enumerate() {
        pool(r, &mut block, &mut scratch);
        for (q, &v) in dst[off..off + dim].iter_mut().zip(&block) {
            *q = qp.quantize(v);
        }
    }
}

/// The u8 row stride of layer 0's input (its padded width), or 0 for a float input.
fn q_stride(input: &Input) -> usize {
    match input {
        Input::Codes(_, kp, _) => *kp,
        Input::Rowwise(_) => 0,
    }
}

/// Per-batch input qparams covering `x` and the bias requantized to them (dynamic layers).
fn dynamic_input(x: &[f32], bias: &[f32], weight_scale: &[f32]) -> (QParams, Vec<i32>) {
    let qp = QParams::covering(x);
    (qp, crate::quant::quantize_bias(bias, qp.scale, weight_scale))
}

/// GEMM into i32 accumulators, then the float epilogue `ep`: `[m, n]` outputs before activation.
fn float_output(kernel: Kernel, xq: &[u8], m: usize, packed: &PackedWeights, ep: &Epilogue) -> Vec<f32> {
    let mut acc = take_acc(m * packed.n());
    kernels::gemm_u8s8(kernel, xq, m, packed, &mut acc);
    let mut y = vec![0f32; m * packed.n()];
    kernels::dequantize_output(&acc, m, ep, &mut y);
    give_acc(acc);
    y
}

/// One integer layer's float output (bias added, no activation) for float inputs `x`
/// `[m, input]`, computed exactly as the runtime does (static or per-batch qparams): what the
/// quantizer's per-layer SQNR measures. `None` for a float layer.
pub fn layer_output(layer: &QLayer, x: &[f32], m: usize, kernel: Kernel) -> Option<Vec<f32>> {
    let QLayer::Int8 { weight, weight_scale, static_input, bias, input, output } = layer else {
        return None;
    };
    let packed = PackedWeights::for_kernel(weight, *output, *input, kernel);
    let (qp, bias_q) = match static_input {
        Some((b, qp)) => (*qp, b.clone()),
        None => dynamic_input(x, bias, weight_scale),
    };
    let ep = plan(&packed, weight_scale, None, &bias_q, qp).to_f32;
    let xq = quantize_padded(x, m, *input, packed.kp(), &qp);
    Some(float_output(kernel, &xq, m, &packed, &ep))
}

/// The epilogues of an integer layer (`packed`, `weight_scale`) followed by `next`, for input
/// qparams `qp` and int32 bias `bias_q` (at `s_x · s_w`): built once at load for static
/// layers, per call for dynamic ones.
///
/// Multipliers are clamped to `±f32::MAX`: the stored scales are finite, but a product of
/// extreme ones could overflow to ±infinity, and `0 · ∞` would be NaN, whose code the SIMD
/// epilogue and the reference would round differently. Finite, they agree on every input.
fn plan(packed: &PackedWeights, weight_scale: &[f32], next: Option<&Exec>, bias_q: &[i32], qp: QParams) -> Plan {
    let offset = packed.offsets(bias_q, qp.zero_point);
    let to_f32 = Epilogue {
        input_zero_point: qp.zero_point,
        offset: offset.clone(),
        multiplier: weight_scale.iter().map(|&s| (qp.scale * s).clamp(-f32::MAX, f32::MAX)).collect(),
        output_zero_point: 0,
        relu: false,
    };
    let to_u8 = match next {
        // A hidden layer followed by a static integer layer: requantize straight to its input.
        Some(Exec::Int8 { input: Some((_, nq)), packed: np, .. }) => Some((
            Epilogue {
                input_zero_point: qp.zero_point,
                offset,
                multiplier: weight_scale
                    .iter()
                    .map(|&s| (qp.scale * s / nq.scale).clamp(-f32::MAX, f32::MAX))
                    .collect(),
                output_zero_point: nq.zero_point,
                relu: true,
            },
            np.kp(),
            *nq,
        )),
        _ => None,
    };
    Plan { input: qp, to_u8, to_f32 }
}

/// Quantizes `[m, width]` floats into rows of stride `kp` (padding stays 0). Divides by the
/// scale, as ONNX `QuantizeLinear` does, so exported QDQ graphs see the same codes. The
/// buffer comes from the per-thread pool. AVX-512 and AVX2 run the same operations (so the
/// same codes), 16 or 8 at a time.
///
/// # Panics
/// When `x` holds fewer than `m · width` values or `kp < width`.
pub fn quantize_padded(x: &[f32], m: usize, width: usize, kp: usize, qp: &QParams) -> Vec<u8> {
    assert!(x.len() >= m * width && kp >= width, "quantize_padded: buffers do not match [{m}, {width}]");
    let mut out = take_u8(m, width, kp);
    quantize_into(&x[..m * width], m, width, kp, qp, &mut out);
    out
}

/// [`quantize_padded`]'s loop into a caller's `out` (`m` rows of stride `kp`): AVX-512, else
/// AVX2, else portable; the same codes on every path.
fn quantize_into(x: &[f32], m: usize, width: usize, kp: usize, qp: &QParams, out: &mut [u8]) {
    if kernels::x86::quantize_rows_avx512(x, m, width, kp, (qp.scale, qp.zero_point), out) {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present.
            unsafe { quantize_rows_avx2(x, width, kp, qp, out) };
            return;
        }
    }
    quantize_rows(x, width, kp, qp, out);
}

/// The loop of [`quantize_padded`]: each row of `out` (stride `kp`) from a row of `x`. Rows
/// are a few dozen values, too short for whole vectors, so the values are quantized as one
/// contiguous run a block of rows at a time, then copied into place.
#[inline(always)]
fn quantize_rows(x: &[f32], width: usize, kp: usize, qp: &QParams, out: &mut [u8]) {
    const BLOCK: usize = 64;
    let mut flat = [0u8; 4096];
    if width == 0 || width * BLOCK > flat.len() {
        for (o, v) in out.chunks_exact_mut(kp).zip(x.chunks_exact(width.max(1))) {
            for (o, &v) in o[..width].iter_mut().zip(v) {
                *o = qp.quantize(v);
            }
        }
        return;
    }
    for (o, v) in out.chunks_mut(kp * BLOCK).zip(x.chunks(width * BLOCK)) {
        let flat = &mut flat[..v.len()];
        for (q, &v) in flat.iter_mut().zip(v) {
            *q = qp.quantize(v);
        }
        for (o, q) in o.chunks_exact_mut(kp).zip(flat.chunks_exact(width)) {
            o[..width].copy_from_slice(q);
        }
    }
}

/// [`quantize_rows`] compiled for AVX2.
///
/// # Safety
/// The CPU supports AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_rows_avx2(x: &[f32], width: usize, kp: usize, qp: &QParams, out: &mut [u8]) {
    quantize_rows(x, width, kp, qp, out);
}

fn dequantize_padded(q: &[u8], m: usize, width: usize, qp: &QParams) -> Vec<f32> {
    let kp = q.len().checked_div(m).unwrap_or(width);
    let mut out = Vec::with_capacity(m * width);
    for r in 0..m {
        out.extend(q[r * kp..r * kp + width].iter().map(|&c| qp.dequantize(c)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::qweights::RowwiseTable;
    use crate::artifact::spec::Ids;
    use crate::artifact::spec::{CategoricalSpec, NumericSpec, Vocabulary};
    use crate::quant::{TableLayout, quantize_weights};
    use crate::rng::Rng;
    use crate::runtime::{Columns, encode};

    /// A static INT8 model with random weights: embedding widths 3, 4, 8 and 16 (every
    /// code-copy width; 8, 8, 3, 16, 4 with a dot interaction), tables in every layout (4-bit
    /// ones of odd and even widths, one scale pair per table), a dense and a sparse vocabulary (table and binary-search
    /// lookups), and a string column.
    fn model(kernel: Kernel, interaction: Interaction) -> Int8Model {
        let mut rng = Rng::new(3);
        let dims = if interaction == Interaction::Dot { [8usize, 8, 3, 16, 4] } else { [3, 4, 8, 16, 4] };
        let vocabularies: [Vocabulary; 5] = [
            Vocabulary::Int((10..40).collect()),
            Vocabulary::Int((0..50).map(|i| i * 1_000_003).collect()),
            Vocabulary::Int((-5..5).collect()),
            Vocabulary::Int(vec![i64::MIN + 1, -7, 0, 9, i64::MAX]),
            Vocabulary::Str(["Bar", "Café", "Coffee Shop", "Park"].map(String::from).to_vec()),
        ];
        let spec = FeatureSpec {
            categorical: vocabularies
                .iter()
                .enumerate()
                .map(|(i, v)| CategoricalSpec::with_vocabulary(format!("c{i}"), v.clone()))
                .collect(),
            numeric: (0..5)
                .map(|i| NumericSpec { name: format!("n{i}"), mean: i as f64 - 2.0, std: 0.5 + i as f64 })
                .collect(),
            label: "label".into(),
            sources: vec![],
        };
        let arch = Architecture {
            embedding_dims: dims.to_vec(),
            hidden: vec![24, 17],
            activation: crate::artifact::manifest::Activation::Relu,
            interaction,
        };
        let embeddings = vocabularies
            .iter()
            .zip(dims)
            .enumerate()
            .map(|(i, (v, dim))| {
                let rows = v.len() + 1;
                let t: Vec<f32> = (0..rows * dim).map(|_| rng.normal() as f32).collect();
                let layout = [TableLayout::Int4, TableLayout::Int8Table, TableLayout::Int8][i % 3];
                RowwiseTable::quantize(&t, rows, dim, layout).unwrap()
            })
            .collect();
        let shapes = arch.layer_shapes(&spec);
        let layers = shapes
            .iter()
            .map(|&(k, n)| {
                let w: Vec<f32> = (0..n * k).map(|_| rng.normal() as f32 * 0.3).collect();
                let (weight, weight_scale) = quantize_weights(&w, n, k, 7, true);
                let qp = QParams::from_range(-3.0, 4.0);
                let bias: Vec<f32> = (0..n).map(|_| rng.normal() as f32 * 0.1).collect();
                let bias_q = crate::quant::quantize_bias(&bias, qp.scale, &weight_scale);
                QLayer::Int8 {
                    weight,
                    weight_scale,
                    static_input: Some((bias_q, qp)),
                    bias: vec![],
                    input: k,
                    output: n,
                }
            })
            .collect();
        Int8Model::with_kernel(spec, arch, QuantWeights { embeddings, layers }, kernel)
    }

    /// `rows` random input rows for `model`: ids in its vocabularies, unknown, or at the ends
    /// of i64 (strings: known, another case, prefixes, empty), numbers over a wide range.
    fn columns(model: &Int8Model, rows: usize, rng: &mut Rng) -> Columns {
        let categorical = model
            .spec
            .categorical
            .iter()
            .map(|c| match &c.vocabulary {
                Vocabulary::Int(v) => Ids::Int(
                    (0..rows)
                        .map(|_| match rng.below(4) {
                            0 | 1 => v[rng.below(v.len())],
                            2 => rng.next_u64() as i64,
                            _ => [i64::MIN, i64::MAX][rng.below(2)],
                        })
                        .collect(),
                ),
                Vocabulary::Str(v) => Ids::Str(
                    (0..rows)
                        .map(|_| match rng.below(4) {
                            0 | 1 => v[rng.below(v.len())].clone(),
                            2 => v[rng.below(v.len())].to_lowercase(),
                            _ => ["", "Caf", "Park "][rng.below(3)].to_string(),
                        })
                        .collect(),
                ),
            })
            .collect();
        let numeric = (0..5).map(|_| (0..rows).map(|_| (rng.normal() * 4.0) as f32).collect()).collect();
        Columns { rows, categorical, lists: Vec::new(), numeric }
    }

    #[test]
    fn columns_fast_path_equals_encoding_then_quantizing_on_every_kernel() {
        let mut rng = Rng::new(9);
        for (kernel, interaction) in kernels_and_interactions() {
            let model = model(kernel, interaction);
            for rows in [1usize, 5, 67] {
                let cols = columns(&model, rows, &mut rng);
                let fast = model.logits(&cols.view()).unwrap();
                let slow = model.logits_encoded(&encode(&model.spec, &cols.view()));
                assert_eq!(fast, slow, "{} {interaction} rows={rows}", kernel.name());
                assert!(rows == 1 || fast.iter().any(|&v| v != fast[0]), "logits vary across rows");
            }
        }
    }

    #[test]
    fn the_dense_layers_on_the_input_matrix_give_the_logits_of_the_columns() {
        let mut rng = Rng::new(21);
        for (kernel, interaction) in kernels_and_interactions() {
            let model = model(kernel, interaction);
            for rows in [1usize, 70, 300] {
                let cols = columns(&model, rows, &mut rng);
                let x = model.input_matrix(&encode(&model.spec, &cols.view()));
                assert_eq!(x.len(), rows * model.arch.input_dim(&model.spec));
                let want = model.logits(&cols.view()).unwrap();
                assert_eq!(model.dense(&x, rows), want, "{} {interaction} rows={rows}", kernel.name());
            }
        }
    }

    fn kernels_and_interactions() -> Vec<(Kernel, Interaction)> {
        let both = [Interaction::None, Interaction::Dot];
        Kernel::available().into_iter().flat_map(|k| both.map(|i| (k, i))).collect()
    }

    #[test]
    fn a_static_layer_0_gets_the_dot_of_its_user_and_place_codes_within_half_a_step() {
        let mut rng = Rng::new(4);
        let model = model(Kernel::Scalar, Interaction::Dot);
        let Some((_, _, qp)) = model.static_input() else { panic!("static layer 0 expected") };
        let (s, z) = (f64::from(qp.scale), f64::from(qp.zero_point));
        let (lo, hi) = (-z * s, (255.0 - z) * s);
        let rows = 400;
        let cols = columns(&model, rows, &mut rng);
        // Layer 0's input as it sees it: every column is `scale · (code − zero point)`.
        let x = model.input_matrix(&encode(&model.spec, &cols.view()));
        let width = model.arch.input_dim(&model.spec);
        let mut inside = std::collections::BTreeSet::new();
        for r in 0..rows {
            let row = &x[r * width..(r + 1) * width];
            let exact: f64 = (0..8).map(|i| f64::from(row[i]) * f64::from(row[8 + i])).sum();
            let got = f64::from(row[width - 1]);
            let want = exact.clamp(lo, hi);
            assert!((got - want).abs() <= s / 2.0 + 1e-5 * (1.0 + exact.abs()), "row {r}: {got} vs {exact}");
            if exact > lo && exact < hi {
                inside.insert(row[width - 1].to_bits());
            }
        }
        assert!(inside.len() > 20, "the dot column takes many codes ({})", inside.len());
        // The integer dot is exact whatever the order of its products.
        let (a, b) = ([0u8, 255, 17, 200, 3], [255u8, 0, 90, 128, 250]);
        let (ra, rb): (Vec<u8>, Vec<u8>) = (a.iter().rev().copied().collect(), b.iter().rev().copied().collect());
        assert_eq!(dot_codes(&a, &b, &qp).to_bits(), dot_codes(&ra, &rb, &qp).to_bits());
        let naive: i64 = a
            .iter()
            .zip(&b)
            .map(|(&x, &y)| (i64::from(x) - i64::from(qp.zero_point)) * (i64::from(y) - i64::from(qp.zero_point)))
            .sum();
        assert_eq!(dot_codes(&a, &b, &qp), naive as f32 * (qp.scale * qp.scale));
    }

    /// A float model with a dot interaction (ids 8 + 8 wide, two numbers, hidden [16]) whose
    /// first layer leans on the dot column, and its INT8 version: static qparams from the
    /// inputs' min and max over `cols`, layer 0 integer or kept float.
    fn float_and_int8(cols: &Columns, keep_float_0: bool) -> (crate::runtime::FloatModel, Int8Model) {
        use crate::artifact::weights::{Dense, FloatWeights, Table};
        let mut rng = Rng::new(8);
        let spec = FeatureSpec {
            categorical: (0..2)
                .map(|i| CategoricalSpec::with_vocabulary(format!("c{i}"), Vocabulary::Int((0..30).collect())))
                .collect(),
            numeric: (0..2).map(|i| NumericSpec { name: format!("n{i}"), mean: 0.0, std: 1.0 }).collect(),
            label: "label".into(),
            sources: vec![],
        };
        let arch = Architecture {
            embedding_dims: vec![8, 8],
            hidden: vec![16],
            activation: crate::artifact::manifest::Activation::Relu,
            interaction: Interaction::Dot,
        };
        let mut r = |n: usize, sd: f64| -> Vec<f32> { (0..n).map(|_| (rng.normal() * sd) as f32).collect() };
        let tables: Vec<Table> = (0..2).map(|_| Table { data: r(31 * 8, 0.5), rows: 31, dim: 8 }).collect();
        let mut dense: Vec<Dense> = arch
            .layer_shapes(&spec)
            .iter()
            .map(|&(k, n)| Dense { weight: r(n * k, 0.2), bias: r(n, 0.1), input: k, output: n })
            .collect();
        for o in 0..16 {
            dense[0].weight[o * 19 + 18] = if o % 2 == 0 { 1.5 } else { -1.5 };
        }
        let float = crate::runtime::FloatModel::with_kernel(
            spec.clone(),
            arch.clone(),
            FloatWeights { embeddings: tables.clone(), dense: dense.clone() },
            Kernel::Scalar,
        );
        let x0 = float.input_matrix(&encode(&spec, &cols.view()));
        let mut h = crate::runtime::dense_forward(&x0, cols.rows, &dense[0]);
        h.iter_mut().for_each(|v| *v = v.max(0.0));
        let layers = dense
            .iter()
            .zip([QParams::covering(&x0), QParams::covering(&h)])
            .enumerate()
            .map(|(i, (d, qp))| {
                if i == 0 && keep_float_0 {
                    return QLayer::Float(d.clone());
                }
                let (weight, weight_scale) = quantize_weights(&d.weight, d.output, d.input, 7, true);
                let bias_q = crate::quant::quantize_bias(&d.bias, qp.scale, &weight_scale);
                let (input, output) = (d.input, d.output);
                QLayer::Int8 { weight, weight_scale, static_input: Some((bias_q, qp)), bias: vec![], input, output }
            })
            .collect();
        let embeddings =
            tables.iter().map(|t| RowwiseTable::quantize(&t.data, t.rows, t.dim, TableLayout::Int8).unwrap()).collect();
        (float, Int8Model::with_kernel(spec, arch, QuantWeights { embeddings, layers }, Kernel::Scalar))
    }

    #[test]
    fn int8_models_with_a_dot_score_as_their_float_parent_on_both_layer_0_inputs() {
        let mut rng = Rng::new(12);
        let rows = 500;
        let categorical = (0..2).map(|_| Ids::Int((0..rows).map(|_| rng.below(31) as i64).collect())).collect();
        let numeric = (0..2).map(|_| (0..rows).map(|_| rng.normal() as f32).collect()).collect();
        let cols = Columns { rows, categorical, lists: Vec::new(), numeric };
        for keep_float_0 in [false, true] {
            let (float, int8) = float_and_int8(&cols, keep_float_0);
            assert_eq!(int8.static_input().is_some(), !keep_float_0);
            let want = float.logits(&cols).unwrap();
            let got = int8.logits(&cols.view()).unwrap();
            let err = want.iter().zip(&got).map(|(a, b)| f64::from(a - b).abs()).fold(0.0, f64::max);
            // The same model without its dot (that column's weights zeroed) is far away: the
            // term matters, so a dot missing or misplaced in the INT8 input could not pass.
            let mut w = float.weights.clone();
            (0..16).for_each(|o| w.dense[0].weight[o * 19 + 18] = 0.0);
            let without =
                crate::runtime::FloatModel::with_kernel(float.spec.clone(), float.arch.clone(), w, Kernel::Scalar);
            let gap = want
                .iter()
                .zip(without.logits(&cols).unwrap())
                .map(|(a, b)| f64::from(a - b).abs())
                .fold(0.0, f64::max);
            assert!(err < 0.05 * gap, "keep float 0: {keep_float_0}: INT8 error {err}, the dot's effect {gap}");
        }
    }

    #[test]
    fn quantize_padded_gives_quantize_of_every_value_and_zero_padding() {
        let mut rng = Rng::new(5);
        let qp = QParams { scale: 0.037, zero_point: 97 };
        let special =
            [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 1e30, -1e30, 0.5 * 0.037, 1.5 * 0.037, -2.5 * 0.037];
        for (width, rows) in [(1, 3), (15, 2), (16, 5), (17, 300), (35, 250), (64, 70), (65, 9), (130, 40), (5000, 2)] {
            let x: Vec<f32> = (0..rows * width)
                .map(|i| if i % 7 == 0 { special[i / 7 % special.len()] } else { (rng.normal() * 6.0) as f32 })
                .collect();
            let kp = padded(width) + 4;
            let want: Vec<u8> = x.iter().map(|&v| qp.quantize(v)).collect();
            let check = |out: &[u8], what: &str| {
                for r in 0..rows {
                    assert_eq!(
                        &out[r * kp..r * kp + width],
                        &want[r * width..(r + 1) * width],
                        "{what} width {width} row {r}"
                    );
                    assert!(out[r * kp + width..(r + 1) * kp].iter().all(|&b| b == 0), "{what}: padding written");
                }
            };
            let out = quantize_padded(&x, rows, width, kp, &qp);
            check(&out, "quantize_padded");
            give_u8(out, rows, width, kp);
            let mut flat = vec![0u8; rows * kp];
            quantize_rows(&x, width, kp, &qp, &mut flat);
            check(&flat, "portable loop");
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                let mut v = vec![0u8; rows * kp];
                // SAFETY: AVX2 is present.
                unsafe { quantize_rows_avx2(&x, width, kp, &qp, &mut v) };
                check(&v, "avx2 loop");
            }
        }
    }

    #[test]
    fn quantize_padded_gives_the_quotients_codes_next_to_every_rounding_tie() {
        // Values within a few ulps of (k + 0.5) · scale, where x · (1/scale) and x / scale
        // can round to different sides of a tie, for several scales and zero points.
        for qp in [
            QParams { scale: 0.037, zero_point: 97 },
            QParams { scale: 0.1, zero_point: 0 },
            QParams { scale: 3.0, zero_point: 255 },
            QParams { scale: 1.0 / 3.0, zero_point: 128 },
            QParams { scale: 7.3e-5, zero_point: 12 },
        ] {
            let mut x = Vec::new();
            for k in -300..300 {
                let t = (k as f32 + 0.5) * qp.scale;
                let mut v = t;
                for _ in 0..4 {
                    v = f32::from_bits(v.to_bits() - 1);
                }
                for _ in 0..9 {
                    x.push(v);
                    v = f32::from_bits(v.to_bits() + 1);
                }
                x.push(k as f32 * qp.scale);
            }
            let width = 37;
            let rows = x.len() / width;
            let x = &x[..rows * width];
            let out = quantize_padded(x, rows, width, width, &qp);
            let want: Vec<u8> = x.iter().map(|&v| qp.quantize(v)).collect();
            assert_eq!(out, want, "scale {} zero point {}", qp.scale, qp.zero_point);
            give_u8(out, rows, width, width);
        }
    }

    fn padded(k: usize) -> usize {
        crate::kernels::padded(k)
    }
}
