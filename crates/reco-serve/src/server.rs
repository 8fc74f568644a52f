//! The HTTP server: hyper HTTP/1.1 on tokio in front of a [`Coalescer`].
//!
//! `POST /v1/score` (JSON rows → logits and probabilities), `GET /metrics` (Prometheus text),
//! `GET /healthz`. Responses are gzip or brotli compressed when the client accepts it. A full
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
use reco_runtime::runtime::coalesce::{CoalesceError, Coalescer};
use reco_runtime::runtime::json::{BodyError, columns_from_json};
use reco_runtime::runtime::sigmoid;

use crate::encoding::{Encoding, compress};
use crate::metrics::{HttpMetrics, Snapshot, rss_bytes};
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
}

/// A response before compression.
struct Reply {
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
    retry_after: bool,
    /// Methods an endpoint allows (405 responses).
    allow: Option<&'static str>,
}

impl Reply {
    fn new(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Self {
        Self { status, content_type, body, retry_after: false, allow: None }
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
    app.metrics.observe(endpoint, reply.status.as_u16(), start.elapsed().as_secs_f64());
    Ok(respond(reply, encoding))
}

async fn route(app: &App, req: Request<Incoming>) -> (&'static str, Reply) {
    let arrived = Instant::now();
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::POST, "/v1/score") => ("/v1/score", score(app, req, arrived).await),
        (&Method::GET, "/metrics") => ("/metrics", metrics(app)),
        (&Method::GET, "/healthz") => ("/healthz", Reply::text(StatusCode::OK, "text/plain", "ok\n".into())),
        (&Method::GET, "/v1/recommendations") => ("/v1/recommendations", recommend(app, req.uri().query())),
        (_, "/v1/score" | "/metrics" | "/healthz" | "/v1/recommendations") => {
            let allow = if path == "/v1/score" { "POST" } else { "GET" };
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
    let snap = Snapshot { stats: &stats, model: (&app.model.0, &app.model.1), rss_bytes: rss_bytes() };
    Reply::text(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", app.metrics.render(&snap))
}

/// The deadline runs from the request's arrival: reading a slow body counts against it.
async fn score(app: &App, req: Request<Incoming>, arrived: Instant) -> Reply {
    let limits = &app.limits;
    let deadline = arrived + limits.deadline;
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limits.max_body) {
        return too_large(limits.max_body);
    }
    let read = tokio::time::timeout_at(deadline.into(), Limited::new(req.into_body(), limits.max_body).collect());
    let body = match read.await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return too_large(limits.max_body),
        Ok(Err(e)) => return Reply::error(StatusCode::BAD_REQUEST, &format!("cannot read the body: {e}")),
        Err(_) => return refusal(&CoalesceError::DeadlineExceeded),
    };
    let cols = match columns_from_json(app.coalescer.model().spec(), &body, limits.max_rows) {
        Ok(c) => c,
        Err(e @ BodyError::TooManyRows { .. }) => return Reply::error(StatusCode::PAYLOAD_TOO_LARGE, &e.to_string()),
        Err(e) => return Reply::error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    if let Err(e) = app.coalescer.submit(cols, Some(deadline), Box::new(move |r| drop(tx.send(r)))) {
        return refusal(&e);
    }
    let result = match tokio::time::timeout_at(deadline.into(), rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(CoalesceError::ShuttingDown),
        Err(_) => Err(CoalesceError::DeadlineExceeded),
    };
    match result {
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
