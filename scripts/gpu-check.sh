#!/usr/bin/env bash
# The one check to run on a machine with an NVIDIA GPU, from prebuilt CUDA binaries
# (scripts/build-cuda.sh --bin train_flowmodels2 --bin bench --package flowmodels-cuda.tar.xz)
# and this repository, in about 8 minutes:
#   1. the device: nvidia-smi, the driver, the binaries' CUDA bindings;
#   2. `bench --check-device --device cuda`: the bench's flows (RealNVP, Glow, spline and
#      autoregressive, lattice, FFJORD) against the CPU: log p within 1e-4 relative, round trip,
#      a gradient for every parameter;
#   3. application 2's default trained for a fixed number of steps on the GPU, then scored on
#      the GPU and on the CPU: the bits/dim of every image agree within 1e-4 relative;
#   4. the bench table on the GPU (app-1 RealNVPs, Glow 32 training and scoring, Glow 128), with
#      PyTorch CUDA beside it when torch is importable;
#   5. with two GPUs or more and mpirun: NCCL data parallelism, 2 ranks x batch 16 against one
#      GPU x batch 32, the same validation bits/dim within 1e-5 (binaries built with
#      `--features mpi` as well).
# Without a GPU it says so, runs the CPU side of steps 2 and 3 (so the binaries and the script
# are checked), and exits cleanly.
#
#   scripts/gpu-check.sh (--bundle FILE.tar.xz | --bin-dir DIR) [--out DIR] [--python PY]
#                        [--steps N]
#
# --steps: application 2's training steps in step 3 (default 100, in two epochs).
#
# Everything it prints goes to OUT/gpu-check.log too (OUT: --out, else $OUT, else
# ./gpu-check-out).
set -uo pipefail
cd "$(dirname "$0")/.."

bundle="" bin_dir="" out=${OUT:-gpu-check-out} python=python3 steps=100
while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) bundle=${2:?--bundle needs a file}; shift 2 ;;
    --bin-dir) bin_dir=${2:?--bin-dir needs a folder}; shift 2 ;;
    --out) out=${2:?--out needs a folder}; shift 2 ;;
    --python) python=${2:?--python needs an interpreter}; shift 2 ;;
    --steps) steps=${2:?--steps needs a number}; shift 2 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "gpu-check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if ! [[ "$steps" =~ ^[0-9]+$ ]] || [ "$steps" -lt 2 ]; then
  echo "gpu-check.sh: --steps $steps: expected a whole number of at least 2" >&2
  exit 2
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
log="$out/gpu-check.log"
exec > >(tee "$log") 2>&1

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -n "$bundle" ]; then
  [ -f "$bundle" ] || { echo "gpu-check: no bundle at $bundle"; exit 2; }
  xz -dc "$bundle" | tar -C "$work" -xf - || { echo "gpu-check: cannot unpack $bundle"; exit 2; }
  bin_dir="$work/flowmodels-cuda"
fi
if [ -z "$bin_dir" ] || [ ! -x "$bin_dir/train_flowmodels2" ] || [ ! -x "$bin_dir/bench" ]; then
  echo "gpu-check: give --bundle FILE.tar.xz or --bin-dir DIR holding train_flowmodels2 and bench"
  exit 2
fi
bin_dir=$(cd "$bin_dir" && pwd)
app2="$bin_dir/train_flowmodels2"
bench="$bin_dir/bench"
# The kernels' math functions come from libdevice, beside the binaries unless the machine's
# own toolkit is named.
if [ -z "${CUDA_PATH:-}" ] && [ -f "$bin_dir/cuda/nvvm/libdevice/libdevice.10.bc" ]; then
  export CUDA_PATH="$bin_dir/cuda"
fi

failures=0
step() { echo; echo "== $*"; }
# A step's command, with its time and status; a failure is counted and the check goes on.
run() {
  local limit=$1; shift
  local started=$SECONDS
  timeout "$limit" "$@"
  local rc=$?
  echo "-- exit $rc after $(( SECONDS - started )) s: $*"
  if [ $rc -ne 0 ]; then failures=$(( failures + 1 )); fi
  return $rc
}

step "1. the device"
date -u
uname -srm
echo "binaries: $bin_dir ($(du -sh "$bin_dir" | cut -f1)); $("$app2" --version)"
echo "CUDA bindings: $(cat "$bin_dir/CUDA_BINDINGS" 2>/dev/null || echo unknown);" \
  "features: $(cat "$bin_dir/FEATURES" 2>/dev/null || echo unknown); CUDA_PATH=${CUDA_PATH:-unset}"
gpus=0
if command -v nvidia-smi >/dev/null && nvidia-smi -L >"$work/gpus" 2>&1; then
  gpus=$(grep -c '^GPU ' "$work/gpus")
  nvidia-smi
fi
if [ "$gpus" -eq 0 ]; then
  echo "no NVIDIA GPU here (nvidia-smi: $(command -v nvidia-smi >/dev/null && head -1 "$work/gpus" || echo 'not found'))."
  echo "no-GPU mode: the CPU side of steps 2 and 3 runs; the GPU steps are skipped."
  device=cpu
  # A GPU asked for where there is none must be a clear error, not a crash.
  if "$bench" --check-device --device cuda >"$work/nocuda" 2>&1; then
    echo "gpu-check: --device cuda without a GPU did not fail"
    failures=$(( failures + 1 ))
  else
    echo "--device cuda without a GPU: $(tail -1 "$work/nocuda")"
  fi
else
  echo "$gpus GPU(s)"
  device=cuda
fi

step "2. the bench's flows on $device against the CPU"
run 120 "$bench" --check-device --device "$device" --json "$out/device-check.json"

step "3. application 2's default: $steps steps on $device, scored there$([ "$device" = cpu ] || echo ' and on the CPU')"
run_dir="$work/app2"
run 300 "$app2" --device "$device" --run-dir "$run_dir" \
  --set training.epochs=2 --set training.steps_per_epoch=$(( steps / 2 )) \
  --set background.enabled=false --set run.tracking_dir="$work/mlruns"
if [ -f "$run_dir/report.json" ]; then
  cp "$run_dir/report.json" "$out/app2-report.json"
  FLOWMODELS_DEVICE=$device run 120 "$app2" score --run "$run_dir" \
    --images embedded:fashion-mnist/val --out "$out/scores-$device.csv"
  if [ "$device" != cpu ]; then
    run 240 "$app2" score --run "$run_dir" --images embedded:fashion-mnist/val \
      --out "$out/scores-cpu.csv"
    run 10 "$python" - "$out/scores-cpu.csv" "$out/scores-$device.csv" <<'EOF'
import csv, sys
cpu, gpu = ({r["path"]: float(r["bits_per_dim"]) for r in csv.DictReader(open(f))} for f in sys.argv[1:])
worst = max(abs(cpu[k] - gpu[k]) / max(1.0, abs(cpu[k])) for k in cpu)
print(f"bits/dim of {len(cpu)} images, GPU against CPU: largest relative difference {worst:.2e} (bound 1e-4)")
sys.exit(0 if len(cpu) == len(gpu) and worst <= 1e-4 else 1)
EOF
  fi
fi

if [ "$device" = cuda ]; then
  step "4. the bench table on the GPU"
  compare=()
  if "$python" -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
    compare=(--compare-torch --python "$python")
  else
    echo "torch with CUDA is not importable by $python: flowmodels rows only"
  fi
  run 300 "$bench" --device cuda --cases realnvp2d,app1-8x256,app1-12x512,glow32,glow32-score,glow128 \
    "${compare[@]}" --json "$out/bench-gpu.json"

  step "5. NCCL: 2 ranks x batch 16 against 1 GPU x batch 32"
  if [ "$gpus" -lt 2 ]; then
    echo "skipped: $gpus GPU (NCCL needs a GPU per rank)"
  elif ! command -v mpirun >/dev/null; then
    echo "skipped: no mpirun on this machine"
  elif ! grep -qw mpi "$bin_dir/FEATURES" 2>/dev/null; then
    echo "skipped: these binaries were built without MPI (build-cuda.sh --features mpi)"
  else
    common=(--set training.epochs=1 --set training.steps_per_epoch=20 --set background.enabled=false)
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 run 180 \
      mpirun -np 2 "$app2" --distributed nccl --device cuda:local \
      --run-dir "$work/nccl2" "${common[@]}" --set training.batch_size=16
    run 180 "$app2" --device cuda --run-dir "$work/nccl1" "${common[@]}" --set training.batch_size=32
    run 10 "$python" - "$work/nccl2/report.json" "$work/nccl1/report.json" <<'EOF'
import json, sys
a, b = (json.load(open(f))["val_bits_per_dim"] for f in sys.argv[1:])
print(f"validation bits/dim: 2 ranks {a:.7f}, 1 GPU {b:.7f}, difference {abs(a - b):.1e} (bound 1e-5)")
sys.exit(0 if abs(a - b) <= 1e-5 else 1)
EOF
  fi
fi

echo
echo "gpu-check: $failures step(s) failed on $device; the log is $log"
[ "$failures" -eq 0 ]
