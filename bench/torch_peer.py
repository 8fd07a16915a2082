#!/usr/bin/env python3
"""torch_peer.py: the PyTorch peer of bench_ops (bench/bench_ops.c runs it; metrics in
bench/PERFORMANCE.md).

What it is: times the same shapes as bench_ops with PyTorch on the CPU, at the same thread count,
warm-up and iteration count, and prints one JSON object per line:
    {"torch": "2.x.y", "threads": N}
    {"case": "matmul:256,1536,1536", "ms": 1.234}      (median of -n timed calls)
The computations mirror what wanfarm's ops do for Wan:
    matmul:M,K,N            F.linear(x[M,K] f32, w[N,K], b[N]); a bf16 weight is widened with
                            .float() inside the timed call, as the wanfarm op widens it.
    attention:L,NH,HD       F.scaled_dot_product_attention on (1, NH, L, HD) f32, default scale.
    conv3d:T,H,W,Cin,Cout   F.pad(x, (1,1,1,1,2,0)) then F.conv3d(..., w[Cout,Cin,3,3,3], b) on a
                            channels-first f32 x [1, Cin, T, H, W] (WanCausalConv3d).
What it is not: a correctness reference (tests and bench_ops' own check are).
Run: python bench/torch_peer.py --threads 2 -w 1 -n 5 --dtype f32 matmul:256,1536,1536
"""
import argparse
import json
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("-w", type=int, default=1, help="warm-up calls")
    ap.add_argument("-n", type=int, default=5, help="timed calls (median reported)")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32", help="weight dtype")
    ap.add_argument("cases", nargs="+", help="op:dims, as bench_ops passes them")
    a = ap.parse_args()

    import torch
    import torch.nn.functional as F

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    wdt = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)

    for case in a.cases:
        op, _, dims = case.partition(":")
        d = [int(v) for v in dims.split(",")]
        if op == "matmul":
            M, K, N = d
            x = torch.randn(M, K)
            w = (torch.randn(N, K) / K**0.5).to(wdt)
            b = torch.randn(N).to(wdt)
            fn = lambda: F.linear(x, w.float(), b.float())  # noqa: E731
        elif op == "attention":
            L, NH, HD = d
            q, k, v = (torch.randn(1, NH, L, HD) for _ in range(3))
            fn = lambda: F.scaled_dot_product_attention(q, k, v)  # noqa: E731
        elif op == "conv3d":
            T, H, W, Ci, Co = d
            x = torch.randn(1, Ci, T, H, W)
            w = (torch.randn(Co, Ci, 3, 3, 3) / (27 * Ci) ** 0.5).to(wdt)
            b = torch.randn(Co).to(wdt)
            fn = lambda: F.conv3d(F.pad(x, (1, 1, 1, 1, 2, 0)), w.float(), b.float())  # noqa: E731
        else:
            print(f"torch_peer.py: unknown op in case {case!r}", file=sys.stderr)
            return 2
        with torch.inference_mode():
            for _ in range(a.w):
                fn()
            times = []
            for _ in range(a.n):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        print(json.dumps({"case": case, "ms": statistics.median(times) * 1e3}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
