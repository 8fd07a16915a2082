#!/usr/bin/env python3
"""torch_dit_peer.py: the PyTorch/Diffusers peer of bench_dit (bench/bench_dit.c runs it; metrics in
bench/PERFORMANCE.md, section "bench_dit").

What it is: one WanTransformer3DModel forward in Diffusers on the CPU, on the checkpoint folder and
inputs that bench_dit wrote, at the same thread count, warm-up and iteration count:
    model = WanTransformer3DModel.from_pretrained(CKPT_DIR).float().eval()
    out = model(latents[None], timestep, text[None], return_dict=False)[0]   under torch.no_grad()
The `.float()` makes the compute fp32 on either storage: with bf16 storage both sides compute in
fp32 on the same bf16-rounded weights (Diffusers' own bf16 path would compute in bf16).
INPUTS holds "latents" [Cin, F, H, W], "timestep" [1] and "text" [Lt, text_dim], all F32.
It prints one JSON object on stdout (everything else goes to stderr):
    {"torch": "2.x", "diffusers": "0.x", "threads": N, "ms": median of --iters forwards,
     "load_s": from_pretrained + .float(), "rss_import_mib": peak RSS after importing,
     "peak_rss_mib": process peak RSS at the end (resource.getrusage ru_maxrss)}
and writes the output [Cout, F, H, W] F32 as tensor "out" to OUT (safetensors).
What it is not: a correctness reference of its own (tests/test_dit.c owns that, against fixtures);
bench_dit compares its output with this one's.
Run: python bench/torch_dit_peer.py CKPT_DIR INPUTS OUT.safetensors --threads 2 --warmup 1 --iters 3
"""
import argparse
import json
import resource
import statistics
import sys
import time


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ckpt_dir", help="transformer folder: config.json + safetensors")
    ap.add_argument("inputs", help="safetensors with latents, timestep, text")
    ap.add_argument("out", help="safetensors to write the output to")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--warmup", type=int, default=1, help="untimed forwards")
    ap.add_argument("--iters", type=int, default=3, help="timed forwards (median reported)")
    a = ap.parse_args()
    if a.iters < 1 or a.warmup < 0 or a.threads < 1:
        print("torch_dit_peer.py: need --iters >= 1, --warmup >= 0, --threads >= 1", file=sys.stderr)
        return 2

    import torch
    import diffusers
    from diffusers import WanTransformer3DModel
    from safetensors.torch import load_file, save_file

    torch.set_num_threads(a.threads)
    rss_import = peak_rss_mib()

    t0 = time.perf_counter()
    model = WanTransformer3DModel.from_pretrained(a.ckpt_dir).float().eval()
    load_s = time.perf_counter() - t0

    inp = load_file(a.inputs)
    latents = inp["latents"].float().unsqueeze(0)  # [1, Cin, F, H, W]
    timestep = inp["timestep"].float().reshape(1)  # [1]
    text = inp["text"].float().unsqueeze(0)        # [1, Lt, text_dim]

    out = None
    times = []
    with torch.no_grad():
        for _ in range(a.warmup):
            out = model(latents, timestep, text, return_dict=False)[0]
        for _ in range(a.iters):
            t0 = time.perf_counter()
            out = model(latents, timestep, text, return_dict=False)[0]
            times.append(time.perf_counter() - t0)

    save_file({"out": out[0].contiguous().float()}, a.out)
    print(json.dumps({
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "threads": torch.get_num_threads(),
        "ms": statistics.median(times) * 1e3,
        "load_s": load_s,
        "rss_import_mib": rss_import,
        "peak_rss_mib": peak_rss_mib(),
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
