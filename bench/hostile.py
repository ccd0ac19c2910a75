#!/usr/bin/python3
"""What a hostile local user costs everyone else: a trivial app's launch latency for root, and
prewarmd's CPU and memory, while user nobody attacks the daemon (security model, README).

Scenarios, each measured in the same run as the idle baseline:
  idle       nobody does nothing
  trickle    20 clients of nobody send their request one byte every 1.5 s, reconnecting when cut
  gone       nobody floods launch requests from processes that have exited (pid reuse attempts)
  register   nobody sends 2 MiB registrations as fast as they are refused
  stopped    prewarmd is SIGSTOPped: how long `prewarm run` takes to start the app cold
Usage: bench/hostile.py [--build build] [--launches 15] [--json]
"""
import argparse
import json
import os
import pwd
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.join(HERE, "..", "tests", "apps", "sec_tools.py")
PY = "/usr/bin/python3"
NOBODY = pwd.getpwnam("nobody")


def as_nobody():
    os.setgroups([])
    os.setresgid(NOBODY.pw_gid, NOBODY.pw_gid, NOBODY.pw_gid)
    os.setresuid(NOBODY.pw_uid, NOBODY.pw_uid, NOBODY.pw_uid)


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def launch_ms(prewarm, env):
    t0 = time.perf_counter()
    p = subprocess.run([prewarm, "run", "t"], env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ms = (time.perf_counter() - t0) * 1000
    if p.returncode != 0:
        raise RuntimeError("prewarm run t exited %d: %s" % (p.returncode, p.stderr.decode()))
    return ms, p.stderr.decode()


def measure(name, daemon, prewarm, env, launches, attackers):
    time.sleep(1.0)  # let the attack reach its steady state
    c0, t0 = cpu_ticks(daemon.pid), time.monotonic()
    samples = [launch_ms(prewarm, env)[0] for _ in range(launches)]
    c1, t1 = cpu_ticks(daemon.pid), time.monotonic()
    row = {"scenario": name, "launch_p50_ms": statistics.median(samples), "launch_max_ms": max(samples),
           "daemon_cpu_pct": 100.0 * (c1 - c0) / os.sysconf("SC_CLK_TCK") / (t1 - t0),
           "daemon_rss_kib": rss_kib(daemon.pid)}
    for a in attackers:
        os.killpg(a.pid, signal.SIGKILL)
        a.wait()
    return row


def attack(cmd, env):
    return subprocess.Popen(cmd, env=env, preexec_fn=lambda: (os.setsid(), as_nobody()),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--launches", type=int, default=15)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("hostile.py: needs root (the attacker runs as nobody)")
    bindir = os.path.join(os.path.abspath(a.build), "prewarmd")
    prewarm, prewarmd = os.path.join(bindir, "prewarm"), os.path.join(bindir, "prewarmd")
    scratch = tempfile.mkdtemp(prefix="prewarm-hostile-")
    os.chmod(scratch, 0o755)
    run, state = os.path.join(scratch, "run"), os.path.join(scratch, "state")
    env = dict(os.environ, PREWARM_RUNTIME_DIR=run, PREWARM_STATE_DIR=state, PATH="/usr/bin:/bin")
    env.pop("NOTIFY_SOCKET", None)
    log = open(os.path.join(scratch, "prewarmd.log"), "w")
    daemon = subprocess.Popen([prewarmd, "--runtime-dir", run, "--state-dir", state, "--http", "off"],
                              env=env, stdout=log, stderr=log)
    sock = os.path.join(run, "control.sock")
    rows = []
    try:
        for _ in range(100):
            if subprocess.run([prewarm, "list"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0:
                break
            time.sleep(0.1)
        subprocess.run([prewarm, "register", "t", "--ready", "delay:1", "--", "/bin/true"], env=env,
                       cwd="/", check=True, stdout=subprocess.DEVNULL)
        subprocess.run([prewarm, "register", "g", "--ready", "idle:600000", "--", "/bin/sleep", "600"],
                       env=env, cwd="/", check=True, stdout=subprocess.DEVNULL, preexec_fn=as_nobody)
        rows.append(measure("idle", daemon, prewarm, env, a.launches, []))
        rows.append(measure("trickle", daemon, prewarm, env, a.launches,
                            [attack([PY, TOOLS, "trickle", sock], env) for _ in range(20)]))
        flood = "while true; do %s %s launch-gone %s g 200 2; done" % (PY, TOOLS, sock)
        rows.append(measure("gone", daemon, prewarm, env, a.launches, [attack(["sh", "-c", flood], env)]))
        big = ("import json,socket\nwhile True:\n s=socket.socket(socket.AF_UNIX)\n try:\n  s.connect(%r)\n"
               "  s.sendall((json.dumps({'op':'register','name':'big','cwd':'/','argv':['/bin/true','x'*(2<<20)]})"
               "+'\\n').encode()); s.recv(100)\n except OSError: pass\n s.close()\n") % sock
        rows.append(measure("register", daemon, prewarm, env, a.launches, [attack([PY, "-c", big], env)]))
        os.kill(daemon.pid, signal.SIGSTOP)
        stopped = [launch_ms(prewarm, env) for _ in range(3)]
        os.kill(daemon.pid, signal.SIGCONT)
        rows.append({"scenario": "stopped", "launch_p50_ms": statistics.median(s[0] for s in stopped),
                     "launch_max_ms": max(s[0] for s in stopped), "daemon_cpu_pct": None,
                     "daemon_rss_kib": rss_kib(daemon.pid),
                     "cold": all("starting cold" in s[1] for s in stopped)})
    finally:
        daemon.terminate()
        daemon.wait()
        shutil.rmtree(scratch, ignore_errors=True)
    if a.json:
        print(json.dumps(rows, indent=2))
        return
    base = rows[0]["launch_p50_ms"]
    print("%-9s %12s %12s %8s %10s %9s" % ("scenario", "launch p50", "launch max", "vs idle", "prewarmd", "RSS"))
    for r in rows:
        cpu = "-" if r["daemon_cpu_pct"] is None else "%.1f%%" % r["daemon_cpu_pct"]
        print("%-9s %9.1f ms %9.1f ms %7.2fx %10s %6.1f MiB" % (r["scenario"], r["launch_p50_ms"], r["launch_max_ms"],
                                                              r["launch_p50_ms"] / base, cpu, r["daemon_rss_kib"] / 1024))


if __name__ == "__main__":
    main()
