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


def scorer(model_bytes, spec, keys):
    cats = [(c["name"], c.get("dtype", "int64")) for c in spec["categorical"]]
    nums = [n["name"] for n in spec["numeric"]]

    def score(batches):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
        for b in batches:
            if b.num_rows == 0:
                continue
            feeds = {}
            for name, dtype in cats:
                col = b.column(name)
                feeds[name] = np.array(col.to_pylist(), dtype=object) if dtype == "string" else col.to_numpy(zero_copy_only=False).astype(np.int64)
            for name in nums:
                feeds[name] = b.column(name).to_numpy(zero_copy_only=False).astype(np.float32)
            prob, logit = sess.run(["probability", "logit"], feeds)
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
