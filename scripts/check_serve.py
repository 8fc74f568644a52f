#!/usr/bin/env python3
"""Cross-check of `reco-cli serve` over real HTTP on 127.0.0.1 (bounded in count and time).

- Scores every row of a feature file over HTTP (requests of 1 to 37 rows, 8 concurrent
  clients, so the coalescer mixes requests in batches) and checks the logits equal
  `reco-cli predict`'s bit for bit (float32), and probabilities equal sigmoid(logit).
- Bad input: malformed JSON, missing/extra/wrong-typed columns, NaN, an empty batch, a body
  over the limit: 400/413 with a one-line JSON reason; 404 and 405.
- gzip and brotli responses decode to the same JSON; `/metrics` parses with the Prometheus
  project's own parser (prometheus_client) and its counters agree with what was sent: every
  non-2xx answer (400, 404, 405, 413, 503, 504) is counted in `recommendations_rejected_total`
  under its reason.
- SIGTERM: the server finishes and exits 0; a model that fails verification: exit 2.
"""

import argparse
import concurrent.futures as cf
import gzip
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import brotli
import numpy as np
import pyarrow.parquet as pq
from prometheus_client.parser import text_string_to_metric_families

TIMEOUT = 20


def start(cli, model, *extra):
    p = subprocess.Popen([cli, "serve", "--model", model, "--addr", "127.0.0.1:0", *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    if not line.startswith("http://"):
        p.kill()
        sys.exit(f"serve did not start: {line!r} {p.stderr.read()}")
    return p, line


def request(url, body=None, headers=None, method=None):
    req = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def rows_of(table, spec):
    names = [c["name"] for c in spec["categorical"]] + [n["name"] for n in spec["numeric"]]
    cols = {n: table.column(n).to_pylist() for n in names}
    out = []
    for i in range(table.num_rows):
        row = {}
        for n in names:
            v = cols[n][i]
            row[n] = float(np.float32(v)) if isinstance(v, float) else v
        out.append(row)
    return out


def check_scores(url, rows, want):
    # Requests of 1..37 rows, sent by 8 clients at once.
    chunks, i, size = [], 0, 1
    while i < len(rows):
        chunks.append((i, rows[i:i + size]))
        i += size
        size = size % 37 + 1

    def send(chunk):
        start, part = chunk
        status, _, body = request(url + "/v1/score", json.dumps({"rows": part}).encode(),
                                  {"Content-Type": "application/json"})
        assert status == 200, (status, body[:200])
        return start, json.loads(body)

    got = np.zeros(len(rows), dtype=np.float32)
    sizes = {start: len(part) for start, part in chunks}
    with cf.ThreadPoolExecutor(8) as ex:
        for start, r in ex.map(send, chunks):
            logits = np.array(r["logits"], dtype=np.float32)
            assert len(logits) == sizes[start] == len(r["probabilities"]), "one score per row sent"
            probs = np.array(r["probabilities"], dtype=np.float32)
            got[start:start + len(logits)] = logits
            ref = (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)
            assert np.allclose(probs, ref, atol=1e-6), "probabilities are sigmoid(logit)"
    diff = np.flatnonzero(got != want)
    assert diff.size == 0, f"{diff.size} rows differ from predict, first {diff[:5]}: {got[diff[:5]]} vs {want[diff[:5]]}"
    return len(chunks)


def check_bad_input(url, row, spec):
    def post(body, status_want, text):
        status, headers, out = request(url + "/v1/score", body, {"Content-Type": "application/json"})
        assert status == status_want, (body[:80], status, out)
        msg = json.loads(out)["error"]
        assert text in msg and "\n" not in msg, (body[:80], msg)

    col = next(iter(row))
    num = [k for k, v in row.items() if isinstance(v, float)][0]
    missing = {k: v for k, v in row.items() if k != col}
    post(b"{", 400, "not valid JSON")
    post(json.dumps({"rows": []}).encode(), 400, "`rows` is empty")
    post(json.dumps({"rows": [missing]}).encode(), 400, f"missing column `{col}`")
    post(json.dumps({"rows": [dict(row, extra=1)]}).encode(), 400, "unknown column `extra`")
    post(json.dumps({"rows": [dict(row, **{num: "x"})]}).encode(), 400, f"column `{num}` is the string")
    post(b'{"rows": [{"x": NaN}]}', 400, "not valid JSON")
    # Finite, but infinite once normalized by the column with the smallest std.
    tight = min(spec["numeric"], key=lambda n: n["std"])
    if tight["std"] < 1.0:
        post(json.dumps({"rows": [row, dict(row, **{tight["name"]: 3.4e38})]}).encode(), 400, "finite number")
    else:
        post(json.dumps({"rows": [dict(row, **{tight["name"]: 1e39})]}).encode(), 400, "finite number")
    # Over the server's --max-body-bytes 65536 (small enough to sit in the socket buffer
    # whole, so the client reads the 413 instead of a reset).
    post(b'{"rows": [' + b" " * 100_000 + b"]}", 413, "over the limit of 65536 bytes")
    status, _, _ = request(url + "/nowhere")
    assert status == 404
    status, headers, _ = request(url + "/v1/score")
    assert status == 405 and headers.get("allow") == "POST", headers
    return 8


def check_encodings(url, row):
    body = json.dumps({"rows": [row] * 20}).encode()
    plain = json.loads(request(url + "/v1/score", body)[2])
    for enc, decode in [("gzip", gzip.decompress), ("br", brotli.decompress)]:
        status, headers, out = request(url + "/v1/score", body, {"Accept-Encoding": enc})
        assert status == 200 and headers.get("content-encoding") == enc, headers
        assert json.loads(decode(out)) == plain


def metric_families(url):
    status, headers, text = request(url + "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain"), headers
    return {f.name: f for f in text_string_to_metric_families(text.decode())}


def check_rejections(url, want):
    """`recommendations_rejected_total` by reason equals `want` (reasons not named: 0), and its
    sum equals the non-2xx answers of `recommendations_requests_total`."""
    fams = metric_families(url)
    got = {s.labels["reason"]: s.value for s in fams["recommendations_rejected"].samples
           if s.name.endswith("_total")}
    for reason, n in got.items():
        assert n == want.get(reason, 0), (reason, got, want)
    assert set(want) <= set(got), (got, want)
    non_2xx = sum(s.value for s in fams["recommendations_requests"].samples
                  if s.name.endswith("_total") and not s.labels["code"].startswith("2"))
    assert sum(got.values()) == non_2xx, (got, non_2xx)


def check_metrics(url, ok_requests, bad_requests):
    fams = metric_families(url)
    for name in ["recommendations_requests", "recommendations_request_duration_seconds",
                 "recommendations_inference_duration_seconds", "recommendations_batch_size_rows",
                 "recommendations_queue_duration_seconds", "recommendations_queue_depth_rows",
                 "recommendations_rejected", "recommendations_cache_hit_ratio", "recommendations_model_info"]:
        assert name in fams, f"{name} missing from /metrics: {sorted(fams)}"
    counts = {(s.labels["endpoint"], s.labels["code"]): s.value
              for s in fams["recommendations_requests"].samples if s.name.endswith("_total")}
    assert counts.get(("/v1/score", "200")) == ok_requests, counts
    assert counts.get(("/v1/score", "400"), 0) + counts.get(("/v1/score", "413"), 0) == bad_requests, counts
    batch = {s.name: s.value for s in fams["recommendations_batch_size_rows"].samples}
    assert batch["recommendations_batch_size_rows_count"] > 0
    assert math.isnan(fams["recommendations_cache_hit_ratio"].samples[0].value), "no lookups yet: NaN, not 0 or 1"
    check_rejections(url, {"invalid": counts.get(("/v1/score", "400"), 0), "too_large": counts.get(("/v1/score", "413")),
                           "not_found": 1, "method_not_allowed": 1})


def check_recommendations(url, table_path, spec):
    """Every sampled key's places equal the table's, in rank order, with ids in the type the
    model takes them (integers for an integer vocabulary: /v1/score accepts them back); the
    second identical request is a cache hit; bad and unknown keys are 400, uncovered cells 404."""
    place = next(c for c in spec["categorical"] if c["name"] == "place_id")
    typed = int if place["dtype"] == "int64" else str
    kv = pq.ParquetFile(table_path).metadata.metadata
    deg = float(kv[b"reco_cli.cell_deg"])
    rows = pq.read_table(table_path).to_pylist()
    keys = {}
    for r in rows:
        keys.setdefault((r["segment"], r["cell_lat"], r["cell_lon"], r["category"]), []).append(r)
    sample = sorted(keys, key=str)[:: max(1, len(keys) // 6)][:6]
    for seg, ci, cj, cat in sample:
        # A point inside the cell, not its corner.
        q = {"segment": seg, "lat": (ci + 0.3) * deg, "lon": (cj + 0.7) * deg}
        if cat is not None:
            q["category"] = cat
        path = url + "/v1/recommendations?" + urllib.parse.urlencode(q)
        for attempt in range(2):
            status, _, body = request(path)
            assert status == 200, (status, body)
            got = json.loads(body)
            want = sorted(keys[(seg, ci, cj, cat)], key=lambda r: r["rank"])
            assert [p["place_id"] for p in got["places"]] == [typed(r["place_id"]) for r in want], (q, got)
            assert all(type(p["place_id"]) is typed for p in got["places"]), got
            assert all(abs(p["score"] - r["score"]) < 1e-6 for p, r in zip(got["places"], want))
    seg0 = sample[0][0]
    for q, code, text in [
        ({"segment": "no-such", "lat": 0, "lon": 0}, 400, "unknown segment"),
        ({"segment": seg0, "lat": "north", "lon": 0}, 400, "`lat` is"),
        ({"segment": seg0, "lat": 0}, 400, "missing parameter `lon`"),
        ({"segment": seg0, "lat": 0, "lon": 0, "x": 1}, 400, "unknown parameter `x`"),
        ({"segment": seg0, "lat": -89.5, "lon": 179.5}, 404, "no precomputed recommendations"),
    ]:
        status, _, body = request(url + "/v1/recommendations?" + urllib.parse.urlencode(q))
        assert status == code and text in json.loads(body)["error"], (q, status, body)
    return len(sample)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--table", help="a precompute table to serve and check at /v1/recommendations")
    a = ap.parse_args()
    spec = json.load(open(os.path.join(a.model, "manifest.json")))["feature_spec"]
    table = pq.read_table(a.data)
    rows = rows_of(table, spec)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "p.parquet")
        subprocess.run([a.cli, "predict", "--model", a.model, "--data", a.data, "--out", out, "--quiet"], check=True,
                       stdout=subprocess.DEVNULL)
        want = pq.read_table(out).column("logit").to_numpy().astype(np.float32)

        extra = ["--recommendations", a.table] if a.table else []
        p, url = start(a.cli, a.model, "--max-batch", "64", "--max-wait-ms", "2", "--max-body-bytes", "65536", *extra)
        try:
            ok = check_scores(url, rows, want)
            bad = check_bad_input(url, rows[0], spec)
            check_encodings(url, rows[0])
            ok += 3
            check_metrics(url, ok, bad)
            if a.table:
                keys = check_recommendations(url, a.table, spec)
                fams = {f.name: f for f in text_string_to_metric_families(request(url + "/metrics")[2].decode())}
                ratio = fams["recommendations_cache_hit_ratio"].samples[0].value
                # Each sampled key: one miss then one hit; then one 404 miss.
                assert abs(ratio - keys / (2 * keys + 1)) < 1e-9, ratio
            p.send_signal(signal.SIGTERM)
            assert p.wait(timeout=TIMEOUT) == 0, p.stderr.read()
        finally:
            if p.poll() is None:
                p.kill()

        # Fail-fast admission and graceful shutdown: 4 rows wait for their batch (1.5 s max
        # wait) and fill the 4-row queue; one more row is 503 with Retry-After at once, 5 rows
        # could never fit (413); SIGTERM while the 4 rows wait: they are still scored, exit 0.
        p, url = start(a.cli, a.model, "--queue-rows", "4", "--max-wait-ms", "1500", "--deadline-ms", "5000")
        try:
            with cf.ThreadPoolExecutor(1) as ex:
                waiting = ex.submit(request, url + "/v1/score", json.dumps({"rows": rows[:4]}).encode())
                time.sleep(0.3)
                status, headers, body = request(url + "/v1/score", json.dumps({"rows": rows[:1]}).encode())
                assert status == 503 and headers.get("retry-after") == "1", (status, headers, body)
                assert "queue is full" in json.loads(body)["error"]
                status, _, body = request(url + "/v1/score", json.dumps({"rows": rows[:5]}).encode())
                assert status == 413 and "more than the 4" in json.loads(body)["error"], (status, body)
                check_rejections(url, {"queue_full": 1, "too_large": 1})
                p.send_signal(signal.SIGTERM)
                status, _, body = waiting.result(timeout=TIMEOUT)
                assert status == 200 and len(json.loads(body)["logits"]) == 4, (status, body)
            assert p.wait(timeout=TIMEOUT) == 0
        finally:
            if p.poll() is None:
                p.kill()

        # A deadline shorter than the max wait: a lone row is answered 504 at its deadline;
        # that and a 400 are counted as rejections.
        p, url = start(a.cli, a.model, "--max-wait-ms", "1000", "--deadline-ms", "50")
        try:
            status, _, body = request(url + "/v1/score", json.dumps({"rows": rows[:1]}).encode())
            assert status == 504 and "deadline" in json.loads(body)["error"], (status, body)
            status, _, _ = request(url + "/v1/score", b"{")
            assert status == 400
            check_rejections(url, {"deadline": 1, "invalid": 1})
            p.send_signal(signal.SIGTERM)
            assert p.wait(timeout=TIMEOUT) == 0
        finally:
            if p.poll() is None:
                p.kill()

        # Zero and absurd limits are refused before the server starts.
        for flag, value in [("--max-body-bytes", "0"), ("--max-rows", "0"), ("--queue-rows", "0"),
                            ("--deadline-ms", "NaN")]:
            r = subprocess.run([a.cli, "serve", "--model", a.model, "--addr", "127.0.0.1:0", flag, value],
                               capture_output=True, text=True, timeout=TIMEOUT)
            assert r.returncode == 2 and flag in r.stderr and len(r.stderr.splitlines()) == 1, (flag, r.stderr)

        broken = os.path.join(tmp, "broken")
        shutil.copytree(a.model, broken)
        with open(os.path.join(broken, "model.safetensors"), "r+b") as f:
            f.seek(-1, 2)
            f.write(b"\x00")
        r = subprocess.run([a.cli, "serve", "--model", broken, "--addr", "127.0.0.1:0"],
                           capture_output=True, text=True, timeout=TIMEOUT)
        assert r.returncode == 2 and "sha256 mismatch" in r.stderr and r.stdout == "", (r.returncode, r.stderr)
    print(f"serve OK: {a.model}: {len(rows)} rows in {ok - 3} requests equal predict bit for bit; "
          f"{bad} bad requests refused; gzip/br; /metrics parsed, every rejection counted; 503 + Retry-After, "
          f"413, 504; zero limits refused; SIGTERM with a request in flight: scored, exit 0; "
          f"broken model exit 2")


if __name__ == "__main__":
    main()
