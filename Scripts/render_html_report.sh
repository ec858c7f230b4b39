#!/usr/bin/env bash
# Renders an `octet compare --html` page in headless Chromium (Debian's `chromium`, installed by
# `Scripts/setup.sh --tests`) and checks that the picture is a drawn report, not a blank page.
#
#   Scripts/render_html_report.sh REPORT.html OUT.png                 render, then check (Python + Pillow)
#   Scripts/render_html_report.sh --render-only REPORT.html OUT.png   render only (the Swift test checks it)
#
# The check (check_html_report_png.py): many distinct colours, and every SQNR series that the page
# draws (its polyline's stroke colour, read from the HTML) present in the picture across most of the
# chart's width. Exit status non-zero, with one line saying why, when rendering or the check fails.
set -euo pipefail
render_only=0
if [ "${1:-}" = "--render-only" ]; then render_only=1; shift; fi
if [ $# -ne 2 ]; then
  echo "usage: $0 [--render-only] REPORT.html OUT.png" >&2
  exit 2
fi
report="$1"
out="$2"
[ -f "$report" ] || { echo "render_html_report: '$report': no such file" >&2; exit 1; }
browser="$(command -v chromium || command -v chromium-browser || true)"
[ -n "$browser" ] || { echo "render_html_report: chromium not found (Scripts/setup.sh --tests installs it)" >&2; exit 1; }
profile="$(mktemp -d)"
log="$(mktemp)"
trap 'rm -rf "$profile" "$log"' EXIT
rm -f "$out"
# A fresh profile per run, so that concurrent renders do not share a profile lock. The time limit is
# for a browser that hangs (a page that opens a dialog does); a render takes seconds.
if ! timeout 120 "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
  --user-data-dir="$profile" --window-size=1400,2000 --screenshot="$out" \
  "file://$(cd "$(dirname "$report")" && pwd)/$(basename "$report")" >"$log" 2>&1 || [ ! -s "$out" ]; then
  echo "render_html_report: chromium did not write $out (exit status, or 124 after 120 s):" >&2
  cat "$log" >&2
  exit 1
fi
[ "$render_only" = 1 ] && exit 0
python3 "$(dirname "$0")/check_html_report_png.py" "$report" "$out"
