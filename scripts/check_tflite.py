"""LiteRT's own interpreter (ai-edge-litert, no TensorFlow) on a model `reco-cli export --format
tflite` wrote, against `reco-cli predict` on the same rows.

The graph's inputs are built here from the documented inputs file beside the model alone
(`<model>.tflite.inputs.json`): each categorical id's row is its position in the vocabulary + 1
(0 for any other id), each numeric column its raw value as `[rows, 1]`. The model is run at
batch 1 (the first rows) and over all rows in batches of `--batch`, with the default op
resolver (XNNPACK) and with LiteRT's builtin kernels alone.

- float models: max |Δlogit| <= 1e-5 (the issue's bound);
- INT8 models: TFLite's integer requantization rounds differently from ours (a fixed-point
  multiplier against our float one), so a hidden activation may land one code away: the
  largest |Δlogit| must stay within one quantization step of every last-hidden input,
  `s_in · Σ|w|` of the output layer; the count of rows that differ at all is reported;
- both: AUC (from the file's labels) equal to ours within 1e-4 (`--auc-tol`: per-tensor weight
  scales re-round the weights, so that model is not exactly ours).

Prints one line per resolver; exits 1 on a failed check.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from check_artifact import auc  # one AUC for every script


def graph_inputs(doc, table):
    """Every graph input, by name, from the raw columns and the inputs file."""
    out = {}
    for spec in doc["inputs"]:
        col = table.column(spec["name"]).to_pylist()
        if spec["tensor_type"] == "int32":
            rows = {v: i + 1 for i, v in enumerate(spec["vocabulary"])}
            out[spec["name"]] = np.array([rows.get(v, 0) for v in col], dtype=np.int32)
        else:
            out[spec["name"]] = np.array(col, dtype=np.float32).reshape(-1, 1)
    return out


def run(model, feeds, resolver, batch):
    """`logit` for every row, in batches of `batch`."""
    interp = Interpreter(model_path=str(model), experimental_op_resolver_type=resolver)
    details = {d["name"]: d for d in interp.get_input_details()}
    out = {d["name"]: d["index"] for d in interp.get_output_details()}
    n = len(next(iter(feeds.values())))
    logits, shape = [], None
    for start in range(0, n, batch):
        part = {k: v[start : start + batch] for k, v in feeds.items()}
        m = len(next(iter(part.values())))
        if shape != m:
            for k, v in part.items():
                interp.resize_tensor_input(details[k]["index"], list(v.shape), strict=True)
            interp.allocate_tensors()
            shape = m
        for k, v in part.items():
            interp.set_tensor(details[k]["index"], v)
        interp.invoke()
        logits.append(interp.get_tensor(out["logit"]).copy())
        p = interp.get_tensor(out["probability"])
        if not np.allclose(p, 1 / (1 + np.exp(-logits[-1].astype(np.float64))), atol=1e-6):
            raise SystemExit(f"{model}: probability is not sigmoid(logit)")
    return np.concatenate(logits)


def one_step_bound(model_dir):
    """One input code of the output layer moved in every position: `s_in · Σ|w_f|`."""
    from safetensors.numpy import load_file

    manifest = json.loads((Path(model_dir) / "manifest.json").read_text())
    t = load_file(str(Path(model_dir) / "model.safetensors"))
    last = len(manifest["architecture"]["hidden"])
    w = t[f"dense.{last}.weight_q"].astype(np.float64) * t[f"dense.{last}.weight_scale"].astype(np.float64)[:, None]
    s_in = float(t[f"dense.{last}.input_scale"][0])
    return s_in * float(np.abs(w).sum())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reco", required=True)
    ap.add_argument("--model", required=True, help="the artifact directory")
    ap.add_argument("--tflite", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--auc-tol", type=float, default=1e-4,
                    help="largest |dAUC| (per-tensor weight scales re-round the weights: not our model exactly)")
    a = ap.parse_args()
    doc = json.loads(Path(a.tflite + ".inputs.json").read_text())
    table = pq.read_table(a.data)
    feeds = graph_inputs(doc, table)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "p.parquet"
        cmd = [a.reco, "predict", "--quiet", "--model", a.model, "--data", a.data, "--out", str(out)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        ours = pq.read_table(out).column("logit").to_numpy().astype(np.float32)
    labels = np.array(table.column(json.loads((Path(a.model) / "manifest.json").read_text())["feature_spec"]["label"]).to_pylist()) > 0.5
    int8 = doc["graph"].startswith("tflite-int8")
    bound = one_step_bound(a.model) if int8 else 1e-5
    ok = True
    for name, resolver in [("xnnpack", OpResolverType.AUTO), ("builtin", OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)]:
        first = run(a.tflite, {k: v[:1] for k, v in feeds.items()}, resolver, 1)
        got = run(a.tflite, feeds, resolver, a.batch)
        diff = np.abs(got.astype(np.float64) - ours)
        d_auc = abs(auc(got, labels) - auc(ours, labels))
        line = (f"check_tflite {Path(a.tflite).name} [{doc['graph']}, {name}]: {len(ours)} rows, max |dlogit| {diff.max():.3g} "
                f"(bound {bound:.3g}), {int((diff > 0).sum())} rows differ at all, {int((diff > 1e-5).sum())} by more than 1e-5, |dAUC| {d_auc:.2e}, batch 1 |dlogit| {abs(first[0] - ours[0]):.3g}")
        print(line)
        if not (diff.max() <= bound and abs(first[0] - ours[0]) <= bound and d_auc <= a.auc_tol):
            print(f"check_tflite: FAILED ({name})", file=sys.stderr)
            ok = False
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
