//! `export --format triton --out REPO`: a Triton Inference Server model repository entry,
//! `REPO/<name>/config.pbtxt` and `REPO/<name>/1/model.onnx`, for Triton's onnxruntime backend.
//!
//! The config names every input and output as the ONNX graph has them (string ids as
//! `TYPE_STRING`, integer ids `TYPE_INT64`, numerics `TYPE_FP32`; a `[batch]` tensor as
//! `dims: [ 1 ]` with `reshape { shape: [ ] }`, Triton's form for a tensor that is only a batch;
//! a multi-valued column's padded ids and mask as `dims: [ max_values ]`), and takes batching
//! from the recipe's `[serve]` section, which `reco-cli serve --recipe` reads too:
//! `max_batch_size` and `preferred_batch_size` = `max_batch`, `max_queue_delay_microseconds` =
//! `max_wait_ms` · 1000 (the seed's batch optimizer in Triton's terms), one CPU instance per
//! scoring thread. `parameters` carry the ONNX file's sha256 and the artifact's content hash.
//! The model folder is written beside the repository's others in a temporary folder and
//! renamed into place: a failure leaves an earlier export of the same name as it was.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::outputs::{OutputGuard, Written};
use crate::recipe::ServeConfig;
use reco_onnx::IdLookup;
use reco_runtime::artifact::spec::IdType;
use reco_runtime::artifact::{self, manifest::Manifest};
use reco_runtime::error::{Error, IoContext, Result};

/// What was exported.
#[derive(Debug, Clone, Serialize)]
pub struct TritonSummary {
    /// Artifact directory.
    pub model: String,
    /// The model's folder in the repository.
    pub dir: String,
    /// Triton's model name.
    pub name: String,
    /// sha256 of `1/model.onnx`.
    pub onnx_sha256: String,
    /// `max_batch_size`.
    pub max_batch_size: usize,
}

/// A model name Triton accepts as a repository folder: letters, digits, `_`, `-`, `.`, not
/// starting with `.`, at most 255 bytes.
fn check_name(name: &str, named: bool) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if ok {
        Ok(())
    } else {
        let what = if named { "--name" } else { "the artifact folder's name (give --name)" };
        Err(Error::input(format!(
            "{what} {name:?}: Triton model names here are letters, digits, `_`, `-` and `.`, not starting with `.` (at most 255); nothing written"
        )))
    }
}

/// Writes `repo/<name>/` for the artifact in `model_dir` (name: the artifact folder's).
pub fn export_triton(
    model_dir: &Path,
    repo: &Path,
    name: Option<&str>,
    serve: &ServeConfig,
    allow_failed: bool,
) -> Result<TritonSummary> {
    let folder = model_dir.canonicalize().at(model_dir)?;
    let default = folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let named = name.is_some();
    let name = name.unwrap_or(&default);
    check_name(name, named)?;
    OutputGuard::new("--out", repo, Written::Root).reads(&[model_dir]).check()?;
    let target = repo.join(name);
    if target.exists() && !target.join("config.pbtxt").is_file() {
        return Err(Error::input(format!(
            "--out {}: {} exists and is not a Triton model folder (no config.pbtxt); nothing written",
            repo.display(),
            target.display()
        )));
    }
    let manifest = artifact::open(model_dir)?;
    if !allow_failed {
        artifact::check_usable(model_dir, &manifest)?;
    }
    let (exported, _) = crate::pipeline::export::onnx_bytes(model_dir, &manifest, IdLookup::Auto)?;
    let sha = artifact::sha256_bytes(&exported.bytes);
    let config = config_pbtxt(name, &manifest, serve, &sha);
    std::fs::create_dir_all(repo).at(repo)?;
    let tmp = repo.join(format!(".{name}.reco-tmp-{}", std::process::id()));
    let written = write_folder(&tmp, &config, &exported.bytes).and_then(|()| swap_in(&tmp, &target));
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    written?;
    Ok(TritonSummary {
        model: model_dir.display().to_string(),
        dir: target.display().to_string(),
        name: name.to_string(),
        onnx_sha256: sha,
        max_batch_size: serve.max_batch,
    })
}

fn write_folder(tmp: &Path, config: &str, onnx: &[u8]) -> Result<()> {
    let version = tmp.join("1");
    std::fs::create_dir_all(&version).at(&version)?;
    let c = tmp.join("config.pbtxt");
    std::fs::write(&c, config).at(&c)?;
    let m = version.join("model.onnx");
    std::fs::write(&m, onnx).at(&m)
}

/// Renames `tmp` to `target`, an earlier `target` moved aside first and removed after.
fn swap_in(tmp: &Path, target: &Path) -> Result<()> {
    let old = PathBuf::from(format!("{}.reco-old-{}", tmp.display(), std::process::id()));
    let had = target.exists();
    if had {
        std::fs::rename(target, &old).at(target)?;
    }
    if let Err(e) = std::fs::rename(tmp, target) {
        if had {
            let _ = std::fs::rename(&old, target);
        }
        return Err(Error::io(target, e));
    }
    if had {
        std::fs::remove_dir_all(&old).at(&old)?;
    }
    Ok(())
}

/// A protobuf text-format string literal.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// One `input` or `output` entry: name, type and the dims after the batch.
fn tensor_entry(name: &str, data_type: &str, width: Option<usize>) -> String {
    let dims = match width {
        Some(w) => format!("dims: [ {w} ]"),
        None => "dims: [ 1 ]\n    reshape: { shape: [ ] }".to_string(),
    };
    format!("  {{\n    name: {}\n    data_type: {data_type}\n    {dims}\n  }}", quoted(name))
}

/// The `config.pbtxt` text.
fn config_pbtxt(name: &str, manifest: &Manifest, serve: &ServeConfig, onnx_sha256: &str) -> String {
    let spec = &manifest.feature_spec;
    let mut inputs = Vec::new();
    for c in &spec.categorical {
        let t = match c.dtype() {
            IdType::Int64 => "TYPE_INT64",
            IdType::String => "TYPE_STRING",
        };
        let width = c.bag.map(|b| b.max_values);
        inputs.push(tensor_entry(&c.name, t, width));
        if width.is_some() {
            inputs.push(tensor_entry(&reco_onnx::mask_name(c), "TYPE_FP32", width));
        }
    }
    inputs.extend(spec.numeric.iter().map(|n| tensor_entry(&n.name, "TYPE_FP32", None)));
    // In the ONNX graph's output order.
    let outputs = ["probability", "logit"].map(|o| tensor_entry(o, "TYPE_FP32", None));
    let params = [
        ("model_sha256", onnx_sha256.to_string()),
        ("reco_cli_kind", manifest.kind.to_string()),
        ("reco_cli_model_content_sha256", manifest.content_hash()),
    ]
    .map(|(k, v)| format!("  {{\n    key: {}\n    value: {{ string_value: {} }}\n  }}", quoted(k), quoted(&v)));
    format!(
        "# Written by `reco-cli export --format triton` ({} artifact); batching from the recipe's [serve].\n\
         name: {}\nbackend: \"onnxruntime\"\nmax_batch_size: {}\ninput [\n{}\n]\noutput [\n{}\n]\n\
         dynamic_batching {{\n  preferred_batch_size: [ {} ]\n  max_queue_delay_microseconds: {}\n}}\n\
         instance_group [\n  {{\n    count: {}\n    kind: KIND_CPU\n  }}\n]\nparameters [\n{}\n]\n",
        manifest.kind,
        quoted(name),
        serve.max_batch,
        inputs.join(",\n"),
        outputs.join(",\n"),
        serve.max_batch,
        serve.max_wait_ms * 1000,
        serve.threads,
        params.join(",\n"),
    )
}
