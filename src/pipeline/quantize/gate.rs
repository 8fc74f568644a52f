//! The accuracy gate with fallback: the INT8 model against its float parent on the test split
//! (AUC) and the ranking set (NDCG@10); while it fails, the least accurate remaining layer
//! (lowest SQNR) goes back to float. Every step is recorded.

use super::build::Built;
use super::{FallbackStep, Inputs};
use crate::metrics;
use crate::pipeline::eval::{Quality, quality_and_ranking};
use crate::progress::Progress;
use crate::recipe::QuantizeSettings;
use reco_runtime::artifact::qweights::QuantWeights;
use reco_runtime::error::Result;
use reco_runtime::runtime::Model;
use reco_runtime::runtime::int8::Int8Model;

/// What the gate settled on.
pub(super) struct Gated {
    /// The chosen INT8 weights.
    pub weights: QuantWeights,
    /// Their model.
    pub model: Model,
    /// Its quality on the test split and ranking set.
    pub quality: Quality,
    /// The float parent's.
    pub parent_quality: Quality,
    /// Whether the gate held.
    pub passed: bool,
    /// Dense layers kept float.
    pub float_layers: Vec<usize>,
    /// Every evaluation, in order.
    pub steps: Vec<FallbackStep>,
}

/// Evaluates the INT8 model with the requested float layers, then adds the remaining layers to
/// float, lowest SQNR first, until the gate holds or none is left.
pub(super) fn fallback(
    inputs: &Inputs,
    built: &Built,
    parent_model: &Model,
    opts: QuantizeSettings,
    progress: &dyn Progress,
) -> Result<Gated> {
    let data = (&inputs.test, inputs.test_labels.as_slice());
    let ranking = inputs.ranking.as_ref();
    let (parent_q, parent_scores) = quality_and_ranking(parent_model, data, ranking)?;
    let parent_rank = ranking.and_then(|r| Some((r.query_id.as_deref()?, parent_scores?)));
    let mut float_layers = inputs.requested.clone();
    let mut order: Vec<usize> = (0..built.sqnr.len()).filter(|i| !float_layers.contains(i)).collect();
    order.sort_by(|&a, &b| built.sqnr[a].total_cmp(&built.sqnr[b]));
    let mut order = order.into_iter();
    let mut steps = Vec::new();
    loop {
        let weights = built.weights(&float_layers);
        let parent = &inputs.parent;
        let model = Model::Int8(Int8Model::with_kernel(
            parent.spec.clone(),
            parent.arch.clone(),
            weights.clone(),
            inputs.kernel,
        ));
        let (q, rank_scores) = quality_and_ranking(&model, data, ranking)?;
        let (d_auc, d_ndcg) = (delta(q.auc, parent_q.auc), delta(q.ndcg10, parent_q.ndcg10));
        let passed = within(d_auc, opts.max_auc_drop) && within(d_ndcg, opts.max_ndcg_drop);
        let top10_jaccard = match (&parent_rank, &rank_scores) {
            (Some((qid, base)), Some(s)) => metrics::topk_jaccard(qid, base, s, 10),
            _ => None,
        };
        steps.push(FallbackStep {
            float_layers: float_layers.clone(),
            delta_auc: d_auc,
            delta_ndcg: d_ndcg,
            top10_jaccard,
            passed,
        });
        progress.log(&format!(
            "quantize: float layers {float_layers:?}: dAUC {}, dNDCG@10 {} -> {}",
            shown(d_auc),
            shown(d_ndcg),
            if passed { "gate holds" } else { "gate fails" }
        ));
        let Some(next) = order.next().filter(|_| !passed) else {
            return Ok(Gated { weights, model, quality: q, parent_quality: parent_q, passed, float_layers, steps });
        };
        float_layers.push(next);
        float_layers.sort_unstable();
    }
}

/// `a - b`, or `None` (not measurable) when either is missing or not finite.
pub(super) fn delta(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    let d = a? - b?;
    d.is_finite().then_some(d)
}

/// Whether a measured change stays within `max`: a change that could not be measured fails.
fn within(d: Option<f64>, max: f64) -> bool {
    d.is_some_and(|d| d.abs() <= max)
}

/// A change for the log: signed, or "not measurable".
fn shown(d: Option<f64>) -> String {
    d.map_or_else(|| "not measurable".into(), |d| format!("{d:+.5}"))
}
