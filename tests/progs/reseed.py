# Restores are clones: every restore of one image starts with the same random state. This app
# reseeds in its SIGUSR1 handler, which `prewarm restore --on-restore SIGUSR1` makes run first.
import os
import random
import signal
import sys

reseeded = 0


def reseed(signum, frame):
    global reseeded
    random.seed(os.urandom(32))
    reseeded += 1


signal.signal(signal.SIGUSR1, reseed)
print("ready", flush=True)
sys.stdin.readline()
print(f"random={random.random()!r} reseeded={reseeded}", flush=True)
