#!/usr/bin/env python3
"""Float logits of `octet classify` with Winograd 3x3 convolutions (the default for inference) against
the direct convolution (OCTET_FLOAT_WINOGRAD=0) on the same images: largest difference, cosine, and
whether top-1 and the top-5 set agree. Prints one JSON object.

    python3 Scripts/winograd_vs_direct.py --octet-bin .build/release/octet --model r50.safetensors \\
        --images ../shared/data/imagenet-val-1300 --limit 300
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np


def logits(octet_bin: str, model: str, paths: list[str], winograd: bool) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "classify.json")
        env = {**os.environ, "OCTET_FLOAT_WINOGRAD": "1" if winograd else "0"}
        proc = subprocess.run([octet_bin, "classify", model, *paths, "--top", "1", "--json", out], capture_output=True,
                              text=True, env=env)
        if proc.returncode != 0:
            sys.exit(f"error: octet classify exited {proc.returncode}: {proc.stderr.strip()}")
        with open(out) as f:
            return np.asarray([r["logits"] for r in json.load(f)["results"]], dtype=np.float64)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--octet-bin", required=True)
    ap.add_argument("--model", required=True, help="a float model (.safetensors or checkpoint)")
    ap.add_argument("--images", required=True, help="a folder with labels.tsv")
    ap.add_argument("--limit", type=int, default=300)
    args = ap.parse_args()
    with open(os.path.join(args.images, "labels.tsv")) as f:
        names = [line.split("\t")[0] for line in f if line.strip()][: args.limit]
    paths = [os.path.join(args.images, n) for n in names]
    direct = logits(args.octet_bin, args.model, paths, winograd=False)
    wino = logits(args.octet_bin, args.model, paths, winograd=True)
    diff = np.abs(direct - wino)
    cos = (direct * wino).sum(1) / np.linalg.norm(direct, axis=1) / np.linalg.norm(wino, axis=1)
    top5 = lambda x: [set(r) for r in np.argsort(-x, 1)[:, :5]]
    print(json.dumps({
        "model": args.model, "images": len(paths),
        "max_abs_diff": float(diff.max()), "max_abs_logit": float(np.abs(direct).max()),
        "max_rel_diff_per_image": float((diff.max(1) / np.abs(direct).max(1)).max()),
        "min_cosine": float(cos.min()),
        "top1_same": int((direct.argmax(1) == wino.argmax(1)).sum()),
        "top5_same": int(sum(a == b for a, b in zip(top5(direct), top5(wino)))),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
