#!/usr/bin/env bash
# The GPU check of rnnbench, prepared for a lent GPU machine (one NVIDIA GPU, no internet).
# Under 8 minutes in all (120 + 3 x 90 + 70 s at most), each step under its own `timeout`:
#   1. the equivalence suite on cuda (RNNBENCH_DEVICE=cuda; TF32 off, as the suite's backends do);
#   2. DeepBench's vanilla-RNN training sizes: hidden 1760, 2048, 2560 (input = hidden, as in
#      DeepBench), batch 16, 32, 64, 128, 50 steps; torch (cuDNN), jax, keras-jax, keras-torch;
#   3. a small-batch latency sweep (batch 1 and 4, 100 steps, hidden 32..512).
# Writes gpu_check.log, nvidia-smi.txt, equivalence.log, deepbench.json, latency.json and
# tables to $OUT (default: ./gpu-check-out). On a machine without a GPU it says so and exits 0.
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

# --- 2. the equivalence suite on cuda --------------------------------------------------------
export RNNBENCH_DEVICE=cuda
run_step equivalence "${EQUIVALENCE_S:-120}" "$OUT/equivalence.log" "$PY" -m pytest tests -q \
    -p no:cacheprovider -k "${EQUIVALENCE_K:-equivalence or backend}" > /dev/null
unset RNNBENCH_DEVICE
tail -n 15 "$OUT/equivalence.log" | tee -a "$LOG"

# --- 3. DeepBench vanilla-RNN training sizes (input = hidden), 50 steps ---------------------
BACKENDS="torch,jax,keras-jax,keras-torch"
COMMON=(--device cuda --backends "$BACKENDS" --seq-len 50 --batch 16,32,64,128
        --min-time 0.3 --min-rounds 5 --warmup 0.1 --timeout 60 --plain)
for H in 1760 2048 2560; do
    run_step "deepbench-H$H" 90 "$LOG" "$PY" -m rnnbench bench "${COMMON[@]}" \
        --input-size "$H" --hidden-size "$H" --out "$OUT/deepbench.json"
done

# --- 4. small-batch latency sweep ------------------------------------------------------------
run_step latency 70 "$LOG" "$PY" -m rnnbench bench --device cuda --backends "$BACKENDS" --batch 1,4 \
    --seq-len 100 --input-size 32 --hidden-size 32,128,512 --min-time 0.2 --warmup 0.1 \
    --timeout 40 --plain --out "$OUT/latency.json"

for f in deepbench latency; do
    if [ -f "$OUT/$f.json" ]; then
        "$PY" -m rnnbench.bench.table "$OUT/$f.json" > "$OUT/$f.txt" 2>&1
        cat "$OUT/$f.txt" | tee -a "$LOG"
    fi
done
say "done: exit $status; files in $OUT"
exit "$status"
