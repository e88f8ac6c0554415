#!/usr/bin/env bash
# Build the release binaries with burn's CUDA backend, without GitHub.
#
# burn's CUDA backend (cubecl-cuda) always links cubecl-llvm, whose build script (through
# tracel-llvm-bundler) downloads an LLVM bundle from GitHub unless the bundle's folder already
# exists with its marker file. This script fills that folder from PyPI instead: the static LLVM
# of the wheels mlc-llvm-static and mlc-llvm-static-extra-targets (with the NVPTX target and a
# working llvm-config). It also fetches NVIDIA's libdevice.10.bc (the math functions of GPU
# kernels, read at run time through CUDA_PATH) from the wheel nvidia-cuda-nvcc-cu12. Only PyPI
# and crates.io are reached.
#
#   scripts/build-cuda.sh [--cuda-version 12080] [--features mpi] [--bin NAME]... [--out DIR]
#                         [--package FILE.tar.xz] [--prepare-only]
#
#   --cuda-version V  the CUDA API the bindings target (cudarc: 12080 = CUDA 12.8); the
#                     driver where the binary runs must support it. Default: $CUDARC_CUDA_VERSION
#                     or 12080.
#   --features F      more cargo features of flowapps (e.g. mpi).
#   --bin NAME        build only these binaries (default: every train_flowmodelsN and bench).
#   --out DIR         copy the binaries and libdevice there (DIR/cuda/nvvm/libdevice).
#   --package FILE    also write one xz archive of the stripped binaries and libdevice, for a
#                     machine that runs them (scripts/gpu-check.sh --bundle FILE).
#   --prepare-only    set up LLVM and libdevice, print the environment, build nothing.
#
# The cache (LLVM, about 400 MB unpacked) is kept in $FLOWMODELS_CUDA_CACHE, default
# ~/.cache/flowmodels/cuda. The versions are pinned below; when Cargo.lock's bundler or
# cubecl-llvm drifts from them, the script stops and says which to update.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned: the bundler version Cargo.lock must hold, the LLVM it expects, and the wheels.
BUNDLER_VERSION=23.1.0-4
CUBECL_LLVM_VERSION=0.11.3
LLVM_WHEEL_VERSION=23.1.1.post0
NVCC_WHEEL_VERSION=12.8.93

cuda_version=${CUDARC_CUDA_VERSION:-12080}
features=cuda
bins=()
out=""
package=""
prepare_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --cuda-version) cuda_version=${2:?--cuda-version needs a value such as 12080}; shift 2 ;;
    --features) features="$features,${2:?--features needs a value}"; shift 2 ;;
    --bin) bins+=("${2:?--bin needs a binary name}"); shift 2 ;;
    --out) out=${2:?--out needs a folder}; shift 2 ;;
    --package) package=${2:?--package needs a file name}; shift 2 ;;
    --prepare-only) prepare_only=1; shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "build-cuda.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if ! [[ "$cuda_version" =~ ^1[0-9]0[0-9]0$ ]]; then
  echo "build-cuda.sh: --cuda-version '$cuda_version': expected the form 12080 (CUDA 12.8)" >&2
  exit 2
fi

locked_version() {
  awk -v name="$1" '$0 == "name = \"" name "\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}
for pin in "tracel-llvm-bundler $BUNDLER_VERSION" "cubecl-llvm $CUBECL_LLVM_VERSION"; do
  set -- $pin
  locked=$(locked_version "$1")
  if [ "$locked" != "$2" ]; then
    echo "build-cuda.sh: Cargo.lock has $1 ${locked:-(none)}, this script is pinned to $2." >&2
    echo "  Find the LLVM version that $1 $locked expects (its src/config.rs," >&2
    echo "  TRACEL_LLVM_VERSION), a matching mlc-llvm-static wheel on PyPI, and update the pins" >&2
    echo "  at the top of scripts/build-cuda.sh." >&2
    exit 1
  fi
done

cache=${FLOWMODELS_CUDA_CACHE:-$HOME/.cache/flowmodels/cuda}
mkdir -p "$cache"
python=${PYTHON:-python3}

# LLVM from PyPI into the cache, once.
llvm_dir="$cache/llvm-$LLVM_WHEEL_VERSION"
if [ ! -x "$llvm_dir/mlc_llvm_static/static/bin/llvm-config" ]; then
  echo "build-cuda.sh: installing LLVM $LLVM_WHEEL_VERSION from PyPI into $llvm_dir"
  rm -rf "$llvm_dir.partial"
  "$python" -m pip install --quiet --disable-pip-version-check --no-deps \
    --target "$llvm_dir.partial" \
    "mlc-llvm-static==$LLVM_WHEEL_VERSION" "mlc-llvm-static-extra-targets==$LLVM_WHEEL_VERSION"
  rm -rf "$llvm_dir"
  mv "$llvm_dir.partial" "$llvm_dir"
fi
llvm_root="$llvm_dir/mlc_llvm_static/static"
if ! "$llvm_root/bin/llvm-config" --targets-built | grep -qw NVPTX; then
  echo "build-cuda.sh: the LLVM in $llvm_root has no NVPTX target" >&2
  exit 1
fi

# The bundler's folder is $XDG_DATA_HOME/tracel/tracel-llvm-<version>; with its marker file
# there, the bundler downloads nothing.
xdg="$cache/xdg"
mkdir -p "$xdg/tracel"
ln -sfn "$llvm_root" "$xdg/tracel/tracel-llvm-$BUNDLER_VERSION"
touch "$llvm_root/.tracel-llvm-installed"

# libdevice from PyPI, once.
nvcc_dir="$cache/nvcc-$NVCC_WHEEL_VERSION"
libdevice="$nvcc_dir/nvidia/cuda_nvcc/nvvm/libdevice/libdevice.10.bc"
if [ ! -f "$libdevice" ]; then
  echo "build-cuda.sh: fetching libdevice (nvidia-cuda-nvcc-cu12 $NVCC_WHEEL_VERSION) from PyPI"
  rm -rf "$nvcc_dir.partial"
  "$python" -m pip install --quiet --disable-pip-version-check --no-deps \
    --target "$nvcc_dir.partial" "nvidia-cuda-nvcc-cu12==$NVCC_WHEEL_VERSION"
  rm -rf "$nvcc_dir"
  mv "$nvcc_dir.partial" "$nvcc_dir"
fi
[ -f "$libdevice" ] || { echo "build-cuda.sh: no libdevice.10.bc in $nvcc_dir" >&2; exit 1; }

export XDG_DATA_HOME="$xdg"
export CUDARC_CUDA_VERSION="$cuda_version"
echo "build-cuda.sh: LLVM $("$llvm_root/bin/llvm-config" --version) at $llvm_root"
echo "build-cuda.sh: CUDA bindings $cuda_version; libdevice $libdevice"
if [ "$prepare_only" = 1 ]; then
  echo "export XDG_DATA_HOME=$xdg CUDARC_CUDA_VERSION=$cuda_version"
  echo "export CUDA_PATH=$nvcc_dir/nvidia/cuda_nvcc   # where the binaries run"
  exit 0
fi

if [ ${#bins[@]} -eq 0 ]; then
  bins=(bench)
  for f in apps/src/bin/train_flowmodels*.rs; do bins+=("$(basename "$f" .rs)"); done
fi
bin_args=()
for b in "${bins[@]}"; do bin_args+=(--bin "$b"); done
target=${CARGO_TARGET_DIR:-target}
started=$(date +%s)
cargo build --release -p flowapps --features "$features" "${bin_args[@]}"
echo "build-cuda.sh: built ${bins[*]} in $(( $(date +%s) - started )) s"

if [ -n "$out" ]; then
  mkdir -p "$out/cuda/nvvm/libdevice"
  for b in "${bins[@]}"; do cp "$target/release/$b" "$out/"; done
  cp "$libdevice" "$out/cuda/nvvm/libdevice/"
  echo "$cuda_version" >"$out/CUDA_BINDINGS"
  echo "$features" >"$out/FEATURES"
  echo "build-cuda.sh: binaries in $out; run them with CUDA_PATH=$out/cuda"
fi
if [ -n "$package" ]; then
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' EXIT
  mkdir -p "$stage/flowmodels-cuda/cuda/nvvm/libdevice"
  for b in "${bins[@]}"; do
    strip -o "$stage/flowmodels-cuda/$b" "$target/release/$b"
  done
  cp "$libdevice" "$stage/flowmodels-cuda/cuda/nvvm/libdevice/"
  echo "$cuda_version" >"$stage/flowmodels-cuda/CUDA_BINDINGS"
  echo "$features" >"$stage/flowmodels-cuda/FEATURES"
  # The binaries share most of their bytes (burn, cubecl, LLVM): one xz stream with a window
  # larger than a binary stores the second and later ones for little more than their
  # differences.
  tar -C "$stage" -cf - flowmodels-cuda |
    xz -T1 --lzma2=preset=9,dict=384MiB >"$package.partial"
  mv "$package.partial" "$package"
  echo "build-cuda.sh: $package: $(du -h "$package" | cut -f1) (stripped binaries and libdevice)"
fi
