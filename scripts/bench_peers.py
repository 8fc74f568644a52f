#!/usr/bin/env python3
"""reco-cli against ONNX Runtime on the same models, one thread, same machine, one run.

For each float artifact DIR (with its INT8 sibling DIR-int8):
- ORT FP32: our FP32 export (DIR/model.onnx, preprocessing in the graph);
- ORT INT8: onnxruntime.quantization.quantize_static on that export, calibrated on the same
  calibration rows that `reco-cli quantize` used: QDQ format, per-channel, S8S8 (int8
  activations and weights), MinMax calibration (their defaults otherwise);
- reco-cli float (DIR) and INT8 (DIR-int8) via `reco-cli bench --json --threads 1`.
All four score raw feature columns end to end. Measurements are interleaved: each round
times every engine at every batch size once; the reported figure is the median over rounds.
ORT is called from Python, which adds a few microseconds per call (visible at batch 1).

Accuracy: AUC of each engine on the whole test split (one numpy AUC for all), and each INT8
engine's ΔAUC against its float parent.

Usage: bench_peers.py --reco BIN --data test.parquet --calibration calibration.parquet \
       [--batch-sizes 1,64,1024] [--rounds 5] [--seconds 0.4] [--json OUT] DIR...
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
import pyarrow.parquet as pq
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from check_artifact import auc  # one AUC (average ranks over ties) for every script


def feeds_of(table, spec):
    f = {c["name"]: table[c["name"]].to_numpy().astype(np.int64) for c in spec["categorical"]}
    f.update({n["name"]: table[n["name"]].to_numpy().astype(np.float32) for n in spec["numeric"]})
    return f


class Reader(CalibrationDataReader):
    def __init__(self, feeds, batch=256):
        n = len(next(iter(feeds.values())))
        self.batches = [{k: v[i:i + batch] for k, v in feeds.items()} for i in range(0, n, batch)]
        self.it = iter(self.batches)

    def get_next(self):
        return next(self.it, None)


def session(path):
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.inter_op_num_threads = 1
    o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def time_ort(sess, feeds, batch, seconds):
    n = len(next(iter(feeds.values())))
    slices = [{k: v[i:i + batch] for k, v in feeds.items()} for i in range(0, n - batch + 1, batch)][:64]
    sess.run(["logit"], slices[0])  # warm up
    rows, calls, t0 = 0, 0, time.perf_counter()
    while True:
        sess.run(["logit"], slices[calls % len(slices)])
        rows += batch
        calls += 1
        el = time.perf_counter() - t0
        if el >= seconds:
            return rows / el


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reco", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--calibration", required=True)
    ap.add_argument("--batch-sizes", default="1,64,1024")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.4, help="per engine, batch size and round")
    ap.add_argument("--json")
    ap.add_argument("models", nargs="+")
    a = ap.parse_args()
    batches = [int(b) for b in a.batch_sizes.split(",")]
    test = pq.read_table(a.data)
    labels = None
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        engines = {}
        for d in a.models:
            d = pathlib.Path(d)
            q = pathlib.Path(str(d) + "-int8")
            manifest = json.loads((d / "manifest.json").read_text())
            spec = manifest["feature_spec"]
            labels = test[spec["label"]].to_numpy()
            for m in (d, q):
                if not (m / "model.onnx").exists():
                    subprocess.run([a.reco, "export", "--quiet", "--model", str(m)], check=True, stdout=subprocess.DEVNULL)
            feeds = feeds_of(test, spec)
            cal = feeds_of(pq.read_table(a.calibration), spec)
            ort_int8 = pathlib.Path(tmp) / f"{d.name}.ort-int8.onnx"
            quantize_static(str(d / "model.onnx"), str(ort_int8), Reader(cal), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
            engines[d.name] = {"feeds": feeds, "ort fp32": session(d / "model.onnx"), "ort int8": session(ort_int8),
                               "dir": d, "int8_dir": q}
        times = {}
        for r in range(a.rounds):
            for name, e in engines.items():
                for b in batches:
                    for eng in ("ort fp32", "ort int8"):
                        times.setdefault((name, eng, b), []).append(time_ort(e[eng], e["feeds"], b, a.seconds))
                out = subprocess.run([a.reco, "bench", "--json", "--quiet", "--threads", "1", "--data", a.data,
                                      "--batch-sizes", a.batch_sizes, "--seconds", str(a.seconds * 2 * len(batches)),
                                      str(e["dir"]), str(e["int8_dir"])], check=True, capture_output=True, text=True)
                for row in json.loads(out.stdout)["results"]:
                    eng = "reco int8" if row["kind"] == "int8" else "reco float"
                    times.setdefault((name, eng, row["batch"]), []).append(row["rows_per_s"])
            print(f"bench_peers: round {r + 1}/{a.rounds} done", file=sys.stderr)
        cpu = json.loads(out.stdout)["cpu"]
        # Accuracy on the whole test split, one AUC implementation for every engine.
        for name, e in engines.items():
            acc = {}
            for eng in ("ort fp32", "ort int8"):
                acc[eng] = float(auc(e[eng].run(["logit"], e["feeds"])[0], labels))
            for eng, d in (("reco float", e["dir"]), ("reco int8", e["int8_dir"])):
                p = pathlib.Path(tmp) / f"{d.name}.parquet"
                subprocess.run([a.reco, "predict", "--quiet", "--model", str(d), "--data", a.data, "--out", str(p)],
                               check=True, stdout=subprocess.DEVNULL)
                acc[eng] = float(auc(pq.read_table(p)["logit"].to_numpy(), labels))
            results[name] = {"auc": acc,
                             "delta_auc": {"ort int8": acc["ort int8"] - acc["ort fp32"],
                                           "reco int8": acc["reco int8"] - acc["reco float"]},
                             "rows_per_s": {f"{eng}@{b}": statistics.median(times[(name, eng, b)])
                                            for eng in ("ort fp32", "ort int8", "reco float", "reco int8")
                                            for b in batches}}
    print(f"cpu: {cpu}, 1 thread, median of {a.rounds} interleaved rounds; ratios vs ORT FP32 at the same batch")
    print("| model | batch | ORT FP32 rows/s | ORT INT8 rows/s (×) | reco float rows/s (×) | reco INT8 rows/s (×) |")
    print("|---|---|---|---|---|---|")
    for name, res in results.items():
        rps = res["rows_per_s"]
        for b in batches:
            base = rps[f"ort fp32@{b}"]
            cells = [f"{rps[f'{eng}@{b}']:,.0f} ({rps[f'{eng}@{b}'] / base:.2f}×)"
                     for eng in ("ort int8", "reco float", "reco int8")]
            print(f"| {name} | {b} | {base:,.0f} | " + " | ".join(cells) + " |")
    print()
    print("| model | AUC ORT FP32 | AUC ORT INT8 (Δ) | AUC reco float | AUC reco INT8 (Δ) |")
    print("|---|---|---|---|---|")
    for name, res in results.items():
        acc, d = res["auc"], res["delta_auc"]
        print(f"| {name} | {acc['ort fp32']:.5f} | {acc['ort int8']:.5f} ({d['ort int8']:+.5f}) | "
              f"{acc['reco float']:.5f} | {acc['reco int8']:.5f} ({d['reco int8']:+.5f}) |")
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps({"cpu": cpu, "results": results}, indent=2))


if __name__ == "__main__":
    main()
