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
//! 1, 2 s apart); a refusal (4xx) is not retried, and calls that create something (a run, a
//! model version) are retried only when the connection itself failed, so a retry never makes
//! a second one. When tracking fails part-way, the runs it opened are marked FAILED (best
//! effort). A user and password in the server's URL are never logged, stored or shown. The
//! outcome is written to `<out>/tracking.json`.

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

/// `url` without a `user:password@` part, for anything shown or stored.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let host_end = rest.find('/').unwrap_or(rest.len());
    match rest[..host_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// An MLflow REST client.
struct Client {
    base: String,
    http: reqwest::blocking::Client,
}

/// Delays before each retry.
const RETRY_DELAYS: [Duration; 3] = [Duration::from_millis(500), Duration::from_secs(1), Duration::from_secs(2)];

/// Whether a call may be repeated after the server may have acted on it.
#[derive(Clone, Copy, PartialEq)]
enum Retry {
    /// Reads, logging and uploads: repeating them changes nothing.
    Idempotent,
    /// Creating an experiment, a run or a model version: retried only when the connection failed.
    ConnectOnly,
}

/// A failed call: the HTTP status when the server answered, and the message.
struct CallError {
    status: Option<u16>,
    message: String,
}

impl CallError {
    /// The command's error (one line: the call, the status, the server's message).
    fn error(self) -> Error {
        Error::input(self.message)
    }
}

type Call = std::result::Result<Value, CallError>;

impl Client {
    fn new(base: &str) -> Result<Self> {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Internal(format!("HTTP client: {e}")))?;
        Ok(Self { base: base.to_string(), http })
    }

    /// One request, retried on connection errors and 5xx answers (only connection errors for
    /// [`Retry::ConnectOnly`]); a 4xx is the server's message as the error. `what` names the
    /// call without the server's credentials.
    fn send(&self, make: impl Fn() -> reqwest::blocking::RequestBuilder, what: &str, retry: Retry) -> Call {
        let mut last = String::new();
        for delay in std::iter::once(Duration::ZERO).chain(RETRY_DELAYS) {
            std::thread::sleep(delay);
            match make().send() {
                Ok(r) if r.status().is_success() => return Ok(r.json().unwrap_or(Value::Null)),
                Ok(r) if r.status().is_client_error() || retry == Retry::ConnectOnly => {
                    let status = r.status();
                    let body: Value = r.json().unwrap_or(Value::Null);
                    let msg = body["message"].as_str().map_or_else(|| status.to_string(), str::to_string);
                    let message = format!("{what}: {status}: {msg}");
                    return Err(CallError { status: Some(status.as_u16()), message });
                }
                Ok(r) => last = format!("{what}: {}", r.status()),
                Err(e) if retry == Retry::ConnectOnly && !e.is_connect() => {
                    return Err(CallError { status: None, message: format!("{what}: {}", e.without_url()) });
                }
                Err(e) => last = format!("{what}: {}", e.without_url()),
            }
        }
        Err(CallError { status: None, message: format!("{last} (after {} retries)", RETRY_DELAYS.len()) })
    }

    fn post(&self, path: &str, body: &Value, retry: Retry) -> Call {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        self.send(|| self.http.post(&url).json(body), &format!("POST {}", redacted(&url)), retry)
    }

    fn get(&self, path: &str, query: &[(&str, &str)]) -> Call {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        self.send(|| self.http.get(&url).query(query), &format!("GET {}", redacted(&url)), Retry::Idempotent)
    }

    /// The experiment's id, created when missing.
    fn experiment(&self, name: &str) -> Result<String> {
        let v = match self.get("experiments/get-by-name", &[("experiment_name", name)]) {
            Ok(v) => v["experiment"]["experiment_id"].clone(),
            Err(CallError { status: Some(404), .. }) => self
                .post("experiments/create", &json!({ "name": name }), Retry::ConnectOnly)
                .map_err(CallError::error)?["experiment_id"]
                .clone(),
            Err(e) => return Err(e.error()),
        };
        id(&v, "experiment id")
    }

    /// A new run: `(run id, artifact URI)`.
    fn create_run(&self, experiment: &str, name: &str, tags: &[(String, String)]) -> Result<(String, String)> {
        let tags: Vec<Value> = tags.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect();
        let body = json!({ "experiment_id": experiment, "run_name": name, "start_time": now_ms(), "tags": tags });
        let v = self.post("runs/create", &body, Retry::ConnectOnly).map_err(CallError::error)?;
        let info = &v["run"]["info"];
        Ok((id(&info["run_id"], "run id")?, id(&info["artifact_uri"], "artifact URI")?))
    }

    /// Params and metrics, in batches within MLflow's limits (100 params, 1000 items a call).
    fn log(&self, run: &str, params: &[(String, String)], metrics: &[(String, f64)]) -> Result<()> {
        let ts = now_ms();
        for chunk in params.chunks(100) {
            let p: Vec<Value> = chunk.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect();
            self.post("runs/log-batch", &json!({ "run_id": run, "params": p }), Retry::Idempotent)
                .map_err(CallError::error)?;
        }
        for chunk in metrics.chunks(900) {
            let m: Vec<Value> =
                chunk.iter().map(|(k, v)| json!({ "key": k, "value": v, "timestamp": ts, "step": 0 })).collect();
            self.post("runs/log-batch", &json!({ "run_id": run, "metrics": m }), Retry::Idempotent)
                .map_err(CallError::error)?;
        }
        Ok(())
    }

    /// Ends a run with `status` (`FINISHED`, or `FAILED` when tracking broke off).
    fn finish(&self, run: &str, status: &str) -> Result<()> {
        let body = json!({ "run_id": run, "status": status, "end_time": now_ms() });
        self.post("runs/update", &body, Retry::Idempotent).map(|_| ()).map_err(CallError::error)
    }

    /// Uploads `file` as `rel` under the run's `mlflow-artifacts:` root.
    fn upload(&self, artifact_uri: &str, file: &Path, rel: &str) -> Result<()> {
        let Some(mut root) = artifact_uri.strip_prefix("mlflow-artifacts:") else {
            return Err(Error::input(format!(
                "the run's artifact store is {artifact_uri}, which reco-cli cannot write over HTTP; start `mlflow server` with its artifact proxy (the default, --serve-artifacts)"
            )));
        };
        // `mlflow-artifacts://host:port/<path>` names the proxy itself: the path is what follows.
        if let Some(authority) = root.strip_prefix("//") {
            root = authority.find('/').map_or("", |i| &authority[i..]);
        }
        let url = format!("{}/api/2.0/mlflow-artifacts/artifacts/{}/{rel}", self.base, root.trim_start_matches('/'));
        let bytes = std::fs::read(file).at(file)?;
        let what = format!("PUT {}", redacted(&url));
        self.send(|| self.http.put(&url).body(bytes.clone()), &what, Retry::Idempotent)
            .map(|_| ())
            .map_err(CallError::error)
    }
}

/// A non-empty id the server answered with, or an error naming what is missing.
fn id(v: &Value, what: &str) -> Result<String> {
    match v.as_str().filter(|s| !s.is_empty()) {
        Some(s) => Ok(s.to_string()),
        None => {
            Err(Error::input(format!("the tracking server's answer holds no {what} (is the URL an MLflow server?)")))
        }
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
    let mut v = serde_json::to_value(recipe).unwrap_or(Value::Null);
    // The tracking settings name the server, which may hold credentials: not a param.
    if let Some(o) = v.as_object_mut() {
        o.remove("track");
    }
    walk("", &v, &mut out);
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

/// Logs the finished run `r` (its files under `out`) to `server`; the runs it opened are
/// marked FAILED when a later call fails.
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
    let mut open = vec![run.clone()];
    let params = params(recipe);
    let logged = log_run(&c, (&experiment, &run, &artifact_uri), (recipe, &params), r, out, &metrics, &mut open)
        .and_then(|l| c.finish(&run, "FINISHED").map(|()| l));
    let (stage_runs, registered, artifacts) = match logged {
        Ok(l) => l,
        Err(e) => {
            for id in &open {
                let _ = c.finish(id, "FAILED");
            }
            return Err(e);
        }
    };
    let summary = TrackSummary {
        server: redacted(server),
        experiment_id: experiment,
        run_id: run,
        stage_runs,
        params: params.len(),
        metrics: metrics.len(),
        artifacts,
        registered,
    };
    crate::outputs::write_json(&out.join("tracking.json"), &summary)?;
    Ok(summary)
}

/// Stage runs, the registered version and the files uploaded, of a logged run.
type Logged = (Vec<(String, String)>, Option<(String, String)>, usize);

/// Everything after the run was created: params and metrics, artifacts, stage runs (each in
/// `open` until finished), the registered version.
fn log_run(
    c: &Client,
    (experiment, run, artifact_uri): (&str, &str, &str),
    (recipe, params): (&Recipe, &[(String, String)]),
    r: &RunReport,
    out: &Path,
    metrics: &[(String, f64)],
    open: &mut Vec<String>,
) -> Result<Logged> {
    c.log(run, params, metrics)?;
    let mut uploaded = 0;
    for name in ["report.json", "report.md", "report.html"] {
        c.upload(artifact_uri, &out.join(name), name)?;
        uploaded += 1;
    }
    if let Some(model) = &r.recommended {
        for (file, rel) in reco_runtime::artifact::files_below(&out.join(model))? {
            c.upload(artifact_uri, &file, &format!("model/{model}/{rel}"))?;
            uploaded += 1;
        }
    }
    let mut stage_runs = Vec::new();
    for s in &r.stages {
        let tags =
            [("mlflow.parentRunId".to_string(), run.to_string()), ("reco_cli.stage".to_string(), s.name.clone())];
        let (child, _) = c.create_run(experiment, &s.name, &tags)?;
        open.push(child.clone());
        c.log(&child, &[], &[("seconds".into(), s.seconds), ("reused".into(), if s.reused { 1.0 } else { 0.0 })])?;
        c.finish(&child, "FINISHED")?;
        open.pop();
        stage_runs.push((s.name.clone(), child));
    }
    let registered = match (&recipe.track.register, &r.recommended) {
        (Some(name), Some(model)) => Some((name.clone(), register(c, name, run, artifact_uri, &out.join(model))?)),
        _ => None,
    };
    Ok((stage_runs, registered, uploaded))
}

/// A new version of the registered model `name` from the uploaded model: its version.
fn register(c: &Client, name: &str, run: &str, artifact_uri: &str, model_dir: &Path) -> Result<String> {
    match c.post("registered-models/create", &json!({ "name": name }), Retry::ConnectOnly) {
        Ok(_) => {}
        // It exists already: a new version of it is what is asked.
        Err(CallError { status: Some(400 | 409), message }) if message.contains("already exists") => {}
        Err(e) => return Err(e.error()),
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
    let v = c.post("model-versions/create", &body, Retry::ConnectOnly).map_err(CallError::error)?;
    id(&v["model_version"]["version"], "model version")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_urls_user_and_password_are_left_out_of_what_is_shown() {
        assert_eq!(redacted("https://ci:s3cret@mlflow.example:5000/api"), "https://mlflow.example:5000/api");
        assert_eq!(redacted("http://token@127.0.0.1:5000"), "http://127.0.0.1:5000");
        // An `@` in the path is not a user.
        assert_eq!(redacted("http://127.0.0.1:5000/a@b"), "http://127.0.0.1:5000/a@b");
        assert_eq!(redacted("not a url"), "not a url");
    }
}
