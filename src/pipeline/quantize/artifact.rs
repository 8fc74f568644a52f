//! The INT8 artifact: its weights, `metrics.json`, and a manifest that records the scheme,
//! the calibrated activations, each layer's SQNR, the gate, the lineage to its float parent
//! and every failed gate (the parent's travel with it).

use super::build::Built;
use super::gate::Gated;
use super::{Inputs, QuantizeJob, QuantizeSummary};
use reco_runtime::artifact::manifest::{
    ActivationQuant, FORMAT, FORMAT_VERSION, GateFailure, Lineage, Manifest, Quantization, QuantizationGate, Status,
};
use reco_runtime::artifact::qweights::LAYOUT;
use reco_runtime::artifact::{ArtifactWriter, WEIGHTS, sha256_file};
use reco_runtime::error::{Error, Result};

/// Writes the artifact of `gated` at `job.out` (atomically).
pub(super) fn write(
    job: &QuantizeJob<'_>,
    inputs: &Inputs,
    built: &Built,
    gated: &Gated,
    (summary, weights): (&QuantizeSummary, &[u8]),
) -> Result<()> {
    let (pman, parent) = (&inputs.pman, &inputs.parent);
    let mut input_data = pman.input_data.clone();
    input_data.insert("calibration".into(), sha256_file(job.calibration)?);
    input_data.insert("test".into(), sha256_file(job.test)?);
    let writer = ArtifactWriter::create(job.out)?;
    writer.write(WEIGHTS, weights)?;
    let metrics = serde_json::json!({ "test": gated.quality, "parent_test": gated.parent_quality, "delta_auc": summary.delta_auc, "delta_ndcg@10": summary.delta_ndcg });
    writer.write("metrics.json", &serde_json::to_vec_pretty(&metrics).map_err(|e| Error::Internal(e.to_string()))?)?;
    // A parent that failed a gate fails its INT8 model too (its gates travel with it).
    let failures: Vec<_> =
        pman.gate_failures.iter().cloned().chain(gate_failures(inputs.kind.as_str(), summary)).collect();
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        kind: inputs.kind,
        status: if failures.is_empty() { Status::Ok } else { Status::Failed },
        reco_cli_version: crate::VERSION.into(),
        architecture: parent.arch.clone(),
        feature_spec: parent.spec.clone(),
        tensor_layout: LAYOUT.into(),
        recipe: pman.recipe.clone(),
        seed: pman.seed,
        files: Default::default(),
        input_data,
        lineage: Some(Lineage {
            parent_content_sha256: pman.content_hash(),
            parent_kind: pman.kind,
            parent_path: crate::outputs::relative(job.out, job.model),
        }),
        training: serde_json::json!({ "parent_training": pman.training }),
        metrics,
        quantization: Some(record(inputs, built, gated, job)),
        exports: Default::default(),
        gate_failures: failures,
    };
    writer.finish(manifest)?;
    Ok(())
}

/// The manifest's quantization record.
fn record(inputs: &Inputs, built: &Built, gated: &Gated, job: &QuantizeJob<'_>) -> Quantization {
    let opts = &job.opts;
    let activations = built
        .act
        .iter()
        .enumerate()
        .map(|(layer, a)| match a {
            Some(qp) => ActivationQuant::Static {
                dtype: "uint8".into(),
                layer,
                scale: f64::from(qp.scale),
                zero_point: qp.zero_point,
            },
            None => ActivationQuant::Dynamic { dynamic: true, layer },
        })
        .collect();
    Quantization {
        activations,
        calibration_rows: inputs.cal.columns.rows,
        calibrator: opts.calibrator,
        embedding_precision: super::gate::table_map(inputs, &gated.weights.embedding_layouts()),
        dynamic_activations: opts.dynamic,
        float_layers: gated.float_layers.clone(),
        gate: QuantizationGate {
            max_auc_drop: opts.max_auc_drop,
            max_ndcg_drop: opts.max_ndcg_drop,
            passed: gated.passed,
        },
        layer_sqnr_db: built.sqnr.iter().map(|&s| Some(s).filter(|s| s.is_finite())).collect(),
        per_channel: opts.per_channel,
        requested_float_layers: inputs.requested.clone(),
        scheme: SCHEME.into(),
        weight_bits: opts.weight_bits,
    }
}

/// The scheme in words, as every INT8 manifest records it.
const SCHEME: &str = "weights int8 symmetric per output channel (zero point 0); biases int32 at s_x*s_w; activations uint8 asymmetric per tensor; embeddings per table (embedding_precision): int8 or packed int4 codes with an fp16 scale and bias per row, or int8 codes with one fp16 pair for the table";

/// The INT8 gates that failed, as the manifest records them (the artifact named as a run names
/// its directory).
fn gate_failures(artifact: &str, s: &QuantizeSummary) -> Vec<GateFailure> {
    let gates = crate::pipeline::run::gates::int8_gates(
        artifact,
        (s.delta_auc, s.delta_ndcg),
        (s.options.max_auc_drop, s.options.max_ndcg_drop),
    );
    gates.iter().filter(|g| !g.passed).map(crate::pipeline::run::gates::GateReport::failure).collect()
}
