//! The HTTP server: hyper HTTP/1.1 on tokio in front of a [`Coalescer`].
//!
//! `POST /v1/score` (JSON rows → logits and probabilities), with `serve --features DIR`
//! `POST /v1/events` (events into the online state) and `POST /v1/score/raw` (raw requests
//! featurized online, then scored), `GET /metrics` (Prometheus text), `GET /healthz`. Responses are gzip or brotli compressed when the client accepts it. A full
//! queue is 503 with `Retry-After`, malformed input 400 with a one-line reason, a body over
//! the limit 413, a request past its deadline 504. SIGTERM or SIGINT stops accepting,
//! finishes open requests and exits.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use reco_runtime::features::json::{events_from_json, raw_rows_from_json};
use reco_runtime::runtime::coalesce::{CoalesceError, Coalescer};
use reco_runtime::runtime::json::{BodyError, columns_from_json};
use reco_runtime::runtime::sigmoid;

use crate::encoding::{Encoding, compress};
use crate::metrics::{HttpMetrics, Snapshot, rss_bytes};
use crate::online::Online;
use crate::recommendations::{Miss, Recommendations};

/// Request limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, bytes.
    pub max_body: usize,
    /// Most rows in one score request.
    pub max_rows: usize,
    /// Time a score request may take before it is answered 504.
    pub deadline: Duration,
}

/// Everything a request handler needs.
pub struct App {
    /// The scorer.
    pub coalescer: Coalescer,
    /// Model kind and content hash, for responses and `/metrics`.
    pub model: (String, String),
    /// Limits.
    pub limits: Limits,
    /// HTTP counters.
    pub metrics: HttpMetrics,
    /// The precompute table behind `/v1/recommendations`, if loaded.
    pub recommendations: Option<Recommendations>,
    /// The online features behind `/v1/events` and `/v1/score/raw`, if loaded.
    pub online: Option<Online>,
}

/// A response before compression.
struct Reply {
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
    retry_after: bool,
    /// Methods an endpoint allows (405 responses).
    allow: Option<&'static str>,
    /// The rejection reason, where the status alone does not tell it ([`rejection_reason`]).
    reason: Option<&'static str>,
}

impl Reply {
    fn new(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Self {
        Self { status, content_type, body, retry_after: false, allow: None, reason: None }
    }

    fn json(status: StatusCode, v: &serde_json::Value) -> Self {
        Self::new(status, "application/json", v.to_string().into_bytes())
    }

    fn error(status: StatusCode, msg: &str) -> Self {
        Self::json(status, &serde_json::json!({ "error": msg }))
    }

    fn text(status: StatusCode, content_type: &'static str, body: String) -> Self {
        Self::new(status, content_type, body.into_bytes())
    }
}

/// Serves on `listener` until `shutdown` turns true, then lets open connections finish (at
/// most `grace`).
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    grace: Duration,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                conns.spawn(connection(Arc::clone(&app), stream, shutdown.clone()));
            }
            _ = shutdown.changed() => break,
        }
    }
    // New connections are refused from here on, not queued until exit.
    drop(listener);
    let _ = tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
}

/// One keep-alive connection; on shutdown the request in progress finishes, then it closes.
async fn connection(app: Arc<App>, stream: tokio::net::TcpStream, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let service = service_fn(move |req| handle(Arc::clone(&app), req));
    let conn = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let start = Instant::now();
    let encoding = Encoding::negotiate(req.headers().get(header::ACCEPT_ENCODING));
    let (endpoint, reply) = route(&app, req).await;
    let rejected = reply.reason.or_else(|| rejection_reason(reply.status));
    app.metrics.observe(endpoint, reply.status.as_u16(), rejected, start.elapsed().as_secs_f64());
    Ok(respond(reply, encoding))
}

/// The `recommendations_rejected_total` reason of a non-2xx status (None for 2xx): every
/// answer that is not a success is counted.
fn rejection_reason(status: StatusCode) -> Option<&'static str> {
    Some(match status {
        s if s.is_success() => return None,
        StatusCode::BAD_REQUEST => "invalid",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::SERVICE_UNAVAILABLE => "queue_full",
        StatusCode::GATEWAY_TIMEOUT => "deadline",
        _ => "failed",
    })
}

async fn route(app: &App, req: Request<Incoming>) -> (&'static str, Reply) {
    let arrived = Instant::now();
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::POST, "/v1/score") => ("/v1/score", score(app, req, arrived).await),
        (&Method::POST, "/v1/score/raw") => ("/v1/score/raw", score_raw(app, req, arrived).await),
        (&Method::POST, "/v1/events") => ("/v1/events", events(app, req, arrived).await),
        (&Method::GET, "/metrics") => ("/metrics", metrics(app)),
        (&Method::GET, "/healthz") => ("/healthz", Reply::text(StatusCode::OK, "text/plain", "ok\n".into())),
        (&Method::GET, "/v1/recommendations") => ("/v1/recommendations", recommend(app, req.uri().query())),
        (_, "/v1/score" | "/v1/score/raw" | "/v1/events" | "/metrics" | "/healthz" | "/v1/recommendations") => {
            let allow = if path.starts_with("/v1/score") || path == "/v1/events" { "POST" } else { "GET" };
            let mut r = Reply::error(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("{} is not allowed on {}", req.method(), path.escape_debug()),
            );
            r.allow = Some(allow);
            ("other", r)
        }
        _ => ("other", Reply::error(StatusCode::NOT_FOUND, &format!("no such endpoint: {}", path.escape_debug()))),
    }
}

fn recommend(app: &App, query: Option<&str>) -> Reply {
    let Some(table) = &app.recommendations else {
        return Reply::error(
            StatusCode::NOT_FOUND,
            "this server has no precompute table (serve --recommendations FILE)",
        );
    };
    match table.lookup(query.unwrap_or("")) {
        Ok((body, hit)) => {
            app.metrics.cache_lookup(hit);
            Reply::new(StatusCode::OK, "application/json", body)
        }
        Err(Miss::NotFound(m)) => {
            app.metrics.cache_lookup(false);
            Reply::error(StatusCode::NOT_FOUND, &m)
        }
        Err(Miss::BadRequest(m)) => Reply::error(StatusCode::BAD_REQUEST, &m),
    }
}

fn metrics(app: &App) -> Reply {
    let stats = app.coalescer.stats();
    let state = app.online.as_ref().map(Online::counters);
    let snap = Snapshot { stats: &stats, model: (&app.model.0, &app.model.1), rss_bytes: rss_bytes(), state };
    Reply::text(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", app.metrics.render(&snap))
}

/// The request body, within the size limit and the deadline (which runs from the request's
/// arrival: reading a slow body counts against it).
async fn read_body(app: &App, req: Request<Incoming>, deadline: Instant) -> Result<Bytes, Reply> {
    let limits = &app.limits;
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limits.max_body) {
        return Err(too_large(limits.max_body));
    }
    let read = tokio::time::timeout_at(deadline.into(), Limited::new(req.into_body(), limits.max_body).collect());
    match read.await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(limits.max_body)),
        Ok(Err(e)) => Err(Reply::error(StatusCode::BAD_REQUEST, &format!("cannot read the body: {e}"))),
        Err(_) => Err(refusal(&CoalesceError::DeadlineExceeded)),
    }
}

/// 413 for too many rows, else 400.
fn body_refusal(e: &BodyError) -> Reply {
    let status = if matches!(e, BodyError::TooManyRows { .. }) {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::BAD_REQUEST
    };
    Reply::error(status, &e.to_string())
}

async fn score(app: &App, req: Request<Incoming>, arrived: Instant) -> Reply {
    let deadline = arrived + app.limits.deadline;
    let body = match read_body(app, req, deadline).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let cols = match columns_from_json(app.coalescer.model().spec(), &body, app.limits.max_rows) {
        Ok(c) => c,
        Err(e) => return body_refusal(&e),
    };
    match scored(app, cols, deadline).await {
        Ok(logits) => {
            let probabilities: Vec<f32> = logits.iter().map(|&z| sigmoid(z)).collect();
            Reply::json(
                StatusCode::OK,
                &serde_json::json!({ "logits": logits, "probabilities": probabilities, "model_sha256": app.model.1 }),
            )
        }
        Err(e) => refusal(&e),
    }
}

/// The online features, or 404 naming the flag that loads them.
fn online(app: &App) -> Result<&Online, Reply> {
    app.online
        .as_ref()
        .ok_or_else(|| Reply::error(StatusCode::NOT_FOUND, "this server has no online features (serve --features DIR)"))
}

/// `POST /v1/score/raw`: raw rows featurized with the online state, then scored; each row's
/// flags say what its features could not know.
async fn score_raw(app: &App, req: Request<Incoming>, arrived: Instant) -> Reply {
    let deadline = arrived + app.limits.deadline;
    let online = match online(app) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let body = match read_body(app, req, deadline).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let rows = match raw_rows_from_json(&body, app.limits.max_rows) {
        Ok(r) => r,
        Err(e) => return body_refusal(&e),
    };
    let (cols, flags) = match online.columns(rows) {
        Ok(c) => c,
        Err(e) => return Reply::error(StatusCode::BAD_REQUEST, &e),
    };
    match scored(app, cols, deadline).await {
        Ok(logits) => {
            let probabilities: Vec<f32> = logits.iter().map(|&z| sigmoid(z)).collect();
            let body = serde_json::json!({
                "logits": logits, "probabilities": probabilities, "flags": flags, "model_sha256": app.model.1
            });
            Reply::json(StatusCode::OK, &body)
        }
        Err(e) => refusal(&e),
    }
}

/// `POST /v1/events`: events into the online state.
async fn events(app: &App, req: Request<Incoming>, arrived: Instant) -> Reply {
    let online = match online(app) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let body = match read_body(app, req, arrived + app.limits.deadline).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match events_from_json(&body, app.limits.max_rows) {
        Ok(events) => {
            let n = events.len();
            let late = online.insert(events);
            Reply::json(StatusCode::OK, &serde_json::json!({ "accepted": n, "late": late }))
        }
        Err(e) => body_refusal(&e),
    }
}

/// Scores columns through the coalescer within the deadline.
async fn scored(app: &App, cols: reco_runtime::runtime::Columns, deadline: Instant) -> Result<Vec<f32>, CoalesceError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    app.coalescer.submit(cols, Some(deadline), Box::new(move |r| drop(tx.send(r))))?;
    match tokio::time::timeout_at(deadline.into(), rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(CoalesceError::ShuttingDown),
        Err(_) => Err(CoalesceError::DeadlineExceeded),
    }
}

fn too_large(max: usize) -> Reply {
    Reply::error(StatusCode::PAYLOAD_TOO_LARGE, &format!("the body is over the limit of {max} bytes"))
}

/// The status for each way the coalescer refuses a request.
fn refusal(e: &CoalesceError) -> Reply {
    let status = match e {
        CoalesceError::QueueFull(_) | CoalesceError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        CoalesceError::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        CoalesceError::Invalid(_) => StatusCode::BAD_REQUEST,
        CoalesceError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        CoalesceError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut r = Reply::error(status, &e.to_string());
    r.retry_after = status == StatusCode::SERVICE_UNAVAILABLE;
    r.reason = matches!(e, CoalesceError::ShuttingDown).then_some("shutting_down");
    r
}

fn respond(reply: Reply, encoding: Encoding) -> Response<Full<Bytes>> {
    let (body, applied) = compress(reply.body, encoding);
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = reply.status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Some(name) = applied.header() {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(name));
    }
    if reply.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if let Some(methods) = reply.allow {
        h.insert(header::ALLOW, HeaderValue::from_static(methods));
    }
    resp
}

/// Binds `addr`, naming it in the error.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("--addr {addr}: cannot listen ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reco_runtime::artifact::manifest::Architecture;
    use reco_runtime::artifact::spec::{CategoricalSpec, FeatureSpec, NumericSpec};
    use reco_runtime::artifact::weights::{Dense, FloatWeights, Table};
    use reco_runtime::runtime::coalesce::Config;
    use reco_runtime::runtime::{FloatModel, Model};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One id column (vocabulary 1..=4, width 2), one numeric column, one hidden layer of 3.
    fn model() -> Model {
        let spec = FeatureSpec {
            categorical: vec![CategoricalSpec::new("user_id", (1..=4).collect())],
            numeric: vec![NumericSpec { name: "x".into(), mean: 0.0, std: 1.0 }],
            label: "label".into(),
            sources: vec![],
        };
        let arch = Architecture {
            embedding_dims: vec![2],
            hidden: vec![3],
            activation: reco_runtime::artifact::manifest::Activation::Relu,
            interaction: reco_runtime::artifact::manifest::Interaction::None,
        };
        let weights = FloatWeights {
            embeddings: vec![Table { data: vec![0.1; 5 * 2], rows: 5, dim: 2 }],
            dense: vec![
                Dense { weight: vec![0.2; 3 * 3], bias: vec![0.0; 3], input: 3, output: 3 },
                Dense { weight: vec![0.3; 3], bias: vec![0.0], input: 3, output: 1 },
            ],
        };
        Model::Float(FloatModel::with_kernel(spec, arch, weights, reco_runtime::kernels::Kernel::best()))
    }

    /// One request on a connection of its own: (status, body).
    async fn call(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all((head + body).as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let code = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (code, out.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_string()))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_non_2xx_answer_is_counted_by_reason() {
        // A batch waits 2 s for company and a request's deadline is 100 ms: a lone row is 504.
        let config = Config { max_batch: 64, max_wait: Duration::from_secs(2), queue_rows: 64, threads: 1 };
        let limits = Limits { max_body: 4096, max_rows: 2, deadline: Duration::from_millis(100) };
        let app = Arc::new(App {
            coalescer: Coalescer::new(Arc::new(model()), config).unwrap(),
            model: ("teacher".into(), "ab".into()),
            limits,
            metrics: HttpMetrics::default(),
            recommendations: None,
            online: None,
        });
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(serve(Arc::clone(&app), listener, stopped, Duration::from_secs(5)));
        let row = r#"{"user_id": 1, "x": 0.5}"#;
        let cases = [
            ("POST", "/v1/score", "{".to_string(), 400),
            ("POST", "/v1/score", r#"{"rows": [{"user_id": 1}]}"#.to_string(), 400),
            ("POST", "/v1/score", format!(r#"{{"rows": [{row}]}}"#), 504),
            ("POST", "/v1/score", format!(r#"{{"rows": [{row}, {row}, {row}]}}"#), 413),
            ("GET", "/nowhere", String::new(), 404),
            ("GET", "/v1/recommendations", String::new(), 404),
            ("GET", "/v1/score", String::new(), 405),
            ("GET", "/healthz", String::new(), 200),
        ];
        for (method, path, body, want) in &cases {
            let (code, text) = call(addr, method, path, body).await;
            assert_eq!(code, *want, "{method} {path} {body}: {text}");
        }
        let (code, metrics) = call(addr, "GET", "/metrics", "").await;
        assert_eq!(code, 200);
        let counted = [
            ("invalid", 2),
            ("deadline", 1),
            ("too_large", 1),
            ("not_found", 2),
            ("method_not_allowed", 1),
            ("queue_full", 0),
            ("shutting_down", 0),
            ("failed", 0),
        ];
        for (reason, n) in counted {
            let line = format!("recommendations_rejected_total{{reason=\"{reason}\"}} {n}\n");
            assert!(metrics.contains(&line), "{line:?} not in\n{metrics}");
        }
        stop.send(true).unwrap();
        server.await.unwrap();
    }
}
