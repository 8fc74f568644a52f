#!/usr/bin/env python3
"""Cross-check reco's distillation loss (DESIGN §5) and its gradient against numpy.

Independent float64 implementation of
  soft  = T^2 * mean[ p*log(p/q) + (1-p)*log((1-p)/(1-q)) ],  p = sigmoid(t/T), q = sigmoid(s/T)
  total = alpha*soft + (1-alpha)*mean BCEWithLogits(s, y)
with analytic gradients d soft/ds = T*(q-p)/n and d bce/ds = (sigmoid(s)-y)/n, on random
logits including |z| = 50. Runs the `kl_dump` example binary for our values.

usage: check_kl.py --bin target/release/examples/kl_dump
"""
import argparse
import json
import subprocess
import sys

import numpy as np


def log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def reference(s, t, y, T, alpha):
    n = len(s)
    ls_t, ls_mt = log_sigmoid(t / T), log_sigmoid(-t / T)
    ls_s, ls_ms = log_sigmoid(s / T), log_sigmoid(-s / T)
    p = np.exp(ls_t)
    soft = T * T * np.mean(p * (ls_t - ls_s) + (1 - p) * (ls_mt - ls_ms))
    q = np.exp(ls_s)
    soft_grad = T * (q - p) / n
    bce = np.mean(np.logaddexp(0.0, s) - s * y)
    bce_grad = (np.exp(log_sigmoid(s)) - y) / n
    return soft, soft_grad, alpha * soft + (1 - alpha) * bce, alpha * soft_grad + (1 - alpha) * bce_grad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    a = ap.parse_args()
    rng = np.random.default_rng(2026)
    worst = 0.0
    for T, alpha in [(1.0, 0.5), (3.0, 0.7), (8.0, 1.0), (0.5, 0.0)]:
        s = np.concatenate([rng.normal(0, 4, 200), [50, -50, 50, -50, 0, 7.5]]).astype(np.float32)
        t = np.concatenate([rng.normal(0, 4, 200), [-50, 50, 50, 12, 0, 7.5]]).astype(np.float32)
        y = (rng.random(len(s)) < 0.3).astype(np.float32)
        req = {"student": s.tolist(), "teacher": t.tolist(), "labels": y.tolist(), "temperature": T, "alpha": alpha}
        out = json.loads(subprocess.run([a.bin], input=json.dumps(req), capture_output=True, text=True, check=True).stdout)
        ref = reference(s.astype(np.float64), t.astype(np.float64), y.astype(np.float64), T, alpha)
        ours = (out["soft"], np.array(out["soft_grad"]), out["total"], np.array(out["total_grad"]))
        for name, r, o in zip(["soft", "soft_grad", "total", "total_grad"], ref, ours):
            if not np.all(np.isfinite(o)):
                print(f"check_kl: FAIL: {name} not finite at T={T}", file=sys.stderr)
                sys.exit(1)
            err = float(np.max(np.abs(np.asarray(o, dtype=np.float64) - r) / (1.0 + np.abs(r))))
            worst = max(worst, err)
            if err > 1e-5:
                print(f"check_kl: FAIL: {name} at T={T} alpha={alpha}: max rel err {err:.3g}", file=sys.stderr)
                sys.exit(1)
    print(f"check_kl: OK: soft and total loss and gradients match numpy (max rel err {worst:.2e}, |z| up to 50)")


if __name__ == "__main__":
    main()
