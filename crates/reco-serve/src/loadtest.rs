//! `loadtest`: N concurrent closed-loop clients of single-row requests, bounded in time and
//! count. In-process against the coalescer (with coalescing, and with batches of one: one
//! request per inference, same queue and threads), interleaved per client count; with
//! `--url`, over HTTP against running servers. With `--rates`, open-loop load as well:
//! single-row requests arriving at a fixed mean rate (Poisson), whatever the replies, each
//! timed from its scheduled arrival, so queueing delay shows (closed-loop clients slow down
//! with the server and hide it). Reports throughput, p50/p95/p99 latency, mean batch size and
//! refusals, plus the latency bound `max wait + one full batch + 2 ms`.
//!
//! With `--rounds N`, every HTTP cell is measured N times, the servers taking turns (ABBA:
//! the order flips every round, so a drift of the machine's speed falls on both alike); each
//! server's cell pools its rounds, and with two servers or more every other server is
//! compared with the first, round by round (the ratio of pooled throughputs, and the median,
//! lowest and highest of the per-round ratios).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use reco_runtime::runtime::coalesce::{Coalescer, Config};
use reco_runtime::runtime::{Columns, Model};
use serde::Serialize;

use crate::Batching;
use crate::bounds::{int_in, positive_up_to};
use crate::data::{read_columns, row_json};

/// Flags of `loadtest`.
#[derive(clap::Args)]
pub struct Args {
    /// Artifact directory.
    #[arg(long)]
    model: PathBuf,
    /// Feature file (Parquet) whose rows the clients send.
    #[arg(long)]
    data: PathBuf,
    /// Client counts to run, comma-separated.
    #[arg(long, allow_negative_numbers = true, value_delimiter = ',', default_value = "1,2,4,8,16,64,256", value_parser = int_in::<usize>(1, 100_000))]
    clients: Vec<usize>,
    /// Open-loop arrival rates to run too, requests per second, comma-separated (in-process;
    /// Poisson arrivals).
    #[arg(long, allow_negative_numbers = true, value_delimiter = ',', value_parser = positive_up_to(1e8))]
    rates: Vec<f64>,
    /// Longest run per cell, seconds.
    #[arg(long, allow_negative_numbers = true, default_value_t = 3.0, value_parser = positive_up_to(3600.0))]
    seconds: f64,
    /// Most requests per cell.
    #[arg(long, allow_negative_numbers = true, default_value_t = 200_000, value_parser = int_in::<usize>(1, 1_000_000_000))]
    max_requests: usize,
    #[command(flatten)]
    batching: Batching,
    /// Servers to load as LABEL=http://HOST:PORT (repeatable); in-process only without it.
    #[arg(long)]
    url: Vec<String>,
    /// Measure every HTTP cell this many times, the servers taking turns (ABBA order).
    #[arg(long, allow_negative_numbers = true, default_value_t = 1, value_parser = int_in::<usize>(1, 1000))]
    rounds: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// One measured cell.
#[derive(Debug, Serialize)]
struct Cell {
    target: String,
    clients: usize,
    /// Open loop: the mean arrival rate offered, requests per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    offered_per_s: Option<f64>,
    requests: usize,
    errors: usize,
    seconds: f64,
    rows_per_s: f64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    mean_batch: Option<f64>,
    /// Over HTTP with `--rounds`: each round's rows per second.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    round_rows_per_s: Vec<f64>,
}

/// A server against the first `--url`, at one client count, over paired rounds.
#[derive(Debug, Serialize)]
struct Comparison {
    target: String,
    baseline: String,
    clients: usize,
    /// Pooled rows/s of `target` over pooled rows/s of `baseline`.
    ratio: f64,
    /// Median, lowest and highest of the per-round ratios.
    round_median: f64,
    round_min: f64,
    round_max: f64,
    rounds: usize,
}

#[derive(Debug, Serialize)]
struct Report {
    model: String,
    max_batch: usize,
    max_wait_ms: u64,
    scoring_threads: usize,
    full_batch_ms: f64,
    p99_bound_ms: f64,
    cells: Vec<Cell>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    comparisons: Vec<Comparison>,
}

/// Runs every cell and prints the report.
pub fn run(a: &Args) -> Result<(), String> {
    if a.clients.is_empty() {
        return Err("--clients: expected a comma-separated list of client counts".into());
    }
    let (manifest, model) = Model::open(&a.model).map_err(|e| e.to_string())?;
    let model = Arc::new(model);
    let cols = read_columns(&a.data, model.spec())?;
    let rows: Vec<Columns> = (0..cols.rows.min(4096)).map(|i| cols.slice(i, i + 1)).collect();
    let config = a.batching.config();
    let full_batch_ms = full_batch_ms(&model, &cols, config.max_batch)?;
    let mut cells = Vec::new();
    let mut comparisons = Vec::new();
    for &clients in &a.clients {
        for (label, cfg) in in_process_modes(&config) {
            cells.push(in_process(label, &model, &rows, cfg, clients, a)?);
        }
        let http = http_rounds(model.spec(), &cols, clients, a)?;
        comparisons.extend(compare(&http));
        cells.extend(http);
    }
    for &rate in &a.rates {
        for (label, cfg) in in_process_modes(&config) {
            cells.push(open_loop(label, &model, &rows, cfg, rate, a)?);
        }
    }
    let report = Report {
        model: manifest.kind.to_string(),
        max_batch: config.max_batch,
        max_wait_ms: a.batching.max_wait_ms,
        scoring_threads: config.threads,
        full_batch_ms,
        p99_bound_ms: a.batching.max_wait_ms as f64 + full_batch_ms + 2.0,
        cells,
        comparisons,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    } else {
        print_table(&report);
    }
    Ok(())
}

/// The in-process targets: the coalescer as configured, and batches of one (one request per
/// inference, same queue and threads).
fn in_process_modes(config: &Config) -> [(&'static str, Config); 2] {
    let one = Config { max_batch: 1, ..config.clone() };
    [("in-process coalesced", config.clone()), ("in-process one-per-inference", one)]
}

/// Latencies of the answered requests (seconds) and the count of refused or failed ones.
#[derive(Default)]
struct Tally(std::sync::Mutex<(Vec<f64>, usize)>);

impl Tally {
    /// Records one request: its latency, or `None` when it got no scores.
    fn record(&self, latency: Option<f64>) {
        if let Ok(mut r) = self.0.lock() {
            match latency {
                Some(l) => r.0.push(l),
                None => r.1 += 1,
            }
        }
    }

    /// Requests recorded so far (read through a poisoned lock: the counts stay valid).
    fn count(&self) -> usize {
        let r = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        r.0.len() + r.1
    }

    /// The latencies and the failure count, leaving the tally empty.
    fn take(&self) -> Result<(Vec<f64>, usize), String> {
        Ok(std::mem::take(&mut *self.0.lock().map_err(|e| e.to_string())?))
    }
}

/// Median time of one batch of `max_batch` rows, milliseconds.
fn full_batch_ms(model: &Model, cols: &Columns, max_batch: usize) -> Result<f64, String> {
    let batch = cols.slice(0, max_batch.min(cols.rows));
    let mut times = Vec::new();
    for _ in 0..101 {
        let t = Instant::now();
        model.logits(&batch).map_err(|e| e.to_string())?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Closed-loop clients without a thread each (a server's requests are cheap tasks, not OS
/// threads): every reply, delivered on the scoring thread, records its latency and sends
/// that client's next request. A load generator on threads of its own measured its own
/// wake-ups instead (on 2 cores, one thread per client or one generator thread woken per
/// reply cost more than the scoring).
fn in_process(
    label: &str,
    model: &Arc<Model>,
    rows: &[Columns],
    cfg: Config,
    clients: usize,
    a: &Args,
) -> Result<Cell, String> {
    let coalescer = Arc::new(Coalescer::new(Arc::clone(model), cfg).map_err(|e| e.to_string())?);
    let driver = Arc::new(Driver {
        coalescer: Arc::downgrade(&coalescer),
        rows: rows.iter().cloned().map(Arc::new).collect(),
        next: AtomicUsize::new(0),
        start: Instant::now(),
        limit: Duration::from_secs_f64(a.seconds),
        max: a.max_requests,
        results: Tally::default(),
        done: (std::sync::Mutex::new(0), std::sync::Condvar::new()),
    });
    for _ in 0..clients {
        Driver::issue(&driver);
    }
    let (count, cv) = &driver.done;
    let mut finished = count.lock().map_err(|e| e.to_string())?;
    while *finished < clients {
        finished = cv.wait(finished).map_err(|e| e.to_string())?;
    }
    drop(finished);
    let seconds = driver.start.elapsed().as_secs_f64();
    let mean_batch = coalescer.stats().batch_rows.mean();
    let (lat, errors) = driver.results.take()?;
    Ok(cell(label, clients, vec![(lat, errors)], seconds, mean_batch))
}

/// Open-loop load: single-row requests arriving at `rate` a second (exponential gaps from a
/// fixed seed) for `--seconds`, whatever the replies; each latency runs from the request's
/// scheduled arrival, so a queue (or a generator) that falls behind shows in it.
fn open_loop(
    label: &str,
    model: &Arc<Model>,
    rows: &[Columns],
    cfg: Config,
    rate: f64,
    a: &Args,
) -> Result<Cell, String> {
    let coalescer = Coalescer::new(Arc::clone(model), cfg).map_err(|e| e.to_string())?;
    let rows: Vec<Arc<Columns>> = rows.iter().cloned().map(Arc::new).collect();
    let results = Arc::new(Tally::default());
    let mut rng = reco_runtime::rng::Rng::new(7);
    let (start, limit) = (Instant::now(), a.seconds);
    let (mut at, mut sent) = (0.0f64, 0usize);
    while sent < a.max_requests {
        at += -(1.0 - rng.uniform()).ln() / rate;
        if at >= limit {
            break;
        }
        let due = start + Duration::from_secs_f64(at);
        wait_until(due);
        let r = Arc::clone(&results);
        let reply =
            Box::new(move |res: Result<Vec<f32>, _>| r.record(res.is_ok().then(|| due.elapsed().as_secs_f64())));
        if coalescer.submit(Arc::clone(&rows[sent % rows.len()]), None, reply).is_err() {
            results.record(None);
        }
        sent += 1;
    }
    // Every admitted request is answered before the counters are read.
    while results.count() < sent {
        std::thread::sleep(Duration::from_micros(200));
    }
    let seconds = start.elapsed().as_secs_f64();
    let mean_batch = coalescer.stats().batch_rows.mean();
    let (lat, errors) = results.take()?;
    let mut c = cell(&format!("{label}, open loop"), 0, vec![(lat, errors)], seconds, mean_batch);
    c.offered_per_s = Some(rate);
    Ok(c)
}

/// Sleeps until `t` (the last 200 µs spinning: a sleep overshoots by about 100 µs).
fn wait_until(t: Instant) {
    loop {
        let now = Instant::now();
        if now >= t {
            return;
        }
        let left = t - now;
        if left > Duration::from_micros(200) {
            std::thread::sleep(left - Duration::from_micros(150));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// The shared state of in-process clients.
struct Driver {
    coalescer: std::sync::Weak<Coalescer>,
    rows: Vec<Arc<Columns>>,
    next: AtomicUsize,
    start: Instant,
    limit: Duration,
    max: usize,
    results: Tally,
    done: (std::sync::Mutex<usize>, std::sync::Condvar),
}

impl Driver {
    /// Sends one client's next request, or counts the client finished.
    fn issue(this: &Arc<Self>) {
        loop {
            let i = this.next.fetch_add(1, Ordering::Relaxed);
            // The clock is read every 64 requests: the generator stays cheap.
            let over = i >= this.max || (i.is_multiple_of(64) && this.start.elapsed() >= this.limit);
            if over {
                this.max_out();
            }
            let Some(coalescer) = this.coalescer.upgrade().filter(|_| !over && i < this.max) else {
                let (count, cv) = &this.done;
                if let Ok(mut n) = count.lock() {
                    *n += 1;
                }
                cv.notify_all();
                return;
            };
            let (me, t) = (Arc::clone(this), Instant::now());
            let reply = Box::new(move |r: Result<Vec<f32>, _>| {
                me.results.record(r.is_ok().then(|| t.elapsed().as_secs_f64()));
                Driver::issue(&me);
            });
            match coalescer.submit(Arc::clone(&this.rows[i % this.rows.len()]), None, reply) {
                Ok(()) => return,
                // Refused (the queue is full: more clients than it holds): counted, and the
                // run ends, rather than retrying at once on a queue that cannot drain while
                // this thread spins.
                Err(_) => {
                    this.results.record(None);
                    this.max_out();
                }
            }
        }
    }

    /// Ends the run: every client counts itself finished at its next `issue`.
    fn max_out(&self) {
        self.next.store(usize::MAX / 2, Ordering::Relaxed);
    }
}

fn cell(
    target: &str,
    clients: usize,
    per_client: Vec<(Vec<f64>, usize)>,
    seconds: f64,
    mean_batch: Option<f64>,
) -> Cell {
    let errors = per_client.iter().map(|(_, e)| e).sum();
    let mut lat: Vec<f64> = per_client.into_iter().flat_map(|(l, _)| l).collect();
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1)).map_or(f64::NAN, |v| v * 1e3);
    Cell {
        target: target.to_string(),
        clients,
        offered_per_s: None,
        requests: lat.len(),
        errors,
        seconds,
        rows_per_s: lat.len() as f64 / seconds,
        p50_ms: q(0.50),
        p95_ms: q(0.95),
        p99_ms: q(0.99),
        mean_batch,
        round_rows_per_s: Vec::new(),
    }
}

/// Each client's latencies (seconds) and failures.
type PerClient = Vec<(Vec<f64>, usize)>;

/// One server's rounds pooled: every client's results, the seconds, each round's rows/s.
#[derive(Default, Clone)]
struct Pooled {
    per_client: PerClient,
    seconds: f64,
    rounds: Vec<f64>,
}

/// Every `--url` at `clients`, `--rounds` times in ABBA order: one pooled cell per server.
fn http_rounds(
    spec: &reco_runtime::artifact::spec::FeatureSpec,
    cols: &Columns,
    clients: usize,
    a: &Args,
) -> Result<Vec<Cell>, String> {
    let mut pooled = vec![Pooled::default(); a.url.len()];
    for round in 0..a.rounds {
        let order: Vec<usize> =
            if round % 2 == 0 { (0..a.url.len()).collect() } else { (0..a.url.len()).rev().collect() };
        for i in order {
            let (per_client, seconds) = over_http(&a.url[i], spec, cols, clients, a)?;
            let answered: usize = per_client.iter().map(|(l, _)| l.len()).sum();
            let p = &mut pooled[i];
            p.per_client.extend(per_client);
            p.seconds += seconds;
            p.rounds.push(answered as f64 / seconds);
        }
    }
    let labelled = a.url.iter().map(|t| t.split_once('=').map_or(t.as_str(), |(l, _)| l));
    Ok(labelled
        .zip(pooled)
        .map(|(label, p)| {
            let mut c = cell(&format!("http {label}"), clients, p.per_client, p.seconds, None);
            if a.rounds > 1 {
                c.round_rows_per_s = p.rounds;
            }
            c
        })
        .collect())
}

/// Every server after the first against the first, from their pooled cells and rounds.
fn compare(http: &[Cell]) -> Vec<Comparison> {
    let Some((base, rest)) = http.split_first() else { return Vec::new() };
    rest.iter()
        .map(|c| {
            let mut ratios: Vec<f64> =
                c.round_rows_per_s.iter().zip(&base.round_rows_per_s).map(|(x, y)| x / y).collect();
            ratios.sort_by(f64::total_cmp);
            let median = match ratios.len() {
                0 => c.rows_per_s / base.rows_per_s,
                n if n % 2 == 1 => ratios[n / 2],
                n => 0.5 * (ratios[n / 2 - 1] + ratios[n / 2]),
            };
            Comparison {
                target: c.target.clone(),
                baseline: base.target.clone(),
                clients: c.clients,
                ratio: c.rows_per_s / base.rows_per_s,
                round_median: median,
                round_min: ratios.first().copied().unwrap_or(median),
                round_max: ratios.last().copied().unwrap_or(median),
                rounds: ratios.len().max(1),
            }
        })
        .collect()
}

/// `clients` keep-alive connections to `LABEL=URL`, each sending one-row requests: every
/// client's latencies and failures, and the wall seconds.
fn over_http(
    target: &str,
    spec: &reco_runtime::artifact::spec::FeatureSpec,
    cols: &Columns,
    clients: usize,
    a: &Args,
) -> Result<(PerClient, f64), String> {
    let (_, url) = target.split_once('=').ok_or_else(|| format!("--url {target}: expected LABEL=http://HOST:PORT"))?;
    let addr = url.strip_prefix("http://").ok_or_else(|| format!("--url {target}: expected an http:// URL"))?;
    let addr = addr.trim_end_matches('/').to_string();
    let bodies: Arc<Vec<Bytes>> =
        Arc::new((0..cols.rows.min(4096)).map(|i| Bytes::from(row_json(spec, cols, i))).collect());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let next = Arc::new(AtomicUsize::new(0));
    let (limit, max) = (Duration::from_secs_f64(a.seconds), a.max_requests);
    let start = Instant::now();
    let per_client = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..clients {
            let (bodies, next, addr) = (Arc::clone(&bodies), Arc::clone(&next), addr.clone());
            tasks.spawn(async move { http_client(&addr, &bodies, &next, start, limit, max).await });
        }
        let mut out = Vec::new();
        while let Some(r) = tasks.join_next().await {
            out.push(r.map_err(|e| e.to_string())??);
        }
        Ok::<_, String>(out)
    })?;
    Ok((per_client, start.elapsed().as_secs_f64()))
}

async fn http_client(
    addr: &str,
    bodies: &[Bytes],
    next: &AtomicUsize,
    start: Instant,
    limit: Duration,
    max: usize,
) -> Result<(Vec<f64>, usize), String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("{addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    tokio::spawn(conn);
    let (mut lat, mut errors) = (Vec::new(), 0);
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= max || start.elapsed() >= limit {
            break;
        }
        let req = hyper::Request::post("/v1/score")
            .header(hyper::header::HOST, addr)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(bodies[i % bodies.len()].clone()))
            .map_err(|e| e.to_string())?;
        let t = Instant::now();
        match send.send_request(req).await {
            Ok(resp) => {
                let ok = resp.status().is_success();
                let done = resp.into_body().collect().await.is_ok();
                if ok && done { lat.push(t.elapsed().as_secs_f64()) } else { errors += 1 }
            }
            Err(_) => return Ok((lat, errors + 1)),
        }
    }
    Ok((lat, errors))
}

fn print_table(r: &Report) {
    println!(
        "{}: max batch {}, max wait {} ms, {} scoring thread(s); one full batch {:.3} ms; p99 bound {:.2} ms",
        r.model, r.max_batch, r.max_wait_ms, r.scoring_threads, r.full_batch_ms, r.p99_bound_ms
    );
    println!(
        "| {:<40} | {:>9} | {:>9} | {:>6} | {:>11} | {:>8} | {:>8} | {:>8} | {:>10} |",
        "target", "clients", "requests", "errors", "rows/s", "p50 ms", "p95 ms", "p99 ms", "mean batch"
    );
    println!("|{}|", ["-"; 9].map(|_| "---").join("|"));
    for c in &r.cells {
        // Open loop: the offered rate where closed loop has its clients.
        let load = c.offered_per_s.map_or_else(|| c.clients.to_string(), |r| format!("{r:.0}/s"));
        println!(
            "| {:<40} | {:>9} | {:>9} | {:>6} | {:>11.0} | {:>8.3} | {:>8.3} | {:>8.3} | {:>10} |",
            c.target,
            load,
            c.requests,
            c.errors,
            c.rows_per_s,
            c.p50_ms,
            c.p95_ms,
            c.p99_ms,
            c.mean_batch.map_or_else(|| "-".into(), |b| format!("{b:.1}"))
        );
    }
    for c in &r.comparisons {
        println!(
            "{} / {} at {} clients: {:.3}x pooled; per round median {:.3}x, {:.3}x to {:.3}x ({} rounds)",
            c.target, c.baseline, c.clients, c.ratio, c.round_median, c.round_min, c.round_max, c.rounds
        );
    }
}
