#!/usr/bin/env python3
"""check_layout.py: the folders' rules of README.md's layout table, held against the includes.

Every quoted #include of a source file in a library folder must resolve to a header of a folder
that the folder may use (the table below, the same arrows as the folders' target_link_libraries).
The build already refuses most forbidden arrows (a library sees only the headers of what it
links); this check also catches one that a widened link line would let through, and names it.

    python3 tests/check_layout.py [REPO]      # exit 0, or 1 with one line per forbidden include
"""
import os
import re
import sys

# folder -> folders (or single headers, "folder/name.h") it may include from, besides itself
MAY_USE = {
    "kernels": [],
    "coordinator/planner": ["kernels/status.h"],
    "proto": ["kernels/status.h"],
    "coordinator/store": ["kernels/status.h"],
    "coordinator": ["kernels/status.h", "coordinator/store", "proto", "coordinator/planner"],
    "worker/io": ["kernels"],
    "worker/comm": ["kernels/status.h"],
    "worker/models/text": ["kernels", "worker/io"],
    "worker/models/dit": ["kernels", "worker/io", "worker/comm"],
    "worker/models/vae": ["kernels", "worker/io", "worker/comm"],
    "worker/engine": ["kernels", "worker/io", "worker/comm", "worker/models/text",
                      "worker/models/dit", "worker/models/vae", "coordinator/planner"],
    "worker/farm": ["kernels/status.h", "proto", "coordinator/zkeys.h"],
    "worker": ["kernels", "worker/io", "worker/comm", "worker/models/text", "worker/models/dit",
               "worker/models/vae", "worker/engine", "coordinator/planner", "worker/farm",
               "proto"],
}
SOURCES = (".c", ".h", ".cc", ".cu")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def library_of(rel):
    """The library folder a file belongs to: the longest MAY_USE key above it (kernels/cpu and
    kernels/cuda are kernels)."""
    d = os.path.dirname(rel)
    best = None
    for k in MAY_USE:
        if d == k or d.startswith(k + "/"):
            if best is None or len(k) > len(best):
                best = k
    return best


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(__file__), ".."))
    files = []
    for top in ("kernels", "coordinator", "worker"):
        for dp, _, fs in os.walk(os.path.join(root, top)):
            files += [os.path.relpath(os.path.join(dp, f), root) for f in fs if f.endswith(SOURCES)]
    headers = {}  # basename -> [rel paths]
    for f in files:
        if f.endswith(".h"):
            headers.setdefault(os.path.basename(f), []).append(f)
    bad = []
    for name, where in headers.items():
        if len(where) > 1:
            bad.append("header %s is in %s: one name, one header" % (name, ", ".join(where)))
    for f in sorted(files):
        lib = library_of(f)
        if lib is None:
            bad.append("%s: in no library folder of the layout table" % f)
            continue
        allowed = [lib] + MAY_USE[lib]
        with open(os.path.join(root, f), encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                inc = m.group(1)
                cand = [h for h in headers.get(os.path.basename(inc), []) if h.endswith(inc)]
                if not cand:
                    continue  # a system or generated header
                h = cand[0]
                ok = any(h == a or os.path.dirname(h) == a or h.startswith(a + "/")
                         for a in allowed)
                if not ok:
                    bad.append("%s:%d: includes %s (%s), which %s may not use (README.md, Layout)"
                               % (f, n, inc, h, lib))
    for b in bad:
        print("check_layout: " + b)
    print("check_layout: %d files, %s" % (len(files), "OK" if not bad else "%d problems" % len(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
