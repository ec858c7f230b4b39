#!/usr/bin/env bash
# Soak test of `octet eval`: a folder of N images (default 5000) made of symlinks that reuse
# ../shared/data/imagenet-val-1300, with a few unreadable files in the middle (a truncated JPEG, a
# text file, an empty file, a PNG cut short). Runs eval under /usr/bin/time -v and prints the peak
# resident set, the time, and the images eval reported as unreadable.
#
#   Scripts/soak_eval.sh [MODEL] [N] [extra eval options, e.g. --limit 200]
#
# MODEL defaults to .cache/soak/lite0.safetensors, imported from EfficientNet-Lite0 when missing. The
# folder is /tmp/octet-soak-N. Builds the release binary first.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
shared="$(cd .. && pwd)/shared"
val="$shared/data/imagenet-val-1300"
model="${1:-}"
count="${2:-5000}"
shift $(( $# > 2 ? 2 : $# ))
scratch="${OCTET_SCRATCH:-.build}"
swift build -c release --scratch-path "$scratch" --product octet
octet="$(swift build -c release --scratch-path "$scratch" --show-bin-path)/octet"

if [ -z "$model" ]; then
  model=.cache/soak/lite0.safetensors
  mkdir -p .cache/soak
  [ -f "$model" ] || "$octet" import "$shared/models/efficientnet-lite0-57934424.pth" -o "$model"
fi

folder="/tmp/octet-soak-$count"
rm -rf "$folder"
mkdir -p "$folder"
mapfile -t lines < "$val/labels.tsv"
n=${#lines[@]}
: > "$folder/labels.tsv"
for ((i = 0; i < count; i++)); do
  IFS=$'\t' read -r file label <<< "${lines[i % n]}"
  printf -v name "soak_%05d_%s" "$i" "$file"
  ln -s "$val/$file" "$folder/$name"
  printf '%s\t%s\n' "$name" "$label" >> "$folder/labels.tsv"
  # Unreadable files in the middle, listed like any other image.
  if (( i == count / 3 )); then
    head -c 4000 "$val/$file" > "$folder/bad_truncated.JPEG"
    echo "not an image" > "$folder/bad_text.JPEG"
    : > "$folder/bad_empty.JPEG"
    png=$(ls "$shared"/data/imagenet-train-png-*/*.png 2>/dev/null | head -1 || true)
    if [ -n "$png" ]; then head -c 2000 "$png" > "$folder/bad_cut.png"; else printf '\x89PNG\r\n\x1a\n' > "$folder/bad_cut.png"; fi
    printf 'bad_truncated.JPEG\t1\nbad_text.JPEG\t2\nbad_empty.JPEG\t3\nbad_cut.png\t4\n' >> "$folder/labels.tsv"
  fi
done
echo "folder: $folder ($(wc -l < "$folder/labels.tsv") entries, 4 unreadable)"

json="$folder/eval.json"
if ! /usr/bin/time -v "$octet" eval "$model" --images "$folder" --json "$json" "$@" 2> "$folder/stderr.txt" | tee "$folder/stdout.txt"; then
  cat "$folder/stderr.txt"
  exit 1
fi
grep '^warning' "$folder/stderr.txt" || true
peak_kb=$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$folder/stderr.txt")
wall=$(sed -n 's/^[[:space:]]*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$folder/stderr.txt")
echo "peak RSS: $((peak_kb / 1024)) MB ($peak_kb kB), wall time $wall"
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('report: count', r['count'], 'top1', r['top1'], 'unreadable', [u['image'].rsplit('/',1)[-1] for u in r['unreadable']])" "$json"
