//! The accuracy gate with fallback: the INT8 model against its float parent on the test split
//! (AUC) and the ranking set (NDCG@10).
//!
//! 1. Dense layers, with every `auto` embedding table at 8 bits: while the gate fails, the
//!    least accurate remaining layer (lowest SQNR) goes back to float.
//! 2. Embedding tables, when any is `auto` and step 1 held: every `auto` table drops to its
//!    smallest layout (`int4`, or `int8-table` when narrow); while the gate fails, the most
//!    sensitive table still low goes back to 8 bits. A table's sensitivity is the gate's own
//!    measure of the model with that table alone low: the larger of |ΔAUC| / max_auc_drop and
//!    |ΔNDCG@10| / max_ndcg_drop (measured only when needed; each layout trial once).
//! 3. When step 2 kept a table above its smallest: one more dense layer in float with every
//!    table at its smallest, taken when the gate holds and the file is smaller.
//!
//! Every evaluation is recorded.

use std::collections::BTreeMap;

use super::build::Built;
use super::{FallbackStep, Inputs, TableSensitivity};
use crate::metrics;
use crate::pipeline::eval::{Quality, quality_and_ranking};
use crate::progress::Progress;
use crate::recipe::{EmbeddingPrecision, QuantizeSettings};
use reco_runtime::artifact::qweights::QuantWeights;
use reco_runtime::error::Result;
use reco_runtime::quant::TableLayout;
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
    /// The `auto` tables' sensitivities, when they were measured.
    pub sensitivity: Vec<TableSensitivity>,
}

/// What the gate said of a candidate.
#[derive(Debug, Clone, Copy)]
struct Verdict {
    passed: bool,
    /// [`Judge::severity`].
    severity: f64,
    /// ΔAUC, ΔNDCG@10.
    delta: (Option<f64>, Option<f64>),
}

/// One evaluated candidate.
struct Candidate {
    weights: QuantWeights,
    model: Model,
    quality: Quality,
    passed: bool,
    delta: (Option<f64>, Option<f64>),
}

/// Evaluates candidates against the parent and records each one.
struct Judge<'a> {
    inputs: &'a Inputs,
    built: &'a Built,
    opts: &'a QuantizeSettings,
    parent: Quality,
    parent_scores: Option<Vec<f32>>,
    steps: Vec<FallbackStep>,
    progress: &'a dyn Progress,
}

impl Judge<'_> {
    fn eval(&mut self, float_layers: &[usize], layouts: &[TableLayout]) -> Result<Candidate> {
        let weights = self.built.weights(float_layers, layouts)?;
        let parent = &self.inputs.parent;
        let model = Model::Int8(Int8Model::with_kernel(
            parent.spec.clone(),
            parent.arch.clone(),
            weights.clone(),
            self.inputs.kernel,
        ));
        let data = (&self.inputs.test, self.inputs.test_labels.as_slice());
        let ranking = self.inputs.ranking.as_ref();
        let (q, rank_scores) = quality_and_ranking(&model, data, ranking)?;
        let delta = (delta(q.auc, self.parent.auc), delta(q.ndcg10, self.parent.ndcg10));
        let passed = within(delta.0, self.opts.max_auc_drop) && within(delta.1, self.opts.max_ndcg_drop);
        let qid = ranking.and_then(|r| r.query_id.as_deref());
        let top10_jaccard = match (qid, &self.parent_scores, &rank_scores) {
            (Some(qid), Some(base), Some(s)) => metrics::topk_jaccard(qid, base, s, 10),
            _ => None,
        };
        let embedding_precision = table_map(self.inputs, layouts);
        self.progress.log(&format!(
            "quantize: float layers {float_layers:?}, tables {:?}: dAUC {}, dNDCG@10 {} -> {}",
            layouts.iter().map(|l| l.name()).collect::<Vec<_>>(),
            shown(delta.0),
            shown(delta.1),
            if passed { "gate holds" } else { "gate fails" }
        ));
        self.steps.push(FallbackStep {
            float_layers: float_layers.to_vec(),
            embedding_precision,
            delta_auc: delta.0,
            delta_ndcg: delta.1,
            top10_jaccard,
            passed,
        });
        Ok(Candidate { weights, model, quality: q, passed, delta })
    }

    /// How far a candidate is from failing: the larger of its |ΔAUC| and |ΔNDCG@10| as a share
    /// of what the gate allows (infinite: not measurable).
    fn severity(&self, c: &Candidate) -> f64 {
        let share = |d: Option<f64>, max: f64| d.map_or(f64::INFINITY, |d| d.abs() / max.max(f64::MIN_POSITIVE));
        share(c.delta.0, self.opts.max_auc_drop).max(share(c.delta.1, self.opts.max_ndcg_drop))
    }
}

/// Runs the three steps of the module's search.
pub(super) fn fallback(
    inputs: &Inputs,
    built: &Built,
    parent_model: &Model,
    opts: &QuantizeSettings,
    progress: &dyn Progress,
) -> Result<Gated> {
    let data = (&inputs.test, inputs.test_labels.as_slice());
    let (parent, parent_scores) = quality_and_ranking(parent_model, data, inputs.ranking.as_ref())?;
    let mut judge = Judge { inputs, built, opts, parent, parent_scores, steps: Vec::new(), progress };
    let precision = &inputs.table_precision;
    let options: Vec<Vec<TableLayout>> = precision
        .iter()
        .zip(&inputs.parent.weights.embeddings)
        .map(|(&p, e)| super::build::reachable(p, e.rows, e.dim))
        .collect();
    let base: Vec<TableLayout> = options.iter().map(|o| o[0]).collect();
    let low: Vec<TableLayout> = options.iter().map(|o| o[o.len() - 1]).collect();
    let (mut float_layers, mut best) = dense_fallback(&mut judge, &base)?;
    let auto: Vec<usize> = (0..base.len()).filter(|&t| precision[t] == EmbeddingPrecision::Auto).collect();
    let mut severity = Vec::new();
    if best.passed && !auto.is_empty() {
        let mut trials = Trials::default();
        severity = lower_tables(&base, &low, &auto, |trial| {
            trials.ask(trial, || {
                let c = judge.eval(&float_layers, trial)?;
                Ok((Verdict { passed: c.passed, severity: judge.severity(&c), delta: c.delta }, c))
            })
        })?;
        best = trials.chosen().unwrap_or(best);
        if best.weights.embedding_layouts() != low
            && let Some((layers, c)) = trade_a_layer(&mut judge, &float_layers, &low, &best)?
        {
            (float_layers, best) = (layers, c);
        }
    }
    let sensitivity = severity
        .into_iter()
        .map(|(t, v)| TableSensitivity {
            table: inputs.parent.spec.categorical[t].name.clone(),
            column: t,
            delta_auc: v.delta.0,
            delta_ndcg: v.delta.1,
            severity: v.severity,
        })
        .collect();
    Ok(Gated {
        weights: best.weights,
        model: best.model,
        quality: best.quality,
        parent_quality: parent,
        passed: best.passed,
        float_layers,
        steps: judge.steps,
        sensitivity,
    })
}

/// Table layouts tried in step 2, each evaluated once: one asked again (raising the most
/// sensitive table can give back a one-table trial) gets its first verdict. The last passing
/// one asked is the choice.
struct Trials<C> {
    seen: Vec<(Vec<TableLayout>, Verdict, Option<C>)>,
    last_pass: Option<usize>,
}

impl<C> Default for Trials<C> {
    fn default() -> Self {
        Self { seen: Vec::new(), last_pass: None }
    }
}

impl<C> Trials<C> {
    fn ask(&mut self, trial: &[TableLayout], eval: impl FnOnce() -> Result<(Verdict, C)>) -> Result<Verdict> {
        let i = match self.seen.iter().position(|(t, ..)| t == trial) {
            Some(i) => i,
            None => {
                let (v, c) = eval()?;
                self.seen.push((trial.to_vec(), v, v.passed.then_some(c)));
                self.seen.len() - 1
            }
        };
        let v = self.seen[i].1;
        if v.passed {
            self.last_pass = Some(i);
        }
        Ok(v)
    }

    fn chosen(mut self) -> Option<C> {
        self.last_pass.and_then(|i| self.seen.swap_remove(i).2)
    }
}

/// Step 1: the requested float layers, then more, lowest SQNR first, until the gate holds or
/// none is left.
fn dense_fallback(judge: &mut Judge<'_>, layouts: &[TableLayout]) -> Result<(Vec<usize>, Candidate)> {
    let (built, mut float_layers) = (judge.built, judge.inputs.requested.clone());
    let mut order: Vec<usize> = (0..built.sqnr.len()).filter(|i| !float_layers.contains(i)).collect();
    order.sort_by(|&a, &b| built.sqnr[a].total_cmp(&built.sqnr[b]));
    let mut order = order.into_iter();
    loop {
        let c = judge.eval(&float_layers, layouts)?;
        let Some(next) = order.next().filter(|_| !c.passed) else { return Ok((float_layers, c)) };
        float_layers.push(next);
        float_layers.sort_unstable();
    }
}

/// Step 2 over an evaluator (`eval(layouts)` → what the gate says): every `auto` table in its
/// `low` layout, then, while the gate fails, the most sensitive one still low back to `base`,
/// until it holds or every table is back where `base` (which held) has it. The evaluator's
/// last passing call is the choice. Returns the measured sensitivities (table, verdict), empty
/// when they were not needed.
fn lower_tables(
    base: &[TableLayout],
    low: &[TableLayout],
    auto: &[usize],
    mut eval: impl FnMut(&[TableLayout]) -> Result<Verdict>,
) -> Result<Vec<(usize, Verdict)>> {
    let mut trial = base.to_vec();
    auto.iter().for_each(|&t| trial[t] = low[t]);
    let mut passed = eval(&trial)?.passed;
    let mut severity = Vec::new();
    let mut order = auto.to_vec();
    if !passed && auto.len() > 1 {
        for &t in auto {
            let mut one = base.to_vec();
            one[t] = low[t];
            severity.push((t, eval(&one)?));
        }
        // Most sensitive first; ties in column order.
        let of = |t: usize| severity.iter().find(|s| s.0 == t).map_or(0.0, |s| s.1.severity);
        order.sort_by(|&a, &b| of(b).total_cmp(&of(a)).then(a.cmp(&b)));
    }
    for t in order {
        if passed {
            break;
        }
        trial[t] = base[t];
        if trial == base {
            break; // every auto table back where step 1 had it, which held
        }
        passed = eval(&trial)?.passed;
    }
    Ok(severity)
}

/// Step 3: when step 2 kept some tables above their smallest layout, one more dense layer in
/// float (the next by SQNR) with every table at its smallest, taken when the gate holds and
/// the weights are smaller (a float layer costs 4 bytes a weight; a large table at 4 bits saves
/// more).
fn trade_a_layer(
    judge: &mut Judge<'_>,
    float_layers: &[usize],
    low: &[TableLayout],
    best: &Candidate,
) -> Result<Option<(Vec<usize>, Candidate)>> {
    let sqnr = &judge.built.sqnr;
    let Some(next) = (0..sqnr.len()).filter(|i| !float_layers.contains(i)).min_by(|&a, &b| sqnr[a].total_cmp(&sqnr[b]))
    else {
        return Ok(None);
    };
    let mut layers = float_layers.to_vec();
    layers.push(next);
    layers.sort_unstable();
    let c = judge.eval(&layers, low)?;
    let spec = &judge.inputs.parent.spec;
    let smaller = c.weights.to_bytes(spec)?.len() < best.weights.to_bytes(spec)?.len();
    Ok((c.passed && smaller).then_some((layers, c)))
}

/// Each table's layout by column name.
pub(super) fn table_map(inputs: &Inputs, layouts: &[TableLayout]) -> BTreeMap<String, TableLayout> {
    inputs.parent.spec.categorical.iter().zip(layouts).map(|(c, &l)| (c.name.clone(), l)).collect()
}

/// `a - b`, or `None` (not measurable) when either is missing or not finite.
pub(super) fn delta(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    let d = a? - b?;
    d.is_finite().then_some(d)
}

/// Whether a measured change stays within `max`: a change that could not be measured fails.
pub(crate) fn within(d: Option<f64>, max: f64) -> bool {
    d.is_some_and(|d| d.abs() <= max)
}

/// A change for the log: signed, or "not measurable".
fn shown(d: Option<f64>) -> String {
    d.map_or_else(|| "not measurable".into(), |d| format!("{d:+.5}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use TableLayout::{Int4 as Four, Int8 as Eight};

    /// A fake gate: a candidate holds while the summed cost of its 4-bit tables stays within 1.
    fn run(cost: &[f64], base: &[TableLayout], auto: &[usize]) -> (Vec<Vec<TableLayout>>, Vec<(usize, f64)>) {
        let mut tried = Vec::new();
        let low = vec![Four; base.len()];
        let sens = lower_tables(base, &low, auto, |layouts| {
            tried.push(layouts.to_vec());
            let total: f64 = layouts.iter().zip(cost).filter(|(b, _)| **b == Four).map(|(_, c)| c).sum();
            Ok(Verdict { passed: total <= 1.0, severity: total, delta: (None, None) })
        })
        .unwrap();
        (tried, sens.into_iter().map(|(t, v)| (t, v.severity)).collect())
    }

    #[test]
    fn every_auto_table_at_4_bits_when_that_holds_without_measuring_sensitivity() {
        let (tried, sens) = run(&[0.2, 0.3, 0.4], &[Eight; 3], &[0, 1, 2]);
        assert_eq!(tried, [vec![Four; 3]]);
        assert!(sens.is_empty());
    }

    #[test]
    fn the_most_sensitive_tables_go_back_to_8_bits_first_until_the_gate_holds() {
        // Costs 0.5, 0.9, 0.1, 0.6 (sum 2.1): raising table 1 (0.9) leaves 1.2, still failing;
        // then table 3 (0.6) leaves 0.6, which holds. Table 2 is fixed at 8 and never lowered.
        let base = [Eight, Eight, Eight, Eight, Eight];
        let (tried, sens) = run(&[0.5, 0.9, 7.0, 0.6, 0.1], &base, &[0, 1, 3, 4]);
        assert_eq!(sens, [(0, 0.5), (1, 0.9), (3, 0.6), (4, 0.1)]);
        assert_eq!(tried[0], [Four, Four, Eight, Four, Four]);
        assert_eq!(tried[5], [Four, Eight, Eight, Four, Four]);
        assert_eq!(tried[6], [Four, Eight, Eight, Eight, Four]);
        assert_eq!(tried.len(), 7, "stops at the first holding candidate");
    }

    #[test]
    fn a_trial_asked_again_is_not_evaluated_again_and_the_last_pass_asked_is_chosen() {
        // Two auto tables, both low fails, each alone measured; raising the more sensitive (1)
        // leaves table 0 alone low: the trial measured a moment ago, which held.
        let cost = [0.6, 0.9];
        let (mut calls, mut trials) = (Vec::new(), Trials::default());
        lower_tables(&[Eight, Eight], &[Four, Four], &[0, 1], |layouts| {
            trials.ask(layouts, || {
                calls.push(layouts.to_vec());
                let total: f64 = layouts.iter().zip(&cost).filter(|(b, _)| **b == Four).map(|(_, c)| c).sum();
                Ok((Verdict { passed: total <= 1.0, severity: total, delta: (None, None) }, layouts.to_vec()))
            })
        })
        .unwrap();
        assert_eq!(calls, [vec![Four, Four], vec![Four, Eight], vec![Eight, Four]], "three evaluations, not four");
        assert_eq!(trials.chosen(), Some(vec![Four, Eight]), "the trial asked last, not the last evaluated");
    }

    #[test]
    fn a_lone_auto_table_that_fails_at_4_bits_is_left_at_8_without_a_second_evaluation() {
        let (tried, sens) = run(&[2.0, 0.0], &[Eight, Four], &[0]);
        assert_eq!(tried, [vec![Four, Four]]);
        assert!(sens.is_empty());
    }

    #[test]
    fn auto_starts_each_table_at_its_smallest_layout() {
        // Rows of 4: 4 bytes of codes beat 2 of codes + 4 of fp16 scale and bias; rows of 16
        // the other way round; rows of 7 are the widest where one pair a table pays (7 bytes
        // against 8); at 8, int4 is 4 bytes smaller (the table's own pair).
        assert_eq!(TableLayout::smallest(1000, 4), TableLayout::Int8Table);
        assert_eq!(TableLayout::smallest(1000, 7), TableLayout::Int8Table);
        assert_eq!(TableLayout::smallest(1000, 8), TableLayout::Int4);
        assert_eq!(TableLayout::smallest(1000, 16), TableLayout::Int4);
        assert_eq!(TableLayout::Int4.bytes(1000, 16), 1000 * 12);
        assert_eq!(TableLayout::Int8Table.bytes(1000, 4), 4004);
        assert_eq!(TableLayout::Int8.bytes(1000, 5), 9000);
    }
}
