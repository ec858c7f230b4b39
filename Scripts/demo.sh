#!/usr/bin/env bash
# Octet's main job on a fresh machine, end to end: install, build (release), import EfficientNet-Lite0,
# calibrate and quantize it in one step (AdaRound, bias correction) on one set of images, compare
# float and int8 on another, disjoint set,
# classify two images with the int8 model, time both models, and print a summary.
#
#   Scripts/demo.sh
#
# Images (Scripts/setup.sh): .cache/data/calibration and .cache/data/eval, ../shared's ImageNet sets
# when present (the comparison then uses the first OCTET_DEMO_EVAL_LIMIT of its 1300 images, 500
# unless set, to stay within a few minutes on 2 cores), else images from PyPI packages (9 natural
# photos to calibrate, 20 labeled ImageNet images to compare, all 20 used).
# Everything it writes goes to .cache/demo/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
Scripts/setup.sh
swift build -c release --product octet
octet="$(swift build -c release --show-bin-path)/octet"

calibration=.cache/data/calibration
eval=.cache/data/eval
out=.cache/demo
mkdir -p "$out"
float="$out/efficientnet-lite0.safetensors"
int8="$out/efficientnet-lite0-int8.safetensors"

# A big evaluation set (../shared's 1300) is cut to keep the demo short; a small one is used whole.
eval_count=$(grep -c . "$eval/labels.tsv")
limit=()
if [ "$eval_count" -gt 200 ]; then limit=(--limit "${OCTET_DEMO_EVAL_LIMIT:-500}"); fi
# Calibration with the default method; on a big folder, 100 images spread over its classes.
calibration_limit=()
if [ "$(ls "$calibration" | grep -ciE '\.(jpe?g|png)$')" -gt 100 ]; then calibration_limit=(--limit 100); fi

step() { printf '\n== %s\n' "$*"; }

step "import the PyTorch checkpoint"
"$octet" import .cache/models/efficientnet-lite0-57934424.pth -o "$float"

step "calibrate on $calibration and quantize to int8 in one step (the recommended recipe: AdaRound, then bias correction)"
"$octet" quantize "$float" --images "$calibration" ${calibration_limit[@]+"${calibration_limit[@]}"} --json "$out/quantize.json" -o "$int8"

step "compare float and int8 on $eval"
"$octet" compare "$float" "$int8" --images "$eval" ${limit[@]+"${limit[@]}"} --json "$out/compare.json" --html "$out/report.html"

step "classify two evaluation images with the int8 model"
first_two=()
while IFS=$'\t' read -r file label; do
  first_two+=("$eval/$file")
  echo "$file: labeled $(awk -F'\t' -v i="$label" '$1 == i { print $3 }' Models/imagenet-classes.tsv) ($label)"
done < <(head -2 "$eval/labels.tsv")
"$octet" classify "$int8" "${first_two[@]}" --top 3

step "time both models (batch 1, 1 thread, 20 runs after 3 warm-up runs)"
"$octet" bench "$int8" --iterations 20 --warmup 3 --json "$out/bench-int8.json"
"$octet" bench "$float" --iterations 20 --warmup 3 --json "$out/bench-float.json"

step "summary"
python3 - "$out" "$calibration" "$eval" <<'PY'
import json, os, sys

out, calibration, eval_folder = sys.argv[1:]
compare = json.load(open(os.path.join(out, "compare.json")))
int8 = json.load(open(os.path.join(out, "bench-int8.json")))
float32 = json.load(open(os.path.join(out, "bench-float.json")))
recipe = json.load(open(os.path.join(out, "quantize.json")))["recipe"]
n = compare["count"]

passes = ", ".join(p.replace("_", " ") for p in recipe["passes"]) or "none"
print(f"EfficientNet-Lite0, calibrated ({recipe['method']}) on {recipe['images']} images of {os.path.realpath(calibration)},")
print(f"quantized with {recipe['options']['weightBits']}-bit weights and passes: {passes};")
print(f"compared on {n} other images, of {os.path.realpath(eval_folder)}:")
print(f"  float top-1       {100 * compare['float']['top1']:5.1f} %")
print(f"  int8 top-1        {100 * compare['int8']['top1']:5.1f} %")
print(f"  top-1 agreement   {100 * compare['top1_agreement']:5.1f} %  (int8 predicts what float predicts)")
print("  worst layers (SQNR of int8 against float; higher is better):")
for layer in compare["layers"][:3]:
    print(f"    {layer['name']:<40} {layer['sqnr_db']:5.1f} dB  cosine {layer['cosine']:.4f}")
print(f"  speed on this CPU, batch {int8['batch']}, {int8['threads']} thread, median of {int8['iterations']} runs "
      "(p10-p90: on a busy machine they spread):")
for name, bench in (("int8", int8), ("float", float32)):
    print(f"    {name:<5} {bench['median_ms']:6.1f} ms per image ({bench['p10_ms']:.1f}-{bench['p90_ms']:.1f}), "
          f"{bench['images_per_s']:4.0f} images/s  ({bench['backend']} kernels)")
if n < 200:
    print(f"Only {n} images: one image moves top-1 by {100 / n:.1f} points; these numbers are a smoke test,")
    print("not an accuracy measurement. For one, compare on a few thousand labeled ImageNet images.")
print(f"Files: {out}/ (the drift report as a page: {out}/report.html)")
PY
