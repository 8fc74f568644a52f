//! A float artifact on disk: the weights and a manifest with the architecture, the feature
//! spec, the recipe, the lineage and the training record (teacher, students).

use std::collections::BTreeMap;
use std::path::Path;

use reco_runtime::artifact::manifest::{Architecture, FORMAT, FORMAT_VERSION, Kind, Lineage, Manifest, Status};
use reco_runtime::artifact::spec::FeatureSpec;
use reco_runtime::artifact::weights::{FloatWeights, LAYOUT};
use reco_runtime::artifact::{ArtifactWriter, WEIGHTS};
use reco_runtime::error::{Error, Result};

/// Provenance written into a float artifact's manifest.
pub struct ArtifactMeta<'a> {
    /// Artifact kind.
    pub kind: Kind,
    /// Resolved recipe.
    pub recipe: serde_json::Value,
    /// Training seed.
    pub seed: u64,
    /// Features directory the model was trained on (its files are hashed).
    pub features: &'a Path,
    /// Parent artifact, if any.
    pub lineage: Option<Lineage>,
    /// Training facts (and distillation parameters).
    pub training: serde_json::Value,
}

/// Writes a float artifact (weights, metrics, manifest) atomically.
pub fn write_float_artifact(
    out: &Path,
    spec: &FeatureSpec,
    arch: &Architecture,
    weights: &FloatWeights,
    meta: ArtifactMeta<'_>,
    valid_auc: f64,
) -> Result<Manifest> {
    let mut input_data = BTreeMap::new();
    for name in ["train.parquet", "valid.parquet", "feature_spec.json"] {
        // A split may be a directory of parts (hive-partitioned, as Spark writes it).
        input_data.insert(name.to_string(), crate::data::table::location_sha256(&meta.features.join(name))?);
    }
    let writer = ArtifactWriter::create(out)?;
    writer.write(WEIGHTS, &weights.to_bytes(spec)?)?;
    let metrics = serde_json::json!({ "valid_auc": valid_auc, "parameters": arch.parameter_count(spec) });
    writer.write("metrics.json", &serde_json::to_vec_pretty(&metrics).map_err(|e| Error::Internal(e.to_string()))?)?;
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        kind: meta.kind,
        status: Status::Ok,
        reco_cli_version: crate::VERSION.into(),
        architecture: arch.clone(),
        feature_spec: spec.clone(),
        tensor_layout: LAYOUT.into(),
        recipe: meta.recipe,
        seed: meta.seed,
        files: BTreeMap::new(),
        input_data,
        lineage: meta.lineage,
        training: crate::outputs::stable::for_file(meta.training, out).0,
        metrics,
        quantization: None,
        exports: Default::default(),
        gate_failures: Vec::new(),
    };
    writer.finish(manifest)
}
