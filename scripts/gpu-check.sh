#!/usr/bin/env bash
# GPU check for pipe, unattended, in one call.
#
#   scripts/gpu-check.sh build     # on a machine with Rust: the CUDA binary (profile `dist`: fat
#                                  # LTO, stripped; PIPE_DIST_PROFILE=release for a faster
#                                  # build) into dist/pipe-cuda (prints its size), then `bundle`
#   scripts/gpu-check.sh bundle    # gathers what the GPU machine needs into gpu-bundle/ (git-ignored,
#                                  # carried by the device tool) and prints what would travel
#   scripts/gpu-check.sh [BIN]     # anywhere: runs the checks (default BIN: gpu-bundle/pipe-cuda.gz
#                                  # unpacked into dist/pipe-cuda, else dist/pipe-cuda, else
#                                  # target/release/pipe); the GPU part is
#                                  # skipped, with a message, when no NVIDIA GPU is visible
#
# The GPU machines have a driver and a python3 with PyTorch, but no Rust toolchain, no network and
# no ../shared, so the binary is built here (it links no CUDA library; libcuda and NVRTC are opened
# at run time) and carried in gpu-bundle/ with the PyTorch peers and MiniLM's config and tokenizer
# (not its 90 MB of weights: there the BERT checks use random weights in MiniLM's shape, as the
# PyTorch peer does). The repo's data/ag_news and tests/fixtures travel with the working tree.
# What it checks:
#   1. nvidia-smi -L
#   2. model A: the same starting weights (--save-init / --init-weights) and batches, dropout
#      off, 3 optimizer steps on CPU and on CUDA: training losses within 1e-3 relative; and on
#      CPU, a run that panics (PIPE_TEST_PANIC_AT_STEP) ends failed, as the tests check for the
#      release build (the carried binary is built with panic = "abort")
#   5. (run next: the figure matters most) pipe bench --device cuda beside PyTorch on the same
#      GPU (torch_model_a.py, torch_model_b.py --device cuda), interleaved rounds, with the ratios
#   2b. model A's same first steps in bf16 and f16 against f32 (on CUDA; on CPU without a GPU),
#      within 2e-2 (bf16) and 5e-2 (f16) relative
#   3. model A, the lesson's 1 epoch on CUDA: a complete run folder, loadable on CPU (pipe eval --device cpu)
#   4. bert_finetune (both stages, limited rows) on CUDA, and its first-step losses against CPU
#      (MiniLM's weights where found, else random weights from its config.json)
#   6. with two or more GPUs: model A's epoch with `--devices N` (all of them) against one GPU
#   7. (with what is left of the budget) bf16-mixed on CUDA: model A's first steps against
#      f32's within 2e-2, and one round of the bench beside PyTorch under autocast
# Output: a PASS/FAIL/SKIP line per check on stdout, details under $GPU_CHECK_DIR (default
# /tmp/pipe-gpu-check); where the device tool's $OUT is set, the logs (no weights) come back in it.
set -uo pipefail
cd "$(dirname "$0")/.."

BUNDLE=gpu-bundle
MIB=$((1024 * 1024))
# What the device tool carries at most: the working tree and the carried paths together.
TRAVEL_LIMIT=$((64 * MIB))

bundle() {
    local peers=../shared/peers minilm=../shared/models/all-MiniLM-L6-v2
    [ -x dist/pipe-cuda ] || { echo "bundle: dist/pipe-cuda is missing (run: scripts/gpu-check.sh build)"; return 1; }
    for f in "$peers"/{torch_model_a.py,torch_model_b.py,common.py} "$minilm"/{config.json,tokenizer.json}; do
        [ -f "$f" ] || { echo "bundle: $f is missing"; return 1; }
    done
    rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/peers" "$BUNDLE/models/all-MiniLM-L6-v2"
    # Carried compressed (gzip -9: 35.1 MiB -> 12.6 MiB measured): the device tool's 64 MiB is
    # for the working tree and the carried folder together, and the checks unpack it in a second.
    gzip -9 -c dist/pipe-cuda > "$BUNDLE/pipe-cuda.gz" || return 1
    cp "$peers"/{torch_model_a.py,torch_model_b.py,common.py} "$BUNDLE/peers/"
    # Everything of MiniLM but model.safetensors: the checks build it from config.json.
    find "$minilm" -maxdepth 1 -type f ! -name '*.safetensors' -exec cp {} "$BUNDLE/models/all-MiniLM-L6-v2/" \;
    local tree carried
    tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')
    carried=$(du -sb "$BUNDLE" | cut -f1)
    awk -v t="$tree" -v c="$carried" -v l="$TRAVEL_LIMIT" -v m="$MIB" 'BEGIN {
        printf "bundle: working tree %.1f MiB + %s %.1f MiB = %.1f MiB to travel (limit %.0f MiB)\n",
               t / m, "gpu-bundle", c / m, (t + c) / m, l / m }'
    [ $((tree + carried)) -lt "$TRAVEL_LIMIT" ] || { echo "bundle: too large to carry"; return 1; }
}

if [ "${1:-}" = "build" ]; then
    # Pin the CUDA bindings to the driver's CUDA 13.0 (cudarc otherwise picks its newest).
    export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
    target="${CUDA_TARGET_DIR:-target/cuda}"
    # Only the pipe binary links with identical-code folding (lld): the copies of the same generic
    # code that burn's and cubecl's crates each instantiate become one. And LLVM inlines only
    # what does not grow the code (-inline-threshold=0; loops are still vectorised and unrolled
    # as at opt-level 3): 41.7 MiB instead of 45.6, with model A's CPU throughput unchanged
    # (docs/gpu.md). Passing both to `cargo rustc` instead of RUSTFLAGS keeps every
    # dependency's build as it is.
    profile="${PIPE_DIST_PROFILE:-dist}"
    cargo rustc --profile "$profile" --features cuda --locked --bin pipe --target-dir "$target" \
        -- -C link-arg=-Wl,--icf=all -C llvm-args=-inline-threshold=0 || exit 1
    mkdir -p dist && cp "$target/$profile/pipe" dist/pipe-cuda
    echo "built dist/pipe-cuda: $(stat -c %s dist/pipe-cuda | awk -v m="$MIB" '{printf "%.1f MiB", $1 / m}')"
    scripts/check-libs.sh dist/pipe-cuda && bundle
    exit
fi
if [ "${1:-}" = "bundle" ]; then
    bundle
    exit
fi

BIN="${1:-}"
WORK="${GPU_CHECK_DIR:-/tmp/pipe-gpu-check}"
# Two checks in one folder delete each other's runs (seen: CI's beside a dry run), so one at a time.
# (Where a machine lacks flock, the check runs unguarded rather than not at all.)
if command -v flock >/dev/null; then
    exec 9> "$WORK.lock"
    flock -n 9 || { echo "FAIL another gpu-check is running in $WORK (GPU_CHECK_DIR names another folder)"; exit 1; }
fi
rm -rf "$WORK" && mkdir -p "$WORK"
if [ -z "$BIN" ] && [ -f "$BUNDLE/pipe-cuda.gz" ]; then
    # Into dist/ in the working tree (ignored, never carried) rather than /tmp, which a container
    # may mount noexec. gzip is on every Linux base image; python3 (there for the peers) if not.
    BIN=dist/pipe-cuda
    mkdir -p dist
    if command -v gzip >/dev/null; then
        gzip -dc "$BUNDLE/pipe-cuda.gz" > "$BIN.part"
    else
        python3 -c 'import gzip, shutil, sys; shutil.copyfileobj(gzip.open(sys.argv[1]), sys.stdout.buffer)' \
            "$BUNDLE/pipe-cuda.gz" > "$BIN.part"
    fi && chmod +x "$BIN.part" && mv "$BIN.part" "$BIN" \
        || { echo "FAIL could not unpack $BUNDLE/pipe-cuda.gz"; rm -f "$BIN.part"; exit 1; }
fi
if [ -z "$BIN" ]; then
    for b in dist/pipe-cuda target/release/pipe; do
        if [ -x "$b" ]; then BIN=$b; break; fi
    done
fi
export PIPE_OFFLINE=1
PEERS_DIR=../shared/peers
if [ -d "$BUNDLE" ]; then
    export PIPE_MODEL_PATH="$PWD/$BUNDLE/models${PIPE_MODEL_PATH:+:$PIPE_MODEL_PATH}"
    PEERS_DIR="$BUNDLE/peers"
fi
FAILED=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; FAILED=1; }
skip() { echo "SKIP $*"; }
started=$(date +%s)
# On a GPU machine each command has a time limit, and all of them one budget (the device call's
# limit is 540 s): a check that hangs is a FAIL line, the checks after it still run while the
# budget lasts, and the logs still come back. The bench runs right after the first CUDA check:
# it is the figure that matters most.
BUDGET_S="${GPU_CHECK_BUDGET_S:-480}"
# Without a GPU (CI, a dry run) there is no device call to fit in, and a loaded machine may be
# several times slower: no limits there.
limit() { # SECONDS COMMAND...: at most SECONDS, and no longer than what is left of the budget
    local want=$1 left rc
    shift
    [ "${GPU:-0}" = 1 ] && command -v timeout >/dev/null || { "$@"; return; }
    left=$((BUDGET_S - ($(date +%s) - started)))
    [ "$left" -lt "$want" ] && want=$left
    if [ "$want" -lt 10 ]; then
        echo "not run, the ${BUDGET_S} s budget is spent: ${*:1:3}" >&2
        return 124
    fi
    timeout -k 5 "$want" "$@"
    rc=$?
    [ "$rc" = 124 ] || [ "$rc" = 137 ] && echo "timed out after $want s: ${*:1:3}" >&2
    return "$rc"
}

echo "== pipe gpu-check: $BIN ($($BIN --version 2>&1))"
if command -v nvidia-smi >/dev/null && nvidia-smi -L; then
    GPU=1
else
    GPU=0
    echo "no NVIDIA GPU visible (nvidia-smi -L failed): the CUDA checks are skipped, the CPU part runs"
fi
# cudarc opens libnvrtc by name; where the loader's cache lacks it, use the CUDA toolkit's or
# the one PyTorch's wheels bring.
if [ "$GPU" = 1 ] && ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so'; then
    nvrtc=$(find /usr/local/cuda*/ /usr/local/nvidia /opt "$(python3 -c 'import site; print(site.getsitepackages()[0])' 2>/dev/null)" \
        -name 'libnvrtc.so*' 2>/dev/null | head -1)
    if [ -n "$nvrtc" ]; then
        export LD_LIBRARY_PATH="$(dirname "$nvrtc")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        echo "libnvrtc: $nvrtc (not in the loader's cache)"
    else
        echo "libnvrtc: not found (the CUDA runs will say so)"
    fi
fi
if [ "$GPU" = 1 ] && ! $BIN run --help >/dev/null 2>&1; then fail "binary does not start"; fi

only_run() { ls -d "$1"/*/*/ 2>/dev/null | head -1; }
compare_losses() { # name reference_dir other_dir [relative tolerance, default 1e-3] [what differs]
    local tol="${4:-1e-3}" what="${5:-CPU and CUDA}"
    python3 - "$2" "$3" "$tol" <<'PY' && pass "$1: $what losses within $tol relative" || fail "$1: losses differ (see above)"
import csv, sys
def rows(d):
    return [float(r["loss"]) for r in csv.DictReader(open(d + "/metrics.csv")) if r["split"] == "train"]
a, b, tol = rows(sys.argv[1]), rows(sys.argv[2]), float(sys.argv[3])
print("reference", a); print("other    ", b)
ok = len(a) == len(b) and len(a) > 0 and all(abs(x - y) <= tol * max(abs(x), 1e-12) for x, y in zip(a, b))
sys.exit(0 if ok else 1)
PY
    # It has said PASS or FAIL itself; `run && compare_losses || fail` must not say FAIL again.
    return 0
}

# --- 2. model A parity -------------------------------------------------------------------
A_PARITY=(--set dataset.limit=1024 --set stages.train.steps_per_epoch=1 --set stages.train.epochs=3
          --set model.block.dropout=0.0 --set model.dropout.rate=0.0 --set model.dropout_1.rate=0.0 --quiet)
limit 120 $BIN run pipelines/agnews_transformer.toml "${A_PARITY[@]}" --device cpu --runs-dir "$WORK/a-cpu" \
    --save-init "$WORK/a-init.safetensors" > "$WORK/a-cpu.log" 2>&1 \
    && pass "model A on CPU (reference)" || fail "model A on CPU: $(tail -1 "$WORK/a-cpu.log")"
# The carried binary is built with `panic = "abort"` (docs/gpu.md): a panic must still end the
# run with exit code 1 and a run.json that says failed, as the tests check for the release build.
PIPE_TEST_PANIC_AT_STEP=2 limit 60 $BIN run pipelines/agnews_transformer.toml "${A_PARITY[@]}" --device cpu \
    --runs-dir "$WORK/a-panic" > "$WORK/a-panic.log" 2>&1
panic_rc=$?
panic_run=$(only_run "$WORK/a-panic")
if [ "$panic_rc" = 1 ] && [ -n "$panic_run" ] && grep -q '"status": "failed"' "$panic_run/run.json" \
    && grep -q 'asked for a panic at step 2' "$panic_run/run.json"; then
    pass "a panic mid-stage: exit code 1, run.json failed with the panic's place"
else
    fail "a panic mid-stage: exit code $panic_rc, $(tail -1 "$WORK/a-panic.log")"
fi
if [ "$GPU" = 1 ]; then
    limit 180 $BIN run pipelines/agnews_transformer.toml "${A_PARITY[@]}" --device cuda --runs-dir "$WORK/a-cuda" \
        --init-weights "$WORK/a-init.safetensors" > "$WORK/a-cuda.log" 2>&1 \
        && compare_losses "model A first steps" "$(only_run "$WORK/a-cpu")" "$(only_run "$WORK/a-cuda")" \
        || fail "model A parity run on CUDA: $(tail -1 "$WORK/a-cuda.log")"
else
    skip "model A CPU/CUDA loss parity (no GPU)"
fi

# --- which BERT weights (the bench measures BERT only where bert_finetune checks) -----------
# MiniLM's weights where a searched folder has them; else random weights in its shape.
BERT_WEIGHTS=(--set model.bert.pretrained=false)
BENCH_WEIGHTS=(--random-weights)
WEIGHTS="random weights in MiniLM's shape"
IFS=: read -ra model_dirs <<< "${PIPE_MODEL_PATH:-}"
for d in "${model_dirs[@]}" models ../shared/models; do
    if [ -n "$d" ] && [ -f "$d/all-MiniLM-L6-v2/model.safetensors" ]; then
        BERT_WEIGHTS=() BENCH_WEIGHTS=() WEIGHTS="MiniLM's weights from $d"
        break
    fi
done
if limit 60 $BIN check pipelines/bert_finetune.toml "${BERT_WEIGHTS[@]}" > "$WORK/bert-check.log" 2>&1; then
    BERT=1 BENCH_MODEL=all
    echo "bert_finetune: $WEIGHTS"
else
    BERT=0 BENCH_MODEL=a
    skip "BERT checks: bert_finetune does not check ($(tail -1 "$WORK/bert-check.log"))"
fi

# --- 5. throughput, beside PyTorch on the same GPU ----------------------------------------
PEERS=()
if python3 -c 'import torch, transformers; assert torch.cuda.is_available()' > "$WORK/peers-python.log" 2>&1; then
    # 2 rounds (pipe, PyTorch, pipe, PyTorch) keep the whole check under 8 minutes.
    PEERS=(--peers-python python3 --peers-dir "$PEERS_DIR" --rounds "${GPU_CHECK_ROUNDS:-2}")
    PEERS_SAY="PyTorch $(python3 -c 'import torch; print(torch.__version__)' 2>/dev/null) on the same GPU, interleaved"
else
    PEERS_SAY="no ratios: python3 has no PyTorch with CUDA ($(tail -1 "$WORK/peers-python.log"))"
fi
if [ "$GPU" = 1 ]; then
    echo "bench: $PEERS_SAY"
    limit 240 $BIN bench --device cuda --model "$BENCH_MODEL" "${BENCH_WEIGHTS[@]}" "${PEERS[@]}" \
        2> "$WORK/bench-cuda.log" | tee "$WORK/bench-cuda.txt" \
        && pass "bench on CUDA (figures above; $PEERS_SAY)" || fail "bench on CUDA: $(tail -1 "$WORK/bench-cuda.log")"
else
    skip "bench on CUDA beside PyTorch (no GPU; peers: $PEERS_SAY)"
fi

# --- 2b. half precision: the same first steps in f32, bf16 and f16 on one device, from the same
# starting weights (one backend type serves every precision; each tensor carries its dtype).
# Adam's epsilon 1e-4 in all three: f16 needs it (`pipe check` says why). bf16 keeps 8
# significant bits: 2e-2 relative after 3 steps. f16 keeps 11, but without loss scaling Adam's
# v underflows for gradients below 2.4e-4 and those steps differ from f32's (measured on the
# CPU: 4 % at step 2), so 5e-2: what it catches is NaN, mixed dtypes, wrong weights.
first_steps() { # PRECISION DEVICE: model A's first steps from the same weights, into half-PRECISION
    limit 90 $BIN run pipelines/agnews_transformer.toml "${A_PARITY[@]}" --device "$2" --set "runtime.precision=\"$1\"" \
        --set stages.train.optimizer.epsilon=1e-4 --runs-dir "$WORK/half-$1" --init-weights "$WORK/a-init.safetensors" \
        > "$WORK/half-$1.log" 2>&1 || fail "model A in $1 on $2: $(tail -1 "$WORK/half-$1.log")"
}
against_f32() { # PRECISION TOLERANCE DEVICE: those steps' losses against f32's
    [ -n "$(only_run "$WORK/half-$1")" ] && compare_losses "model A first steps in $1 on $3" \
        "$(only_run "$WORK/half-f32")" "$(only_run "$WORK/half-$1")" "$2" "f32 and $1"
}
HALF_DEVICE=cpu
[ "$GPU" = 1 ] && HALF_DEVICE=cuda
for prec in f32 bf16 f16; do
    first_steps "$prec" "$HALF_DEVICE"
done
for prec_tol in bf16:2e-2 f16:5e-2; do
    against_f32 "${prec_tol%:*}" "${prec_tol#*:}" "$HALF_DEVICE"
done

# --- 3. model A, the lesson's epoch ------------------------------------------------------
if [ "$GPU" = 1 ]; then
    if limit 150 $BIN run pipelines/agnews_transformer.toml --device cuda --runs-dir "$WORK/a-full" --quiet > "$WORK/a-full.log" 2>&1; then
        RUN=$(only_run "$WORK/a-full")
        missing=""
        for f in pipeline.toml run.json metrics.csv timing.csv summary.txt log.txt vectorizer/tokenizer.json \
                 checkpoints/train-last.safetensors checkpoints/train-best.safetensors model/model.safetensors; do
            [ -f "$RUN/$f" ] || missing="$missing $f"
        done
        [ -z "$missing" ] && pass "model A 1 epoch on CUDA: run folder complete ($(grep -o '"test.accuracy": [0-9.]*' "$RUN/run.json"))" \
            || fail "model A run folder lacks:$missing"
        limit 60 $BIN eval "$RUN" --data data/ag_news/test.csv --device cpu > "$WORK/a-eval-cpu.log" 2>&1 \
            && pass "GPU-trained run evaluates on CPU: $(grep '^accuracy' "$WORK/a-eval-cpu.log")" \
            || fail "pipe eval --device cpu on the CUDA run: $(tail -1 "$WORK/a-eval-cpu.log")"
    else
        fail "model A 1 epoch on CUDA: $(tail -1 "$WORK/a-full.log")"
    fi
else
    skip "model A 1 epoch on CUDA (no GPU)"
fi

# --- 4. BERT runs ---------------------------------------------------------------------
if [ "$BERT" = 1 ]; then
    B_PARITY=(--set dataset.limit=256 --set stages.features.steps_per_epoch=1 --set stages.features.epochs=2
              --set stages.finetune.steps_per_epoch=1 --set stages.finetune.epochs=2
              --set model.bert.dropout=0.0 --set model.dropout.rate=0.0 --set runtime.feature_cache=false
              "${BERT_WEIGHTS[@]}" --quiet)
    limit 120 $BIN run pipelines/bert_finetune.toml "${B_PARITY[@]}" --device cpu --runs-dir "$WORK/b-cpu" \
        --save-init "$WORK/b-init.safetensors" > "$WORK/b-cpu.log" 2>&1 \
        && pass "bert_finetune on CPU (reference)" || fail "bert_finetune on CPU: $(tail -1 "$WORK/b-cpu.log")"
    if [ "$GPU" = 1 ]; then
        limit 120 $BIN run pipelines/bert_finetune.toml "${B_PARITY[@]}" --device cuda --runs-dir "$WORK/b-cuda" \
            --init-weights "$WORK/b-init.safetensors" > "$WORK/b-cuda.log" 2>&1 \
            && compare_losses "bert_finetune first steps (both stages)" "$(only_run "$WORK/b-cpu")" "$(only_run "$WORK/b-cuda")" \
            || fail "bert_finetune on CUDA: $(tail -1 "$WORK/b-cuda.log")"
        limit 120 $BIN run pipelines/bert_finetune.toml --set dataset.limit=512 "${BERT_WEIGHTS[@]}" --device cuda \
            --runs-dir "$WORK/b-full" --quiet > "$WORK/b-full.log" 2>&1 \
            && pass "bert_finetune (512 rows, both stages, $WEIGHTS) on CUDA: $(grep -o '"test.accuracy": [0-9.]*' "$(only_run "$WORK/b-full")/run.json")" \
            || fail "bert_finetune 512 rows on CUDA: $(tail -1 "$WORK/b-full.log")"
    else
        skip "bert_finetune on CUDA (no GPU)"
    fi
fi

# --- 6. data parallelism over every GPU present -----------------------------------------
rate() { # run folder -> training samples/s of its first stage
    python3 -c 'import json, sys; r = json.load(open(sys.argv[1] + "/run.json")); s = r["stages"][0]
print("%.0f samples/s" % (r["rows"]["train"] * s["epochs_completed"] / s["seconds"]))' "$1"
}
GPUS=0
[ "$GPU" = 1 ] && GPUS=$(nvidia-smi -L | grep -c '^GPU')
if [ "$GPUS" -ge 2 ]; then
    for n in 1 "$GPUS"; do
        limit 120 $BIN run pipelines/agnews_transformer.toml --device cuda --devices "$n" --runs-dir "$WORK/dp-$n" \
            --quiet > "$WORK/dp-$n.log" 2>&1 || fail "model A on $n GPU(s): $(tail -1 "$WORK/dp-$n.log")"
    done
    [ -n "$(only_run "$WORK/dp-$GPUS")" ] && pass "model A, devices = $GPUS: $(rate "$(only_run "$WORK/dp-$GPUS")") against $(rate "$(only_run "$WORK/dp-1")") on one GPU"
else
    skip "data parallelism over GPUs ($GPUS GPU(s) visible; it needs two)"
fi

# --- 7. (last, with what is left of the budget) bf16-mixed on CUDA: model A's first steps
# against f32's from 2b (bf16's tolerance: only the products' operands are rounded), then one
# round of the bench beside PyTorch under autocast. Skipped, not failed, when too little of the
# budget is left for them: the checks above come first.
if [ "$GPU" = 1 ] && [ $((BUDGET_S - ($(date +%s) - started))) -ge 120 ]; then
    first_steps bf16-mixed cuda
    [ -n "$(only_run "$WORK/half-f32")" ] && against_f32 bf16-mixed 2e-2 cuda
    MIXED_PEERS=()
    [ ${#PEERS[@]} -gt 0 ] && MIXED_PEERS=(--peers-python python3 --peers-dir "$PEERS_DIR" --rounds 1)
    limit 150 $BIN bench --device cuda --precision bf16-mixed --model "$BENCH_MODEL" "${BENCH_WEIGHTS[@]}" "${MIXED_PEERS[@]}" \
        2> "$WORK/bench-cuda-mixed.log" | tee "$WORK/bench-cuda-mixed.txt" \
        && pass "bench on CUDA, bf16-mixed, one round (figures above; $PEERS_SAY)" \
        || fail "bench on CUDA, bf16-mixed: $(tail -1 "$WORK/bench-cuda-mixed.log")"
elif [ "$GPU" = 1 ]; then
    skip "bf16-mixed on CUDA (under 120 s of the ${BUDGET_S} s budget left)"
else
    skip "bf16-mixed on CUDA (no GPU)"
fi

echo "== $(( $(date +%s) - started )) s; details in $WORK"
# The device tool returns at most 8 files from $OUT: the logs and tables in one archive.
if [ -n "${OUT:-}" ] && [ -d "$OUT" ] && [ "$OUT" != "$WORK" ]; then
    tar -czf "$OUT/gpu-check-logs.tar.gz" -C "$WORK" --exclude='*.safetensors' . \
        && echo "== logs and run folders (without weights) in \$OUT/gpu-check-logs.tar.gz"
fi
exit $FAILED
