#!/usr/bin/env bash
# Builds and runs Octet's libFuzzer targets (Fuzz/README.md).
#
#   Scripts/fuzz.sh TARGET SECONDS [libFuzzer flags...]   one target for SECONDS
#   Scripts/fuzz.sh all SECONDS [libFuzzer flags...]      every target, SECONDS each, one at a time
#   Scripts/fuzz.sh list                                  the target names
#
# Targets are built in debug with -sanitize=fuzzer,address (LeakSanitizer stays on) into
# .build-fuzz-san/. Each run keeps its growing corpus, crash/leak/timeout inputs and log in
# .cache/fuzz/TARGET/ (not committed); the seeds are Fuzz/corpus/TARGET, the test fixtures, and for
# images a few of ../shared/data's files. Runs at nice 10: the machine is shared.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

targets=(checkpoint-zip checkpoint-legacy image safetensors quantized-model rangetable onnx)
scratch="${FUZZ_SCRATCH:-.build-fuzz-san}"
shared="$(cd "$root/.." && pwd)/shared"

usage() {
  echo "usage: $0 {$(IFS='|'; echo "${targets[*]}")|all} SECONDS [libFuzzer flags...]" >&2
  exit 2
}

build() {
  OCTET_FUZZ=1 nice -n 10 swift build --scratch-path "$scratch" -c debug \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library \
    -Xcc -fsanitize=fuzzer-no-link,address --product "fuzz-$1" 2>&1 |
    grep -v "Cannot export local symbol" | grep -E "error|warning: unre|Compiling|complete" || true
  test -x "$scratch/debug/fuzz-$1" || { echo "build of fuzz-$1 failed" >&2; return 1; }
}

# Extra seeds that live elsewhere in the repository or in ../shared, linked into one directory.
seeds() {
  local target="$1" dir="$2"
  rm -rf "$dir" && mkdir -p "$dir"
  local files=()
  case "$target" in
    checkpoint-zip | checkpoint-legacy)
      files=(Tests/OctetModelsTests/Fixtures/*.pth) ;;
    safetensors)
      files=(Tests/OctetModelsTests/Fixtures/*.safetensors) ;;
    onnx)
      files=(Tests/OctetModelsTests/Fixtures/onnx/*.onnx) ;;
    image)
      files=(Tests/OctetImagesTests/Fixtures/{jpeg,png,bad}/*)
      # The smallest real files: real encoders' choices (restart intervals, ICC chunks, ...).
      if [ -d "$shared/data/imagenet-val-1300" ]; then
        while read -r f; do files+=("$f"); done < <(ls -S "$shared"/data/imagenet-val-1300/*.JPEG | tail -4)
      fi
      if [ -d "$shared/data/imagenet-train-png-120" ]; then
        while read -r f; do files+=("$f"); done < <(ls -S "$shared"/data/imagenet-train-png-120/*.png | tail -2)
      fi ;;
  esac
  for f in "${files[@]}"; do [ -f "$f" ] && ln -sf "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$dir/"; done
  return 0
}

run() {
  local target="$1" seconds="$2"
  shift 2
  local dict=""
  case "$target" in
    checkpoint-*) dict=Fuzz/dict/pickle.dict ;;
    safetensors | quantized-model | rangetable) dict=Fuzz/dict/json.dict ;;
    image) dict=Fuzz/dict/image.dict ;;
    onnx) dict=Fuzz/dict/onnx.dict ;;
  esac
  local work=".cache/fuzz/$target"
  mkdir -p "$work/corpus" "$work/artifacts"
  seeds "$target" "$work/seeds"
  build "$target" || return 1
  echo "== fuzz-$target for ${seconds}s (log: $work/log.txt)"
  # -malloc_limit_mb: one allocation above it is reported as a finding (no input should need one).
  # -timeout: one input running longer is a hang. -detect_leaks is on by default.
  set +e
  LSAN_OPTIONS="suppressions=$root/Fuzz/lsan.supp:print_suppressions=0" TMPDIR="${FUZZ_TMPDIR:-/dev/shm}" \
    SWIFT_BACKTRACE=enable=no nice -n 10 "$scratch/debug/fuzz-$target" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2560 -malloc_limit_mb=1024 \
    -max_len=65536 -dict="$dict" -artifact_prefix="$work/artifacts/" -print_final_stats=1 \
    "$@" "$work/corpus" "Fuzz/corpus/$target" "$work/seeds" >"$work/log.txt" 2>&1
  local status=$?
  set -e
  grep -E "^Done|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb|ERROR|SUMMARY" "$work/log.txt" || true
  echo "corpus: $(ls "$work/corpus" | wc -l) files; artifacts: $(ls "$work/artifacts" | wc -l); exit $status"
  return 0
}

[ $# -ge 1 ] || usage
case "$1" in
  list) printf '%s\n' "${targets[@]}" ;;
  all)
    [ $# -ge 2 ] || usage
    seconds="$2"; shift 2
    for t in "${targets[@]}"; do run "$t" "$seconds" "$@" || echo "fuzz-$t skipped" >&2; done ;;
  *)
    [ $# -ge 2 ] || usage
    printf '%s\n' "${targets[@]}" | grep -qx "$1" || usage
    run "$@" ;;
esac
