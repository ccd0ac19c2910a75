# A hostile local user's tools against prewarmd, for tests/service/security_launch.sh: raw control
# socket clients (launches from processes that are gone, a pid handed to another process, a client
# that trickles its request), datagram sockets (one kept full, one that records the credentials
# of what it receives), a notify app, and a racer that swaps a directory and a symlink.
# Usage: sec_tools.py COMMAND ARGS... (see the functions below); prints what it saw on stdout.
import ctypes
import json
import os
import signal
import socket
import sys
import time


def request(name, env=None, stdio=None):
    msg = {"op": "launch", "name": name, "env": env if env is not None else [],
           "stdio": stdio or ["closed", "closed", "closed"], "t0_ns": 0, "notify_socket": ""}
    return (json.dumps(msg) + "\n").encode()


def recv_reply(s, timeout=10):
    """The reply and the fds passed with it (None on timeout or a closed connection)."""
    s.settimeout(timeout)
    data, fds = b"", []
    try:
        while b"\n" not in data:
            msg, anc, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(16 * 4))
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds += [int.from_bytes(payload[i:i + 4], "little") for i in range(0, len(payload) - len(payload) % 4, 4)]
            if not msg:
                break
            data += msg
    except (socket.timeout, OSError):
        pass
    if b"\n" not in data:
        return None, fds
    return json.loads(data.split(b"\n")[0]), fds


def launch_gone(sock_path, name, count, workers="4"):
    """COUNT launch requests, each from a socket connected by a child that exited (and was
    reaped) before the request was sent: SO_PEERCRED names a process that is gone. WORKERS
    processes share the count (forks are slow here; each worker stays under a per-uid limit)."""
    workers = int(workers)
    pipes = []
    for w in range(workers):
        r, wfd = os.pipe()
        if os.fork() == 0:
            os.close(r)
            counts = _launch_gone(sock_path, name, int(count) // workers + (w < int(count) % workers))
            os.write(wfd, (" ".join(map(str, counts))).encode())
            os._exit(0)
        os.close(wfd)
        pipes.append(r)
    total = [0, 0, 0]
    for r in pipes:
        data = b""
        while True:
            chunk = os.read(r, 100)
            if not chunk:
                break
            data += chunk
        for i, v in enumerate(data.split()):
            total[i] += int(v)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break
    print("accepted=%d refused=%d unanswered=%d" % tuple(total))


def _launch_gone(sock_path, name, count):
    ok = refused = silent = 0
    for _ in range(count):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            try:
                s.connect(sock_path)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        try:
            s.sendall(request(name))
            reply, fds = recv_reply(s, 3)
        except OSError:
            reply, fds = None, []
        for fd in fds:
            os.close(fd)
        s.close()
        if reply is None:
            silent += 1
            if silent >= 20:  # a daemon that neither answers nor closes: no point going on
                break
        elif reply.get("ok"):
            ok += 1
        else:
            refused += 1
    return ok, refused, silent


def reuse_client(sock_path, name, pid_file, go_file, out_file):
    """Connects, hands the connection to a child and exits: the child sends the launch request
    only once GO_FILE exists (when root has taken the pid over) and writes the reply to OUT_FILE."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    if os.fork() != 0:
        os._exit(0)
    os.setsid()
    with open(out_file + ".pid", "w") as f:
        f.write(str(os.getpid()))
    end = time.time() + 60
    while not os.path.exists(go_file) and time.time() < end:
        time.sleep(0.05)
    s.sendall(request(name))
    reply, _ = recv_reply(s, 10)
    with open(out_file, "w") as f:
        f.write(json.dumps(reply) + "\n")
    time.sleep(30)  # keeps the connection (and so nothing else) around while the test looks


def reuse_pid(pid, secret_file, ready_file):
    """Root: becomes the process with pid PID (ns_last_pid, then fork), holding a secret in memory."""
    pid = int(pid)
    for _ in range(3000):
        try:
            with open("/proc/sys/kernel/ns_last_pid", "w") as f:
                f.write(str(pid - 1))
        except OSError as e:
            print("cannot set ns_last_pid: %s" % e)
            sys.exit(2)
        child = os.fork()
        if child == 0:
            if os.getpid() != pid:
                os._exit(0)
            os.setsid()
            secret = open(secret_file).read().strip()
            kept = [secret + "-" + str(i) for i in range(100)]  # noqa: F841 (held in memory)
            with open(ready_file + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.rename(ready_file + ".tmp", ready_file)
            signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
            time.sleep(120)
            os._exit(0)
        if child == pid:
            end = time.time() + 10
            while not os.path.exists(ready_file) and time.time() < end:
                time.sleep(0.01)
            print("took pid %d" % pid)
            return
        os.waitpid(child, 0)
    print("could not take pid %d" % pid)
    sys.exit(1)


def trickle(sock_path):
    """A client that sends its request one byte every 1.5 s, and connects again when dropped."""
    text = b'{"op": "list"}\n'
    while True:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(sock_path)
            for b in text[:-1]:
                s.send(bytes([b]))
                time.sleep(1.5)
            s.close()  # never sends the newline
        except OSError:
            time.sleep(0.2)


def fill(path, ready_file):
    """Binds a datagram socket at PATH and fills its queue; never reads it."""
    r = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    r.bind(path)
    os.chmod(path, 0o777)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.connect(path)
    s.setblocking(False)
    n = 0
    try:
        while n < 100000:
            s.send(b"X" * 1024)
            n += 1
    except BlockingIOError:
        pass
    with open(ready_file, "w") as f:
        f.write("queued %d\n" % n)
    signal.pause()


def recv_creds(path, log):
    """Root: records every datagram with the credentials the kernel attached to it."""
    r = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    r.bind(path)
    r.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    with open(log, "a") as out:
        while True:
            msg, anc, _, _ = r.recvmsg(65536, socket.CMSG_SPACE(12))
            pid = uid = gid = -1
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid, uid, gid = (int.from_bytes(payload[i:i + 4], "little") for i in (0, 4, 8))
            out.write("pid=%d uid=%d gid=%d text=%r\n" % (pid, uid, gid, msg.decode(errors="replace")))
            out.flush()


def notify_app(marker, *lines):
    """An app that sends LINES (default READY=1) to $NOTIFY_SOCKET, says so in MARKER, then waits."""
    text = "\n".join(lines or ["READY=1"]).encode()
    path = os.environ.get("NOTIFY_SOCKET", "")
    result = "no NOTIFY_SOCKET"
    if path:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.connect("\0" + path[1:] if path.startswith("@") else path)
                s.send(text)
            result = "sent to " + path
        except OSError as e:
            result = "cannot send to %s: %s" % (path, e)
    with open(marker + ".tmp", "w") as f:
        f.write(result + "\n")
    os.rename(marker + ".tmp", marker)
    print("started", flush=True)
    time.sleep(60)


def hold(seconds, *_files):
    """An app that says it started and is ready, then sleeps (a cold start prints, a restored
    one does not);
    files named after the seconds are only there to be on its command line."""
    print("started pid=%d" % os.getpid(), flush=True)
    path = os.environ.get("NOTIFY_SOCKET", "")
    if path:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect("\0" + path[1:] if path.startswith("@") else path)
            s.send(b"READY=1")
    time.sleep(float(seconds))


def launch_exec(sock_path, name, prog, *args):
    """A launch requested by this process itself, which then execs PROG (a setuid program)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    s.sendall(request(name))
    reply, fds = recv_reply(s, 10)
    print("reply: %s" % json.dumps(reply), flush=True)
    os.execv(prog, [prog] + list(args))


def open_image(sock_path, name, stdio):
    """Replays a launch (this environment, the given stdio kinds): the reply and its fds."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    env = ["%s=%s" % kv for kv in os.environ.items()]
    s.sendall(request(name, env, stdio.split(",")))
    reply, fds = recv_reply(s, 10)
    return s, reply, fds


def probe_image(sock_path, name, stdio):
    """As the app's user: what a launch hands over, and whether the image can be listed or written."""
    _, reply, fds = open_image(sock_path, name, stdio)
    print("mode=%s fds=%d" % (reply.get("mode") if reply else None, len(fds)))
    import fcntl
    import stat as st
    for fd in fds:
        info = os.fstat(fd)
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        print("fd owner=%d mode=%o" % (info.st_uid, info.st_mode & 0o7777))
        if st.S_ISDIR(info.st_mode):
            try:
                print("LISTED %s" % sorted(os.listdir("/proc/self/fd/%d" % fd)))
            except OSError as e:
                print("list refused: %s" % e.strerror)
            for f in ("pages.img", "snapshot.pb", "meta.json"):
                try:
                    os.close(os.open(f, os.O_WRONLY, dir_fd=fd))
                    print("WRITABLE %s" % f)
                except OSError as e:
                    print("write of %s refused: %s" % (f, e.strerror))
        else:
            if flags & os.O_ACCMODE != os.O_RDONLY:
                print("WRITABLE fd (flags %o)" % flags)
            try:
                os.close(os.open("/proc/self/fd/%d" % fd, os.O_WRONLY))
                print("WRITABLE reopened fd")
            except OSError as e:
                print("reopen for writing refused: %s" % e.strerror)


RENAME_EXCHANGE = 2
SYS_renameat2 = 316  # x86_64


def race(victim, stop_file, started_file, sock_path=None, name=None, stdio=None, image_dir=None):
    """Puts directories aN, holding VICTIM's file names, and symlinks bN -> VICTIM into an image
    directory (through the fd a launch hands over, or by path for root) and swaps each pair until
    STOP_FILE exists: a remover that lists aN as a directory and then follows aN/NAME deletes
    VICTIM/NAME."""
    if image_dir:
        dfd = os.open(image_dir, os.O_PATH | os.O_DIRECTORY)
    else:
        _, reply, fds = open_image(sock_path, name, stdio)
        dirs = [fd for fd in fds if os.path.isdir("/proc/self/fd/%d" % fd)]
        if not dirs:
            print("no image directory handed over (mode %s, %d fds)" % (reply.get("mode") if reply else None, len(fds)))
            sys.exit(3)
        dfd = dirs[0]
    pairs = [("a%d" % i, "b%d" % i) for i in range(8)]  # each pair is one more chance
    try:
        for a, b in pairs:
            os.mkdir(a, 0o755, dir_fd=dfd)
            afd = os.open(a, os.O_PATH | os.O_DIRECTORY, dir_fd=dfd)
            for n in os.listdir(victim):
                os.close(os.open(n, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=afd))
            os.close(afd)
            os.symlink(victim, b, dir_fd=dfd)
    except OSError as e:
        print("cannot plant: %s" % e.strerror)
        sys.exit(3)
    libc = ctypes.CDLL(None, use_errno=True)
    with open(started_file, "w") as f:
        f.write("planted\n")
    swaps = 0
    enc = [(a.encode(), b.encode()) for a, b in pairs]
    while not os.path.exists(stop_file):
        for _ in range(200):
            for a, b in enc:
                if libc.syscall(SYS_renameat2, dfd, a, dfd, b, RENAME_EXCHANGE) == 0:
                    swaps += 1
    print("planted; %d swaps" % swaps)


COMMANDS = {
    "launch-gone": launch_gone, "launch-exec": launch_exec, "reuse-client": reuse_client, "reuse-pid": reuse_pid, "trickle": trickle,
    "fill": fill, "recv-creds": recv_creds, "notify-app": notify_app, "hold": hold, "probe-image": probe_image,
}

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "race":  # race VICTIM STOP STARTED (--dir DIR | SOCK NAME STDIO)
        if args[3] == "--dir":
            race(args[0], args[1], args[2], image_dir=args[4])
        else:
            race(args[0], args[1], args[2], sock_path=args[3], name=args[4], stdio=args[5])
    else:
        COMMANDS[cmd](*args)
