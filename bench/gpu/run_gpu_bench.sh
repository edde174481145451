#!/bin/sh
# run_gpu_bench.sh: the GPU benchmark, for a machine with an NVIDIA GPU, its driver and the
# CUDA 13 toolkit. Builds Ember (libember_cupti.so, gpu_dump) and bench/gpu/gpu_bench.cu, then:
#   1. split: kernels of known relative durations, a cuLaunchKernel path, a captured graph
#      replayed, a memcpy and a memset, under the library; checks the profile's kernel-time split
#      against CUDA-event timings (+-10%) and that >= 99% of kernel launches joined a launch
#      stack that reaches main;
#   2. launchbound: 10k tiny kernels, 5 runs without and 5 with the library (default rate limit);
#      the difference in host ns per launch is the cost per launch (target <= 5 us);
#   3. torch (if python3 can import torch with CUDA): a matmul loop, with PYTHONPERFSUPPORT=1;
#   4. torch: a training loop started with ember.watch(): >= 95% of the forward pass's kernel
#      time under Python frames (Block.forward), and the cost per launch of 10k tiny kernels
#      with and without the library (target <= 5 us).
# Writes bench/results/gpu.json (and prints it); exit status 1 if a bar is missed.
#
# Usage: bench/gpu/run_gpu_bench.sh [BUILD_DIR]   (from the repository root)
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$ROOT/build}
CUDA=${CUDA_HOME:-/usr/local/cuda}
WORK=$(mktemp -d /tmp/ember-gpu-bench.XXXXXX)
SOCK=$WORK/gpu.sock
OUT=$ROOT/bench/results/gpu.json

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
	echo "run_gpu_bench: no NVIDIA GPU/driver here; run this on a GPU machine" >&2
	exit 77
fi
nvidia-smi -L >&2

cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target ember_cupti gpu_dump >/dev/null
LIB=$BUILD/libember_cupti.so
"$CUDA/bin/nvcc" -O2 -g -Xcompiler -fno-omit-frame-pointer -o "$WORK/gpu_bench" \
	"$ROOT/bench/gpu/gpu_bench.cu" -L"$CUDA/lib64/stubs" -lcuda

dump_start() { # $1: output file
	"$BUILD/bench/gpu_dump" "$SOCK" >"$1" 2>"$WORK/gpu_dump.log" &
	DUMP=$!
	i=0; while [ ! -S "$SOCK" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
}
dump_stop() { kill -TERM "$DUMP"; wait "$DUMP" || true; }

export EMBER_GPU_SOCKET=$SOCK EMBER_GPU_LOG=info
# 1. split
dump_start "$WORK/split_profile.jsonl"
CUDA_INJECTION64_PATH=$LIB "$WORK/gpu_bench" split >"$WORK/split_events.json"
sleep 1.5
dump_stop

# 2. launch-bound loop, alternating to spread drift
: >"$WORK/launchbound_without.jsonl"; : >"$WORK/launchbound_with.jsonl"
dump_start "$WORK/launchbound_profile.jsonl"
for i in 1 2 3 4 5; do
	"$WORK/gpu_bench" launchbound 10000 >>"$WORK/launchbound_without.jsonl"
	CUDA_INJECTION64_PATH=$LIB "$WORK/gpu_bench" launchbound 10000 >>"$WORK/launchbound_with.jsonl"
done
sleep 1.5
dump_stop

# 3. PyTorch
if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
	dump_start "$WORK/torch_profile.jsonl"
	PYTHONPERFSUPPORT=1 CUDA_INJECTION64_PATH=$LIB \
		python3 "$ROOT/bench/gpu/torch_matmul.py" 200 >"$WORK/torch_events.json"
	sleep 1.5
	dump_stop
	# 4. a training loop started with ember.watch(): Python frames above the forward pass's
	# kernels, and the cost per launch of a launch-bound loop (with vs without the library)
	dump_start "$WORK/train_profile.jsonl"
	EMBER_BINARY=$BUILD/ember EMBER_BENCH_SOCKET=$SOCK \
		python3 "$ROOT/bench/gpu/torch_train.py" 50 10000 >"$WORK/train_with.json"
	sleep 1.5
	dump_stop
	EMBER_BENCH_NO_WATCH=1 python3 "$ROOT/bench/gpu/torch_train.py" 50 10000 \
		>"$WORK/train_without.json"
fi

mkdir -p "$(dirname "$OUT")"
python3 "$ROOT/bench/gpu/analyze_gpu_bench.py" "$WORK" "$OUT"
