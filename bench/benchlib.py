"""What the launch benchmarks share (bench/run.py, bench/lazy.py): the common options, taking a
snapshot of an app, and timing a launch to its first answer."""
import argparse
import os
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"  # Debian's, where python3-sympy and python3-numpy are installed
CALC = [PYTHON, os.path.join(HERE, "progs", "calc.py")]


def parser(doc):
    """--build and --runs, which every launch benchmark takes; the first line of `doc` describes it."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--runs", type=int, default=11)
    return ap


def prewarm_cli(build):
    return os.path.join(build, "prewarmd", "prewarm")


def launch(cmd, stdin_text, env=None, answers=(b"answer",)):
    """Seconds from spawn until the process prints a line starting with one of `answers`, and its
    stderr. The process must then exit 0."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    p.stdin.write(stdin_text.encode())
    p.stdin.close()
    for line in p.stdout:
        if line.startswith(answers):
            elapsed = time.perf_counter() - t0
            break
    else:
        p.wait()
        raise RuntimeError("%s gave no answer: %s" % (cmd, p.stderr.read().decode()))
    p.stdout.read()
    err = p.stderr.read().decode()
    if p.wait() != 0:
        raise RuntimeError("%s exited with %d: %s" % (cmd, p.returncode, err))
    return elapsed, err


def snapshot(prewarm, cmd, images, settle=0.0):
    """Starts cmd, waits for its ready line (then `settle` seconds), dumps it into `images` with
    --kill; the dump's stderr."""
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    if not p.stdout.readline().startswith(b"ready"):
        p.kill()
        p.wait()
        raise RuntimeError("%s did not become ready" % cmd)
    time.sleep(settle)
    r = subprocess.run([prewarm, "dump", "--pid", str(p.pid), "--images", images, "--kill"],
                       capture_output=True, text=True)
    p.wait()
    if r.returncode != 0:
        raise RuntimeError("dump failed: " + r.stderr)
    return r.stderr.strip()
