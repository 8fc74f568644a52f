#!/usr/bin/env python3
"""Cross-check reco's distillation loss (DESIGN §5) and its gradient against numpy.

Independent float64 implementation of
  soft  = T^2 * mean[ p*log(p/q) + (1-p)*log((1-p)/(1-q)) ],  p = sigmoid(t/T), q = sigmoid(s/T)
  list  = T^2 * mean over groups g (of 2+ rows) of KL(softmax_g(t/T) || softmax_g(s/T))
  total = alpha*soft + (1-alpha)*mean BCEWithLogits(s, y) + listwise*list
with analytic gradients d soft/ds = T*(q-p)/n, d bce/ds = (sigmoid(s)-y)/n and
d list/ds_i = T*(q_i-p_i)/G within row i's group, on random logits including |z| = 50 and
groups of 1 to 7 rows scattered over the batch. Runs the `kl_dump` example binary for ours.

usage: check_kl.py --bin target/release/examples/kl_dump
"""
import argparse
import json
import subprocess
import sys

import numpy as np


def log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def listwise(s, t, groups, T):
    """The listwise term and its gradient, one group at a time (log-softmax via logaddexp)."""
    ids, sizes = np.unique(groups, return_counts=True)
    kept = ids[sizes >= 2]
    value, grad = 0.0, np.zeros_like(s)
    for g in kept:
        rows = groups == g
        a, b = t[rows] / T, s[rows] / T
        log_p = a - np.logaddexp.reduce(a)
        log_q = b - np.logaddexp.reduce(b)
        p, q = np.exp(log_p), np.exp(log_q)
        value += np.sum(p * (log_p - log_q))
        grad[rows] = T * (q - p)
    n = max(len(kept), 1)
    return T * T * value / n, grad / n


def reference(s, t, y, groups, T, alpha, w):
    n = len(s)
    ls_t, ls_mt = log_sigmoid(t / T), log_sigmoid(-t / T)
    ls_s, ls_ms = log_sigmoid(s / T), log_sigmoid(-s / T)
    p = np.exp(ls_t)
    soft = T * T * np.mean(p * (ls_t - ls_s) + (1 - p) * (ls_mt - ls_ms))
    q = np.exp(ls_s)
    soft_grad = T * (q - p) / n
    bce = np.mean(np.logaddexp(0.0, s) - s * y)
    bce_grad = (np.exp(log_sigmoid(s)) - y) / n
    lst, lst_grad = listwise(s, t, groups, T)
    total = alpha * soft + (1 - alpha) * bce + w * lst
    total_grad = alpha * soft_grad + (1 - alpha) * bce_grad + w * lst_grad
    return soft, soft_grad, lst, lst_grad, total, total_grad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    a = ap.parse_args()
    rng = np.random.default_rng(2026)
    worst = 0.0
    for T, alpha, w in [(1.0, 0.5, 0.0), (3.0, 0.7, 1.0), (8.0, 1.0, 0.5), (0.5, 0.0, 2.0)]:
        s = np.concatenate([rng.normal(0, 4, 200), [50, -50, 50, -50, 0, 7.5]]).astype(np.float32)
        t = np.concatenate([rng.normal(0, 4, 200), [-50, 50, 50, 12, 0, 7.5]]).astype(np.float32)
        y = (rng.random(len(s)) < 0.3).astype(np.float32)
        groups = np.repeat(np.arange(len(s)), rng.integers(1, 8, len(s)))[: len(s)]
        groups = rng.permutation(groups * 7 + 3)  # any numbering, rows of a group scattered
        req = {"student": s.tolist(), "teacher": t.tolist(), "labels": y.tolist(), "groups": groups.tolist(),
               "temperature": T, "alpha": alpha, "listwise": w}
        out = json.loads(subprocess.run([a.bin], input=json.dumps(req), capture_output=True, text=True, check=True).stdout)
        ref = reference(s.astype(np.float64), t.astype(np.float64), y.astype(np.float64), groups, T, alpha, w)
        names = ["soft", "soft_grad", "list", "list_grad", "total", "total_grad"]
        ours = [np.asarray(out[k], dtype=np.float64) for k in names]
        for name, r, o in zip(names, ref, ours):
            if not np.all(np.isfinite(o)):
                print(f"check_kl: FAIL: {name} not finite at T={T}", file=sys.stderr)
                sys.exit(1)
            err = float(np.max(np.abs(o - r) / (1.0 + np.abs(r))))
            worst = max(worst, err)
            if err > 1e-5:
                print(f"check_kl: FAIL: {name} at T={T} alpha={alpha}: max rel err {err:.3g}", file=sys.stderr)
                sys.exit(1)
    print(f"check_kl: OK: pointwise, listwise and total losses and gradients match numpy (max rel err {worst:.2e}, |z| up to 50)")


if __name__ == "__main__":
    main()
