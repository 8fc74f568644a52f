#!/usr/bin/env python3
"""The Spark jobs against reco-cli, on a finished `reco-cli run` of a recipe (CI: tiny):

1. scripts/spark/prepare.py (local[2]) on the run's raw tables: every deterministic feature
   column equals reco-cli prepare's, row for row (rows matched by user_id, place_id,
   timestamp; |difference| <= 1e-6), with the same split of every row and the same
   vocabularies and mean/std. The columns are every one of reco-cli's feature spec, the
   point-in-time user history ones (HISTORY) included, which must be there when the recipe's
   prepare.history is on (the default) and absent when off. The calibration sample differs by
   design (another RNG).
2. `reco-cli train` on Spark's features: its teacher's test AUC (reco-cli eval on reco-cli's
   test split) is within 0.005 of the run's teacher.
3. scripts/spark/score.py (mapInArrow + onnxruntime, FP32 ONNX) on the test split equals
   `reco-cli predict` within 1e-5.
1b. The same raw tables with narrow integer types (uint16 users, int16 places, uint8
   categories, int8 segments, uint32 times, int8 labels, uint64 ...): the same features. A
   uint64 above the largest long and a float16 column are refused, exit 2, naming them.
4. Implicit data (the run's visits only, without labels): both prepare with sampled negatives
   within the radius. Every visit row's columns are equal row for row; every visit has as many
   negatives in both (the exact radius join); Spark's negatives are distinct places within the
   radius other than the visited one; and the negatives both drew for a visit have equal
   features (window statistics that count only real visits). Which places are drawn differs
   by design (two RNGs). Teachers trained on each are evaluated on reco-cli's test split.
   The user-history columns are compared there too: a sampled negative's history is its
   user's visits to its place, whoever drew it.
"""
import re
import argparse
import hashlib
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import shutil
import tomllib

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

KEYS = ["user_id", "place_id", "timestamp"]
# The user-history feature columns (prepare.history; the synthetic places have categories, so
# all seven), as reco-cli and the Spark job write them.
HISTORY = ["user_visits", "user_place_visits", "user_place_visits_w", "user_place_share", "user_place_days_since",
           "user_place_never", "user_category_share"]
HERE = Path(__file__).resolve().parent


def fail(msg):
    print(f"check_spark: {msg}", file=sys.stderr)
    sys.exit(1)


def table(path, sort=True):
    """A Parquet file or a hive-partitioned directory of them (parts in name order, as reco-cli
    lists them), as numpy columns, sorted by KEYS unless `sort` is false."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*.parquet") if not p.name.startswith((".", "_")))
    if not files:
        fail(f"{path}: no Parquet files")
    parts = [pq.read_table(f) for f in files]
    cols = {n: np.concatenate([p[n].to_numpy() for p in parts]) for n in parts[0].column_names}
    if not sort:
        return cols
    order = np.lexsort([cols[k] for k in reversed(KEYS)])
    return {n: v[order] for n, v in cols.items()}


def run(cmd, what):
    t = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        fail(f"{what} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p.stdout, time.time() - t


def history_on(recipe):
    """Whether the recipe asks for the user-history features (prepare.history, default true)."""
    return tomllib.loads(Path(recipe).read_text()).get("prepare", {}).get("history", True)


def require_history(spec, on, what):
    """The history columns are all in reco-cli's spec, in order after the other built-in
    numeric ones, when `on`; none of them when off: the comparison covers them, or they are
    rightly absent. Returns how many there are."""
    names = [n["name"] for n in spec["numeric"]]
    have = [c for c in names if c in HISTORY]
    if on and (have != HISTORY or names.index(HISTORY[0]) != names.index("price_level") + 1):
        fail(f"{what}: reco-cli's feature spec has the history columns {have} in {names}, expected {HISTORY} after price_level")
    if not on and have:
        fail(f"{what}: prepare.history is off, yet reco-cli's feature spec has {have}")
    return len(have)


def compare_features(ours_dir, spark_dir, history=True):
    spec = json.loads((ours_dir / "feature_spec.json").read_text())
    require_history(spec, history, "features")
    columns = [c["name"] for c in spec["categorical"]] + [n["name"] for n in spec["numeric"]] + ["label", "oracle_p"]
    worst = 0.0
    for split in ("train", "valid", "test"):
        # Row order first: Spark's shards listed in name order give reco-cli's order.
        a, b = table(ours_dir / f"{split}.parquet", sort=False), table(spark_dir / f"{split}.parquet", sort=False)
        if len(a["timestamp"]) == 0 or len(a["timestamp"]) != len(b["timestamp"]):
            fail(f"{split}: reco-cli {len(a['timestamp'])} rows, Spark {len(b['timestamp'])}")
        if not all(np.array_equal(a[k], b[k]) for k in KEYS):
            fail(f"{split}: Spark's rows are not in reco-cli's order")
        a, b = table(ours_dir / f"{split}.parquet"), table(spark_dir / f"{split}.parquet")
        for k in KEYS:
            if not np.array_equal(a[k], b[k]):
                fail(f"{split}: the rows differ (key {k})")
        for c in columns:
            x, y = a[c].astype(np.float64), b[c].astype(np.float64)
            d = np.abs(x - y)
            if not np.all(d <= 1e-6):
                i = int(np.argmax(d))
                fail(f"{split}.{c}: row {i} reco-cli {x[i]} vs Spark {y[i]}")
            worst = max(worst, float(d.max()) if len(d) else 0.0)
    theirs = json.loads((spark_dir / "feature_spec.json").read_text())
    names = lambda sp: [c["name"] for c in sp["categorical"]] + [n["name"] for n in sp["numeric"]]
    if names(spec) != names(theirs):
        fail(f"feature spec columns: reco-cli {names(spec)}, Spark {names(theirs)}")
    for c, d in zip(spec["categorical"], theirs["categorical"]):
        if c["vocabulary"] != d["vocabulary"]:
            fail(f"vocabulary of {c['name']} differs")
    for n, m in zip(spec["numeric"], theirs["numeric"]):
        if not (math.isclose(n["mean"], m["mean"], rel_tol=1e-9, abs_tol=1e-12) and math.isclose(n["std"], m["std"], rel_tol=1e-9)):
            fail(f"normalization of {n['name']}: reco-cli {n['mean']}, {n['std']} vs Spark {m['mean']}, {m['std']}")
    return len(columns), worst


# The narrow type each integer column of the raw tables is written in (when its values fit).
NARROW = {"user_id": "uint16", "place_id": "int16", "category": "uint8", "segment": "int8", "timestamp": "uint32",
          "label": "int8", "price_level": "uint64"}


def narrow_inputs(run_dir, work):
    """The run's raw tables with the NARROW types; and two bad copies of the interactions (a
    uint64 user id above the largest long, a float16 rating)."""
    import pyarrow as pa
    raw = work / "narrow-raw"
    raw.mkdir(parents=True, exist_ok=True)
    narrowed = []
    for name in ("interactions", "places", "users"):
        t = pq.read_table(run_dir / "raw" / f"{name}.parquet")
        for c, to in NARROW.items():
            if c in t.column_names and pa.types.is_integer(t[c].type):
                typ = getattr(pa, to)()
                lo, hi = pc.min(t[c]).as_py(), pc.max(t[c]).as_py()
                if lo >= (0 if to.startswith("u") else -(2 ** (typ.bit_width - 1))) and hi < 2 ** (typ.bit_width - (0 if to.startswith("u") else 1)):
                    t = t.set_column(t.column_names.index(c), c, t[c].cast(typ))
                    narrowed.append(f"{name}.{c}:{to}")
        pq.write_table(t, raw / f"{name}.parquet")
    bad = {}
    inter = pq.read_table(raw / "interactions.parquet")
    users = pc.cast(inter["user_id"], pa.uint64()).to_pylist()
    users[5] = 2**64 - 1
    for what, t in (("uint64", inter.set_column(inter.column_names.index("user_id"), "user_id", pa.array(users, pa.uint64()))),
                    ("float16", inter.set_column(inter.column_names.index("rating"), "rating", pc.cast(inter["rating"], pa.float16())))):
        d = work / f"bad-{what}"
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(t, d / "interactions.parquet")
        for name in ("places", "users"):
            shutil.copy(raw / f"{name}.parquet", d / f"{name}.parquet")
        bad[what] = d
    return raw, narrowed, bad


def implicit_inputs(run_dir, recipe, work):
    """The run's raw tables as visits only (label and oracle dropped), and the recipe reading
    them as files."""
    raw = work / "implicit-raw"
    raw.mkdir(parents=True, exist_ok=True)
    t = pq.read_table(run_dir / "raw" / "interactions.parquet")
    t = t.filter(pc.equal(t["label"], 1)).drop(["label", "oracle_p"])
    pq.write_table(t, raw / "interactions.parquet")
    for name in ("users", "places"):
        shutil.copy(run_dir / "raw" / f"{name}.parquet", raw / f"{name}.parquet")
    text = Path(recipe).read_text()
    data = f'[data]\nsource = "files"\ndir = "{raw.resolve()}"\n\n'
    text = re.sub(r"(?ms)^\[data\]\n.*?(?=^\[)", lambda _: data, text)
    out = work / "implicit.toml"
    out.write_text(text)
    return raw, out


def compare_implicit(ours_dir, spark_dir, radius_km, history=True):
    """Visits row for row, negatives per visit, Spark's negatives valid, shared negatives equal."""
    spec = json.loads((ours_dir / "feature_spec.json").read_text())
    require_history(spec, history, "implicit features")
    columns = [c["name"] for c in spec["categorical"]] + [n["name"] for n in spec["numeric"]] + ["label"]
    visits, shared, negatives = 0, 0, 0
    for split in ("train", "valid", "test"):
        a, b = table(ours_dir / f"{split}.parquet", sort=False), table(spark_dir / f"{split}.parquet", sort=False)
        if not np.array_equal(a["label"], b["label"]):
            fail(f"implicit {split}: the visits and their negatives are not in the same order and number")
        pos = a["label"] == 1
        for c in columns + KEYS:
            d = np.abs(a[c][pos].astype(np.float64) - b[c][pos].astype(np.float64))
            if len(d) and d.max() > 1e-6:
                fail(f"implicit {split}.{c}: visit row {int(np.argmax(d))} differs by {d.max()}")
        visit_a, visit_b = np.cumsum(pos), np.cumsum(b["label"] == 1)
        neg = ~pos
        key_b = {}
        for i in np.flatnonzero(neg):
            k = (int(visit_b[i]), int(b["place_id"][i]))
            if k in key_b:
                fail(f"implicit {split}: Spark drew place {k[1]} twice for one visit")
            key_b[k] = i
        visit_place = {int(visit_b[i]): int(b["place_id"][i]) for i in np.flatnonzero(~neg)}
        for (v, p), i in key_b.items():
            if p == visit_place[v] or b["distance_km"][i] > radius_km + 1e-4:
                fail(f"implicit {split}: Spark negative row {i} is the visited place or {b['distance_km'][i]} km away")
        pairs = [(i, key_b[(int(visit_a[i]), int(a["place_id"][i]))]) for i in np.flatnonzero(neg)
                 if (int(visit_a[i]), int(a["place_id"][i])) in key_b]
        if pairs:
            ia, ib = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
            for c in columns + KEYS:
                d = np.abs(a[c][ia].astype(np.float64) - b[c][ib].astype(np.float64))
                if d.max() > 1e-6:
                    fail(f"implicit {split}.{c}: a negative both drew differs by {d.max()}")
        visits, shared, negatives = visits + int(pos.sum()), shared + len(pairs), negatives + int(neg.sum())
    if shared < negatives // 20:
        fail(f"implicit: only {shared} of {negatives} negatives shared; the comparison would prove little")
    return visits, negatives, shared


def test_auc(cli, model, test):
    out, _ = run([cli, "eval", str(model), "--data", str(test), "--json", "--quiet"], "reco-cli eval")
    return json.loads(out)["models"][0]["auc"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", required=True)
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--run", required=True, help="the reco-cli run's --out")
    ap.add_argument("--work", required=True, help="scratch directory")
    a = ap.parse_args()
    run_dir, work = Path(a.run), Path(a.work)
    py = sys.executable
    features = work / "spark-run" / "features"
    _, t_prep = run([py, str(HERE / "spark" / "prepare.py"), "--recipe", a.recipe, "--raw", str(run_dir / "raw"),
                     "--out", str(features), "--master", "local[2]", "--shuffle-partitions", "4", "--sources-from", str(run_dir / "features" / "feature_spec.json")],
                    "spark prepare")
    history = history_on(a.recipe)
    n_cols, worst = compare_features(run_dir / "features", features, history)
    n_history = len(HISTORY) if history else 0
    # 1b. Narrow integer types: the same features; uint64 overflow and float16 refused.
    narrow_raw, narrowed, bad = narrow_inputs(run_dir, work)
    if len(narrowed) < 6:
        fail(f"narrow types: only {narrowed} narrowed; the check would prove little")
    narrow_features = work / "spark-narrow" / "features"
    run([py, str(HERE / "spark" / "prepare.py"), "--recipe", a.recipe, "--raw", str(narrow_raw), "--out", str(narrow_features),
         "--master", "local[2]", "--shuffle-partitions", "4"], "spark prepare (narrow types)")
    compare_features(run_dir / "features", narrow_features, history)
    for what, needles in (("uint64", ["interactions.parquet", "`user_id` row 5", "18446744073709551615"]),
                          ("float16", ["interactions.parquet", "`rating`", "float16"])):
        p = subprocess.run([py, str(HERE / "spark" / "prepare.py"), "--recipe", a.recipe, "--raw", str(bad[what]),
                            "--out", str(work / f"bad-{what}-out"), "--master", "local[2]", "--shuffle-partitions", "4"],
                           capture_output=True, text=True)
        last = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
        if p.returncode != 2 or not all(n in last for n in needles):
            fail(f"spark prepare on a {what} column: exit {p.returncode}, expected 2 and {needles} in: {last}")

    _, t_train = run([a.cli, "train", "--recipe", a.recipe, "--out", str(work / "spark-run"), "--quiet"], "reco-cli train on Spark features")
    test = run_dir / "features" / "test.parquet"
    ours, theirs = test_auc(a.cli, run_dir / "teacher", test), test_auc(a.cli, work / "spark-run" / "teacher", test)
    if abs(ours - theirs) > 0.005:
        fail(f"test AUC: teacher on reco-cli features {ours:.4f}, on Spark features {theirs:.4f}")
    # Same rows in the same order, same spec: the same training, to the bit.
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()
    same_weights = digest(run_dir / "teacher" / "model.safetensors") == digest(work / "spark-run" / "teacher" / "model.safetensors")
    if not same_weights:
        fail("the teacher trained on Spark's features has other weights than the run's (same rows, order and spec should give the same model)")

    scores = work / "spark-scores"
    _, t_score = run([py, str(HERE / "spark" / "score.py"), "--model", str(run_dir / "teacher"), "--data", str(test),
                      "--out", str(scores), "--master", "local[2]"], "spark score")
    pred = work / "predict.parquet"
    run([a.cli, "predict", "--model", str(run_dir / "teacher"), "--data", str(test), "--out", str(pred), "--quiet"], "reco-cli predict")
    keys = pq.read_table(test, columns=KEYS)
    p = pq.read_table(pred)
    ref = {k: keys[k].to_numpy() for k in KEYS}
    ref["logit"], ref["probability"] = p["logit"].to_numpy(), p["probability"].to_numpy()
    order = np.lexsort([ref[k] for k in reversed(KEYS)])
    ref = {k: v[order] for k, v in ref.items()}
    got = table(scores)
    if not all(np.array_equal(ref[k], got[k]) for k in KEYS):
        fail("spark scores: not the test split's rows")
    dl = np.abs(ref["logit"].astype(np.float64) - got["logit"].astype(np.float64)).max()
    dp = np.abs(ref["probability"].astype(np.float64) - got["probability"].astype(np.float64)).max()
    if dl > 1e-5 or dp > 1e-5:
        fail(f"spark scores vs reco-cli predict: max |dlogit| {dl:.2e}, |dprob| {dp:.2e}")
    # 4. Implicit data.
    raw, implicit = implicit_inputs(run_dir, a.recipe, work)
    ours_run, spark_run = work / "implicit-ours", work / "implicit-spark"
    run([a.cli, "prepare", "--recipe", str(implicit), "--out", str(ours_run), "--quiet"], "reco-cli prepare (implicit)")
    _, t_implicit = run([py, str(HERE / "spark" / "prepare.py"), "--recipe", str(implicit), "--raw", str(raw),
                         "--out", str(spark_run / "features"), "--master", "local[2]", "--shuffle-partitions", "4",
                         "--sources-from", str(ours_run / "features" / "feature_spec.json")], "spark prepare (implicit)")
    radius = tomllib.loads(implicit.read_text()).get("prepare", {}).get("radius_km", 5.0)
    visits, negatives, shared = compare_implicit(ours_run / "features", spark_run / "features", radius, history_on(implicit))
    for d in (ours_run, spark_run):
        run([a.cli, "train", "--recipe", str(implicit), "--out", str(d), "--quiet"], f"reco-cli train on {d.name}")
    itest = ours_run / "features" / "test.parquet"
    i_ours, i_spark = test_auc(a.cli, ours_run / "teacher", itest), test_auc(a.cli, spark_run / "teacher", itest)
    if abs(i_ours - i_spark) > 0.03:
        fail(f"implicit test AUC: teacher on reco-cli features {i_ours:.4f}, on Spark features {i_spark:.4f}")

    print(f"check_spark OK: {n_cols} deterministic columns ({n_history} user-history) equal row for row (max |diff| {worst:.1e}), also from "
          f"{', '.join(narrowed)}; uint64 overflow and float16 refused; "
          f"test AUC {ours:.4f} (reco-cli features) vs {theirs:.4f} (Spark features), teacher weights {'identical' if same_weights else 'differ'}; "
          f"scores vs predict max |dlogit| {dl:.1e} |dprob| {dp:.1e}; "
          f"spark prepare {t_prep:.1f}s, train {t_train:.1f}s, spark score {t_score:.1f}s; "
          f"implicit: {visits} visits row for row, {negatives} negatives in equal numbers per visit, {shared} drawn by both equal, "
          f"test AUC {i_ours:.4f} (reco-cli negatives) vs {i_spark:.4f} (Spark negatives), spark prepare {t_implicit:.1f}s")


if __name__ == "__main__":
    main()
