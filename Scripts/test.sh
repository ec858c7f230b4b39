#!/usr/bin/env bash
# The test command (CI runs it through .ci/run): installs what the tests need, then runs them.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
Scripts/setup.sh
swift build --build-tests
swift test --skip-build "$@"
