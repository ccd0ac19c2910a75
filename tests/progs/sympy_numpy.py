# A real app: imports sympy and numpy (slow to start), says it is ready, then answers one line.
import os
import sys

import numpy
import sympy

sympy.factorint(12)  # sympy imports more on first use: do it before saying ready
print("ready pid=%d" % os.getpid(), flush=True)
n = int(sys.stdin.readline())
print("pid=%d factors=%s sum=%d" % (os.getpid(), sorted(sympy.factorint(n).items()),
                                    int(numpy.arange(n + 1).sum())), flush=True)
