//! `reco-cli inspect DIR`: the manifest, the tensors, where the bytes go (each table and layer
//! with its precision, the manifest, the total a server ships), and checksum verification.

use std::path::PathBuf;

use clap::Args;
use reco::{Error, Result};
use reco_runtime::artifact::{self, WEIGHTS};
use safetensors::SafeTensors;

use super::Global;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Artifact directory.
    dir: PathBuf,
}

pub fn exec(args: InspectArgs, g: &Global) -> Result<u8> {
    let InspectArgs { dir } = args;
    // Verified means loadable: hashes, shapes and values (no NaN or infinity) all checked.
    let (manifest, _) = reco_runtime::runtime::Model::open(&dir)?;
    let wpath = dir.join(WEIGHTS);
    let bytes = std::fs::read(&wpath).map_err(|e| Error::io(&wpath, e))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::input(format!("{}: not a valid safetensors file ({e})", wpath.display())))?;
    let mut tensors: Vec<(String, String, Vec<usize>)> =
        st.tensors().into_iter().map(|(n, v)| (n, format!("{:?}", v.dtype()), v.shape().to_vec())).collect();
    tensors.sort();
    let sizes = artifact::size::of_artifact(&dir, &manifest)?;
    if g.json {
        let t: Vec<_> =
            tensors.iter().map(|(n, d, s)| serde_json::json!({ "name": n, "dtype": d, "shape": s })).collect();
        return super::print_json(&serde_json::json!({
            "verified": true,
            "lineage_status": artifact::lineage_status(&dir, &manifest),
            "content_sha256": manifest.content_hash(),
            "manifest": manifest,
            "tensors": t,
            "size": sizes,
        }))
        .map(|()| 0);
    }
    print_model(&dir, &manifest, &tensors);
    print_sizes(&sizes);
    print_files(&dir, &manifest);
    Ok(0)
}

/// The identity, architecture, inputs and tensors, one line each.
fn print_model(dir: &std::path::Path, m: &artifact::Manifest, tensors: &[(String, String, Vec<usize>)]) {
    println!("{}  kind {}  status {}  format {} v{}", dir.display(), m.kind, m.status, m.format, m.format_version);
    println!("reco-cli {}  seed {}  content sha256 {}", m.reco_cli_version, m.seed, m.content_hash());
    let dot = if m.architecture.interaction.is_none() { "" } else { " + user·place dot" };
    println!(
        "architecture: embeddings {:?}{dot} -> hidden {:?} -> 1 ({}), {} parameters",
        m.architecture.embedding_dims,
        m.architecture.hidden,
        m.architecture.activation,
        m.architecture.parameter_count(&m.feature_spec)
    );
    println!("inputs:");
    for c in &m.feature_spec.categorical {
        match c.bag {
            Some(b) => println!(
                "  {:<22} multi-valued vocabulary {} (+1 OOV), lists of at most {}, {} pooling",
                c.name,
                c.len(),
                b.max_values,
                b.pooling.name()
            ),
            None => println!("  {:<22} categorical  vocabulary {} (+1 OOV)", c.name, c.len()),
        }
    }
    for n in &m.feature_spec.numeric {
        println!("  {:<22} numeric      mean {:.4}  std {:.4}", n.name, n.mean, n.std);
    }
    println!("tensors:");
    for (n, d, s) in tensors {
        println!("  {n:<28} {d:<5} {s:?}");
    }
}

/// Bytes by table, layer and file.
fn print_sizes(sizes: &artifact::size::SizeReport) {
    println!("size (bytes):");
    for r in sizes.rows() {
        println!("  {:<28} {:<24} {:<14} {:>12}", r.part, r.what, r.shape, r.bytes);
    }
}

/// The verified files and exports, the quantization record and the parent's state.
fn print_files(dir: &std::path::Path, m: &artifact::Manifest) {
    println!("files (sha256 verified):");
    for (name, f) in &m.files {
        println!("  {name:<20} {:>10} bytes  {}", f.bytes, f.sha256);
    }
    for (format, e) in &m.exports {
        println!(
            "export {format}: {} ({} graph, IR {}, opsets {:?}) {:>10} bytes  {} (verified)",
            e.file, e.graph, e.ir_version, e.opsets, e.bytes, e.sha256
        );
    }
    if let Some(q) = &m.quantization {
        println!(
            "quantization: {} calibrator, {}-bit weights, per_channel {}, dynamic activations {}, layers kept float {}, layer SQNR dB {}",
            q.calibrator.name(),
            q.weight_bits,
            q.per_channel,
            q.dynamic_activations,
            serde_json::to_string(&q.float_layers).unwrap_or_default(),
            serde_json::to_string(&q.layer_sqnr_db).unwrap_or_default()
        );
    }
    if let Some(l) = &m.lineage {
        let state = match artifact::lineage_status(dir, m) {
            Some(artifact::LineageStatus::Changed { now }) => {
                format!("STALE: the parent has changed since (now {now}); remake this artifact")
            }
            Some(artifact::LineageStatus::Missing) => "parent not found".into(),
            _ => "current".into(),
        };
        println!("parent: {} ({}) {}  [{state}]", l.parent_path, l.parent_kind, l.parent_content_sha256);
    }
}
