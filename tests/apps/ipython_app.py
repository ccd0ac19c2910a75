# An IPython app for runtimes_test: an InteractiveShell (its history-saving thread among what it
# starts), then one cell run with the number read from stdin.
import os
import sys

from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

# bench/runtimes.py keeps the history in memory: the file is written at every exit, which makes
# the next restore refuse (README, Limits).
config = Config()
if os.environ.get("IPYTHON_APP_HISTORY_IN_MEMORY"):
    config.HistoryManager.hist_file = ":memory:"
shell = InteractiveShell.instance(config=config)
shell.run_cell("import math; table = [math.factorial(i) % 9973 for i in range(2000)]")
print(f"ready pid={os.getpid()}", flush=True)
n = int(sys.stdin.readline())
shell.run_cell(f"x = table[{n}] * 2")
print(f"answer={shell.user_ns['x']}")
