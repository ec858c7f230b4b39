#!/usr/bin/env bash
# Mutation check: do the tests catch the bugs they claim to? Applies each mutation below (a
# deliberate bug) to a copy of this tree, builds it, runs the tests that cover it, and prints a
# table: mutation -> caught (by which tests) / NOT caught. Not run by CI (each mutation rebuilds).
#
#   Scripts/mutation_check.sh              every mutation, each with the test suites that cover it
#   Scripts/mutation_check.sh --full       every mutation, each with the whole test suite
#   Scripts/mutation_check.sh ID...        only these mutations (IDs from --list)
#   Scripts/mutation_check.sh --list       the mutations and the tests each one runs
#
# The copy is the working tree as it is (tracked and untracked files, not .build or .cache) in a
# fresh temporary directory whose parent has no `shared`, so every test runs as on a machine
# without ../shared: the ones that need data skip, and none of these mutations needs data to be
# caught. The unmutated copy must pass the same tests first (a baseline), or the table means
# nothing. Each mutation is a literal replacement that must match exactly once (the script stops
# if it does not, so a mutation cannot silently apply to nothing), and is undone after its run.
# OCTET_MUTATION_DIR=dir keeps the copy (and its build) there for the next run.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
FULL=0
LIST=0
ONLY=()
for arg in "$@"; do
  case "$arg" in
    --full) FULL=1 ;;
    --list) LIST=1 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) echo "mutation_check.sh: unknown option $arg" >&2; exit 2 ;;
    *) ONLY+=("$arg") ;;
  esac
done

# id | files (globs, relative to the root) | test filter (swift test --filter) | what the bug is
# The old and new text of each mutation are in mutation_text below.
MUTATIONS=(
  "c-requant-ties|Sources/CInt8Kernels/common.h|TieTests|EpilogueFamilyTests|C requantization (octet_requant) rounds ties toward -inf"
  "c-round-shift-ties|Sources/CInt8Kernels/common.h|TieTests|EpilogueFamilyTests|C rounding shift of the residual add (octet_round_shift) rounds ties toward -inf"
  "swift-requant-ties|Sources/OctetCore/FixedPoint.swift|TieTests|EpilogueFamilyTests|SmallNetGoldenTests|Int8OperatorTests|Swift requantization (RequantMultiplier.apply) rounds ties toward -inf"
  "avx2-fast33|Sources/CInt8Kernels/*.[ch]|EpilogueFamilyTests|TieTests|AVX2 32-bit rounding form taken from shift 32 instead of 33"
  "float-bn-no-epsilon|Sources/OctetFloat/*.swift|SmallNetFloatGoldenTests|GoldenTests|OperatorTests|float BatchNorm folded into the conv without its epsilon"
  "quantizer-bias-not-scaled|Sources/OctetQuantizer/*.swift|SmallNetGoldenTests|BatchNormFoldingTests|quantizer: conv bias not scaled by the BatchNorm factor"
  "epilogue-int16|Sources/CInt8Kernels/*.[ch]|EpilogueFamilyTests|TieTests|AVX2 int16 (vpmaddwd) kernel's in-register epilogue drops the fused residual add"
  "epilogue-pairs|Sources/CInt8Kernels/*.[ch]|EpilogueFamilyTests|TieTests|AVX2 pairs kernel's in-register epilogue drops the fused residual add"
  "epilogue-quads|Sources/CInt8Kernels/*.[ch]|EpilogueFamilyTests|TieTests|AVX2 quads kernel's in-register epilogue drops the fused residual add"
  "vnni512-rounding|Sources/CInt8Kernels/*.[ch]|TieTests|FastKernelTests|AVX-512 VNNI fused epilogue drops the rounding term of the 32-bit form (caught only on a CPU with AVX-512 VNNI: elsewhere those tests skip)"
  "vnni512-residual-fold|Sources/CInt8Kernels/*.[ch]|TieTests|FastKernelTests|AVX-512 VNNI fused epilogue adds the folded residual's high constant to its low half (caught only on a CPU with AVX-512 VNNI)"
  "vnni512-general-rounding|Sources/CInt8Kernels/*.[ch]|TieTests|FastKernelTests|AVX-512 VNNI 16-lane epilogue's general form (shifts below 32) drops its rounding term (caught only on a CPU with AVX-512 VNNI)"
  "vnni-dw-lone-tap|Sources/CInt8Kernels/*.[ch]|FastKernelTests|AVX-512 VNNI depthwise kernel gives the spare taps of its last quad weight 1 instead of 0 (caught only on a CPU with AVX-512 VNNI and VBMI)"
  "a8w16-block|Sources/CInt8Kernels/*.[ch]|MixedPrecisionBitExactTests|AVX2 wide GEMM sums 129 pairs of 16-bit weights on an 8-bit input in int32 (one pair past the bound: 129 · 2 · 255 · 32767 > 2^31)"
  "vnni512-int32-guard|Sources/CInt8Kernels/*.[ch]|EpilogueFamilyTests|AVX-512 VNNI whole tiles with int32 outputs (logits) go to the 16-lane 8-bit epilogue (caught only on a CPU with AVX-512 VNNI)"
  "vnni-tail-last-row|Sources/CInt8Kernels/*.[ch]|FastKernelTests|AVX-512 VNNI GEMM: a tail tile of 1-7 rows does not finish its last row in registers (caught only on a CPU with AVX-512 VNNI)"
  "amx-lower-half|Sources/CInt8Kernels/amx.c|FastKernelBitExactTests|AMX GEMM: a block of exactly 17 rows skips its lower tiles (rows 16-31)"
  "amx-bias-stride|Sources/CInt8Kernels/amx.c|FastKernelBitExactTests|AMX GEMM: the lower accumulator tiles start at a bias row loaded with stride 4 instead of 0"
  "amx-fused-last-row|Sources/CInt8Kernels/amx.c|FastKernelBitExactTests|EpilogueFamilyTests|AMX GEMM: the 16-lane fused epilogue does not finish a block's last row (caught only on a CPU with AMX-INT8)"
  "float512-mask|Sources/CFloatKernels/gemm.c|PackedGEMMKernelTests|conv2d|AVX-512F float GEMM: a partial panel's mask leaves out its last column (caught only on a CPU with AVX-512F)"
  "bands-late-start|Sources/OctetInt8/Fast/*.swift|FastKernelBitExactTests|row bands over the whole batch start one row late (the row before each band is never computed)"
  "winograd-output-sign|Sources/CFloatKernels/winograd.c|conv2dWinograd|Winograd output transform drops the - m3 term of the second output column"
  "winograd-padding|Sources/CFloatKernels/winograd.c|conv2dWinograd|Winograd input transform reads the row below the image (padding check off by one)"
  "avx2-residual-shift-logical|Sources/CInt8Kernels/*.[ch]|EpilogueFamilyTests|TieTests|AVX2 folded residual add shifts its low half logically instead of arithmetically"
)

# The literal text each mutation replaces (old, then new), separated by a line "=>".
mutation_text() {
  case "$1" in
    c-requant-ties) cat <<'EOF'
  return ((int64_t)acc * (int64_t)m + ((int64_t)1 << (n - 1))) >> n;
=>
  return ((int64_t)acc * (int64_t)m + ((int64_t)1 << (n - 1)) - 1) >> n;
EOF
    ;;
    c-round-shift-ties) cat <<'EOF'
  return (x >> n) + ((x >> (n - 1)) & 1);
=>
  return ((x - 1) >> n) + (((x - 1) >> (n - 1)) & 1);
EOF
    ;;
    swift-requant-ties) cat <<'EOF'
    return (Int64(acc) * Int64(multiplier) + (1 &<< (n - 1))) &>> n
=>
    return (Int64(acc) * Int64(multiplier) + (1 &<< (n - 1)) - 1) &>> n
EOF
    ;;
    avx2-fast33) cat <<'EOF'
k->fast33 &= ep->shift[c] >= 33;
=>
k->fast33 &= ep->shift[c] >= 32;
EOF
    ;;
    float-bn-no-epsilon) cat <<'EOF'
            let factor = Double(gamma[c]) / (Double(variance[c]) + eps).squareRoot()
=>
            let factor = Double(gamma[c]) / Double(variance[c]).squareRoot()
EOF
    ;;
    quantizer-bias-not-scaled) cat <<'EOF'
      b[c] = (Double(bias?[c] ?? 0) - Double(mean[c])) * factor + Double(beta[c])
=>
      b[c] = Double(bias?[c] ?? 0) - Double(mean[c]) * factor + Double(beta[c])
EOF
    ;;
    epilogue-int16) cat <<'EOF'
    OCTET_ROW(a5, c50, c51)
#undef OCTET_ROW
  }
  OCTET_6X16_FINISH(o, 1, -1)
=>
    OCTET_ROW(a5, c50, c51)
#undef OCTET_ROW
  }
  OCTET_6X16_FINISH(o, 1, 0)
EOF
    ;;
    epilogue-pairs) cat <<'EOF'
  for (size_t g = 0; g < kg; g++) { OCTET_PAIRS_STEP(g, 6) }
  OCTET_6X16_FINISH(o, 1, -1)
=>
  for (size_t g = 0; g < kg; g++) { OCTET_PAIRS_STEP(g, 6) }
  OCTET_6X16_FINISH(o, 1, 0)
EOF
    ;;
    epilogue-quads) cat <<'EOF'
  OCTET_6X16_FINISH(o, R == 6, RES)
=>
  OCTET_6X16_FINISH(o, R == 6, 0)
EOF
    ;;
    avx2-residual-shift-logical) cat <<'EOF'
  const __m256i l0 = _mm256_srai_epi32(_mm256_add_epi32(_mm256_madd_epi16(p0, k->madd_lo), k->fold_cl), 16);
=>
  const __m256i l0 = _mm256_srli_epi32(_mm256_add_epi32(_mm256_madd_epi16(p0, k->madd_lo), k->fold_cl), 16);
EOF
    ;;
    vnni512-rounding) cat <<'EOF'
        _mm512_add_epi32(_mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(ye, 32), yo), p->rnd32), p->post);
=>
        _mm512_add_epi32(_mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(ye, 32), yo), _mm512_setzero_si512()), p->post);
EOF
    ;;
    vnni512-general-rounding) cat <<'EOF'
_mm512_srav_epi64(_mm512_add_epi64(ye, p->rnd_e), p->sh_e)
=>
_mm512_srav_epi64(ye, p->sh_e)
EOF
    ;;
    vnni512-int32-guard) cat <<'EOF'
c.use512 = (!k->residual || k->add_fold) && !int32_output;
=>
c.use512 = (!k->residual || k->add_fold);
EOF
    ;;
    vnni-tail-last-row) cat <<'EOF'
      for (size_t i = 0; i < MR; i++)                                                             \
        for (size_t p = 0; p < NP; p++)                                                           \
          finish16_512(
=>
      for (size_t i = 0; i < (MR == 8 ? 8 : MR - 1); i++)                                        \
        for (size_t p = 0; p < NP; p++)                                                           \
          finish16_512(
EOF
    ;;
    winograd-output-sign) cat <<'EOF'
        y[1] = _mm256_sub_ps(_mm256_sub_ps(s[r][1], s[r][2]), s[r][3]);
=>
        y[1] = _mm256_sub_ps(s[r][1], s[r][2]);
EOF
    ;;
    winograd-padding) cat <<'EOF'
        valid[r][c] = y0 + r >= 0 && y0 + r < w->in_h && x0 + c >= 0 && x0 + c < w->in_w;
=>
        valid[r][c] = y0 + r >= 0 && y0 + r <= w->in_h && x0 + c >= 0 && x0 + c < w->in_w;
EOF
    ;;
    amx-lower-half) cat <<'EOF'
        const int lower = rows > 16;
=>
        const int lower = rows > 17;
EOF
    ;;
    amx-bias-stride) cat <<'EOF'
          _tile_loadd(2, bias, 0);
=>
          _tile_loadd(2, bias, 4);
EOF
    ;;
    amx-fused-last-row) cat <<'EOF'
            for (size_t r = 0; r < rows; r++)
              for (size_t p = 0; p < np; p++)
                finish16_512(
=>
            for (size_t r = 0; r + 1 < rows; r++)
              for (size_t p = 0; p < np; p++)
                finish16_512(
EOF
    ;;
    float512-mask) cat <<'EOF'
(__mmask16)((1u << (nr - j)) - 1);
=>
(__mmask16)((1u << (nr - j - 1)) - 1);
EOF
    ;;
    bands-late-start) cat <<'EOF'
        let g0 = t % bands * bandGrain
=>
        let g0 = t % bands * bandGrain + (t % bands > 0 ? 1 : 0)
EOF
    ;;
    a8w16-block) cat <<'EOF'
c->in_bits == 8 ? 256 : 2;
=>
c->in_bits == 8 ? 258 : 2;
EOF
    ;;
    vnni-dw-lone-tap) cat <<'EOF'
                                : _mm512_setzero_si512();
      wq[q]
=>
                                : _mm512_set1_epi8(1);
      wq[q]
EOF
    ;;
    vnni512-residual-fold) cat <<'EOF'
_mm512_madd_epi16(pr, c->madd_lo), c->fold_cl), 16);
=>
_mm512_madd_epi16(pr, c->madd_lo), c->fold_ch), 16);
EOF
    ;;
    *) echo "no text for mutation $1" >&2; exit 2 ;;
  esac
}

field() { # field N of a MUTATIONS entry: 1 id, 2 files, 3 filter, 4 description
  local entry=$1 n=$2
  local id=${entry%%|*} rest=${entry#*|}
  local files=${rest%%|*} rest2=${rest#*|}
  local description=${rest2##*|} filter=${rest2%|*}
  case $n in 1) echo "$id" ;; 2) echo "$files" ;; 3) echo "$filter" ;; 4) echo "$description" ;; esac
}

if [[ $LIST == 1 ]]; then
  for m in "${MUTATIONS[@]}"; do
    printf '%-28s %s\n%-28s tests: %s\n' "$(field "$m" 1)" "$(field "$m" 4)" "" "$(field "$m" 3)"
  done
  exit 0
fi

SELECTED=()
for m in "${MUTATIONS[@]}"; do
  id=$(field "$m" 1)
  if [[ ${#ONLY[@]} -eq 0 ]] || printf '%s\n' "${ONLY[@]}" | grep -qx "$id"; then SELECTED+=("$m"); fi
done
[[ ${#SELECTED[@]} -gt 0 ]] || { echo "mutation_check.sh: no such mutation: ${ONLY[*]} (see --list)" >&2; exit 2; }

# The copy: <dir>/octet, with no <dir>/shared beside it.
BASE=${OCTET_MUTATION_DIR:-$(mktemp -d /tmp/octet-mutation.XXXXXX)}
COPY=$BASE/octet
[[ ! -e $BASE/shared ]] || { echo "mutation_check.sh: $BASE/shared exists; the copy must not see ../shared" >&2; exit 2; }
mkdir -p "$COPY"
echo "copying the tree to $COPY"
# A kept copy loses every file but its build first, so that files gone from the tree are gone there too.
find "$COPY" -mindepth 1 -maxdepth 1 ! -name .build -exec rm -rf {} +
(cd "$ROOT" && git ls-files -co --exclude-standard -z | tar --null --ignore-failed-read -T - -cf - 2>/dev/null) |
  tar -xf - -C "$COPY"
LOG=$BASE/logs
mkdir -p "$LOG"

# Apply (or undo, with "undo") one mutation: the old text must occur exactly once in the files.
apply() {
  local id=$1 files=$2 direction=$3
  mutation_text "$id" > "$LOG/$id.text"
  (cd "$COPY" && python3 - "$LOG/$id.text" "$direction" $files) <<'PY'
import sys
text_file, direction, *files = sys.argv[1:]
old, new = open(text_file).read().split("\n=>\n")
old, new = old.rstrip("\n"), new.rstrip("\n")
if direction == "undo":
    old, new = new, old
hits = [(f, open(f).read().count(old)) for f in files]
total = sum(n for _, n in hits)
if total != 1:
    sys.exit(f"the text to replace occurs {total} times in {files}, not once:\n{old}")
for f, n in hits:
    if n:
        s = open(f).read()
        open(f, "w").write(s.replace(old, new))
        print(f"  {direction} in {f}")
PY
}

build() { (cd "$COPY" && swift build --build-tests >"$LOG/build.$1.log" 2>&1); }

# Runs the tests of `filter` (all with --full) and prints the names of the failing tests, or "".
run_tests() {
  local filter=$1 name=$2
  local args=(--skip-build)
  [[ $FULL == 1 ]] || args+=(--filter "$filter")
  local status=0
  (cd "$COPY" && swift test "${args[@]}" >"$LOG/test.$name.log" 2>&1) || status=$?
  grep -aoE '^✘ Test ("[^"]*"|[^ ]+)' "$LOG/test.$name.log" | sed 's/^✘ Test //' | grep -vx 'run' | sort -u |
    paste -sd, - | sed 's/,/, /g' || true
  return $status
}

echo "building the unmutated copy (the first build takes minutes)"
build baseline || { echo "the unmutated copy does not build: $LOG/build.baseline.log" >&2; exit 1; }
FILTERS=$(for m in "${SELECTED[@]}"; do field "$m" 3; done | tr '|' '\n' | sort -u | paste -sd'|' -)
if [[ $FULL == 1 ]]; then echo "baseline: the unmutated copy must pass the whole suite"; else echo "baseline: the unmutated copy must pass $FILTERS"; fi
if ! failing=$(run_tests "$FILTERS" baseline); then
  echo "the unmutated copy fails: ${failing:-see $LOG/test.baseline.log}" >&2
  exit 1
fi

RESULTS=()
for m in "${SELECTED[@]}"; do
  id=$(field "$m" 1) files=$(field "$m" 2) filter=$(field "$m" 3)
  echo "== $id: $(field "$m" 4)"
  apply "$id" "$files" apply
  if ! build "$id"; then
    RESULTS+=("$id|build failed (see $LOG/build.$id.log): not a usable mutation")
  elif failing=$(run_tests "$filter" "$id"); then
    RESULTS+=("$id|NOT caught")
  else
    RESULTS+=("$id|caught by ${failing:-a failing run (see $LOG/test.$id.log)}")
  fi
  apply "$id" "$files" undo
  echo "   ${RESULTS[-1]#*|}"
done
build final >/dev/null 2>&1 || true

echo
echo "| mutation | result | tests run |"
echo "| --- | --- | --- |"
for r in "${RESULTS[@]}"; do
  id=${r%%|*}
  for m in "${SELECTED[@]}"; do [[ $(field "$m" 1) == "$id" ]] && filter=$(field "$m" 3); done
  echo "| $id | ${r#*|} | $([[ $FULL == 1 ]] && echo "whole suite" || echo "${filter//|/, }") |"
done
echo
echo "logs: $LOG"
if printf '%s\n' "${RESULTS[@]}" | grep -q '|NOT caught\||build failed'; then exit 1; fi
