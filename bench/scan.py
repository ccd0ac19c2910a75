#!/usr/bin/python3
"""Page finding benchmark: PAGEMAP_SCAN vs the /proc/PID/pagemap fallback, on the sympy+numpy app.

One run, side by side: bench_page_scan times both ways over the stopped app's mappings (rounds
alternating which goes first) and checks they find the same pages; then `prewarm dump` of the same
app, interleaved with and without PREWARM_FORCE_PAGEMAP_FALLBACK=1, as the dump reports it.
Usage: bench/scan.py [--build build] [--runs 11] [--json]
"""
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"  # Debian's, where python3-sympy and python3-numpy are installed
DUMP_LINE = re.compile(r"frozen ([0-9.]+) ms, ([0-9.]+) ms in all")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    prewarm = os.path.join(args.build, "prewarmd", "prewarm")
    bench = os.path.join(args.build, "bench", "bench_page_scan")
    app = subprocess.Popen([PYTHON, os.path.join(HERE, "progs", "calc.py")],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        if not app.stdout.readline().startswith(b"ready"):
            sys.exit("calc.py did not become ready")
        os.kill(app.pid, signal.SIGSTOP)
        r = subprocess.run([bench, str(app.pid), str(2 * args.runs + 1)], capture_output=True, text=True)
        os.kill(app.pid, signal.SIGCONT)
        if r.returncode != 0:
            sys.exit("bench_page_scan failed: " + r.stderr + r.stdout)
        res = {"find": json.loads(r.stdout), "dump": {"scan": [], "pagemap": []}}
        with tempfile.TemporaryDirectory(prefix="prewarm-scan-bench-") as work:
            for i in range(2 * args.runs):
                way = ("scan", "pagemap")[i % 2]
                env = dict(os.environ)
                env.pop("PREWARM_FORCE_PAGEMAP_FALLBACK", None)
                if way == "pagemap":
                    env["PREWARM_FORCE_PAGEMAP_FALLBACK"] = "1"
                d = subprocess.run([prewarm, "dump", "--pid", str(app.pid), "--images",
                                    os.path.join(work, "img%d" % i)], capture_output=True, text=True, env=env)
                m = DUMP_LINE.search(d.stderr)
                want = "found with %s)" % ("pagemap" if way == "pagemap" else "PAGEMAP_SCAN")
                if d.returncode != 0 or not m or want not in d.stderr:
                    sys.exit("dump (%s) failed: %s" % (way, d.stderr))
                res["dump"][way].append({"frozen_ms": float(m.group(1)), "total_ms": float(m.group(2))})
                subprocess.run(["rm", "-rf", os.path.join(work, "img%d" % i)], check=True)
    finally:
        app.kill()
        app.wait()
    med = lambda way, k: statistics.median(x[k] for x in res["dump"][way])
    res["dump_median"] = {w: {k: med(w, k) for k in ("frozen_ms", "total_ms")} for w in ("scan", "pagemap")}
    if args.json:
        print(json.dumps(res, indent=2))
        return
    f = res["find"]
    print("| measurement (sympy+numpy app, same run) | PAGEMAP_SCAN | pagemap fallback | ratio |")
    print("|---|---|---|---|")
    print("| find pages: %d mappings, %.0f MiB of address space, %d pages (median of %d) | %.2f ms | %.2f ms | %.1fx |"
          % (f["mappings"], f["span_mib"], f["pages"], f["rounds"], f["scan_ms"], f["pagemap_ms"],
             f["pagemap_ms"] / f["scan_ms"] if f["scan_ms"] else 0))
    for k, label in (("frozen_ms", "`prewarm dump`, app frozen"), ("total_ms", "`prewarm dump`, in all")):
        s, p = res["dump_median"]["scan"][k], res["dump_median"]["pagemap"][k]
        print("| %s (median of %d) | %.1f ms | %.1f ms | %.2fx |" % (label, args.runs, s, p, p / s if s else 0))
    print("same pages both ways: %s; zero page recognised by frame: %s; zero page probe %.2f ms"
          % (f["same"], f["zero_pfn_known"], f["zero_probe_ms"]))


if __name__ == "__main__":
    main()
