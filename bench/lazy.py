#!/usr/bin/python3
"""Eager vs lazy restore (`prewarm restore --lazy`): time to first answer, side by side.

One snapshot of each app, then restores interleaved (eager, lazy, eager, ...) so both see the same
machine; medians and their ratio. Apps: python3 + sympy + numpy (bench/progs/calc.py), and
tests/progs/lazy_mem (N MiB of patterned memory, answering after it has touched one page) to show
what lazy restore saves when the app touches little of its memory. Lazy runs with the working set
an earlier lazy launch recorded (DIR/workingset, filled first) and without it. The lazy runs'
PREWARM_TRACE lines give the page server's counts: faults, pages filled on a fault and in the
background (when the server was done before the app exited).
Usage: bench/lazy.py [--build build] [--runs 11] [--mib 256]   (root: lazy needs a full userfaultfd)
"""
import os
import re
import statistics
import sys
import tempfile

from benchlib import CALC, launch, parser, prewarm_cli, snapshot


def run(cmd, stdin_text, env):
    # lazy_mem answers "ok"
    return launch(cmd, stdin_text, env, answers=(b"answer", b"ok"))


def main():
    ap = parser(__doc__)
    ap.add_argument("--mib", type=int, default=256)
    args = ap.parse_args()
    prewarm = prewarm_cli(args.build)
    lazy_mem = os.path.join(args.build, "tests", "progs", "prog_lazy_mem")
    apps = [("python3+sympy+numpy", CALC, "360\n"),
            # 'touch' answers after checking one page: an app whose answer needs little of its memory.
            ("lazy_mem %d MiB, touches little" % args.mib, [lazy_mem, str(args.mib)], "touch\n")]
    env = dict(os.environ, PREWARM_TRACE="1")
    with tempfile.TemporaryDirectory(prefix="prewarm-lazy-bench-") as tmp:
        print("| app (same run, median of %d) | eager | lazy (vs eager) | lazy, working set first (vs eager) | "
              "lazy: faults, pages on a fault / in the background |" % args.runs)
        print("|---|---|---|---|---|")
        for name, cmd, stdin_text in apps:
            images = os.path.join(tmp, re.sub(r"\W+", "_", name))
            snapshot(prewarm, cmd, images)
            ws_file = os.path.join(images, "workingset")
            run([prewarm, "restore", "--lazy", "--images", images], stdin_text, env)  # records the working set
            kept = open(ws_file, "rb").read()
            eager, lazy, lazy_ws, traces = [], [], [], []
            for _ in range(args.runs):
                eager.append(run([prewarm, "restore", "--images", images], stdin_text, env)[0])
                with open(ws_file, "wb") as f:  # as recorded by the first lazy launch
                    f.write(kept)
                lazy_ws.append(run([prewarm, "restore", "--lazy", "--images", images], stdin_text, env)[0])
                os.unlink(ws_file)  # lazy without a working set: in pages.img order
                t, err = run([prewarm, "restore", "--lazy", "--images", images], stdin_text, env)
                lazy.append(t)
                m = re.search(r"prewarm lazy: every page in after ([\d.]+) ms: (\d+) faults \((\d+) zero\), "
                              r"(\d+) pages filled on a fault, (\d+) in the background", err)
                if "lazy restore unavailable" in err:
                    raise RuntimeError("lazy restore fell back to eager: " + err)
                if m:  # else the app answered and exited before every page was in
                    traces.append(m.groups())
            e, l, w = (statistics.median(x) * 1e3 for x in (eager, lazy, lazy_ws))
            if traces:
                mid = sorted(traces, key=lambda g: float(g[0]))[len(traces) // 2]
                server = "%s faults (%s zero), %s / %s pages; all in after %s ms (%d of %d runs)" % (
                    mid[1], mid[2], mid[3], mid[4], mid[0], len(traces), args.runs)
            else:
                server = "the app exited before every page was in (every run)"
            print("| %s | %.1f ms | %.1f ms (%.2fx) | %.1f ms (%.2fx) | %s |" % (name, e, l, e / l, w, e / w, server))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
