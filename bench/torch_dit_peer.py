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
import sys
import time

from peer_util import parse_args, peak_rss_mib, report, timed


def main():
    a = parse_args(__doc__, "torch_dit_peer.py", "transformer folder: config.json + safetensors",
                   "safetensors with latents, timestep, text", "safetensors to write the output to")

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

    with torch.no_grad():
        out, ms = timed(lambda: model(latents, timestep, text, return_dict=False)[0], a.warmup,
                        a.iters)

    save_file({"out": out[0].contiguous().float()}, a.out)
    report(torch, "diffusers", diffusers.__version__, ms=ms, load_s=load_s,
           rss_import_mib=rss_import)
    return 0


if __name__ == "__main__":
    sys.exit(main())
