#!/usr/bin/python3
"""Launch-time benchmark: cold start vs `prewarm restore`, and restore vs the copy floor.

Everything is measured side by side in one run (runs interleaved), and reported as medians and
ratios: these machines are shared and noisy, so absolute numbers move between runs, ratios less.
Usage: bench/run.py [--build build] [--runs 11] [--json]
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import CALC, launch, parser, prewarm_cli, snapshot

# The same app multi-threaded: numpy on OpenBLAS's pthreads build (libopenblas0-pthread), loaded
# for this process only; the system's BLAS stays as it is.
OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-pthread"


def time_to_answer(cmd, stdin_text):
    return launch(cmd, stdin_text)[0]


def timed(cmd):
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main():
    ap = parser(__doc__)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    prewarm = prewarm_cli(args.build)
    anon64 = os.path.join(args.build, "bench", "bench_anon64")
    floor = os.path.join(args.build, "bench", "bench_copy_floor")
    calc = CALC
    calc_mt = (["/usr/bin/env", "LD_LIBRARY_PATH=" + OPENBLAS, "OPENBLAS_NUM_THREADS=2"] + calc
               if os.path.exists(os.path.join(OPENBLAS, "libblas.so.3")) else None)
    work = tempfile.mkdtemp(prefix="prewarm-bench-")
    try:
        py_img, anon_img = os.path.join(work, "calc"), os.path.join(work, "anon64")
        mt_img = os.path.join(work, "calc_mt")
        snapshot(prewarm, calc, py_img)
        snapshot(prewarm, [anon64], anon_img)
        if calc_mt:
            snapshot(prewarm, calc_mt, mt_img)
        pages = os.path.join(anon_img, "pages.img")
        restore = lambda img: [prewarm, "restore", "--images", img]
        # Warm the page cache and the binaries once.
        time_to_answer(calc, "360\n")
        time_to_answer(restore(py_img), "360\n")
        time_to_answer(restore(anon_img), "x\n")
        if calc_mt:
            time_to_answer(calc_mt, "360\n")
            time_to_answer(restore(mt_img), "360\n")
        s = {k: [] for k in ("py_cold", "py_restore", "anon_restore", "anon_floor", "anon_cat")}
        if calc_mt:
            s.update(mt_cold=[], mt_restore=[])
        for _ in range(args.runs):
            s["py_cold"].append(time_to_answer(calc, "360\n"))
            s["py_restore"].append(time_to_answer(restore(py_img), "360\n"))
            if calc_mt:
                s["mt_cold"].append(time_to_answer(calc_mt, "360\n"))
                s["mt_restore"].append(time_to_answer(restore(mt_img), "360\n"))
            s["anon_restore"].append(time_to_answer(restore(anon_img), "x\n"))
            out = subprocess.run([floor, pages], check=True, capture_output=True, text=True)
            s["anon_floor"].append(float(out.stdout) / 1000)
            s["anon_cat"].append(timed(["sh", "-c", "cat '%s' > /dev/null" % pages]))
        med = {k: statistics.median(v) * 1000 for k, v in s.items()}
        res = {
            "runs": args.runs,
            "median_ms": {k: round(v, 2) for k, v in med.items()},
            "python_speedup": round(med["py_cold"] / med["py_restore"], 1),
            "anon_restore_over_floor": round(med["anon_restore"] / med["anon_floor"], 2),
            "threaded_speedup": round(med["mt_cold"] / med["mt_restore"], 1) if calc_mt else None,
            "image_bytes": {"calc": os.path.getsize(os.path.join(py_img, "pages.img")),
                            "anon64": os.path.getsize(pages)},
        }
        if args.json:
            print(json.dumps(res, indent=2))
            return
        m = res["median_ms"]
        print("| measurement (median of %d, same run) | time |" % args.runs)
        print("|---|---|")
        print("| python3 + sympy + numpy, cold start to first answer | %.1f ms |" % m["py_cold"])
        print("| same app, `prewarm restore` to first answer | %.1f ms (%.1fx faster) |"
              % (m["py_restore"], res["python_speedup"]))
        if calc_mt:
            print("| same app on OpenBLAS threads (2 threads), cold start to first answer | %.1f ms |"
                  % m["mt_cold"])
            print("| same, `prewarm restore` to first answer | %.1f ms (%.1fx faster) |"
                  % (m["mt_restore"], res["threaded_speedup"]))
        print("| 64 MiB anonymous app, `prewarm restore` to first answer | %.1f ms |" % m["anon_restore"])
        print("| copy floor: preadv of its pages.img into fresh anonymous memory | %.1f ms "
              "(restore = %.2fx floor) |" % (m["anon_floor"], res["anon_restore_over_floor"]))
        print("| `cat pages.img > /dev/null` (page cache) | %.1f ms |" % m["anon_cat"])
        print("| image sizes (pages.img) | calc %.1f MiB, anon64 %.1f MiB |"
              % (res["image_bytes"]["calc"] / 2**20, res["image_bytes"]["anon64"] / 2**20))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
