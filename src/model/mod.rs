//! Burn modules for training: embeddings + MLP -> one logit, and the losses.
//!
//! Only training uses burn. Trained weights leave through [`RecoNet::to_weights`] into the
//! artifact's backend-free [`FloatWeights`], which the runtime scores with.

pub mod loss;

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::artifact::manifest::Architecture;
use crate::artifact::spec::FeatureSpec;
use crate::artifact::weights::{Dense, FloatWeights, Table};
use crate::error::{Error, Result};

/// Training backends this build offers.
pub fn backends() -> &'static [&'static str] {
    if cfg!(feature = "wgpu") { &["flex", "ndarray", "wgpu"] } else { &["flex", "ndarray"] }
}

/// The burn device for a backend name (`flex`, `ndarray`, `wgpu` with the feature).
pub fn device(backend: &str) -> Result<Device> {
    match backend {
        "flex" => Ok(Device::flex()),
        #[allow(deprecated)]
        "ndarray" => Ok(Device::ndarray()),
        #[cfg(feature = "wgpu")]
        "wgpu" => wgpu_device(),
        other => Err(Error::input(format!(
            "backend {other:?} is not available in this build, expected one of: {}",
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

/// Embeddings (one per categorical column) + MLP with ReLU -> one logit.
#[derive(Module, Debug)]
pub struct RecoNet {
    /// One table per categorical column, in spec order.
    pub embeddings: Vec<Embedding>,
    /// Dense layers; the last one has width 1 and no activation.
    pub layers: Vec<Linear>,
}

/// One batch of encoded inputs on a device.
pub struct BatchTensors {
    /// Embedding row ids per categorical column, each `[batch]`.
    pub ids: Vec<Tensor<1, Int>>,
    /// Normalized numeric features `[batch, numeric]`.
    pub numeric: Tensor<2>,
}

impl BatchTensors {
    /// Uploads rows `idx` of encoded data.
    pub fn new(enc: &crate::runtime::Encoded, idx: &[usize], k: usize, device: &Device) -> Self {
        let b = idx.len();
        let ids = enc
            .ids
            .iter()
            .map(|col| {
                let v: Vec<i64> = idx.iter().map(|&i| i64::from(col[i])).collect();
                Tensor::<1, Int>::from_data(TensorData::new(v, [b]), device)
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
        Self { embeddings, layers }
    }

    /// Logits for a batch.
    ///
    /// # Shapes
    /// - ids: `[batch]` each; numeric: `[batch, numeric]`
    /// - output: `[batch]`
    pub fn forward(&self, batch: &BatchTensors) -> Tensor<1> {
        let mut parts: Vec<Tensor<2>> =
            self.embeddings.iter().zip(&batch.ids).map(|(e, ids)| e.weight.val().select(0, ids.clone())).collect();
        parts.push(batch.numeric.clone());
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
}
