#!/usr/bin/env bash
# Peak RSS and throughput of each stage at one synthetic scale: the quickstart recipe with
# USERS users (3000 is the quickstart, 30000 ten times its interactions), one epoch each for
# train and distill. Prints one markdown row per stage: time, peak RSS, rows, rows/s; prepare
# runs twice, in memory (streamed at 10x: the default limit is 1,000,000 interactions) and
# streamed, and the two feature directories must be equal byte for byte.
#
#   scripts/scale_rss.sh USERS OUT_DIR        (RECO_CLI=path/to/reco-cli to pick the binary)
set -euo pipefail
users=${1:?usage: scale_rss.sh USERS OUT_DIR}
out=${2:?usage: scale_rss.sh USERS OUT_DIR}
bin=${RECO_CLI:-${CARGO_TARGET_DIR:-target}/release/reco-cli}
rm -rf "$out" && mkdir -p "$out"
recipe="$out/recipe.toml"
sed -e "s/^users = .*/users = $users/" -e "s/^epochs = .*/epochs = 1/" \
    -e "s/^scratch_baseline = .*/scratch_baseline = false/" recipes/quickstart.toml > "$recipe"

rows_of() { # "interactions" (from synth.json) or a split name (from prepare.json) -> rows
    if [[ $1 == interactions ]]; then
        python3 -c "import json; print(json.load(open('$out/raw/synth.json'))['summary']['interactions'])"
    else
        python3 -c "import json; print(json.load(open('$out/features/prepare.json'))['summary']['rows']['$1'])"
    fi
}
measure() { # stage rows-source command...
    local stage=$1 rows=$2; shift 2
    /usr/bin/time -f "%e %M" -o "$out/time.txt" "$bin" -q "$@" > /dev/null
    read -r secs kb < "$out/time.txt"
    rows=$(rows_of "$rows")
    python3 -c "s,kb,r='$secs',$kb,$rows; print(f'| $stage | {float(s):.2f} s | {kb/1024:.0f} MB | {r:,} | {r/max(float(s),1e-9):,.0f} |')"
}

echo "| stage | time | peak RSS | rows | rows/s |"
echo "|---|---|---|---|---|"
measure synth interactions datasets synth --users "$users" --places 300 --days 56 --seed 42 --out "$out/raw"
measure prepare interactions prepare --recipe "$recipe" --out "$out"
# The same preparation streamed through disk whatever the size (the default streams past
# 1,000,000 interactions); its files are the same bytes.
sed "s/^ranking_queries = .*/&\nmax_rows_in_memory = 0/" "$recipe" > "$out/recipe-stream.toml"
mkdir -p "$out/stream" && ln -sfn "$(cd "$out" && pwd)/raw" "$out/stream/raw"
measure "prepare, streamed" interactions prepare --recipe "$out/recipe-stream.toml" --out "$out/stream"
for f in "$out"/features/*; do cmp -s "$f" "$out/stream/features/${f##*/}" || { echo "streamed ${f##*/} differs" >&2; exit 1; }; done
measure "train (1 epoch)" train train --recipe "$recipe" --out "$out"
measure "distill (1 epoch)" train distill --recipe "$recipe" --out "$out" --no-scratch
f="$out/features"
measure quantize test quantize --model "$out/teacher" --calibration "$f/calibration.parquet" \
    --data "$f/test.parquet" --ranking "$f/ranking.parquet" --out "$out/teacher-int8"
measure "eval (2 models)" test eval "$out/teacher" "$out/teacher-int8" --data "$f/test.parquet"
measure predict train predict --model "$out/teacher" --data "$f/train.parquet" --out "$out/predictions.parquet"
