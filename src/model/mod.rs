//! Burn modules for training: embeddings + MLP -> one logit, and the losses.
//!
//! Only training uses burn. Trained weights leave through [`RecoNet::to_weights`] into the
//! artifact's backend-free [`FloatWeights`], which the runtime scores with.

pub mod loss;

use burn::module::{Module, Param, ParamId};
use burn::nn::{Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};

use reco_runtime::artifact::manifest::{Architecture, Interaction};
use reco_runtime::artifact::spec::FeatureSpec;
use reco_runtime::artifact::weights::{Dense, FloatWeights, Table};
use reco_runtime::error::{Error, Result};

/// A training backend: burn's flex (the default, the faster on CPUs), ndarray, or wgpu (GPU;
/// only in a build with the `wgpu` feature).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// burn-flex on the CPU.
    #[default]
    Flex,
    /// burn-ndarray on the CPU.
    Ndarray,
    /// burn-wgpu (Vulkan, Metal, DX12).
    Wgpu,
}

impl Backend {
    /// Its name in recipes and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Flex => "flex",
            Self::Ndarray => "ndarray",
            Self::Wgpu => "wgpu",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        [Self::Flex, Self::Ndarray, Self::Wgpu].into_iter().find(|b| b.name() == s).ok_or_else(|| {
            format!("backend {s:?} is not available in this build, expected one of: {}", backends().join(", "))
        })
    }
}

/// Training backends this build offers.
pub fn backends() -> &'static [&'static str] {
    if cfg!(feature = "wgpu") { &["flex", "ndarray", "wgpu"] } else { &["flex", "ndarray"] }
}

/// The burn device of a backend.
pub fn device(backend: Backend) -> Result<Device> {
    match backend {
        Backend::Flex => Ok(Device::flex()),
        #[allow(deprecated)]
        Backend::Ndarray => Ok(Device::ndarray()),
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => wgpu_device(),
        #[cfg(not(feature = "wgpu"))]
        Backend::Wgpu => Err(Error::input(format!(
            "backend \"wgpu\" is not available in this build, expected one of: {}",
            backends().join(", ")
        ))),
    }
}

/// The default wgpu device, checked with one tiny computation. Without a usable adapter burn
/// panics on first use, in its device thread; this turns that into an input error (exit 2)
/// before any training starts.
#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device> {
    let device = Device::wgpu(Default::default());
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let probe = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Tensor::<1>::from_floats([1.0f32, 2.0], &device).sum().into_scalar::<f32>()
    }));
    std::panic::set_hook(hook);
    match probe {
        Ok(v) if v == 3.0 => Ok(device),
        Ok(v) => Err(Error::input(format!("--backend wgpu: the GPU computed 1 + 2 = {v}"))),
        Err(_) => Err(Error::input(
            "--backend wgpu: no usable GPU adapter (a Vulkan, Metal or DX12 driver is needed; on a headless \
             NVIDIA Linux machine, point VK_ICD_FILENAMES at an ICD file for libEGL_nvidia.so.0)",
        )),
    }
}

/// Embeddings (one per categorical column) + MLP with ReLU -> one logit; with a dot
/// interaction, the MLP input ends with the dot product of the first two embedding rows.
#[derive(Module, Debug)]
pub struct RecoNet {
    /// One table per categorical column, in spec order.
    pub embeddings: Vec<Embedding>,
    /// Dense layers; the last one has width 1 and no activation.
    pub layers: Vec<Linear>,
    /// The interaction term appended after the numeric inputs (no parameters of its own).
    #[module(skip)]
    pub interaction: Interaction,
}

/// One categorical column of a batch on a device.
pub enum BatchIds {
    /// One embedding row per example, `[batch]`.
    One(Box<Tensor<1, Int>>),
    /// A multi-valued column.
    Lists(Box<BatchLists>),
}

/// A multi-valued column of a batch: each example's rows padded with row 0 to the batch's
/// longest list.
pub struct BatchLists {
    /// `[batch · width]` embedding rows.
    pub ids: Tensor<1, Int>,
    /// `[batch, width]`: 1 on real values, 0 on padding.
    pub mask: Tensor<2>,
    /// `[batch, 1]`: 1 / length for mean pooling (1 for an empty list, and for sum pooling).
    pub scale: Tensor<2>,
    /// The padded width (at least 1).
    pub width: usize,
}

/// One batch of encoded inputs on a device.
pub struct BatchTensors {
    /// Embedding rows per categorical column.
    pub ids: Vec<BatchIds>,
    /// Normalized numeric features `[batch, numeric]`.
    pub numeric: Tensor<2>,
}

impl BatchTensors {
    /// Uploads rows `idx` of encoded data (`spec` says how multi-valued columns pool).
    pub fn new(
        spec: &FeatureSpec,
        enc: &reco_runtime::runtime::Encoded,
        idx: &[usize],
        k: usize,
        device: &Device,
    ) -> Self {
        let b = idx.len();
        let ids = (0..enc.ids.len())
            .map(|c| match enc.bag(spec, c) {
                Some(bag) => lists(enc, c, idx, bag.pooling, device),
                None => {
                    let v: Vec<i64> = idx.iter().map(|&i| i64::from(enc.ids[c][i])).collect();
                    BatchIds::One(Box::new(Tensor::<1, Int>::from_data(TensorData::new(v, [b]), device)))
                }
            })
            .collect();
        let mut num = Vec::with_capacity(b * k);
        for &i in idx {
            num.extend_from_slice(&enc.numeric[i * k..(i + 1) * k]);
        }
        let numeric = Tensor::<2>::from_data(TensorData::new(num, [b, k]), device);
        Self { ids, numeric }
    }
}

/// Rows `idx` of multi-valued column `c`, padded to the longest list among them (at least 1).
fn lists(
    enc: &reco_runtime::runtime::Encoded,
    c: usize,
    idx: &[usize],
    pooling: reco_runtime::artifact::spec::Pooling,
    device: &Device,
) -> BatchIds {
    let b = idx.len();
    let width = idx.iter().map(|&i| enc.rows_at(c, i).len()).max().unwrap_or(0).max(1);
    let (mut ids, mut mask, mut scale) = (vec![0i64; b * width], vec![0f32; b * width], vec![1f32; b]);
    for (r, &i) in idx.iter().enumerate() {
        let rows = enc.rows_at(c, i);
        for (j, &row) in rows.iter().enumerate() {
            ids[r * width + j] = i64::from(row);
            mask[r * width + j] = 1.0;
        }
        if pooling == reco_runtime::artifact::spec::Pooling::Mean && !rows.is_empty() {
            scale[r] = 1.0 / rows.len() as f32;
        }
    }
    BatchIds::Lists(Box::new(BatchLists {
        ids: Tensor::<1, Int>::from_data(TensorData::new(ids, [b * width]), device),
        mask: Tensor::<2>::from_data(TensorData::new(mask, [b, width]), device),
        scale: Tensor::<2>::from_data(TensorData::new(scale, [b, 1]), device),
        width,
    }))
}

impl RecoNet {
    /// A freshly initialized network (seed the device first for reproducibility).
    pub fn new(spec: &FeatureSpec, arch: &Architecture, device: &Device) -> Self {
        let embeddings = spec
            .categorical
            .iter()
            .zip(&arch.embedding_dims)
            .map(|(c, &d)| {
                EmbeddingConfig::new(c.rows(), d)
                    .with_initializer(Initializer::Normal { mean: 0.0, std: 0.05 })
                    .init(device)
            })
            .collect();
        let layers = arch.layer_shapes(spec).into_iter().map(|(i, o)| LinearConfig::new(i, o).init(device)).collect();
        Self { embeddings, layers, interaction: arch.interaction }
    }

    /// Logits for a batch.
    ///
    /// # Shapes
    /// - ids: `[batch]` each (a multi-valued column: `[batch, width]` pooled to one row);
    ///   numeric: `[batch, numeric]`
    /// - MLP input: `[batch, Σ dims + numeric (+ 1 for the dot)]`
    /// - output: `[batch]`
    pub fn forward(&self, batch: &BatchTensors) -> Tensor<1> {
        let mut parts: Vec<Tensor<2>> = self
            .embeddings
            .iter()
            .zip(&batch.ids)
            .map(|(e, ids)| match ids {
                BatchIds::One(ids) => e.weight.val().select(0, (**ids).clone()),
                BatchIds::Lists(l) => {
                    let ([b, _], d, w) = (l.mask.dims(), e.weight.dims()[1], l.width);
                    let rows: Tensor<3> = e.weight.val().select(0, l.ids.clone()).reshape([b, w, d]);
                    let summed: Tensor<2> = (rows * l.mask.clone().reshape([b, w, 1])).sum_dim(1).reshape([b, d]);
                    summed * l.scale.clone()
                }
            })
            .collect();
        // The dot of the user and place rows, `[batch, 1]` (equal widths: `Architecture::validate`).
        let dot = match (self.interaction, &parts[..]) {
            (Interaction::Dot, [user, place, ..]) => Some((user.clone() * place.clone()).sum_dim(1)),
            _ => None,
        };
        parts.push(batch.numeric.clone());
        parts.extend(dot);
        let mut x = Tensor::cat(parts, 1);
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = relu(x);
            }
        }
        let [b, _] = x.dims();
        x.reshape([b])
    }

    /// Copies the weights out into the artifact layout (dense weights transposed to [out, in]).
    pub fn to_weights(&self) -> Result<FloatWeights> {
        let vec = |t: Tensor<2>| -> Result<(Vec<f32>, [usize; 2])> {
            let dims = t.dims();
            let data = t.into_data();
            let v = data.as_slice::<f32>().map_err(|e| Error::Internal(format!("{e:?}")))?.to_vec();
            Ok((v, dims))
        };
        let embeddings = self
            .embeddings
            .iter()
            .map(|e| {
                let (data, [rows, dim]) = vec(e.weight.val())?;
                Ok(Table { data, rows, dim })
            })
            .collect::<Result<_>>()?;
        let dense = self
            .layers
            .iter()
            .map(|l| {
                let (w, [input, output]) = vec(l.weight.val())?;
                let mut weight = vec![0f32; input * output];
                for i in 0..input {
                    for o in 0..output {
                        weight[o * input + i] = w[i * output + o];
                    }
                }
                let bias = match &l.bias {
                    Some(b) => {
                        b.val().into_data().as_slice::<f32>().map_err(|e| Error::Internal(format!("{e:?}")))?.to_vec()
                    }
                    None => vec![0.0; output],
                };
                Ok(Dense { weight, bias, input, output })
            })
            .collect::<Result<_>>()?;
        Ok(FloatWeights { embeddings, dense })
    }

    /// Gives the parameters ids 1, 2, 3, ... in a fixed order (embeddings, then each layer's
    /// weight and bias) instead of burn's random ones, so that optimizer state saved by one
    /// process (keyed by parameter id) applies to the same parameters in another (`--resume`).
    pub fn with_stable_ids(mut self) -> Self {
        let mut n = 0u64;
        let mut next = || {
            n += 1;
            ParamId::from(n)
        };
        for e in &mut self.embeddings {
            e.weight.id = next();
        }
        for l in &mut self.layers {
            l.weight.id = next();
            if let Some(b) = &mut l.bias {
                b.id = next();
            }
        }
        self
    }

    /// A trainable network holding `w` exactly (the inverse of [`RecoNet::to_weights`]), with
    /// stable parameter ids.
    pub fn from_weights(spec: &FeatureSpec, arch: &Architecture, w: &FloatWeights, device: &Device) -> Result<Self> {
        let mut net = Self::new(spec, arch, device);
        if net.embeddings.len() != w.embeddings.len() || net.layers.len() != w.dense.len() {
            return Err(Error::Internal("checkpoint weights do not match the architecture".into()));
        }
        for (e, t) in net.embeddings.iter_mut().zip(&w.embeddings) {
            e.weight = Param::from_data(TensorData::new(t.data.clone(), [t.rows, t.dim]), device);
        }
        for (l, d) in net.layers.iter_mut().zip(&w.dense) {
            let mut transposed = vec![0f32; d.input * d.output];
            for o in 0..d.output {
                for i in 0..d.input {
                    transposed[i * d.output + o] = d.weight[o * d.input + i];
                }
            }
            l.weight = Param::from_data(TensorData::new(transposed, [d.input, d.output]), device);
            l.bias = Some(Param::from_data(TensorData::new(d.bias.clone(), [d.output]), device));
        }
        Ok(net.with_stable_ids())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::{AdamWConfig, GradientsParams};
    use reco_runtime::artifact::spec::{CategoricalSpec, NumericSpec};

    fn setup() -> (FeatureSpec, Architecture, reco_runtime::runtime::Encoded) {
        let spec = FeatureSpec {
            categorical: vec![CategoricalSpec::new("user_id", (1..=20).collect())],
            numeric: vec![NumericSpec { name: "x".into(), mean: 0.0, std: 1.0 }],
            label: "label".into(),
            sources: Vec::new(),
        };
        let arch = Architecture {
            embedding_dims: vec![4],
            hidden: vec![8],
            activation: reco_runtime::artifact::manifest::Activation::Relu,
            interaction: reco_runtime::artifact::manifest::Interaction::None,
        };
        let rows = 64;
        let enc = reco_runtime::runtime::Encoded {
            rows,
            ids: vec![(0..rows as u32).map(|i| i % 21).collect()],
            offsets: Vec::new(),
            numeric: (0..rows).map(|i| (i as f32 * 0.37).sin()).collect(),
        };
        (spec, arch, enc)
    }

    fn step(
        model: RecoNet,
        optim: &mut burn::optim::ModuleOptimizer,
        enc: &reco_runtime::runtime::Encoded,
        ad: &Device,
    ) -> RecoNet {
        let idx: Vec<usize> = (0..enc.rows).collect();
        let batch = BatchTensors::new(&setup().0, enc, &idx, 1, ad);
        let y: Vec<f32> = idx.iter().map(|&i| (i % 3 == 0) as u8 as f32).collect();
        let labels = Tensor::<1>::from_data(TensorData::new(y, [idx.len()]), ad);
        let loss = crate::model::loss::bce_with_logits(model.forward(&batch), labels);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        optim.step(0.01, model, grads)
    }

    #[test]
    fn the_training_forward_with_a_dot_scores_as_the_runtime_does() {
        // Two id columns of width 4 (the dot's pair), one small one, one number.
        let spec = FeatureSpec {
            categorical: vec![
                CategoricalSpec::new("user_id", (1..=20).collect()),
                CategoricalSpec::new("place_id", (1..=9).collect()),
                CategoricalSpec::new("segment", (1..=3).collect()),
            ],
            numeric: vec![NumericSpec { name: "x".into(), mean: 0.0, std: 1.0 }],
            label: "label".into(),
            sources: Vec::new(),
        };
        let arch = Architecture {
            embedding_dims: vec![4, 4, 2],
            hidden: vec![8],
            activation: reco_runtime::artifact::manifest::Activation::Relu,
            interaction: Interaction::Dot,
        };
        let rows = 40;
        let enc = reco_runtime::runtime::Encoded {
            rows,
            ids: [21u32, 10, 4].iter().map(|&n| (0..rows as u32).map(|i| (i * 7 + 3) % n).collect()).collect(),
            offsets: Vec::new(),
            numeric: (0..rows).map(|i| (i as f32 * 0.37).sin()).collect(),
        };
        let dev = device(Backend::Flex).unwrap();
        dev.seed(5);
        let mut net = RecoNet::new(&spec, &arch, &dev);
        // Large embeddings, so the dot is far from 0 and its weights matter.
        let mut w = net.to_weights().unwrap();
        w.embeddings.iter_mut().flat_map(|t| t.data.iter_mut()).for_each(|v| *v *= 20.0);
        net = RecoNet::from_weights(&spec, &arch, &w, &dev).unwrap();
        assert_eq!(net.layers[0].weight.dims(), [4 + 4 + 2 + 1 + 1, 8]);
        let idx: Vec<usize> = (0..rows).collect();
        let ours =
            net.forward(&BatchTensors::new(&spec, &enc, &idx, 1, &dev)).into_data().as_slice::<f32>().unwrap().to_vec();
        let runtime = reco_runtime::runtime::FloatModel::new(spec.clone(), arch.clone(), w.clone()).unwrap();
        let want = runtime.logits_encoded(&enc);
        for (a, b) in ours.iter().zip(&want) {
            assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
        // Without the dot (its input weights zeroed) the logits move: the term is in both.
        let mut no_dot = w.clone();
        (0..8).for_each(|o| no_dot.dense[0].weight[o * 12 + 11] = 0.0);
        let moved = reco_runtime::runtime::FloatModel::new(spec, arch, no_dot).unwrap().logits_encoded(&enc);
        assert!(moved.iter().zip(&want).any(|(a, b)| (a - b).abs() > 1e-2), "the dot column carries weight");
    }

    #[test]
    fn a_network_rebuilt_from_its_weights_and_optimizer_state_continues_bit_for_bit() {
        let (spec, arch, enc) = setup();
        let dev = device(Backend::Flex).unwrap();
        dev.seed(1);
        let ad = dev.autodiff();
        let mut model = RecoNet::new(&spec, &arch, &ad).with_stable_ids();
        let mut optim = AdamWConfig::new().with_weight_decay(0.01).init();
        for _ in 0..3 {
            model = step(model, &mut optim, &enc, &ad);
        }
        let saved_w = model.to_weights().unwrap();
        let saved_o = optim.into_bytes().unwrap().to_vec();
        assert_eq!(RecoNet::from_weights(&spec, &arch, &saved_w, &ad).unwrap().to_weights().unwrap(), saved_w);
        let mut a = model;
        for _ in 0..3 {
            a = step(a, &mut optim, &enc, &ad);
        }
        let mut b = RecoNet::from_weights(&spec, &arch, &saved_w, &ad).unwrap();
        let mut optim_b = AdamWConfig::new()
            .with_weight_decay(0.01)
            .init()
            .from_bytes(burn::tensor::Bytes::from_bytes_vec(saved_o))
            .unwrap();
        for _ in 0..3 {
            b = step(b, &mut optim_b, &enc, &ad);
        }
        assert_eq!(a.to_weights().unwrap(), b.to_weights().unwrap());
    }

    #[test]
    fn a_multi_valued_column_pools_in_training_as_the_runtime_does() {
        use reco_runtime::artifact::spec::{Bag, Ids, Pooling};
        use reco_runtime::runtime::Columns;
        for pooling in [Pooling::Mean, Pooling::Sum] {
            // The setup's network, its one categorical column multi-valued.
            let (mut spec, arch, _) = setup();
            let bag = Bag { max_values: 3, pooling };
            spec.categorical = vec![CategoricalSpec::new("tags", (1..=6).collect()).with_bag(bag)];
            // Lists of 0 to 3 ids, unknown ones (7, 9) among them.
            let lists: Vec<Vec<i64>> = vec![vec![1, 2], vec![], vec![3], vec![9, 4, 4], vec![6, 7, 5], vec![2]];
            let cols = Columns {
                rows: lists.len(),
                categorical: vec![Ids::Int(lists.concat())],
                lists: vec![Some(
                    std::iter::once(0)
                        .chain(lists.iter().scan(0, |n, l| Some(*n + l.len()).inspect(|m| *n = *m)))
                        .collect(),
                )],
                numeric: vec![(0..lists.len()).map(|i| i as f32 * 0.3 - 0.5).collect()],
            };
            let enc = reco_runtime::runtime::encode(&spec, &cols.view());
            let dev = device(Backend::Flex).unwrap();
            dev.seed(9);
            let mut net = RecoNet::new(&spec, &arch, &dev);
            let mut w = net.to_weights().unwrap();
            w.embeddings[0].data.iter_mut().for_each(|v| *v *= 30.0);
            net = RecoNet::from_weights(&spec, &arch, &w, &dev).unwrap();
            let idx: Vec<usize> = (0..cols.rows).collect();
            let ours = net.forward(&BatchTensors::new(&spec, &enc, &idx, 1, &dev));
            let ours = ours.into_data().as_slice::<f32>().unwrap().to_vec();
            let runtime = reco_runtime::runtime::FloatModel::new(spec.clone(), arch, w).unwrap();
            let want = runtime.logits(&cols).unwrap();
            for (a, b) in ours.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{pooling:?}: {a} vs {b}");
            }
        }
    }
}
