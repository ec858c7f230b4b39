#!/usr/bin/env bash
# The main job on a fresh machine: install, build (release), import EfficientNet-Lite0, evaluate its
# float top-1 on the sample images and classify two of them.
# Images: ../shared/data/imagenet-val-1300 when present, else foolbox's 20 ImageNet JPEGs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
Scripts/setup.sh
swift build -c release --product octet
octet="$(swift build -c release --show-bin-path)/octet"
shared="$(cd .. && pwd)/shared"
images="$shared/data/imagenet-val-1300"
[ -d "$images" ] || images=".cache/foolbox-imagenet"
model=.cache/efficientnet-lite0.safetensors

"$octet" import .cache/models/efficientnet-lite0-57934424.pth -o "$model"
"$octet" eval "$model" --images "$images" --json .cache/eval-efficientnet-lite0.json
first_two=$(cut -f1 "$images/labels.tsv" | head -2 | sed "s#^#$images/#")
"$octet" classify "$model" $first_two --top 3
