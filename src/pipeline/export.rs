//! `export`: an artifact → ONNX (FP32 graph for float artifacts, QDQ graph for INT8 ones;
//! layout in [`reco_onnx`]). The file is written atomically; when it lives inside the
//! artifact it is recorded with its hash under the manifest's `exports`, and the artifact
//! directory is rebuilt in a temporary sibling and swapped in, so a failure leaves the old
//! artifact untouched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::outputs::{Format, OutputGuard, Written};
use reco_onnx::{self as onnx, IdLookup};
use reco_runtime::artifact::manifest::{ExportEntry, Graph};
use reco_runtime::artifact::qweights::QuantWeights;
use reco_runtime::artifact::weights::FloatWeights;
use reco_runtime::artifact::{self, ArtifactWriter, MANIFEST, WEIGHTS};
use reco_runtime::error::{Error, IoContext, Result};

/// Default file name inside the artifact.
pub const ONNX_FILE: &str = "model.onnx";

/// What was exported.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ExportSummary {
    /// Artifact directory.
    pub model: String,
    /// Written file.
    pub out: String,
    /// `fp32` or `qdq-int8`.
    pub graph: Graph,
    /// sha256 of the written file.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
    /// ONNX IR version.
    pub ir_version: i64,
    /// Opset per domain.
    pub opsets: BTreeMap<String, i64>,
    /// Whether the manifest now records the file (it lives inside the artifact).
    pub recorded_in_manifest: bool,
}

/// Exports the artifact in `model_dir` to `out` (default `model_dir/model.onnx`). A failed or
/// stale artifact is refused unless `allow_failed`.
pub fn export(model_dir: &Path, out: Option<&Path>, lookup: IdLookup, allow_failed: bool) -> Result<ExportSummary> {
    let out_path = out.map(Path::to_path_buf).unwrap_or_else(|| model_dir.join(ONNX_FILE));
    OutputGuard::new("--out", &out_path, Written::File(Format::Onnx))
        .reads(&[model_dir])
        .manages(model_dir, ONNX_FILE)
        .check()?;
    let mut manifest = artifact::open(model_dir)?;
    if !allow_failed {
        artifact::check_usable(model_dir, &manifest)?;
    }
    let (spec, arch) = (&manifest.feature_spec, &manifest.architecture);
    let weights = model_dir.join(WEIGHTS);
    let meta = vec![
        ("reco_cli.kind".to_string(), manifest.kind.to_string()),
        ("reco_cli.model_content_sha256".to_string(), manifest.content_hash()),
    ];
    let (onnx::Exported { bytes, opsets }, graph) = if manifest.kind.is_int8() {
        let w = QuantWeights::load(&weights, spec, arch)?.matching(&manifest, &weights)?;
        (onnx::int8_model(spec, arch, &w, lookup, &meta)?, Graph::QdqInt8)
    } else {
        let w = FloatWeights::load(&weights, spec, arch)?;
        (onnx::float_model(spec, arch, &w, lookup, &meta)?, Graph::Fp32)
    };
    let sha256 = artifact::sha256_bytes(&bytes);
    let inside = relative_inside(model_dir, &out_path)?;
    match &inside {
        Some(rel) => {
            let writer = ArtifactWriter::create(model_dir)?;
            copy_tree(model_dir, &writer.path(""), &[rel.as_str(), MANIFEST])?;
            writer.write(rel, &bytes)?;
            manifest.exports.insert(
                "onnx".to_string(),
                ExportEntry {
                    file: rel.clone(),
                    sha256: sha256.clone(),
                    bytes: bytes.len() as u64,
                    graph,
                    ir_version: onnx::IR_VERSION,
                    opsets: opsets.clone(),
                },
            );
            let json = artifact::json::to_vec(&manifest)?;
            writer.write(MANIFEST, &json)?;
            writer.commit()?;
        }
        None => {
            if let Some(parent) = out_path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).at(parent)?;
            }
            artifact::write_atomic(&out_path, |mut f| std::io::Write::write_all(&mut f, &bytes).at(&out_path))?;
        }
    }
    Ok(ExportSummary {
        model: model_dir.display().to_string(),
        out: out_path.display().to_string(),
        graph,
        sha256,
        bytes: bytes.len() as u64,
        ir_version: onnx::IR_VERSION,
        opsets,
        recorded_in_manifest: inside.is_some(),
    })
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
