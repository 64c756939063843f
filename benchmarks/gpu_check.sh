#!/usr/bin/env bash
# The single GPU check of issue 10: run ONCE, from the repository root, on a rented H100/H200
# (its image: torch 2.11 + nvcc + ninja, Python 3.12, no network, not our pinned packages).
#
#   bash benchmarks/gpu_check.sh          # logs and figures go to $OUT (default ./gpu_out)
#
# What it needs beside the working tree (both git-ignored, named in the device tool's `carry`):
#   .refs/eg3d  a copy (not a symlink: links travel as links) of the official NVlabs/eg3d checkout's eg3d/
#               folder (training/, torch_utils/, dnnlib/; ~1 MB), e.g. `cp -r /work/refs/NVlabs+eg3d/eg3d .refs/eg3d`;
#               without it the benchmark measures the project side only.
#   .whl/       the wheels the device image lacks. Its image has torch, numpy, pyyaml, safetensors, pyarrow,
#               pillow, scipy, tqdm, requests, click, pytest; the project's import closure for the ops, the
#               models, the build, the tests and the train smoke run also needs pydantic. Download here:
#                 python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#                   --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#                   -d .whl -r benchmarks/gpu_wheels.txt
#               i.e. exactly: pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0
#                             typing-inspection==0.4.5 typing-extensions==4.16.0   (about 2.2 MB)
#
# Steps (each under its own `timeout`, the script goes on when one fails; a global deadline keeps the
# whole run under ~8 minutes; highest value first):
#   0. environment + wheels;  EG3D's CUDA plugins start building in the background (its custom_ops)
#   1. build our C++/CUDA ops (build_ops stage function, arch of this GPU) + their check vs the references
#   2. bench_vs_eg3d at the FFHQ-512 config: fp32, EG3D mixed precision, bf16
#   3. CUDA tests: every test with `cuda` in its name (ops vs references in all dtypes, no host sync, ...)
#   4. op benchmarks at the FFHQ-512 step's largest shapes: compiled vs reference vs torch's operator vs
#      EG3D's plugins (bias_act, upfirdn2d blur / downsample; grid_sample direct vs gather, each channels-last
#      and NCHW; fp32/fp16/bf16)
#   5. 512 mixed again, profiled (time per kind of work, kernels per step, top kernels), with a third
#      side: the project's models with G's rendering compiled (train.distributed.compile: rendering)
#   6. bench_vs_eg3d at the 128-px config
#   7. train smoke run on the GPU (benchmarks/bench_train.py: tiny steps, then one paper-preset step)
# Files back in $OUT (the device returns at most 8): gpu_check.log (everything), ops_report.json,
# bench_512.json, bench_128.json, prof/ (the 512-mixed profile: both sides' tables and the figures).
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu_out}
mkdir -p "$OUT"
LOG=$OUT/gpu_check.log
PY=${PYTHON:-python3}
BUDGET_S=${GPU_CHECK_BUDGET_S:-480}
START=$(date +%s)
DEADLINE=$((START + BUDGET_S))
WORK=${TMPDIR:-/tmp}/bh_gpu_check
OPS=$WORK/ops_build
mkdir -p "$WORK"
export TORCH_EXTENSIONS_DIR=$WORK/torch_extensions   # EG3D's plugins, built once, reused by every step
export MAX_JOBS=${MAX_JOBS:-16} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
export PATH="$(dirname "$(command -v "$PY")"):$PATH"   # ninja / pytest next to python

say() { echo "$*" | tee -a "$LOG"; }

# step NAME LIMIT_S CMD...: runs under min(LIMIT_S, time left), output into the log, never stops the script.
step() {
  local name=$1 limit=$2; shift 2
  local left=$((DEADLINE - $(date +%s)))
  if [ "$left" -lt 20 ]; then say "=== $name: SKIPPED (global deadline reached)"; return 0; fi
  [ "$limit" -gt "$left" ] && limit=$left
  say "=== $name (limit ${limit}s) $(date -u +%H:%M:%S)"
  local t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  say "=== $name: rc=$rc in $(( $(date +%s) - t0 ))s$([ "$rc" = 124 ] && echo ' (TIMED OUT)')"
}

# ---- 0. environment
say "gpu_check $(date -u +%FT%TZ) in $ROOT, out $OUT, budget ${BUDGET_S}s"
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" .whl/*.whl \
    2>&1 | tail -3 | tee -a "$LOG"
  export PYTHONPATH="$WORK/site:$ROOT/src"
else
  say "no .whl/ here: using the installed packages"
  export PYTHONPATH="$ROOT/src"
fi
HAVE_GPU=$($PY -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true) | tee -a "$LOG"
$PY - <<'EOF' 2>&1 | tee -a "$LOG"
import importlib, sys, torch
print("python", sys.version.split()[0], "| torch", torch.__version__, "cuda", torch.version.cuda,
      "| device", torch.cuda.get_device_name() if torch.cuda.is_available() else "none")
for name in ("pydantic", "yaml", "safetensors", "pyarrow", "PIL", "numpy", "scipy", "requests", "pytest", "ninja"):
    try:
        importlib.import_module(name); print("  ok", name)
    except Exception as exc:
        print("  MISSING", name, type(exc).__name__, exc)
EOF
ARCH=$($PY -c "import torch; m, n = torch.cuda.get_device_capability(); print(f'{m}.{n}')" 2>/dev/null || echo "9.0")
EG3D=""
[ -f .refs/eg3d/training/triplane.py ] && EG3D=.refs/eg3d
[ -z "$EG3D" ] && say "no .refs/eg3d: benchmarks measure the project side only"

PLUGIN_PIDS=""
if [ "$HAVE_GPU" = 1 ] && [ -n "$EG3D" ]; then   # EG3D's plugins compile while our ops build
  timeout 300 $PY -c "
import sys; sys.path.insert(0, 'benchmarks')
import bench_vs_eg3d as b
e = b.import_eg3d('$EG3D'); b.build_eg3d_plugins(e); print('EG3D plugins:', b.eg3d_plugins(e))
" >"$WORK/eg3d_plugins.log" 2>&1 &
  PLUGIN_PIDS="$!"
fi

# ---- 1. build our ops (CPU twin + CUDA) and check them against the references
BUILD_CUDA=no; [ "$HAVE_GPU" = 1 ] && BUILD_CUDA=yes   # no GPU: nothing could run the CUDA build
step build_ops 240 $PY -c "
import json, sys
from pathlib import Path
from balancehead.stages.build_ops import BuildOpsConfig, build
r = build(BuildOpsConfig(build_cuda='$BUILD_CUDA', cuda_arch_list='$ARCH'), Path('$OPS'))
for e in r['extensions']:
    print(e['name'], e['status'], e.get('reason', ''), json.dumps(e.get('check', {}).get('max_abs_error')),
          json.dumps(e.get('check_cuda', {}).get('max_abs_error', e.get('check_cuda'))))
sys.exit(0 if r['ok'] else 1)
"
cp "$OPS/report.json" "$OUT/ops_report.json" 2>/dev/null
if OPS_LINE=$($PY -c "
from balancehead.ops.loader import load_built_ops
m = load_built_ops('$OPS')
if m is None:
    raise SystemExit(1)
print(m.__name__, 'with' if m.has_cuda_kernels() else 'without', 'CUDA kernels')" 2>/dev/null); then
  export BALANCEHEAD_OPS_DIR=$OPS
  say "BALANCEHEAD_OPS_DIR=$OPS (compiled ops on: $OPS_LINE)"
else
  say "our compiled ops are not loadable: everything below uses the reference ops"
fi
for pid in $PLUGIN_PIDS; do wait "$pid"; done
[ -f "$WORK/eg3d_plugins.log" ] && tail -n 5 "$WORK/eg3d_plugins.log" | tee -a "$LOG"

BENCH_ARGS=()
[ -n "$EG3D" ] && BENCH_ARGS+=(--eg3d "$EG3D")
if [ "$HAVE_GPU" = 1 ]; then
  # ---- 2. the headline: FFHQ-512
  step bench_512 170 $PY benchmarks/bench_vs_eg3d.py "${BENCH_ARGS[@]}" --config 512 --precision fp32,mixed,bf16 \
    --iters 5 --warmup 2 --json "$OUT/bench_512.json"
fi

# ---- 3. CUDA tests (skipped without a GPU): every test named *cuda*, in the files that have one
CUDA_TEST_FILES=$(grep -l "def test_[a-z0-9_]*cuda" tests/test_*.py 2>/dev/null | tr '\n' ' ')
say "CUDA test files: $CUDA_TEST_FILES"
if [ -n "$CUDA_TEST_FILES" ]; then
  step tests_cuda 150 $PY -m pytest -q -p no:cacheprovider -k cuda -rs $CUDA_TEST_FILES
fi

if [ "$HAVE_GPU" = 1 ]; then
  # ---- 4. ops at the FFHQ-512 step's largest shapes: compiled vs reference vs torch vs EG3D's plugins
  step bench_ops 90 $PY benchmarks/bench_ops.py "${BENCH_ARGS[@]}" --reps 5 --dtype float32,float16,bfloat16
  # ---- 5. where the time goes at FFHQ-512, mixed precision: one profiled step per side, and the
  #         project's side again with G's rendering compiled (3 files in $OUT/prof)
  step profile_512 150 $PY benchmarks/bench_vs_eg3d.py "${BENCH_ARGS[@]}" --config 512 --precision mixed \
    --iters 3 --warmup 2 --no-flops --compile --profile "$OUT/prof"
  # ---- 6. the 128-px config
  step bench_128 100 $PY benchmarks/bench_vs_eg3d.py "${BENCH_ARGS[@]}" --config 128 --precision fp32,mixed,bf16 \
    --iters 5 --warmup 2 --json "$OUT/bench_128.json"
  # ---- 7. train smoke run: tiny steps, then one step at the paper preset (img/s, peak memory)
  step train_smoke 150 $PY benchmarks/bench_train.py --steps 3 --paper
else
  say "no CUDA device: CUDA build, GPU benchmarks and the GPU train run skipped; CPU dry run of the EG3D harness:"
  step bench_ops_cpu 60 $PY benchmarks/bench_ops.py --reps 1 --shapes small
  step bench_tiny_cpu 120 $PY benchmarks/bench_vs_eg3d.py "${BENCH_ARGS[@]}" --config tiny --iters 1 --warmup 0 --no-flops \
    --json "$OUT/bench_tiny_cpu.json" --profile "$OUT/prof"
fi

say "=== summary ($(( $(date +%s) - START ))s)"
grep -E "^=== .*rc=|ratio EG3D|step median|EG3D ops|img/s|passed|failed|error" "$LOG" | grep -v "^  ok" | tail -n 60
