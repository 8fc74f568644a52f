#!/usr/bin/env python3
"""Batch scoring on Spark: an exported reco-cli model (model.onnx, preprocessing in the graph)
in onnxruntime inside `mapInArrow`, one session per Python worker, over every partition of a
feature table; writes the scores next to the key columns as Parquet.

  spark-submit scripts/spark/score.py --model ARTIFACT_DIR --data FEATURES.parquet --out SCORES_DIR

The model's inputs are the feature spec's raw columns (ids in their own type, unnormalized
numbers), read from the artifact's manifest; the output has the key columns (`--keys`, default
user_id, place_id, timestamp), `logit` and `probability`.
"""
import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
from pyspark.sql import SparkSession
from pyspark.sql import types as T


# One onnxruntime session per Python worker process (reused by every task it runs).
_SESSIONS = {}


def session(model_bytes):
    import hashlib

    import onnxruntime as ort

    key = hashlib.sha256(model_bytes).hexdigest()
    if key not in _SESSIONS:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        _SESSIONS[key] = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    return _SESSIONS[key]


def feeds_of(b, cats, nums):
    """The model's raw inputs from one Arrow batch: nulls, float ids and non-finite numbers
    are errors naming the column (never a silently wrong id or score)."""
    feeds = {}
    for name, dtype in cats:
        col = b.column(name)
        if col.null_count:
            raise ValueError(f"column `{name}` has {col.null_count} nulls, expected ids")
        if dtype == "string":
            feeds[name] = np.array(col.to_pylist(), dtype=object)
        elif pa.types.is_integer(col.type):
            feeds[name] = col.to_numpy(zero_copy_only=False).astype(np.int64)
        else:
            raise ValueError(f"column `{name}` has type {col.type}, expected integer ids")
    for name in nums:
        col = b.column(name)
        v = col.to_numpy(zero_copy_only=False).astype(np.float32) if not col.null_count else None
        if v is None or not np.all(np.isfinite(v)):
            raise ValueError(f"column `{name}` has nulls or non-finite values, expected numbers")
        feeds[name] = v
    return feeds


def scorer(model_bytes, spec, keys):
    cats = [(c["name"], c.get("dtype", "int64")) for c in spec["categorical"]]
    nums = [n["name"] for n in spec["numeric"]]

    def score(batches):
        sess = session(model_bytes)
        for b in batches:
            if b.num_rows == 0:
                continue
            prob, logit = sess.run(["probability", "logit"], feeds_of(b, cats, nums))
            if not np.all(np.isfinite(logit)):
                raise ValueError("the model scored a row as a non-finite logit")
            out = {k: b.column(k) for k in keys}
            out["logit"] = pa.array(np.asarray(logit, dtype=np.float32).reshape(-1))
            out["probability"] = pa.array(np.asarray(prob, dtype=np.float32).reshape(-1))
            yield pa.RecordBatch.from_pydict(out)

    return score


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="artifact directory with model.onnx")
    ap.add_argument("--data", required=True, help="feature Parquet file or directory")
    ap.add_argument("--out", required=True)
    ap.add_argument("--keys", default="user_id,place_id,timestamp")
    ap.add_argument("--master", default=None)
    a = ap.parse_args()
    model = Path(a.model)
    manifest = json.loads((model / "manifest.json").read_text())
    onnx_file = manifest.get("exports", {}).get("onnx", {}).get("file", "model.onnx")
    model_bytes = (model / onnx_file).read_bytes()
    bags = [c["name"] for c in manifest["feature_spec"]["categorical"] if c.get("bag")]
    if bags:
        # Their graph inputs are padded ids and a mask, which this job does not build yet.
        sys.exit(f"score.py: {a.model} has multi-valued features ({', '.join(bags)}); this job scores "
                 "models without them (use `reco-cli predict`, or onnxruntime with padded ids and a mask)")
    keys = a.keys.split(",")
    # Python workers run this interpreter (its numpy, pyarrow, onnxruntime), unless told otherwise.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    b = SparkSession.builder.appName("reco-score").config("spark.sql.session.timeZone", "UTC")
    if a.master:
        b = b.master(a.master)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    df = spark.read.parquet(a.data)
    fields = [df.schema[k] for k in keys] + [T.StructField("logit", T.FloatType()), T.StructField("probability", T.FloatType())]
    scored = df.mapInArrow(scorer(model_bytes, manifest["feature_spec"], keys), T.StructType(fields))
    scored.write.mode("overwrite").parquet(a.out)
    print(json.dumps({"rows": spark.read.parquet(a.out).count(), "model": manifest["kind"]}))
    spark.stop()


if __name__ == "__main__":
    main()
