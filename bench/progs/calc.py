# Benchmark and demo app: a calculator that imports sympy and numpy, says it is ready, then
# answers one line. Cold start pays the imports; a restore does not.
import os
import socket
import sys

import numpy
import sympy

x = sympy.Symbol("x")


def answer(n):
    return "factors=%s sum=%d integral=%s" % (
        sympy.factorint(n), int(numpy.arange(n).sum()), sympy.integrate(x**2, x))


def notify_ready():
    """sd_notify(READY=1) when launched by systemd or prewarm; the socket is closed again."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect("\0" + path[1:] if path.startswith("@") else path)
        s.send(b"READY=1")


# Warm up before saying ready, as a real service would: sympy imports more on first use.
answer(12)
notify_ready()
print("ready", os.getpid(), flush=True)
line = sys.stdin.readline().strip()
n = int(line) if line else 360
print("answer pid=%d %s" % (os.getpid(), answer(n)), flush=True)
