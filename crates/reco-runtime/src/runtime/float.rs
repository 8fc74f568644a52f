//! The float driver: [`FloatModel`] (dense layers packed once at load) and the layer-fused
//! loop every float path runs ([`mlp`]: a block of rows through every layer while it is in
//! cache, on the kernels of [`kernels::float`]).

use std::path::Path;

use super::{Columns, ColumnsRef, Encoded, input_matrix, score_in_chunks};
use crate::artifact::manifest::{Architecture, Manifest};
use crate::artifact::spec::FeatureSpec;
use crate::artifact::weights::{Dense, FloatWeights};
use crate::artifact::{self, WEIGHTS};
use crate::error::{Error, Result};
use crate::kernels::float::{PackedF32, Rows, RowsMut};
use crate::kernels::{self, Kernel};

/// A float model ready to score.
#[derive(Debug, Clone)]
pub struct FloatModel {
    /// Input encoding.
    pub spec: FeatureSpec,
    /// Layer sizes.
    pub arch: Architecture,
    /// Tensors as loaded (what the artifact holds). Scoring uses the packed copy of the dense
    /// layers made at construction: changing these afterwards changes no score; build a new
    /// model instead.
    pub weights: FloatWeights,
    /// The dense layers packed for the kernels.
    layers: Vec<PackedF32>,
    kernel: Kernel,
}

impl FloatModel {
    /// Opens a float artifact directory, verifying every file hash first; an INT8 artifact is
    /// an input error naming its float parent.
    pub fn open(dir: &Path) -> Result<(Manifest, Self)> {
        let manifest = artifact::open(dir)?;
        if manifest.kind.is_int8() {
            let parent = manifest
                .lineage
                .as_ref()
                .map_or_else(|| "-".into(), |l| dir.join(&l.parent_path).display().to_string());
            return Err(Error::input(format!(
                "{}: an INT8 artifact (kind {}), expected a float model such as its parent {parent}",
                dir.display(),
                manifest.kind
            )));
        }
        let weights = FloatWeights::load(&dir.join(WEIGHTS), &manifest.feature_spec, &manifest.architecture)?;
        let model = Self::new(manifest.feature_spec.clone(), manifest.architecture.clone(), weights)?;
        Ok((manifest, model))
    }

    /// A model from its tensors, with the kernel [`Kernel::detect`] picks (`RECO_KERNEL`).
    pub fn new(spec: FeatureSpec, arch: Architecture, weights: FloatWeights) -> Result<Self> {
        arch.validate()?;
        Ok(Self::with_kernel(spec, arch, weights, Kernel::detect()?))
    }

    /// Same, with an explicit kernel (tests, benchmarks). Every kernel gives the same bits.
    /// `arch` is taken as valid ([`Architecture::validate`], which [`FloatModel::new`] checks).
    pub fn with_kernel(spec: FeatureSpec, arch: Architecture, weights: FloatWeights, kernel: Kernel) -> Self {
        let layers = weights.dense.iter().map(pack).collect();
        Self { spec, arch, weights, layers, kernel }
    }

    /// Logits for every row.
    pub fn logits(&self, cols: &Columns) -> Result<Vec<f32>> {
        self.score(&cols.view())
    }

    /// Logits for borrowed columns.
    pub fn score(&self, cols: &ColumnsRef<'_>) -> Result<Vec<f32>> {
        score_in_chunks(&self.spec, cols, |enc| self.logits_encoded(enc))
    }

    /// Builds the MLP input matrix [rows, input_dim] from encoded rows.
    pub fn input_matrix(&self, enc: &Encoded) -> Vec<f32> {
        input_matrix(&self.spec, &self.weights.embeddings, enc, self.spec.numeric.len(), self.arch.interaction)
    }

    /// Bytes of tensors the model holds in memory: the tensors as loaded and the packed layers.
    pub fn resident_bytes(&self) -> usize {
        let w = &self.weights;
        4 * (w.embeddings.iter().map(|t| t.data.len()).sum::<usize>()
            + w.dense.iter().map(|d| d.weight.len() + d.bias.len()).sum::<usize>())
            + self.layers.iter().map(PackedF32::bytes).sum::<usize>()
    }

    /// Logits for already-encoded rows.
    pub fn logits_encoded(&self, enc: &Encoded) -> Vec<f32> {
        self.dense(&self.input_matrix(enc), enc.rows)
    }

    /// The dense layers alone on `m` rows of the MLP input ([`FloatModel::input_matrix`]):
    /// what a benchmark of the layers times.
    ///
    /// # Panics
    /// When `x` holds fewer than `m` rows of the input width.
    pub fn dense(&self, x: &[f32], m: usize) -> Vec<f32> {
        mlp(self.kernel, &self.layers, x, m)
    }
}

/// A layer packed for [`kernels::float`].
pub fn pack(d: &Dense) -> PackedF32 {
    PackedF32::new(&d.weight, &d.bias, d.output, d.input)
}

/// Rows per block in [`mlp`]: a block's activations (two buffers of 64 rows of the widest
/// layer: 64 KB at 128 channels) stay in L1/L2 between layers.
const MLP_BLOCK: usize = 64;

thread_local! {
    /// Reused activation buffers of [`mlp`] (two blocks of the widest layer).
    static MLP_SCRATCH: std::cell::RefCell<kernels::float::AlignedF32> =
        const { std::cell::RefCell::new(kernels::float::AlignedF32::new()) };
}

/// Runs `layers` (ReLU between them, none after the last) on `m` rows of `x`, a block of
/// [`MLP_BLOCK`] rows at a time through every layer; returns `[m, n_last]`.
///
/// # Panics
/// When `layers` is empty or `x` holds fewer than `m` rows of the first layer's input width.
pub fn mlp(kernel: Kernel, layers: &[PackedF32], x: &[f32], m: usize) -> Vec<f32> {
    run_layers(kernel, layers, x, m, false)
}

/// [`mlp`], with a ReLU after the last layer too when `relu_last`.
pub(crate) fn run_layers(kernel: Kernel, layers: &[PackedF32], x: &[f32], m: usize, relu_last: bool) -> Vec<f32> {
    let (Some(first), Some(last)) = (layers.first(), layers.last()) else {
        panic!("mlp: no layers");
    };
    let k0 = first.k();
    assert!(x.len() >= m * k0, "mlp: input holds {} values, expected {m} x {k0}", x.len());
    let width = layers.iter().map(PackedF32::np).max().unwrap_or(0);
    let (n_out, np) = (last.n(), last.np());
    let mut out = Vec::with_capacity(m * n_out);
    let mut scratch = MLP_SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let (a, b) = scratch.get_mut(2 * MLP_BLOCK * width).split_at_mut(MLP_BLOCK * width);
    for start in (0..m).step_by(MLP_BLOCK) {
        let rows = MLP_BLOCK.min(m - start);
        let (mut src, mut dst) = (&mut *a, &mut *b);
        for (i, layer) in layers.iter().enumerate() {
            let relu = i + 1 < layers.len() || relu_last;
            let input = if i == 0 {
                Rows { data: &x[start * k0..(start + rows) * k0], stride: k0, rows }
            } else {
                Rows { data: src, stride: layers[i - 1].np(), rows }
            };
            let output = RowsMut { data: dst, stride: layer.np() };
            if i == 0 {
                kernels::float::dense_f32(kernel, input, layer, relu, output);
            } else {
                // The previous layer's ReLU outputs: often mostly zeros, skipped when they are.
                kernels::float::dense_f32_skipping_zeros(kernel, input, layer, relu, output);
            }
            std::mem::swap(&mut src, &mut dst);
        }
        for r in 0..rows {
            out.extend_from_slice(&src[r * np..r * np + n_out]);
        }
    }
    MLP_SCRATCH.with(|s| *s.borrow_mut() = scratch);
    out
}

/// y = x · Wᵀ + b for x [m, in] row-major and W [out, in] row-major (the layer packed for
/// this call; a model packs its layers once at load).
///
/// Each output is the same sequential fused multiply-add sum for every batch size and kernel
/// ([`kernels::float`]): a row scores bit for bit the same alone, in a coalesced batch or in
/// a file.
///
/// # Panics
/// When `x` holds fewer than `m · in` values or the layer's tensors do not match its shape.
pub fn dense_forward(x: &[f32], m: usize, layer: &Dense) -> Vec<f32> {
    let (k, n) = (layer.input, layer.output);
    assert!(x.len() >= m * k, "dense_forward: input holds {} values, expected {m} x {k}", x.len());
    assert!(
        layer.weight.len() == n * k && layer.bias.len() == n,
        "dense_forward: layer tensors do not match its shape {n} x {k}"
    );
    mlp(Kernel::best(), std::slice::from_ref(&pack(layer)), x, m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::manifest::Interaction;
    use crate::artifact::spec::Ids;
    use crate::artifact::weights::Table;
    use crate::runtime::{Model, dot_f32, encode};

    #[test]
    fn dense_forward_matches_a_scalar_loop() {
        for (m, k, n) in [(5, 7, 3), (1, 35, 9), (12, 20, 17), (64, 3, 2)] {
            check_dense(m, k, n);
        }
    }

    #[test]
    fn a_row_scores_the_same_alone_and_at_any_position_of_any_batch() {
        let (k, n) = (67, 37);
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.53).sin()).collect();
        let layer = Dense { weight: w, bias: vec![0.125; n], input: k, output: n };
        let x: Vec<f32> = (0..300 * k).map(|i| (i as f32 * 0.29).cos() * 3.0).collect();
        let all = dense_forward(&x, 300, &layer);
        for (start, m) in [(0, 1), (17, 1), (5, 7), (100, 64), (250, 50)] {
            let part = dense_forward(&x[start * k..(start + m) * k], m, &layer);
            assert_eq!(part, all[start * n..(start + m) * n], "rows {start}..{}", start + m);
        }
    }

    fn check_dense(m: usize, k: usize, n: usize) {
        let x: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.91).cos()).collect();
        let b: Vec<f32> = (0..n).map(|i| i as f32 * 0.25 - 1.0).collect();
        let layer = Dense { weight: w.clone(), bias: b.clone(), input: k, output: n };
        let y = dense_forward(&x, m, &layer);
        for r in 0..m {
            for o in 0..n {
                let want: f32 = b[o] + (0..k).map(|i| x[r * k + i] * w[o * k + i]).sum::<f32>();
                assert!((y[r * n + o] - want).abs() < 1e-5);
            }
        }
    }

    /// A float model with random weights (two id columns of widths 4 and 8, or 8 and 8 with a
    /// dot interaction, three numbers, hidden [70, 33]) and `rows` random input rows, some ids
    /// unknown.
    fn float_model(kernel: Kernel, rows: usize, interaction: Interaction) -> (FloatModel, Columns) {
        use crate::artifact::spec::{CategoricalSpec, NumericSpec, Vocabulary};
        let mut rng = crate::rng::Rng::new(17);
        let mut r = |n: usize, s: f64| -> Vec<f32> { (0..n).map(|_| (rng.normal() * s) as f32).collect() };
        let spec = FeatureSpec {
            categorical: (0..2)
                .map(|i| CategoricalSpec::with_vocabulary(format!("c{i}"), Vocabulary::Int((0..20).collect())))
                .collect(),
            numeric: (0..3).map(|i| NumericSpec { name: format!("n{i}"), mean: 0.5, std: 2.0 }).collect(),
            label: "label".into(),
            sources: vec![],
        };
        let dims = if interaction == Interaction::Dot { [8usize, 8] } else { [4, 8] };
        let arch = Architecture {
            embedding_dims: dims.to_vec(),
            hidden: vec![70, 33],
            activation: crate::artifact::manifest::Activation::Relu,
            interaction,
        };
        let tables = dims.map(|d| Table { data: r(21 * d, 1.0), rows: 21, dim: d }).to_vec();
        let dense = arch
            .layer_shapes(&spec)
            .iter()
            .map(|&(k, n)| Dense { weight: r(n * k, 0.4), bias: r(n, 0.2), input: k, output: n })
            .collect();
        let model = FloatModel::with_kernel(spec, arch, FloatWeights { embeddings: tables, dense }, kernel);
        let ids = |r: &mut dyn FnMut(usize, f64) -> Vec<f32>| {
            Ids::Int(r(rows, 1.0).iter().map(|v| (v.abs() * 12.0) as i64).collect())
        };
        let categorical = vec![ids(&mut r), ids(&mut r)];
        let numeric = (0..3).map(|_| r(rows, 3.0)).collect();
        (model, Columns { rows, categorical, lists: Vec::new(), numeric })
    }

    /// The float model's forward pass in f64, layer by layer (no blocks, no packing).
    fn forward_f64(model: &FloatModel, x: &[f32], rows: usize) -> Vec<f64> {
        let mut h: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let last = model.weights.dense.len() - 1;
        for (li, d) in model.weights.dense.iter().enumerate() {
            let mut y = vec![0f64; rows * d.output];
            for r in 0..rows {
                for c in 0..d.output {
                    let s: f64 = (0..d.input).map(|i| h[r * d.input + i] * f64::from(d.weight[c * d.input + i])).sum();
                    let v = s + f64::from(d.bias[c]);
                    y[r * d.output + c] = if li < last { v.max(0.0) } else { v };
                }
            }
            h = y;
        }
        h
    }

    #[test]
    fn float_models_give_the_same_bits_on_every_kernel_and_through_the_dense_entry() {
        let rows = 300; // several blocks of the layer-fused loop, and a partial one
        for interaction in [Interaction::None, Interaction::Dot] {
            let (reference, cols) = float_model(Kernel::Scalar, rows, interaction);
            let want = reference.logits(&cols).unwrap();
            let x = reference.input_matrix(&encode(&reference.spec, &cols.view()));
            assert_eq!(x.len(), rows * reference.arch.input_dim(&reference.spec), "{interaction}");
            for (got, exact) in want.iter().zip(forward_f64(&reference, &x, rows)) {
                assert!((f64::from(*got) - exact).abs() < 1e-4 * (1.0 + exact.abs()), "{got} vs {exact}");
            }
            assert!(want.iter().any(|&v| v != want[0]), "logits vary across rows");
            for kernel in Kernel::available() {
                let (model, _) = float_model(kernel, rows, interaction);
                assert_eq!(model.logits(&cols).unwrap(), want, "{} {interaction}", kernel.name());
                assert_eq!(model.dense(&x, rows), want, "{} {interaction} dense entry", kernel.name());
                // A row scores the same alone as in the batch.
                for r in [0, 77, rows - 1] {
                    let one = model.logits(&cols.slice(r, r + 1)).unwrap();
                    assert_eq!(one, want[r..r + 1], "{} {interaction} row {r} alone", kernel.name());
                }
                let m = Model::Float(model);
                assert_eq!(m.dense(&m.input_matrix(&cols.view()).unwrap(), rows).unwrap(), want);
                assert!(m.dense(&x[1..], rows).is_err(), "a short input is an error, not a panic");
            }
        }
    }

    #[test]
    fn the_dot_column_follows_the_numbers_and_is_the_dot_of_the_user_and_place_rows() {
        let rows = 50;
        let (model, cols) = float_model(Kernel::Scalar, rows, Interaction::Dot);
        let enc = encode(&model.spec, &cols.view());
        let x = model.input_matrix(&enc);
        let width = 8 + 8 + 3 + 1;
        assert_eq!(x.len(), rows * width);
        let (user, place) = (&model.weights.embeddings[0], &model.weights.embeddings[1]);
        let mut nonzero = 0;
        for r in 0..rows {
            let row = &x[r * width..(r + 1) * width];
            let (u, p) = (enc.ids[0][r] as usize, enc.ids[1][r] as usize);
            // The layout: both embedding rows, the normalized numbers, then the dot.
            assert_eq!(&row[..8], &user.data[u * 8..(u + 1) * 8]);
            assert_eq!(&row[8..16], &place.data[p * 8..(p + 1) * 8]);
            assert_eq!(&row[16..19], &enc.numeric[r * 3..(r + 1) * 3]);
            let exact: f64 = (0..8).map(|i| f64::from(user.data[u * 8 + i]) * f64::from(place.data[p * 8 + i])).sum();
            let scale: f64 = (0..8).map(|i| f64::from((user.data[u * 8 + i] * place.data[p * 8 + i]).abs())).sum();
            assert!((f64::from(row[19]) - exact).abs() <= 1e-6 * (1.0 + scale), "row {r}: {} vs {exact}", row[19]);
            nonzero += usize::from(row[19] != 0.0);
        }
        assert!(nonzero > rows / 2, "the dot column is filled");
    }

    #[test]
    fn dot_f32_adds_the_products_one_at_a_time_in_index_order() {
        // In order: (1e8 + 1) rounds back to 1e8, then − 1e8 gives 0; a pairwise or reversed
        // sum (what a reduction kernel may choose) gives 1. The ONNX chain of Adds gives 0.
        assert_eq!(dot_f32(&[1e8, 1.0, -1e8], &[1.0, 1.0, 1.0]), 0.0);
        assert_eq!(dot_f32(&[-1e8, 1.0, 1e8], &[1.0, 1.0, 1.0]), 0.0);
        assert_eq!(dot_f32(&[1e8, -1e8, 1.0], &[1.0, 1.0, 1.0]), 1.0);
        assert_eq!(dot_f32(&[1.5, 2.0], &[2.0, -0.25]), 2.5);
        assert_eq!(dot_f32(&[], &[]), 0.0);
    }
}
