#!/usr/bin/env python3
"""compare_latents.py A.h5 B.h5 [TOL]: compares the /latents datasets of two HDF5 files written by
`wanfarm generate --save-latents` (read through h5dump, so no Python HDF5 package is needed).

Prints "identical" when every value prints the same at full precision, else the largest absolute
difference. Exit status: 0 when the largest difference is at most TOL (default 1e-5), 1 when it
is larger or the shapes differ, 2 when a file cannot be read.
"""
import re
import subprocess
import sys


def values(path):
    out = subprocess.run(["h5dump", "-d", "/latents", "-w", "0", "-m", "%.9g", path],
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit("compare_latents: h5dump %s: %s" % (path, out.stderr.strip() or "failed"))
    body = out.stdout.split("DATA", 1)
    if len(body) != 2:
        sys.exit("compare_latents: %s has no /latents data" % path)
    shape = re.search(r"DATASPACE\s+SIMPLE\s+\{\s*\(([^)]*)\)", out.stdout)
    data = re.sub(r"\(\d+(,\d+)*\):", " ", body[1])  # drop the "(i,j,...):" indices
    nums = re.findall(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf", data)
    return (shape.group(1) if shape else "?"), [float(x) for x in nums]


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    tol = float(sys.argv[3]) if len(sys.argv) == 4 else 1e-5
    sa, a = values(sys.argv[1])
    sb, b = values(sys.argv[2])
    if sa != sb or len(a) != len(b):
        print("shapes differ: (%s) vs (%s)" % (sa, sb))
        return 1
    diff = max((abs(x - y) for x, y in zip(a, b)), default=0.0)
    if any(x != x or y != y for x, y in zip(a, b)):
        diff = float("inf")
    print("identical" if diff == 0 else "max |diff| %.3g" % diff)
    return 0 if diff <= tol else 1


if __name__ == "__main__":
    sys.exit(main())
