#!/usr/bin/env bash
# Serving throughput and latency: `pipe serve` beside a FastAPI + uvicorn server running
# transformers' pipeline on the same MiniLM weights (scripts/serve_peer.py), driven by the same
# client (examples/serve_load.rs: keep-alive connections, one AG News text per request), at 1,
# 16 and 64 clients, the two servers alternated. Model A (agnews_transformer) is served alone
# (it has no transformers twin).
#
#   scripts/serve-bench.sh              # needs ../shared/models/all-MiniLM-L6-v2 and a Python
#   PYTHON=/work/venv/bin/python SECONDS_EACH=10 ROUNDS=3 scripts/serve-bench.sh
#
# Trains two small runs first (the weights' values do not change the speed). Prints one JSON
# line per measurement.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
bin=$target/release/pipe
client=$target/release/examples/serve_load
python=${PYTHON:-python3}
seconds=${SECONDS_EACH:-8}
rounds=${ROUNDS:-2}
[[ -x $bin && -x $client ]] || { echo "build first: cargo build --release --example serve_load" >&2; exit 2; }
work=$(mktemp -d)
trap 'pkill -TERM -P $$ 2> /dev/null || true; rm -rf "$work"' EXIT
python3 - "$work/texts.txt" <<'PY'
import csv, sys
rows = list(csv.reader(open("data/ag_news/test.csv")))[:2000]
open(sys.argv[1], "w").write("\n".join((r[1] + " " + r[2]).replace("\\", " ") for r in rows) + "\n")
PY
"$bin" run pipelines/agnews_transformer.toml --quiet --runs-dir "$work/runs" \
    --set stages.train.epochs=1 --set dataset.limit=500 > /dev/null
minilm=sentence-transformers/all-MiniLM-L6-v2
"$bin" run pipelines/hf_bert_classifier.toml --quiet --runs-dir "$work/runs" \
    --set "vectorizer.from=$minilm" --set "model.bert.from=$minilm" --set vectorizer.padding=longest \
    --set dataset.limit=64 --set stages.train.steps_per_epoch=2 --set stages.train.validation_steps=1 > /dev/null
run_a=$(ls -d "$work"/runs/agnews_transformer/*/)
run_b=$(ls -d "$work"/runs/hf_bert_classifier/*/)
"$bin" export "$run_b" --format hf --out "$work/hf" > /dev/null 2>&1

wait_port() { for _ in $(seq 200); do (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
measure() { # name port
    for clients in 1 16 64; do
        printf '{"server": "%s", ' "$1"
        "$client" "$2" "$clients" "$seconds" "$work/texts.txt" | cut -c2-
    done
}
serve_pipe() { # name run port
    "$bin" serve "$2" --port "$3" 2> /dev/null & local pid=$!
    wait_port "$3"; measure "$1" "$3"; kill -TERM $pid; wait $pid
}
serve_peer() {
    "$python" scripts/serve_peer.py "$work/hf" 18091 2> /dev/null & local pid=$!
    wait_port 18091; measure "fastapi+transformers minilm" 18091; kill -TERM $pid; wait $pid || true
}
for round in $(seq "$rounds"); do
    serve_pipe "pipe model-a" "$run_a" 18090
    serve_pipe "pipe minilm" "$run_b" 18090
    serve_peer
done
