# Benchmark and demo app: a calculator that imports sympy and numpy, says it is ready, then
# answers one line. Cold start pays the imports; a restore does not.
import os
import sys

import numpy
import sympy

x = sympy.Symbol("x")


def answer(n):
    return "factors=%s sum=%d integral=%s" % (
        sympy.factorint(n), int(numpy.arange(n).sum()), sympy.integrate(x**2, x))


# Warm up before saying ready, as a real service would: sympy imports more on first use.
answer(12)
print("ready", os.getpid(), flush=True)
line = sys.stdin.readline().strip()
n = int(line) if line else 360
print("answer pid=%d %s" % (os.getpid(), answer(n)), flush=True)
