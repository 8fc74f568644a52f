"""reco-cli's serving runtime for Python.

    import reco_runtime
    model = reco_runtime.Model.load("artifacts/quickstart/teacher-int8")
    logits = model.score(batch)          # pyarrow.RecordBatch / Table, or {column: numpy array}

`Model.load` verifies every file of the artifact against its manifest (sha256) and refuses a
failed or stale one; scoring runs the same Rust code as `reco-cli predict` and `serve` (the
same logits, bit for bit), with the GIL released. Numeric and integer-id columns are read
without copies (numpy arrays become Arrow arrays over the same memory). `Coalescer` batches
single requests from many asyncio tasks: `await coalescer.score(row)`.

Errors are `RecoError` subclasses: `ArtifactError` (missing, modified, unsupported, failed or
stale artifact), `InputError` (input that does not fit the model's feature spec: the message
names the column and row), `QueueFull`, `DeadlineExceeded`, `ShuttingDown`.
"""

from __future__ import annotations

import asyncio
import atexit
import weakref
from typing import Any, Mapping, Optional, Union

import numpy as np
import pyarrow as pa

from ._reco import (
    ArtifactError,
    DeadlineExceeded,
    InputError,
    QueueFull,
    RecoError,
    ShuttingDown,
)
from ._reco import Coalescer as _Coalescer
from ._reco import Model as _Model

__all__ = [
    "Model",
    "Coalescer",
    "RecoError",
    "ArtifactError",
    "InputError",
    "QueueFull",
    "DeadlineExceeded",
    "ShuttingDown",
]

Rows = Union[pa.RecordBatch, pa.Table, Mapping[str, Any]]


def _batch(data: Rows, inputs: list) -> pa.RecordBatch:
    """An Arrow record batch of the model's input columns (others are not passed on)."""
    if isinstance(data, pa.RecordBatch):
        return data
    if isinstance(data, pa.Table):
        return data.select([c for c in inputs if c in data.column_names]).combine_chunks().to_batches()[0]
    if isinstance(data, Mapping):
        arrays = {}
        for name in inputs:
            if name not in data:
                raise InputError(f"missing column `{name}`")
            value = data[name]
            # A numpy array of numbers becomes an Arrow array over the same buffer.
            arrays[name] = value if isinstance(value, (pa.Array, pa.ChunkedArray)) else pa.array(np.asarray(value))
        lengths = {name: len(a) for name, a in arrays.items()}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"`{n}` {k}" for n, k in lengths.items())
            raise InputError(f"columns of unequal lengths: {shown}; expected one length for every column")
        return pa.RecordBatch.from_pydict(arrays)
    raise TypeError(f"expected a pyarrow RecordBatch or Table, or a dict of columns, got {type(data).__name__}")


def _logits(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype="<f4")


class Model:
    """A verified reco-cli artifact (float or INT8) that scores rows into logits."""

    def __init__(self, native: _Model):
        self._native = native

    @classmethod
    def load(cls, path) -> "Model":
        """Opens the artifact directory `path` (checksums verified; failed or stale refused)."""
        return cls(_Model.load(str(path)))

    @classmethod
    def from_bytes(cls, manifest: bytes, weights: bytes, name: str = "memory") -> "Model":
        """An artifact from memory: `manifest.json`'s text or bytes and `model.safetensors`'
        bytes."""
        if isinstance(manifest, str):
            manifest = manifest.encode("utf-8")
        if not isinstance(manifest, (bytes, bytearray, memoryview)) or not isinstance(weights, (bytes, bytearray, memoryview)):
            raise TypeError(f"expected the manifest as bytes or str and the weights as bytes, got "
                            f"{type(manifest).__name__} and {type(weights).__name__}")
        return cls(_Model.from_bytes(bytes(manifest), bytes(weights), name))

    @property
    def kind(self) -> str:
        return self._native.kind

    @property
    def content_sha256(self) -> str:
        return self._native.content_sha256

    @property
    def inputs(self) -> list:
        """The raw input columns, in model order."""
        return self._native.inputs

    def score(self, data: Rows) -> np.ndarray:
        """Logits (float32) of every row."""
        return _logits(self._native._score_arrow(_batch(data, self.inputs)))

    def tflite_inputs(self, data: Rows) -> dict:
        """The inputs of this model's TFLite graph (`reco-cli export --format tflite`) by name:
        each categorical column's embedding row indices (int32 [n], 0 for an unseen id) and each
        numeric column's raw values (float32 [n, 1]; the graph normalizes them)."""
        out = {}
        for name, dtype, raw in self._native._tflite_inputs_arrow(_batch(data, self.inputs)):
            values = np.frombuffer(raw, dtype="<i4" if dtype == "int32" else "<f4").astype(dtype)
            out[name] = values if dtype == "int32" else values.reshape(-1, 1)
        return out

    def probabilities(self, data: Rows) -> np.ndarray:
        """Visit probabilities, `sigmoid(logit)`."""
        return 1.0 / (1.0 + np.exp(-self.score(data).astype(np.float64)))


def _settle(future: asyncio.Future, raw: Optional[bytes], error: Optional[BaseException]) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(_logits(raw))


_LIVE: "weakref.WeakSet[Coalescer]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    # Before the interpreter shuts down: every queued request answered, the threads stopped.
    for c in list(_LIVE):
        c.close()


class Coalescer:
    """Scores requests from many asyncio tasks together (work-conserving: a free scoring
    thread takes whatever is queued; `max_wait_ms` adds an optional delay for fuller batches).
    A full queue raises `QueueFull` at once; `timeout_ms` bounds each request. `close()` (or
    leaving a `with` block, or the interpreter's exit) answers what is queued and stops."""

    def __init__(self, model: Model, max_batch: int = 64, max_wait_ms: float = 0.0, queue_rows: int = 4096,
                 threads: int = 1):
        for arg, value in (("max_batch", max_batch), ("queue_rows", queue_rows), ("threads", threads)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"Coalescer({arg}={value!r}): expected an integer of at least 1")
        self._model = model
        self._native = _Coalescer(model._native, max_batch, max_wait_ms, queue_rows, threads)
        _LIVE.add(self)

    def close(self) -> None:
        """Scores what is queued, then stops; later calls to `score` raise `ShuttingDown`."""
        self._native.close()

    def __enter__(self) -> "Coalescer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    async def score(self, data: Rows, timeout_ms: Optional[float] = None) -> np.ndarray:
        """Logits of `data`'s rows, scored in a batch with whatever else is queued."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def done(raw, error):
            try:
                loop.call_soon_threadsafe(_settle, future, raw, error)
            except RuntimeError:
                pass  # the event loop has closed: nobody awaits this request any more

        self._native._submit(_batch(data, self._model.inputs), done, timeout_ms)
        return await future

    def stats(self) -> dict:
        admitted, queue_full, batches = self._native.stats()
        return {"admitted": admitted, "rejected_full": queue_full, "batches": batches}
