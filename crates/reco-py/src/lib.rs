//! The native module of the `reco_runtime` Python wheel (`reco_runtime._reco`), built from
//! `reco-runtime` alone: a verified [`Model`] that scores Arrow record batches (pyarrow, or any
//! object with the Arrow PyCapsule interface, read without copies) with the GIL released, the
//! request [`Coalescer`] with a completion callback (the Python package makes it an asyncio
//! awaitable), and the runtime's error kinds as Python exceptions. `python/reco_runtime`
//! holds the Python side: numpy dicts, tables, the awaitable.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::pyarrow::FromPyArrow;
use arrow::record_batch::RecordBatch;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use reco_runtime::error::{Error, ErrorKind};
use reco_runtime::runtime::arrow_io::columns_from_batch;
use reco_runtime::runtime::coalesce::{CoalesceError, Coalescer as Queue, Config};
use reco_runtime::runtime::{Columns, Model as Scorer};

create_exception!(_reco, RecoError, PyException, "Base class of every reco_runtime error.");
create_exception!(
    _reco,
    ArtifactError,
    RecoError,
    "The artifact cannot be served: missing, not a reco-cli artifact, of an unsupported version, modified since it was written (checksum), inconsistent tensors, or failed/stale."
);
create_exception!(_reco, InputError, RecoError, "Scoring input that does not fit the model's feature spec.");
create_exception!(_reco, QueueFull, RecoError, "The coalescer's queue is full: retry later.");
create_exception!(_reco, DeadlineExceeded, RecoError, "The request's deadline passed before it was scored.");
create_exception!(_reco, ShuttingDown, RecoError, "The coalescer is shutting down.");

/// The Python exception of a runtime error, by its kind.
fn runtime_error(e: Error) -> PyErr {
    let message = e.to_string();
    match e.kind() {
        ErrorKind::InputColumn | ErrorKind::Input => InputError::new_err(message),
        ErrorKind::Internal => RecoError::new_err(message),
        _ => ArtifactError::new_err(message),
    }
}

/// The Python exception of a coalescer refusal or failure.
fn coalesce_error(e: CoalesceError) -> PyErr {
    let message = e.to_string();
    match e {
        CoalesceError::QueueFull(_) => QueueFull::new_err(message),
        CoalesceError::DeadlineExceeded => DeadlineExceeded::new_err(message),
        CoalesceError::ShuttingDown => ShuttingDown::new_err(message),
        CoalesceError::TooLarge { .. } | CoalesceError::Invalid(_) => InputError::new_err(message),
        CoalesceError::Failed(_) => RecoError::new_err(message),
    }
}

/// Logits as little-endian f32 bytes (numpy reads them with `np.frombuffer(b, "<f4")`).
fn le_bytes(logits: &[f32]) -> Vec<u8> {
    logits.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A millisecond count from Python: finite and not negative.
fn millis(name: &str, ms: f64) -> PyResult<Duration> {
    if (0.0..=3_600_000.0).contains(&ms) {
        Ok(Duration::from_secs_f64(ms / 1e3))
    } else {
        Err(InputError::new_err(format!("{name} = {ms}: expected a number of milliseconds in [0, 3600000]")))
    }
}

/// A verified artifact, float or INT8.
#[pyclass(frozen, module = "reco_runtime._reco")]
struct Model {
    scorer: Arc<Scorer>,
    kind: String,
    content_sha256: String,
    inputs: Vec<String>,
}

impl Model {
    fn new(manifest: &reco_runtime::artifact::Manifest, scorer: Scorer) -> Self {
        let inputs = scorer.spec().input_names().iter().map(|s| s.to_string()).collect();
        Self {
            scorer: Arc::new(scorer),
            kind: manifest.kind.to_string(),
            content_sha256: manifest.content_hash(),
            inputs,
        }
    }

    /// The model's input columns of an Arrow record batch.
    fn columns(&self, batch: &Bound<'_, PyAny>) -> PyResult<Columns> {
        let batch = RecordBatch::from_pyarrow_bound(batch)?;
        columns_from_batch(self.scorer.spec(), &batch).map_err(runtime_error)
    }
}

#[pymethods]
impl Model {
    /// Opens the artifact directory `path`: every file's sha256 checked against the manifest,
    /// and refused when its status is failed or it is stale.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let (manifest, scorer) = py
            .detach(|| -> Result<_, Error> {
                let (manifest, scorer) = Scorer::open(&path)?;
                reco_runtime::artifact::check_usable(&path, &manifest)?;
                Ok((manifest, scorer))
            })
            .map_err(runtime_error)?;
        Ok(Self::new(&manifest, scorer))
    }

    /// An artifact from memory: the manifest's JSON and the weights file's bytes (checked
    /// against the manifest's size and sha256); `name` labels error messages.
    #[staticmethod]
    #[pyo3(signature = (manifest, weights, name = "memory"))]
    fn from_bytes(py: Python<'_>, manifest: &[u8], weights: &[u8], name: &str) -> PyResult<Self> {
        let (manifest, scorer) = py.detach(|| Scorer::from_bytes(name, manifest, weights)).map_err(runtime_error)?;
        Ok(Self::new(&manifest, scorer))
    }

    /// The artifact's kind (`teacher`, `student-int8`, ...).
    #[getter]
    fn kind(&self) -> &str {
        &self.kind
    }

    /// The manifest's content hash (what lineage and `/v1/score` replies name).
    #[getter]
    fn content_sha256(&self) -> &str {
        &self.content_sha256
    }

    /// The raw input columns the model takes, in model order.
    #[getter]
    fn inputs(&self) -> Vec<String> {
        self.inputs.clone()
    }

    /// Logits of every row of an Arrow record batch, as little-endian f32 bytes; the GIL is
    /// released while the rows are encoded and scored.
    fn _score_arrow<'py>(&self, py: Python<'py>, batch: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        let cols = self.columns(batch)?;
        let scorer = Arc::clone(&self.scorer);
        let logits = py.detach(move || scorer.logits(&cols)).map_err(runtime_error)?;
        Ok(PyBytes::new(py, &le_bytes(&logits)))
    }

    /// The inputs of the model's TFLite graph (`reco-cli export --format tflite`) for every row
    /// of an Arrow record batch: `(name, "int32" | "float32", little-endian bytes)` per input,
    /// in the graph's order (row indices of the categorical columns, raw numeric values).
    fn _tflite_inputs_arrow<'py>(
        &self,
        py: Python<'py>,
        batch: &Bound<'py, PyAny>,
    ) -> PyResult<Vec<(String, &'static str, Bound<'py, PyBytes>)>> {
        let cols = self.columns(batch)?;
        let inputs = reco_runtime::runtime::tflite_inputs(self.scorer.spec(), &cols.view()).map_err(runtime_error)?;
        let ints = inputs.categorical.into_iter().map(|(n, v)| {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            (n, "int32", PyBytes::new(py, &bytes))
        });
        let floats = inputs.numeric.into_iter().map(|(n, v)| (n, "float32", PyBytes::new(py, &le_bytes(&v))));
        Ok(ints.chain(floats).collect())
    }
}

/// The request coalescer over one model (work-conserving; `max_wait_ms` an optional delay).
/// `close` (the Python package calls it at exit too) scores what is queued and stops the
/// scoring threads while Python can still take their replies.
#[pyclass(frozen, module = "reco_runtime._reco")]
struct Coalescer {
    model: Py<Model>,
    queue: Mutex<Option<Arc<Queue>>>,
}

impl Coalescer {
    fn queue(&self) -> Option<Arc<Queue>> {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

impl Drop for Coalescer {
    /// Not closed: the scoring threads are joined on a thread of their own (a reply waiting
    /// for the GIL that the dropping thread holds would otherwise never finish).
    fn drop(&mut self) {
        let queue = self.queue.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(queue) = queue {
            let _ = std::thread::Builder::new().name("reco-coalescer-drop".into()).spawn(move || drop(queue));
        }
    }
}

#[pymethods]
impl Coalescer {
    #[new]
    #[pyo3(signature = (model, max_batch = 64, max_wait_ms = 0.0, queue_rows = 4096, threads = 1))]
    fn new(model: Py<Model>, max_batch: usize, max_wait_ms: f64, queue_rows: usize, threads: usize) -> PyResult<Self> {
        let config = Config { max_batch, max_wait: millis("max_wait_ms", max_wait_ms)?, queue_rows, threads };
        let queue = Queue::new(Arc::clone(&model.get().scorer), config).map_err(coalesce_error)?;
        Ok(Self { model, queue: Mutex::new(Some(Arc::new(queue))) })
    }

    /// Queues the rows of an Arrow record batch; `done(logits_bytes, None)` or `done(None,
    /// exception)` is called exactly once, from a scoring thread (holding the GIL). A request
    /// that does not fit the spec, a full queue or a closed coalescer raise here instead.
    #[pyo3(signature = (batch, done, timeout_ms = None))]
    fn _submit(&self, batch: &Bound<'_, PyAny>, done: Py<PyAny>, timeout_ms: Option<f64>) -> PyResult<()> {
        let queue = self.queue().ok_or_else(|| ShuttingDown::new_err("the coalescer is closed"))?;
        let cols = self.model.get().columns(batch)?;
        let deadline = timeout_ms.map(|t| millis("timeout_ms", t)).transpose()?.map(|d| Instant::now() + d);
        let reply = Box::new(move |result: Result<Vec<f32>, CoalesceError>| {
            // No reply once the interpreter is shutting down (nobody is left to take it).
            Python::try_attach(|py| {
                let args = match result {
                    Ok(logits) => (PyBytes::new(py, &le_bytes(&logits)).into_any().unbind(), py.None()),
                    Err(e) => (py.None(), coalesce_error(e).into_value(py).into_any()),
                };
                if let Err(e) = done.call1(py, args) {
                    e.write_unraisable(py, None);
                }
            });
        });
        queue.submit(cols, deadline, reply).map_err(coalesce_error)
    }

    /// Requests admitted, refused (queue full) and batches scored so far.
    fn stats(&self) -> (u64, u64, u64) {
        self.queue().map_or((0, 0, 0), |q| {
            let s = q.stats();
            (s.admitted, s.rejected_full, s.batches)
        })
    }

    /// Stops admitting requests, scores every queued one (each reply delivered) and stops the
    /// scoring threads, with the GIL released meanwhile; later submissions raise
    /// `ShuttingDown`. Closing twice does nothing.
    fn close(&self, py: Python<'_>) {
        let queue = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(queue) = queue {
            py.detach(move || drop(queue));
        }
    }
}

/// The native module.
#[pymodule]
fn _reco(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Model>()?;
    m.add_class::<Coalescer>()?;
    m.add("RecoError", py.get_type::<RecoError>())?;
    m.add("ArtifactError", py.get_type::<ArtifactError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("QueueFull", py.get_type::<QueueFull>())?;
    m.add("DeadlineExceeded", py.get_type::<DeadlineExceeded>())?;
    m.add("ShuttingDown", py.get_type::<ShuttingDown>())?;
    Ok(())
}
