#!/usr/bin/python3
"""Real multi-threaded runtimes: cold start vs `prewarm restore`, each to its first answer.

The apps are runtimes_test's (tests/apps): node, an OpenJDK program, a Go program, emacs in
batch mode, an IPython shell, and python3 + sympy + numpy on OpenBLAS threads. Each is dumped once
when ready, then cold starts and restores run interleaved; medians and ratios of one run.
An app whose runtime or build is missing is left out and named. Root (prewarm dump ptraces).
Usage: bench/runtimes.py [--build build] [--runs 11] [--json]
"""
import json
import os
import shutil
import statistics
import sys
import tempfile

from benchlib import CALC, HERE, launch, parser, prewarm_cli, snapshot

APPS_DIR = os.path.join(HERE, "..", "tests", "apps")
OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-pthread"


def apps(build, work):
    """(name, argv, input, why it is left out or None)."""
    integ = os.path.join(build, "tests", "integration")
    ipy_dir = os.path.join(work, "ipython")
    go = os.path.join(integ, "go_app")
    java_dir = os.path.join(integ, "java")
    return [
        ("node", ["/usr/bin/node", os.path.join(APPS_DIR, "runtime_app.js")], "12345\n",
         None if os.access("/usr/bin/node", os.X_OK) else "no /usr/bin/node"),
        ("OpenJDK 17", ["/usr/bin/java", "-XX:-UsePerfData", "-cp", java_dir, "RuntimeApp"], "12345\n",
         None if os.path.exists(os.path.join(java_dir, "RuntimeApp.class")) else "no RuntimeApp.class in the build"),
        ("Go", [go], "123\n", None if os.access(go, os.X_OK) else "no go_app in the build"),
        ("emacs (batch)", ["/usr/bin/emacs", "--batch", "-Q", "-l", os.path.join(APPS_DIR, "emacs_app.el")], "123\n",
         None if os.access("/usr/bin/emacs", os.X_OK) else "no /usr/bin/emacs"),
        ("IPython", ["/usr/bin/env", "IPYTHONDIR=" + ipy_dir, "IPYTHON_APP_HISTORY_IN_MEMORY=1", "/usr/bin/python3",
                     os.path.join(APPS_DIR, "ipython_app.py")], "123\n", None),
        ("python3 + sympy + numpy, OpenBLAS 2 threads",
         ["/usr/bin/env", "LD_LIBRARY_PATH=" + OPENBLAS, "OPENBLAS_NUM_THREADS=2"] + CALC, "360\n",
         None if os.path.exists(os.path.join(OPENBLAS, "libblas.so.3")) else "no " + OPENBLAS),
    ]


def main():
    ap = parser(__doc__)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    prewarm = prewarm_cli(args.build)
    work = tempfile.mkdtemp(prefix="prewarm-bench-runtimes-")
    try:
        rows, left_out = [], []
        for name, argv, text, missing in apps(args.build, work):
            if missing:
                left_out.append((name, missing))
                continue
            img = os.path.join(work, "img-%d" % len(rows))
            try:
                # Ready is printed before the runtime waits on its input: let its threads settle.
                dumped = snapshot(prewarm, argv, img, settle=0.3)
            except RuntimeError as e:
                left_out.append((name, str(e).splitlines()[0]))
                continue
            rows.append({"name": name, "argv": argv, "input": text, "img": img, "dump": dumped.splitlines()[-1]})
        restore = lambda img: [prewarm, "restore", "--images", img]
        for r in rows:  # warm the page cache and the binaries once
            launch(r["argv"], r["input"])
            launch(restore(r["img"]), r["input"])
            r["cold"], r["restored"] = [], []
        for _ in range(args.runs):
            for r in rows:
                r["cold"].append(launch(r["argv"], r["input"])[0])
                r["restored"].append(launch(restore(r["img"]), r["input"])[0])
        res = {"runs": args.runs, "apps": [], "left_out": [{"app": n, "why": w} for n, w in left_out]}
        for r in rows:
            c, s = statistics.median(r["cold"]) * 1000, statistics.median(r["restored"]) * 1000
            res["apps"].append({"app": r["name"], "cold_ms": round(c, 1), "restored_ms": round(s, 1),
                                "speedup": round(c / s, 1),
                                "image_mib": round(os.path.getsize(os.path.join(r["img"], "pages.img")) / 2**20, 1),
                                "dump": r["dump"]})
        if args.json:
            print(json.dumps(res, indent=2))
            return 0
        print("| runtime (median of %d, same run) | cold to first answer | restored to first answer | image |"
              % args.runs)
        print("|---|---|---|---|")
        for a in res["apps"]:
            print("| %s | %.1f ms | %.1f ms (%.1fx) | %.1f MiB |"
                  % (a["app"], a["cold_ms"], a["restored_ms"], a["speedup"], a["image_mib"]))
        for n, w in left_out:
            print("left out: %s (%s)" % (n, w))
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
