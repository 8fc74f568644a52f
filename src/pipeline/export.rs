//! `export`: an artifact → ONNX (FP32 graph for float artifacts, QDQ graph for INT8 ones;
//! layout in [`reco_onnx`]) or TFLite (float or full-integer model, layout in [`reco_tflite`],
//! with an inputs file beside it: the vocabularies that map ids to the graph's row indices).
//! Files are written atomically; when they live inside the artifact they are recorded with
//! their hashes under the manifest's `exports`, and the artifact directory is rebuilt in a
//! temporary sibling and swapped in, so a failure leaves the old artifact untouched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::outputs::{Format, OutputGuard, Written};
use reco_onnx::{self as onnx, IdLookup};
use reco_runtime::artifact::manifest::{ExportEntry, Graph, Manifest};
use reco_runtime::artifact::qweights::QuantWeights;
use reco_runtime::artifact::weights::FloatWeights;
use reco_runtime::artifact::{self, ArtifactWriter, MANIFEST, WEIGHTS};
use reco_runtime::error::{Error, IoContext, Result};
use reco_tflite::WeightScales;

/// Default ONNX file name inside the artifact.
pub const ONNX_FILE: &str = "model.onnx";
/// Default TFLite file name inside the artifact.
pub const TFLITE_FILE: &str = "model.tflite";
/// What the TFLite inputs file's name adds to the model's.
pub const INPUTS_SUFFIX: &str = ".inputs.json";

/// What to export.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// ONNX, with this id lookup.
    Onnx(IdLookup),
    /// TFLite, with these weight scales for INT8 artifacts.
    Tflite(WeightScales),
}

/// What was exported.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ExportSummary {
    /// Artifact directory.
    pub model: String,
    /// Written file.
    pub out: String,
    /// The TFLite inputs file written beside it (vocabularies, shapes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs_file: Option<String>,
    /// `fp32`, `qdq-int8`, `tflite-fp32`, `tflite-int8` or `tflite-int8-per-tensor`.
    pub graph: Graph,
    /// sha256 of the written file.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
    /// ONNX IR version, or the TFLite schema version.
    pub ir_version: i64,
    /// Opset per domain (ONNX).
    pub opsets: BTreeMap<String, i64>,
    /// Whether the manifest now records the file (it lives inside the artifact).
    pub recorded_in_manifest: bool,
}

/// One exported file: its manifest key, path, bytes.
struct File {
    key: &'static str,
    path: PathBuf,
    bytes: Vec<u8>,
}

/// Exports the artifact in `model_dir` to `out` (default `model_dir/model.onnx` or
/// `model.tflite`; a TFLite model gets its inputs file beside it). A failed or stale artifact
/// is refused unless `allow_failed`.
pub fn export(model_dir: &Path, out: Option<&Path>, target: Target, allow_failed: bool) -> Result<ExportSummary> {
    let (name, format) = match target {
        Target::Onnx(_) => (ONNX_FILE, Format::Onnx),
        Target::Tflite(_) => (TFLITE_FILE, Format::Tflite),
    };
    let out_path = out.map(Path::to_path_buf).unwrap_or_else(|| model_dir.join(name));
    OutputGuard::new("--out", &out_path, Written::File(format)).reads(&[model_dir]).manages(model_dir, name).check()?;
    let inputs_path = PathBuf::from(format!("{}{INPUTS_SUFFIX}", out_path.display()));
    let inputs_name = format!("{name}{INPUTS_SUFFIX}");
    if matches!(target, Target::Tflite(_)) {
        OutputGuard::new("--out", &inputs_path, Written::File(Format::Json))
            .reads(&[model_dir])
            .manages(model_dir, &inputs_name)
            .check()?;
    }
    let mut manifest = artifact::open(model_dir)?;
    if !allow_failed {
        artifact::check_usable(model_dir, &manifest)?;
    }
    let (files, graph, ir_version, opsets) = match target {
        Target::Onnx(lookup) => {
            let (onnx::Exported { bytes, opsets }, graph) = onnx_bytes(model_dir, &manifest, lookup)?;
            (vec![File { key: "onnx", path: out_path.clone(), bytes }], graph, onnx::IR_VERSION, opsets)
        }
        Target::Tflite(scales) => {
            let (bytes, inputs, graph) = tflite_bytes(model_dir, &manifest, scales)?;
            let files = vec![
                File { key: "tflite", path: out_path.clone(), bytes },
                File { key: "tflite.inputs", path: inputs_path.clone(), bytes: inputs },
            ];
            (files, graph, i64::from(reco_tflite::schema::SCHEMA_VERSION), BTreeMap::new())
        }
    };
    let (sha256, bytes) = (artifact::sha256_bytes(&files[0].bytes), files[0].bytes.len() as u64);
    let inside = relative_inside(model_dir, &out_path)?.is_some();
    if inside {
        let writer = ArtifactWriter::create(model_dir)?;
        let rels: Vec<String> = files
            .iter()
            .map(|f| relative_inside(model_dir, &f.path))
            .collect::<Result<Option<Vec<_>>>>()?
            .unwrap_or_default();
        let mut skip: Vec<&str> = rels.iter().map(String::as_str).collect();
        skip.push(MANIFEST);
        copy_tree(model_dir, &writer.path(""), &skip)?;
        for (f, rel) in files.iter().zip(&rels) {
            writer.write(rel, &f.bytes)?;
            let entry = ExportEntry {
                file: rel.clone(),
                sha256: artifact::sha256_bytes(&f.bytes),
                bytes: f.bytes.len() as u64,
                graph,
                ir_version,
                opsets: opsets.clone(),
            };
            manifest.exports.insert(f.key.to_string(), entry);
        }
        writer.write(MANIFEST, &artifact::json::to_vec(&manifest)?)?;
        writer.commit()?;
    } else {
        write_together(&files)?;
    }
    Ok(ExportSummary {
        model: model_dir.display().to_string(),
        out: out_path.display().to_string(),
        inputs_file: matches!(target, Target::Tflite(_)).then(|| inputs_path.display().to_string()),
        graph,
        sha256,
        bytes,
        ir_version,
        opsets,
        recorded_in_manifest: inside,
    })
}

/// Writes every file beside its path first, then renames them into place: a write that fails
/// (a full disk) leaves none of them changed, so a TFLite model never meets an inputs file of
/// another export.
fn write_together(files: &[File]) -> Result<()> {
    let tmp = |p: &Path| PathBuf::from(format!("{}.reco-tmp-{}", p.display(), std::process::id()));
    let mut written = Vec::new();
    let result = files.iter().try_for_each(|f| {
        if let Some(parent) = f.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).at(parent)?;
        }
        let t = tmp(&f.path);
        written.push(t.clone());
        std::fs::write(&t, &f.bytes).at(&t)
    });
    let result =
        result.and_then(|()| files.iter().try_for_each(|f| std::fs::rename(tmp(&f.path), &f.path).at(&f.path)));
    if result.is_err() {
        for t in written.iter().filter(|t| t.exists()) {
            let _ = std::fs::remove_file(t);
        }
    }
    result
}

/// The artifact's identity, stored in every exported file's metadata.
fn identity(manifest: &Manifest) -> Vec<(String, String)> {
    vec![
        ("reco_cli.kind".to_string(), manifest.kind.to_string()),
        ("reco_cli.model_content_sha256".to_string(), manifest.content_hash()),
    ]
}

/// The ONNX graph: FP32 for float artifacts, QDQ for INT8 ones.
pub(crate) fn onnx_bytes(model_dir: &Path, manifest: &Manifest, lookup: IdLookup) -> Result<(onnx::Exported, Graph)> {
    let (spec, arch) = (&manifest.feature_spec, &manifest.architecture);
    let (weights, meta) = (model_dir.join(WEIGHTS), identity(manifest));
    Ok(if manifest.kind.is_int8() {
        let w = QuantWeights::load(&weights, spec, arch)?.matching(manifest, &weights)?;
        (onnx::int8_model(spec, arch, &w, lookup, &meta)?, Graph::QdqInt8)
    } else {
        let w = FloatWeights::load(&weights, spec, arch)?;
        (onnx::float_model(spec, arch, &w, lookup, &meta)?, Graph::Fp32)
    })
}

/// The TFLite model and its inputs file (also stored in the model as metadata
/// `reco_cli.inputs`).
fn tflite_bytes(model_dir: &Path, manifest: &Manifest, scales: WeightScales) -> Result<(Vec<u8>, Vec<u8>, Graph)> {
    let (spec, arch) = (&manifest.feature_spec, &manifest.architecture);
    let weights = model_dir.join(WEIGHTS);
    let graph = match (manifest.kind.is_int8(), scales) {
        (false, _) => Graph::TfliteFp32,
        (true, WeightScales::PerChannel) => Graph::TfliteInt8,
        (true, WeightScales::PerTensor) => Graph::TfliteInt8PerTensor,
    };
    let inputs = artifact::json::to_vec(&inputs_document(manifest, graph)?)?;
    let mut meta: BTreeMap<String, Vec<u8>> =
        identity(manifest).into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
    meta.insert("reco_cli.inputs".to_string(), inputs.clone());
    let bytes = if manifest.kind.is_int8() {
        let w = QuantWeights::load(&weights, spec, arch)?.matching(manifest, &weights)?;
        reco_tflite::int8_model(spec, arch, &w, scales, &meta)?
    } else {
        let w = FloatWeights::load(&weights, spec, arch)?;
        reco_tflite::float_model(spec, arch, &w, &meta)?
    };
    Ok((bytes, inputs, graph))
}

/// The TFLite inputs file: every input's name, type and shape, each categorical column's
/// vocabulary (row = position + 1, 0 for any other id) and each numeric column's
/// normalization (applied inside the graph), and the outputs.
fn inputs_document(manifest: &Manifest, graph: Graph) -> Result<serde_json::Value> {
    let spec = &manifest.feature_spec;
    let json = |e: serde_json::Error| Error::Internal(e.to_string());
    let mut inputs = Vec::new();
    for c in &spec.categorical {
        let mut v = serde_json::to_value(c).map_err(json)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("input".into(), "row index: position in vocabulary + 1, 0 for any other id".into());
            o.insert("tensor_type".into(), "int32".into());
            o.insert("shape".into(), serde_json::json!([-1]));
        }
        inputs.push(v);
    }
    for n in &spec.numeric {
        inputs.push(serde_json::json!({
            "name": n.name, "input": "raw value (the graph normalizes it: (x - mean) * (1 / std) in float32)",
            "tensor_type": "float32", "shape": [-1, 1], "mean": n.mean, "std": n.std,
        }));
    }
    Ok(serde_json::json!({
        "format": "reco-cli tflite inputs 1",
        "graph": graph.to_string(),
        "model_kind": manifest.kind.to_string(),
        "model_content_sha256": manifest.content_hash(),
        "inputs": inputs,
        "outputs": [
            { "name": "logit", "tensor_type": "float32", "shape": [-1] },
            { "name": "probability", "tensor_type": "float32", "shape": [-1] },
        ],
        "signature": "serving_default",
    }))
}

/// `out`'s path relative to `dir` when it lies inside it (compared after resolving `dir` and
/// `out`'s parent, which must exist for an inside path).
fn relative_inside(dir: &Path, out: &Path) -> Result<Option<String>> {
    let dir = dir.canonicalize().at(dir)?;
    let name = out.file_name().ok_or_else(|| Error::input(format!("{}: not a file name", out.display())))?;
    let parent = match out.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => match p.canonicalize() {
            Ok(p) => p,
            Err(_) => return Ok(None),
        },
        None => PathBuf::from(".").canonicalize().at(Path::new("."))?,
    };
    Ok(parent.join(name).strip_prefix(&dir).ok().map(|r| r.to_string_lossy().replace('\\', "/")))
}

/// Copies every file below `from` into `to`, except the relative paths in `skip`.
fn copy_tree(from: &Path, to: &Path, skip: &[&str]) -> Result<()> {
    for (p, rel) in reco_runtime::artifact::files_below(from)? {
        if skip.contains(&rel.as_str()) {
            continue;
        }
        let dst = to.join(&rel);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).at(parent)?;
        }
        std::fs::copy(&p, &dst).at(&p)?;
    }
    Ok(())
}
