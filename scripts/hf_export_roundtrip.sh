#!/usr/bin/env bash
# Exports each transformer family with `pipe export --format hf` and checks that transformers,
# loading the export, gives the probabilities `pipe predict` gives.
#
#   scripts/hf_export_roundtrip.sh [MODEL_DIR...]
#
# For each model folder (default: every folder of tests/fixtures/families), it trains a tiny run
# on it (64 AG News rows, 2 AdamW steps, 32 tokens: the pipeline of tests/it/families.rs), exports
# it, predicts the first 20 texts of data/ag_news/test.csv (title + " " + description) with
# `pipe predict RUN - --json`, and runs scripts/hf_roundtrip.py (atol 1e-4) on the export with
# those predictions. One line per folder: PASS or FAIL with the max |probability difference|, or
# SKIP where pipe refuses the folder's model_type. Exits 1 if any folder fails.
#
# PIPE_BIN: the pipe binary (default: $CARGO_TARGET_DIR or target, then release/pipe).
# PYTHON: a Python with torch and transformers (default: python3), e.g.
#   python -m venv v && v/bin/pip install torch transformers && PYTHON=v/bin/python scripts/hf_export_roundtrip.sh
set -euo pipefail

# Paths given relative to the caller's folder, made absolute before moving to the repository.
absolute() { if [[ $1 == */* && $1 != /* ]]; then echo "$PWD/$1"; else echo "$1"; fi; }
pipe=$(absolute "${PIPE_BIN:-${CARGO_TARGET_DIR:-target}/release/pipe}")
python=$(absolute "${PYTHON:-python3}")
args=()
for a in "$@"; do args+=("$(absolute "$a/")"); done
root=$(cd "$(dirname "$0")/.." && pwd)
[[ -n ${PIPE_BIN:-} || -n ${CARGO_TARGET_DIR:-} ]] || pipe=$root/target/release/pipe
cd "$root"
export HF_HUB_OFFLINE=1 PIPE_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if [[ ! -x $pipe ]]; then
    echo "error: no pipe binary at $pipe (cargo build --release, or set PIPE_BIN)" >&2
    exit 2
fi
if ! "$python" -c 'import torch, transformers' 2>/dev/null; then
    echo "error: $python cannot import torch and transformers (set PYTHON; see the header of $0)" >&2
    exit 2
fi

if ((${#args[@]} > 0)); then
    models=("${args[@]%/}")
else
    models=()
    for d in tests/fixtures/families/*/; do
        [[ -f $d/config.json ]] && models+=("${d%/}")
    done
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/hf-export-roundtrip.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The texts: the first 20 test rows, title + " " + description, one per line.
"$python" - data/ag_news/test.csv >"$work/texts.txt" <<'EOF'
import csv, sys
with open(sys.argv[1], newline="", encoding="utf-8") as f:
    for i, row in zip(range(20), csv.reader(f)):
        print(row[1] + " " + row[2])
EOF

# One FAIL line for folder $name with why ($1) and the end of the log ($2).
fail() {
    printf 'FAIL  %-16s %s\n' "$name" "$1"
    sed 's/^/      /' "$2" | tail -n 20
    failed=1
}

failed=0
for model in "${models[@]}"; do
    name=$(basename "$model")
    if [[ ! -f $model/config.json ]]; then
        printf 'FAIL  %-16s %s\n' "$name" "$model has no config.json"
        failed=1
        continue
    fi
    model=$(cd "$model" && pwd)
    dir="$work/$name"
    mkdir -p "$dir"
    cat >"$dir/family.toml" <<EOF
name = "family"
seed = 3

[dataset]
format = "ag_news_csv"
train = "data/ag_news/train.csv"
test = "data/ag_news/test.csv"
text = ["title", "description"]
labels = ["World", "Sports", "Business", "Sci/Tech"]
validation = 0.25
limit = 64

[vectorizer]
type = "pretrained"
from = "$model"
max_length = 32

[[model.layers]]
name = "encoder"
type = "hf_encoder"
from = "$model"

[[model.layers]]
type = "dropout"
rate = 0.1

[[model.layers]]
name = "classifier"
type = "dense"
units = 4

[[stages]]
name = "train"
epochs = 1
batch_size = 16
steps_per_epoch = 2
optimizer = { type = "adamw", learning_rate = 1e-3 }
EOF
    if ! "$pipe" check "$dir/family.toml" >"$dir/log" 2>&1; then
        if grep -q 'model_type `[^`]*` is not supported' "$dir/log"; then
            printf 'SKIP  %-16s %s\n' "$name" "$(grep -o 'model_type `[^`]*` is not supported' "$dir/log" | head -n 1)"
        else
            fail "pipe check failed" "$dir/log"
        fi
        continue
    fi
    if ! "$pipe" run "$dir/family.toml" --quiet --runs-dir="$dir/runs" >"$dir/log" 2>&1; then
        fail "pipe run failed" "$dir/log"
        continue
    fi
    run=$(echo "$dir"/runs/family/*/)
    if ! "$pipe" export "$run" --format hf --out "$dir/export" >"$dir/log" 2>&1; then
        fail "pipe export failed" "$dir/log"
        continue
    fi
    if ! "$pipe" predict "$run" - --json <"$work/texts.txt" >"$dir/predictions.jsonl" 2>"$dir/log"; then
        fail "pipe predict failed" "$dir/log"
        continue
    fi
    # One JSON object per line → one JSON list.
    { echo '['; paste -sd, "$dir/predictions.jsonl"; echo ']'; } >"$dir/predictions.json"
    if "$python" scripts/hf_roundtrip.py --export "$dir/export" --predictions "$dir/predictions.json" \
        --texts "$work/texts.txt" >"$dir/log" 2>&1; then
        printf 'PASS  %-16s %s\n' "$name" "$(grep -o 'max |prob diff|.*' "$dir/log")"
    else
        fail "$(grep -o 'max |prob diff|.*' "$dir/log" || echo "hf_roundtrip.py failed")" "$dir/log"
    fi
done
exit $failed
