#!/usr/bin/env bash
# The GPU check of rnnbench, prepared for a lent GPU machine (one NVIDIA GPU, no internet).
# At most 515 s of steps in all (each under its own `timeout`; their caps are summed below), so
# that the script fits one 10-minute device call with room for the start:
#   1. the equivalence suite on cuda (RNNBENCH_DEVICE=cuda; TF32 off, as the suite's backends
#      do), every cell (rnn, lstm, gru, gru-reset-before), gradients (cuDNN's backward, jax's
#      vjp on the GPU) included ........................................................ 100 s
#   2. `rnnbench check --device cuda --cell all --grad` (2 layers, bidirectional, h0/c0,
#      T=100, float32 and float64): one table per cell and its gradient table, check.json for
#      the report ...................................................................... 60 s
#   3. DeepBench sizes (input = hidden, as DeepBench runs them), on torch (cuDNN), jax,
#      keras-jax and keras-torch:
#      - vanilla RNN, training set: H 1760, 2560 x B 16, 64, T=50, inference and training
#        (forward + backward, as DeepBench's training set times it) ..................... 90 s
#      - LSTM, inference server set: H 512, 1024, 2048 x B 1, 4 at T=25 ................. 70 s
#        and H 1536 x B 1, 4 at T=50 .................................................... 35 s
#      - GRU (reset-after, cuDNN's), inference server set: H 1536, 2048, 2560 x B 1, 4 at
#        T=375 ........................................................................... 70 s
#      The subset leaves out DeepBench's other lengths (GRU T=187/750/1500, LSTM H=256 T=150),
#      batch 2 and the largest sizes (GRU H=2816, training LSTM H=4096): the same kernels at
#      other sizes, which would not fit the budget.
#   4. a small-batch latency sweep: B=1, T=100, H 32 and 256, cells rnn, lstm, gru ....... 50 s
#   5. a report of all of it (report/report.html) ....................................... 40 s
# Writes gpu_check.log, nvidia-smi.txt, equivalence.log, check.json, deepbench-*.json,
# latency.json, their tables (*.txt) and report/ to $OUT (default: ./gpu-check-out). On a
# machine without a GPU it says so and exits 0.
# Exit status: 0 all steps passed (or no GPU here), 1 a step failed (its log says which).
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$ROOT/gpu-check-out}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: > "$LOG"
say() { echo "[gpu_check $(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }

# --- 0. is there a GPU at all? --------------------------------------------------------------
if ! command -v nvidia-smi > /dev/null 2>&1 || ! nvidia-smi -L > /dev/null 2>&1; then
    say "no GPU here: skipped (no working nvidia-smi on this machine)"
    exit 0
fi
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
nvidia-smi -L | tee -a "$LOG"

# --- 1. a python that has numpy and can import rnnbench ------------------------------------
PY=""
for cand in "${PYTHON:-}" "$ROOT/.venv/bin/python" python3 python; do
    [ -n "$cand" ] || continue
    if command -v "$cand" > /dev/null 2>&1 && "$cand" -c "import numpy" > /dev/null 2>&1; then
        PY="$cand"; break
    fi
done
if [ -z "$PY" ]; then
    say "no python with numpy here: skipped (carry .venv, or set PYTHON=...)"
    exit 0
fi
cd "$ROOT"
if ! "$PY" -c "import rnnbench.backends.numpy_backend" > /dev/null 2>&1; then
    # Not installed: an offline editable install; failing that, a staged copy on PYTHONPATH
    # (rnnbench.backends lives in backends/, mapped into the package by pyproject).
    if ! "$PY" -m pip install --quiet --no-deps --no-build-isolation -e "$ROOT" >> "$LOG" 2>&1; then
        STAGE="$(mktemp -d)"
        cp -r "$ROOT/rnnbench" "$STAGE/rnnbench"
        cp -r "$ROOT/backends" "$STAGE/rnnbench/backends"
        export PYTHONPATH="$STAGE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
        say "rnnbench not installed: using a staged copy in $STAGE"
    fi
fi
say "python: $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"

# Which libraries see the GPU (a missing one is a skip of its backends, reported by bench).
"$PY" - << 'PYEOF' 2>&1 | tee -a "$LOG"
import importlib.util
if importlib.util.find_spec("torch"):
    import torch
    print("torch", torch.__version__, "cuda available:", torch.cuda.is_available(),
          torch.cuda.get_device_name() if torch.cuda.is_available() else "")
    print("  cudnn", torch.backends.cudnn.version(), "cudnn.allow_tf32 default:",
          torch.backends.cudnn.allow_tf32, "matmul.allow_tf32:", torch.backends.cuda.matmul.allow_tf32)
else:
    print("torch: not installed")
if importlib.util.find_spec("jax"):
    import jax
    try:
        print("jax", jax.__version__, "gpu devices:", jax.devices("gpu"))
    except RuntimeError as exc:
        print("jax", jax.__version__, "no gpu:", str(exc).splitlines()[0])
else:
    print("jax: not installed")
PYEOF

status=0
run_step() {  # name, seconds, output file, command...
    local name="$1" secs="$2" file="$3"; shift 3
    say "step $name (at most ${secs}s): $*"
    local start=$SECONDS
    timeout --kill-after=10 "$secs" "$@" 2>&1 | tee -a "$file"
    local rc=${PIPESTATUS[0]}
    say "step $name: exit $rc after $((SECONDS - start))s"
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then status=1; fi  # 3: bench had nothing to run
}

# --- 2. the equivalence suite on cuda, every cell ---------------------------------------------
export RNNBENCH_DEVICE=cuda
run_step equivalence "${EQUIVALENCE_S:-100}" "$OUT/equivalence.log" "$PY" -m pytest tests -q \
    -p no:cacheprovider -k "${EQUIVALENCE_K:-equivalence or backend}" > /dev/null
unset RNNBENCH_DEVICE
tail -n 15 "$OUT/equivalence.log" | tee -a "$LOG"
BACKENDS="torch,jax,keras-jax,keras-torch"
run_step check-cells 60 "$LOG" "$PY" -m rnnbench check --device cuda --backends "$BACKENDS" \
    --cell all --layers 2 --bidirectional --h0 --batch 8 --seq-len 100 --input-size 64 \
    --hidden-size 128 --dtype float32,float64 --grad --json "$OUT/check.json"

# --- 3. DeepBench sizes (--input-size hidden: input = hidden, as DeepBench runs them) --------
COMMON=(--device cuda --backends "$BACKENDS" --input-size hidden --min-time 0.3 --min-rounds 5
        --warmup 0.1 --timeout 40 --plain)
run_step deepbench-rnn 90 "$LOG" "$PY" -m rnnbench bench "${COMMON[@]}" --cell rnn \
    --mode inference,training --seq-len 50 --batch 16,64 --hidden-size 1760,2560 --out "$OUT/deepbench-rnn.json"
run_step deepbench-lstm-T25 70 "$LOG" "$PY" -m rnnbench bench "${COMMON[@]}" --cell lstm \
    --seq-len 25 --batch 1,4 --hidden-size 512,1024,2048 --out "$OUT/deepbench-lstm.json"
run_step deepbench-lstm-T50 35 "$LOG" "$PY" -m rnnbench bench "${COMMON[@]}" --cell lstm \
    --seq-len 50 --batch 1,4 --hidden-size 1536 --out "$OUT/deepbench-lstm.json"
run_step deepbench-gru 70 "$LOG" "$PY" -m rnnbench bench "${COMMON[@]}" --cell gru \
    --seq-len 375 --batch 1,4 --hidden-size 1536,2048,2560 --out "$OUT/deepbench-gru.json"

# --- 4. small-batch latency sweep ------------------------------------------------------------
run_step latency 50 "$LOG" "$PY" -m rnnbench bench --device cuda --backends "$BACKENDS" \
    --cell rnn,lstm,gru --batch 1 --seq-len 100 --input-size 32 --hidden-size 32,256 \
    --min-time 0.2 --warmup 0.1 --timeout 30 --plain --out "$OUT/latency.json"

for f in deepbench-rnn deepbench-lstm deepbench-gru latency; do
    if [ -f "$OUT/$f.json" ]; then
        "$PY" -m rnnbench.bench.table "$OUT/$f.json" > "$OUT/$f.txt" 2>&1
        tee -a "$LOG" < "$OUT/$f.txt"
    fi
done

# --- 5. the report ---------------------------------------------------------------------------
mapfile -t FILES < <(ls "$OUT"/deepbench-*.json "$OUT"/latency.json "$OUT"/check.json 2> /dev/null)
if [ "${#FILES[@]}" -gt 0 ]; then
    run_step report 40 "$LOG" "$PY" -m rnnbench report "${FILES[@]}" -o "$OUT/report"
fi
say "done: exit $status; files in $OUT"
exit "$status"
