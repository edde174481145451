"""torch_matmul: a PyTorch matmul loop for run_gpu_bench.sh. Prints CUDA-event time of the loop
(ms) as JSON; the profile should put the GEMM kernels under this file's matmul_loop (Python 3.12+
with PYTHONPERFSUPPORT=1 and a frame-pointer CPython) or under libtorch frames otherwise."""
import json
import sys

import torch


def matmul_loop(a, b, n):
    c = None
    for _ in range(n):
        c = a @ b
    return c


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    a = torch.randn(2048, 2048, device="cuda")
    b = torch.randn(2048, 2048, device="cuda")
    matmul_loop(a, b, 5)  # warm-up (cuBLAS handle, lazy loading)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    matmul_loop(a, b, n)
    end.record()
    torch.cuda.synchronize()
    print(json.dumps({"n": n, "loop_ms": start.elapsed_time(end), "warmup": 5}))


if __name__ == "__main__":
    main()
