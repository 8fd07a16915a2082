"""peer_util.py: what the model benches' PyTorch peers (torch_dit_peer.py, torch_umt5_peer.py,
torch_vae_peer.py) share: their command line, the timing loop, peak RSS and the JSON line they
print for bench_util's bu_peer_run (bench/PERFORMANCE.md defines the fields).
"""
import argparse
import json
import resource
import statistics
import sys
import time


def peak_rss_mib():
    """The process' peak RSS so far, MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def parse_args(doc, prog, ckpt_help, inputs_help, out_help, warmup=1, iters=3, extra=None,
               check=None):
    """CKPT_DIR INPUTS OUT --threads N --warmup N --iters N (+ extra(ap) arguments). Exits with
    status 2 and a one-line message when the counts are out of range or check(a) says why."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("ckpt_dir", help=ckpt_help)
    ap.add_argument("inputs", help=inputs_help)
    ap.add_argument("out", help=out_help)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--warmup", type=int, default=warmup, help="untimed runs")
    ap.add_argument("--iters", type=int, default=iters, help="timed runs (median reported)")
    if extra:
        extra(ap)
    a = ap.parse_args()
    why = None
    if a.iters < 1 or a.warmup < 0 or a.threads < 1:
        why = "need --iters >= 1, --warmup >= 0, --threads >= 1"
    elif check:
        why = check(a)
    if why:
        print("%s: %s" % (prog, why), file=sys.stderr)
        sys.exit(2)
    return a


def timed(fn, warmup, iters):
    """Runs fn warmup times, then iters timed times: (the last output, the median in ms)."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times) * 1e3


def report(torch, lib_name, lib_version, **fields):
    """The one JSON line on stdout: versions, threads, the given fields, the peak RSS at the end."""
    o = {"torch": torch.__version__, lib_name: lib_version, "threads": torch.get_num_threads()}
    o.update(fields)
    o["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(o), flush=True)
