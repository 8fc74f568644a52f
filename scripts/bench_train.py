#!/usr/bin/env python3
"""Training speed and quality: `reco-cli train` against the same network in PyTorch.

Both train the teacher's architecture (one embedding table per categorical input, the
numeric inputs, an MLP with ReLU, one logit) on the same prepared feature files, encoded the
way the runtime encodes them (ids: 1 + their position in the spec's sorted vocabulary, 0 when
unknown; numerics: (x - mean) * (1 / std) in f32), with the same optimizer (AdamW, the
recipe's learning rate, weight decay and per-epoch decay), batch size and epoch count,
no early stopping. The runs are interleaved: for each round, thread count and batch size,
reco-cli then PyTorch (PyTorch first in odd rounds).

Measured per run: training rows/s (forward + backward + optimizer step over every epoch;
reco-cli's own figure, PyTorch timed around its loop, validation excluded in both) and the
validation AUC of every epoch.

    python scripts/bench_train.py --features artifacts/quickstart/features \
        --recipe recipes/quickstart.toml [--epochs 2] [--batches 512,1024,4096] \
        [--threads 1,2] [--rounds 1] [--json results.json]

It needs torch (not in scripts/requirements.txt: PyPI's Linux wheel is 906 MB and pulls
about 2.5 GB of CUDA libraries even for CPU use). Not run by CI.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib

import numpy as np
import pyarrow.parquet as pq


def encode(path, spec):
    """The model inputs of a feature file as the runtime encodes them, and its labels."""
    t = pq.read_table(path)
    ids = []
    for c in spec["categorical"]:
        vocab = c["vocabulary"]
        col = t.column(c["name"]).to_numpy(zero_copy_only=False)
        if vocab and isinstance(vocab[0], str):
            index = {v: i + 1 for i, v in enumerate(vocab)}
            ids.append(np.array([index.get(v, 0) for v in col], dtype=np.int64))
        else:
            v = np.asarray(vocab, dtype=np.int64)
            col = col.astype(np.int64)
            at = np.searchsorted(v, col)
            found = (at < len(v)) & (v[np.minimum(at, len(v) - 1)] == col)
            ids.append(np.where(found, at + 1, 0).astype(np.int64))
    nums = []
    for n in spec["numeric"]:
        x = t.column(n["name"]).to_numpy().astype(np.float32)
        mean, inv = np.float32(n["mean"]), np.float32(1.0 / n["std"])
        nums.append((x - mean) * inv)
    numeric = np.stack(nums, axis=1) if nums else np.zeros((t.num_rows, 0), np.float32)
    label = t.column(spec.get("label", "label")).to_numpy().astype(np.float32)
    return np.stack(ids, axis=1), numeric.astype(np.float32), label


def auc(scores, labels):
    """Mann-Whitney AUC, ties counting one half (as reco-cli's)."""
    order = np.argsort(scores, kind="stable")
    _, start, counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks = np.empty(len(scores), np.float64)
    ranks[order] = np.repeat(start + (counts - 1) / 2.0 + 1.0, counts)
    pos = labels > 0.5
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return repr(v)


def write_recipe(base, train, path):
    """`base` (a parsed recipe) with `train` as its [train] table."""
    tables = {k: v for k, v in base.items() if isinstance(v, dict)}
    tables["train"] = train
    lines = [f"{k} = {toml_value(v)}" for k, v in base.items() if not isinstance(v, dict)]
    for section, table in tables.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def run_reco(args, base, train, threads, work):
    """`reco-cli train` on the features; its summary and the teacher's manifest."""
    out = os.path.join(work, f"reco-{threads}-{train['batch_size']}")
    os.makedirs(out, exist_ok=True)
    link = os.path.join(out, "features")
    if not os.path.exists(link):
        os.symlink(os.path.abspath(args.features), link)
    recipe = os.path.join(out, "recipe.toml")
    write_recipe(base, train, recipe)
    cmd = [args.reco, "train", "--recipe", recipe, "--out", out, "--threads", str(threads), "--json", "-q"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"reco-cli train failed: {p.stderr.strip()}")
    summary = json.loads(p.stdout)
    with open(os.path.join(out, "teacher", "manifest.json")) as f:
        manifest = json.load(f)
    return summary, manifest


def run_torch(data, spec, arch, train, threads, seed):
    """The same network and optimizer in PyTorch; rows/s over the epochs and AUC per epoch."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    (ids, num, y), (vids, vnum, vy) = data
    dims = arch["embedding_dims"]
    tables = torch.nn.ModuleList(
        torch.nn.Embedding(len(c["vocabulary"]) + 1, d) for c, d in zip(spec["categorical"], dims)
    )
    for t in tables:
        torch.nn.init.normal_(t.weight, 0.0, 0.05)
    dot = arch.get("interaction", "none") == "dot"  # the user·place dot after the numbers
    width = sum(dims) + num.shape[1] + int(dot)
    layers = []
    for h in arch["hidden"]:
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
        width = h
    mlp = torch.nn.Sequential(*layers, torch.nn.Linear(width, 1))
    params = list(tables.parameters()) + list(mlp.parameters())
    # burn's AdamW defaults: betas (0.9, 0.999), epsilon 1e-5, decoupled weight decay.
    opt = torch.optim.AdamW(params, lr=train["learning_rate"], weight_decay=train["weight_decay"], eps=1e-5)

    def forward(i, x):
        emb = [t(i[:, k]) for k, t in enumerate(tables)]
        extra = [(emb[0] * emb[1]).sum(1, keepdim=True)] if dot else []
        return mlp(torch.cat(emb + [x] + extra, 1)).squeeze(1)

    ids_t, num_t, y_t = torch.from_numpy(ids), torch.from_numpy(num), torch.from_numpy(y)
    vids_t, vnum_t = torch.from_numpy(vids), torch.from_numpy(vnum)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    b, n, secs, aucs = train["batch_size"], len(y), 0.0, []
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(train["epochs"]):
        perm = torch.randperm(n, generator=gen)
        start = time.perf_counter()
        for s in range(0, n, b):
            idx = perm[s : s + b]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(forward(ids_t[idx], num_t[idx]), y_t[idx])
            loss.backward()
            opt.step()
        secs += time.perf_counter() - start
        for g in opt.param_groups:
            g["lr"] *= train["lr_decay"]
        with torch.no_grad():
            z = torch.cat([forward(vids_t[s : s + 65536], vnum_t[s : s + 65536]) for s in range(0, len(vy), 65536)])
        aucs.append(auc(z.numpy(), vy))
    return n * train["epochs"] / secs, aucs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--features", required=True, help="a prepared features directory")
    ap.add_argument("--recipe", required=True, help="the recipe whose [train] settings to use")
    ap.add_argument("--reco", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "reco-cli"))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batches", default="512,1024,4096")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    with open(args.recipe, "rb") as f:
        base = tomllib.load(f)
    with open(os.path.join(args.features, "feature_spec.json")) as f:
        spec = json.load(f)
    data = (encode(os.path.join(args.features, "train.parquet"), spec),
            encode(os.path.join(args.features, "valid.parquet"), spec))
    results = []
    with tempfile.TemporaryDirectory() as work:
        for rnd in range(args.rounds):
            for threads in [int(t) for t in args.threads.split(",")]:
                for batch in [int(b) for b in args.batches.split(",")]:
                    defaults = {"learning_rate": 3e-3, "weight_decay": 1e-4, "lr_decay": 0.5}
                    train = dict(defaults, **base.get("train", {}))
                    train.update(epochs=args.epochs, batch_size=batch, patience=args.epochs + 1)
                    order = ["reco", "torch"] if rnd % 2 == 0 else ["torch", "reco"]
                    row = {"round": rnd, "threads": threads, "batch": batch}
                    arch = None
                    for who in order:
                        if who == "reco":
                            summary, manifest = run_reco(args, base, train, threads, work)
                            arch = manifest["architecture"]
                            row["reco_rows_per_s"] = summary["rows_per_s"]
                            row["reco_valid_auc"] = summary["valid_auc"]
                        else:
                            if arch is None:
                                _, manifest = run_reco(args, base, dict(train, epochs=1), threads, work)
                                arch = manifest["architecture"]
                            rps, aucs = run_torch(data, spec, arch, train, threads, seed=base.get("seed", 0))
                            row["torch_rows_per_s"], row["torch_valid_auc"] = rps, aucs
                    results.append(row)
                    print(json.dumps(row), file=sys.stderr)
    print("| threads | batch | reco-cli rows/s | PyTorch rows/s | ratio | reco-cli valid AUC (last) | PyTorch valid AUC (last) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['threads']} | {r['batch']} | {r['reco_rows_per_s']:,.0f} | {r['torch_rows_per_s']:,.0f} | "
              f"{r['reco_rows_per_s'] / r['torch_rows_per_s']:.2f}x | {r['reco_valid_auc'][-1]:.4f} | {r['torch_valid_auc'][-1]:.4f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
