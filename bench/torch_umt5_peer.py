#!/usr/bin/env python3
"""torch_umt5_peer.py: the PyTorch/transformers peer of bench_umt5 (bench/bench_umt5.c runs it;
metrics in bench/PERFORMANCE.md, section "bench_umt5").

What it is: one UMT5EncoderModel forward in transformers on the CPU, on the checkpoint folder and
prompt that bench_umt5 wrote, at the same thread count, warm-up and iteration count:
    model = UMT5EncoderModel.from_pretrained(CKPT_DIR, dtype=torch.float32).eval()
    h = model(input_ids[None], attention_mask[None]).last_hidden_state[0]   under torch.no_grad()
    h[n_real:] = 0        (the Wan pipeline's trim: WanPipeline._get_t5_prompt_embeds keeps the
                           real rows and pads with zeros)
dtype=float32 makes the compute fp32 on either storage (a bf16 checkpoint is widened at load).
INPUTS holds "input_ids" and "attention_mask" [L], I64.
It prints one JSON object on stdout (everything else goes to stderr):
    {"torch": "2.x", "transformers": "5.x", "threads": N, "attn_implementation": "sdpa" | ...,
     "ms": median of --iters forwards (the trim included), "load_s": from_pretrained,
     "rss_import_mib": peak RSS after importing, "peak_rss_mib": process peak RSS at the end}
and writes the trimmed output [L, d_model] F32 as tensor "out" to OUT (safetensors).
What it is not: a correctness reference of its own (tests/test_umt5.c owns that, against fixtures);
bench_umt5 compares its output with this one's.
Run: python bench/torch_umt5_peer.py CKPT_DIR INPUTS OUT.safetensors --threads 2 --warmup 1 --iters 3
"""
import sys
import time

from peer_util import parse_args, peak_rss_mib, report, timed


def main():
    a = parse_args(__doc__, "torch_umt5_peer.py",
                   "text_encoder folder: config.json + model.safetensors",
                   "safetensors with input_ids, attention_mask", "safetensors to write the output to")

    import torch
    import transformers
    from transformers import UMT5EncoderModel
    from safetensors.torch import load_file, save_file

    torch.set_num_threads(a.threads)
    rss_import = peak_rss_mib()

    t0 = time.perf_counter()
    model = UMT5EncoderModel.from_pretrained(a.ckpt_dir, dtype=torch.float32).eval()
    load_s = time.perf_counter() - t0

    inp = load_file(a.inputs)
    ids = inp["input_ids"].long().unsqueeze(0)        # [1, L]
    mask = inp["attention_mask"].long().unsqueeze(0)  # [1, L]
    n_real = int(mask.sum())

    def forward():
        h = model(input_ids=ids, attention_mask=mask).last_hidden_state[0]
        h[n_real:] = 0
        return h

    with torch.no_grad():
        out, ms = timed(forward, a.warmup, a.iters)

    save_file({"out": out.contiguous().float()}, a.out)
    report(torch, "transformers", transformers.__version__,
           attn_implementation=str(getattr(model.config, "_attn_implementation", None)), ms=ms,
           load_s=load_s, rss_import_mib=rss_import)
    return 0


if __name__ == "__main__":
    sys.exit(main())
