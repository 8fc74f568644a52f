//! `--metrics-out FILE`: what `run`, `eval` and `bench` measured, in the Prometheus text
//! exposition format (node-exporter textfile-collector style: gauges, one `# HELP` and
//! `# TYPE` per family, labels `recipe`, `model` and `path`; one series per label set). A value that could not be measured is
//! `NaN`, never 0 or 1. The file is written atomically, so a collector never reads half of it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::pipeline::bench::BenchReport;
use crate::pipeline::eval::EvalReport;
use crate::pipeline::run::RunReport;
use reco_runtime::error::Result;

/// One sample: its labels and value.
type Sample = (Vec<(String, String)>, f64);

/// Metric families by name: help text and samples.
#[derive(Debug, Default)]
pub struct Families {
    families: BTreeMap<String, (String, Vec<Sample>)>,
}

impl Families {
    /// Adds one sample of gauge `name`.
    fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: Option<f64>) {
        let entry = self.families.entry(name.to_string()).or_insert_with(|| (help.to_string(), Vec::new()));
        let labels: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        // One series per label set (a scraper rejects duplicates): the first measurement wins.
        if entry.1.iter().all(|(l, _)| *l != labels) {
            entry.1.push((labels, value.filter(|v| !v.is_nan()).unwrap_or(f64::NAN)));
        }
    }

    /// The exposition text.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for (name, (help, samples)) in &self.families {
            let _ = writeln!(s, "# HELP {name} {}", help.replace('\\', "\\\\").replace('\n', "\\n"));
            let _ = writeln!(s, "# TYPE {name} gauge");
            for (labels, v) in samples {
                let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
                let _ = writeln!(s, "{name}{{{}}} {}", l.join(","), number(*v));
            }
        }
        s
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{v}")
    }
}

/// Help of the throughput family, the same whichever command writes it.
const ROWS_PER_S: &str = "Rows scored per second by batch size (eval: 1 thread, batches of 4096; bench: its threads).";

fn bool01(b: bool) -> Option<f64> {
    Some(if b { 1.0 } else { 0.0 })
}

/// Model metrics of an evaluation, labelled by `recipe`.
fn add_eval(f: &mut Families, recipe: &str, eval: &EvalReport) {
    for m in &eval.models {
        let l = [("recipe", recipe), ("model", m.name.as_str()), ("path", m.path.as_str())];
        f.gauge("reco_model_auc", "Test-split ROC AUC of the model.", &l, m.auc);
        f.gauge("reco_model_logloss", "Test-split mean log loss.", &l, Some(m.logloss));
        f.gauge("reco_model_ndcg_at_10", "NDCG@10 on the ranking set.", &l, m.ndcg10);
        f.gauge(
            "reco_model_artifact_bytes",
            "Bytes a server loads: manifest.json and every file it lists (exports apart).",
            &l,
            Some(m.size_bytes as f64),
        );
        let rows_per_s = Some(m.us_per_row).filter(|&u| u > 0.0).map(|u| 1e6 / u);
        let batch = [("recipe", recipe), ("model", m.name.as_str()), ("batch", "4096")];
        f.gauge(
            "reco_scoring_rows_per_second",
            "Rows scored per second on 1 thread, by batch size.",
            &batch,
            rows_per_s,
        );
    }
}

/// Everything a run measured.
pub fn for_run(r: &RunReport) -> Families {
    let mut f = Families::default();
    let recipe = r.recipe.as_str();
    add_eval(&mut f, recipe, &r.eval);
    for g in &r.gates {
        // A sweep gates each student size: the artifact tells the series apart.
        let l = [("recipe", recipe), ("gate", g.name.as_str()), ("artifact", g.artifact.as_str())];
        f.gauge("reco_gate_passed", "1 when the quality gate held, 0 when it failed.", &l, bool01(g.passed));
        f.gauge("reco_gate_value", "The gated quantity (NaN: not measurable, and the gate failed).", &l, g.value);
        f.gauge("reco_gate_threshold", "The gate's threshold.", &l, Some(g.threshold));
    }
    for s in &r.stages {
        let l = [("recipe", recipe), ("stage", s.name.as_str())];
        f.gauge(
            "reco_stage_duration_seconds",
            "Wall time of the stage in this run (0 when reused).",
            &l,
            Some(s.seconds),
        );
        f.gauge("reco_stage_reused", "1 when the stage was reused from an earlier run.", &l, bool01(s.reused));
    }
    f.gauge("reco_run_passed", "1 when every gate passed.", &[("recipe", recipe)], bool01(r.passed));
    f.gauge("reco_run_duration_seconds", "Wall time of the whole run.", &[("recipe", recipe)], Some(r.seconds));
    f
}

/// An evaluation's metrics (`recipe` names where the models come from).
pub fn for_eval(recipe: &str, eval: &EvalReport) -> Families {
    let mut f = Families::default();
    add_eval(&mut f, recipe, eval);
    f
}

/// A benchmark's throughput per model and batch size.
pub fn for_bench(recipe: &str, b: &BenchReport) -> Families {
    let mut f = Families::default();
    for r in &b.results {
        let batch = r.batch.to_string();
        let name =
            Path::new(&r.model).file_name().map_or_else(|| r.model.clone(), |n| n.to_string_lossy().into_owned());
        let l = [
            ("recipe", recipe),
            ("model", name.as_str()),
            ("path", r.model.as_str()),
            ("batch", batch.as_str()),
            ("scope", b.scope.name()),
        ];
        f.gauge("reco_scoring_rows_per_second", ROWS_PER_S, &l, Some(r.rows_per_s));
    }
    f
}

/// The recipe name recorded in an artifact's manifest (`unknown` when it has none).
pub fn recipe_of(model: &Path) -> String {
    reco_runtime::artifact::open(model)
        .ok()
        .and_then(|m| m.recipe["name"].as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// Writes the exposition text to `path` atomically.
pub fn write(path: &Path, f: &Families) -> Result<()> {
    crate::outputs::write_file(path, f.text().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_print_help_type_and_escaped_labels_with_nan_for_unmeasured() {
        let mut f = Families::default();
        f.gauge("b_metric", "second", &[("model", "a\"b\\c")], None);
        f.gauge("a_metric", "first", &[("model", "x")], Some(0.5));
        f.gauge("a_metric", "first", &[("model", "y")], Some(2.0));
        let want = "# HELP a_metric first\n# TYPE a_metric gauge\na_metric{model=\"x\"} 0.5\na_metric{model=\"y\"} 2\n\
                    # HELP b_metric second\n# TYPE b_metric gauge\nb_metric{model=\"a\\\"b\\\\c\"} NaN\n";
        assert_eq!(f.text(), want);
    }
}
