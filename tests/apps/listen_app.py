#!/usr/bin/python3
# A socket-activated HTTP server for tests/systemd/e2e.sh: it takes its listening socket from
# systemd (LISTEN_PID, LISTEN_FDS, fd 3; sd_listen_fds(3)), draws a token at start-up and answers
# every GET with "token=T pid=P fd3=socket:[N]". Restored, the pid is the restored process's
# (MainPID), the token the snapshot's and fd 3 the socket systemd passed to that launch. With
# --move-to N it serves the socket at fd N and closes fd 3, as Go's net.FileListener leaves it.
import http.server
import os
import secrets
import socket
import sys

if os.environ.get("LISTEN_PID") != str(os.getpid()) or os.environ.get("LISTEN_FDS") != "1":
    raise SystemExit("listen_app: expected one socket from systemd (LISTEN_FDS=1 for this pid)")
TOKEN = secrets.token_hex(4)
FD = 3
if len(sys.argv) > 1 and sys.argv[1].startswith("--move-to="):
    FD = int(sys.argv[1].split("=", 1)[1])
    os.dup2(3, FD)
    os.close(3)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"token={TOKEN} pid={os.getpid()} fd{FD}={os.readlink(f'/proc/self/fd/{FD}')}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("", 0), Handler, bind_and_activate=False)
server.socket.close()
server.socket = socket.socket(fileno=FD)
# No poll interval: blocked in poll(2) between requests, so --ready idle sees it asleep.
server.serve_forever(poll_interval=None)
