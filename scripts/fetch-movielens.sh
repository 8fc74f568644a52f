#!/usr/bin/env bash
# Fetches MovieLens-100k and a zip code table from the package registries (never committed:
# the MovieLens licence forbids redistribution) and imports them as raw tables:
#   datasets/ml-100k/            ml-100k.inter ml-100k.user ml-100k.item (RecBole's copy), zipcodes.csv
#   datasets/ml-100k/tables/     users.parquet places.parquet interactions.parquet
# Sources: the PyPI package recbole==1.2.1 (recbole/dataset_example/ml-100k/) and the npm
# package vega-datasets@3.2.1 (data/zipcodes.csv). Needs python3 -m pip, npm, and a built
# reco-cli (RECO_CLI, default $CARGO_TARGET_DIR/release/reco-cli or target/release/reco-cli).
set -euo pipefail
cd "$(dirname "$0")/.."
DEST="${1:-datasets/ml-100k}"
BIN="${RECO_CLI:-${CARGO_TARGET_DIR:-target}/release/reco-cli}"
mkdir -p "$DEST"
if [ ! -f "$DEST/ml-100k.inter" ] || [ ! -f "$DEST/zipcodes.csv" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --disable-pip-version-check --no-deps -d "$tmp" recbole==1.2.1
  python3 - "$tmp" "$DEST" <<'PY'
import glob, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(f"{tmp}/recbole-1.2.1-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    for name in ("ml-100k.inter", "ml-100k.user", "ml-100k.item"):
        with open(f"{dest}/{name}", "wb") as out:
            out.write(z.read(f"recbole/dataset_example/ml-100k/{name}"))
PY
  (cd "$tmp" && npm pack --silent vega-datasets@3.2.1 >/dev/null)
  tar -xzf "$tmp"/vega-datasets-3.2.1.tgz -C "$tmp" package/data/zipcodes.csv
  cp "$tmp/package/data/zipcodes.csv" "$DEST/zipcodes.csv"
fi
if [ -x "$BIN" ]; then
  "$BIN" datasets import movielens-100k --from "$DEST" --out "$DEST/tables" --quiet
  echo "fetch-movielens: tables in $DEST/tables"
else
  echo "fetch-movielens: data in $DEST; now run: reco-cli datasets import movielens-100k --from $DEST --out $DEST/tables"
fi
