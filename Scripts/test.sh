#!/usr/bin/env bash
# The test command (CI runs it through .ci/run): installs what the tests need, then runs them.
# Its last line counts the skipped tests and names each with its reason; its exit status is swift
# test's.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
Scripts/setup.sh --tests
# The committed .swift-format holds: `swift format format -i -r Sources Tests Benchmarks Fuzz Package.swift`
# fixes what this finds.
swift format lint --strict -r --parallel Sources Tests Benchmarks Fuzz Package.swift
swift build --build-tests
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
swift test --skip-build "$@" 2>&1 | tee "$log" || status=$?
python3 - "$log" <<'PY'
import re, sys

# Swift Testing: `➜ Test name() skipped: "reason"` (`skipped.` when no reason was given) and
# `➜ Suite Name skipped: "reason"` (a skipped suite's tests are not listed one by one); XCTest:
# `Test Case '...' skipped`.
skipped = []
for line in open(sys.argv[1], errors="replace"):
    m = re.search(r"\b(Test|Suite) (.+?) skipped(?:: \"(.*)\"|\.)?\s*$", line)
    if m and not line.lstrip().startswith("Test Case"):
        skipped.append(f"{m.group(1).lower()} {m.group(2)} ({m.group(3) or 'no reason given'})")
        continue
    m = re.search(r"Test Case '(.+?)' skipped", line)
    if m:
        skipped.append(f"XCTest {m.group(1)}")
print(f"Skipped: {len(skipped)}" + (": " + "; ".join(skipped) if skipped else " (no test or suite was skipped)"))
PY
exit "$status"
