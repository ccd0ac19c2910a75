#!/bin/bash
# `prewarm check --json` as root and as an unprivileged user: each fact it reports must be what
# this script finds itself (sysfs, /proc, the ioctl and syscalls, made from python here), and its
# exit status must follow from the checks it marks as needed.
BIN=$1 SRC=$2
. "$SRC/tests/lib/prelude.sh"
. "$SRC/tests/lib/daemon.sh"
[ "$(id -u)" = 0 ] || skip "needs root: the check runs as root and as nobody"
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }

# What this user can do, probed independently of prewarm, as JSON.
cat >"$SCRATCH/probe.py" <<'PY'
import ctypes, errno, fcntl, json, os, re, struct
libc = ctypes.CDLL(None, use_errno=True)
def sysc(nr, *a):
    r = libc.syscall(nr, *a)
    if r >= 0: os.close(r)
    return r >= 0
out = {}
with open("/proc/self/pagemap", "rb") as f:  # PAGEMAP_SCAN with start == end: walks nothing
    arg = bytearray(struct.pack("12Q", 96, *([0] * 11)))
    try:
        fcntl.ioctl(f.fileno(), 0xc0606610, arg); out["pagemap_scan"] = True
    except OSError as e:
        out["pagemap_scan"] = e.errno not in (errno.ENOTTY, errno.EINVAL)
thp = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
out["thp"] = re.search(r"\[(\w+)\]", thp).group(1)
out["unprivileged_sysctl"] = int(open("/proc/sys/vm/unprivileged_userfaultfd").read())
try:
    os.close(os.open("/dev/userfaultfd", os.O_RDWR)); out["dev_userfaultfd"] = True
except OSError:
    out["dev_userfaultfd"] = False
O_CLOEXEC, O_NONBLOCK, USER_MODE_ONLY = 0o2000000, 0o4000, 1
out["syscall"] = sysc(323, O_CLOEXEC | O_NONBLOCK)
out["user_mode_only"] = sysc(323, O_CLOEXEC | O_NONBLOCK | USER_MODE_ONLY)
status = open("/proc/self/status").read()
eff = int(re.search(r"CapEff:\s*([0-9a-f]+)", status).group(1), 16)
out["cap_sys_ptrace"] = bool(eff >> 19 & 1)
try:
    out["yama_ptrace_scope"] = int(open("/proc/sys/kernel/yama/ptrace_scope").read())
except FileNotFoundError:
    out["yama_ptrace_scope"] = -1
sizes = {}
for line in open("/proc/self/maps"):
    m = re.match(r"([0-9a-f]+)-([0-9a-f]+) .* (\[v\w+\])$", line.strip())
    if m: sizes[m.group(3).strip("[]")] = int(m.group(2), 16) - int(m.group(1), 16)
out["vdso"] = {k: sizes.get(k, 0) for k in ("vvar", "vvar_vclock", "vdso")}
out["pidfd_open"] = sysc(434, os.getpid(), 0)
out["cgroup2"] = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
# A child seized and stopped, then asked for its rseq registration (glibc 2.35+ has one).
PTRACE_SEIZE, PTRACE_INTERRUPT, PTRACE_GET_RSEQ_CONFIGURATION = 0x4206, 0x4207, 0x420f
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
child = os.fork()
if child == 0:
    while True: os.pause()
out["seize_child"] = libc.ptrace(PTRACE_SEIZE, child, None, None) == 0
out["get_rseq_configuration"] = False
if out["seize_child"] and libc.ptrace(PTRACE_INTERRUPT, child, None, None) == 0:
    os.waitpid(child, 0x40000000)  # __WALL
    conf = ctypes.create_string_buffer(32)
    # struct ptrace_rseq_configuration is 24 bytes; the kernel returns how many it wrote
    out["get_rseq_configuration"] = libc.ptrace(PTRACE_GET_RSEQ_CONFIGURATION, child, 32, conf) == 24
os.kill(child, 9)
os.waitpid(child, 0x40000000)
print(json.dumps(out))
PY

# compare PROBE.json CHECK.json RC EXPECT_FINDER EXPECT_DAEMON: every fact, then the exit status.
cat >"$SCRATCH/compare.py" <<'PY'
import json, sys
probe, check = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
rc, finder, daemon = int(sys.argv[3]), sys.argv[4], sys.argv[5] == "up"
c = {x["name"]: x for x in check["checks"]}
bad = []
def want(cond, what):
    if not cond: bad.append(what)
for x in check["checks"]:
    want(x["status"] in ("ok", "fallback", "missing"), x["name"] + ": status " + x["status"])
    want(x["status"] == "ok" or x["fix"], x["name"] + ": not ok, yet no fix given")
ps = c["page_scan"]
want(ps["value"]["pagemap_scan"] == probe["pagemap_scan"], "page_scan: PAGEMAP_SCAN support")
want(ps["value"]["used"] == finder, "page_scan: used %s, want %s" % (ps["value"]["used"], finder))
want(ps["status"] == ("ok" if finder == "PAGEMAP_SCAN" else "fallback"), "page_scan: status")
# Frame numbers are hidden without CAP_SYS_ADMIN; root finds the zero page with a userfaultfd.
if check["uid"] != 0: want(not ps["value"]["zero_page_known"], "page_scan: zero page known without frames")
elif probe["syscall"]: want(ps["value"]["zero_page_known"], "page_scan: root did not find the zero page")
want(c["thp"]["value"] == probe["thp"], "thp mode")
want(c["thp"]["status"] == ("ok" if probe["thp"] in ("always", "madvise") else "missing"), "thp status")
u = c["userfaultfd"]["value"]
for k in ("unprivileged_sysctl", "dev_userfaultfd", "syscall", "user_mode_only"):
    want(u[k] == probe[k], "userfaultfd: " + k)
want((c["userfaultfd"]["status"] == "ok") == (probe["syscall"] or probe["dev_userfaultfd"]), "userfaultfd status")
pt = c["ptrace"]["value"]
want(pt["cap_sys_ptrace"] == probe["cap_sys_ptrace"], "ptrace: CAP_SYS_PTRACE")
want(pt["yama_ptrace_scope"] == probe["yama_ptrace_scope"], "ptrace: yama scope")
want(c["vdso"]["value"] == probe["vdso"], "vdso sizes %s vs %s" % (c["vdso"]["value"], probe["vdso"]))
want(("no [vvar_vclock]" in c["vdso"]["detail"]) == (probe["vdso"]["vvar_vclock"] == 0), "vdso: vclock said")
want(c["pidfd"]["value"]["pidfd_open"] == probe["pidfd_open"], "pidfd_open")
want(c["cgroup_freezer"]["value"]["cgroup2"] == probe["cgroup2"], "cgroup2")
want(c["prewarmd"]["value"]["reachable"] == daemon, "prewarmd reachable")
needed_missing = [x["name"] for x in check["checks"] if x["needed"] and x["status"] == "missing"]
want(check["dump_and_restore"] == (not needed_missing), "dump_and_restore vs the needed checks")
want(rc == (0 if not needed_missing else 1), "exit status %d with needed missing %s" % (rc, needed_missing))
want(all(c[n]["needed"] for n in ("page_scan", "ptrace", "rseq", "pr_set_mm_map", "xsave", "vdso")), "needed set")
want(pt["seize_child"] == probe["seize_child"], "ptrace: PTRACE_SEIZE of a child")
want(c["rseq"]["value"]["get_rseq_configuration"] == probe["get_rseq_configuration"], "rseq: PTRACE_GET_RSEQ_CONFIGURATION")
if bad:
    print("prewarm check disagrees with the probe:\n  " + "\n  ".join(bad))
    sys.exit(1)
PY

scan=$(python3 -c "import json,sys; print('PAGEMAP_SCAN' if json.load(sys.stdin)['pagemap_scan'] else 'pagemap')" \
       < <(python3 "$SCRATCH/probe.py"))
# run_check NAME DAEMON [RUNNER...]: prewarm check as the runner's user, compared with its probe.
run_check() {
  local name=$1 daemon=$2 rc=0; shift 2
  "$@" python3 "$SCRATCH/probe.py" >"$SCRATCH/$name.probe"
  "$@" "$P" check --json >"$SCRATCH/$name.json" || rc=$?
  python3 "$SCRATCH/compare.py" "$SCRATCH/$name.probe" "$SCRATCH/$name.json" "$rc" "$finder" "$daemon" ||
    fail "$name: see $SCRATCH/$name.json"
}
chmod 0755 "$SCRATCH"

step "as root and as nobody, prewarmd down"
finder=$scan
run_check root down
run_check nobody down as_nobody
[ "$(python3 -c "import json; print(json.load(open('$SCRATCH/root.json'))['uid'])")" = 0 ] || fail "root's check says another uid"
[ "$(python3 -c "import json; print(json.load(open('$SCRATCH/nobody.json'))['uid'])")" = 65534 ] || fail "nobody's check says another uid"

step "the fallback forced"
finder=pagemap
run_check forced down env PREWARM_FORCE_PAGEMAP_FALLBACK=1
finder=$scan

step "prewarmd up: reachable for both users"
start_daemon
cleanup stop_daemon
run_check root-up up
run_check nobody-up up as_nobody
python3 - "$SCRATCH/root-up.json" "$PREWARM_STATE_DIR" <<'PY' || fail "state_dir disagrees with stat"
import json, os, sys
c = {x["name"]: x for x in json.load(open(sys.argv[1]))["checks"]}["state_dir"]
st = os.lstat(sys.argv[2])
assert c["value"]["path"] == sys.argv[2] and c["value"]["mode"] == "%04o" % (st.st_mode & 0o7777), c
assert c["status"] == ("ok" if st.st_uid == 0 and not st.st_mode & 0o022 else "missing"), c
PY

step "text output and --help"
"$P" check >"$SCRATCH/text" || true
has -E '^(ok|fallback|missing) +page_scan ' <"$SCRATCH/text" || fail "no page_scan line"
has -E '^dump and restore can(not)? work here' <"$SCRATCH/text" || fail "no verdict line"
"$P" check --help | has -- "--json" || fail "check --help does not mention --json"
echo "$TEST_NAME: PASS"
