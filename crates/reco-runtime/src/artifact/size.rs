//! Where an artifact's bytes go: each embedding table and dense layer with its precision, the
//! safetensors header, the manifest (its vocabularies counted apart), and the total a server
//! must ship: the manifest and every file it lists. Exports (`model.onnx`) are shown apart and
//! left out of the total (a server runs the native artifact or the ONNX file), and the
//! manifest is counted as its stage wrote it, before exports and gate verdicts were added: the
//! same model measures the same whether `eval` runs before or after `export` and the gates.
//!
//! Read from the stored tensors themselves (names, dtypes, shapes), so a float model, an INT8
//! one and one written before fp16 scales are all measured the same way.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};

use super::manifest::{Architecture, Manifest, Status};
use super::spec::{FeatureSpec, IdsRef};
use super::{MANIFEST, WEIGHTS};
use crate::error::{Error, IoContext, Result};

/// One embedding table's or dense layer's stored size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSize {
    /// `embedding.<col>` or `dense.<i>`.
    pub name: String,
    /// `[rows, dim]` of a table, `[out, in]` of a layer.
    pub shape: [usize; 2],
    /// `f32`, `f16` (a float layer's weights), `int8`, `int8-table` (one scale and bias for the
    /// table) or `int4`.
    pub precision: String,
    /// Bytes of its tensors' data.
    pub bytes: u64,
}

/// An artifact's bytes, part by part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeReport {
    /// Every table, then every layer, in model order.
    pub parts: Vec<TensorSize>,
    /// `model.safetensors`' header (tensor names, dtypes, shapes, offsets).
    pub weights_header_bytes: u64,
    /// `model.safetensors` in all.
    pub weights_bytes: u64,
    /// `manifest.json` as its stage wrote it (without exports and gate verdicts).
    pub manifest_bytes: u64,
    /// Of the manifest, the vocabularies' JSON (ids as written, with their separators).
    pub vocabulary_bytes: u64,
    /// Other files the manifest lists (`metrics.json`).
    pub other_bytes: u64,
    /// Exports the manifest records (`model.onnx`), not in the total.
    pub export_bytes: u64,
    /// The manifest and every file it lists: what a server running the artifact loads.
    pub deployable_bytes: u64,
}

/// Sizes of the artifact in `dir` (already verified by the caller's load).
pub fn of_artifact(dir: &Path, manifest: &Manifest) -> Result<SizeReport> {
    let wpath = dir.join(WEIGHTS);
    let weights = std::fs::read(&wpath).at(&wpath)?;
    let mut as_written = manifest.clone();
    as_written.exports.clear();
    as_written.gate_failures.clear();
    as_written.status = Status::Ok;
    let manifest_bytes = super::json::to_vec(&as_written)?.len() as u64;
    let parts =
        tensor_sizes(&weights, &manifest.feature_spec, &manifest.architecture, manifest.quantization.is_some())?;
    let data: u64 = tensors_data_bytes(&weights)?;
    let others: u64 = manifest.files.iter().filter(|(n, _)| n.as_str() != WEIGHTS).map(|(_, f)| f.bytes).sum();
    let exports: u64 = manifest.exports.values().map(|e| e.bytes).sum();
    let vocabulary_bytes = manifest
        .feature_spec
        .categorical
        .iter()
        .map(|c| match c.vocabulary.view() {
            IdsRef::Int(v) => serde_json::to_vec(v).map_or(0, |v| v.len() as u64),
            IdsRef::Str(v) => serde_json::to_vec(v).map_or(0, |v| v.len() as u64),
        })
        .sum();
    Ok(SizeReport {
        parts,
        weights_header_bytes: weights.len() as u64 - data,
        weights_bytes: weights.len() as u64,
        manifest_bytes,
        vocabulary_bytes,
        other_bytes: others,
        export_bytes: exports,
        deployable_bytes: manifest_bytes + manifest.size_bytes(),
    })
}

fn parse<'a>(bytes: &'a [u8]) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes).map_err(|e| Error::input(format!("{WEIGHTS}: not a valid safetensors file ({e})")))
}

fn tensors_data_bytes(bytes: &[u8]) -> Result<u64> {
    Ok(parse(bytes)?.tensors().iter().map(|(_, v)| v.data().len() as u64).sum())
}

/// Each table's and layer's bytes in safetensors `bytes` of a model with this feature spec and
/// architecture (they name and shape the tables); `quantized` says which tensor names a table
/// has.
pub fn tensor_sizes(bytes: &[u8], spec: &FeatureSpec, arch: &Architecture, quantized: bool) -> Result<Vec<TensorSize>> {
    let st = parse(bytes)?;
    let stored: BTreeMap<String, Stored> =
        st.tensors().into_iter().map(|(n, v)| (n, (v.shape().to_vec(), v.data().len() as u64))).collect();
    let group = |prefix: &str, suffixes: &[&'static str]| -> BTreeMap<&'static str, Stored> {
        suffixes.iter().filter_map(|&s| stored.get(&format!("{prefix}{s}")).map(|t| (s, t.clone()))).collect()
    };
    let tables = spec.categorical.iter().zip(&arch.embedding_dims).map(|(c, &dim)| {
        let name = format!("embedding.{}", c.name);
        let g = if quantized { group(&name, &TABLE_SUFFIXES[1..]) } else { group(&name, &[""]) };
        TensorSize { shape: [c.rows(), dim], precision: table_precision(&g, c.rows()).into(), bytes: total(&g), name }
    });
    let layers = (0..=arch.hidden.len()).map(|i| {
        let name = format!("dense.{i}");
        let g = group(&name, &LAYER_SUFFIXES);
        let shape = match g.get(".weight_q").or_else(|| g.get(".weight")).map(|w| w.0.as_slice()) {
            Some(&[out, input]) => [out, input],
            _ => [0, 0],
        };
        // A layer the gate kept in float holds fp16 weights when they fit ([`QLayer::Float`]).
        let half = g.get(".weight").is_some_and(|(s, b)| *b == 2 * s.iter().product::<usize>() as u64);
        let precision = match (g.contains_key(".weight_q"), half) {
            (true, _) => "int8",
            (false, true) => "f16",
            (false, false) => "f32",
        };
        TensorSize { shape, precision: precision.into(), bytes: total(&g), name }
    });
    Ok(tables.chain(layers).collect())
}

/// A tensor's shape and data bytes.
type Stored = (Vec<usize>, u64);

/// A float table is `embedding.<col>` itself; a quantized one has the others.
const TABLE_SUFFIXES: [&str; 5] = ["", ".codes", ".codes4", ".scale_bias", ".scale_offset"];
const LAYER_SUFFIXES: [&str; 7] =
    [".weight", ".bias", ".weight_q", ".weight_scale", ".bias_q", ".input_scale", ".input_zero_point"];

/// As the loader reads them: one scale pair for a table of several rows is `int8-table`.
fn table_precision(g: &BTreeMap<&str, Stored>, rows: usize) -> &'static str {
    if g.contains_key(".codes4") {
        "int4"
    } else if g.contains_key(".codes") {
        let one_pair = rows > 1 && g.get(".scale_bias").is_some_and(|(shape, _)| shape.first() == Some(&1));
        if one_pair { "int8-table" } else { "int8" }
    } else if g.contains_key("") {
        "f32"
    } else {
        "missing"
    }
}

fn total(g: &BTreeMap<&str, Stored>) -> u64 {
    g.values().map(|(_, b)| b).sum()
}

/// One line of a size table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeRow {
    /// `embedding.<col>`, `dense.<i>`, or a file part.
    pub part: String,
    /// Its precision, or what the part is.
    pub what: String,
    /// `[rows, dim]` / `[out, in]`, empty for file parts.
    pub shape: String,
    /// Bytes.
    pub bytes: u64,
    /// Where `bytes` is in the report's JSON, relative to it (`parts/0/bytes`).
    pub key: String,
}

impl SizeReport {
    /// Every table and layer, the header, the manifest, the other files and the total: the
    /// rows `inspect`, `eval` and the report show.
    pub fn rows(&self) -> Vec<SizeRow> {
        let row = |part: &str, what: String, bytes, key: &str| SizeRow {
            part: part.into(),
            what,
            shape: String::new(),
            bytes,
            key: key.into(),
        };
        let mut rows: Vec<SizeRow> = self
            .parts
            .iter()
            .enumerate()
            .map(|(j, p)| SizeRow {
                part: p.name.clone(),
                what: p.precision.clone(),
                shape: format!("[{}, {}]", p.shape[0], p.shape[1]),
                bytes: p.bytes,
                key: format!("parts/{j}/bytes"),
            })
            .collect();
        let vocab = format!("vocabularies {} of it", self.vocabulary_bytes);
        rows.push(row(
            "model.safetensors header",
            "names, shapes".into(),
            self.weights_header_bytes,
            "weights_header_bytes",
        ));
        rows.push(row(MANIFEST, vocab, self.manifest_bytes, "manifest_bytes"));
        rows.push(row("other files", "metrics.json".into(), self.other_bytes, "other_bytes"));
        rows.push(row("exports", "model.onnx, not in the total".into(), self.export_bytes, "export_bytes"));
        rows.push(row("deployable total", "what a server loads".into(), self.deployable_bytes, "deployable_bytes"));
        rows
    }
}
