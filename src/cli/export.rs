//! `reco-cli export --model DIR [--format onnx|tflite|triton] [--out PATH] [--id-lookup
//! auto|label-encoder] [--weight-scales per-channel|per-tensor] [--name NAME --recipe FILE]`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use reco::Result;
use reco::pipeline::export::{Target, export};
use reco_onnx::IdLookup;
use reco_tflite::WeightScales;

use super::Global;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// ONNX: FP32 graph for float artifacts, QDQ graph for INT8 ones.
    Onnx,
    /// TFLite (LiteRT): float model for float artifacts, full-integer model for INT8 ones;
    /// writes `<out>.inputs.json` beside it (the vocabularies mapping ids to row indices).
    Tflite,
    /// A Triton model repository entry (`--out REPO`): REPO/<name>/config.pbtxt and
    /// 1/model.onnx, batching from the recipe's [serve] section.
    Triton,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Scales {
    /// One weight scale per output channel (the artifact's own).
    PerChannel,
    /// One weight scale per layer (NNAPI and NPU compilers that refuse per-channel FC).
    PerTensor,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Lookup {
    /// A dense id → row table (standard ops) when ids are dense, else LabelEncoder.
    Auto,
    /// Always ai.onnx.ml LabelEncoder.
    LabelEncoder,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Artifact directory (float or INT8).
    #[arg(long)]
    model: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "onnx")]
    format: Format,
    /// Output file [default: <model>/model.onnx or model.tflite, recorded with its hash in the
    /// manifest]; with --format triton, the model repository (required).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Triton model name [default: the artifact folder's name].
    #[arg(long)]
    name: Option<String>,
    /// Recipe whose [serve] section sets Triton's batching [default: the [serve] defaults].
    #[arg(long)]
    recipe: Option<PathBuf>,
    /// How categorical ids are mapped to embedding rows inside the graph (ONNX).
    #[arg(long, value_enum, default_value = "auto")]
    id_lookup: Lookup,
    /// Weight scales of an INT8 TFLite model.
    #[arg(long, value_enum, default_value = "per-channel")]
    weight_scales: Scales,
    /// Export a model whose status is failed (a quality gate failed on it or an ancestor) or
    /// that is stale (made from a parent that was replaced since).
    #[arg(long)]
    allow_failed: bool,
}

pub fn exec(args: ExportArgs, g: &Global) -> Result<u8> {
    let ExportArgs { model, format, out, id_lookup, weight_scales, name, recipe, allow_failed } = args;
    if !matches!(format, Format::Triton) && (name.is_some() || recipe.is_some()) {
        return Err(reco::Error::input("--name and --recipe go with --format triton"));
    }
    let target = match format {
        Format::Triton => return triton(&model, out.as_deref(), name.as_deref(), recipe.as_deref(), allow_failed, g),
        Format::Onnx => Target::Onnx(match id_lookup {
            Lookup::Auto => IdLookup::Auto,
            Lookup::LabelEncoder => IdLookup::LabelEncoder,
        }),
        Format::Tflite => Target::Tflite(match weight_scales {
            Scales::PerChannel => WeightScales::PerChannel,
            Scales::PerTensor => WeightScales::PerTensor,
        }),
    };
    // Into the artifact (its manifest records the export, the directory is rebuilt): the folder
    // holding it is locked, so a run writing there, or a second export, fails at once.
    // Elsewhere, one file is renamed into place and nothing needs a lock.
    let inside = out.as_deref().is_none_or(|o| reco::outputs::is_inside(o, &model));
    let _lock = if inside { Some(reco::outputs::OutputLock::acquire_parent(&model)?) } else { None };
    let s = export(&model, out.as_deref(), target, allow_failed)?;
    if g.json {
        super::print_json(&s)?;
    } else if let Some(inputs) = &s.inputs_file {
        println!(
            "exported {} ({} model, schema {}) -> {}  sha256 {}  {} bytes; inputs -> {}{}",
            s.model,
            s.graph,
            s.ir_version,
            s.out,
            s.sha256,
            s.bytes,
            inputs,
            if s.recorded_in_manifest { "  (recorded in the manifest)" } else { "" }
        );
    } else {
        println!(
            "exported {} ({} graph, IR {}, opsets {:?}) -> {}  sha256 {}  {} bytes{}",
            s.model,
            s.graph,
            s.ir_version,
            s.opsets,
            s.out,
            s.sha256,
            s.bytes,
            if s.recorded_in_manifest { "  (recorded in the manifest)" } else { "" }
        );
    }
    Ok(0)
}

/// `--format triton`: the repository entry, batching from the recipe's `[serve]`.
fn triton(
    model: &std::path::Path,
    repo: Option<&std::path::Path>,
    name: Option<&str>,
    recipe: Option<&std::path::Path>,
    allow_failed: bool,
    g: &Global,
) -> Result<u8> {
    let repo =
        repo.ok_or_else(|| reco::Error::input("--format triton: --out REPO (the model repository) is required"))?;
    let serve = match recipe {
        Some(r) => reco::recipe::Recipe::load(r)?.serve,
        None => reco::recipe::ServeConfig::default(),
    };
    let s = reco::pipeline::triton::export_triton(model, repo, name, &serve, allow_failed)?;
    if g.json {
        super::print_json(&s)?;
    } else {
        println!(
            "exported {} -> {} (Triton model {:?}, onnxruntime backend, max_batch_size {})  model.onnx sha256 {}",
            s.model, s.dir, s.name, s.max_batch_size, s.onnx_sha256
        );
    }
    Ok(0)
}
