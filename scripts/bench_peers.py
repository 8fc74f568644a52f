#!/usr/bin/env python3
"""reco-cli against ONNX Runtime and LiteRT on the same models, one thread, same machine, one run.

For each float artifact DIR (with its INT8 sibling DIR-int8), two scopes:

End to end (raw feature columns to logits):
- ORT FP32: our FP32 export (DIR/model.onnx, preprocessing in the graph);
- ORT INT8: onnxruntime.quantization.quantize_static on that export, calibrated on the same
  calibration rows that `reco-cli quantize` used: QDQ format, per-channel, S8S8 (int8
  activations and weights), MinMax calibration (their defaults otherwise);
- reco-cli float (DIR) and INT8 (DIR-int8) via `reco-cli bench --json --threads 1`.

Dense layers only (the MLP input, embedding rows and normalized numbers, built before timing):
- ORT FP32: the float layers as an ONNX graph of Gemm + Relu;
- LiteRT FP32 and INT8 (XNNPACK, LiteRT's default CPU delegate): the float layers as TFLite
  flatbuffers written by scripts/litert_mlp.py (FULLY_CONNECTED with fused ReLU; INT8 in the
  converter's full-integer form, per-channel weights, calibrated on the same calibration rows);
- reco-cli float and INT8 via `reco-cli bench --scope dense`.

Our exported TFLite models (`reco-cli export --format tflite`, float and INT8) on LiteRT
(XNNPACK), the whole model from row indices (the id lookup is outside a TFLite graph; the
inputs are built from the inputs file before timing), beside the hand-built dense graph:
LiteRT's own converter output would need TensorFlow.

Measurements are interleaved: each round times every engine at every batch size, each
cycling through the same batches (as many as `reco-cli bench` uses: largest batch / batch,
1 to 64); within a round each engine's figure is the best of a few short slices (as `reco-cli bench` keeps its
best slice), and the reported figure is the median over rounds. ORT and LiteRT are called
from Python: the script measures that per-call cost on a one-value model of each and prints
it, so the small-batch figures can be read with it in mind.

Accuracy: AUC of each engine on the whole test split (one numpy AUC for all), each INT8
engine's ΔAUC against its float parent, and the largest |Δlogit| between LiteRT FP32 and
`reco-cli predict` (the same network, so it must be float rounding only).

Usage: bench_peers.py --reco BIN --data test.parquet --calibration calibration.parquet \
       [--batch-sizes 64,1024] [--rounds 5] [--seconds 0.4] [--json OUT] DIR...
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
import onnx
import onnxruntime as ort
import pyarrow.parquet as pq
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from ai_edge_litert.interpreter import Interpreter
from safetensors.numpy import load_file

import litert_mlp
from check_artifact import auc, encode  # one AUC and one encoding for every script
from check_tflite import graph_inputs  # the exported TFLite model's inputs, from its inputs file

E2E = ("ort fp32", "ort int8", "reco float", "reco int8")
DENSE = ("ort fp32", "litert fp32", "litert int8", "reco float", "reco int8")


def feeds_of(table, spec):
    f = {c["name"]: table[c["name"]].to_numpy().astype(np.int64) for c in spec["categorical"]}
    f.update({n["name"]: table[n["name"]].to_numpy().astype(np.float32) for n in spec["numeric"]})
    return f


def mlp_input(table, spec, weights):
    """The float MLP input [rows, Σ dims + numeric (+ 1)]: embedding rows, then normalized
    numbers, then, when layer 0 takes one more column, the user·place dot interaction (float32,
    one product and one sum at a time in index order, as reco-cli computes it)."""
    ids, num = encode(table, spec)
    emb = [weights[f"embedding.{c['name']}"][i] for c, i in zip(spec["categorical"], ids)]
    extra = []
    if weights["dense.0.weight"].shape[1] == sum(e.shape[1] for e in emb) + num.shape[1] + 1:
        dot = emb[0][:, 0] * emb[1][:, 0]
        for k in range(1, emb[0].shape[1]):
            dot = dot + emb[0][:, k] * emb[1][:, k]
        extra = [dot[:, None]]
    return np.ascontiguousarray(np.concatenate(emb + [num] + extra, axis=1).astype(np.float32))


class Reader(CalibrationDataReader):
    def __init__(self, feeds, batch=256):
        n = len(next(iter(feeds.values())))
        self.batches = [{k: v[i:i + batch] for k, v in feeds.items()} for i in range(0, n, batch)]
        self.it = iter(self.batches)

    def get_next(self):
        return next(self.it, None)


class ExportRunner:
    """A model `reco-cli export --format tflite` wrote, on one LiteRT thread (XNNPACK): every
    input resized to a batch size on first use of that size; returns `logit`."""

    def __init__(self, path):
        self.interp = Interpreter(model_path=str(path), num_threads=1)
        self.inputs = {d["name"]: d["index"] for d in self.interp.get_input_details()}
        self.output = next(d["index"] for d in self.interp.get_output_details() if d["name"] == "logit")
        self.batch = None

    def __call__(self, feeds):
        n = len(next(iter(feeds.values())))
        if n != self.batch:
            for k, v in feeds.items():
                self.interp.resize_tensor_input(self.inputs[k], list(v.shape), strict=True)
            self.interp.allocate_tensors()
            self.batch = n
        for k, v in feeds.items():
            self.interp.set_tensor(self.inputs[k], v)
        self.interp.invoke()
        return self.interp.get_tensor(self.output)


def session(model):
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.inter_op_num_threads = 1
    o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), o,
                                providers=["CPUExecutionProvider"])


def dense_onnx(layers):
    """The float layers as an ONNX graph: Gemm (transB) + Relu, input `x` [batch, d]."""
    nodes, inits, prev = [], [], "x"
    for i, (w, b) in enumerate(layers):
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [f"h{i}"], transB=1))
        prev = f"h{i}"
        if i < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    graph = helper.make_graph(nodes, "dense", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", layers[0][0].shape[1]])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["batch", layers[-1][0].shape[0]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString(), prev


def best_rate(call, batches, batch, seconds, slices=4):
    """Best rows/s over `slices` timed slices of `seconds / slices` each, cycling `batches`."""
    call(batches[0])  # warm up (and let LiteRT resize to this batch size)
    best, i = 0.0, 0
    for _ in range(slices):
        rows, t0 = 0, time.perf_counter()
        while True:
            call(batches[i % len(batches)])
            rows += batch
            i += 1
            el = time.perf_counter() - t0
            if el >= seconds / slices:
                break
        best = max(best, rows / el)
    return best


def slices_of(arrays, batch, largest):
    """Consecutive slices of `batch` rows of every array in `arrays` (a dict), as many as
    `reco-cli bench` cycles through (largest batch / batch, 1 to 64), so every engine sees
    the same working set."""
    count = min(64, max(1, largest // batch))
    n = len(next(iter(arrays.values())))
    if n < batch * count:
        sys.exit(f"bench_peers: --data has {n} rows, batch {batch} needs {batch * count}")
    return [{k: v[i * batch:(i + 1) * batch] for k, v in arrays.items()} for i in range(count)]


def call_overhead_us(seconds=0.5):
    """µs per call from Python of a one-value ORT and LiteRT model (the fixed cost per call)."""
    w = [(np.ones((1, 1), np.float32), np.zeros(1, np.float32))]
    onnx_bytes, out = dense_onnx(w)
    sess, lite, x = session(onnx_bytes), litert_mlp.Runner(litert_mlp.fp32_model(w)), np.zeros((1, 1), np.float32)
    res = {}
    for name, call in (("ort", lambda: sess.run([out], {"x": x})), ("litert", lambda: lite(x))):
        call()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            call()
            n += 1
        res[name] = 1e6 * (time.perf_counter() - t0) / n
    return res


def reco_bench(a, e, scope, batches):
    out = subprocess.run([a.reco, "bench", "--json", "--quiet", "--threads", "1", "--scope", scope, "--data", a.data,
                          "--batch-sizes", ",".join(map(str, batches)), "--seconds", str(a.seconds * 2 * len(batches)),
                          str(e["dir"]), str(e["int8_dir"])], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def prepare(a, d, test, cal_table, tmp):
    """Every engine of one model, with its inputs."""
    q = pathlib.Path(str(d) + "-int8")
    manifest = json.loads((d / "manifest.json").read_text())
    spec = manifest["feature_spec"]
    for m in (d, q):
        if not (m / "model.onnx").exists():
            subprocess.run([a.reco, "export", "--quiet", "--model", str(m)], check=True, stdout=subprocess.DEVNULL)
    feeds, cal = feeds_of(test, spec), feeds_of(cal_table, spec)
    ort_int8 = pathlib.Path(tmp) / f"{d.name}.ort-int8.onnx"
    quantize_static(str(d / "model.onnx"), str(ort_int8), Reader(cal), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    weights = load_file(str(d / "model.safetensors"))
    layers = litert_mlp.dense_layers(weights)
    x, x_cal = mlp_input(test, spec, weights), mlp_input(cal_table, spec, weights)
    dense_bytes, dense_out = dense_onnx(layers)
    dense_sess = session(dense_bytes)
    lite32, lite8 = (litert_mlp.Runner(litert_mlp.fp32_model(layers)),
                     litert_mlp.Runner(litert_mlp.int8_model(layers, x_cal)))
    exported = {}
    for eng, m in (("export fp32", d), ("export int8", q)):
        path = pathlib.Path(tmp) / f"{m.name}.tflite"
        subprocess.run([a.reco, "export", "--quiet", "--model", str(m), "--format", "tflite", "--out", str(path)],
                       check=True, stdout=subprocess.DEVNULL)
        exported[eng] = ExportRunner(path)
    doc = json.loads(pathlib.Path(str(path) + ".inputs.json").read_text())
    return {"dir": d, "int8_dir": q, "labels": test[spec["label"]].to_numpy(), "feeds": feeds, "x": x,
            "export": exported, "export_feeds": graph_inputs(doc, test),
            "e2e": {"ort fp32": (session(d / "model.onnx"), ["logit"]), "ort int8": (session(ort_int8), ["logit"])},
            "dense": {"ort fp32": lambda b: dense_sess.run([dense_out], {"x": b["x"]}),
                      "litert fp32": lambda b: lite32(b["x"]), "litert int8": lambda b: lite8(b["x"])},
            "lite": {"litert fp32": lite32, "litert int8": lite8}}


def one_round(a, engines, batches, times):
    for name, e in engines.items():
        for b in batches:
            feed_slices, x_slices = slices_of(e["feeds"], b, max(batches)), slices_of({"x": e["x"]}, b, max(batches))
            for eng, (sess, out) in e["e2e"].items():
                times.setdefault(("e2e", name, eng, b), []).append(
                    best_rate(lambda f, s=sess, o=out: s.run(o, f), feed_slices, b, a.seconds))
            for eng, call in e["dense"].items():
                times.setdefault(("dense", name, eng, b), []).append(best_rate(call, x_slices, b, a.seconds))
            export_slices = slices_of(e["export_feeds"], b, max(batches))
            for eng, run in e["export"].items():
                times.setdefault(("export", name, eng, b), []).append(best_rate(run, export_slices, b, a.seconds))
        for scope, key in (("end-to-end", "e2e"), ("dense", "dense")):
            report = reco_bench(a, e, scope, batches)
            for row in report["results"]:
                eng = "reco int8" if row["kind"] == "int8" else "reco float"
                times.setdefault((key, name, eng, row["batch"]), []).append(row["rows_per_s"])
    return report["cpu"]


def accuracy(a, e, tmp):
    acc = {}
    for eng, (sess, out) in e["e2e"].items():
        acc[eng] = float(auc(sess.run(out, e["feeds"])[0], e["labels"]))
    logits = {}
    for eng, d in (("reco float", e["dir"]), ("reco int8", e["int8_dir"])):
        p = pathlib.Path(tmp) / f"{d.name}.parquet"
        subprocess.run([a.reco, "predict", "--quiet", "--model", str(d), "--data", a.data, "--out", str(p)],
                       check=True, stdout=subprocess.DEVNULL)
        logits[eng] = pq.read_table(p)["logit"].to_numpy()
        acc[eng] = float(auc(logits[eng], e["labels"]))
    for eng, run in e["lite"].items():
        logits[eng] = np.concatenate([run(e["x"][i:i + 1024]) for i in range(0, len(e["x"]), 1024)])
        acc[eng] = float(auc(logits[eng], e["labels"]))
    n = len(e["labels"])
    for eng, run in e["export"].items():
        parts = [run({k: v[i:i + 1024] for k, v in e["export_feeds"].items()}).copy() for i in range(0, n, 1024)]
        acc[eng] = float(auc(np.concatenate(parts), e["labels"]))
    return acc, float(np.abs(logits["litert fp32"] - logits["reco float"]).max())


def print_tables(cpu, overhead, results, batches, rounds):
    print(f"cpu: {cpu}, 1 thread, median of {rounds} interleaved rounds (each the best of its slices)")
    print(f"Python call overhead per call (a one-value model): ORT {overhead['ort']:.1f} µs, "
          f"LiteRT {overhead['litert']:.1f} µs")
    print()
    print("Dense layers only (rows/s; × against LiteRT FP32 and, for INT8, ORT FP32 and LiteRT INT8):")
    print("| model | batch | ORT FP32 | LiteRT FP32 | LiteRT INT8 | reco float (× LiteRT FP32) | "
          "reco INT8 (× ORT FP32, × LiteRT INT8) |")
    print("|---|---|---|---|---|---|---|")
    for name, res in results.items():
        r = res["dense_rows_per_s"]
        for b in batches:
            g = lambda eng: r[f"{eng}@{b}"]
            print(f"| {name} | {b} | {g('ort fp32'):,.0f} | {g('litert fp32'):,.0f} | {g('litert int8'):,.0f} | "
                  f"{g('reco float'):,.0f} ({g('reco float') / g('litert fp32'):.2f}×) | {g('reco int8'):,.0f} "
                  f"({g('reco int8') / g('ort fp32'):.2f}×, {g('reco int8') / g('litert int8'):.2f}×) |")
    print()
    print("End to end, raw columns to logits (rows/s; × against ORT FP32 at the same batch):")
    print("| model | batch | ORT FP32 | ORT INT8 (×) | reco float (×) | reco INT8 (×) |")
    print("|---|---|---|---|---|---|")
    for name, res in results.items():
        r = res["e2e_rows_per_s"]
        for b in batches:
            base = r[f"ort fp32@{b}"]
            cells = [f"{r[f'{eng}@{b}']:,.0f} ({r[f'{eng}@{b}'] / base:.2f}×)" for eng in E2E[1:]]
            print(f"| {name} | {b} | {base:,.0f} | " + " | ".join(cells) + " |")
    print()
    print("Our exported TFLite model (whole model from row indices: GATHER, CONCATENATION, FULLY_CONNECTED)")
    print("beside the hand-built dense graph above (LiteRT's converter output needs TensorFlow), rows/s:")
    print("| model | batch | export FP32 | dense FP32 | export INT8 | dense INT8 | AUC export FP32 / INT8 |")
    print("|---|---|---|---|---|---|---|")
    for name, res in results.items():
        r, dn, c = res["export_rows_per_s"], res["dense_rows_per_s"], res["auc"]
        for b in batches:
            print(f"| {name} | {b} | {r[f'export fp32@{b}']:,.0f} | {dn[f'litert fp32@{b}']:,.0f} | "
                  f"{r[f'export int8@{b}']:,.0f} | {dn[f'litert int8@{b}']:,.0f} | "
                  f"{c['export fp32']:.5f} / {c['export int8']:.5f} |")
    print()
    print("| model | AUC ORT FP32 | ORT INT8 (Δ) | reco float | reco INT8 (Δ) | LiteRT FP32 | LiteRT INT8 (Δ) | "
          "max |Δlogit| LiteRT FP32 vs reco |")
    print("|---|---|---|---|---|---|---|---|")
    for name, res in results.items():
        c = res["auc"]
        print(f"| {name} | {c['ort fp32']:.5f} | {c['ort int8']:.5f} ({c['ort int8'] - c['ort fp32']:+.5f}) | "
              f"{c['reco float']:.5f} | {c['reco int8']:.5f} ({c['reco int8'] - c['reco float']:+.5f}) | "
              f"{c['litert fp32']:.5f} | {c['litert int8']:.5f} ({c['litert int8'] - c['litert fp32']:+.5f}) | "
              f"{res['litert_fp32_max_abs_dlogit']:.1e} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reco", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--calibration", required=True)
    ap.add_argument("--batch-sizes", default="64,1024")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.4, help="per engine, batch size and round")
    ap.add_argument("--json")
    ap.add_argument("models", nargs="+")
    a = ap.parse_args()
    batches = [int(b) for b in a.batch_sizes.split(",")]
    test, cal_table = pq.read_table(a.data), pq.read_table(a.calibration)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        engines = {pathlib.Path(d).name: prepare(a, pathlib.Path(d), test, cal_table, tmp) for d in a.models}
        times = {}
        for r in range(a.rounds):
            cpu = one_round(a, engines, batches, times)
            print(f"bench_peers: round {r + 1}/{a.rounds} done", file=sys.stderr)
        overhead = call_overhead_us()
        for name, e in engines.items():
            acc, max_dlogit = accuracy(a, e, tmp)
            results[name] = {
                "auc": acc, "litert_fp32_max_abs_dlogit": max_dlogit,
                "e2e_rows_per_s": {f"{eng}@{b}": statistics.median(times[("e2e", name, eng, b)]) for eng in E2E for b in batches},
                "dense_rows_per_s": {f"{eng}@{b}": statistics.median(times[("dense", name, eng, b)])
                                     for eng in DENSE for b in batches},
                "export_rows_per_s": {f"{eng}@{b}": statistics.median(times[("export", name, eng, b)])
                                      for eng in ("export fp32", "export int8") for b in batches},
            }
    print_tables(cpu, overhead, results, batches, a.rounds)
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps({"cpu": cpu, "python_call_overhead_us": overhead, "results": results},
                                                   indent=2))


if __name__ == "__main__":
    main()
