#!/usr/bin/env bash
# GPU check for pipe, unattended, in one call.
#
#   scripts/gpu-check.sh build     # on a machine with Rust: builds the CUDA binary into dist/pipe-cuda
#   scripts/gpu-check.sh [BIN]     # anywhere: runs the checks (default BIN: dist/pipe-cuda, else
#                                  # target/release/pipe); the GPU part is skipped, with a message,
#                                  # when no NVIDIA GPU is visible
#
# The GPU machines have a driver but no Rust toolchain and no network, so the binary is built
# here (it links no CUDA library; libcuda and NVRTC are opened at run time) and carried.
# What it checks:
#   1. nvidia-smi -L
#   2. model A: the same starting weights (--save-init / --init-weights) and batches, dropout
#      off, 3 optimizer steps on CPU and on CUDA: training losses within 1e-3 relative
#   3. model A, the lesson's 1 epoch on CUDA: a complete run folder, loadable on CPU (pipe eval --device cpu)
#   4. bert_finetune (both stages, limited rows) on CUDA, and its first-step losses against CPU,
#      when all-MiniLM-L6-v2 can be found (PIPE_MODEL_PATH, ../shared/models, HF cache)
#   5. pipe bench --device cuda: train / inference samples/s
# Output: a PASS/FAIL/SKIP line per check on stdout, details under $OUT (default /tmp/pipe-gpu-check).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "build" ]; then
    # Pin the CUDA bindings to the driver's CUDA 13.0 (cudarc otherwise picks its newest).
    export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
    cargo build --release --features cuda --locked --target-dir "${CUDA_TARGET_DIR:-target/cuda}" || exit 1
    mkdir -p dist && cp "${CUDA_TARGET_DIR:-target/cuda}/release/pipe" dist/pipe-cuda
    echo "built dist/pipe-cuda"
    exit 0
fi

BIN="${1:-}"
if [ -z "$BIN" ]; then
    if [ -x dist/pipe-cuda ]; then BIN=dist/pipe-cuda; else BIN=target/release/pipe; fi
fi
OUT="${OUT:-/tmp/pipe-gpu-check}"
rm -rf "$OUT" && mkdir -p "$OUT"
export PIPE_OFFLINE=1
FAILED=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; FAILED=1; }
skip() { echo "SKIP $*"; }

echo "== pipe gpu-check: $BIN ($($BIN --version 2>&1))"
if command -v nvidia-smi >/dev/null && nvidia-smi -L; then
    GPU=1
else
    GPU=0
    echo "no NVIDIA GPU visible (nvidia-smi -L failed): the CUDA checks are skipped, the CPU part runs"
fi
if [ "$GPU" = 1 ] && ! $BIN run --help >/dev/null 2>&1; then fail "binary does not start"; fi

# Losses of the train rows of a run's metrics.csv (one optimizer step per epoch here).
losses() { awk -F, '$4=="train"{print $5}' "$1"/metrics.csv; }
only_run() { ls -d "$1"/*/*/ 2>/dev/null | head -1; }
compare_losses() { # name cpu_dir gpu_dir
    python3 - "$2" "$3" <<'PY' && pass "$1: CPU and CUDA losses within 1e-3 relative" || fail "$1: losses differ (see above)"
import csv, sys
def rows(d):
    return [float(r["loss"]) for r in csv.DictReader(open(d + "/metrics.csv")) if r["split"] == "train"]
a, b = rows(sys.argv[1]), rows(sys.argv[2])
print("cpu ", a); print("cuda", b)
ok = len(a) == len(b) and len(a) > 0 and all(abs(x - y) <= 1e-3 * max(abs(x), 1e-12) for x, y in zip(a, b))
sys.exit(0 if ok else 1)
PY
}

# --- 2. model A parity -------------------------------------------------------------------
A_PARITY=(--set dataset.limit=1024 --set stages.train.steps_per_epoch=1 --set stages.train.epochs=3
          --set model.block.dropout=0.0 --set model.dropout.rate=0.0 --set model.dropout_1.rate=0.0 --quiet)
$BIN run pipelines/agnews_transformer.toml "${A_PARITY[@]}" --device cpu --runs-dir "$OUT/a-cpu" \
    --save-init "$OUT/a-init.safetensors" > "$OUT/a-cpu.log" 2>&1 \
    && pass "model A on CPU (reference)" || fail "model A on CPU: $(tail -1 "$OUT/a-cpu.log")"
if [ "$GPU" = 1 ]; then
    $BIN run pipelines/agnews_transformer.toml "${A_PARITY[@]}" --device cuda --runs-dir "$OUT/a-cuda" \
        --init-weights "$OUT/a-init.safetensors" > "$OUT/a-cuda.log" 2>&1 \
        && compare_losses "model A first steps" "$(only_run "$OUT/a-cpu")" "$(only_run "$OUT/a-cuda")" \
        || fail "model A parity run on CUDA: $(tail -1 "$OUT/a-cuda.log")"
else
    skip "model A CPU/CUDA loss parity (no GPU)"
fi

# --- 3. model A, the lesson's epoch ------------------------------------------------------
if [ "$GPU" = 1 ]; then
    if $BIN run pipelines/agnews_transformer.toml --device cuda --runs-dir "$OUT/a-full" --quiet > "$OUT/a-full.log" 2>&1; then
        RUN=$(only_run "$OUT/a-full")
        missing=""
        for f in pipeline.toml run.json metrics.csv timing.csv summary.txt log.txt vectorizer/tokenizer.json \
                 checkpoints/train-last.safetensors checkpoints/train-best.safetensors model/model.safetensors; do
            [ -f "$RUN/$f" ] || missing="$missing $f"
        done
        [ -z "$missing" ] && pass "model A 1 epoch on CUDA: run folder complete ($(grep -o '"test.accuracy": [0-9.]*' "$RUN/run.json"))" \
            || fail "model A run folder lacks:$missing"
        $BIN eval "$RUN" --data data/ag_news/test.csv --device cpu > "$OUT/a-eval-cpu.log" 2>&1 \
            && pass "GPU-trained run evaluates on CPU: $(grep '^accuracy' "$OUT/a-eval-cpu.log")" \
            || fail "pipe eval --device cpu on the CUDA run: $(tail -1 "$OUT/a-eval-cpu.log")"
    else
        fail "model A 1 epoch on CUDA: $(tail -1 "$OUT/a-full.log")"
    fi
else
    skip "model A 1 epoch on CUDA (no GPU)"
fi

# --- 4. BERT ------------------------------------------------------------------------------
if $BIN check pipelines/bert_finetune.toml > "$OUT/bert-check.log" 2>&1; then
    B_PARITY=(--set dataset.limit=256 --set stages.features.steps_per_epoch=1 --set stages.features.epochs=2
              --set stages.finetune.steps_per_epoch=1 --set stages.finetune.epochs=2
              --set model.bert.dropout=0.0 --set model.dropout.rate=0.0 --set runtime.feature_cache=false --quiet)
    $BIN run pipelines/bert_finetune.toml "${B_PARITY[@]}" --device cpu --runs-dir "$OUT/b-cpu" \
        --save-init "$OUT/b-init.safetensors" > "$OUT/b-cpu.log" 2>&1 \
        && pass "bert_finetune on CPU (reference)" || fail "bert_finetune on CPU: $(tail -1 "$OUT/b-cpu.log")"
    if [ "$GPU" = 1 ]; then
        $BIN run pipelines/bert_finetune.toml "${B_PARITY[@]}" --device cuda --runs-dir "$OUT/b-cuda" \
            --init-weights "$OUT/b-init.safetensors" > "$OUT/b-cuda.log" 2>&1 \
            && compare_losses "bert_finetune first steps (both stages)" "$(only_run "$OUT/b-cpu")" "$(only_run "$OUT/b-cuda")" \
            || fail "bert_finetune on CUDA: $(tail -1 "$OUT/b-cuda.log")"
        $BIN run pipelines/bert_finetune.toml --set dataset.limit=512 --device cuda --runs-dir "$OUT/b-full" --quiet \
            > "$OUT/b-full.log" 2>&1 && pass "bert_finetune (512 rows, both stages) on CUDA: $(grep -o '"test.accuracy": [0-9.]*' "$(only_run "$OUT/b-full")/run.json")" \
            || fail "bert_finetune 512 rows on CUDA: $(tail -1 "$OUT/b-full.log")"
    else
        skip "bert_finetune on CUDA (no GPU)"
    fi
    BENCH_MODEL=all
else
    skip "BERT checks: all-MiniLM-L6-v2 not found ($(tail -1 "$OUT/bert-check.log"))"
    BENCH_MODEL=a
fi

# --- 5. throughput ------------------------------------------------------------------------
if [ "$GPU" = 1 ]; then
    $BIN bench --device cuda --model "$BENCH_MODEL" | tee "$OUT/bench-cuda.txt" && pass "bench on CUDA (figures above)" || fail "bench on CUDA"
else
    skip "bench on CUDA (no GPU)"
fi
echo "== details in $OUT"
exit $FAILED
