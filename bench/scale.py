#!/usr/bin/python3
"""prewarmd at the history's bound: what queries cost and whether they slow launches (issue 16).

Registers --apps apps through prewarmd, then fills history.db to its bound (--launches launches and
--snapshots captures spread over those apps) by writing the rows directly into a file of the
previous schema (version 1, rows only), so that prewarmd computes every app's running totals from
the rows once, at start-up (the migration a real upgrade runs; its time is reported). Then, in one
run, with the scenarios interleaved round by round so that the machine's noise falls on all alike:

  idle      nothing else talks to prewarmd
  list      a shell loop runs `prewarm list` back to back
  metrics   a shell loop scrapes /metrics back to back (curl)
  50 launches  50 launches of another app are in flight (followed by prewarmd, readiness sampled
            every 50 ms as for any idle:MS app)
  busy core the control: a shell busy loop that never talks to prewarmd (what one busy core
            costs a launch on this machine)
  list (socket), metrics (socket)  the same queries back to back from one process on a socket
            of its own: no process spawned per query, so the load is prewarmd's own (list at
            prewarmd's pace, 50 a second after a burst; --queries-per-second 0 for none)

and in each, --samples launches of a trivial app (`prewarm run t`, /bin/true: spawn to exit).
Also the cost of each query at the bound (request to the last byte of the reply, on a socket of
its own, median of --queries; and prewarmd's CPU time per query, user + system, which machine load
does not inflate the way it does wall time) and prewarmd's RSS. Targets (issue 16): launch p50 under each load
within 1.2x of idle; each query under 20 ms.

With --pin, the measured launches run on the first CPU and every load (its clients, the 50
launches, the busy loop) on the last; prewarmd stays free to run on either. What a load then costs
a launch is what it makes prewarmd do, not the CPU its own client processes take: on a 2-core VM a
busy core that never talks to prewarmd costs an unpinned launch about 1.4x by itself.
Usage: bench/scale.py [--build build] [--apps 1000] [--launches 200000] [--snapshots 20000]
                      [--rounds 4] [--samples 10] [--queries 30] [--pin] [--queries-per-second N] [--json]
"""
import argparse
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))

# history.db schema version 1 (rows only): prewarmd migrates it to version 2 at start-up.
SCHEMA_1 = """
CREATE TABLE launches(
  id INTEGER PRIMARY KEY, app TEXT NOT NULL, uid INTEGER NOT NULL, time_ms INTEGER NOT NULL,
  pid INTEGER NOT NULL, mode TEXT NOT NULL CHECK (mode IN ('cold', 'restored')), fallback TEXT,
  fallback_kind TEXT, ready_ms REAL, validate_ms REAL, read_ms REAL, map_ms REAL, resume_ms REAL,
  bytes_read INTEGER);
CREATE INDEX launches_by_app ON launches(app, id);
CREATE TABLE snapshots(
  id INTEGER PRIMARY KEY, app TEXT NOT NULL, time_ms INTEGER NOT NULL, ok INTEGER NOT NULL,
  duration_ms REAL NOT NULL, frozen_ms REAL NOT NULL, image_bytes INTEGER NOT NULL, error TEXT);
CREATE INDEX snapshots_by_app ON snapshots(app, id);
PRAGMA user_version = 1;
"""


SOCKET_LOOP = """
import socket, sys, urllib.request
kind, where, req = sys.argv[1:4]
while True:
    if kind == "unix":
        s = socket.socket(socket.AF_UNIX)
        s.connect(where)
        s.sendall(req.encode() + b"\\n")
        while s.recv(1 << 20):
            pass
        s.close()
    else:
        urllib.request.urlopen(where).read()
"""


def status_kib(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def control(sock_path, req, timeout=30):
    """One request on a connection of its own; the reply and the seconds to its last byte."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    t0 = time.perf_counter()
    s.connect(sock_path)
    s.sendall((json.dumps(req) + "\n").encode())
    data = b""
    while not data.endswith(b"\n"):
        b = s.recv(1 << 20)
        if not b:
            break
        data += b
    dt = time.perf_counter() - t0
    s.close()
    return json.loads(data), dt


def http(url):
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as r:
        body = r.read()
    return body, time.perf_counter() - t0


def fill_history(path, apps, launches, snapshots):
    rng = random.Random(16)
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_1)
    now = int(time.time() * 1000)
    rows = []
    for i in range(launches):
        app = apps[i % len(apps)]
        t = now - (launches - i) * 1000
        r = rng.random()
        if r < 0.05:    # cold, ready after ~300 ms
            rows.append((app, 0, t, 1000 + i, "cold", None, None, rng.lognormvariate(5.7, 0.2), None, None, None, None, None))
        elif r < 0.08:  # a fallback: the image was stale
            rows.append((app, 0, t, 1000 + i, "cold", "/usr/lib/libfoo.so changed since the snapshot", "stale",
                         rng.lognormvariate(5.7, 0.2), None, None, None, None, None))
        elif r < 0.09:  # a restore that never became ready
            rows.append((app, 0, t, 1000 + i, "restored", None, None, None, None, None, None, None, None))
        else:           # restored after ~20 ms, with its phases
            v, rd, m, rs = rng.uniform(2, 4), rng.uniform(10, 16), rng.uniform(2, 4), rng.uniform(0.5, 1)
            rows.append((app, 0, t, 1000 + i, "restored", None, None, v + rd + m + rs, v, rd, m, rs, 52 << 20))
    db.executemany("INSERT INTO launches(app, uid, time_ms, pid, mode, fallback, fallback_kind, ready_ms, validate_ms,"
                   " read_ms, map_ms, resume_ms, bytes_read) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    snaps = []
    for i in range(snapshots):
        ok = rng.random() < 0.95
        snaps.append((apps[i % len(apps)], now - (snapshots - i) * 10000, int(ok), rng.uniform(600, 900),
                      rng.uniform(60, 100), (52 << 20) if ok else 0, None if ok else "capture failed: app exited"))
    db.executemany("INSERT INTO snapshots(app, time_ms, ok, duration_ms, frozen_ms, image_bytes, error)"
                   " VALUES (?,?,?,?,?,?,?)", snaps)
    db.commit()
    db.close()


class Daemon:
    def __init__(self, prewarmd, prewarm, run, state, env, log, apps, qps):
        self.cmd = [prewarmd, "--runtime-dir", run, "--state-dir", state, "--http", "127.0.0.1:0",
                    "--max-apps-per-user", str(apps + 10)]
        if qps is not None:
            self.cmd += ["--queries-per-second", str(qps)]
        self.prewarm, self.run, self.env, self.log = prewarm, run, env, log
        self.proc = None

    def start(self):
        """Starts prewarmd; the seconds until it answers a list."""
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self.log, stderr=self.log)
        for _ in range(6000):
            if subprocess.run([self.prewarm, "list"], env=self.env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0:
                return time.perf_counter() - t0
            if self.proc.poll() is not None:
                raise RuntimeError("prewarmd exited %d" % self.proc.returncode)
            time.sleep(0.05)
        raise RuntimeError("prewarmd did not answer")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()

    def url(self):
        with open(os.path.join(self.run, "dashboard")) as f:
            return f.read().strip()


def on_cpu(cpu):
    """A preexec_fn that confines the child (and what it spawns) to one CPU; None: no pinning."""
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def launch_ms(prewarm, env, cpu=None):
    t0 = time.perf_counter()
    p = subprocess.run([prewarm, "run", "t"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, preexec_fn=on_cpu(cpu))
    ms = (time.perf_counter() - t0) * 1000
    if p.returncode != 0 or b"starting cold without" in p.stderr:
        raise RuntimeError("prewarm run t: exit %d: %s" % (p.returncode, p.stderr.decode()))
    return ms


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, max(0, int(round(q * len(v) + 0.5)) - 1))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--apps", type=int, default=1000)
    ap.add_argument("--launches", type=int, default=200_000)
    ap.add_argument("--snapshots", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--pin", action="store_true", help="launches on the first CPU, loads on the last")
    ap.add_argument("--queries-per-second", type=int, help="prewarmd's pace of list and stats (0: none; "
                    "default: prewarmd's own)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("scale.py: needs root (prewarmd follows launches)")
    bindir = os.path.join(os.path.abspath(a.build), "prewarmd")
    prewarm, prewarmd = os.path.join(bindir, "prewarm"), os.path.join(bindir, "prewarmd")
    scratch = tempfile.mkdtemp(prefix="prewarm-scale-")
    run, state = os.path.join(scratch, "run"), os.path.join(scratch, "state")
    env = dict(os.environ, PREWARM_RUNTIME_DIR=run, PREWARM_STATE_DIR=state, PATH="/usr/bin:/bin")
    env.pop("NOTIFY_SOCKET", None)
    log = open(os.path.join(scratch, "prewarmd.log"), "w")
    d = Daemon(prewarmd, prewarm, run, state, env, log, a.apps, a.queries_per_second)
    sock = os.path.join(run, "control.sock")
    out = {"apps": a.apps, "launches": a.launches, "snapshots": a.snapshots, "pinned": a.pin}
    cpus = sorted(os.sched_getaffinity(0))
    if a.pin and len(cpus) < 2:
        sys.exit("scale.py: --pin needs two CPUs")
    launch_cpu, load_cpu = (cpus[0], cpus[-1]) if a.pin else (None, None)
    loads, sleepers = [], []
    try:
        d.start()
        names = ["app%04d" % i for i in range(a.apps)]
        t0 = time.perf_counter()
        for n in names:
            r, _ = control(sock, {"op": "register", "name": n, "argv": ["/bin/true", n], "cwd": "/", "ready": "delay:1"})
            if not r.get("ok"):
                raise RuntimeError("register %s: %s" % (n, r))
        out["register_all_s"] = time.perf_counter() - t0
        for n, argv, ready in (("t", ["/bin/true"], "delay:1"), ("s", ["/bin/sleep", "600"], "idle:600000")):
            r, _ = control(sock, {"op": "register", "name": n, "argv": argv, "cwd": "/", "ready": ready})
            assert r.get("ok"), r
        d.stop()

        hist = os.path.join(state, "history.db")
        for sfx in ("", "-wal", "-shm"):
            if os.path.exists(hist + sfx):
                os.unlink(hist + sfx)
        t0 = time.perf_counter()
        fill_history(hist, names, a.launches, a.snapshots)
        out["fill_s"] = time.perf_counter() - t0
        out["history_mib"] = os.path.getsize(hist) / 2**20
        out["start_with_migration_s"] = d.start()
        d.stop()
        out["start_s"] = d.start()
        out["rss_start_kib"] = status_kib(d.proc.pid, "VmRSS")
        base = d.url()
        listed, _ = control(sock, {"op": "list"})
        out["listed_apps"] = len(listed["apps"])
        total = sum(x["cold"] + x["restored"] for x in listed["apps"])
        out["launches_counted"] = total

        mid = names[len(names) // 2]  # an app in the middle of the registry
        queries = {
            "list": lambda: control(sock, {"op": "list"})[1],
            "stats": lambda: control(sock, {"op": "stats", "recent": 0})[1],
            "stats --json (recent 20)": lambda: control(sock, {"op": "stats", "recent": 20})[1],
            "stats NAME --history": lambda: control(sock, {"op": "stats", "name": mid,
                                                            "history": {"limit": 50}})[1],
            "/api/apps": lambda: http(base + "api/apps")[1],
            "/api/apps/NAME": lambda: http(base + "api/apps/" + mid)[1],
            "/metrics": lambda: http(base + "metrics")[1],
        }
        out["query_ms"] = {}
        for name, q in queries.items():
            q()  # warm
            c0 = cpu_s(d.proc.pid)
            t = []
            for _ in range(a.queries):
                t.append(q() * 1000)
                time.sleep(0.025)  # within prewarmd's default pace (50 a second): a query's cost, not its turn
            cpu = (cpu_s(d.proc.pid) - c0) * 1000 / a.queries
            out["query_ms"][name] = {"p50": statistics.median(t), "min": min(t), "max": max(t), "daemon_cpu": cpu}
        out["metrics_bytes"] = len(http(base + "metrics")[0])
        out["list_bytes"] = len(json.dumps(control(sock, {"op": "list"})[0]))

        loops = {
            "list": ["sh", "-c", 'while :; do "$0" list >/dev/null; done', prewarm],
            "metrics": ["sh", "-c", 'while :; do curl -s -o /dev/null "$0"; done', base + "metrics"],
            # The control: a loop as busy as the others that never talks to prewarmd. What it
            # costs a launch is what one busy core costs on this machine, not prewarmd's doing.
            "busy core": ["sh", "-c", "while :; do :; done"],
            # The same queries back to back from one client process, without a process spawned
            # (or a reply parsed) per query: prewarmd's own share of the load, at its highest rate.
            "list (socket)": [sys.executable, "-c", SOCKET_LOOP, "unix", sock, '{"op": "list"}'],
            "metrics (socket)": [sys.executable, "-c", SOCKET_LOOP, "http", base + "metrics", ""],
        }
        samples = {k: [] for k in ("idle", "list", "metrics", "50 launches", "busy core", "list (socket)",
                                   "metrics (socket)")}
        daemon_cpu = {k: [0.0, 0.0] for k in samples}
        rss_peak = 0
        for _ in range(a.rounds):
            for scenario in samples:
                if scenario in loops:
                    loads.append(subprocess.Popen(loops[scenario], env=env, stdout=subprocess.DEVNULL,
                                                  stderr=subprocess.DEVNULL, start_new_session=True,
                                                  preexec_fn=on_cpu(load_cpu)))
                elif scenario == "50 launches":
                    for _ in range(50):
                        sleepers.append(subprocess.Popen([prewarm, "run", "s"], env=env, stdin=subprocess.DEVNULL,
                                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                                         preexec_fn=on_cpu(load_cpu)))
                    for _ in range(1200):  # a minute: 50 process starts on a loaded 2-core machine
                        r, _ = control(sock, {"op": "list"})
                        if r["launches_in_flight"] >= 50:
                            break
                        time.sleep(0.05)
                    else:
                        raise RuntimeError("50 launches did not get in flight: %s" % r["launches_in_flight"])
                time.sleep(0.5)  # the load in its steady state
                c0, w0 = cpu_s(d.proc.pid), time.monotonic()
                samples[scenario] += [launch_ms(prewarm, env, launch_cpu) for _ in range(a.samples)]
                daemon_cpu[scenario][0] += cpu_s(d.proc.pid) - c0
                daemon_cpu[scenario][1] += time.monotonic() - w0
                rss_peak = max(rss_peak, status_kib(d.proc.pid, "VmRSS"))
                for p in loads:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
                loads.clear()
                for p in sleepers:
                    p.kill()
                    p.wait()
                sleepers.clear()
        idle = statistics.median(samples["idle"])
        out["launch_ms"] = {k: {"p50": statistics.median(v), "p90": pct(v, 0.9), "max": max(v), "n": len(v),
                                "vs_idle": statistics.median(v) / idle,
                                "daemon_cpu_pct": 100 * daemon_cpu[k][0] / daemon_cpu[k][1]} for k, v in samples.items()}
        out["rss_kib"] = status_kib(d.proc.pid, "VmRSS")
        out["rss_peak_kib"] = max(rss_peak, out["rss_kib"])
        out["hwm_kib"] = status_kib(d.proc.pid, "VmHWM")
    finally:
        for p in loads:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        for p in sleepers:
            p.kill()
            p.wait()
        if d.proc and d.proc.poll() is None:
            d.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    if a.json:
        print(json.dumps(out, indent=2))
        return
    print("history: %d launches, %d captures over %d apps (%.1f MiB); counted %d launches in %d apps"
          % (a.launches, a.snapshots, a.apps, out["history_mib"], out["launches_counted"], out["listed_apps"]))
    print("start-up: %.2f s with the one-time migration (totals from the rows), %.2f s after; %d registrations %.1f s"
          % (out["start_with_migration_s"], out["start_s"], a.apps, out["register_all_s"]))
    print("%-26s %10s %10s %10s %14s  %s" % ("query", "p50", "min", "max", "prewarmd CPU", "target < 20 ms"))
    for k, v in out["query_ms"].items():
        print("%-26s %7.2f ms %7.2f ms %7.2f ms %11.2f ms  %s" % (k, v["p50"], v["min"], v["max"], v["daemon_cpu"],
                                                              "ok" if v["p50"] < 20 else "MISSED"))
    print("%-14s %10s %10s %10s %8s %9s  %s" % ("launch during" + (" (pinned)" if a.pin else ""), "p50", "p90", "max", "vs idle", "prewarmd", "target <= 1.2x"))
    for k, v in out["launch_ms"].items():
        print("%-14s %7.1f ms %7.1f ms %7.1f ms %7.2fx %8.1f%%  %s" % (k, v["p50"], v["p90"], v["max"], v["vs_idle"],
                                                                 v["daemon_cpu_pct"],
                                                                 "ok" if v["vs_idle"] <= 1.2 else "MISSED"))
    print("prewarmd RSS: %.1f MiB after start-up, %.1f MiB at the end, peak seen %.1f MiB (VmHWM %.1f MiB)"
          % (out["rss_start_kib"] / 1024, out["rss_kib"] / 1024, out["rss_peak_kib"] / 1024, out["hwm_kib"] / 1024))


if __name__ == "__main__":
    main()
