#!/usr/bin/env python3
"""ResNet50 in torch.nn.functional: "torch's logits" for Octet's ResNet50 golden.

Octet's float executor must reach cosine >= 0.999 against these logits. The network is written
here with torch.nn.functional over the raw state_dict (torchvision is not installed, and a
second, hand-written graph is a better witness than a library we would trust blindly). The
NumPy float64 ResNet50 in reference_numpy.py is run on the same inputs as a cross-check of
this script; the result is recorded in the golden.

Both sides share reference_numpy.preprocess, so the cross-check isolates the network.

Usage:
    python3 Scripts/reference_torch_resnet50.py                 # writes the golden
    python3 Scripts/reference_torch_resnet50.py --model resnet50-0676ba61.pth --output /tmp/x.json
    python3 Scripts/reference_torch_resnet50.py --sample-data .cache/data   # without ../shared: the
        # seeded .cache/models/resnet50-seeded.pth on the sample images -> resnet50_seeded_sample.json
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_numpy as ref  # noqa: E402

BN_EPS = 1e-5
LAYERS = [(3, 1), (4, 2), (6, 2), (3, 2)]  # (blocks, stride of the first block) per layer


def bn(x, sd, prefix):
    return F.batch_norm(
        x, sd[prefix + ".running_mean"], sd[prefix + ".running_var"],
        sd[prefix + ".weight"], sd[prefix + ".bias"], training=False, eps=BN_EPS,
    )


def bottleneck(x, sd, p, stride):
    # torchvision "v1.5": the stride is on the 3x3 conv, not on the first 1x1.
    out = F.relu(bn(F.conv2d(x, sd[p + "conv1.weight"]), sd, p + "bn1"))
    out = F.relu(bn(F.conv2d(out, sd[p + "conv2.weight"], stride=stride, padding=1), sd, p + "bn2"))
    out = bn(F.conv2d(out, sd[p + "conv3.weight"]), sd, p + "bn3")
    if p + "downsample.0.weight" in sd:
        x = bn(F.conv2d(x, sd[p + "downsample.0.weight"], stride=stride), sd, p + "downsample.1")
    return F.relu(out + x)


@torch.no_grad()
def resnet50(sd, x):
    """x: [N,3,224,224] float32 NCHW, ImageNet-normalized. Returns [N,1000] logits."""
    x = F.relu(bn(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), sd, "bn1"))
    x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
    for li, (nblocks, stride) in enumerate(LAYERS, start=1):
        for b in range(nblocks):
            x = bottleneck(x, sd, f"layer{li}.{b}.", stride if b == 0 else 1)
    x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
    return F.linear(x, sd["fc.weight"], sd["fc.bias"])


def cosine(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=ref.DEFAULT_SHARED)
    ap.add_argument("--model", help="checkpoint (default SHARED/models/" + ref.RESNET50_FILE + ")")
    ap.add_argument("--output")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--sample-data", metavar="DIR", help="the sample images of Scripts/setup.sh without ../shared "
                    "(a .cache/data): golden of the seeded ResNet50 (Scripts/make_resnet50_seeded.py) on them")
    args = ap.parse_args()

    if args.sample_data:
        data_root = args.sample_data
        model_path = args.model or os.path.join(os.path.dirname(data_root), "models", "resnet50-seeded.pth")
        output = args.output or os.path.join(ref.DEFAULT_GOLDENS, "resnet50_seeded_sample.json")
        images = ref.sample_golden_images(data_root)
        note = ("seeded random weights, data-free BN statistics (Scripts/make_resnet50_seeded.py): the "
                "predictions are meaningless, compare logits (cosine), never accuracy")
    else:
        data_root = os.path.join(args.shared, "data")
        model_path = args.model or os.path.join(args.shared, "models", ref.RESNET50_FILE)
        output = args.output or os.path.join(ref.DEFAULT_GOLDENS, "resnet50_random_bnstats_val.json")
        images = ref.golden_images(data_root)
        note = ("random weights with re-estimated BN statistics: the predictions are meaningless, "
                "compare logits (cosine), never accuracy")
    sd = {k: v.float() for k, v in torch.load(model_path, map_location="cpu", weights_only=True).items()
          if not k.endswith("num_batches_tracked")}

    xs, infos = zip(*(ref.preprocess(os.path.join(data_root, rel), ref.IMAGENET_MEAN, ref.IMAGENET_STD) for rel, _ in images))
    x_nhwc = np.stack(xs)
    # float32 input, as torchvision's ToTensor/Normalize would hand it to the model.
    x = torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2).astype(np.float32).copy())
    torch_logits = resnet50(sd, x).numpy()

    numpy_logits = ref.resnet50_forward(ref.load_state_dict(model_path), x_nhwc)
    max_abs = float(np.abs(torch_logits - numpy_logits).max())
    cosines = [cosine(t.astype(np.float64), n) for t, n in zip(torch_logits, numpy_logits)]
    scale = float(np.abs(numpy_logits).max())
    agree = sum(ref.top_k(t, 1) == ref.top_k(n, 1) for t, n in zip(torch_logits, numpy_logits))
    for (rel, _), t, c in zip(images, torch_logits, cosines):
        print(f"{rel}: top5 {ref.top_k(t, 5)} cosine(torch, numpy) {c:.9f}")
    print(f"torch float32 vs NumPy float64: max |diff| {max_abs:.3g} (max |logit| {scale:.3g}), "
          f"min cosine {min(cosines):.9f}, top-1 agree {agree}/{len(images)}")
    if min(cosines) < 0.99999:
        raise SystemExit("torch and NumPy ResNet50 disagree: fix one of them before writing a golden")

    if args.no_write:
        return
    ref.write_json_atomic(output, {
        "model": os.path.basename(model_path),
        "sha256": ref.sha256_of(model_path),
        "note": note,
        "preprocessing": ref.preprocessing_spec(ref.IMAGENET_MEAN, ref.IMAGENET_STD),
        "source": "Scripts/reference_torch_resnet50.py (torch.nn.functional, float32, CPU, torch "
                  + torch.__version__ + ")",
        "cross_check": {
            "against": "Scripts/reference_numpy.py resnet50_forward (float64), same inputs",
            "numpy_max_abs_diff": float(f"{max_abs:.3g}"),
            "max_abs_logit": float(f"{scale:.6g}"),
            "min_cosine": float(f"{min(cosines):.12f}"),
        },
        "images_root": (".cache/data" if args.sample_data else "../shared/data") + " (relative to the repository root)",
        "images": ref.golden_entries(data_root, images, torch_logits.astype(np.float64), infos),
    })
    print("wrote", output)


if __name__ == "__main__":
    main()
