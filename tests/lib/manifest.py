#!/usr/bin/env python3
"""Alters an image's snapshot.pb the way a hostile or damaged image would be, through protoc's
text format (decode, edit, encode): manifest.py PROTO IMAGE_DIR EDIT.

EDITs: version (format 99), overlap (the 2nd mapping starts inside the 1st), beyond (the last
mapping ends past the 47-bit address space), past_end (the last page run reaches past the end
of pages.img), below_min (the 1st mapping starts at address 0)."""
import os
import re
import subprocess
import sys


def blocks(lines, name):
    """(first, last) line indexes of each top-level `name {` block."""
    out, start = [], None
    for i, line in enumerate(lines):
        if line == name + " {":
            start = i
        elif line == "}" and start is not None:
            out.append((start, i))
            start = None
    return out


def field(lines, block, key):
    """Index of the block's own `  key: N` line."""
    for i in range(block[0] + 1, block[1]):
        if re.fullmatch(r"  %s: \d+" % key, lines[i]):
            return i
    raise SystemExit("no %s in block at line %d" % (key, block[0]))


def value(lines, i):
    return int(lines[i].split(":")[1])


def edit(lines, what):
    maps, runs = blocks(lines, "mappings"), blocks(lines, "page_runs")
    if what == "version":
        i = next(i for i, l in enumerate(lines) if l.startswith("format_version: "))
        lines[i] = "format_version: 99"
    elif what == "overlap":
        s0 = value(lines, field(lines, maps[0], "start"))
        lines[field(lines, maps[1], "start")] = "  start: %d" % s0
    elif what == "beyond":
        lines[field(lines, maps[-1], "end")] = "  end: %d" % (1 << 48)
    elif what == "past_end":
        i = field(lines, runs[-1], "len")
        lines[i] = "  len: %d" % (value(lines, i) + (1 << 20))
    elif what == "below_min":
        lines[field(lines, maps[0], "start")] = "  start: 0"
    else:
        raise SystemExit("unknown edit " + what)


def main():
    proto, image, what = sys.argv[1:]
    path = os.path.join(image, "snapshot.pb")
    args = ["protoc", "--proto_path=" + os.path.dirname(proto), os.path.basename(proto)]
    with open(path, "rb") as f:
        text = subprocess.run(args + ["--decode=prewarm.pb.Snapshot"], input=f.read(),
                              capture_output=True, check=True).stdout.decode()
    lines = text.split("\n")
    edit(lines, what)
    data = subprocess.run(args + ["--encode=prewarm.pb.Snapshot"], input="\n".join(lines).encode(),
                          capture_output=True, check=True).stdout
    with open(path, "wb") as f:
        f.write(data)


if __name__ == "__main__":
    main()
