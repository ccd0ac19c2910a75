#!/usr/bin/python3
"""Checks a prewarmd dashboard page in headless Chromium: it rendered, each chart plotted the points
it should, and the screenshot really shows the cold and restored series in their colours.

Usage: browser_check.py URL OUT_PNG [--expect-series cold=N,restored=M]
Without --expect-series, every series a chart says it plotted must show in the screenshot.
Exits 0 when every check passes, 1 with the reasons otherwise. Needs Debian's /usr/bin/python3
(python3-pil) and /usr/bin/chromium.
"""
import argparse
import html.parser
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from PIL import Image

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WINDOW = (1280, 1600)
TIMEOUT_S = 60
# Must match COLORS in web/dashboard.js.
SERIES_COLORS = {"cold": (0xd6, 0x27, 0x28), "restored": (0x1f, 0x77, 0xb4)}
COLOR_DISTANCE = 12  # Euclidean, in RGB; absorbs rounding, not anti-aliased edges
MIN_PIXELS = 20


class CheckFailed(Exception):
    pass


def run_chromium(args):
    """Runs headless Chromium on a fresh profile; returns its stdout."""
    profile = tempfile.mkdtemp(prefix="browser_check.")
    cmd = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
           f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=5000", *args]
    try:
        # Its own process group, so a hung browser goes with all its helper processes.
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise CheckFailed(f"chromium did not finish within {TIMEOUT_S} s (killed): {' '.join(cmd)}")
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if proc.returncode != 0:
        tail = "\n".join(err.decode(errors="replace").splitlines()[-10:])
        raise CheckFailed(f"chromium exited with status {proc.returncode}: {' '.join(cmd)}\n{tail}")
    return out.decode(errors="replace")


class PageFacts(html.parser.HTMLParser):
    """What the page says about itself: body[data-rendered], the #status text, and each chart's
    data-points-SERIES counts and data-plot-rect."""

    def __init__(self):
        super().__init__()
        self.rendered = None
        self.status = ""
        self.charts = []  # (name, {series: count}, (left, top, width, height) or None)
        self._in_status = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.rendered = attrs.get("data-rendered")
        self._in_status = attrs.get("id") == "status"
        if "data-chart" in attrs:
            points = {k[len("data-points-"):]: int(v) for k, v in attrs.items()
                      if k.startswith("data-points-")}
            rect = attrs.get("data-plot-rect")
            rect = tuple(int(float(v)) for v in rect.split(",")) if rect else None
            self.charts.append((attrs["data-chart"], points, rect))

    def handle_endtag(self, tag):
        self._in_status = False

    def handle_data(self, data):
        if self._in_status:
            self.status += data


def parse_expected(text):
    expected = {}
    for item in filter(None, text.split(",")):
        name, sep, count = item.partition("=")
        if not sep or not count.strip().isdigit():
            raise SystemExit(f"--expect-series: want NAME=COUNT[,NAME=COUNT], got {item!r}")
        expected[name.strip()] = int(count)
    return expected


def check_dom(facts, expected):
    """Returns the problems found in the rendered DOM."""
    problems = []
    if facts.rendered != "1":
        problems.append(f"the page did not report rendering (body data-rendered={facts.rendered!r}); "
                        f"its status line says: {facts.status.strip() or '(nothing)'}")
    for name, points, _ in facts.charts:
        if not points:
            problems.append(f"chart {name!r} reports no series (no data-points-* attributes)")
    for series, want in expected.items():
        having = [(name, points[series]) for name, points, _ in facts.charts if series in points]
        if not having:
            problems.append(f"no chart reports series {series!r}")
        for name, got in having:
            if got < want:
                problems.append(f"chart {name!r} plotted {got} {series} points, expected at least {want}")
    return problems


def count_color(image, rect, color):
    """Pixels within COLOR_DISTANCE of color inside rect (CSS px, scaled to the image)."""
    scale = image.width / WINDOW[0]
    left, top, width, height = (round(v * scale) for v in rect)
    box = (max(0, left), max(0, top), min(image.width, left + width), min(image.height, top + height))
    if box[0] >= box[2] or box[1] >= box[3]:
        return None  # the plot is outside the screenshot
    limit = COLOR_DISTANCE ** 2
    r0, g0, b0 = color
    return sum(1 for r, g, b in image.crop(box).getdata()
               if (r - r0) ** 2 + (g - g0) ** 2 + (b - b0) ** 2 <= limit)


def check_screenshot(png, facts, expected):
    """Returns (what was found, problems) for the series colours inside the charts' plot areas."""
    found, problems = [], []
    image = Image.open(png).convert("RGB")
    for series, color in SERIES_COLORS.items():
        charts = [(name, points, rect) for name, points, rect in facts.charts if series in points]
        if series in expected:
            required = expected[series] > 0
        else:
            required = any(points[series] > 0 for _, points, _ in charts)
        if not required:
            continue
        hex_color = "#%02x%02x%02x" % color
        # Only inside the plot areas: the legend shows the colour even for an empty series.
        counts = [count_color(image, rect, color) for _, _, rect in charts if rect]
        visible = [c for c in counts if c is not None]
        total = sum(visible)
        found.append(f"screenshot: {total} px of {series} colour {hex_color} in plot areas")
        if not counts:
            problems.append(f"no chart with series {series!r} has a plot area (data-plot-rect)")
        elif not visible:
            problems.append(f"the plot areas with series {series!r} are outside the "
                            f"{image.width}x{image.height} screenshot")
        elif total < MIN_PIXELS:
            problems.append(f"screenshot shows {total} px of the {series} colour {hex_color} in the "
                            f"plot areas, expected at least {MIN_PIXELS}")
    return found, problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("out_png")
    parser.add_argument("--expect-series", default="", metavar="NAME=N,...",
                        help="minimum plotted points per series, e.g. cold=3,restored=5")
    args = parser.parse_args()
    expected = parse_expected(args.expect_series)
    png = os.path.abspath(args.out_png)

    try:
        facts = PageFacts()
        facts.feed(run_chromium(["--dump-dom", args.url]))
        if os.path.exists(png):
            os.unlink(png)  # so a stale file cannot pass for this run's screenshot
        run_chromium([f"--screenshot={png}", args.url])
        if not os.path.exists(png):
            raise CheckFailed(f"chromium exited without writing the screenshot {png}")
    except CheckFailed as e:
        print(f"FAIL {args.url}: {e}", file=sys.stderr)
        return 1

    print(f"{args.url}: data-rendered={facts.rendered!r}")
    for name, points, rect in facts.charts:
        counts = " ".join(f"{s}={n}" for s, n in points.items()) or "(no series)"
        print(f"chart {name}: {counts}; plot area {rect}")
    problems = check_dom(facts, expected)
    found, more = check_screenshot(png, facts, expected)
    problems += more
    for line in found:
        print(line)
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    if problems:
        print(f"FAIL {args.url}: {len(problems)} check(s) failed; screenshot in {png}", file=sys.stderr)
        return 1
    print(f"OK {args.url}; screenshot in {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
