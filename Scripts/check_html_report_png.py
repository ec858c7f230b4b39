"""Checks a screenshot of an `octet compare --html` page (Scripts/render_html_report.sh): the page
was drawn, not left blank, and each SQNR series of the chart is in the picture.

    python3 Scripts/check_html_report_png.py REPORT.html OUT.png

The series' colours come from the HTML (the stroke of each <polyline>, the chart's series), so the check
follows the page rather than a copy of its colours. A series counts as drawn when pixels of its
colour (within a small tolerance, for antialiasing) span at least half of the picture's width.
"""

import re
import sys

import numpy as np
from PIL import Image


def main(report_path, png_path):
    html = open(report_path, encoding="utf-8").read()
    # The chart's series are the page's only polylines; each must be drawn.
    colours = sorted(set(re.findall(r'<polyline[^>]*stroke="#([0-9a-fA-F]{6})"', html)))
    pixels = np.asarray(Image.open(png_path).convert("RGB")).astype(np.int16)
    height, width, _ = pixels.shape
    problems = []
    distinct = len(np.unique(pixels.reshape(-1, 3), axis=0))
    if distinct < 50:
        problems.append(f"only {distinct} distinct colours: the page looks blank")
    if not colours:
        problems.append("the page has no SQNR series (<polyline> in <svg id=\"sqnr-chart\">)")
    for colour in colours:
        rgb = np.array([int(colour[i : i + 2], 16) for i in (0, 2, 4)])
        match = np.all(np.abs(pixels - rgb) <= 6, axis=2)
        ys, xs = np.nonzero(match)
        span = (xs.max() - xs.min() + 1) / width if len(xs) else 0
        if len(xs) < 200 or span < 0.5:
            problems.append(f"series #{colour}: {len(xs)} pixels spanning {span:.0%} of the width (expected a line across the chart)")
        else:
            print(f"series #{colour}: {len(xs)} pixels, rows {ys.min()}-{ys.max()}, spanning {span:.0%} of the width")
    if problems:
        print(f"{png_path}: " + "; ".join(problems), file=sys.stderr)
        return 1
    print(f"{png_path}: {width}x{height}, {distinct} distinct colours, {len(colours)} series drawn")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: check_html_report_png.py REPORT.html OUT.png", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
