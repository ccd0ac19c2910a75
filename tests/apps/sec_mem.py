# security_state.sh's app: holds MIB MiB of random (incompressible, never zero) anonymous memory,
# then answers one line of stdin with its credentials; at end of input it just waits (to be captured).
import os
import sys
import time

blob = bytearray(os.urandom(int(sys.argv[1]) << 20))
print("ready", flush=True)
line = sys.stdin.readline()
if not line:
    time.sleep(600)
print("answer", line.strip(), len(blob) >> 20, os.getuid(), os.geteuid(), flush=True)
