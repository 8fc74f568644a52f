#!/usr/bin/env python3
"""Cross-check a reco-cli float artifact with code we did not write.

1. Every file hash in manifest.json is recomputed with hashlib.
2. model.safetensors is loaded with Python's `safetensors` package; names, dtypes and shapes
   must match the manifest's architecture.
3. The feature spec's preprocessing and the MLP are re-implemented in numpy (float64) and
   compared with `reco-cli predict` on the same rows: max |logit difference| <= 1e-4.
4. AUC and logloss are recomputed in numpy and compared with `reco-cli eval --json`.
For INT8 artifacts (static activations), step 3 instead re-implements the integer pipeline in
numpy from the stored codes, scales and zero points (int64 matmul, float32 requantization with
round-half-to-even, fused ReLU) — an independent reference for our SIMD kernels.
A dot interaction term (`architecture.interaction == "dot"`) is the last MLP input column: the
float64 dot of the user and place embedding rows for float models; for INT8 models the integer
dot of their layer-0 input codes, `sum((u - z) * (p - z))` times `scale²` in float32, quantized
like every other input (static layer 0), else the float32 dot of the dequantized rows summed in
index order.
Every manifest is validated against schemas/manifest.schema.json with the `jsonschema` package.

usage: check_artifact.py --bin target/release/reco-cli --model DIR --data FILE.parquet [--schema-only]
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import jsonschema
import numpy as np
import pyarrow.parquet as pq
from safetensors.numpy import load_file


def fail(msg):
    print(f"check_artifact: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def auc(scores, labels):
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[i : j + 1] = (i + j) / 2.0 + 1.0
        i = j + 1
    r = np.empty(len(s))
    r[order] = ranks
    pos = labels > 0.5
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return (r[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def rows_of(values, c):
    """Embedding rows of raw ids (1 + vocabulary position, 0 when unknown)."""
    if c.get("dtype") == "string":
        # String ids: a dictionary from the manifest's vocabulary (row = 1 + position).
        row = {v: i + 1 for i, v in enumerate(c["vocabulary"])}
        return np.array([row.get(v, 0) for v in values], dtype=np.int64)
    vocab = np.asarray(c["vocabulary"], dtype=np.int64)
    raw = np.asarray(values, dtype=np.int64)
    pos = np.searchsorted(vocab, raw)
    found = (pos < len(vocab)) & (vocab[np.minimum(pos, len(vocab) - 1)] == raw)
    return np.where(found, pos + 1, 0)


def pool(lists, values, c):
    """A multi-valued column's block per row from `values` [rows of the table, dim] (float32):
    the list's rows added one at a time in order (float32), divided by its length for mean
    pooling; zeros for an empty list."""
    out = np.zeros((len(lists), values.shape[1]), dtype=np.float32)
    for r, rows in enumerate(lists):
        if len(rows) == 0:
            continue
        s = values[rows[0]].copy()
        for i in rows[1:]:
            s = (s + values[i]).astype(np.float32)
        if c["bag"]["pooling"] == "mean":
            s = (s / np.float32(len(rows))).astype(np.float32)
        out[r] = s
    return out


def encode(table, spec):
    """Embedding row ids per categorical column (a multi-valued one: a list of row arrays) and
    float32 normalized numeric columns."""
    ids = []
    for c in spec["categorical"]:
        if c.get("bag"):
            ids.append([rows_of(l, c) for l in table.column(c["name"]).to_pylist()])
            continue
        ids.append(rows_of(table.column(c["name"]).to_pylist(), c))
    nums = []
    for n in spec["numeric"]:
        x = table.column(n["name"]).to_numpy().astype(np.float32)
        nums.append((x - np.float32(n["mean"])) * np.float32(1.0 / n["std"]))
    return ids, np.stack(nums, axis=1).astype(np.float32)


def f32(x):
    return np.float32(x)


def dot_f32(u, p):
    """Row-wise dot in float32, one rounded product and sum at a time in index order."""
    s = u[:, 0] * p[:, 0]
    for i in range(1, u.shape[1]):
        s = s + u[:, i] * p[:, i]
    return s.astype(np.float32)


def quantize(x, s, z):
    return np.clip(np.rint(x / f32(s)) + z, 0, 255).astype(np.int64)


def table_codes(t, name, dim):
    """A table's codes [rows, dim]: `codes` (uint8), or `codes4` unpacked (two per byte, the
    lower nibble first; an odd width's last upper nibble is padding)."""
    if f"embedding.{name}.codes" in t:
        return t[f"embedding.{name}.codes"]
    packed = t[f"embedding.{name}.codes4"]
    if packed.shape[1] != (dim + 1) // 2:
        fail(f"embedding.{name}.codes4 has shape {packed.shape}, expected [rows, {(dim + 1) // 2}]")
    both = np.stack([packed & 0x0F, packed >> 4], axis=2).reshape(packed.shape[0], -1)
    return both[:, :dim]


def check_int8(a, manifest, t):
    spec, arch = manifest["feature_spec"], manifest["architecture"]
    table = pq.read_table(a.data)
    ids, num = encode(table, spec)
    n_layers = len(arch["hidden"]) + 1
    qp = {}
    for i in range(n_layers):
        if f"dense.{i}.input_scale" in t:
            qp[i] = (f32(t[f"dense.{i}.input_scale"][0]), int(t[f"dense.{i}.input_zero_point"][0]))
    emb = []
    for c, i, dim in zip(spec["categorical"], ids, arch["embedding_dims"]):
        # fp16 scale and bias; artifacts from before them hold f32 `scale_offset`.
        key = next(f"embedding.{c['name']}.{k}" for k in ("scale_bias", "scale_offset") if f"embedding.{c['name']}.{k}" in t)
        codes, so = table_codes(t, c["name"], dim), t[key].astype(np.float32)
        if so.shape[0] == 1:  # one scale and bias for the whole table (int8-table)
            so = np.broadcast_to(so, (codes.shape[0], 2))
        values = (codes.astype(np.float32) * so[:, :1] + so[:, 1:]).astype(np.float32)
        if not c.get("bag"):
            emb.append(values[i])
            continue
        if 0 in qp:
            # A static integer layer 0 sees each value as its input code: requantized first.
            s, z = qp[0]
            values = (f32(s) * (quantize(values, s, z) - z)).astype(np.float32)
        emb.append(pool(i, values, c))
    # Layer inputs are quantized by division by the scale (as ours and ONNX QuantizeLinear).
    dot = arch.get("interaction", "none") == "dot"
    state = ("f", np.concatenate(emb + [num], axis=1).astype(np.float32))
    if 0 in qp:
        s, z = qp[0]
        codes = quantize(state[1], s, z)
        if dot:
            d = arch["embedding_dims"][0]
            acc = ((codes[:, :d] - z) * (codes[:, d:2 * d] - z)).sum(axis=1)
            v = acc.astype(np.float32) * (f32(s) * f32(s))
            codes = np.concatenate([codes, quantize(v, s, z)[:, None]], axis=1)
        state = ("q", codes, s, z)
    elif dot:
        state = ("f", np.concatenate([state[1], dot_f32(emb[0], emb[1])[:, None]], axis=1))
    for i in range(n_layers):
        hidden = i < n_layers - 1
        if f"dense.{i}.weight_q" in t:
            s, z = qp[i]
            if state[0] == "f":
                x = np.clip(np.rint(state[1] / f32(s)) + z, 0, 255).astype(np.int64)
            else:
                x = state[1]
            w = t[f"dense.{i}.weight_q"].astype(np.int64)
            ws = t[f"dense.{i}.weight_scale"].astype(np.float32)
            offset = t[f"dense.{i}.bias_q"].astype(np.int64) - z * w.sum(axis=1)
            acc = (x @ w.T + offset).astype(np.int32)
            if hidden and (i + 1) in qp:
                s2, z2 = qp[i + 1]
                mult = (f32(s) * ws) / s2
                y = np.rint(acc.astype(np.float32) * mult.astype(np.float32)) + z2
                state = ("q", np.clip(y, z2, 255).astype(np.int64), s2, z2)
            else:
                y = acc.astype(np.float32) * (f32(s) * ws).astype(np.float32)
                state = ("f", np.maximum(y, 0) if hidden else y)
        else:
            x = state[1] if state[0] == "f" else (f32(state[2]) * (state[1] - state[3])).astype(np.float32)
            y = x @ t[f"dense.{i}.weight"].T + t[f"dense.{i}.bias"]
            state = ("f", (np.maximum(y, 0) if hidden else y).astype(np.float32))
    ref = state[1][:, 0].astype(np.float64)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "p.parquet")
        subprocess.run([a.bin, "predict", "--model", a.model, "--data", a.data, "--out", out, "--quiet"], check=True, stdout=subprocess.DEVNULL)
        ours = pq.read_table(out).column("logit").to_numpy().astype(np.float64)
    diff = np.abs(ours - ref)
    # Requantization can land on the other side of a rounding tie only through float32
    # association order; allow that on a handful of rows, never a systematic difference.
    bad = int((diff > 1e-4).sum())
    if bad > max(1, len(ref) // 1000):
        fail(f"INT8 logits differ from the numpy integer reference on {bad} of {len(ref)} rows (max {diff.max():.3g})")
    print(f"check_artifact: OK {a.model}: INT8 numpy reference, {len(ref)} rows, "
          f"{bad} rows off by > 1e-4, max |dlogit| {diff.max():.2e}, float layers {manifest['quantization']['float_layers']}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--schema-only", action="store_true")
    a = ap.parse_args()

    manifest = json.load(open(os.path.join(a.model, "manifest.json")))
    schema_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "schemas", "manifest.schema.json")
    try:
        jsonschema.validate(manifest, json.load(open(schema_path)))
    except jsonschema.ValidationError as e:
        fail(f"manifest.json does not match schemas/manifest.schema.json: {e.message}")
    for name, entry in manifest["files"].items():
        h = hashlib.sha256(open(os.path.join(a.model, name), "rb").read()).hexdigest()
        if h != entry["sha256"]:
            fail(f"{name}: sha256 {h} != manifest {entry['sha256']}")

    tensors = load_file(os.path.join(a.model, "model.safetensors"))
    if manifest.get("quantization") is not None:
        if manifest["quantization"]["dynamic_activations"] or a.schema_only:
            print(f"check_artifact: OK {a.model}: schema, hashes, {len(tensors)} tensors loaded by safetensors")
            return
        return check_int8(a, manifest, tensors)
    if a.schema_only:
        print(f"check_artifact: OK {a.model}: schema, hashes, {len(tensors)} tensors loaded by safetensors "
              f"({sorted({str(t.dtype) for t in tensors.values()})})")
        return
    spec, arch = manifest["feature_spec"], manifest["architecture"]
    dot = arch.get("interaction", "none") == "dot"
    dims = [sum(arch["embedding_dims"]) + len(spec["numeric"]) + int(dot)] + arch["hidden"] + [1]
    for c, d in zip(spec["categorical"], arch["embedding_dims"]):
        t = tensors[f"embedding.{c['name']}"]
        if t.dtype != np.float32 or t.shape != (len(c["vocabulary"]) + 1, d):
            fail(f"embedding.{c['name']} is {t.dtype} {t.shape}")
    for i in range(len(dims) - 1):
        w, b = tensors[f"dense.{i}.weight"], tensors[f"dense.{i}.bias"]
        if w.shape != (dims[i + 1], dims[i]) or b.shape != (dims[i + 1],):
            fail(f"dense.{i} shapes {w.shape} {b.shape}, expected ({dims[i + 1]}, {dims[i]})")

    table = pq.read_table(a.data)
    ids, num = encode(table, spec)
    parts = [pool(i, tensors[f"embedding.{c['name']}"], c).astype(np.float64) if c.get("bag")
             else tensors[f"embedding.{c['name']}"].astype(np.float64)[i] for c, i in zip(spec["categorical"], ids)]
    extra = [(parts[0] * parts[1]).sum(axis=1, keepdims=True)] if dot else []
    h = np.concatenate(parts + [num.astype(np.float64)] + extra, axis=1)
    for i in range(len(dims) - 1):
        h = h @ tensors[f"dense.{i}.weight"].astype(np.float64).T + tensors[f"dense.{i}.bias"]
        if i < len(dims) - 2:
            h = np.maximum(h, 0.0)
    ref = h[:, 0]

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "p.parquet")
        subprocess.run([a.bin, "predict", "--model", a.model, "--data", a.data, "--out", out, "--quiet"], check=True, stdout=subprocess.DEVNULL)
        pred = pq.read_table(out)
        ours = pred.column("logit").to_numpy().astype(np.float64)
        prob = pred.column("probability").to_numpy().astype(np.float64)
        rows = pred.column("row").to_numpy()
    if len(ours) != len(ref) or not np.array_equal(rows, np.arange(len(ref))):
        fail("predict rows are not one per input row in input order")
    diff = np.abs(ours - ref).max()
    if diff > 1e-4:
        fail(f"max |logit - numpy| = {diff:.3g} > 1e-4")
    pdiff = np.abs(prob - 1.0 / (1.0 + np.exp(-ref))).max()
    if pdiff > 1e-5:
        fail(f"max |probability - numpy| = {pdiff:.3g} > 1e-5")

    ev = json.loads(
        subprocess.run([a.bin, "eval", a.model, "--data", a.data, "--json", "--quiet"], check=True,
                       capture_output=True, text=True).stdout
    )["models"][0]
    y = table.column(spec["label"]).to_numpy().astype(np.float64)
    ref_auc = auc(ref, y)
    p = np.clip(1.0 / (1.0 + np.exp(-ref)), 1e-7, 1 - 1e-7)
    ref_ll = float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))
    if abs(ev["auc"] - ref_auc) > 1e-4 or abs(ev["logloss"] - ref_ll) > 1e-4:
        fail(f"eval auc/logloss {ev['auc']:.6f}/{ev['logloss']:.6f} vs numpy {ref_auc:.6f}/{ref_ll:.6f}")
    print(f"check_artifact: OK {a.model}: {len(ref)} rows, {len(tensors)} tensors, "
          f"max |dlogit| {diff:.2e}, auc {ref_auc:.4f}")


if __name__ == "__main__":
    main()
