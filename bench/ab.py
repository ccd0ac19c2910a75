#!/usr/bin/python3
"""A/B of two prewarm builds: `prewarm restore` of the same two images, interleaved in pairs.

For a change to the restore path: both binaries restore the python3+sympy+numpy image and the
64 MiB anonymous one in alternating order, so the VM's drift hits both alike.
Usage: bench/ab.py OLD_BUILD_DIR [--build build] [--pairs 25]
(an old build: `git worktree add /tmp/old REV && cmake -S /tmp/old -B /tmp/oldbuild
-DBUILD_TESTING=OFF && cmake --build /tmp/oldbuild --target prewarm`)
"""
import argparse
import os
import shutil
import statistics
import tempfile

import run

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old_build")
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--pairs", type=int, default=25)
    args = ap.parse_args()
    bins = {"old": os.path.join(args.old_build, "prewarmd", "prewarm"),
            "new": os.path.join(args.build, "prewarmd", "prewarm")}
    work = tempfile.mkdtemp(prefix="prewarm-ab-")
    try:
        # Images from the new build: the format is the same for both (same format version).
        imgs = {"python": (os.path.join(work, "calc"), "360\n"), "anon64": (os.path.join(work, "anon64"), "x\n")}
        run.snapshot(bins["new"], [run.PYTHON, os.path.join(HERE, "progs", "calc.py")], imgs["python"][0])
        run.snapshot(bins["new"], [os.path.join(args.build, "bench", "bench_anon64")], imgs["anon64"][0])
        ms = {(b, i): [] for b in bins for i in imgs}
        for n in range(args.pairs + 1):
            for b in (("old", "new") if n % 2 else ("new", "old")):
                for i, (img, line) in imgs.items():
                    t = run.time_to_answer([bins[b], "restore", "--images", img], line) * 1000
                    if n:  # the first round warms the page cache and the binaries
                        ms[(b, i)].append(t)
        for i in imgs:
            old, new = statistics.median(ms[("old", i)]), statistics.median(ms[("new", i)])
            print("%-7s restore median of %d: old %.1f ms, new %.1f ms (new/old %.2f)" % (i, args.pairs, old, new, new / old))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
