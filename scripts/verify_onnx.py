#!/usr/bin/env python3
"""Checks an ONNX export of a reco-cli artifact against something we did not write.

1. `onnx.checker.check_model(full_check=True)`; IR version and opsets as documented; the
   file's sha256 equals the one the manifest records under `exports.onnx`.
2. `model.safetensors` loads with Python's `safetensors`.
3. onnxruntime (default graph optimizations, 1 thread) runs the graph on the raw columns of a
   feature file; `reco-cli predict` scores the same rows. FP32 graphs: max |dp| <= 1e-5.
   QDQ INT8 graphs: the logit may differ where onnxruntime's integer kernels round a hidden
   activation to the other side of a tie (float32 vs our requantization): we require
   |dlogit| <= one output quantization step (s_x * s_w of the last layer) on at least 99.9 % of rows and report the max over all rows, in steps and in probability.
   Dynamic INT8 graphs (per-call activation ranges) are scored in reco-cli's 4096-row chunks and
   must agree to |dp| <= 1e-2 (range rounding differs; see below).
   Every 5th row gets categorical ids outside the vocabulary, to check the OOV mapping; a
   multi-valued column's lists are fed padded with a mask, and every 5th row gets an empty
   list, unknown ids among known ones, or the longest list allowed.

Usage: verify_onnx.py --reco target/release/reco-cli --model DIR --data FILE [--onnx PATH]
Exit 0 when every check passes, 1 otherwise.
"""

import argparse
import hashlib
import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors.numpy import load_file

IR_VERSION = 8
OPSETS = {"": 17, "ai.onnx.ml": 3}


def fail(msg):
    print(f"verify_onnx: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def unknown_lists(table, c):
    """A multi-valued column with, on every 5th row, a list holding ids its vocabulary lacks
    among known ones (an empty list, one unknown id, a known and an unknown, the longest
    list allowed); returns the table and the number of unknown ids."""
    string = c.get("dtype") == "string"
    known = set(c["vocabulary"])
    lists = table[c["name"]].to_pylist()
    some = next((v for l in lists for v in l), "" if string else 0)
    odd = ["__unknown__", ""] if string else [int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max), -7]
    variants = [[], [odd[0]], [some, odd[-1]], [odd[j % len(odd)] if j % 2 else some
                                                 for j in range(c["bag"]["max_values"])]]
    for j, r in enumerate(range(0, len(lists), 5)):
        lists[r] = variants[j % len(variants)]
    n = sum(v not in known for l in lists for v in l)
    typ = pa.list_(pa.string() if string else pa.int64())
    return table.set_column(table.schema.get_field_index(c["name"]), c["name"], pa.array(lists, typ)), n


def padded(lists, c):
    """A multi-valued column's ONNX inputs: ids `[rows, max_values]` (padding: "" or 0) and
    the float mask, 1 on values."""
    width = c["bag"]["max_values"]
    string = c.get("dtype") == "string"
    ids = np.full((len(lists), width), "" if string else 0, dtype=object if string else np.int64)
    mask = np.zeros((len(lists), width), dtype=np.float32)
    for r, l in enumerate(lists):
        ids[r, :len(l)] = l
        mask[r, :len(l)] = 1.0
    return ids, mask


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reco", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--onnx")
    a = ap.parse_args()
    model_dir = pathlib.Path(a.model)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    path = pathlib.Path(a.onnx) if a.onnx else model_dir / "model.onnx"

    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    if m.ir_version != IR_VERSION:
        fail(f"{path}: ir_version {m.ir_version}, expected {IR_VERSION}")
    for o in m.opset_import:
        if OPSETS.get(o.domain) != o.version:
            fail(f"{path}: opset {o.domain or 'ai.onnx'} {o.version}, expected {OPSETS.get(o.domain)}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    rec = manifest.get("exports", {}).get("onnx")
    if a.onnx is None:
        if rec is None or rec["sha256"] != digest or rec["file"] != path.name:
            fail(f"{path}: manifest export record {rec} does not match sha256 {digest}")

    tensors = load_file(str(model_dir / "model.safetensors"))
    spec = manifest["feature_spec"]
    table = pq.read_table(a.data)
    # Exercise the OOV mapping: on every 5th row, each categorical id becomes one the
    # vocabulary lacks (below its minimum, above its maximum, a gap inside its range, or the
    # int64 extremes, where the dense lookup's `id - min` wraps around).
    unknown = 0
    for c in spec["categorical"]:
        if c.get("bag"):
            table, n = unknown_lists(table, c)
            unknown += n
            continue
        if c.get("dtype") == "string":
            # String ids: unknown strings (empty, another case, a suffix) on every 5th row.
            known = set(c["vocabulary"])
            ids = table[c["name"]].to_pylist()
            variants = ["", "__unknown__", (ids[0] or "").upper() + "x", (ids[0] or "") + " "]
            for j, r in enumerate(range(0, len(ids), 5)):
                ids[r] = variants[j % len(variants)]
            unknown += sum(v not in known for v in ids)
            table = table.set_column(table.schema.get_field_index(c["name"]), c["name"], pa.array(ids, pa.string()))
            continue
        vocab = np.array(c["vocabulary"], dtype=np.int64)
        known = set(vocab.tolist())
        gaps = [v for v in range(int(vocab.min()), int(vocab.max())) if v not in known][:3] if len(vocab) else []
        extremes = [int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)]
        choices = [int(vocab.min()) - 7 if len(vocab) else -7, int(vocab.max()) + 1000 if len(vocab) else 1000] + gaps + extremes
        ids = table[c["name"]].to_numpy().astype(np.int64).copy()
        rows = np.arange(0, len(ids), 5)
        ids[rows] = np.array(choices, dtype=np.int64)[np.arange(len(rows)) % len(choices)]
        unknown += int(np.sum(~np.isin(ids, vocab)))
        table = table.set_column(table.schema.get_field_index(c["name"]), c["name"], pa.array(ids))
    feeds = {}
    for c in spec["categorical"]:
        if c.get("bag"):
            feeds[c["name"]], feeds[c["name"] + "_mask"] = padded(table[c["name"]].to_pylist(), c)
        else:
            feeds[c["name"]] = (np.array(table[c["name"]].to_pylist(), dtype=object) if c.get("dtype") == "string"
                                else table[c["name"]].to_numpy().astype(np.int64))
    feeds.update({n["name"]: table[n["name"]].to_numpy().astype(np.float32) for n in spec["numeric"]})
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    if names != list(feeds):
        fail(f"{path}: inputs {names}, expected the feature spec's columns {list(feeds)}")
    # Dynamic INT8 layers take their activation range from each call's batch: score in the
    # same 4096-row chunks as reco-cli's runtime so both see the same batches.
    dynamic = bool((manifest.get("quantization") or {}).get("dynamic_activations"))
    chunk = 4096 if dynamic else len(next(iter(feeds.values())))
    outs = [sess.run(["probability", "logit"], {k: v[i:i + chunk] for k, v in feeds.items()})
            for i in range(0, len(next(iter(feeds.values()))), chunk)]
    prob = np.concatenate([o[0] for o in outs])
    logit = np.concatenate([o[1] for o in outs])

    with tempfile.TemporaryDirectory() as tmp:
        data = pathlib.Path(tmp) / "data.parquet"
        pq.write_table(table, data)
        out = pathlib.Path(tmp) / "pred.parquet"
        subprocess.run([a.reco, "predict", "--quiet", "--model", str(model_dir), "--data", str(data), "--out", str(out)],
                       check=True, stdout=subprocess.DEVNULL)
        ours = pq.read_table(out)
        our_p = ours["probability"].to_numpy().astype(np.float64)
        our_l = ours["logit"].to_numpy().astype(np.float64)
    if len(our_p) != len(prob):
        fail(f"{len(prob)} rows from onnxruntime, {len(our_p)} from reco-cli")
    dp = np.abs(prob.astype(np.float64) - our_p)
    dl = np.abs(logit.astype(np.float64) - our_l)
    kind = "qdq-int8" if manifest.get("quantization") else "fp32"
    rows = len(dp)
    if kind == "fp32":
        if dp.max() > 1e-5:
            fail(f"{path}: FP32 max |dp| {dp.max():.3g} > 1e-5 over {rows} rows")
        print(f"verify_onnx: OK {model_dir} fp32: checker (full), IR {m.ir_version}, "
              f"{len(tensors)} safetensors tensors, {rows} rows ({unknown} unknown ids), max |dp| {dp.max():.2e}, "
              f"max |dlogit| {dl.max():.2e}")
        return
    last = max(int(k.split(".")[1]) for k in tensors if k.startswith("dense."))
    if f"dense.{last}.weight_scale" in tensors and f"dense.{last}.input_scale" in tensors:
        step = float(np.float32(tensors[f"dense.{last}.input_scale"][0]) * np.float32(tensors[f"dense.{last}.weight_scale"][0]))
    else:
        step = None  # last layer kept in float: no integer output step; use the FP32 bound
    if dynamic:
        # Per-call ranges: onnxruntime's DynamicQuantizeLinear rounds the zero point half to
        # even and adds the float bias after the integer product; we quantize the bias into
        # the accumulator. Same batches, so the results stay close but are not bit-equal.
        step = None
        ok = dp.max() <= 1e-2
        within = float(np.mean(dp <= 1e-3))
    elif step is None:
        ok = dp.max() <= 1e-5
        within = float(np.mean(dp <= 1e-5))
    else:
        within = float(np.mean(dl <= step * 1.0001))
        ok = within >= 0.999
    print(f"verify_onnx: {'OK' if ok else 'FAIL'} {model_dir} qdq-int8: checker (full), IR {m.ir_version}, "
          f"{len(tensors)} safetensors tensors, {rows} rows ({unknown} unknown ids), output step {step}, "
          f"max |dlogit| {dl.max():.3g} ({dl.max() / step if step else float('nan'):.2f} steps), "
          f"rows within {'|dp| 1e-3' if dynamic else 'one step'} {within * 100:.3f} %, max |dp| {dp.max():.2e}, "
          f"exact rows {np.mean(dl == 0) * 100:.2f} %")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
