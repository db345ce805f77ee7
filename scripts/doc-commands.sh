#!/usr/bin/env bash
# Runs the `pipe` commands that README.md and docs/*.md show, so that every command there runs
# as written.
#
#   scripts/doc-commands.sh [FILE.md...]      # default: README.md docs/*.md
#
# Code blocks are read by their tag:
#   ```sh        each line that is a `pipe` command (optionally after VAR=value assignments) is run;
#                any other line that is not blank or a comment is a FAIL (tag the block sh-slow)
#   ```sh-slow   long trainings, builds, GPU, Python: listed as SKIP, not run
#   ```text, ```toml, ```json, ...   output and configuration: ignored
#   ```          (no tag): a FAIL, so that every block says what it is
# A line ending in `\` continues on the next line. A command whose comment says `# exit N` must
# exit with N; every other command must exit with 0.
#
# Each file runs in its own temporary working directory holding copies of pipelines/, data/,
# schemas/, tests/fixtures/ and docs/examples/, with `pipe` on PATH as the binary under test, so
# that the run folders a file's commands create (runs/...) are found by its later commands and
# nothing is written to the checkout. Everything is removed at the end. Downloads are off
# (HF_HUB_OFFLINE=1, PIPE_OFFLINE=1) and PIPE_* variables of the caller's environment are unset.
#
# PIPE_BIN: the pipe binary (default: $CARGO_TARGET_DIR/release/pipe, else target/release/pipe).
# DOC_COMMAND_TIMEOUT: seconds allowed per command (default 300).
# Prints PASS / FAIL / SKIP per command and a summary with the total time; exits 1 on any FAIL,
# 2 when the binary is missing.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
absolute() { if [[ $1 == /* ]]; then echo "$1"; else echo "$PWD/$1"; fi; }
if [[ -n ${PIPE_BIN:-} ]]; then
    bin=$(absolute "$PIPE_BIN")
elif [[ -n ${CARGO_TARGET_DIR:-} ]]; then
    bin=$(absolute "$CARGO_TARGET_DIR/release/pipe")
else
    bin=$root/target/release/pipe
fi
files=()
for f in "$@"; do files+=("$(absolute "$f")"); done
cd "$root" || exit 2
if ((${#files[@]} == 0)); then
    files=("$root/README.md" "$root"/docs/*.md)
fi
if [[ ! -x $bin ]]; then
    echo "error: no pipe binary at $bin (cargo build --release, or set PIPE_BIN)" >&2
    exit 2
fi
limit=${DOC_COMMAND_TIMEOUT:-300}

for v in $(compgen -e); do
    [[ $v == PIPE_* ]] && unset "$v"
done
export HF_HUB_OFFLINE=1 PIPE_OFFLINE=1 TOKENIZERS_PARALLELISM=false

work=$(mktemp -d "${TMPDIR:-/tmp}/pipe-doc-commands.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin"
ln -s "$bin" "$work/bin/pipe"
export PATH="$work/bin:$PATH"

now_ms() { echo $(($(date +%s%N) / 1000000)); }
start_all=$(now_ms)
passed=0 failed=0 skipped=0
failures=()

# The working directory of file number $1 (made on first use).
workdir() {
    local dir="$work/$1"
    if [[ ! -d $dir ]]; then
        mkdir -p "$dir/tests" "$dir/docs"
        cp -r "$root/pipelines" "$root/data" "$root/schemas" "$dir/" &&
            cp -r "$root/tests/fixtures" "$dir/tests/" &&
            { [[ ! -d $root/docs/examples ]] || cp -r "$root/docs/examples" "$dir/docs/"; }
    fi
    echo "$dir"
}

fail() { # where, command, why, log file (optional)
    printf 'FAIL  %s  %s\n      %s\n' "$1" "$2" "$3"
    [[ -n ${4:-} && -s $4 ]] && tail -n 20 "$4" | sed 's/^/      | /'
    failures+=("$1  $2")
    failed=$((failed + 1))
}

is_pipe_command='^([A-Za-z_][A-Za-z0-9_]*=[^[:space:]]*[[:space:]]+)*pipe([[:space:]]|$)'

run_command() { # index, where, command
    local dir log expected=0 rc t0 t1
    [[ $3 =~ \#.*exit[[:space:]]+([0-9]+) ]] && expected=${BASH_REMATCH[1]}
    dir=$(workdir "$1") || { fail "$2" "$3" "could not make the working copy"; return; }
    log="$work/log"
    t0=$(now_ms)
    (cd "$dir" && timeout "$limit" bash -c "$3") >"$log" 2>&1 </dev/null
    rc=$?
    t1=$(now_ms)
    local took
    took=$(awk -v ms=$((t1 - t0)) 'BEGIN { printf "%.1f s", ms / 1000 }')
    if ((rc == expected)); then
        printf 'PASS  %s  %s  (%s%s)\n' "$2" "$3" "$took" "$( ((expected)) && echo ", exit $rc as expected")"
        passed=$((passed + 1))
    elif ((rc == 124)); then
        fail "$2" "$3" "timed out after ${limit} s" "$log"
    else
        fail "$2" "$3" "exit $rc, expected $expected ($took)" "$log"
    fi
}

index=0
for file in "${files[@]}"; do
    index=$((index + 1))
    name=${file#"$root"/}
    if [[ ! -f $file ]]; then
        fail "$name" "" "no such file"
        continue
    fi
    tag="" open=0 lineno=0 pending="" pending_at=0
    while IFS= read -r line || [[ -n $line ]]; do
        lineno=$((lineno + 1))
        if [[ $line =~ ^[[:space:]]*\`\`\`(.*)$ ]]; then
            if ((open)); then
                open=0
            else
                open=1
                tag=${BASH_REMATCH[1]}
                tag=${tag%%[[:space:]]*}
                [[ -z $tag ]] && fail "$name:$lineno" '```' "a code block without a tag (sh, sh-slow, text, toml, ...)"
            fi
            pending=""
            continue
        fi
        ((open)) || continue
        [[ $tag == sh || $tag == sh-slow ]] || continue
        if [[ -n $pending ]]; then
            line="$pending ${line#"${line%%[![:space:]]*}"}"
        else
            pending_at=$lineno
            line=${line#"${line%%[![:space:]]*}"}
        fi
        if [[ $line == *\\ ]]; then
            pending=${line%\\}
            continue
        fi
        pending=""
        [[ -z $line || $line == \#* ]] && continue
        where="$name:$pending_at"
        if [[ $tag == sh-slow ]]; then
            printf 'SKIP  %s  %s  (sh-slow)\n' "$where" "$line"
            skipped=$((skipped + 1))
        elif [[ $line =~ $is_pipe_command ]]; then
            run_command "$index" "$where" "$line"
        else
            fail "$where" "$line" "not a pipe command in an sh block (tag the block sh-slow)"
        fi
    done <"$file"
    ((open)) && fail "$name" '```' "a code block that is never closed"
done

total=$(awk -v ms=$(($(now_ms) - start_all)) 'BEGIN { printf "%.1f s", ms / 1000 }')
echo
echo "doc commands: $passed passed, $failed failed, $skipped skipped (sh-slow), $total in all ($bin)"
if ((failed)); then
    printf '  failed: %s\n' "${failures[@]}"
    exit 1
fi
