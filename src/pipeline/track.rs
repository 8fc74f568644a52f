//! MLflow tracking of a finished `run` (`[track]`), through MLflow's REST API with a blocking
//! HTTP client; no Python at run time.
//!
//! One MLflow run per pipeline run (in the experiment `track.experiment`, created when
//! missing), named after the recipe:
//! - params: the resolved recipe, flattened to dotted keys (`train.learning_rate`; lists and
//!   tables as JSON text, values cut at MLflow's 6,000 characters);
//! - metrics: every number of the eval table (`auc.<model>`, `ndcg_at_10.<model>`,
//!   `logloss.<model>`, `ece.<model>`, `hr_at_10.<model>`, `size_bytes.<model>`, the baselines
//!   as `auc.baseline.<name>`, `oracle_auc`), the gates (`gate.<gate>.<artifact>` with its value,
//!   `gate_passed.<gate>.<artifact>` 0 or 1) and `run_passed`. A value that could not be
//!   measured is not logged (never a 0); its key is listed in the tag `reco_cli.not_measured`;
//! - artifacts: `report.json`, `report.md`, `report.html`, and the recommended model's files
//!   under `model/<name>/` (through the server's artifact proxy, `mlflow-artifacts:` URIs);
//! - one child run per stage (`mlflow.parentRunId`), with its seconds and whether it was reused.
//!
//! With `track.register`, the recommended artifact becomes a new version of that registered
//! model, its source the uploaded `model/<name>`, tagged with its content sha256, kind and
//! parent. Every call is retried up to three times on a connection error or a 5xx answer (0.5,
//! 1, 2 s apart); a refusal (4xx) is not retried. The outcome is written to
//! `<out>/tracking.json`.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Value, json};

use crate::pipeline::run::RunReport;
use crate::recipe::{Recipe, TrackConfig};
use reco_runtime::error::{Error, IoContext, Result};

/// Where a run was logged.
#[derive(Debug, Clone, Serialize)]
pub struct TrackSummary {
    /// The tracking server.
    pub server: String,
    /// Experiment id.
    pub experiment_id: String,
    /// The pipeline run's MLflow run id.
    pub run_id: String,
    /// Child run ids by stage.
    pub stage_runs: Vec<(String, String)>,
    /// Params, metrics and artifact files logged.
    pub params: usize,
    /// Metrics logged.
    pub metrics: usize,
    /// Artifact files uploaded.
    pub artifacts: usize,
    /// `(registered model, version)` when one was registered.
    pub registered: Option<(String, String)>,
}

/// The tracking server a recipe logs to: `track.mlflow`, else an http(s) `MLFLOW_TRACKING_URI`.
pub fn server(cfg: &TrackConfig) -> Option<String> {
    let env =
        std::env::var("MLFLOW_TRACKING_URI").ok().filter(|u| u.starts_with("http://") || u.starts_with("https://"));
    cfg.mlflow.clone().or(env).map(|u| u.trim_end_matches('/').to_string())
}

/// An MLflow REST client.
struct Client {
    base: String,
    http: reqwest::blocking::Client,
}

/// Delays before each retry.
const RETRY_DELAYS: [Duration; 3] = [Duration::from_millis(500), Duration::from_secs(1), Duration::from_secs(2)];

impl Client {
    fn new(base: &str) -> Result<Self> {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Internal(format!("HTTP client: {e}")))?;
        Ok(Self { base: base.to_string(), http })
    }

    /// One request, retried on connection errors and 5xx answers; a 4xx is the server's
    /// message as the error.
    fn send(&self, make: impl Fn() -> reqwest::blocking::RequestBuilder, what: &str) -> Result<Value> {
        let mut last = String::new();
        for delay in std::iter::once(Duration::ZERO).chain(RETRY_DELAYS) {
            std::thread::sleep(delay);
            match make().send() {
                Ok(r) if r.status().is_success() => return Ok(r.json().unwrap_or(Value::Null)),
                Ok(r) if r.status().is_client_error() => {
                    let status = r.status();
                    let body: Value = r.json().unwrap_or(Value::Null);
                    let msg = body["message"].as_str().map_or_else(|| status.to_string(), str::to_string);
                    return Err(Error::input(format!("{what}: {status}: {msg}")));
                }
                Ok(r) => last = format!("{what}: {}", r.status()),
                Err(e) => last = format!("{what}: {e}"),
            }
        }
        Err(Error::input(format!("{last} (after {} retries)", RETRY_DELAYS.len())))
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        self.send(|| self.http.post(&url).json(body), &format!("POST {url}"))
    }

    fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        self.send(|| self.http.get(&url).query(query), &format!("GET {url}"))
    }

    /// The experiment's id, created when missing.
    fn experiment(&self, name: &str) -> Result<String> {
        match self.get("experiments/get-by-name", &[("experiment_name", name)]) {
            Ok(v) => Ok(v["experiment"]["experiment_id"].as_str().unwrap_or_default().to_string()),
            Err(e) if e.to_string().contains("404") => {
                let v = self.post("experiments/create", &json!({ "name": name }))?;
                Ok(v["experiment_id"].as_str().unwrap_or_default().to_string())
            }
            Err(e) => Err(e),
        }
    }

    /// A new run: `(run id, artifact URI)`.
    fn create_run(&self, experiment: &str, name: &str, tags: &[(String, String)]) -> Result<(String, String)> {
        let tags: Vec<Value> = tags.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect();
        let body = json!({ "experiment_id": experiment, "run_name": name, "start_time": now_ms(), "tags": tags });
        let v = self.post("runs/create", &body)?;
        let info = &v["run"]["info"];
        Ok((
            info["run_id"].as_str().unwrap_or_default().to_string(),
            info["artifact_uri"].as_str().unwrap_or_default().to_string(),
        ))
    }

    /// Params and metrics, in batches within MLflow's limits (100 params, 1000 items a call).
    fn log(&self, run: &str, params: &[(String, String)], metrics: &[(String, f64)]) -> Result<()> {
        let ts = now_ms();
        for chunk in params.chunks(100) {
            let p: Vec<Value> = chunk.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect();
            self.post("runs/log-batch", &json!({ "run_id": run, "params": p }))?;
        }
        for chunk in metrics.chunks(900) {
            let m: Vec<Value> =
                chunk.iter().map(|(k, v)| json!({ "key": k, "value": v, "timestamp": ts, "step": 0 })).collect();
            self.post("runs/log-batch", &json!({ "run_id": run, "metrics": m }))?;
        }
        Ok(())
    }

    fn finish(&self, run: &str) -> Result<()> {
        self.post("runs/update", &json!({ "run_id": run, "status": "FINISHED", "end_time": now_ms() })).map(|_| ())
    }

    /// Uploads `file` as `rel` under the run's `mlflow-artifacts:` root.
    fn upload(&self, artifact_uri: &str, file: &Path, rel: &str) -> Result<()> {
        let Some(root) = artifact_uri.strip_prefix("mlflow-artifacts:") else {
            return Err(Error::input(format!(
                "the run's artifact store is {artifact_uri}, which reco-cli cannot write over HTTP; start `mlflow server` with its artifact proxy (the default, --serve-artifacts)"
            )));
        };
        let url = format!("{}/api/2.0/mlflow-artifacts/artifacts/{}/{rel}", self.base, root.trim_start_matches('/'));
        let bytes = std::fs::read(file).at(file)?;
        self.send(|| self.http.put(&url).body(bytes.clone()), &format!("PUT {url}")).map(|_| ())
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The resolved recipe as dotted params.
fn params(recipe: &Recipe) -> Vec<(String, String)> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&key, v, out);
                }
            }
            Value::Null => {}
            Value::String(s) => out.push((prefix.to_string(), s.chars().take(6000).collect())),
            other => out.push((prefix.to_string(), other.to_string().chars().take(6000).collect())),
        }
    }
    let mut out = Vec::new();
    walk("", &serde_json::to_value(recipe).unwrap_or(Value::Null), &mut out);
    out
}

/// Every measured number of the run, and the keys of those that could not be measured.
fn metrics(r: &RunReport) -> (Vec<(String, f64)>, Vec<String>) {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    let mut put = |key: String, v: Option<f64>| match v.filter(|v| v.is_finite()) {
        Some(v) => out.push((key, v)),
        None => missing.push(key),
    };
    for m in &r.eval.models {
        put(format!("auc.{}", m.name), m.auc);
        put(format!("logloss.{}", m.name), Some(m.logloss));
        put(format!("ece.{}", m.name), Some(m.ece));
        put(format!("hr_at_10.{}", m.name), m.hr10);
        put(format!("ndcg_at_10.{}", m.name), m.ndcg10);
        put(format!("size_bytes.{}", m.name), Some(m.size_bytes as f64));
    }
    for b in &r.eval.baselines {
        put(format!("auc.baseline.{}", b.name), b.auc);
        put(format!("ndcg_at_10.baseline.{}", b.name), b.ndcg10);
    }
    if r.eval.oracle_auc.is_some() {
        put("oracle_auc".into(), r.eval.oracle_auc);
    }
    for g in &r.gates {
        put(format!("gate.{}.{}", g.name, g.artifact), g.value);
        put(format!("gate_passed.{}.{}", g.name, g.artifact), Some(if g.passed { 1.0 } else { 0.0 }));
    }
    put("run_passed".into(), Some(if r.passed { 1.0 } else { 0.0 }));
    (out, missing)
}

/// Logs the finished run `r` (its files under `out`) to `server`.
pub fn track(server: &str, recipe: &Recipe, r: &RunReport, out: &Path) -> Result<TrackSummary> {
    let c = Client::new(server)?;
    let experiment = c.experiment(recipe.track.experiment.as_deref().unwrap_or(&recipe.name))?;
    let (metrics, missing) = metrics(r);
    let tags = vec![
        ("reco_cli.version".to_string(), reco_runtime::VERSION.to_string()),
        ("reco_cli.passed".to_string(), r.passed.to_string()),
        ("reco_cli.recommended".to_string(), r.recommended.clone().unwrap_or_default()),
        ("reco_cli.not_measured".to_string(), missing.join(",").chars().take(5000).collect()),
    ];
    let (run, artifact_uri) = c.create_run(&experiment, &recipe.name, &tags)?;
    let params = params(recipe);
    c.log(&run, &params, &metrics)?;
    let mut uploaded = 0;
    for name in ["report.json", "report.md", "report.html"] {
        c.upload(&artifact_uri, &out.join(name), name)?;
        uploaded += 1;
    }
    if let Some(model) = &r.recommended {
        for (file, rel) in reco_runtime::artifact::files_below(&out.join(model))? {
            c.upload(&artifact_uri, &file, &format!("model/{model}/{rel}"))?;
            uploaded += 1;
        }
    }
    let mut stage_runs = Vec::new();
    for s in &r.stages {
        let tags = [("mlflow.parentRunId".to_string(), run.clone()), ("reco_cli.stage".to_string(), s.name.clone())];
        let (child, _) = c.create_run(&experiment, &s.name, &tags)?;
        c.log(&child, &[], &[("seconds".into(), s.seconds), ("reused".into(), if s.reused { 1.0 } else { 0.0 })])?;
        c.finish(&child)?;
        stage_runs.push((s.name.clone(), child));
    }
    let registered = match (&recipe.track.register, &r.recommended) {
        (Some(name), Some(model)) => Some((name.clone(), register(&c, name, &run, &artifact_uri, &out.join(model))?)),
        _ => None,
    };
    c.finish(&run)?;
    let summary = TrackSummary {
        server: server.to_string(),
        experiment_id: experiment,
        run_id: run,
        stage_runs,
        params: params.len(),
        metrics: metrics.len(),
        artifacts: uploaded,
        registered,
    };
    crate::outputs::write_json(&out.join("tracking.json"), &summary)?;
    Ok(summary)
}

/// A new version of the registered model `name` from the uploaded model: its version.
fn register(c: &Client, name: &str, run: &str, artifact_uri: &str, model_dir: &Path) -> Result<String> {
    match c.post("registered-models/create", &json!({ "name": name })) {
        Ok(_) => {}
        Err(e) if e.to_string().contains("RESOURCE_ALREADY_EXISTS") || e.to_string().contains("already exists") => {}
        Err(e) => return Err(e),
    }
    let manifest = reco_runtime::artifact::open(model_dir)?;
    let folder = model_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut tags = vec![
        json!({ "key": "reco_cli.content_sha256", "value": manifest.content_hash() }),
        json!({ "key": "reco_cli.kind", "value": manifest.kind.to_string() }),
    ];
    if let Some(l) = &manifest.lineage {
        tags.push(json!({ "key": "reco_cli.parent_content_sha256", "value": l.parent_content_sha256 }));
        tags.push(json!({ "key": "reco_cli.parent_kind", "value": l.parent_kind.to_string() }));
    }
    let body = json!({ "name": name, "source": format!("{artifact_uri}/model/{folder}"), "run_id": run, "tags": tags });
    let v = c.post("model-versions/create", &body)?;
    Ok(v["model_version"]["version"].as_str().unwrap_or_default().to_string())
}
