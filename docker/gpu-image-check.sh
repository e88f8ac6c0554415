#!/bin/sh
# Run while the gpu image is built: it has what the CUDA binaries load. The binaries link only
# libc, libm, libstdc++ and libgcc_s; the rest is opened at run time: libcuda (the host's
# driver, mounted by the NVIDIA container toolkit when the container starts, so not checkable
# here), NVRTC and NCCL from the CUDA runtime image, and libdevice (the kernels' math
# functions) under $CUDA_PATH.
set -eu
status=0
for bin in /usr/local/bin/train_flowmodels2 /usr/local/bin/bench; do
  if ldd "$bin" | grep -q 'not found'; then
    echo "gpu image: $bin misses libraries:"; ldd "$bin" | grep 'not found'; status=1
  fi
done
for lib in libnvrtc.so libnccl.so.2; do
  if ! ldconfig -p | grep -q "$lib"; then
    echo "gpu image: $lib is not in the image (the CUDA runtime base image should have it)"
    status=1
  fi
done
if [ ! -f "${CUDA_PATH:?CUDA_PATH is not set}/nvvm/libdevice/libdevice.10.bc" ]; then
  echo "gpu image: no libdevice.10.bc under CUDA_PATH=$CUDA_PATH/nvvm/libdevice"; status=1
fi
[ "$status" = 0 ] && echo "gpu image: the binaries find what they load (libcuda comes from the host)"
exit "$status"
