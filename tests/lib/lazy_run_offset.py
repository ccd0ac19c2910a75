#!/usr/bin/env python3
"""Prints the pages.img offset of the middle of a page run that lazy restore serves (a private
anonymous mapping, not a stack): lazy_run_offset.py PROTO IMAGE_DIR."""
import re
import subprocess
import sys

proto, image = sys.argv[1], sys.argv[2]
with open(image + "/snapshot.pb", "rb") as f:
    text = subprocess.run(["protoc", "-I" + proto.rsplit("/", 1)[0], "--decode=prewarm.pb.Snapshot", proto],
                          stdin=f, capture_output=True, check=True).stdout.decode()


def top_blocks(name):
    out, cur = [], None
    for line in text.splitlines():
        if line == name + " {":
            cur = {}
        elif line == "}" and cur is not None:
            out.append(cur)
            cur = None
        elif cur is not None and re.fullmatch(r"  \w+: .*", line):
            k, v = line.strip().split(": ", 1)
            cur[k] = v
    return out


lazy = [(int(m["start"]), int(m["end"])) for m in top_blocks("mappings")
        if "kind" not in m and m.get("shared") != "true" and m.get("growsdown") != "true"]
runs = [r for r in top_blocks("page_runs")
        if any(s <= int(r["addr"]) < e for s, e in lazy)]
if not runs:
    sys.exit("no page run in a lazily served mapping")
r = max(runs, key=lambda r: int(r.get("len", 0)))
print(int(r.get("file_offset", 0)) + int(r["len"]) // 2)
