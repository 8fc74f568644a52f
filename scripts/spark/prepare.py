#!/usr/bin/env python3
"""The `reco-cli prepare` features as a PySpark job, for interaction logs larger than a node.

Reads the recipe TOML itself and the raw tables (users, places, interactions as Parquet), and
writes a features directory `reco-cli train` consumes: `train.parquet/`, `valid.parquet/`,
`test.parquet/` as hive-partitioned Parquet (`shard=FFFFF-BBBBBB/part-*.parquet`: input file
and block of a million rows, so that listing the shards in name order gives the rows in input
order, as reco-cli writes them: a teacher trained on either is the same model), a
`calibration.parquet/` sample, and `feature_spec.json` (vocabularies and mean/std fitted on
the training split, as reco-cli fits them).

The same definitions as reco-cli (src/pipeline/prepare.rs, featurize.rs):
- time split: cut_valid = t0 + round(span * (1 - valid_fraction - test_fraction)),
  cut_test = t0 + round(span * (1 - test_fraction)); train ts < cut_valid <= valid < cut_test <= test;
- point-in-time place statistics over the trailing window [t - window, t), strictly before
  the row (a range window per place): ln(1 + visits), ln(1 + impressions),
  (visits + 1) / (impressions + 2), mean rating of rated events else the place's rating else 0;
- haversine distance from the interaction's location to the place (earth radius 6371.0088 km);
- hour and day-of-week as sin/cos of the local time in the recipe's time zone (Monday = 0);
- place_rating and price_level from the places table, nulls as 0;
- point-in-time user history (prepare.history, default true; false: none of these columns),
  after price_level, from the user's visits (the interactions with label 1, every interaction
  of visits-only data, never a sampled negative) strictly before the row's time t (the row's
  own visit, and any at the same second, never count), for every row, sampled negatives
  included (their own user and place): with visits = all of them, place_visits = those to the
  row's place, place_visits_w = those to it in [t - window, t), category_visits = those to
  places of the row's place's category (0 when it has none: null or empty; a visit to a place
  without one counts in visits only), and since_last = t - the time of the last visit to the
  place: user_visits = ln(1 + visits), user_place_visits = ln(1 + place_visits),
  user_place_visits_w = ln(1 + place_visits_w), user_place_share = place_visits / visits,
  user_place_days_since = ln(1 + since_last / 86400), user_place_never = 1 when never visited
  else 0, user_category_share = category_visits / visits (shares 0 when visits = 0,
  days_since 0 when never visited); in float64, written as float32 (reco-cli:
  reco-runtime features/history.rs, src/pipeline/prepare/history.rs).

Implicit data (visits only: no `label` column) gets reco-cli's sampled negatives: visits farther
than prepare.radius_km from the interaction's location are dropped, and each visit is followed
by up to prepare.negatives_per_positive other places within the radius, found by a grid-cell
join (places bucketed by cells of radius-sized degrees, each visit joined with the cells its
bounding box covers, then the exact haversine) and drawn by a seeded hash of (input file
number, row, place): the same draws wherever the input lies.
Their trailing-window statistics count the real visits only; impression counts and visit
rates are left out, as reco-cli leaves them out (they would repeat the visit count).

Sampling cannot match reco-cli bit for bit (its RNG is its own): which places are a visit's
negatives differs (their number, and the features of any (visit, place) both pick, are equal),
the calibration rows are a seeded Spark sample of the training split, not reco-cli's, and the
ranking set is not built (reco-cli's ranking candidates are drawn with its RNG; evaluate with
reco-cli's ranking.parquet). Not written either: places.parquet and snapshot_ts (what precompute and
serving read; run reco-cli prepare on a sample for those). Input errors reco-cli refuses
(missing or null columns, labels other than 0/1, unknown or repeated ids, a split without both
classes) are refused here too, exit 2. Scope: explicit 0/1 labels (a `label` column) or visits only, the interaction's own
coordinates as context, the column names `reco-cli datasets synth` writes; other recipes are
refused with a message naming what is not supported (no silent difference).

  spark-submit scripts/spark/prepare.py --recipe R.toml --raw RAW_DIR --out FEATURES_DIR
"""
import argparse
import json
import os
import math
import sys
import tomllib
import zoneinfo
from pathlib import Path

from pyspark.sql import SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

EARTH_RADIUS_KM = 6371.0088
DEFAULTS = {
    "window_days": 7.0, "valid_fraction": 0.15, "test_fraction": 0.15, "calibration_rows": 2000,
    "radius_km": 5.0, "negatives_per_positive": 4, "history": True,
}
NUMERIC = [
    "distance_km", "hour_sin", "hour_cos", "dow_sin", "dow_cos", "place_visits_w",
    "place_impressions_w", "place_visit_rate_w", "place_rating_w", "place_rating", "price_level",
]
# The user-history columns (prepare.history), after the other numeric ones, in model order.
HISTORY = [
    "user_visits", "user_place_visits", "user_place_visits_w", "user_place_share", "user_place_days_since",
    "user_place_never", "user_category_share",
]
CATEGORICAL = ["user_id", "place_id", "segment", "category"]
# What implicit data leaves out (every event is a visit).
IMPLICIT_DROPS = {"place_impressions_w", "place_visit_rate_w"}
# Rows per output shard (hive partition `shard=FFFFF-BBBBBB`: input file, block of rows).
SHARD_ROWS = 1_000_000


def refuse(msg):
    print(f"spark prepare: {msg}", file=sys.stderr)
    sys.exit(2)


# The [data] keys this job reproduces; any other changes reco-cli's features (column mappings,
# timestamp units, declared features, other contexts, label rules, table locations), so the
# recipe is refused rather than prepared differently.
DATA_KEYS = {"source", "users", "places", "days", "timezone", "dir"}


def settings(recipe_path):
    r = tomllib.loads(Path(recipe_path).read_text())
    data, prep = r.get("data", {}), r.get("prepare", {})
    extra = sorted(set(data) - DATA_KEYS)
    if extra:
        refuse(f"{recipe_path}: data.{extra[0]} is not supported by the Spark job (it reads the column names `reco-cli datasets synth` writes); use reco-cli prepare")
    cfg = {k: prep.get(k, v) for k, v in DEFAULTS.items()}
    if not (cfg["window_days"] > 0 and 0 < cfg["valid_fraction"] and 0 < cfg["test_fraction"]
            and cfg["valid_fraction"] + cfg["test_fraction"] < 1 and int(cfg["calibration_rows"]) >= 1
            and cfg["radius_km"] > 0 and int(cfg["negatives_per_positive"]) >= 1):
        refuse(f"{recipe_path}: [prepare] window_days, valid_fraction, test_fraction, calibration_rows, radius_km or negatives_per_positive out of range")
    if not isinstance(cfg["history"], bool):
        refuse(f"{recipe_path}: [prepare] history = {cfg['history']!r}: expected true or false")
    cfg["timezone"] = data.get("timezone", "UTC")
    try:
        zoneinfo.ZoneInfo(cfg["timezone"])
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        refuse(f"{recipe_path}: data.timezone = {cfg['timezone']!r}: not an IANA time zone name")
    cfg["seed"] = r.get("seed", 42)
    return cfg


# Columns each table must have (the names `reco-cli datasets synth` writes).
REQUIRED = {
    "interactions": ["user_id", "place_id", "timestamp", "lat", "lon", "label", "rating", "oracle_p"],
    "places": ["place_id", "lat", "lon", "category", "price_level", "rating"],
    "users": ["user_id", "segment"],
}


def validate(inter, places, users, implicit):
    """What reco-cli refuses, refused here too, naming the table and column (exit 2)."""
    for name, df in (("interactions", inter), ("places", places), ("users", users)):
        required = [c for c in REQUIRED[name] if not (implicit and name == "interactions" and c in ("label", "oracle_p"))]
        missing = [c for c in required if c not in df.columns]
        if missing:
            refuse(f"{name}.parquet: missing column `{missing[0]}` (the Spark job reads the columns `reco-cli datasets synth` writes)")
    if "utc_offset" in inter.columns:
        refuse("interactions.parquet: a `utc_offset` column (reco-cli would use it for local time); use reco-cli prepare")
    if not isinstance(inter.schema["timestamp"].dataType, (T.LongType, T.IntegerType)):
        refuse(f"interactions.parquet: column `timestamp` is {inter.schema['timestamp'].dataType.simpleString()}, expected integer Unix seconds")
    bad = {
        "timestamp": F.col("timestamp").isNull(),
        "label": F.col("label").isNull() | ~F.col("label").isin(0, 1) if not implicit else F.lit(False),
        "lat": F.col("lat").isNull() | F.isnan("lat") | (F.abs("lat") > 90),
        "lon": F.col("lon").isNull() | F.isnan("lon") | (F.abs("lon") > 180),
        "rating": F.isnan("rating") | (F.abs("rating") == float("inf")),
        "user_id": F.col("user_id").isNull(),
        "place_id": F.col("place_id").isNull(),
    }
    counts = inter.agg(*[F.sum(F.when(e, 1).otherwise(0)).alias(c) for c, e in bad.items()]).first()
    for c in bad:
        if counts[c]:
            refuse(f"interactions.parquet: column `{c}` has {counts[c]} null, NaN or out-of-range values")
    for name, df, key in (("places", places, "place_id"), ("users", users, "user_id")):
        if df.count() != df.select(key).distinct().count():
            refuse(f"{name}.parquet: `{key}` repeats (one row per {key[:-3]} expected)")
        unknown = inter.join(df.select(key), key, "left_anti").count()
        if unknown:
            refuse(f"interactions.parquet: {unknown} rows reference a `{key}` absent from {name}.parquet")
    pbad = places.where(F.col("lat").isNull() | F.isnan("lat") | F.col("lon").isNull() | F.isnan("lon")).count()
    if pbad:
        refuse(f"places.parquet: {pbad} places without coordinates")


# The largest value reco-cli (and Spark's long) holds: a uint64 above it is refused.
INT64_MAX = 2**63 - 1


def read_parquet(spark, path, name):
    """A table as Spark reads it, with every integer width (int8..int64, uint8..uint64) as long,
    as reco-cli reads them. Parquet uint64 is Spark's decimal(20,0): a value above the largest
    long is refused naming its file, row and value (a cast would fail, or wrap to null with
    try_cast). float16 columns, which Spark cannot read, are refused naming them."""
    try:
        df = spark.read.parquet(str(path))
    except Exception as e:  # Spark's AnalysisException; only the FLOAT16 case is ours to explain.
        if "FLOAT16" not in str(e):
            raise
        refuse(f"{name}.parquet: {float16_columns(path)} float16, which Spark cannot read (reco-cli prepare can); write it as float32")
    for f in df.schema.fields:
        t = f.dataType
        if isinstance(t, (T.ByteType, T.ShortType, T.IntegerType)):
            df = df.withColumn(f.name, F.col(f.name).cast("long"))
        elif isinstance(t, T.DecimalType) and t.scale == 0:
            over = df.where(F.col(f.name) > F.lit(INT64_MAX)).select(
                F.col("_metadata.file_path").alias("file"), F.col("_metadata.row_index").alias("row"), F.col(f.name).cast("string").alias("v")
            ).first()
            if over is not None:
                refuse(f"{over['file'].removeprefix('file:')}: column `{f.name}` row {over['row']} is {over['v']}, expected an integer of at most {INT64_MAX}")
            df = df.withColumn(f.name, F.col(f.name).cast("long"))
    return df


def float16_columns(path):
    """`column `x`` (or `a column`) of the first file under `path` that is float16 (pyarrow,
    when the driver has it)."""
    try:
        import pyarrow.parquet as pq
        files = [path] if Path(path).is_file() else sorted(Path(path).rglob("*.parquet"))
        names = [f.name for f in pq.read_schema(files[0]) if str(f.type) in ("halffloat", "float16")]
        return f"column `{names[0]}` is" if names else "a column is"
    except Exception:
        return "a column is"


def read_tables(spark, raw):
    raw = Path(raw)
    # Where each row sits in the input (file, row): the output keeps that order, as reco-cli's does.
    inter = read_parquet(spark, raw / "interactions.parquet", "interactions").select(
        "*", F.col("_metadata.file_path").alias("_file"), F.col("_metadata.row_index").alias("_row")
    )
    # The input files by number (their order by path): what row keys and draws hash, so that
    # the output does not depend on where the input lies.
    files = sorted(r[0] for r in inter.select("_file").distinct().collect())
    index = spark.createDataFrame([(f, i) for i, f in enumerate(files)], "_file string, _file_no int")
    inter = inter.join(F.broadcast(index), "_file")
    implicit = "label" not in inter.columns
    if implicit:
        # Visits only: every interaction is a positive; negatives are sampled (`implicit_rows`).
        inter = inter.drop("oracle_p").withColumn("label", F.lit(1))
    places = read_parquet(spark, raw / "places.parquet", "places")
    users = read_parquet(spark, raw / "users.parquet", "users")
    return inter, places, users, implicit


def numeric(implicit, history):
    """The numeric features written, in model order (the places table always has a category
    column here, so the history columns include user_category_share)."""
    return [c for c in NUMERIC if not (implicit and c in IMPLICIT_DROPS)] + (HISTORY if history else [])


def haversine(lat1, lon1, lat2, lon2):
    """Great-circle distance in km between columns of degrees, in the operation order of
    reco-cli's `distance_km` feature (featurize.rs distance_expr)."""
    rad = math.pi / 180.0
    hdlat = (F.col(lat2) - F.col(lat1)) * rad / 2.0
    hdlon = (F.col(lon2) - F.col(lon1)) * rad / 2.0
    a = F.sin(hdlat) * F.sin(hdlat) + F.cos(F.col(lat1) * rad) * F.cos(F.col(lat2) * rad) * F.sin(hdlon) * F.sin(hdlon)
    return 2.0 * EARTH_RADIUS_KM * F.asin(F.least(F.sqrt(a), F.lit(1.0)))


def within_km(lat1, lon1, lat2, lon2, r):
    """Whether two points are within r km, in the operation order of reco-cli's haversine_km
    (geo.rs), which decides the radius: a place at the boundary falls on the same side."""
    p1, p2 = F.radians(lat1), F.radians(lat2)
    hdp, hdl = (p2 - p1) / 2.0, F.radians(F.col(lon2) - F.col(lon1)) / 2.0
    a = F.sin(hdp) * F.sin(hdp) + F.cos(p1) * F.cos(p2) * F.sin(hdl) * F.sin(hdl)
    return 2.0 * EARTH_RADIUS_KM * F.asin(F.least(F.sqrt(a), F.lit(1.0))) <= r


def negatives(visits, places, cfg):
    """Up to negatives_per_positive places other than the visited one within radius_km of each
    visit's location: a grid-cell join (cells of radius_km of latitude in degrees; each visit
    is joined with every cell its bounding box covers, as reco-cli's GridIndex::within), the
    exact distance, then the candidates with the smallest seeded hash of (visit, place)."""
    r, k = float(cfg["radius_km"]), int(cfg["negatives_per_positive"])
    km_per_deg = EARTH_RADIUS_KM * math.pi / 180.0
    cell = r / km_per_deg
    cand = places.select(
        F.col("place_id").alias("_cand"), F.col("lat").cast("double").alias("_clat"), F.col("lon").cast("double").alias("_clon")
    ).withColumn("_cr", F.floor(F.col("_clat") / cell)).withColumn("_cc", F.floor(F.col("_clon") / cell))
    dlat = r / km_per_deg
    dlon = F.lit(r) / (km_per_deg * F.greatest(F.cos(F.radians("lat")), F.lit(0.05)))
    box = visits.select("_file", "_file_no", "_row", "place_id", "lat", "lon").withColumn(
        "_cr", F.explode(F.sequence(F.floor((F.col("lat") - dlat) / cell), F.floor((F.col("lat") + dlat) / cell)))
    ).withColumn("_cc", F.explode(F.sequence(F.floor((F.col("lon") - dlon) / cell), F.floor((F.col("lon") + dlon) / cell))))
    pairs = box.join(cand, ["_cr", "_cc"]).where(
        (F.col("_cand") != F.col("place_id")) & within_km("lat", "lon", "_clat", "_clon", r)
    )
    draw = Window.partitionBy("_file", "_row").orderBy(F.xxhash64(F.lit(int(cfg["seed"])), "_file_no", "_row", "_cand"), "_cand")
    picked = pairs.withColumn("_k", F.row_number().over(draw)).where(F.col("_k") <= k)
    return picked.select("_file", "_row", F.col("_cand").alias("place_id"), "_k")


def implicit_rows(inter, places, cfg):
    """Visits within the radius (`_k` 0), each followed by its sampled negatives (`_k` 1..k,
    label 0, the visit's user, time and location); and how many visits were dropped."""
    p = places.select("place_id", F.col("lat").cast("double").alias("_plat"), F.col("lon").cast("double").alias("_plon"))
    v = inter.join(F.broadcast(p), "place_id", "left")
    within = within_km("lat", "lon", "_plat", "_plon", float(cfg["radius_km"]))
    dropped = v.where(~within).count()
    cols = ["_file", "_file_no", "_row", "user_id", "timestamp", "lat", "lon"]
    visits = v.where(within).select(*cols, "place_id", "label", F.lit(0).alias("_k"))
    neg = negatives(visits, places, cfg).join(visits.select(*cols), ["_file", "_row"]).withColumn("label", F.lit(0))
    return visits.unionByName(neg), dropped


def window_stats(inter, window):
    """Per-place statistics of the events in [t - window, t), for every interaction."""
    w = Window.partitionBy("place_id").orderBy("timestamp").rangeBetween(-window, -1)
    rated = F.col("rating").isNotNull() & ~F.isnan("rating")
    # A sum over an empty window is null in SQL: no events before t count as 0.
    total = lambda e: F.coalesce(F.sum(e).over(w), F.lit(0))
    return (
        inter.withColumn("_k", F.lit(0))
        .withColumn("_imp", F.count(F.lit(1)).over(w))
        .withColumn("_vis", total(F.when(F.col("label") > 0.5, 1).otherwise(0)))
        .withColumn("_rsum", total(F.when(rated, F.col("rating")).otherwise(0.0)))
        .withColumn("_rn", total(F.when(rated, 1).otherwise(0)))
    )


def implicit_window_stats(rows, inter, window):
    """The same statistics for visits and sampled negatives alike, counting only the real
    visits (every interaction, also those dropped outside the radius): the rows and the
    events in one window per place, the events weighted 1 and the rows 0."""
    events = inter.select("place_id", "timestamp", "rating", F.lit(1).alias("_ev"))
    both = rows.withColumn("_ev", F.lit(0)).withColumn("rating", F.lit(None).cast("double")).unionByName(
        events, allowMissingColumns=True
    )
    w = Window.partitionBy("place_id").orderBy("timestamp").rangeBetween(-window, -1)
    rated = (F.col("_ev") == 1) & F.col("rating").isNotNull() & ~F.isnan("rating")
    total = lambda e: F.coalesce(F.sum(e).over(w), F.lit(0))
    return (
        both.withColumn("_vis", total(F.col("_ev")))
        .withColumn("_imp", F.col("_vis"))
        .withColumn("_rsum", total(F.when(rated, F.col("rating")).otherwise(0.0)))
        .withColumn("_rn", total(F.when(rated, 1).otherwise(0)))
        .where(F.col("_ev") == 0)
    )


def history_stats(rows, visits, places, window):
    """The user-history counts of every row (`_hv` visits, `_hpv` place visits, `_hpvw` in the
    trailing window, `_hcv` category visits, `_hlast` time of the last visit to the place or
    null), from `visits` (user_id, place_id, timestamp: the real visits only) strictly before
    the row's time (the trailing window: [t - window, t)): the rows and the visits in one
    set, the visits weighted 1 and the rows 0, summed over range windows ending 1 second
    before each timestamp, per user, per (user, place) and per (user, category)."""
    cat = F.col("category").cast("string")
    cats = places.select("place_id", F.when(cat.isNotNull() & (cat != ""), cat).alias("_hcat"))
    events = visits.select("user_id", "place_id", "timestamp", F.lit(1).alias("_hev"))
    both = rows.withColumn("_hev", F.lit(0)).unionByName(events, allowMissingColumns=True).join(
        F.broadcast(cats), "place_id", "left"
    )
    before = lambda *keys: Window.partitionBy(*keys).orderBy("timestamp").rangeBetween(Window.unboundedPreceding, -1)
    trailing = Window.partitionBy("user_id", "place_id").orderBy("timestamp").rangeBetween(-window, -1)
    total = lambda w: F.coalesce(F.sum("_hev").over(w), F.lit(0))
    return (
        both.withColumn("_hv", total(before("user_id")))
        .withColumn("_hpv", total(before("user_id", "place_id")))
        .withColumn("_hpvw", total(trailing))
        .withColumn("_hlast", F.max(F.when(F.col("_hev") == 1, F.col("timestamp"))).over(before("user_id", "place_id")))
        .withColumn("_hcv", F.when(F.col("_hcat").isNull(), F.lit(0)).otherwise(total(before("user_id", "_hcat"))))
        .where(F.col("_hev") == 0)
        .drop("_hev", "_hcat")
    )


def features(df, places, users, cfg, implicit):
    """The feature columns of rows that carry their window statistics."""
    p = places.select(
        "place_id",
        F.col("lat").cast("double").alias("place_lat"),
        F.col("lon").cast("double").alias("place_lon"),
        F.col("category").cast("long").alias("category"),
        F.coalesce(F.col("price_level").cast("double"), F.lit(0.0)).alias("price_level"),
        F.col("rating").cast("double").alias("_static_rating"),
    )
    u = users.select("user_id", F.col("segment").cast("long").alias("segment"))
    df = df.join(F.broadcast(p), "place_id", "left").join(F.broadcast(u), "user_id", "left")
    # Local wall-clock seconds: the session runs in UTC, so the shifted timestamp reads back
    # as the local time.
    local = F.unix_timestamp(F.from_utc_timestamp(F.timestamp_seconds("timestamp"), cfg["timezone"])).cast("double")
    day = 86400.0
    hour = F.pmod(local, F.lit(day)) / 3600.0
    dow = F.pmod(F.floor(local / day) + 3.0, F.lit(7.0))
    mean_rating = F.when(F.col("_rn") > 0, F.col("_rsum") / F.col("_rn"))
    rating_w = F.coalesce(mean_rating, F.when(~F.isnan("_static_rating"), F.col("_static_rating")), F.lit(0.0))
    cols = {
        "distance_km": haversine("lat", "lon", "place_lat", "place_lon"),
        "hour_sin": F.sin(hour * (2 * math.pi / 24.0)),
        "hour_cos": F.cos(hour * (2 * math.pi / 24.0)),
        "dow_sin": F.sin(dow * (2 * math.pi / 7.0)),
        "dow_cos": F.cos(dow * (2 * math.pi / 7.0)),
        "place_visits_w": F.log1p(F.col("_vis").cast("double")),
        "place_impressions_w": F.log1p(F.col("_imp").cast("double")),
        "place_visit_rate_w": (F.col("_vis") + 1.0) / (F.col("_imp") + 2.0),
        "place_rating_w": rating_w,
        "place_rating": F.coalesce(F.when(~F.isnan("_static_rating"), F.col("_static_rating")), F.lit(0.0)),
        "price_level": F.col("price_level"),
    }
    if cfg["history"]:
        share = lambda n: F.when(F.col("_hv") > 0, F.col(n).cast("double") / F.col("_hv").cast("double")).otherwise(0.0)
        since = (F.col("timestamp") - F.col("_hlast")).cast("double")
        cols |= {
            "user_visits": F.log1p(F.col("_hv").cast("double")),
            "user_place_visits": F.log1p(F.col("_hpv").cast("double")),
            "user_place_visits_w": F.log1p(F.col("_hpvw").cast("double")),
            "user_place_share": share("_hpv"),
            "user_place_days_since": F.coalesce(F.log1p(since / day), F.lit(0.0)),
            "user_place_never": F.when(F.col("_hlast").isNull(), 1.0).otherwise(0.0),
            "user_category_share": share("_hcv"),
        }
    out = [F.col(c).cast("long").alias(c) for c in CATEGORICAL]
    out += [cols[c].cast(T.FloatType()).alias(c) for c in numeric(implicit, cfg["history"])]
    out += [F.col("label").cast(T.FloatType()).alias("label"), F.col("timestamp").cast("long").alias("timestamp")]
    if not implicit:
        out.append(F.col("oracle_p").cast(T.FloatType()).alias("oracle_p"))
    out += [F.col("_file"), F.col("_file_no"), F.col("_row"), F.col("_k")]
    return df.select(*out)


def with_shards(df):
    """`shard` = input file number and block of SHARD_ROWS rows, zero-padded: listed in name
    order, the shards give the rows back in input order."""
    shard = F.format_string("%05d-%06d", F.col("_file_no"), F.floor(F.col("_row") / SHARD_ROWS).cast("int"))
    return df.withColumn("shard", shard)


def cuts(df, cfg):
    t0, t1 = df.agg(F.min("timestamp"), F.max("timestamp")).first()
    span = float(t1 - t0)
    cut_valid = t0 + rust_round(span * (1.0 - cfg["valid_fraction"] - cfg["test_fraction"]))
    cut_test = t0 + rust_round(span * (1.0 - cfg["test_fraction"]))
    return cut_valid, cut_test


def rust_round(x):
    """Rust's f64::round: half away from zero (Python's round() is half to even)."""
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def fit_spec(train, spark_sources, names):
    cats = []
    for c in CATEGORICAL:
        vocab = sorted(r[0] for r in train.select(c).distinct().collect() if r[0] is not None)
        cats.append({"name": c, "dtype": "int64", "vocabulary": vocab})
    # Population mean and std of the f32 values in f64, std 1 when (near) constant: as
    # FeatureSpec::fit.
    # Two passes, as Rust: the mean, then the mean squared deviation from it.
    means = train.agg(*[F.avg(F.col(c).cast("double")).alias(c) for c in names]).first()
    var = train.agg(*[F.avg((F.col(c).cast("double") - means[c]) ** 2).alias(c) for c in names]).first()
    nums = []
    for c in names:
        sd = math.sqrt(var[c])
        nums.append({"name": c, "mean": means[c], "std": sd if sd > 1e-12 else 1.0})
    return {"categorical": cats, "numeric": nums, "label": "label", "sources": spark_sources}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--raw", required=True, help="directory of users/places/interactions.parquet")
    ap.add_argument("--out", required=True, help="features directory to write")
    ap.add_argument("--master", default=None, help="e.g. local[2]; default: spark-submit's")
    ap.add_argument("--shuffle-partitions", type=int, help="spark.sql.shuffle.partitions (small data: a few)")
    ap.add_argument("--sources-from", help="a reco-cli feature_spec.json whose `sources` to copy (raw column types)")
    a = ap.parse_args()
    cfg = settings(a.recipe)
    # Python workers run this interpreter (its numpy, pyarrow, onnxruntime), unless told otherwise.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    b = SparkSession.builder.appName("reco-prepare").config("spark.sql.session.timeZone", "UTC")
    if a.master:
        b = b.master(a.master)
    if a.shuffle_partitions:
        b = b.config("spark.sql.shuffle.partitions", str(a.shuffle_partitions))
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    inter, places, users, implicit = read_tables(spark, a.raw)
    validate(inter, places, users, implicit)
    window = rust_round(cfg["window_days"] * 86400.0)
    if implicit:
        if inter.groupBy("user_id").count().where(F.col("count") > 1).isEmpty():
            refuse("interactions.parquet: implicit data (no label column) where every user has one event: nothing to learn preferences from; expected users with several visits")
        rows, dropped = implicit_rows(inter, places, cfg)
        stats = implicit_window_stats(rows, inter, window)
    else:
        stats, dropped = window_stats(inter, window), 0
    if cfg["history"]:
        # The real visits: every interaction of implicit data (also those dropped outside the
        # radius), the label-1 ones of explicit data.
        stats = history_stats(stats, inter.where(F.col("label") == 1), places, window)
    df = with_shards(features(stats, places, users, cfg, implicit)).cache()
    if df.isEmpty():
        refuse(f"interactions.parquet: no interaction is left after dropping {dropped} farther than prepare.radius_km = {cfg['radius_km']} from their place")
    cut_valid, cut_test = cuts(df, cfg)
    split = F.when(F.col("timestamp") < cut_valid, "train").when(F.col("timestamp") < cut_test, "valid").otherwise("test")
    df = df.withColumn("_split", split)
    # Every split needs both classes, as reco-cli requires.
    for name, pos, neg in df.groupBy("_split").agg(F.sum("label"), F.sum(1 - F.col("label"))).collect():
        if not pos or not neg:
            refuse(f"the {name} split has no {'visits' if not pos else 'non-visits'}; change prepare.valid_fraction/test_fraction")
    if df.select("_split").distinct().count() < 3:
        refuse("a split is empty; give more days of interactions or change prepare.valid_fraction/test_fraction")
    # Written beside --out and renamed into place: never half a features directory.
    final = Path(a.out)
    if final.exists() and any(final.iterdir()):
        refuse(f"--out {final}: exists and is not empty (the job writes a whole features directory)")
    out = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    counts = {}
    for name in ("train", "valid", "test"):
        part = df.where(F.col("_split") == name)
        # One task per shard, rows in input order: one file per shard directory.
        ordered = part.repartition("shard").sortWithinPartitions("shard", "_row", "_k").drop("_split", "_file", "_file_no", "_row", "_k")
        ordered.write.mode("overwrite").partitionBy("shard").parquet(str(out / f"{name}.parquet"))
        counts[name] = part.count()
    train = df.where(F.col("_split") == "train").drop("_split", "shard", "_file", "_file_no", "_row", "_k")
    n = min(int(cfg["calibration_rows"]), counts["train"])
    cal = train.orderBy(F.rand(cfg["seed"])).limit(n)
    cal.coalesce(1).write.mode("overwrite").parquet(str(out / "calibration.parquet"))
    sources = json.loads(Path(a.sources_from).read_text())["sources"] if a.sources_from else []
    spec = fit_spec(train, sources, numeric(implicit, cfg["history"]))
    (out / "feature_spec.json").write_text(json.dumps(spec, indent=2))
    summary = {
        "rows": counts | {"calibration": n}, "split_times": [cut_valid, cut_test], "engine": "spark " + spark.version,
        "labels": "implicit" if implicit else "explicit", "dropped_outside_radius": dropped,
    }
    (out / "prepare.json").write_text(json.dumps({"summary": summary, "config": cfg}, indent=2))
    if final.exists():
        final.rmdir()
    out.rename(final)
    print(json.dumps(summary))
    spark.stop()


if __name__ == "__main__":
    main()
