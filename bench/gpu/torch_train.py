"""torch_train: a small PyTorch training loop for run_gpu_bench.sh, started with ember.watch()
(the package in python/, pointed at the benchmark's socket by EMBER_BENCH_SOCKET), then a
launch-bound loop of tiny kernels. Prints JSON: the loop's CUDA-event time and, for the
launch-bound loop, host nanoseconds per launch. Run once with the library (watch) and once
without (EMBER_BENCH_NO_WATCH=1) to get the cost per launch.

Usage: torch_train.py STEPS LAUNCHES"""
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if not os.environ.get("EMBER_BENCH_NO_WATCH"):
    sys.path.insert(0, os.path.join(ROOT, "python"))
    import ember

    ember.watch(profiles=("gpu",), gpu_socket=os.environ["EMBER_BENCH_SOCKET"])

import torch  # noqa: E402  (after watch(): CUDA must not be initialized before it)


class Block(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc1 = torch.nn.Linear(d, 4 * d)
        self.fc2 = torch.nn.Linear(4 * d, d)

    def forward(self, x):
        return x + self.fc2(torch.relu(self.fc1(x)))


class Model(torch.nn.Module):
    def __init__(self, d, n):
        super().__init__()
        self.blocks = torch.nn.ModuleList([Block(d) for _ in range(n)])

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x


def train_step(model, opt, x):
    out = model(x)
    loss = out.square().mean()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def launch_bound(n):
    t = torch.zeros(16, device="cuda")
    torch.cuda.synchronize()
    t0 = time.perf_counter_ns()
    for _ in range(n):
        t.add_(1)
    torch.cuda.synchronize()
    return (time.perf_counter_ns() - t0) / n


def main():
    steps, launches = int(sys.argv[1]), int(sys.argv[2])
    model = Model(1024, 4).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(256, 1024, device="cuda")
    train_step(model, opt, x)  # warm-up
    launch_bound(1000)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        train_step(model, opt, x)
    end.record()
    torch.cuda.synchronize()
    per = [launch_bound(launches) for _ in range(5)]
    print(json.dumps({"steps": steps, "loop_ms": start.elapsed_time(end),
                      "launch_ns": sorted(per)[len(per) // 2], "launch_runs_ns": per}))


if __name__ == "__main__":
    main()
