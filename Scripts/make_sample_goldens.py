#!/usr/bin/env python3
"""Pillow goldens for the sample images Scripts/setup.sh fetches when ../shared is absent, so the
real-image tests run on every machine: .cache/data/eval (foolbox 3.3.4's 20 ImageNet JPEGs) and
.cache/data/calibration (scikit-image 0.24.0's photos; PNG, 4 of them grayscale, and one JPEG).
The same oracle and formats as make_image_goldens.py (which makes the ../shared ones):

  sample.json               full transform (decode, resize 256, crop 224, normalize) of a few images
  sample-png.json           size and SHA-256 of Pillow's RGB decode of every PNG
  jpeg-sweep-sample-<folder>.tsv   file name, TAB, pixel_checksum of Pillow's RGB decode, every JPEG

Run Scripts/setup.sh on a machine WITHOUT ../shared first (or point --data at such a .cache/data).
Usage: python3 Scripts/make_sample_goldens.py [--data DIR]
"""

import argparse
import json
import os

import numpy as np
import PIL
import torch

import make_image_goldens as g

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(ROOT, ".cache", "data"))
    args = ap.parse_args()
    for folder in ["eval", "calibration"]:
        if os.path.islink(os.path.join(args.data, folder)):
            raise SystemExit(f"{args.data}/{folder} links to ../shared: run setup.sh in a clone without ../shared")
    meta = {"pillow": PIL.__version__, "torch": torch.__version__}
    eval_files = sorted(f for f in os.listdir(os.path.join(args.data, "eval")) if f.endswith(".jpg"))
    calibration = sorted(os.listdir(os.path.join(args.data, "calibration")))
    # Two upsampled JPEGs (shorter side < 256), a downsampled RGB PNG, a grayscale PNG, a JPEG photo.
    picks = [f"eval/{f}" for f in eval_files[:2]] + ["calibration/chelsea.png", "calibration/camera.png",
                                                       "calibration/rocket.jpg"]
    images = []
    for rel in picks:
        im = g.rgb_bytes(os.path.join(args.data, rel))
        images.append({"file": rel, "decoded": g.describe(im), **g.describe_transform(im)})
    g.write_json("sample.json", {"generator": meta, "images": images})
    pngs = {}
    for f in calibration:
        if f.endswith(".png"):
            im = g.rgb_bytes(os.path.join(args.data, "calibration", f))
            pngs[f] = {"width": im.size[0], "height": im.size[1], "sha256": g.sha256(np.asarray(im).tobytes())}
    g.write_json("sample-png.json", {"generator": meta, "images": pngs})
    for folder in ["eval", "calibration"]:
        d = os.path.join(args.data, folder)
        lines = [f"{f}\t{g.pixel_checksum(np.asarray(g.rgb_bytes(os.path.join(d, f))).tobytes())}"
                 for f in sorted(os.listdir(d)) if f.lower().endswith((".jpg", ".jpeg"))]
        with open(os.path.join(g.FIXTURES, f"jpeg-sweep-sample-{folder}.tsv"), "w") as out:
            out.write("\n".join(lines) + "\n")
    print("wrote sample.json, sample-png.json, jpeg-sweep-sample-{eval,calibration}.tsv in", g.FIXTURES)


if __name__ == "__main__":
    main()
