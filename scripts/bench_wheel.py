#!/usr/bin/env python3
"""The reco_runtime wheel against onnxruntime, both called from Python, per-call overhead
included: rows/s at batch 1, 64 and 1024 for each artifact given, on the same rows.

  wheel (arrow):  Model.score(pyarrow.RecordBatch)
  wheel (numpy):  Model.score({column: numpy array})
  onnxruntime:    InferenceSession.run on the artifact's exported model.onnx (1 thread), fed
                  the same columns as numpy arrays

Rounds are interleaved (every engine at every batch size, then again); the median of the
rounds' best slices is reported, with the wheel's ratio to onnxruntime. The logits of every
engine are compared first (the ONNX graph's are within float rounding of ours).

usage: bench_wheel.py --data test.parquet [--rounds 3] [--seconds 1] MODEL_DIR...
"""
import argparse
import json
import statistics
from pathlib import Path

import time

import numpy as np
import onnxruntime as ort
import pyarrow.parquet as pq

import reco_runtime

BATCHES = (1, 64, 1024)


def session(path: Path):
    """onnxruntime on one thread, all graph optimizations."""
    o = ort.SessionOptions()
    o.intra_op_num_threads = o.inter_op_num_threads = 1
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def feeds_of(table, spec):
    """The ONNX graph's inputs: raw integer ids as int64, numbers as float32."""
    f = {c["name"]: table[c["name"]].to_numpy().astype(np.int64) for c in spec["categorical"]}
    f.update({n["name"]: table[n["name"]].to_numpy().astype(np.float32) for n in spec["numeric"]})
    return f


def best_rate(call, batches, batch, seconds, slices=4):
    """Best rows/s over `slices` timed slices of `seconds / slices` each, cycling `batches`."""
    call(batches[0])
    best, i = 0.0, 0
    for _ in range(slices):
        rows, t0 = 0, time.perf_counter()
        while True:
            call(batches[i % len(batches)])
            rows, i = rows + batch, i + 1
            el = time.perf_counter() - t0
            if el >= seconds / slices:
                break
        best = max(best, rows / el)
    return best


def engines(model_dir: Path, table):
    """The three callables on one batch of rows `b` (a (RecordBatch, numpy dict) pair)."""
    model = reco_runtime.Model.load(model_dir)
    spec = json.loads((model_dir / "manifest.json").read_text())["feature_spec"]
    sess = session(model_dir / "model.onnx")
    out = "logit"
    return {
        "wheel (arrow)": lambda b: model.score(b[0]),
        "wheel (numpy)": lambda b: model.score(b[1]),
        "onnxruntime": lambda b: sess.run([out], b[2]),
    }, model, spec, sess, out


def batches_of(table, spec, inputs, batch, count=16):
    """`count` consecutive slices of `batch` rows: (RecordBatch, numpy dict, ORT feeds)."""
    out = []
    for i in range(count):
        t = table.slice(i * batch, batch).combine_chunks()
        rb = t.select(inputs).to_batches()[0]
        out.append((rb, {c: t.column(c).to_numpy() for c in inputs}, feeds_of(t, spec)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("models", nargs="+")
    a = ap.parse_args()
    table = pq.read_table(a.data)
    for d in map(Path, a.models):
        calls, model, spec, sess, out = engines(d, table)
        sets = {b: batches_of(table, spec, model.inputs, b) for b in BATCHES}
        first = sets[1024][0]
        ours, theirs = model.score(first[0]), sess.run([out], first[2])[0].reshape(-1)
        print(f"{d.name}: max |logit(wheel) - logit(onnxruntime)| on 1024 rows {np.abs(ours - theirs).max():.3g}")
        rates = {(e, b): [] for e in calls for b in BATCHES}
        for _ in range(a.rounds):
            for b in BATCHES:
                for name, call in calls.items():
                    rates[(name, b)].append(best_rate(call, sets[b], b, a.seconds))
        print(f"| {d.name} | " + " | ".join(f"batch {b}" for b in BATCHES) + " |")
        print("|---|" + "---|" * len(BATCHES))
        for name in calls:
            cells = []
            for b in BATCHES:
                r = statistics.median(rates[(name, b)])
                ratio = r / statistics.median(rates[("onnxruntime", b)])
                cells.append(f"{r:,.0f} rows/s" + ("" if name == "onnxruntime" else f" ({ratio:.2f}x)"))
            print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
