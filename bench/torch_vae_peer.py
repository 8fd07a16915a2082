#!/usr/bin/env python3
"""torch_vae_peer.py: the PyTorch/Diffusers peer of bench_vae (bench/bench_vae.c runs it; metrics in
bench/PERFORMANCE.md, section "bench_vae").

What it is: Wan VAE decodes in Diffusers on the CPU, on the checkpoint folder and latent that
bench_vae wrote, at the same thread count, warm-up and iteration count:
    vae = AutoencoderKLWan.from_pretrained(CKPT_DIR).float().eval()
    video = vae.decode(z[None]).sample                      under torch.no_grad()
(Diffusers' _decode: post_quant_conv, then the decoder one latent frame per chunk with the causal
feature cache, then the clamp to [-1, 1]). With --tile MIN,STRIDE it also times the tiled decode,
vae.enable_tiling(tile_sample_min_height=MIN, tile_sample_min_width=MIN,
tile_sample_stride_height=STRIDE, tile_sample_stride_width=STRIDE); --untiled 0 skips the untiled
one. The `.float()` makes the compute fp32 on either storage.
INPUTS holds "z" [z_dim, T, h, w] F32 (VAE space: already de-normalised).
It prints one JSON object on stdout (everything else goes to stderr):
    {"torch": "2.x", "diffusers": "0.x", "threads": N, "ms": median of --iters untiled decodes
     (null if not run), "tiled_ms": the same for the tiled decode (null if not run),
     "load_s": from_pretrained + .float(), "rss_import_mib": peak RSS after importing,
     "peak_rss_mib": process peak RSS at the end (resource.getrusage ru_maxrss)}
and writes the videos [3, F, H, W] F32 as tensors "video" (untiled) and "tiled" to OUT.
What it is not: a correctness reference of its own (tests/test_vae.c owns that, against fixtures);
bench_vae compares its output with this one's.
Run: python bench/torch_vae_peer.py CKPT_DIR INPUTS OUT.safetensors --threads 2 --warmup 0 --iters 1
"""
import argparse
import json
import resource
import statistics
import sys
import time


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def timed(fn, warmup, iters):
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ckpt_dir", help="vae folder: config.json + diffusion_pytorch_model.safetensors")
    ap.add_argument("inputs", help="safetensors with z")
    ap.add_argument("out", help="safetensors to write the videos to")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--warmup", type=int, default=0, help="untimed decodes")
    ap.add_argument("--iters", type=int, default=1, help="timed decodes (median reported)")
    ap.add_argument("--untiled", type=int, default=1, help="time the untiled decode (0 or 1)")
    ap.add_argument("--tile", default=None, help="MIN,STRIDE in pixels: also time a tiled decode")
    a = ap.parse_args()
    if a.iters < 1 or a.warmup < 0 or a.threads < 1 or (not a.untiled and not a.tile):
        print("torch_vae_peer.py: need --iters >= 1, --warmup >= 0, --threads >= 1 and a decode",
              file=sys.stderr)
        return 2

    import torch
    import diffusers
    from diffusers import AutoencoderKLWan
    from safetensors.torch import load_file, save_file

    torch.set_num_threads(a.threads)
    rss_import = peak_rss_mib()

    t0 = time.perf_counter()
    vae = AutoencoderKLWan.from_pretrained(a.ckpt_dir).float().eval()
    load_s = time.perf_counter() - t0

    z = load_file(a.inputs)["z"].float().unsqueeze(0)  # [1, z_dim, T, h, w]

    outs = {}
    ms = tiled_ms = None
    with torch.no_grad():
        if a.untiled:
            vae.disable_tiling()
            video, ms = timed(lambda: vae.decode(z).sample, a.warmup, a.iters)
            outs["video"] = video[0].contiguous().float()
        if a.tile:
            tmin, tstride = (int(v) for v in a.tile.split(","))
            vae.enable_tiling(tile_sample_min_height=tmin, tile_sample_min_width=tmin,
                              tile_sample_stride_height=tstride, tile_sample_stride_width=tstride)
            video, tiled_ms = timed(lambda: vae.decode(z).sample, a.warmup, a.iters)
            outs["tiled"] = video[0].contiguous().float()

    save_file(outs, a.out)
    print(json.dumps({
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "threads": torch.get_num_threads(),
        "ms": ms,
        "tiled_ms": tiled_ms,
        "load_s": load_s,
        "rss_import_mib": rss_import,
        "peak_rss_mib": peak_rss_mib(),
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
