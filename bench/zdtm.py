#!/usr/bin/python3
"""CRIU's zdtm static tests through `prewarm dump` and `prewarm restore`: what a restore keeps.

For each static test: start it the way CRIU's test/zdtm.py does (`make -C static NAME.pid`, which
runs it with --pidfile/--outfile and returns once the test has daemonized and set up its state;
non-suid tests get zdtm's ZDTM_UID/GID/GROUPS and drop to them), dump it with `prewarm dump`, kill
the original, restore with `prewarm restore` under the test's credentials (the launch's own, as
under prewarmd), send SIGTERM and read the verdict. zdtm's lib renames NAME.out only when getpid()
is the original's, and a restore has the launcher's stdio, so the verdict is the restored
process's stdout/stderr. Each test lands in one class:

  pass          restored, said PASS
  refused       `prewarm dump` exited 3 (the reason lines are kept) or `prewarm restore` did
  silent-loss   restored, then said FAIL (or exited non-zero without PASS): the worst outcome
  crash         the restored process died on a signal
  hang          no verdict within the timeout
  error         dump or restore failed otherwise (not 0, not 3)
  start-fail    the test did not start here (also what CRIU would see)
  control-fail  with --control: the test fails here with no dump at all (started, SIGTERM)

Flags from the test's .desc (suid, crfail, noauto, excl, ...) are printed with each result;
--skip-flags leaves out tests with those flags (default: noauto crfail, as zdtm.py's `-a` run).

Usage (root):
  bench/zdtm.py CRIU_TREE BUILD_DIR [--only NAME...] [--control] [--json OUT] [--timeout S]
  CRIU_TREE: a CRIU checkout (or `git archive HEAD test/zdtm` of one) with test/zdtm/lib and
             test/zdtm/static built (`make -C test/zdtm/lib && make -k -C test/zdtm/static`;
             a few tests need Debian's libcap-dev, libaio-dev, libnl-3-dev, libnl-route-3-dev,
             protobuf-c-compiler and libprotobuf-c-dev, and criu-rtc needs CRIU's own headers:
             without them those tests do not build and are not run)
  BUILD_DIR: a prewarm build directory (BUILD_DIR/prewarmd/prewarm is used)
Only processes this script started are signalled: it is a child subreaper, so a test's daemonized
process and its children are its own to kill and reap.
"""
import argparse
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

PR_SET_CHILD_SUBREAPER = 36
ZDTM_UID, ZDTM_GID, ZDTM_GROUPS = 18943, 58467, [27495, 48244]


def static_tests(static):
    """Every daemonizing static test the Makefile knows (TST), in its order."""
    out = subprocess.run(
        ["make", "--no-print-directory", "-s", "-C", static, "-f", "Makefile", "-f", "/dev/stdin", "zdtm-print-tst"],
        input="zdtm-print-tst:\n\t@echo $(TST)\n", capture_output=True, text=True, check=True).stdout
    return [t for t in out.split() if os.access(os.path.join(static, t), os.X_OK)]


def desc_flags(static, name):
    try:
        text = open(os.path.join(static, name + ".desc")).read()
    except OSError:
        return []
    m = re.search(r"'flags'\s*:\s*'([^']*)'", text)
    return m.group(1).split() if m else []


def reap():
    """Reap whatever orphans came to us (we are a subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def descendants(pid):
    """pid's children, grandchildren, ... (from /proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    kids = [int(x) for x in f.read().split()]
                out += kids
                todo += kids
        except OSError:
            pass
    return out


def kill_tree(pid):
    """SIGKILL pid and its descendants: a test's own children are processes this script started
    too (through the test), and left alive they outlived the run (reparented to init at its end)."""
    for p in [pid] + descendants(pid):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.time() + 10
    while alive(pid) and time.time() < deadline:
        reap()
        time.sleep(0.02)
    reap()


def cleanup_files(static, name):
    for suffix in (".out", ".out.inprogress", ".pid"):
        try:
            os.unlink(os.path.join(static, name + suffix))
        except FileNotFoundError:
            pass


CLONE_NEWNS = 0x00020000
LIBC = ctypes.CDLL(None, use_errno=True)


def new_mount_ns():
    """A process holding a mount namespace of its own (private propagation) for one test: the test,
    its dump and its restore all run in it, so mounts a suid test makes stay off the host's and are
    still there at the restore, as when CRIU restores into the namespace it dumped from. A test
    that makes a namespace of its own is then in another than its dump's."""
    holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "3600"],
                              stdin=subprocess.DEVNULL)
    # Ready once it runs sleep: unshare has made the namespace and set its propagation by then.
    deadline = time.time() + 10
    while time.time() < deadline and holder.poll() is None:
        try:
            with open(f"/proc/{holder.pid}/comm") as f:
                if f.read().strip() == "sleep":
                    return holder
        except OSError:
            pass
        time.sleep(0.005)
    holder.kill()
    sys.exit("zdtm.py: unshare --mount did not start")


def in_ns(holder, cwd=None, suid=True):
    """preexec_fn: enter the holder's mount namespace, then cwd (setns moves both to its root), then
    the test's credentials unless suid."""
    def enter():
        fd = os.open(f"/proc/{holder.pid}/ns/mnt", os.O_RDONLY)
        if LIBC.setns(fd, CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        os.close(fd)
        if cwd:
            os.chdir(cwd)
        if not suid:
            os.setgroups(ZDTM_GROUPS)
            os.setgid(ZDTM_GID)
            os.setuid(ZDTM_UID)
    return enter


def test_env(suid):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
           "ZDTM_THREAD_BOMB": "5"}
    if not suid:
        env.update(ZDTM_UID=str(ZDTM_UID), ZDTM_GID=str(ZDTM_GID), ZDTM_GROUPS=" ".join(map(str, ZDTM_GROUPS)))
    return env


def start(static, name, suid, timeout, holder):
    cleanup_files(static, name)
    # zdtm.py's `make NAME.cleanout` before each test: a NAME.test file left by an earlier run
    # (file_append keeps its file) would change what the test sees and fail it.
    subprocess.run(["make", "--no-print-directory", "-C", static, name + ".cleanout"],
                   capture_output=True, timeout=timeout)
    # In the test's mount namespace: suid tests mount (zdtm runs them in a namespace flavor);
    # their mounts must not reach the host's, and go away with the holder.
    r = subprocess.run(["make", "--no-print-directory", "-C", static, name + ".pid"], env=test_env(suid),
                       capture_output=True, text=True, timeout=timeout, preexec_fn=in_ns(holder))
    if r.returncode != 0:
        return None, (r.stdout + r.stderr).strip().splitlines()[-3:]
    with open(os.path.join(static, name + ".pid")) as f:
        pid = int(f.read().split()[0])
    return pid, []


def verdict_of(text):
    words = [w.strip() for w in text.split()]
    return "PASS" if "PASS" in words else ("FAIL" if "FAIL" in words else None)


def run_control(static, name, flags, args, holder):
    suid = "suid" in flags
    try:
        pid, why = start(static, name, suid, args.timeout, holder)
    except subprocess.TimeoutExpired:
        return "start-fail", ["make timed out"]
    if pid is None:
        return "start-fail", why
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + args.timeout
    while alive(pid) and time.time() < deadline:
        reap()
        time.sleep(0.02)
    if alive(pid):
        kill_tree(pid)
        return "control-fail", ["no exit after SIGTERM"]
    reap()
    try:
        text = open(os.path.join(static, name + ".out")).read()
    except OSError:
        text = ""
    return ("ok", []) if verdict_of(text) == "PASS" else ("control-fail", text.strip().splitlines()[-3:])


def run_one(static, name, flags, prewarm, args, holder):
    suid = "suid" in flags
    try:
        pid, why = start(static, name, suid, args.timeout, holder)
    except subprocess.TimeoutExpired:
        return "start-fail", ["make timed out"], {}
    if pid is None:
        return "start-fail", why, {}
    extra = {"children_at_dump": len(descendants(pid))}
    images = tempfile.mkdtemp(prefix=f"zdtm-{name}-", dir=args.scratch)
    try:
        return dump_and_restore(static, name, suid, prewarm, args, holder, pid, images, extra)
    finally:
        shutil.rmtree(images, ignore_errors=True)  # refused and failed dumps too, not only restores


def dump_and_restore(static, name, suid, prewarm, args, holder, pid, images, extra):
    try:
        d = subprocess.run([prewarm, "dump", "--pid", str(pid), "--images", images + "/img"],
                           capture_output=True, text=True, timeout=args.timeout, preexec_fn=in_ns(holder))
    except subprocess.TimeoutExpired:
        kill_tree(pid)
        return "hang", ["prewarm dump timed out"], extra
    kill_tree(pid)
    if d.returncode == 3:
        return "refused", [l for l in d.stderr.splitlines() if l.strip()][:6], extra
    if d.returncode != 0:
        return "error", ["dump: " + l for l in d.stderr.strip().splitlines()[-3:]], extra
    if not suid:
        for root, dirs, files in os.walk(images):
            for n in dirs + files + [""]:
                os.chown(os.path.join(root, n), ZDTM_UID, ZDTM_GID)
    out_path = os.path.join(images, "restored.out")
    with open(out_path, "w") as out:
        if not suid:
            os.chown(out_path, ZDTM_UID, ZDTM_GID)
        r = subprocess.Popen([prewarm, "restore", "--images", images + "/img"], stdin=subprocess.DEVNULL,
                             stdout=out, stderr=subprocess.STDOUT, preexec_fn=in_ns(holder, static, suid))
    try:
        # Restored once its cmdline is the test's (PR_SET_MM_MAP set the arg range back).
        deadline = time.time() + args.timeout
        while time.time() < deadline and r.poll() is None:
            try:
                with open(f"/proc/{r.pid}/cmdline", "rb") as f:
                    if os.path.basename(f.read().split(b"\0")[0]).decode(errors="replace") == name:
                        break
            except OSError:
                pass
            time.sleep(0.01)
        if r.poll() is not None:
            text = open(out_path).read().strip().splitlines()
            cls = "refused" if r.returncode == 3 else "error"
            return cls, ["restore: " + l for l in text[-4:]], extra
        if time.time() >= deadline:
            return "hang", ["restore did not finish"], extra
        time.sleep(args.settle)
        if r.poll() is None:
            os.kill(r.pid, signal.SIGTERM)
        try:
            rc = r.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            return "hang", ["no exit after SIGTERM"], extra
        text = open(out_path).read()
        lines = text.strip().splitlines()
        if rc < 0:
            return "crash", [f"killed by signal {-rc}"] + lines[-3:], extra
        v = verdict_of(text)
        if v == "PASS" and rc == 0:
            return "pass", [], extra
        return "silent-loss", [f"exit {rc}"] + lines[-4:], extra
    finally:
        if r.poll() is None:
            kill_tree(r.pid)
            r.wait()
        reap()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("criu_tree")
    ap.add_argument("build_dir")
    ap.add_argument("--only", nargs="*", help="these tests only")
    ap.add_argument("--skip-flags", default="noauto crfail", help="leave out tests with any of these .desc flags")
    ap.add_argument("--control", action="store_true", help="first run each test once without prewarm")
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--settle", type=float, default=0.3, help="seconds between the restore and SIGTERM")
    ap.add_argument("--scratch", default=None, help="where images go (default: TMPDIR)")
    ap.add_argument("--json", help="write every result here")
    args = ap.parse_args()
    if args.scratch:
        args.scratch = os.path.abspath(args.scratch)  # setns moves the cwd to the namespace's root
    if os.geteuid() != 0:
        sys.exit("zdtm.py: run as root (zdtm tests drop to their own uid; prewarm dump needs ptrace)")
    static = os.path.join(os.path.abspath(args.criu_tree), "test/zdtm/static")
    prewarm = os.path.join(os.path.abspath(args.build_dir), "prewarmd/prewarm")
    LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    os.chmod(static, os.stat(static).st_mode | 0o333)  # zdtm.py's __add_wperms: tests write there

    skip = set(args.skip_flags.split())
    tests = args.only or static_tests(static)
    results, counts = [], {}
    for name in tests:
        flags = desc_flags(static, name)
        if skip & set(flags) and not args.only:
            continue
        ctl = None
        if args.control:
            holder = new_mount_ns()
            ctl, why = run_control(static, name, flags, args, holder)
            holder.kill()
            holder.wait()
            if ctl != "ok":
                cls, detail, extra = ctl, why, {}
        if ctl in (None, "ok"):
            holder = new_mount_ns()
            cls, detail, extra = run_one(static, name, flags, prewarm, args, holder)
            holder.kill()
            holder.wait()
        # Whatever a test left that came to us as orphans (we are their subreaper): none of it
        # may run into the next test, or past the end of the run.
        for p in descendants(os.getpid()):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        reap()
        cleanup_files(static, name)
        counts[cls] = counts.get(cls, 0) + 1
        results.append({"test": name, "class": cls, "flags": flags, "detail": detail, **extra})
        tag = f" [{' '.join(flags)}]" if flags else ""
        kids = f" children={extra['children_at_dump']}" if extra.get("children_at_dump") else ""
        print(f"{cls:12} {name}{tag}{kids}" + "".join(f"\n    {l}" for l in detail), flush=True)
    total = sum(counts.values())
    print("\n" + "  ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) + f"  (of {total})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"counts": counts, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
