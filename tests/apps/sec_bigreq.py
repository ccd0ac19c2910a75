# security_state.sh's hostile client of prewarmd's control socket, bypassing the CLI's checks:
# sends COUNT `register` requests (names PREFIX0, PREFIX1, ...) whose argv holds MIB MiB, each on
# its own connection, and prints one line per request: "accepted NAME" or "refused NAME: WHY"
# (a connection closed or reset by prewarmd counts as refused).
# Usage: sec_bigreq.py CONTROL_SOCKET COUNT MIB PREFIX
import json
import socket
import sys

path, count, mib, prefix = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
chunk = "x" * (64 << 10)
argv = ["/bin/true"] + [chunk] * int(mib * 16)
for i in range(count):
    name = "%s%d" % (prefix, i)
    req = {"op": "register", "name": name, "argv": argv, "cwd": "/", "ready": "idle", "watch": []}
    data = b""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(20)
        try:
            s.connect(path)
            s.sendall(json.dumps(req).encode() + b"\n")
            while not data.endswith(b"\n"):
                got = s.recv(65536)
                if not got:
                    break
                data += got
        except OSError as e:
            print("refused %s: %s" % (name, e), flush=True)
            continue
    try:
        reply = json.loads(data)
    except ValueError:
        print("refused %s: no reply (%d bytes)" % (name, len(data)), flush=True)
        continue
    if reply.get("ok"):
        print("accepted %s" % name, flush=True)
    else:
        print("refused %s: %s" % (name, reply.get("error")), flush=True)
