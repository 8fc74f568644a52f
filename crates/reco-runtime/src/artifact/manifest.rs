//! The manifest: what an artifact is, how it was made, and the hash of every file in it.
//! Its JSON Schema is published at `schemas/manifest.schema.json`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::spec::FeatureSpec;
use crate::error::{Error, ErrorKind, Result};

/// Value of the `format` field.
pub const FORMAT: &str = "reco-cli.artifact";
/// Current manifest schema version.
pub const FORMAT_VERSION: u32 = 1;

/// What an artifact is: the stage that made it. A closed set: a manifest naming any other
/// kind is refused on load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The float teacher (`train`).
    Teacher,
    /// The distilled float student (`distill`).
    Student,
    /// The student architecture trained on hard labels only (the distillation baseline).
    StudentScratch,
    /// INT8 model of the teacher (`quantize`).
    TeacherInt8,
    /// INT8 model of the student.
    StudentInt8,
    /// INT8 model of the scratch student.
    StudentScratchInt8,
}

impl Kind {
    /// The name used in manifests and stage directories.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Teacher => "teacher",
            Self::Student => "student",
            Self::StudentScratch => "student-scratch",
            Self::TeacherInt8 => "teacher-int8",
            Self::StudentInt8 => "student-int8",
            Self::StudentScratchInt8 => "student-scratch-int8",
        }
    }

    /// Whether the kind is an INT8 model.
    pub fn is_int8(self) -> bool {
        matches!(self, Self::TeacherInt8 | Self::StudentInt8 | Self::StudentScratchInt8)
    }

    /// The kind of this float model's INT8 version (`None` for an INT8 kind).
    pub fn int8(self) -> Option<Self> {
        match self {
            Self::Teacher => Some(Self::TeacherInt8),
            Self::Student => Some(Self::StudentInt8),
            Self::StudentScratch => Some(Self::StudentScratchInt8),
            _ => None,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an artifact passed the gate it was made under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Usable.
    Ok,
    /// Written for inspection, but a quality gate failed.
    Failed,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
        })
    }
}

/// The hidden layers' activation: `relu`, the one format version 1 has. Any other name reads
/// as [`Activation::Unsupported`] and is refused by [`Manifest::check_format`] with its name
/// (a manifest from a newer reco-cli says what it needs, not just that it does not parse).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Activation {
    /// max(0, x).
    #[default]
    Relu,
    /// A name this version does not know.
    Unsupported(String),
}

impl Activation {
    /// Its name in manifests.
    pub fn name(&self) -> &str {
        match self {
            Self::Relu => "relu",
            Self::Unsupported(s) => s,
        }
    }
}

impl std::fmt::Display for Activation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Activation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Activation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(if name == "relu" { Self::Relu } else { Self::Unsupported(name) })
    }
}

/// An explicit interaction term appended to the MLP input. A closed set: a manifest or recipe
/// naming any other is refused when it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interaction {
    /// No extra input.
    #[default]
    None,
    /// The dot product of the first two categorical columns' embedding rows (user and place,
    /// of equal widths), one extra input column after the numeric ones.
    Dot,
}

impl Interaction {
    /// Its name in recipes and manifests.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Dot => "dot",
        }
    }

    /// Whether there is no term (manifests then omit the field, as before it existed).
    pub fn is_none(&self) -> bool {
        *self == Self::None
    }

    /// Extra MLP input columns the term adds.
    pub fn columns(self) -> usize {
        match self {
            Self::None => 0,
            Self::Dot => 1,
        }
    }
}

impl std::fmt::Display for Interaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The widest embedding a dot interaction takes: its integer form (INT8 models) sums `dim`
/// products of u8 code differences, each at most 255² in magnitude, in an i32.
pub const MAX_DOT_DIM: usize = (i32::MAX / (255 * 255)) as usize;

/// Architecture of the float network: embeddings, then an MLP with ReLU, then one logit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Architecture {
    /// Embedding width of each categorical column, in the feature spec's order.
    pub embedding_dims: Vec<usize>,
    /// Hidden layer widths; the output layer (width 1, no activation) follows.
    pub hidden: Vec<usize>,
    /// Hidden activation (always `relu` in format version 1).
    pub activation: Activation,
    /// The interaction term appended after the numeric columns (absent: none).
    #[serde(default, skip_serializing_if = "Interaction::is_none")]
    pub interaction: Interaction,
}

impl Architecture {
    /// Width of the MLP input: all embeddings, the numeric columns, then the interaction term.
    pub fn input_dim(&self, spec: &FeatureSpec) -> usize {
        self.embedding_dims.iter().sum::<usize>() + spec.numeric.len() + self.interaction.columns()
    }

    /// Refuses an interaction the embeddings cannot give: a dot needs two categorical columns
    /// (user and place, the first two) of equal embedding widths, at most [`MAX_DOT_DIM`].
    pub fn validate(&self) -> Result<()> {
        if self.interaction != Interaction::Dot {
            return Ok(());
        }
        match self.embedding_dims[..] {
            [a, b, ..] if a == b && a <= MAX_DOT_DIM => Ok(()),
            [a, b, ..] if a == b => Err(Error::new(
                ErrorKind::ShapeMismatch,
                format!("interaction \"dot\": embedding width {a} is above the {MAX_DOT_DIM} it supports"),
            )),
            [a, b, ..] => Err(Error::new(
                ErrorKind::ShapeMismatch,
                format!(
                    "interaction \"dot\" needs equal embedding widths of the first two categorical columns (user and place), got {a} and {b}"
                ),
            )),
            _ => Err(Error::new(
                ErrorKind::ShapeMismatch,
                format!(
                    "interaction \"dot\" needs two categorical columns (user and place), the model has {}",
                    self.embedding_dims.len()
                ),
            )),
        }
    }

    /// (in, out) of each dense layer, the output layer included.
    pub fn layer_shapes(&self, spec: &FeatureSpec) -> Vec<(usize, usize)> {
        let mut dims = vec![self.input_dim(spec)];
        dims.extend(&self.hidden);
        dims.push(1);
        dims.windows(2).map(|w| (w[0], w[1])).collect()
    }

    /// Number of trainable parameters.
    pub fn parameter_count(&self, spec: &FeatureSpec) -> usize {
        let emb: usize = spec.categorical.iter().zip(&self.embedding_dims).map(|(c, d)| c.rows() * d).sum();
        let dense: usize = self.layer_shapes(spec).iter().map(|(i, o)| i * o + o).sum();
        emb + dense
    }
}

/// sha256 and size of one file in the artifact.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// Hex sha256 of the file's bytes.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// The kind of an exported ONNX graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Graph {
    /// Float32 throughout (a float artifact).
    #[serde(rename = "fp32")]
    Fp32,
    /// QuantizeLinear/DequantizeLinear around int8 weights (an INT8 artifact).
    #[serde(rename = "qdq-int8")]
    QdqInt8,
    /// A TFLite float model (a float artifact), or its inputs file.
    #[serde(rename = "tflite-fp32")]
    TfliteFp32,
    /// A TFLite integer model with per-channel weight scales (an INT8 artifact), or its
    /// inputs file.
    #[serde(rename = "tflite-int8")]
    TfliteInt8,
    /// The same with one weight scale per layer.
    #[serde(rename = "tflite-int8-per-tensor")]
    TfliteInt8PerTensor,
}

impl std::fmt::Display for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Fp32 => "fp32",
            Self::QdqInt8 => "qdq-int8",
            Self::TfliteFp32 => "tflite-fp32",
            Self::TfliteInt8 => "tflite-int8",
            Self::TfliteInt8PerTensor => "tflite-int8-per-tensor",
        })
    }
}

/// A file exported from the artifact for other runtimes (e.g. `model.onnx`). Kept apart from
/// [`Manifest::files`] so that exporting does not change the artifact's content hash (which
/// children and benchmarks use to find their parent).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExportEntry {
    /// Path relative to the artifact directory.
    pub file: String,
    /// Hex sha256 of the file's bytes.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Which graph was exported.
    pub graph: Graph,
    /// The format's version: the ONNX IR version, or the TFLite schema version (3).
    pub ir_version: i64,
    /// Opset per domain (`ai.onnx`, `ai.onnx.ml`); none for TFLite files.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub opsets: BTreeMap<String, i64>,
}

/// Where an artifact came from (students and INT8 models).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Lineage {
    /// Content hash ([`Manifest::content_hash`]) of the parent artifact.
    pub parent_content_sha256: String,
    /// The parent's kind.
    pub parent_kind: Kind,
    /// The parent's directory when this artifact was made, relative to this artifact's
    /// directory (`../teacher`).
    pub parent_path: String,
}

/// An INT8 artifact's quantization record (fields in alphabetical order: the JSON they make is
/// the one earlier versions wrote from an ordered map).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Quantization {
    /// The input quantization of each dense layer.
    pub activations: Vec<ActivationQuant>,
    /// Calibration rows used.
    pub calibration_rows: usize,
    /// The activation range chooser.
    pub calibrator: crate::quant::calibrate::Calibrator,
    /// Each embedding table's layout (`int4`, `int8-table`, `int8`), by categorical column
    /// (empty in manifests written before per-table precision: every table `int8`).
    #[serde(default)]
    pub embedding_precision: std::collections::BTreeMap<String, crate::quant::TableLayout>,
    /// Per-batch activation ranges instead of calibrated ones.
    pub dynamic_activations: bool,
    /// Dense layers kept in float (requested, and added by the accuracy gate).
    pub float_layers: Vec<usize>,
    /// The accuracy gate against the float parent.
    pub gate: QuantizationGate,
    /// SQNR of each layer's INT8 output against float on the same input, dB (`null`: exact).
    pub layer_sqnr_db: Vec<Option<f64>>,
    /// One weight scale per output channel (else per tensor).
    pub per_channel: bool,
    /// Dense layers asked to stay float.
    pub requested_float_layers: Vec<usize>,
    /// The scheme in words.
    pub scheme: String,
    /// Weight bits (7 or 8).
    pub weight_bits: u32,
}

/// A dense layer's input quantization: static u8 parameters, or per batch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ActivationQuant {
    /// Calibrated once: `real = scale · (code − zero_point)`.
    Static {
        /// The code type (`uint8`).
        dtype: String,
        /// Dense layer index.
        layer: usize,
        /// Step size.
        scale: f64,
        /// The code of real 0.
        zero_point: i32,
    },
    /// Ranges measured on each batch.
    Dynamic {
        /// Always true.
        dynamic: bool,
        /// Dense layer index.
        layer: usize,
    },
}

/// The accuracy gate an INT8 model was made under.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct QuantizationGate {
    /// Largest allowed |ΔAUC|.
    pub max_auc_drop: f64,
    /// Largest allowed |ΔNDCG@10|.
    pub max_ndcg_drop: f64,
    /// Whether it held.
    pub passed: bool,
}

/// A quality gate that failed on this artifact or on one it was made from (its status is then
/// `failed`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GateFailure {
    /// The gate (`student_ndcg_retention`, `teacher_int8_abs_delta_auc`, ...).
    pub gate: String,
    /// The artifact it judged: this one, or an ancestor (by its directory name in the run).
    pub artifact: String,
    /// The measured value (`null`: it could not be measured).
    pub value: Option<f64>,
    /// The threshold it missed.
    pub threshold: f64,
}

impl std::fmt::Display for GateFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = self.value.map_or_else(|| "not measurable".to_string(), |v| format!("{v:.4}"));
        write!(f, "gate {} on {}: {value} (threshold {})", self.gate, self.artifact, self.threshold)
    }
}

/// The manifest of one artifact directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Schema version, [`FORMAT_VERSION`] when written by this build.
    pub format_version: u32,
    /// `teacher`, `student`, `student-int8`, ...
    pub kind: Kind,
    /// `ok`, or `failed` when a quality gate failed.
    pub status: Status,
    /// Version of reco-cli that wrote it.
    pub reco_cli_version: String,
    /// Network architecture.
    pub architecture: Architecture,
    /// How raw input columns become model inputs.
    pub feature_spec: FeatureSpec,
    /// How tensors are named and laid out in `model.safetensors`.
    pub tensor_layout: String,
    /// The resolved recipe (after command-line overrides).
    pub recipe: serde_json::Value,
    /// Seed used for training.
    pub seed: u64,
    /// sha256 and size of every file except the manifest, by relative path.
    pub files: BTreeMap<String, FileEntry>,
    /// sha256 of each input data file, by name.
    pub input_data: BTreeMap<String, String>,
    /// Parent artifact, if any.
    pub lineage: Option<Lineage>,
    /// Training facts (epochs, best epoch, backend, throughput, losses).
    pub training: serde_json::Value,
    /// Metrics measured when the artifact was made.
    pub metrics: serde_json::Value,
    /// INT8 artifacts: scheme, calibrator, activation qparams, per-layer SQNR, float layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<Quantization>,
    /// Exported files by format (`onnx`), verified on load like `files`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exports: BTreeMap<String, ExportEntry>,
    /// Why the status is `failed`: the gates that failed on this artifact or an ancestor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gate_failures: Vec<GateFailure>,
}

/// Whether a manifest's file name stays inside the artifact: relative, plain components only.
fn is_inside_name(name: &str) -> bool {
    let p = Path::new(name);
    !name.is_empty() && p.components().all(|c| matches!(c, std::path::Component::Normal(_)))
}

impl Manifest {
    /// Refuses manifests of another format or a newer version.
    pub fn check_format(&self, path: &Path) -> Result<()> {
        if self.format != FORMAT {
            return Err(Error::new(
                ErrorKind::NotAnArtifact,
                format!("{}: format is {:?}, expected {FORMAT:?}", path.display(), self.format),
            ));
        }
        if self.format_version != FORMAT_VERSION {
            return Err(Error::new(
                ErrorKind::UnsupportedVersion,
                format!(
                    "{}: format_version {} is not supported (this reco-cli reads {FORMAT_VERSION})",
                    path.display(),
                    self.format_version
                ),
            ));
        }
        let names = self.files.keys().chain(self.exports.values().map(|e| &e.file));
        if let Some(bad) = names.into_iter().find(|n| !is_inside_name(n)) {
            return Err(Error::new(
                ErrorKind::NotAnArtifact,
                format!(
                    "{}: lists file {bad:?}, expected a path inside the artifact directory (no `..`, not absolute)",
                    path.display()
                ),
            ));
        }
        if let Activation::Unsupported(name) = &self.architecture.activation {
            return Err(Error::new(
                ErrorKind::UnsupportedVersion,
                format!(
                    "{}: architecture.activation {name:?} is not supported (format version 1 has \"relu\")",
                    path.display(),
                ),
            ));
        }
        if self.kind.is_int8() != self.quantization.is_some() {
            return Err(Error::new(
                ErrorKind::NotAnArtifact,
                format!(
                    "{}: kind {} {} a `quantization` section",
                    path.display(),
                    self.kind,
                    if self.kind.is_int8() { "is INT8 but has no" } else { "is a float model but has" }
                ),
            ));
        }
        self.feature_spec.validate().map_err(|e| e.with_prefix(format_args!("{}: feature_spec ", path.display())))?;
        if self.architecture.embedding_dims.len() != self.feature_spec.categorical.len() {
            return Err(Error::new(
                ErrorKind::ShapeMismatch,
                format!(
                    "{}: architecture has {} embeddings but the feature spec has {} categorical columns",
                    path.display(),
                    self.architecture.embedding_dims.len(),
                    self.feature_spec.categorical.len()
                ),
            ));
        }
        self.architecture.validate().map_err(|e| e.with_prefix(format_args!("{}: architecture: ", path.display())))?;
        Ok(())
    }

    /// Content hash of the artifact: sha256 over the sorted `name sha256` lines of its files.
    pub fn content_hash(&self) -> String {
        let lines: String = self.files.iter().map(|(k, v)| format!("{k} {}\n", v.sha256)).collect();
        super::sha256_bytes(lines.as_bytes())
    }

    /// sha256 over the whole manifest except its exports (which `export` adds later): what a
    /// stage that wrote the artifact records, so that any edit — the feature spec, the
    /// status — makes the stage run again instead of being trusted.
    pub fn state_hash(&self) -> String {
        let mut m = self.clone();
        m.exports.clear();
        super::sha256_bytes(&serde_json::to_vec(&m).unwrap_or_default())
    }

    /// Total bytes of the artifact's files (manifest excluded).
    pub fn size_bytes(&self) -> u64 {
        self.files.values().map(|f| f.bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arch(dims: &[usize], interaction: Interaction) -> Architecture {
        Architecture { embedding_dims: dims.to_vec(), hidden: vec![4], activation: Activation::Relu, interaction }
    }

    #[test]
    fn an_architecture_without_the_term_serializes_as_before_it_existed() {
        let before = r#"{"embedding_dims":[8,8,2],"hidden":[4],"activation":"relu"}"#;
        let none: Architecture = serde_json::from_str(before).unwrap();
        assert_eq!(none, arch(&[8, 8, 2], Interaction::None));
        assert_eq!(serde_json::to_string(&none).unwrap(), before);
        let dot = arch(&[8, 8, 2], Interaction::Dot);
        let text = serde_json::to_string(&dot).unwrap();
        assert_eq!(text, r#"{"embedding_dims":[8,8,2],"hidden":[4],"activation":"relu","interaction":"dot"}"#);
        assert_eq!(serde_json::from_str::<Architecture>(&text).unwrap(), dot);
        let other = text.replace("\"dot\"", "\"cross\"");
        let err = serde_json::from_str::<Architecture>(&other).unwrap_err().to_string();
        assert!(err.contains("cross") && err.contains("none") && err.contains("dot"), "{err}");
    }

    #[test]
    fn the_dot_adds_one_input_and_needs_two_equal_id_embeddings() {
        let spec = FeatureSpec {
            categorical: vec![],
            numeric: vec![super::super::spec::NumericSpec { name: "x".into(), mean: 0.0, std: 1.0 }],
            label: "label".into(),
            sources: vec![],
        };
        assert_eq!(arch(&[8, 8, 2], Interaction::None).input_dim(&spec), 19);
        assert_eq!(arch(&[8, 8, 2], Interaction::Dot).input_dim(&spec), 20);
        assert_eq!(arch(&[8, 8, 2], Interaction::Dot).layer_shapes(&spec), [(20, 4), (4, 1)]);
        arch(&[8, 8, 2], Interaction::Dot).validate().unwrap();
        arch(&[8, 4], Interaction::None).validate().unwrap();
        for (dims, what) in [
            (&[8usize, 4, 2][..], "got 8 and 4"),
            (&[8], "the model has 1"),
            (&[], "the model has 0"),
            (&[MAX_DOT_DIM + 1, MAX_DOT_DIM + 1], "above the 33025 it supports"),
        ] {
            let e = arch(dims, Interaction::Dot).validate().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ShapeMismatch);
            assert!(e.to_string().contains(what), "{dims:?}: {e}");
        }
        // The widest dot cannot overflow its i32 sum.
        assert!((MAX_DOT_DIM as i64) * 255 * 255 <= i64::from(i32::MAX));
    }
}
