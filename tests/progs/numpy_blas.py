# numpy on a threaded BLAS (OpenBLAS's worker threads start with the first large product): says
# ready, then answers one line with a product big enough to run on those threads.
import os
import sys

import numpy

a = numpy.arange(512 * 512, dtype=numpy.float64).reshape(512, 512) % 7
a @ a  # starts the BLAS threads
print("ready pid=%d" % os.getpid(), flush=True)
n = int(sys.stdin.readline())
b = (a + n) @ (a - n)
print("pid=%d trace=%d sum=%d" % (os.getpid(), int(b.trace()), int(b.sum())), flush=True)
