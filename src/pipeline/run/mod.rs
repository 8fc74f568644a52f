//! `run`: the whole pipeline from one recipe — synth (when the data is missing), prepare,
//! train, distill, quantize, eval, export — with quality gates, one JSON report
//! (`<out>/report.json`) and the human-readable reports (`report.md`, `report.html`). Stages
//! whose inputs and configuration are unchanged are reused ([`reuse`]).

pub mod gates;
pub mod record;
pub mod reuse;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::data::schema::FilesConfig;
use crate::data::synth::{self, SynthParams};
use crate::outputs::RunPaths;
use crate::pipeline::distill::{DistillJob, SCRATCH, SweepSize, distill_sizes, is_scratch};
use crate::pipeline::eval::{EvalReport, evaluate};
use crate::pipeline::prepare::prepare;
use crate::pipeline::quantize::{QuantizeJob, QuantizeSummary, quantize};
use crate::pipeline::train::{TrainJob, train};
use crate::progress::Progress;
use crate::recipe::{DataConfig, Recipe};
use gates::{GateReport, RunModels};
use reco_runtime::error::{Error, IoContext, Result};
pub use record::{ReportPaths, RunReport};
use reuse::{Mode, Outputs, Reuse, StageDetail, StageReport};

fn json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// The raw tables of a recipe, generating synthetic data when it is missing. Returns their
/// description and, for synthetic data, the synth stage report (generated or reused).
pub fn ensure_raw(
    recipe: &Recipe,
    paths: &RunPaths,
    reuse: Mode,
    progress: &dyn Progress,
) -> Result<(FilesConfig, Option<StageReport>)> {
    match &recipe.data {
        DataConfig::Files(files) => Ok((files.as_ref().clone(), None)),
        DataConfig::Synth(s) => {
            let raw = paths.raw();
            let params = SynthParams { users: s.users, places: s.places, days: s.days, seed: recipe.seed };
            // Reuse raw/ only when it was generated with these very settings; the stage is
            // reported the same either way (its summary is recorded in synth.json), so a rerun's
            // report is byte-identical to the first.
            if !matches!(reuse, Mode::Force | Mode::From(reuse::Stage::Synth))
                && raw.join("interactions.parquet").is_file()
                && let Some(summary) = made_with(&raw, &params)
            {
                let detail = StageDetail::Synth(summary);
                let report = StageReport { name: "synth".into(), seconds: 0.0, detail, reused: true };
                return Ok((FilesConfig::in_dir(&raw), Some(report)));
            }
            let start = Instant::now();
            let summary = synth::generate(params, &raw, progress)?;
            let report = StageReport {
                name: "synth".into(),
                seconds: start.elapsed().as_secs_f64(),
                detail: StageDetail::Synth(summary),
                reused: false,
            };
            Ok((FilesConfig::in_dir(&raw), Some(report)))
        }
    }
}

/// The recorded summary, when `raw/synth.json` records exactly `params` and the tables still
/// hold the bytes it recorded (tables replaced by hand are generated again, never vouched for).
fn made_with(raw: &Path, params: &SynthParams) -> Option<synth::SynthSummary> {
    let recorded = std::fs::read(raw.join("synth.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())?;
    let tables = synth::table_hashes(raw).ok()?;
    let same = recorded.get("params") == Some(&json(params)) && recorded.get("tables") == Some(&json(&tables));
    same.then(|| recorded.get("summary").cloned().and_then(|s| serde_json::from_value(s).ok())).flatten()
}

/// How `run` treats what earlier runs left.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Continue interrupted trainings from their checkpoints (the result is the same as an
    /// uninterrupted run's).
    pub resume: bool,
    /// Which recorded stages may be reused.
    pub reuse: Mode,
}

/// A run in progress: the recipe, where it writes, the stage records, the stages so far and
/// the keys later stages build theirs from (a stage's key holds its inputs' keys).
struct Runner<'a> {
    recipe: &'a Recipe,
    paths: &'a RunPaths,
    opts: RunOptions,
    progress: &'a dyn Progress,
    reuse: Reuse,
    stages: Vec<StageReport>,
    features: PathBuf,
    keys: Keys,
}

/// The keys of the stages that made the features and each model, in model order.
#[derive(Default)]
struct Keys {
    prepare: String,
    train: String,
    distill: String,
    models: Vec<String>,
    eval: String,
}

/// Where a run stands: the stage it is in, and, once it failed, the stages done before.
#[derive(Debug, Default)]
pub struct Trace {
    /// The stage running (or that failed).
    pub stage: &'static str,
    /// The stages completed before a failure (filled when the run fails).
    pub done: Vec<StageReport>,
}

/// Runs every stage of `recipe` under `paths`, reusing stages whose inputs are unchanged.
pub fn run(recipe: &Recipe, paths: &RunPaths, opts: RunOptions, progress: &dyn Progress) -> Result<RunReport> {
    run_traced(recipe, paths, opts, progress, &mut Trace::default())
}

/// [`run`], keeping in `trace` the stage it is in and, when it fails, the stages done before.
pub fn run_traced(
    recipe: &Recipe,
    paths: &RunPaths,
    opts: RunOptions,
    progress: &dyn Progress,
    trace: &mut Trace,
) -> Result<RunReport> {
    let t0 = Instant::now();
    trace.stage = "start";
    // A report left by an earlier run must not vouch for models this run may fail to rebuild.
    let tracking = paths.out.join("tracking.json");
    for stale in [paths.report(), paths.timings(), paths.out.join("report.md"), paths.out.join("report.html"), tracking]
    {
        if stale.exists() {
            std::fs::remove_file(&stale).at(&stale)?;
        }
    }
    let reuse = Reuse::new(&paths.out, opts.reuse);
    let features = paths.features();
    let mut r = Runner { recipe, paths, opts, progress, reuse, stages: Vec::new(), features, keys: Keys::default() };
    let stages = r.stages_traced(trace);
    if stages.is_err() {
        trace.done = r.stages.clone();
    }
    let (eval, gates, run_models) = stages?;
    trace.stage = "report";
    // Writing the reports may still fail: the stages done are known by then.
    trace.done = r.stages.clone();
    let recommended = run_models.recommend(&eval, &gates);
    let dominated = gates::dominated(&eval, &run_models.passing(&gates));
    let report = RunReport {
        recipe: recipe.name.clone(),
        out: paths.out.display().to_string(),
        stages: r.stages,
        eval,
        passed: gates.iter().all(|g| g.passed),
        gates,
        recommended,
        dominated,
        reports: ReportPaths { markdown: "report.md".into(), html: "report.html".into() },
        seconds: t0.elapsed().as_secs_f64(),
    };
    // The files hold no timings and no absolute paths (same recipe, data, seed -> same bytes);
    // the timings go to their own file.
    let (stable, timings) = crate::outputs::stable::for_file(json(&report), &paths.out);
    crate::outputs::write_json(&paths.timings(), &timings)?;
    crate::outputs::write_json(&paths.report(), &stable)?;
    crate::pipeline::report::write(&paths.out)?;
    Ok(report)
}

/// The evaluation, the gates and the models a run's stages gave.
type Verdicts = (EvalReport, Vec<GateReport>, RunModels);

impl Runner<'_> {
    /// Every stage in order, `trace.stage` naming the one running.
    fn stages_traced(&mut self, trace: &mut Trace) -> Result<Verdicts> {
        trace.stage = if matches!(self.recipe.data, DataConfig::Synth(_)) { "synth" } else { "data" };
        let raw = self.raw()?;
        trace.stage = "prepare";
        self.prepare(&raw)?;
        trace.stage = "train";
        self.train()?;
        trace.stage = "distill";
        let mut models = self.distill()?;
        trace.stage = "quantize";
        models.extend(self.quantize()?);
        trace.stage = "eval";
        let eval = self.eval(&models)?;
        trace.stage = "gates";
        let (gates, run_models) = self.verdicts(&models, &eval)?;
        trace.stage = "export";
        self.export(&models, &gates)?;
        Ok((eval, gates, run_models))
    }

    /// The raw tables (synthetic ones generated or reused) and the key of their content.
    fn raw(&mut self) -> Result<FilesConfig> {
        let (raw, synth_stage) = ensure_raw(self.recipe, self.paths, self.opts.reuse, self.progress)?;
        if synth_stage.as_ref().is_some_and(|s| s.reused) {
            self.progress.log("synth: reused (raw/synth.json records these settings)");
        }
        // The tables' content. Tables that cannot be fingerprinted (a missing file, say) get a
        // key no record holds: prepare runs and reports the problem in its own words.
        let locations = if synth_stage.is_some() { vec![self.paths.raw()] } else { table_locations(&raw) };
        let raw_key = json(&reuse::files_fingerprint(&locations).unwrap_or_else(|_| reuse::unique_key()));
        let recipe = self.recipe;
        self.keys.prepare = reuse::key(
            "prepare",
            &serde_json::json!({ "raw": raw_key, "data": json(&recipe.data), "prepare": json(&recipe.prepare), "seed": recipe.seed }),
        );
        self.stages.extend(synth_stage);
        Ok(raw)
    }

    /// The features, and the refusal of an oracle gate on data without an oracle.
    fn prepare(&mut self, raw: &FilesConfig) -> Result<()> {
        let (recipe, progress, features) = (self.recipe, self.progress, &self.features);
        let outputs = Outputs { dirs: vec![features.clone()], ..Outputs::default() };
        self.stages.push(self.reuse.stage("prepare", &self.keys.prepare, &outputs, progress, || {
            progress.log("prepare: building features");
            Ok(StageDetail::Prepare(Box::new(prepare(raw, features, &recipe.prepare, recipe.seed, progress)?)))
        })?);
        check_oracle_gate(recipe, &features.join("test.parquet"))
    }

    /// The teacher. What the models' manifests record of the recipe is what their keys cover:
    /// editing a later section leaves them, and their bytes, as they are.
    fn train(&mut self) -> Result<()> {
        let (recipe, paths, progress) = (self.recipe, self.paths, self.progress);
        let train_recipe = recipe_sections(recipe, &["name", "seed", "data", "prepare", "train"]);
        self.keys.train =
            reuse::key("train", &serde_json::json!({ "prepare": self.keys.prepare, "recipe": train_recipe }));
        let teacher = paths.stage("teacher");
        let outputs = Outputs { artifacts: vec![teacher.clone()], ..Outputs::default() };
        self.stages.push(self.reuse.stage("train", &self.keys.train, &outputs, progress, || {
            let job = TrainJob {
                features: &self.features,
                out: &teacher,
                checkpoints: &paths.checkpoints("teacher"),
                resume: self.opts.resume,
                cfg: &recipe.train,
                seed: recipe.seed,
                recipe: train_recipe.clone(),
            };
            Ok(StageDetail::Train(Box::new(train(&job, progress)?)))
        })?);
        self.keys.models.push(self.keys.train.clone());
        Ok(())
    }

    /// The student and the scratch baseline, and those of each other size of a sweep; the
    /// float models so far.
    fn distill(&mut self) -> Result<Vec<PathBuf>> {
        let (recipe, paths, progress) = (self.recipe, self.paths, self.progress);
        let student_train = recipe.distill.student_train(&recipe.train);
        let (teacher, student, scratch) = (paths.stage("teacher"), paths.stage("student"), paths.stage(SCRATCH));
        let sweep: Vec<SweepSize> =
            recipe.distill.extra_ratios().iter().map(|&r| SweepSize::under(&paths.out, r)).collect();
        for s in &sweep {
            reco_runtime::artifact::check_replaceable(&s.out)?;
            reco_runtime::artifact::check_replaceable(&s.scratch_out)?;
        }
        remove_stale_sizes(&paths.out, &sweep)?;
        let distill_recipe = recipe_sections(recipe, &["name", "seed", "data", "prepare", "train", "distill"]);
        self.keys.distill = reuse::key(
            "distill",
            &serde_json::json!({ "train": self.keys.train, "prepare": self.keys.prepare, "recipe": distill_recipe, "student_train": json(&student_train) }),
        );
        let with_scratch = |d: &PathBuf, s: &PathBuf| {
            let mut v = vec![d.clone()];
            v.extend(recipe.distill.scratch_baseline.then(|| s.clone()));
            v
        };
        let mut artifacts = with_scratch(&student, &scratch);
        artifacts.extend(sweep.iter().flat_map(|s| with_scratch(&s.out, &s.scratch_out)));
        let outputs = Outputs { artifacts: artifacts.clone(), ..Outputs::default() };
        let cfg = recipe.distill.main();
        self.stages.push(self.reuse.stage("distill", &self.keys.distill, &outputs, progress, || {
            let djob = DistillJob {
                teacher: &teacher,
                features: &self.features,
                out: &student,
                scratch_out: &scratch,
                checkpoints: &paths.out.join("checkpoints"),
                cfg: &cfg,
                train: &student_train,
                teacher_train: &recipe.train,
                seed: recipe.seed,
                recipe: &distill_recipe,
                resume: self.opts.resume,
            };
            Ok(StageDetail::Distill(Box::new(distill_sizes(&djob, &sweep, progress)?)))
        })?);
        self.keys.models.push(self.keys.distill.clone());
        let mut models = vec![teacher];
        models.extend(artifacts);
        Ok(models)
    }

    /// The INT8 models: the student's, and the teacher's unless the recipe says no.
    fn quantize(&mut self) -> Result<Vec<PathBuf>> {
        let mut parents = vec![("student", self.keys.distill.clone())];
        if self.recipe.quantize.teacher {
            parents.insert(0, ("teacher", self.keys.train.clone()));
        }
        let mut out = Vec::new();
        for (parent, parent_key) in parents {
            let (report, dir, key) = quantize_stage(self, (parent, &parent_key))?;
            self.keys.models.push(key);
            self.stages.push(report);
            out.push(dir);
        }
        Ok(out)
    }

    /// Every model side by side on the test split and the ranking set.
    fn eval(&mut self, models: &[PathBuf]) -> Result<EvalReport> {
        let (test, ranking) = (self.features.join("test.parquet"), self.features.join("ranking.parquet"));
        let key = reuse::key("eval", &serde_json::json!({ "prepare": self.keys.prepare, "models": self.keys.models }));
        let progress = self.progress;
        let stage = self.reuse.stage("eval", &key, &Outputs::default(), progress, || {
            Ok(StageDetail::Eval(Box::new(evaluate(models, &test, Some(&ranking), progress)?)))
        })?;
        let StageDetail::Eval(eval) = &stage.detail else {
            return Err(Error::Internal("the eval stage returned another summary".into()));
        };
        let eval = (**eval).clone();
        self.stages.push(stage);
        self.keys.eval = key;
        Ok(eval)
    }

    /// The gates, and their verdicts written into the manifests before anything is exported
    /// or served from them.
    fn verdicts(&mut self, models: &[PathBuf], eval: &EvalReport) -> Result<(Vec<GateReport>, RunModels)> {
        let mut gates = gates::check(&self.recipe.gates, eval);
        for s in &self.stages {
            if let StageDetail::Quantize(q) = &s.detail {
                gates.extend(quantize_gates(q));
            }
        }
        let mut run_models = RunModels::open(models)?;
        self.reuse.refresh(&run_models.mark(&gates)?)?;
        Ok((gates, run_models))
    }

    /// ONNX next to every deliverable (teacher, student and their INT8 models) that passed its
    /// gates; the scratch baseline is only a comparison. Which models export depends on their
    /// verdicts too (a gate's threshold may change alone).
    fn export(&mut self, models: &[PathBuf], gates: &[GateReport]) -> Result<()> {
        let scratch = |d: &&PathBuf| d.file_name().is_some_and(|n| is_scratch(&n.to_string_lossy()));
        let deliverables: Vec<PathBuf> = models.iter().filter(|d| !scratch(d)).cloned().collect();
        let outputs = Outputs { artifacts: deliverables.clone(), exported: true, ..Outputs::default() };
        let key = reuse::key("export", &serde_json::json!({ "eval": self.keys.eval, "gates": json(&gates) }));
        self.stages.push(self.reuse.stage("export", &key, &outputs, self.progress, || {
            let mut exports = Vec::new();
            for dir in &deliverables {
                if reco_runtime::artifact::open(dir)?.status == reco_runtime::artifact::manifest::Status::Ok {
                    exports.push(crate::pipeline::export::export(
                        dir,
                        None,
                        crate::pipeline::export::Target::Onnx(reco_onnx::IdLookup::Auto),
                        false,
                    )?);
                }
            }
            Ok(StageDetail::Export(exports))
        })?);
        Ok(())
    }
}

/// Removes the students of sizes an earlier sweep wrote that this recipe no longer asks for
/// (`student-r<ratio>`, `student-scratch-r<ratio>`): no stale model stays beside the run's.
fn remove_stale_sizes(out: &Path, sweep: &[SweepSize]) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(out) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let (p, name) = (e.path(), e.file_name().to_string_lossy().into_owned());
        let sized = name.starts_with("student-r") || name.starts_with(&format!("{SCRATCH}-r"));
        if sized && p.is_dir() && !sweep.iter().any(|s| s.out == p || s.scratch_out == p) {
            reco_runtime::artifact::check_replaceable(&p)?;
            std::fs::remove_dir_all(&p).at(&p)?;
        }
    }
    Ok(())
}

/// A recipe that gates the teacher on the oracle AUC needs data that has an oracle (the
/// synthetic generator's true probability): refused before any training, not failed after.
fn check_oracle_gate(recipe: &Recipe, test: &Path) -> Result<()> {
    if recipe.gates.max_teacher_oracle_auc_gap.is_none() {
        return Ok(());
    }
    // The split may be a file or a directory of parts: the first part's columns tell.
    let first = crate::data::table::list_files(test).ok().and_then(|f| f.into_iter().next().map(|(p, _)| p));
    let columns = first.and_then(|f| crate::data::table::parquet_footer(&f).ok()).map(|(_, c)| c).unwrap_or_default();
    if columns.iter().any(|c| c == "oracle_p") {
        return Ok(());
    }
    Err(Error::input(format!(
        "gates.max_teacher_oracle_auc_gap: the data has no oracle probability to measure it against ({} has no `oracle_p` column: only synthetic data, or a table with an `oracle` column, has one); remove the gate",
        test.display()
    )))
}

/// The named top-level sections of the recipe (as its JSON form has them).
fn recipe_sections(recipe: &Recipe, sections: &[&str]) -> serde_json::Value {
    let all = json(recipe);
    let kept = sections.iter().filter_map(|&k| all.get(k).map(|v| (k.to_string(), v.clone()))).collect();
    serde_json::Value::Object(kept)
}

/// Every location a recipe reads raw tables from (none for synthetic data: it lives under the
/// run's root).
pub fn raw_locations(recipe: &Recipe) -> Vec<PathBuf> {
    match &recipe.data {
        DataConfig::Files(files) => table_locations(files),
        DataConfig::Synth(_) => Vec::new(),
    }
}

/// Every location a files recipe reads tables from.
fn table_locations(files: &FilesConfig) -> Vec<PathBuf> {
    let tables = [Some(&files.interactions), files.places.as_ref(), files.users.as_ref()];
    let mut out: Vec<PathBuf> = tables.into_iter().flatten().filter_map(|t| t.path.clone()).collect();
    out.extend(files.dir.clone());
    out
}

/// Quantizes one parent (or reuses its INT8 model): the stage report, the INT8 directory and
/// the stage key.
fn quantize_stage(r: &Runner<'_>, (parent, parent_key): (&str, &String)) -> Result<(StageReport, PathBuf, String)> {
    let (recipe, paths, progress) = (r.recipe, r.paths, r.progress);
    let q = &recipe.quantize;
    let features = paths.features();
    let (test, ranking) = (features.join("test.parquet"), features.join("ranking.parquet"));
    let out = paths.stage(&format!("{parent}-int8"));
    let name = format!("quantize-{parent}");
    let key =
        reuse::key(&name, &serde_json::json!({ "parent": parent_key, "prepare": r.keys.prepare, "quantize": json(q) }));
    let outputs = Outputs { artifacts: vec![out.clone()], ..Outputs::default() };
    let report = r.reuse.stage(&name, &key, &outputs, progress, || {
        let job = QuantizeJob {
            model: &paths.stage(parent),
            calibration: &features.join("calibration.parquet"),
            test: &test,
            ranking: Some(&ranking),
            out: &out,
            opts: q.settings.clone(),
            keep_float: &[],
        };
        Ok(StageDetail::Quantize(Box::new(quantize(&job, progress)?)))
    })?;
    Ok((report, out, key))
}

/// The two accuracy gates of an INT8 model, from its quantize summary.
fn quantize_gates(s: &QuantizeSummary) -> Vec<GateReport> {
    let o = &s.options;
    gates::int8_gates(s.kind.as_str(), (s.delta_auc, s.delta_ndcg), (o.max_auc_drop, o.max_ndcg_drop))
}
