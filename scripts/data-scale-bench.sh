#!/usr/bin/env bash
# Data at scale: peak memory and time of a run on N synthetic AG News rows (made by
# scripts/synthetic_agnews.py from the repo's rows; nothing is downloaded), first with an empty
# encoded cache, then from the cache.
#
#   scripts/data-scale-bench.sh 120000                   # the whole epoch
#   STEPS=20 scripts/data-scale-bench.sh 3600000         # the data path, then 20 steps
#   SPEC=pipelines/agnews_cnn_wordpiece.toml scripts/data-scale-bench.sh 120000
#
# PIPE_BIN: the binary (default $CARGO_TARGET_DIR/release/pipe, else target/release/pipe).
# SPEC: the pipeline (default pipelines/agnews_transformer_masked.toml), trained one epoch;
# STEPS caps its steps. WORK: where the data and runs go (default a temporary folder, removed
# at the end). Prints one line per run: peak RSS, wall time, and the data path's own times
# from the run's log.
set -euo pipefail
rows=${1:?usage: scripts/data-scale-bench.sh ROWS}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${PIPE_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/pipe}
spec=${SPEC:-pipelines/agnews_transformer_masked.toml}
[[ -x $bin ]] || { echo "no pipe binary at $bin (cargo build --release first)" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "needs /usr/bin/time (GNU time) for the peak RSS" >&2; exit 2; }
work=${WORK:-$(mktemp -d)}
[[ -z ${WORK:-} ]] && trap 'rm -rf "$work"' EXIT
mkdir -p "$work"
data=$work/agnews-$rows.csv
[[ -f $data ]] || python3 "$root/scripts/synthetic_agnews.py" "$rows" "$data" 2> /dev/null
sets=(--set stages.train.epochs=1 --set "dataset.train=$data")
[[ -n ${STEPS:-} ]] && sets+=(--set "stages.train.steps_per_epoch=$STEPS")
cd "$root"
for pass in "empty cache" "from the cache"; do
    name=bench-$RANDOM
    if ! /usr/bin/time -f '%M %e' -o "$work/time" "$bin" run "$spec" "${sets[@]}" \
        --set "name=$name" --runs-dir "$work/runs" --quiet > /dev/null 2> "$work/stderr"; then
        cat "$work/stderr" >&2
        exit 1
    fi
    read -r rss wall < "$work/time"
    log=$(ls "$work"/runs/"$name"/*/log.txt)
    took() { grep -h "$1" "$log" | sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' | head -1; }
    printf '%-15s %7d rows  peak RSS %6.0f MB  wall %6.1f s  vectorizer %5.2f s  encoding %5.2f s\n' \
        "$pass" "$rows" "$((rss / 1024))" "$wall" "$(took 'vectorizer ready')" "$(took 'data encoded')"
    rm -rf "$work/runs/$name"
done
