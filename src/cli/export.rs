//! `reco-cli export --model DIR --format onnx [--out PATH] [--id-lookup auto|label-encoder]`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use reco::Result;
use reco::pipeline::export::export;
use reco_onnx::IdLookup;

use super::Global;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// ONNX: FP32 graph for float artifacts, QDQ graph for INT8 ones.
    Onnx,
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
    /// Output file [default: <model>/model.onnx, recorded with its hash in the manifest].
    #[arg(long)]
    out: Option<PathBuf>,
    /// How categorical ids are mapped to embedding rows inside the graph.
    #[arg(long, value_enum, default_value = "auto")]
    id_lookup: Lookup,
    /// Export a model whose status is failed (a quality gate failed on it or an ancestor) or
    /// that is stale (made from a parent that was replaced since).
    #[arg(long)]
    allow_failed: bool,
}

pub fn exec(args: ExportArgs, g: &Global) -> Result<u8> {
    let ExportArgs { model, format: Format::Onnx, out, id_lookup, allow_failed } = args;
    let lookup = match id_lookup {
        Lookup::Auto => IdLookup::Auto,
        Lookup::LabelEncoder => IdLookup::LabelEncoder,
    };
    // Into the artifact (its manifest records the export, the directory is rebuilt): the folder
    // holding it is locked, so a run writing there, or a second export, fails at once.
    // Elsewhere, one file is renamed into place and nothing needs a lock.
    let inside = out.as_deref().is_none_or(|o| reco::outputs::is_inside(o, &model));
    let _lock = if inside { Some(reco::outputs::OutputLock::acquire_parent(&model)?) } else { None };
    let s = export(&model, out.as_deref(), lookup, allow_failed)?;
    if g.json {
        super::print_json(&s)?;
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
