"""The reco_runtime wheel against `reco-cli predict` (same logits, bit for bit) and bad inputs.

Needs RECO_CLI (the reco-cli binary) and RECO_RUN (a `reco-cli run` output root with teacher,
teacher-int8 and features/test.parquet); scripts/test sets both.
"""

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import reco_runtime as rr

RUN = Path(os.environ.get("RECO_RUN", ""))
CLI = os.environ.get("RECO_CLI", "")
TEST = RUN / "features" / "test.parquet"
MODELS = ["teacher", "teacher-int8"]

pytestmark = pytest.mark.skipif(not (CLI and TEST.is_file()), reason="RECO_CLI and RECO_RUN are not set")


def predict_logits(model: str, tmp_path: Path) -> np.ndarray:
    out = tmp_path / f"{model}.parquet"
    subprocess.run([CLI, "predict", "--model", str(RUN / model), "--data", str(TEST), "--out", str(out), "-q"],
                   check=True)
    return pq.read_table(out).column("logit").to_numpy().astype(np.float32)


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return pq.read_table(TEST)


@pytest.mark.parametrize("name", MODELS)
def test_scores_equal_predict_bit_for_bit(name, table, tmp_path):
    model = rr.Model.load(RUN / name)
    assert model.kind == name
    ours = model.score(table)
    want = predict_logits(name, tmp_path)
    assert ours.dtype == np.float32 and ours.shape == want.shape
    assert np.array_equal(ours.view(np.uint32), want.view(np.uint32)), np.abs(ours - want).max()
    # Batch by batch, and from a dict of numpy columns, the same values.
    batch = table.slice(0, 257).combine_chunks().to_batches()[0]
    columns = {c: table.column(c).slice(0, 257).to_numpy() for c in model.inputs}
    assert np.array_equal(model.score(batch), want[:257])
    assert np.array_equal(model.score(columns), want[:257])
    probabilities = model.probabilities(batch)
    assert np.allclose(probabilities, 1 / (1 + np.exp(-want[:257].astype(np.float64))))


def test_from_bytes_is_the_loaded_model_and_checks_the_weights():
    d = RUN / "teacher-int8"
    manifest, weights = (d / "manifest.json").read_bytes(), (d / "model.safetensors").read_bytes()
    model = rr.Model.from_bytes(manifest, weights, "int8")
    assert model.content_sha256 == rr.Model.load(d).content_sha256
    broken = bytearray(weights)
    broken[-1] ^= 1
    with pytest.raises(rr.ArtifactError, match="sha256|checksum"):
        rr.Model.from_bytes(manifest, bytes(broken), "int8")


def test_artifacts_that_cannot_be_served_raise_artifact_error(tmp_path):
    with pytest.raises(rr.ArtifactError, match="no-such-dir"):
        rr.Model.load(tmp_path / "no-such-dir")
    copy = tmp_path / "teacher"
    shutil.copytree(RUN / "teacher", copy)
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(rr.ArtifactError, match="model.safetensors"):
        rr.Model.load(copy)
    assert issubclass(rr.ArtifactError, rr.RecoError)


def test_bad_inputs_raise_input_error_naming_the_column(table):
    model = rr.Model.load(RUN / "teacher-int8")
    batch = table.slice(0, 4).combine_chunks().to_batches()[0]
    numeric = next(c for c in model.inputs if pa.types.is_floating(batch.schema.field(c).type))
    with pytest.raises(rr.InputError, match="missing column `user_id`"):
        model.score(batch.drop_columns(["user_id"]))
    values = batch.column(numeric).to_numpy().copy()
    values[2] = np.nan
    nan = batch.set_column(batch.schema.get_field_index(numeric), numeric, pa.array(values))
    with pytest.raises(rr.InputError, match=f"{numeric}.*row 2"):
        model.score(nan)
    wrong = batch.set_column(batch.schema.get_field_index("user_id"), "user_id",
                             pa.array([str(v) for v in batch.column("user_id").to_pylist()]))
    with pytest.raises(rr.InputError, match="user_id"):
        model.score(wrong)
    with pytest.raises(TypeError):
        model.score([1, 2, 3])
    # A dict whose columns differ in length names each column's length.
    columns = {c: table.column(c).slice(0, 5).to_numpy() for c in model.inputs}
    columns[numeric] = columns[numeric][:3]
    with pytest.raises(rr.InputError, match=f"unequal lengths.*`{numeric}` 3"):
        model.score(columns)
    # A coalescer argument out of range is named.
    for arg in ("max_batch", "queue_rows", "threads"):
        with pytest.raises(rr.InputError, match=f"Coalescer\\({arg}=0\\)"):
            rr.Coalescer(model, **{arg: 0})


def test_from_bytes_takes_the_manifest_as_text_too():
    d = RUN / "teacher-int8"
    weights = (d / "model.safetensors").read_bytes()
    model = rr.Model.from_bytes((d / "manifest.json").read_text(), weights)
    assert model.content_sha256 == rr.Model.load(d).content_sha256
    with pytest.raises(TypeError, match="weights as bytes"):
        rr.Model.from_bytes((d / "manifest.json").read_bytes(), "not bytes")


def test_the_coalescer_answers_every_awaiting_task_with_its_own_rows(table):
    model = rr.Model.load(RUN / "teacher-int8")
    rows = [table.slice(i, 1).combine_chunks().to_batches()[0] for i in range(200)]
    want = model.score(table.slice(0, 200))

    async def main():
        with rr.Coalescer(model, max_batch=32) as coalescer:
            got = await asyncio.gather(*(coalescer.score(r) for r in rows))
            return got, coalescer.stats(), coalescer

    got, stats, closed = asyncio.run(main())
    assert np.array_equal(np.concatenate(got), want)
    assert stats["admitted"] == 200 and stats["batches"] <= 200

    async def after_close():
        await closed.score(rows[0])

    with pytest.raises(rr.ShuttingDown):
        asyncio.run(after_close())


def test_the_coalescer_refuses_a_full_queue_and_honours_deadlines(table):
    model = rr.Model.load(RUN / "teacher-int8")
    one = table.slice(0, 1).combine_chunks().to_batches()[0]

    async def full():
        # A batch leaves when two rows wait (or after an hour): the second request is refused.
        coalescer = rr.Coalescer(model, max_batch=2, max_wait_ms=3_600_000, queue_rows=1)
        first = asyncio.ensure_future(coalescer.score(one, timeout_ms=50))
        await asyncio.sleep(0)
        with pytest.raises(rr.QueueFull):
            await coalescer.score(one)
        # The first expires unscored once its batch forms: the second fills it.
        await asyncio.sleep(0.1)
        coalescer2 = rr.Coalescer(model, max_batch=2, max_wait_ms=3_600_000)
        late = asyncio.ensure_future(coalescer2.score(one, timeout_ms=1))
        await asyncio.sleep(0.05)
        on_time = await coalescer2.score(one)
        with pytest.raises(rr.DeadlineExceeded):
            await late
        # Closing answers the request still queued (expired by now) before the threads stop.
        coalescer.close()
        coalescer2.close()
        with pytest.raises(rr.DeadlineExceeded):
            await first
        return on_time

    assert np.array_equal(asyncio.run(full()), model.score(one))
    with pytest.raises(rr.InputError, match="max_wait_ms"):
        rr.Coalescer(model, max_wait_ms=-1)


def test_exiting_with_a_request_still_queued_answers_it_and_exits_cleanly():
    # A batch that would wait an hour for a second row; the interpreter exits first.
    script = f"""
import asyncio, sys, pyarrow.parquet as pq, reco_runtime as rr
model = rr.Model.load({str(RUN / "teacher-int8")!r})
one = pq.read_table({str(TEST)!r}).slice(0, 1).combine_chunks().to_batches()[0]
coalescer = rr.Coalescer(model, max_batch=2, max_wait_ms=3_600_000)
async def main():
    pending = asyncio.ensure_future(coalescer.score(one))
    await asyncio.sleep(0.01)
    assert not pending.done()
asyncio.run(main())
print("exiting")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "exiting"


def test_tflite_inputs_are_the_documented_encoding_and_feed_litert(table, tmp_path):
    """`Model.tflite_inputs` gives what the exported inputs file says (row = vocabulary
    position + 1, 0 unseen; raw numerics as [n, 1]), and LiteRT scores them as we do."""
    from ai_edge_litert.interpreter import Interpreter
    import json

    out = tmp_path / "teacher.tflite"
    subprocess.run([CLI, "export", "--model", str(RUN / "teacher"), "--format", "tflite", "--out", str(out), "-q"],
                   check=True, stdout=subprocess.DEVNULL)
    model = rr.Model.load(RUN / "teacher")
    rows = table.slice(0, 300)
    feeds = model.tflite_inputs(rows)
    doc = json.loads(Path(str(out) + ".inputs.json").read_text())
    assert list(feeds) == [i["name"] for i in doc["inputs"]]
    for spec in doc["inputs"]:
        got, col = feeds[spec["name"]], rows.column(spec["name"]).to_pylist()
        if spec["tensor_type"] == "int32":
            index = {v: i + 1 for i, v in enumerate(spec["vocabulary"])}
            assert got.dtype == np.int32 and got.tolist() == [index.get(v, 0) for v in col]
        else:
            assert got.dtype == np.float32 and got.shape == (len(col), 1)
            assert np.array_equal(got[:, 0], np.array(col, dtype=np.float32))
    interp = Interpreter(model_path=str(out))
    details = {d["name"]: d["index"] for d in interp.get_input_details()}
    for name, values in feeds.items():
        interp.resize_tensor_input(details[name], list(values.shape), strict=True)
    interp.allocate_tensors()
    for name, values in feeds.items():
        interp.set_tensor(details[name], values)
    interp.invoke()
    logit = next(d["index"] for d in interp.get_output_details() if d["name"] == "logit")
    assert np.abs(interp.get_tensor(logit) - model.score(rows)).max() <= 1e-5
