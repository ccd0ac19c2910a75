# A service-like test app: imports sympy and numpy, sends READY=1, then answers requests that
# appear as files in the directory given as argv[1] (request: a number; answer: pid and results).
import os
import socket
import sys
import time

import numpy
import sympy

x = sympy.Symbol("x")


def answer(n):
    return "pid=%d factors=%s sum=%d integral=%s" % (
        os.getpid(), sympy.factorint(n), int(numpy.arange(n).sum()), sympy.integrate(x**2, x))


answer(12)  # warm up: sympy imports more on first use
path = os.environ.get("NOTIFY_SOCKET")
if path:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect("\0" + path[1:] if path.startswith("@") else path)
        s.send(b"READY=1")
box = sys.argv[1]
while True:
    try:
        with open(os.path.join(box, "request")) as f:
            n = int(f.read())
    except (FileNotFoundError, ValueError):
        time.sleep(0.02)
        continue
    os.unlink(os.path.join(box, "request"))
    with open(os.path.join(box, "answer.tmp"), "w") as f:
        f.write(answer(n) + "\n")
    os.rename(os.path.join(box, "answer.tmp"), os.path.join(box, "answer"))
