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
import sys
import time

from peer_util import parse_args, peak_rss_mib, report, timed


def extra_args(ap):
    ap.add_argument("--untiled", type=int, default=1, help="time the untiled decode (0 or 1)")
    ap.add_argument("--tile", default=None, help="MIN,STRIDE in pixels: also time a tiled decode")


def main():
    a = parse_args(__doc__, "torch_vae_peer.py",
                   "vae folder: config.json + diffusion_pytorch_model.safetensors",
                   "safetensors with z", "safetensors to write the videos to", warmup=0, iters=1,
                   extra=extra_args,
                   check=lambda a: None if (a.untiled or a.tile) else "need a decode to time")

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
    report(torch, "diffusers", diffusers.__version__, ms=ms, tiled_ms=tiled_ms, load_s=load_s,
           rss_import_mib=rss_import)
    return 0


if __name__ == "__main__":
    sys.exit(main())
