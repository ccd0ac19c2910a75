# numpy on OpenBLAS's threads for service_runtimes (run with LD_LIBRARY_PATH on
# libopenblas0-pthread): ready once a large product has run on the BLAS threads, then one answer
# from another product, which runs on them too.
import os
import sys

import numpy

a = numpy.arange(512 * 512, dtype=numpy.float64).reshape(512, 512) % 7
a @ a
print("ready pid=%d" % os.getpid(), flush=True)
n = int(sys.stdin.readline())
b = (a + n) @ (a - n)
print("answer=%d threads=%s" % (int(b.trace()), len(os.listdir("/proc/self/task")) > 1), flush=True)
