"""torch_gpu_peer.py: bench_gpu's PyTorch peer on the same GPU: bf16 matmul, SDPA and conv3d on
the shapes bench_gpu times, one JSON line per measurement (bench/PERFORMANCE.md, "bench_gpu").

What it is: for each --gemm M,K,N: F.linear of an f32 x [M, K] cast to bf16 inside the timed call
(as wk_matmul rounds its f32 activation inside the op) against a bf16 weight [N, K] ("ms"), and
the same on an already-bf16 x ("ms_gemm", the GEMM alone); for each --attn L,NH,HD:
F.scaled_dot_product_attention on bf16 (1, NH, L, HD) tensors, non-causal, with whichever SDPA
backend torch picks by default ("ms"; the enabled backends are reported); for each
--conv T,H,W,CIN,COUT: WanCausalConv3d's F.conv3d(F.pad(x, (1, 1, 1, 1, 2, 0)), w, b) on a bf16
channels_last_3d x [1, CIN, T, H, W]. Times are CUDA-event medians over --iters calls after
--warmup calls, each "call" being --reps back-to-back launches (ms is per launch).
What it is not: a correctness reference (bench_gpu checks itself against the CPU), or a model
peer (no DiT block, no VAE decode: those have no PyTorch row).
Run: python3 bench/torch_gpu_peer.py --gemm 8192,8192,8192 --attn 9450,40,128 --warmup 1 --iters 5
Exit status 3 (and a line saying why) when torch has no CUDA device.
"""
import argparse
import json
import statistics
import sys


def ints(v, n):
    parts = [int(x) for x in v.split(",")]
    if len(parts) != n or min(parts) < 1:
        raise argparse.ArgumentTypeError("need %d positive integers, comma-separated: %r" % (n, v))
    return parts


def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gemm", action="append", default=[], type=lambda v: ints(v, 3))
    ap.add_argument("--attn", action="append", default=[], type=lambda v: ints(v, 3))
    ap.add_argument("--conv", action="append", default=[], type=lambda v: ints(v, 5))
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--reps", type=int, default=0, help="launches per call (0: about 20 ms)")
    a = ap.parse_args()
    if a.iters < 1 or a.warmup < 0 or a.reps < 0:
        print("torch_gpu_peer.py: need --iters >= 1, --warmup >= 0, --reps >= 0", file=sys.stderr)
        sys.exit(2)
    return a


def timed(torch, fn, warmup, iters, reps):
    """Median ms per launch of fn over iters calls of `reps` launches, after warmup calls."""
    fn()
    torch.cuda.synchronize()
    if reps == 0:  # about 20 ms per call, from one timed launch
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        reps = max(1, min(100, int(20.0 / max(s.elapsed_time(e), 1e-3))))
    for _ in range(warmup):
        for _ in range(reps):
            fn()
    times = []
    for _ in range(iters):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(reps):
            fn()
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e) / reps)
    return statistics.median(times)


def emit(**fields):
    print(json.dumps(fields), flush=True)


def run_gemm(torch, F, a, m, k, n):
    x = torch.randn(m, k, device="cuda")
    w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
    xb = x.to(torch.bfloat16)
    ms = timed(torch, lambda: F.linear(x.to(torch.bfloat16), w), a.warmup, a.iters, a.reps)
    ms_gemm = timed(torch, lambda: F.linear(xb, w), a.warmup, a.iters, a.reps)
    emit(what="matmul", M=m, K=k, N=n, ms=ms, ms_gemm=ms_gemm,
         tflops=2.0 * m * k * n / (ms * 1e9), tflops_gemm=2.0 * m * k * n / (ms_gemm * 1e9))


def run_attn(torch, F, a, L, nh, hd):
    q, k, v = (torch.randn(1, nh, L, hd, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    ms = timed(torch, lambda: F.scaled_dot_product_attention(q, k, v), a.warmup, a.iters, a.reps)
    emit(what="sdpa", L=L, NH=nh, HD=hd, ms=ms, tflops=4.0 * L * L * nh * hd / (ms * 1e9))


def run_conv(torch, F, a, t, h, w, cin, cout):
    x = torch.randn(1, cin, t, h, w, device="cuda", dtype=torch.bfloat16)
    x = x.contiguous(memory_format=torch.channels_last_3d)
    wt = (torch.randn(cout, cin, 3, 3, 3, device="cuda", dtype=torch.bfloat16) * 0.02)
    wt = wt.contiguous(memory_format=torch.channels_last_3d)
    b = torch.zeros(cout, device="cuda", dtype=torch.bfloat16)
    fn = lambda: F.conv3d(F.pad(x, (1, 1, 1, 1, 2, 0)), wt, b)
    ms = timed(torch, fn, a.warmup, a.iters, a.reps)
    emit(what="conv3d", T=t, H=h, W=w, Cin=cin, Cout=cout, ms=ms,
         tflops=2.0 * t * h * w * cout * cin * 27 / (ms * 1e9))


def main():
    a = parse()
    import torch
    import torch.nn.functional as F
    if not torch.cuda.is_available():
        print("torch_gpu_peer.py: torch %s has no CUDA device" % torch.__version__, file=sys.stderr)
        sys.exit(3)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    jobs = [(run_gemm, g) for g in a.gemm] + [(run_attn, s) for s in a.attn] + \
           [(run_conv, c) for c in a.conv]
    with torch.inference_mode():
        for fn, args in jobs:  # one failure leaves the other rows' numbers
            try:
                fn(torch, F, a, *args)
            except Exception as ex:  # noqa: BLE001 -- reported, not hidden
                emit(what=fn.__name__[4:], args=args, error=str(ex).splitlines()[0][:300])
            torch.cuda.empty_cache()
    props = torch.cuda.get_device_properties(0)
    sdpa = [n for n in ("flash", "mem_efficient", "cudnn", "math")
            if getattr(torch.backends.cuda, n + "_sdp_enabled", lambda: False)()]
    emit(torch=torch.__version__, cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
         device=props.name, total_mem=props.total_memory, sdpa_enabled=",".join(sdpa))


if __name__ == "__main__":
    main()
