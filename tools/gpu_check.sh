#!/usr/bin/env bash
# gpu_check.sh OUTDIR - everything the GPU side needs checked, in one call (docs/cuda.md).
#
# On a machine with an NVIDIA GPU and nvcc:
#   1. builds `make cuda` for the GPU present (-arch=native, falling back to the full list);
#   2. runs tests/test_cuda.cu: every rung against the CPU on awkward sizes and transposes,
#      conv2d forward and backward, two CNN training steps on the GPU against the CPU;
#   3. runs examples/mnist_cnn for one epoch on the CPU and with --device cuda, when
#      data/mnist is present (carry it along), and compares the two last lines;
#   4. runs bench/cuda_bench.cu: each rung's GFLOP/s against cublasSgemm for N = 256..4096,
#      conv layers against cuDNN, then lessons/01b_matmul_cuda.cu;
#   5. runs the tests again under compute-sanitizer (memcheck) where it is installed.
# Everything goes to OUTDIR/gpu_check.txt (and the terminal). Each step has a time limit,
# so the whole run stays under 10 minutes (about 4 when all goes well). Without a GPU (or without nvcc) it says so in
# that file and exits 0: the same script runs on a CPU machine as a dry run.
set -u
out=${1:?usage: tools/gpu_check.sh OUTDIR}
cd "$(dirname "$0")/.."
mkdir -p "$out"
log="$out/gpu_check.txt"
: > "$log"
say() { echo "$@" | tee -a "$log"; }
step() {  # seconds, title, command...
    local limit=$1 title=$2; shift 2
    say "== $title"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee -a "$log"
    local rc=${PIPESTATUS[0]}
    say "== $title: exit $rc, $((SECONDS - t0)) s"
    return "$rc"
}

say "gpu_check $(date -u +%Y-%m-%dT%H:%MZ) $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
NVCC=$(command -v nvcc || { [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc; })
if [ -z "$NVCC" ]; then say "no nvcc: nothing to build"; exit 0; fi
say "nvcc: $("$NVCC" --version | tail -n 1)"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | tee -a "$log"
    arch="-arch=native"
else
    say "no GPU visible (nvidia-smi finds none): building for the full list, the GPU checks will report skipped"
    arch=""
fi
say "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"

jobs=$(nproc)
# cuDNN outside the toolkit (for example Python's nvidia-cudnn package): give its folder to make.
if [ ! -f "$(dirname "$(dirname "$NVCC")")/include/cudnn.h" ] && [ -z "${CUDNN_HOME:-}" ]; then
    for py in python3 /usr/bin/python3; do
        d=$("$py" -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null) && [ -f "$d/include/cudnn.h" ] &&
            { export CUDNN_HOME=$d LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}"; say "cudnn: $d"; break; }
    done
fi
if [ -n "$arch" ]; then
    step 240 "build (make cuda, $arch)" make -j"$jobs" cuda CUDA_GENCODE="$arch" ||
        step 300 "build (make cuda, full gencode list)" make -j"$jobs" cuda || { say "build failed"; exit 1; }
else
    step 300 "build (make cuda)" make -j"$jobs" cuda || { say "build failed"; exit 1; }
fi

step 120 "tests/test_cuda.cu" ./build/cuda/test_cuda

if [ -f data/mnist/train-images-idx3-ubyte ] && [ -n "$arch" ]; then
    step 60 "mnist_cnn 1 epoch, CPU" ./build/cuda/mnist_cnn --epochs 1 --data data/mnist
    step 60 "mnist_cnn 1 epoch, --device cuda" ./build/cuda/mnist_cnn --epochs 1 --data data/mnist --device cuda
else
    say "== mnist_cnn: skipped (no data/mnist here, or no GPU)"
fi

step 150 "bench/cuda_bench.cu" ./build/cuda/cuda_bench
step 60 "lessons/01b_matmul_cuda.cu" ./build/cuda/01b_matmul_cuda
# Last, since it may run long: the tests again under compute-sanitizer's memory checker,
# which reports any out-of-bounds or misaligned access inside a kernel.
if [ -n "$arch" ] && command -v compute-sanitizer >/dev/null 2>&1; then
    step 120 "compute-sanitizer memcheck tests/test_cuda.cu" compute-sanitizer --tool memcheck --error-exitcode 9 ./build/cuda/test_cuda
fi
say "gpu_check done in $SECONDS s"
