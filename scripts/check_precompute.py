#!/usr/bin/env python3
"""Independent check of `reco-cli precompute`: for sampled keys (segment x cell x category),
the top K must equal a brute-force scoring of every place within the radius of the cell's
centre.

The brute force is ours, not the tool's: candidates by a numpy haversine over every place of
`places.parquet` (no grid index), feature rows assembled here from the file metadata (the
anonymous user id, the hour and day of week) and the place snapshot, scored by
`reco-cli predict` on a Parquet file this script writes, ranked by logit (ties: place order).
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

R_KM = 6371.0088


def haversine(lat1, lon1, lat2, lon2):
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    return 2 * R_KM * np.arcsin(np.minimum(np.sqrt(a), 1.0))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--features", required=True)
    ap.add_argument("--table", required=True)
    ap.add_argument("--samples", type=int, default=12)
    a = ap.parse_args()

    manifest = json.load(open(os.path.join(a.model, "manifest.json")))
    spec = manifest["feature_spec"]
    table = pq.read_table(a.table)
    kv = pq.ParquetFile(a.table).metadata.metadata
    meta = {k.decode(): v.decode() for k, v in kv.items() if k.startswith(b"reco_cli.")}
    assert meta["reco_cli.model_content_sha256"] == manifest_hash(a.model), "table made from another model"
    prep = json.load(open(os.path.join(a.features, "prepare.json")))
    assert int(meta["reco_cli.feature_snapshot_ts"]) == prep["summary"]["snapshot_ts"]
    deg, radius, k = float(meta["reco_cli.cell_deg"]), float(meta["reco_cli.radius_km"]), int(meta["reco_cli.k"])
    assert radius == prep["config"]["radius_km"]
    hour, dow = int(meta["reco_cli.hour"]), int(meta["reco_cli.dow"])
    places = pq.read_table(os.path.join(a.features, "places.parquet"))
    plat, plon = places.column("place_lat").to_numpy(), places.column("place_lon").to_numpy()
    pid = [str(v) for v in places.column("place_id").to_pylist()]
    cat = [str(v) for v in places.column("category").to_pylist()] if "category" in places.column_names else None

    rows = table.to_pylist()
    keys = sorted({(r["segment"], r["cell_lat"], r["cell_lon"], r["category"]) for r in rows}, key=str)
    rng = random.Random(7)
    sample = rng.sample(keys, min(a.samples, len(keys)))
    # Always include an all-categories key and a category key when the table has them.
    sample += [next(x for x in keys if x[3] is None)]
    if any(x[3] is not None for x in keys):
        sample += [next(x for x in keys if x[3] is not None)]

    cols = {c["name"]: [] for c in spec["categorical"]}
    cols.update({n["name"]: [] for n in spec["numeric"]})
    owners = []  # (key index, place row)
    for ki, (seg, ci, cj, category) in enumerate(sample):
        clat, clon = (ci + 0.5) * deg, (cj + 0.5) * deg
        dist = haversine(clat, clon, plat, plon)
        cand = [i for i in range(len(pid)) if dist[i] <= radius and (category is None or cat[i] == category)]
        for i in cand:
            owners.append((ki, i))
            for c in spec["categorical"]:
                name = c["name"]
                if name == "user_id":
                    v = meta["reco_cli.anonymous_user_id"]
                    cols[name].append(int(v) if c.get("dtype", "int64") == "int64" else v)
                elif name == "segment":
                    cols[name].append(int(seg) if c.get("dtype", "int64") == "int64" else seg)
                else:
                    cols[name].append(places.column(name)[i].as_py())
            for n in spec["numeric"]:
                name = n["name"]
                if name == "distance_km":
                    v = dist[i]
                elif name in ("hour_sin", "hour_cos"):
                    v = (np.sin if name.endswith("sin") else np.cos)(hour * 2 * np.pi / 24)
                elif name in ("dow_sin", "dow_cos"):
                    v = (np.sin if name.endswith("sin") else np.cos)(dow * 2 * np.pi / 7)
                else:
                    v = places.column(name)[i].as_py()
                cols[name].append(np.float32(v))
    with tempfile.TemporaryDirectory() as tmp:
        data, out = os.path.join(tmp, "cands.parquet"), os.path.join(tmp, "scores.parquet")
        arrays = {}
        for c in spec["categorical"]:
            arrays[c["name"]] = pa.array(cols[c["name"]], pa.int64() if c.get("dtype", "int64") == "int64" else pa.string())
        for n in spec["numeric"]:
            arrays[n["name"]] = pa.array(cols[n["name"]], pa.float32())
        pq.write_table(pa.table(arrays), data)
        subprocess.run([a.cli, "predict", "--model", a.model, "--data", data, "--out", out, "--quiet"],
                       check=True, stdout=subprocess.DEVNULL)
        logits = pq.read_table(out).column("logit").to_numpy()

    by_key = {}
    for r in rows:
        by_key.setdefault((r["segment"], r["cell_lat"], r["cell_lon"], r["category"]), []).append(r)
    checked = 0
    for ki, key in enumerate(sample):
        mine = [(float(logits[j]), i) for j, (kj, i) in enumerate(owners) if kj == ki]
        mine.sort(key=lambda t: (-t[0], t[1]))
        want = mine[:k]
        got = sorted(by_key[key], key=lambda r: r["rank"])
        assert [r["rank"] for r in got] == list(range(1, len(got) + 1)), key
        assert len(got) == len(want), (key, len(got), len(want))
        for (wl, wi), g in zip(want, got):
            assert abs(g["logit"] - wl) <= 1e-5, (key, g, wl)
            if g["place_id"] != pid[wi]:
                # Only a tie within float tolerance may swap two places.
                alt = [l for l, i in mine if pid[i] == g["place_id"]]
                assert alt and abs(alt[0] - wl) <= 1e-5, (key, g["place_id"], pid[wi])
        checked += 1
    print(f"precompute OK: {checked} keys of {len(keys)} equal brute-force top-{k} over {len(owners)} candidates")


def manifest_hash(model):
    out = subprocess.run([sys.argv[sys.argv.index("--cli") + 1], "inspect", model, "--json"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)["content_sha256"]


if __name__ == "__main__":
    main()
