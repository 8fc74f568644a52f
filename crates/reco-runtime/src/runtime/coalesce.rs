//! Request coalescing: single requests from many callers scored as one batch.
//!
//! A [`Coalescer`] owns a bounded queue and `threads` scoring threads. It is work-conserving:
//! a scoring thread that is free takes what is queued at once (up to `max_batch` rows), and
//! the requests that arrive while it scores form the next batch, so a quiet server answers a
//! lone request as fast as one inference and a busy one scores full batches (Triton's dynamic
//! batcher with no queue delay does the same). `max_wait` (default 0) is an optional extra
//! delay for fuller batches at moderate load: a batch then also waits until it holds
//! `max_batch` rows or its oldest request has waited `max_wait` (TF Serving's batching, and the
//! seed's `BatchInferenceOptimizer` with its 10 ms). Unlike those:
//!
//! - admission fails fast: a request that would take the queue past `queue_rows` is refused
//!   at once ([`CoalesceError::QueueFull`], a server's 503) instead of growing the queue;
//! - each request carries its own deadline: an expired request is dropped before scoring, and
//!   a caller waiting in [`Coalescer::score`] gets [`CoalesceError::DeadlineExceeded`] at its
//!   deadline even while its batch is still running;
//! - one bad request fails alone: requests are checked against the feature spec when they
//!   are submitted, and a batch that fails to score is retried request by request;
//! - every request gets its own rows back, in its row order.
//!
//! No async runtime: callers block in [`Coalescer::score`] or pass a callback to
//! [`Coalescer::submit`] (a server completes a future from it). Counters for queue time,
//! batch sizes, inference time and rejections are in [`Coalescer::stats`].

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Columns, Model};

/// How batches are formed.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Most rows in one batch (a larger request is scored alone).
    pub max_batch: usize,
    /// Extra time the oldest request of a batch may wait for more rows (0: none; a free
    /// scoring thread takes what is queued at once).
    pub max_wait: Duration,
    /// Most rows waiting at once; more is refused.
    pub queue_rows: usize,
    /// Scoring threads (each forms and scores its own batches).
    pub threads: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self { max_batch: 64, max_wait: Duration::ZERO, queue_rows: 4096, threads: 1 }
    }
}

/// Why a request got no scores.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoalesceError {
    /// The queue is full: retry later.
    #[error("the scoring queue is full ({0} rows waiting)")]
    QueueFull(usize),
    /// The request holds more rows than the whole queue: it can never be admitted.
    #[error("the request has {rows} rows, more than the {max} the queue holds")]
    TooLarge {
        /// Rows sent.
        rows: usize,
        /// Queue size in rows.
        max: usize,
    },
    /// The request's deadline passed before its scores were ready.
    #[error("the request's deadline passed before it was scored")]
    DeadlineExceeded,
    /// The coalescer is shutting down.
    #[error("the scorer is shutting down")]
    ShuttingDown,
    /// The request does not fit the model's feature spec.
    #[error("{0}")]
    Invalid(String),
    /// Scoring failed.
    #[error("scoring failed: {0}")]
    Failed(String),
}

/// Where one request's result goes.
pub type Reply = Box<dyn FnOnce(Result<Vec<f32>, CoalesceError>) + Send>;

struct Pending {
    cols: Arc<Columns>,
    enqueued: Instant,
    deadline: Option<Instant>,
    reply: Reply,
}

#[derive(Default)]
struct Queue {
    requests: VecDeque<Pending>,
    rows: usize,
    closed: bool,
    /// Requests admitted so far (counted here: one lock per request, not two).
    admitted: u64,
}

struct Shared {
    model: Arc<Model>,
    config: Config,
    queue: Mutex<Queue>,
    wake: Condvar,
    stats: Mutex<Stats>,
}

/// A request coalescer over one model (see the module documentation).
pub struct Coalescer {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

/// Longest `max_wait` accepted (deadline arithmetic stays far from `Instant`'s limits).
pub const MAX_WAIT_LIMIT: Duration = Duration::from_secs(3600);

/// Upper bounds of the queue-time and inference-time histograms, in seconds.
pub const SECONDS_BOUNDS: [f64; 14] =
    [0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0];
/// Upper bounds of the batch-size histogram, in rows.
pub const ROWS_BOUNDS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// A histogram: per-bucket counts (the last bucket is `+Inf`), their sum and total.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Upper bounds of the finite buckets.
    pub bounds: Vec<f64>,
    /// Observations per bucket (not cumulative), `bounds.len() + 1` of them.
    pub counts: Vec<u64>,
    /// Sum of the observed values.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// An empty histogram with these finite bucket bounds.
    pub fn new(bounds: &[f64]) -> Self {
        Self { bounds: bounds.to_vec(), counts: vec![0; bounds.len() + 1], sum: 0.0, count: 0 }
    }

    /// Records one value.
    pub fn observe(&mut self, v: f64) {
        let i = self.bounds.iter().position(|&b| v <= b).unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += v;
        self.count += 1;
    }

    /// Mean of the observed values (`None` before the first).
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

/// Counters since the coalescer started.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// Requests admitted to the queue.
    pub admitted: u64,
    /// Requests refused because the queue was full.
    pub rejected_full: u64,
    /// Requests refused as invalid at submission.
    pub rejected_invalid: u64,
    /// Requests dropped because their deadline passed before scoring.
    pub expired: u64,
    /// Requests whose scoring failed.
    pub failed: u64,
    /// Batches scored.
    pub batches: u64,
    /// Time from admission to the start of the request's batch, seconds.
    pub queue_seconds: Histogram,
    /// Rows per batch.
    pub batch_rows: Histogram,
    /// Scoring time per batch, seconds.
    pub inference_seconds: Histogram,
    /// Rows waiting now.
    pub queued_rows: usize,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            admitted: 0,
            rejected_full: 0,
            rejected_invalid: 0,
            expired: 0,
            failed: 0,
            batches: 0,
            queue_seconds: Histogram::new(&SECONDS_BOUNDS),
            batch_rows: Histogram::new(&ROWS_BOUNDS),
            inference_seconds: Histogram::new(&SECONDS_BOUNDS),
            queued_rows: 0,
        }
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked (every critical
/// section here leaves it valid), so one panic does not take the server down.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Coalescer {
    /// Starts `config.threads` scoring threads over `model`.
    pub fn new(model: Arc<Model>, config: Config) -> Result<Self, CoalesceError> {
        if config.max_batch == 0 || config.threads == 0 || config.queue_rows == 0 {
            return Err(CoalesceError::Invalid("max batch, threads and queue size must be at least 1".into()));
        }
        if config.max_wait > MAX_WAIT_LIMIT {
            return Err(CoalesceError::Invalid(format!(
                "max wait {:?} is over the limit of one hour",
                config.max_wait
            )));
        }
        let shared = Arc::new(Shared {
            model,
            config,
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            stats: Mutex::new(Stats::default()),
        });
        let workers = (0..shared.config.threads)
            .map(|i| {
                let s = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("reco-score-{i}"))
                    .spawn(move || worker(&s))
                    .map_err(|e| CoalesceError::Failed(format!("cannot start a scoring thread: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { shared, workers })
    }

    /// The model scored.
    pub fn model(&self) -> &Model {
        &self.shared.model
    }

    /// The batching configuration.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Queues `cols` (one or more rows); `reply` is called exactly once, on a scoring thread,
    /// with the rows' logits or the reason there are none. An invalid request, a full queue
    /// or a closed coalescer is an immediate error and `reply` is not called.
    ///
    /// The columns are shared, not copied: a caller holding an `Arc<Columns>` keeps it.
    pub fn submit(
        &self,
        cols: impl Into<Arc<Columns>>,
        deadline: Option<Instant>,
        reply: Reply,
    ) -> Result<(), CoalesceError> {
        let cols = cols.into();
        if let Err(e) = validate(&self.shared.model, &cols) {
            lock(&self.shared.stats).rejected_invalid += 1;
            return Err(e);
        }
        let rows = cols.rows;
        if rows > self.shared.config.queue_rows {
            lock(&self.shared.stats).rejected_invalid += 1;
            return Err(CoalesceError::TooLarge { rows, max: self.shared.config.queue_rows });
        }
        let wake;
        {
            let mut q = lock(&self.shared.queue);
            if q.closed {
                return Err(CoalesceError::ShuttingDown);
            }
            if q.rows + rows > self.shared.config.queue_rows {
                let waiting = q.rows;
                drop(q);
                lock(&self.shared.stats).rejected_full += 1;
                return Err(CoalesceError::QueueFull(waiting));
            }
            let was_empty = q.requests.is_empty();
            q.rows += rows;
            q.requests.push_back(Pending { cols, enqueued: Instant::now(), deadline, reply });
            // A scoring thread needs waking only to start a batch's wait (the queue was
            // empty) or to end it (the batch is full): not on every request in between.
            wake = was_empty || q.rows >= self.shared.config.max_batch;
            q.admitted += 1;
        }
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    /// Scores `cols` through the queue and waits for the result, at most until `deadline`.
    pub fn score(&self, cols: impl Into<Arc<Columns>>, deadline: Option<Instant>) -> Result<Vec<f32>, CoalesceError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(cols, deadline, Box::new(move |r| drop(tx.send(r))))?;
        let received = match deadline {
            Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())).map_err(|e| match e {
                mpsc::RecvTimeoutError::Timeout => CoalesceError::DeadlineExceeded,
                mpsc::RecvTimeoutError::Disconnected => CoalesceError::ShuttingDown,
            }),
            None => rx.recv().map_err(|_| CoalesceError::ShuttingDown),
        };
        received?
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let mut s = lock(&self.shared.stats).clone();
        let q = lock(&self.shared.queue);
        (s.queued_rows, s.admitted) = (q.rows, q.admitted);
        s
    }

    /// Stops admitting requests, scores every queued one, and waits for the threads.
    pub fn shutdown(mut self) {
        self.close();
    }

    fn close(&mut self) {
        lock(&self.shared.queue).closed = true;
        self.shared.wake.notify_all();
        let me = std::thread::current().id();
        for w in self.workers.drain(..) {
            // A reply callback may drop the last handle on a scoring thread: it cannot join
            // itself (it stops when its loop sees the queue closed).
            if w.thread().id() != me {
                // A worker that panicked has nothing left to clean up.
                let _ = w.join();
            }
        }
    }
}

impl Drop for Coalescer {
    fn drop(&mut self) {
        self.close();
    }
}

/// A request the model can score: the spec's columns and types, at least one row, finite
/// numbers.
fn validate(model: &Model, cols: &Columns) -> Result<(), CoalesceError> {
    if cols.rows == 0 {
        return Err(CoalesceError::Invalid("the request has no rows".into()));
    }
    cols.check(model.spec()).map_err(|e| CoalesceError::Invalid(e.to_string()))?;
    for (n, values) in model.spec().numeric.iter().zip(&cols.numeric) {
        // Finite after the spec's normalization too: a huge finite value would overflow there
        // and score as NaN.
        let normalize = n.normalizer();
        if let Some(i) = values.iter().position(|&v| !normalize(v).is_finite()) {
            return Err(CoalesceError::Invalid(format!(
                "column `{}` row {i}: {} is not a finite number the model can normalize",
                n.name, values[i]
            )));
        }
    }
    Ok(())
}

/// A scoring thread: form a batch, score it, reply; until closed and drained.
fn worker(s: &Shared) {
    while let Some(batch) = next_batch(s) {
        run_batch(s, batch);
    }
}

/// Waits for the next batch: requests from the front of the queue, at most `max_batch` rows
/// (at least one request), as soon as there is one with `max_wait` 0; otherwise once the queue
/// holds `max_batch` rows or its oldest request has waited `max_wait`. `None` when the
/// coalescer is closed and the queue empty.
fn next_batch(s: &Shared) -> Option<Vec<Pending>> {
    let cfg = &s.config;
    let mut q = lock(&s.queue);
    loop {
        if let Some(oldest) = q.requests.front().map(|p| p.enqueued) {
            let flush_at = oldest + cfg.max_wait;
            let now = Instant::now();
            if q.rows >= cfg.max_batch || now >= flush_at || q.closed {
                break;
            }
            q = s.wake.wait_timeout(q, flush_at - now).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        } else if q.closed {
            return None;
        } else {
            q = s.wake.wait(q).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
    let mut batch = Vec::new();
    let mut rows = 0;
    while let Some(p) = q.requests.front() {
        if !batch.is_empty() && rows + p.cols.rows > cfg.max_batch {
            break;
        }
        rows += p.cols.rows;
        batch.extend(q.requests.pop_front());
    }
    q.rows -= rows;
    let more = !q.requests.is_empty();
    drop(q);
    if more {
        // Another thread may form the next batch now.
        s.wake.notify_one();
    }
    Some(batch)
}

/// Scores one batch and replies to each request: expired requests first, then all others
/// in one call; if that fails, each request alone, so only the bad one fails.
fn run_batch(s: &Shared, batch: Vec<Pending>) {
    let start = Instant::now();
    let (live, expired): (Vec<_>, Vec<_>) = batch.into_iter().partition(|p| p.deadline.is_none_or(|d| d > start));
    {
        let mut st = lock(&s.stats);
        st.expired += expired.len() as u64;
        for p in &live {
            st.queue_seconds.observe((start - p.enqueued).as_secs_f64());
        }
    }
    for p in expired {
        reply(p.reply, Err(CoalesceError::DeadlineExceeded));
    }
    if live.is_empty() {
        return;
    }
    let rows: usize = live.iter().map(|p| p.cols.rows).sum();
    let scored =
        if live.len() == 1 { score(&s.model, &live[0].cols) } else { concat(&live).and_then(|c| score(&s.model, &c)) };
    let elapsed = start.elapsed().as_secs_f64();
    let results: Vec<Result<Vec<f32>, CoalesceError>> = match scored {
        Ok(logits) => {
            let mut at = 0;
            live.iter()
                .map(|p| {
                    at += p.cols.rows;
                    Ok(logits[at - p.cols.rows..at].to_vec())
                })
                .collect()
        }
        Err(_) => live.iter().map(|p| score(&s.model, &p.cols)).collect(),
    };
    {
        // Counted before the replies go out: a caller that reads the stats after its reply
        // sees its batch.
        let mut st = lock(&s.stats);
        st.batches += 1;
        st.failed += results.iter().filter(|r| r.is_err()).count() as u64;
        st.batch_rows.observe(rows as f64);
        st.inference_seconds.observe(elapsed);
    }
    for (p, r) in live.into_iter().zip(results) {
        reply(p.reply, r);
    }
}

/// Calls a reply; a callback that panics loses its own reply only, not the scoring thread.
fn reply(r: Reply, result: Result<Vec<f32>, CoalesceError>) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || r(result)));
}

/// Logits of `cols`, every one finite. A panic inside the model fails this call only: the
/// scoring thread lives on.
fn score(model: &Model, cols: &Columns) -> Result<Vec<f32>, CoalesceError> {
    let logits = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.logits(cols)))
        .map_err(|_| CoalesceError::Failed("the model panicked".into()))?
        .map_err(|e| CoalesceError::Failed(e.to_string()))?;
    match logits.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(CoalesceError::Failed(format!("row {i} scored {}", logits[i]))),
        None => Ok(logits),
    }
}

/// The requests' rows one after another, as one set of columns (their columns and id types
/// were checked against the spec at submission, so they append).
fn concat(batch: &[Pending]) -> Result<Columns, CoalesceError> {
    let mut out = Columns::empty_like(&batch[0].cols, batch.iter().map(|p| p.cols.rows).sum());
    for p in batch {
        out.append(&p.cols).map_err(|e| CoalesceError::Failed(e.to_string()))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::manifest::Architecture;
    use crate::artifact::spec::Ids;
    use crate::artifact::spec::{CategoricalSpec, FeatureSpec, NumericSpec};
    use crate::artifact::weights::{Dense, FloatWeights, Table};
    use crate::rng::Rng;
    use crate::runtime::FloatModel;

    /// A float model: one id column (vocabulary 1..=20, width 3), two numeric columns, one
    /// hidden layer of 5.
    fn model() -> Arc<Model> {
        let mut rng = Rng::new(11);
        let mut r = |n: usize| (0..n).map(|_| rng.normal() as f32).collect::<Vec<_>>();
        let spec = FeatureSpec {
            categorical: vec![CategoricalSpec::new("user_id", (1..=20).collect())],
            numeric: ["a", "b"].map(|n| NumericSpec { name: n.into(), mean: 0.5, std: 0.25 }).to_vec(),
            label: "label".into(),
            sources: vec![],
        };
        let arch = Architecture {
            embedding_dims: vec![3],
            hidden: vec![5],
            activation: crate::artifact::manifest::Activation::Relu,
            interaction: crate::artifact::manifest::Interaction::None,
        };
        let weights = FloatWeights {
            embeddings: vec![Table { data: r(21 * 3), rows: 21, dim: 3 }],
            dense: vec![
                Dense { weight: r(5 * 5), bias: r(5), input: 5, output: 5 },
                Dense { weight: r(5), bias: r(1), input: 5, output: 1 },
            ],
        };
        Arc::new(Model::Float(FloatModel::with_kernel(spec, arch, weights, crate::kernels::Kernel::best())))
    }

    fn rows(ids: &[i64]) -> Columns {
        let a: Vec<f32> = ids.iter().map(|&i| i as f32 * 0.25).collect();
        let b: Vec<f32> = ids.iter().map(|&i| 1.0 - i as f32).collect();
        Columns { rows: ids.len(), categorical: vec![Ids::Int(ids.to_vec())], lists: Vec::new(), numeric: vec![a, b] }
    }

    fn config(max_batch: usize, max_wait_ms: u64) -> Config {
        Config { max_batch, max_wait: Duration::from_millis(max_wait_ms), ..Config::default() }
    }

    #[test]
    fn concurrent_requests_get_their_own_rows_in_order_from_shared_batches() {
        let m = model();
        let c = Coalescer::new(Arc::clone(&m), config(16, 5)).unwrap();
        let requests: Vec<Vec<i64>> = (0..24).map(|i| (0..1 + i % 5).map(|j| (i * 7 + j) % 23).collect()).collect();
        let got: Vec<Vec<f32>> = std::thread::scope(|s| {
            let hs: Vec<_> = requests.iter().map(|ids| s.spawn(|| c.score(rows(ids), None).unwrap())).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (ids, g) in requests.iter().zip(&got) {
            assert_eq!(*g, m.logits(&rows(ids)).unwrap(), "request {ids:?}");
        }
        let st = c.stats();
        let total: usize = requests.iter().map(Vec::len).sum();
        assert_eq!(st.batch_rows.sum as usize, total);
        assert!(st.batches < requests.len() as u64, "requests were coalesced: {} batches", st.batches);
        // Buckets 5.. are (16, 32], (32, 64], ...: no batch over max_batch = 16 rows.
        assert!(st.batch_rows.counts[5..].iter().all(|&n| n == 0), "no batch over 16 rows: {:?}", st.batch_rows);
        assert_eq!((st.admitted, st.queued_rows), (24, 0));
    }

    #[test]
    fn by_default_a_free_thread_scores_at_once_and_requests_arriving_meanwhile_form_the_next_batch() {
        let m = model();
        let c = Coalescer::new(Arc::clone(&m), Config::default()).unwrap();
        assert_eq!(c.config().max_wait, Duration::ZERO);
        // A lone request is scored alone (were it waiting for a full batch, this would block).
        assert_eq!(c.score(rows(&[3]), None).unwrap(), m.logits(&rows(&[3])).unwrap());
        // The next request's reply holds the scoring thread until released; ten requests
        // arrive meanwhile.
        let (hold, held) = mpsc::channel::<()>();
        let (tx, rx) = mpsc::channel();
        let first = tx.clone();
        c.submit(
            rows(&[1]),
            None,
            Box::new(move |r| {
                let _ = held.recv();
                first.send((1, r)).unwrap();
            }),
        )
        .unwrap();
        let busy = Instant::now();
        while c.stats().batches < 2 {
            assert!(busy.elapsed() < Duration::from_secs(10), "the held batch was never scored");
            std::thread::sleep(Duration::from_millis(1));
        }
        for i in 2..12i64 {
            let tx = tx.clone();
            c.submit(rows(&[i]), None, Box::new(move |r| tx.send((i, r)).unwrap())).unwrap();
        }
        hold.send(()).unwrap();
        let mut got: Vec<(i64, Result<Vec<f32>, CoalesceError>)> = (0..11).map(|_| rx.recv().unwrap()).collect();
        got.sort_by_key(|g| g.0);
        for (i, r) in got {
            assert_eq!(r.unwrap(), m.logits(&rows(&[i])).unwrap(), "request {i}");
        }
        // Batches of 1, 1 and then the 10 that queued while the thread was busy.
        let st = c.stats();
        assert_eq!((st.batches, st.batch_rows.sum), (3, 12.0));
        assert_eq!(st.batch_rows.counts[..5], [2, 0, 0, 0, 1], "{:?}", st.batch_rows);
    }

    #[test]
    fn a_full_batch_leaves_without_waiting_and_a_partial_one_at_the_max_wait() {
        // max_wait of an hour: these calls return only because the batch filled.
        let c = Coalescer::new(model(), config(4, 3_600_000)).unwrap();
        std::thread::scope(|s| {
            let c = &c;
            let hs: Vec<_> = (0..4).map(|i| s.spawn(move || c.score(rows(&[i]), None))).collect();
            hs.into_iter().for_each(|h| assert!(h.join().unwrap().is_ok()));
        });
        assert_eq!((c.stats().batches, c.stats().batch_rows.sum), (1, 4.0));
        // A lone request leaves after the max wait.
        let c = Coalescer::new(model(), config(64, 20)).unwrap();
        assert!(c.score(rows(&[3]), None).is_ok());
        let st = c.stats();
        assert_eq!((st.batches, st.batch_rows.sum), (1, 1.0));
        assert!(st.queue_seconds.sum >= 0.02, "the request waited the max wait: {}", st.queue_seconds.sum);
    }

    #[test]
    fn a_full_queue_refuses_at_once_and_shutdown_scores_what_was_queued() {
        let c = Coalescer::new(model(), Config { queue_rows: 3, ..config(64, 3_600_000) }).unwrap();
        let (tx, rx) = mpsc::channel();
        for ids in [&[1i64, 2][..], &[3]] {
            let tx = tx.clone();
            c.submit(rows(ids), None, Box::new(move |r| tx.send(r).unwrap())).unwrap();
        }
        let e = c.submit(rows(&[4]), None, Box::new(|_| panic!("a refused request is not replied to")));
        assert_eq!(e, Err(CoalesceError::QueueFull(3)));
        assert_eq!(c.stats().rejected_full, 1);
        c.shutdown();
        let done: Vec<_> = rx.try_iter().collect();
        assert_eq!(done.len(), 2);
        assert!(done.iter().all(Result::is_ok));
    }

    #[test]
    fn a_request_larger_than_the_queue_is_refused_as_too_large_not_queue_full() {
        let c = Coalescer::new(model(), Config { queue_rows: 2, ..config(64, 1) }).unwrap();
        assert_eq!(c.score(rows(&[1, 2, 3]), None), Err(CoalesceError::TooLarge { rows: 3, max: 2 }));
        assert!(c.score(rows(&[1, 2]), None).is_ok());
        assert!(Coalescer::new(model(), Config { max_wait: Duration::from_secs(4000), ..config(1, 1) }).is_err());
    }

    #[test]
    fn a_bad_request_fails_alone() {
        let m = model();
        let c = Coalescer::new(Arc::clone(&m), config(64, 30)).unwrap();
        let mut nan = rows(&[1, 2]);
        nan.numeric[1][1] = f32::NAN;
        let mut missing = rows(&[1]);
        missing.numeric.pop();
        // Finite, but infinite once normalized: (x - 0.5) / 0.25.
        let mut huge = rows(&[1]);
        huge.numeric[0][0] = f32::MAX / 2.0;
        let mut strings = rows(&[1]);
        strings.categorical[0] = Ids::Str(vec!["1".into()]);
        std::thread::scope(|s| {
            let good = s.spawn(|| c.score(rows(&[5, 6]), None));
            for (bad, want) in [
                (nan, "row 1: NaN"),
                (huge, "row 0: 170141"),
                (missing, "numeric columns"),
                (strings, "string ids"),
                (rows(&[]), "no rows"),
            ] {
                let e = c.score(bad, None).unwrap_err().to_string();
                assert!(e.contains(want), "{e}");
            }
            assert_eq!(good.join().unwrap().unwrap(), m.logits(&rows(&[5, 6])).unwrap());
        });
        assert_eq!(c.stats().rejected_invalid, 5);
    }

    #[test]
    fn deadlines_are_honoured_while_waiting_and_expired_requests_are_not_scored() {
        let c = Coalescer::new(model(), config(64, 3_600_000)).unwrap();
        let t = Instant::now();
        let e = c.score(rows(&[1]), Some(t + Duration::from_millis(50)));
        assert_eq!(e, Err(CoalesceError::DeadlineExceeded));
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_millis(50) && waited < Duration::from_secs(5),
            "returned at its deadline, not at the max wait: {waited:?}"
        );
        // The expired request is dropped when its batch forms (here: at shutdown).
        c.shutdown();
        let c = Coalescer::new(model(), config(1, 0)).unwrap();
        let past = Instant::now() - Duration::from_millis(1);
        let (tx, rx) = mpsc::channel();
        c.submit(rows(&[2]), Some(past), Box::new(move |r| tx.send(r).unwrap())).unwrap();
        assert_eq!(rx.recv().unwrap(), Err(CoalesceError::DeadlineExceeded));
        let st = c.stats();
        assert_eq!((st.expired, st.batches), (1, 0));
    }
}
