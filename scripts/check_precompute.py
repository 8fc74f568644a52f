#!/usr/bin/env python3
"""Independent check of `reco-cli precompute`: for sampled keys (segment x cell x category),
the top K must equal a brute-force scoring of every place within the radius of the cell's
centre.

What this script decides on its own: which cells are the busiest (numpy over the place
snapshot's visit counts), which places are candidates (a numpy haversine over every place, no
grid index), which users stand for a segment (the most active in train.parquet, counted
here), the feature rows (built here from the snapshot, the hour and day of week, and each
user's own declared users-table features as train.parquet holds them), the averaging of visit
probabilities over the users, and the ranking. Scores come from
`reco-cli predict` on a Parquet file this script writes.
"""

import argparse
import collections
import json
import os
import random
import subprocess
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

R_KM = 6371.0088



# A precomputed table is per segment and cell: its rows are those of a user without history
# (no past visits: every count and share 0, never visited = 1).
NO_HISTORY = {"user_visits": 0.0, "user_place_visits": 0.0, "user_place_visits_w": 0.0, "user_place_share": 0.0,
              "user_place_days_since": 0.0, "user_place_never": 1.0, "user_category_share": 0.0}

def haversine(lat1, lon1, lat2, lon2):
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    return 2 * R_KM * np.arcsin(np.minimum(np.sqrt(a), 1.0))


def active_users(train_path, spec, k):
    """segment text -> its k users with the most training rows (ties: smaller id)."""
    names = [c["name"] for c in spec["categorical"]]
    cols = ["user_id"] + (["segment"] if "segment" in names else [])
    t = pq.read_table(train_path, columns=cols)
    users = t.column("user_id").to_pylist()
    segs = [str(s) for s in t.column("segment").to_pylist()] if "segment" in names else ["all"] * len(users)
    counts = collections.defaultdict(collections.Counter)
    for s, u in zip(segs, users):
        counts[s][u] += 1
    return {s: [u for u, _ in sorted(c.items(), key=lambda x: (-x[1], x[0]))[:k]] for s, c in counts.items()}


def user_values(train_path, spec):
    """Declared users-table inputs (and their `_missing` indicators): name -> {user: value}."""
    tables = {s["feature"]: s["table"] for s in spec.get("sources", [])}
    names = [n for n in [c["name"] for c in spec["categorical"]] + [n["name"] for n in spec["numeric"]]
             if n not in ("user_id", "segment")
             and tables.get(n, tables.get(n[:-len("_missing")] if n.endswith("_missing") else None)) == "users"]
    if not names:
        return {}
    t = pq.read_table(train_path, columns=["user_id", *names])
    users = t.column("user_id").to_pylist()
    out = {}
    for n in names:
        values = {}
        for u, v in zip(users, t.column(n).to_pylist()):
            assert values.setdefault(u, v) == v, f"user {u} has two values of {n}"
        out[n] = values
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--features", required=True)
    ap.add_argument("--table", required=True)
    ap.add_argument("--samples", type=int, default=10)
    a = ap.parse_args()

    spec = json.load(open(os.path.join(a.model, "manifest.json")))["feature_spec"]
    table = pq.read_table(a.table)
    kv = pq.ParquetFile(a.table).metadata.metadata
    meta = {k.decode(): v.decode() for k, v in kv.items() if k.startswith(b"reco_cli.")}
    inspect = json.loads(subprocess.run([a.cli, "inspect", a.model, "--json"], capture_output=True, text=True,
                                        check=True).stdout)
    assert meta["reco_cli.model_content_sha256"] == inspect["content_sha256"], "table made from another model"
    prep = json.load(open(os.path.join(a.features, "prepare.json")))
    assert int(meta["reco_cli.feature_snapshot_ts"]) == prep["summary"]["snapshot_ts"]
    deg, radius, k = float(meta["reco_cli.cell_deg"]), float(meta["reco_cli.radius_km"]), int(meta["reco_cli.k"])
    assert radius == prep["config"]["radius_km"]
    hour, dow = int(meta["reco_cli.hour"]), int(meta["reco_cli.dow"])
    seg_users = json.loads(meta["reco_cli.segment_users"])
    mine_users = active_users(os.path.join(a.features, "train.parquet"), spec, int(meta["reco_cli.users_per_segment"]))
    assert seg_users == mine_users, "the users standing for each segment are not the most active ones"
    per_user = user_values(os.path.join(a.features, "train.parquet"), spec)

    places = pq.read_table(os.path.join(a.features, "places.parquet"))
    plat, plon = places.column("place_lat").to_numpy(), places.column("place_lon").to_numpy()
    visits = places.column("visits").to_numpy().astype(np.float64)
    pid = [str(v) for v in places.column("place_id").to_pylist()]
    cat = [str(v) for v in places.column("category").to_pylist()] if "category" in places.column_names else None

    # The table's cells are the busiest ones (that have a candidate), in order of visits.
    cell_visits = collections.Counter()
    for la, lo, v in zip(plat, plon, visits):
        cell_visits[(int(np.floor(la / deg)), int(np.floor(lo / deg)))] += v
    ranked = [c for c, _ in sorted(cell_visits.items(), key=lambda x: (-x[1], x[0]))]
    rows = table.to_pylist()
    cells = {(r["cell_lat"], r["cell_lon"]) for r in rows}
    with_cands = [c for c in ranked if (haversine((c[0] + .5) * deg, (c[1] + .5) * deg, plat, plon) <= radius).any()]
    assert cells == set(with_cands[:len(cells)]), "the table's cells are not the busiest ones"

    keys = sorted({(r["segment"], r["cell_lat"], r["cell_lon"], r["category"]) for r in rows}, key=str)
    rng = random.Random(7)
    sample = rng.sample(keys, min(a.samples, len(keys)))
    sample.append(next(x for x in keys if x[3] is None))
    if any(x[3] is not None for x in keys):
        sample.append(next(x for x in keys if x[3] is not None))

    cols = {c["name"]: [] for c in spec["categorical"]}
    cols.update({n["name"]: [] for n in spec["numeric"]})
    owners = []  # (key index, user index, place row, distance)
    for ki, (seg, ci, cj, category) in enumerate(sample):
        clat, clon = (ci + 0.5) * deg, (cj + 0.5) * deg
        dist = haversine(clat, clon, plat, plon)
        cand = [i for i in range(len(pid)) if dist[i] <= radius and (category is None or cat[i] == category)]
        users = seg_users[seg] or [None]
        for ui, user in enumerate(users):
            for i in cand:
                owners.append((ki, ui, i, dist[i]))
                for c in spec["categorical"]:
                    name = c["name"]
                    if name == "user_id":
                        cols[name].append(user)
                    elif name == "segment":
                        cols[name].append(int(seg) if c.get("dtype", "int64") == "int64" else seg)
                    elif name in per_user:
                        cols[name].append(per_user[name][user])
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
                    elif name in per_user:
                        v = per_user[name][user]
                    elif name in NO_HISTORY:
                        v = NO_HISTORY[name]
                    else:
                        v = places.column(name)[i].as_py()
                    cols[name].append(np.float32(v))
    with tempfile.TemporaryDirectory() as tmp:
        data, out = os.path.join(tmp, "cands.parquet"), os.path.join(tmp, "scores.parquet")
        arrays = {}
        for c in spec["categorical"]:
            typ = pa.int64() if c.get("dtype", "int64") == "int64" else pa.string()
            # A multi-valued column (a place's tags): lists, as the snapshot holds them.
            arrays[c["name"]] = pa.array(cols[c["name"]], pa.list_(typ) if c.get("bag") else typ)
        for n in spec["numeric"]:
            arrays[n["name"]] = pa.array(cols[n["name"]], pa.float32())
        pq.write_table(pa.table(arrays), data)
        subprocess.run([a.cli, "predict", "--model", a.model, "--data", data, "--out", out, "--quiet"],
                       check=True, stdout=subprocess.DEVNULL)
        prob = 1.0 / (1.0 + np.exp(-pq.read_table(out).column("logit").to_numpy().astype(np.float64)))

    by_key = collections.defaultdict(list)
    for r in rows:
        by_key[(r["segment"], r["cell_lat"], r["cell_lon"], r["category"])].append(r)
    for ki, key in enumerate(sample):
        sums, dists = collections.defaultdict(list), {}
        for j, (kj, _, i, d) in enumerate(owners):
            if kj == ki:
                sums[i].append(prob[j])
                dists[i] = d
        mine = sorted(((float(np.mean(v)), i) for i, v in sums.items()), key=lambda t: (-t[0], t[1]))
        want = mine[:k]
        got = sorted(by_key[key], key=lambda r: r["rank"])
        assert [r["rank"] for r in got] == list(range(1, len(got) + 1)), key
        assert len(got) == len(want), (key, len(got), len(want))
        for (ws, wi), g in zip(want, got):
            assert abs(g["score"] - ws) <= 1e-6, (key, g, ws)
            if g["place_id"] != pid[wi]:
                # Only a tie within float tolerance may swap two places.
                alt = [s for s, i in mine if pid[i] == g["place_id"]]
                assert alt and abs(alt[0] - ws) <= 1e-6, (key, g["place_id"], pid[wi])
            gi = pid.index(g["place_id"])
            assert abs(g["distance_km"] - dists[gi]) <= 1e-3, (key, g, dists[gi])
    names = set(cat or [])
    assert all(r["category"] is None or r["category"] in names for r in rows), "a category key that no place has"
    print(f"precompute OK: {len(sample)} keys of {len(keys)} equal brute-force top-{k} "
          f"({len(owners)} user x candidate rows); {len(cells)} busiest cells; segment users verified"
          + (f"; users scored with their own {sorted(per_user)}" if per_user else ""))


if __name__ == "__main__":
    main()
