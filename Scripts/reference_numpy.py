#!/usr/bin/env python3
"""Independent NumPy reference for Octet's float goldens (EfficientNet-Lite0 and ResNet50).

Everything here is float64: the goldens should be closer to the exact math than any float32
implementation we compare against (Octet, torch), so the golden itself never eats into a
tolerance. Layout is NHWC like Octet, so a mismatch in a layout conversion shows up in the
comparison instead of being shared by both sides.

torch is used only to read the .pth files (``torch.load(..., weights_only=True)``); no torch
op touches the data. The architectures are written from their published definitions.

Usage:
    python3 Scripts/reference_numpy.py efficientnet-lite0      # eval on 1300 images + goldens
    python3 Scripts/reference_numpy.py efficientnet-lite0 --limit 100 --no-write
    python3 Scripts/reference_numpy.py resnet50                # print logits summary of goldens
    python3 Scripts/reference_numpy.py show-state-dict MODEL.pth

Goldens for ResNet50 are written by Scripts/reference_torch_resnet50.py, which imports this
module for the preprocessing and the NumPy cross-check.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time

import numpy as np
from PIL import Image

DTYPE = np.float64

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SHARED = os.environ.get("OCTET_SHARED", os.path.join(os.path.dirname(REPO_ROOT), "shared"))
DEFAULT_GOLDENS = os.path.join(REPO_ROOT, "Tests", "OctetFloatTests", "Goldens")

EFFICIENTNET_LITE0_FILE = "efficientnet-lite0-57934424.pth"
RESNET50_FILE = "resnet50-random-bnstats.pth"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)
RESIZE_SHORTER = 256
CROP = 224


# ---------------------------------------------------------------------------------------------
# Checkpoints


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_state_dict(path: str) -> dict[str, np.ndarray]:
    """Reads a .pth (zip or legacy pickle) into float64 NumPy arrays; drops BN step counters."""
    import torch  # only as a file reader

    sd = torch.load(path, map_location="cpu", weights_only=True)
    return {
        k: v.detach().numpy().astype(DTYPE)
        for k, v in sd.items()
        if not k.endswith("num_batches_tracked")
    }


# ---------------------------------------------------------------------------------------------
# Preprocessing: torchvision's Resize(256) + CenterCrop(224) + ToTensor + Normalize on a PIL
# image, re-derived so that Octet's Swift port has one readable spec to follow.


def resized_size(w: int, h: int, shorter: int = RESIZE_SHORTER) -> tuple[int, int]:
    """torchvision's _compute_resized_output_size: the long side is truncated, not rounded."""
    if w <= h:
        return shorter, int(shorter * h / w)
    return int(shorter * w / h), shorter


def center_crop_box(w: int, h: int, crop: int = CROP) -> tuple[int, int, int, int]:
    """(left, top, right, bottom). torchvision uses Python's round(), which rounds half to
    even: an odd margin such as (341-224)/2 = 58.5 gives 58, not 59."""
    left = int(round((w - crop) / 2.0))
    top = int(round((h - crop) / 2.0))
    return left, top, left + crop, top + crop


def load_rgb(path: str) -> Image.Image:
    # torchvision's default loader converts every image (grayscale, palette, RGBA) to RGB
    # before any transform; grayscale becomes three equal channels.
    with open(path, "rb") as f:
        img = Image.open(f)
        return img.convert("RGB")


def preprocess(path: str, mean, std) -> tuple[np.ndarray, dict]:
    """Returns a [224, 224, 3] float64 HWC array and a dict describing the geometry."""
    img = load_rgb(path)
    w, h = img.size
    nw, nh = resized_size(w, h)
    # torchvision skips the resize when the size would not change; PIL would return an
    # identical copy anyway, so both readings agree.
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.BILINEAR)
    box = center_crop_box(nw, nh)
    img = img.crop(box)
    x = np.asarray(img, dtype=np.uint8).astype(DTYPE) / 255.0
    x = (x - np.asarray(mean, DTYPE)) / np.asarray(std, DTYPE)
    info = {"original_size": [w, h], "resized_size": [nw, nh], "crop_box": list(box)}
    return x, info


def preprocessing_spec(mean, std) -> dict:
    """The contract written into every golden file, so the Swift side can check itself."""
    return {
        "decode": "PIL (libjpeg-turbo, default ISLOW DCT and fancy upsampling; libpng), "
        "then Image.convert('RGB'): grayscale is replicated to 3 channels",
        "resize_shorter": RESIZE_SHORTER,
        "resize": "shorter side to 256, longer side int(256*long/short) (truncated); "
        "PIL Image.resize BILINEAR (antialiased: support scales with the factor when "
        "downsampling); no resize when the size is unchanged",
        "crop": CROP,
        "crop_offset": "left = int(round((w-224)/2)), top = int(round((h-224)/2)) with "
        "Python round (half to even)",
        "scale": "uint8 / 255",
        "mean": list(mean),
        "std": list(std),
        "model_input": "RGB, 1x3x224x224 NCHW for the torch models (Octet feeds the same "
        "values as 1x224x224x3 NHWC)",
    }


# ---------------------------------------------------------------------------------------------
# Ops, NHWC float64. Written for clarity; im2col + one matmul per convolution.


def pad_nhwc(x, top, bottom, left, right, value=0.0):
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def tf_same_pads(size: int, k: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME': output = ceil(in/stride), and the odd pixel of padding goes to the
    bottom/right. This is what EfficientNet-Lite was trained with; PyTorch's symmetric k//2
    differs whenever stride is 2 and the input size is even."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def symmetric_pads(size: int, k: int, stride: int) -> tuple[int, int]:
    return k // 2, k // 2


def _windows(x, kh, kw, stride):
    """Yields (i, j, strided slice) for every kernel tap over an already padded input."""
    n, h, w, c = x.shape
    ho = (h - kh) // stride + 1
    wo = (w - kw) // stride + 1
    for i in range(kh):
        for j in range(kw):
            yield i, j, x[:, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride, :]


def conv2d(x, weight, stride=1, pads=(0, 0, 0, 0), bias=None):
    """x: [N,H,W,Cin]; weight: torch layout [Cout,Cin,kh,kw]; pads: (top,bottom,left,right)."""
    cout, cin, kh, kw = weight.shape
    x = pad_nhwc(x, *pads)
    if kh == 1 and kw == 1:
        cols = x[:, ::stride, ::stride, :]
    else:
        # Patch channels ordered (kh, kw, cin) to match the weight transpose below.
        cols = np.concatenate([s for _, _, s in _windows(x, kh, kw, stride)], axis=3)
    n, ho, wo, k = cols.shape
    wmat = weight.transpose(2, 3, 1, 0).reshape(kh * kw * cin, cout)
    y = (cols.reshape(-1, k) @ wmat).reshape(n, ho, wo, cout)
    if bias is not None:
        y = y + bias
    return y


def depthwise_conv2d(x, weight, stride=1, pads=(0, 0, 0, 0)):
    """weight: [C,1,kh,kw] (torch groups=C layout)."""
    c, _, kh, kw = weight.shape
    x = pad_nhwc(x, *pads)
    y = None
    for i, j, s in _windows(x, kh, kw, stride):
        term = s * weight[:, 0, i, j]
        y = term if y is None else y + term
    return y


def batch_norm(x, sd, prefix, eps):
    scale = sd[prefix + ".weight"] / np.sqrt(sd[prefix + ".running_var"] + eps)
    return (x - sd[prefix + ".running_mean"]) * scale + sd[prefix + ".bias"]


def relu(x):
    return np.maximum(x, 0.0)


def relu6(x):
    return np.clip(x, 0.0, 6.0)


def max_pool(x, k=3, stride=2, pad=1):
    # -inf padding: padded taps never win, as in torch's MaxPool2d.
    x = pad_nhwc(x, pad, pad, pad, pad, value=-np.inf)
    y = None
    for _, _, s in _windows(x, k, k, stride):
        y = s if y is None else np.maximum(y, s)
    return y


def global_avg_pool(x):
    return x.mean(axis=(1, 2))


def linear(x, sd, prefix):
    return x @ sd[prefix + ".weight"].T + sd[prefix + ".bias"]


# ---------------------------------------------------------------------------------------------
# EfficientNet-Lite0


# (expand ratio, kernel, stride, output channels, repeats): EfficientNet-B0's stage table.
# Lite0 keeps it but drops squeeze-excite, uses ReLU6 and fixes stem (32) and head (1280).
LITE0_STAGES = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
]
LITE_BN_EPS = 1e-3


def efficientnet_lite0_blocks(stem_channels=32):
    """Expands the stage table into one (expand, kernel, stride, cin, cout) per block; only
    a stage's first block strides or changes the channel count."""
    blocks = []
    cin = stem_channels
    for expand, k, stride, cout, repeats in LITE0_STAGES:
        for r in range(repeats):
            blocks.append((expand, k, stride if r == 0 else 1, cin, cout))
            cin = cout
    return blocks


def check_efficientnet_lite0_state_dict(sd):
    """Fails loudly if the checkpoint does not have the architecture this file assumes."""
    blocks = efficientnet_lite0_blocks()
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    for b, (expand, k, _, cin, cout) in enumerate(blocks):
        p = f"_blocks.{b}."
        mid = cin * expand
        if expand != 1:
            assert sd[p + "_expand_conv.weight"].shape == (mid, cin, 1, 1), p
        else:
            assert p + "_expand_conv.weight" not in sd, p
        assert sd[p + "_depthwise_conv.weight"].shape == (mid, 1, k, k), p
        assert sd[p + "_project_conv.weight"].shape == (cout, mid, 1, 1), p
    assert f"_blocks.{len(blocks)}._depthwise_conv.weight" not in sd
    assert sd["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert sd["_fc.weight"].shape == (1000, 1280)
    # No convolution has a bias: every one is followed by BatchNorm.
    assert not any("conv" in k and k.endswith(".bias") for k in sd)


def efficientnet_lite0_forward(sd, x, padding="tf-same", eps=LITE_BN_EPS):
    """x: [N,224,224,3] normalized with mean = std = 0.5. Returns [N,1000] logits."""
    pads_for = tf_same_pads if padding == "tf-same" else symmetric_pads

    def conv_pads(x, k, stride):
        return pads_for(x.shape[1], k, stride) + pads_for(x.shape[2], k, stride)

    x = conv2d(x, sd["_conv_stem.weight"], 2, conv_pads(x, 3, 2))
    x = relu6(batch_norm(x, sd, "_bn0", eps))
    for b, (expand, k, stride, cin, cout) in enumerate(efficientnet_lite0_blocks()):
        p = f"_blocks.{b}."
        inp = x
        if expand != 1:
            x = relu6(batch_norm(conv2d(x, sd[p + "_expand_conv.weight"]), sd, p + "_bn0", eps))
        x = depthwise_conv2d(x, sd[p + "_depthwise_conv.weight"], stride, conv_pads(x, k, stride))
        x = relu6(batch_norm(x, sd, p + "_bn1", eps))
        x = batch_norm(conv2d(x, sd[p + "_project_conv.weight"]), sd, p + "_bn2", eps)
        if stride == 1 and cin == cout:
            x = x + inp  # no activation after the add (linear bottleneck)
    x = relu6(batch_norm(conv2d(x, sd["_conv_head.weight"]), sd, "_bn1", eps))
    return linear(global_avg_pool(x), sd, "_fc")


# ---------------------------------------------------------------------------------------------
# ResNet50, torchvision layout ("v1.5": the stride sits on the 3x3 conv of the bottleneck).

RESNET50_LAYERS = [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]  # (width, blocks, stride)
RESNET_BN_EPS = 1e-5


def resnet50_forward(sd, x, eps=RESNET_BN_EPS):
    """x: [N,224,224,3] normalized with ImageNet mean/std. Returns [N,1000] logits."""
    x = relu(batch_norm(conv2d(x, sd["conv1.weight"], 2, (3, 3, 3, 3)), sd, "bn1", eps))
    x = max_pool(x, 3, 2, 1)
    for li, (width, nblocks, stride) in enumerate(RESNET50_LAYERS, start=1):
        for b in range(nblocks):
            p = f"layer{li}.{b}."
            s = stride if b == 0 else 1
            out = relu(batch_norm(conv2d(x, sd[p + "conv1.weight"]), sd, p + "bn1", eps))
            out = relu(batch_norm(conv2d(out, sd[p + "conv2.weight"], s, (1, 1, 1, 1)), sd, p + "bn2", eps))
            out = batch_norm(conv2d(out, sd[p + "conv3.weight"]), sd, p + "bn3", eps)
            if p + "downsample.0.weight" in sd:
                idn = batch_norm(conv2d(x, sd[p + "downsample.0.weight"], s), sd, p + "downsample.1", eps)
            else:
                idn = x
            x = relu(out + idn)
    return linear(global_avg_pool(x), sd, "fc")


# ---------------------------------------------------------------------------------------------
# Golden image selection and JSON output


def read_labels(folder: str) -> list[tuple[str, int]]:
    with open(os.path.join(folder, "labels.tsv")) as f:
        return [(name, int(label)) for name, label in (line.rstrip("\n").split("\t") for line in f if line.strip())]


def golden_images(data_root: str) -> list[tuple[str, int]]:
    """Paths relative to data_root, with labels: the first 4 validation images (227x227, an
    upsampling resize), the first 500x375 RGB calibration JPEG (downsampling, odd crop margin)
    and the first grayscale PNG (channel replication)."""
    picks = [(f"imagenet-val-1300/{n}", l) for n, l in read_labels(os.path.join(data_root, "imagenet-val-1300"))[:4]]

    def first(folder, want):
        for name, label in read_labels(os.path.join(data_root, folder)):
            with Image.open(os.path.join(data_root, folder, name)) as im:
                if want(im):
                    return f"{folder}/{name}", label
        raise SystemExit(f"no image in {folder} fits the golden selection")

    picks.append(first("imagenet-train-calibration-500", lambda im: im.size == (500, 375) and im.mode == "RGB"))
    picks.append(first("imagenet-train-png-120", lambda im: im.mode == "L"))
    return picks


def sample_golden_images(data_root: str) -> list[tuple[str, int]]:
    """The same paths on the sample images Scripts/setup.sh fetches without ../shared (data_root =
    .cache/data): the first 4 evaluation JPEGs, a downsampled RGB PNG and a grayscale PNG (the
    calibration photos have no labels: -1)."""
    picks = [(f"eval/{n}", l) for n, l in read_labels(os.path.join(data_root, "eval"))[:4]]
    return picks + [("calibration/chelsea.png", -1), ("calibration/camera.png", -1)]


def round_sig(x: float, digits: int = 6) -> float:
    return float(f"{x:.{digits}g}")


def dumps_compact(obj, indent=1) -> str:
    """JSON with one line per list of numbers: readable diffs, and a third of the size of
    json.dumps(indent=...), which puts every logit on its own line."""

    def enc(o, level):
        pad = " " * (indent * (level + 1))
        end = " " * (indent * level)
        if isinstance(o, dict):
            if not o:
                return "{}"
            items = [f"{pad}{json.dumps(k)}: {enc(v, level + 1)}" for k, v in o.items()]
            return "{\n" + ",\n".join(items) + "\n" + end + "}"
        if isinstance(o, list) and any(isinstance(v, (dict, list)) for v in o):
            return "[\n" + ",\n".join(pad + enc(v, level + 1) for v in o) + "\n" + end + "]"
        return json.dumps(o, separators=(", ", ": "))

    return enc(obj, 0) + "\n"


def write_json_atomic(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(dumps_compact(obj))
    os.replace(tmp, path)


def top_k(logits: np.ndarray, k: int) -> list[int]:
    # Stable sort so ties resolve to the lower class index, like argmax.
    return [int(i) for i in np.argsort(-logits, kind="stable")[:k]]


def golden_entries(data_root, images, logits, infos) -> list[dict]:
    return [
        {
            "file": rel,
            "label": label,
            **info,
            "top5": top_k(lg, 5),
            "logits": [round_sig(v) for v in lg],
        }
        for (rel, label), lg, info in zip(images, logits, infos)
    ]


# ---------------------------------------------------------------------------------------------
# Commands


def batches(items, size):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def cmd_efficientnet(args) -> None:
    model_path = os.path.join(args.shared, "models", EFFICIENTNET_LITE0_FILE)
    data_root = os.path.join(args.shared, "data")
    # Without ../shared: the sample images (--sample-data .cache/data) and the weights setup.sh fetched.
    sample = args.sample_data is not None
    if sample:
        data_root = args.sample_data
        model_path = os.path.join(os.path.dirname(data_root), "models", EFFICIENTNET_LITE0_FILE)
    val_folder = "eval" if sample else "imagenet-val-1300"
    name = "efficientnet_lite0_sample" if sample else "efficientnet_lite0_val"
    sd = load_state_dict(model_path)
    check_efficientnet_lite0_state_dict(sd)
    sha = sha256_of(model_path)
    prep = preprocessing_spec(LITE_MEAN, LITE_STD)
    forward = lambda x: efficientnet_lite0_forward(sd, x, padding=args.padding, eps=args.bn_eps)
    source = "Scripts/reference_numpy.py (float64)"
    variant = {"padding": args.padding, "bn_eps": args.bn_eps}

    # Goldens on a few images, including the resize and grayscale paths.
    images = sample_golden_images(data_root) if sample else golden_images(data_root)
    xs, infos = zip(*(preprocess(os.path.join(data_root, rel), LITE_MEAN, LITE_STD) for rel, _ in images))
    logits = forward(np.stack(xs))
    for (rel, label), lg in zip(images, logits):
        print(f"{rel}: label {label} top5 {top_k(lg, 5)}")
    if not args.no_write:
        os.makedirs(args.goldens, exist_ok=True)
        write_json_atomic(
            os.path.join(args.goldens, f"{name}.json"),
            {
                "model": EFFICIENTNET_LITE0_FILE,
                "sha256": sha,
                "architecture": {**variant, "activation": "relu6", "dtype": "float64"},
                "preprocessing": prep,
                "source": source,
                "images_root": (".cache/data" if sample else "../shared/data") + " (relative to the repository root)",
                "images": golden_entries(data_root, images, logits, infos),
            },
        )

    if args.skip_eval:
        return
    # Accuracy over the validation subset, image by image, in labels.tsv order.
    val = read_labels(os.path.join(data_root, val_folder))
    if args.limit:
        val = val[: args.limit]
    preds, margins, top1, top5 = [], [], 0, 0
    t0 = time.time()
    for chunk in batches(val, args.batch):
        x = np.stack([preprocess(os.path.join(data_root, val_folder, n), LITE_MEAN, LITE_STD)[0] for n, _ in chunk])
        for (_, label), lg in zip(chunk, forward(x)):
            t5 = top_k(lg, 5)
            preds.append(t5[0])
            # The margin lets a float32 implementation forgive flips on near-ties.
            margins.append(round_sig(float(lg[t5[0]] - lg[t5[1]]), 4))
            top1 += t5[0] == label
            top5 += label in t5
        print(f"  {len(preds)}/{len(val)}  top-1 {100 * top1 / len(preds):.2f}%  "
              f"top-5 {100 * top5 / len(preds):.2f}%  ({time.time() - t0:.0f} s)", flush=True)
    n = len(val)
    print(f"EfficientNet-Lite0 {variant}: top-1 {100 * top1 / n:.2f}% ({top1}/{n}), "
          f"top-5 {100 * top5 / n:.2f}% ({top5}/{n})")
    if not args.no_write and not args.limit:
        write_json_atomic(
            os.path.join(args.goldens, "efficientnet_lite0_sample_summary.json" if sample
                         else "efficientnet_lite0_val1300_summary.json"),
            {
                "model": EFFICIENTNET_LITE0_FILE,
                "sha256": sha,
                "architecture": {**variant, "activation": "relu6", "dtype": "float64"},
                "preprocessing": prep,
                "source": source,
                "images_folder": val_folder,
                "order": "labels.tsv lines; top1_predictions[i] is the class predicted for line i",
                "count": n,
                "top1": round(top1 / n, 6),
                "top5": round(top5 / n, 6),
                "top1_correct": top1,
                "top5_correct": top5,
                "top1_predictions": preds,
                "top1_margins": margins,
            },
        )


def cmd_resnet50(args) -> None:
    data_root = os.path.join(args.shared, "data")
    sd = load_state_dict(os.path.join(args.shared, "models", RESNET50_FILE))
    images = golden_images(data_root)
    x = np.stack([preprocess(os.path.join(data_root, rel), IMAGENET_MEAN, IMAGENET_STD)[0] for rel, _ in images])
    for (rel, _), lg in zip(images, resnet50_forward(sd, x)):
        print(f"{rel}: top5 {top_k(lg, 5)} logits[:4] {lg[:4]}")


def cmd_show(args) -> None:
    sd = load_state_dict(args.path)
    for k, v in sd.items():
        print(k, v.shape)
    print(len(sd), "tensors (num_batches_tracked dropped)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=DEFAULT_SHARED, help="folder with models/ and data/ (default %(default)s)")
    ap.add_argument("--goldens", default=DEFAULT_GOLDENS, help="where to write goldens (default %(default)s)")
    sub = ap.add_subparsers(dest="cmd", required=True)

    e = sub.add_parser("efficientnet-lite0", help="goldens + top-1/top-5 over imagenet-val-1300")
    # The two knobs exist to show why they matter (see Scripts/README.md), not to be changed.
    e.add_argument("--padding", choices=["tf-same", "symmetric"], default="tf-same")
    e.add_argument("--bn-eps", type=float, default=LITE_BN_EPS)
    e.add_argument("--limit", type=int, default=0, help="evaluate only the first N images (no summary written)")
    e.add_argument("--batch", type=int, default=16)
    e.add_argument("--skip-eval", action="store_true")
    e.add_argument("--no-write", action="store_true")
    e.add_argument("--sample-data", metavar="DIR", help="the sample images of Scripts/setup.sh without ../shared "
                   "(a .cache/data with eval/ and calibration/): writes efficientnet_lite0_sample*.json instead")
    e.set_defaults(func=cmd_efficientnet)

    r = sub.add_parser("resnet50", help="print NumPy ResNet50 top-5 on the golden images")
    r.set_defaults(func=cmd_resnet50)

    s = sub.add_parser("show-state-dict", help="print tensor names and shapes of a .pth")
    s.add_argument("path")
    s.set_defaults(func=cmd_show)

    args = ap.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
