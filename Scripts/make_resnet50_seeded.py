#!/usr/bin/env python3
"""A data-free stand-in for ../shared/models/resnet50-random-bnstats.pth where ../shared is absent:
a torchvision-layout ResNet50 state_dict (same 320 names, shapes, dtypes and order as
`torchvision.models.resnet50().state_dict()`), saved by torch.save in the zip format like
torchvision's own resnet50-0676ba61.pth. Scripts/setup.sh runs it into .cache/models/resnet50-seeded.pth.

Its weights are random, from NumPy's seeded generator (torchvision's initialization: convolutions
He-normal with fan_out; fc uniform(+-1/sqrt(2048))); BatchNorm's scale and shift are random too
(gamma in [0.5, 1.5), beta ~ N(0, 0.1)), so folding them is not the identity. Its running
statistics are re-estimated data-free: each BatchNorm takes the mean and variance of its input over
a seeded batch of noise images, computed in float64 and rounded to 4 significant digits (so the
file is the same on every machine whatever the float summation order), which keeps every layer's
activations in realistic ranges. It is not trained: never quote its top-1.

Its spot values (Tests/OctetModelsTests/Fixtures/expected.json, --write-spots) and its torch logits
on the sample images (Scripts/reference_torch_resnet50.py --sample-data) are committed goldens.

Usage: python3 Scripts/make_resnet50_seeded.py OUT.pth [--write-spots]
"""

import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

SEED = 20261203
LAYERS = [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]  # (planes, blocks, stride of block 0)


def round_sig(a: np.ndarray, digits: int = 4) -> np.ndarray:
    return np.array([float(f"{v:.{digits}g}") for v in a.ravel()], dtype=np.float64).reshape(a.shape)


def make(rng) -> dict:
    sd = {}
    torch.set_num_threads(1)

    def conv(name, out_c, in_c, k):
        std = (2.0 / (out_c * k * k)) ** 0.5
        sd[name] = torch.from_numpy(rng.standard_normal((out_c, in_c, k, k)).astype(np.float32) * np.float32(std))

    def bn(prefix, x):
        """Adds BatchNorm `prefix` with statistics of `x` (NCHW) and returns its output."""
        c = x.shape[1]
        sd[prefix + ".weight"] = torch.from_numpy(rng.uniform(0.5, 1.5, c).astype(np.float32))
        sd[prefix + ".bias"] = torch.from_numpy((rng.standard_normal(c) * 0.1).astype(np.float32))
        mean = round_sig(x.mean(dim=(0, 2, 3)).numpy())
        var = round_sig(x.var(dim=(0, 2, 3), unbiased=False).numpy())
        sd[prefix + ".running_mean"] = torch.from_numpy(mean.astype(np.float32))
        sd[prefix + ".running_var"] = torch.from_numpy(np.maximum(var, 1e-4).astype(np.float32))
        sd[prefix + ".num_batches_tracked"] = torch.tensor(1, dtype=torch.int64)
        return F.batch_norm(x, *(sd[prefix + n].double() for n in (".running_mean", ".running_var", ".weight", ".bias")),
                            training=False, eps=1e-5)

    # Noise images with ImageNet-normalized statistics, smoothed so neighbouring pixels correlate.
    # The forward runs in float64: float32 convolutions sum in an order that depends on the CPU's
    # kernels (AVX2 or AVX-512), which moved some statistics across a 4-digit rounding boundary, so
    # the file differed between machines; in float64 the difference is ~1e-16 relative.
    x = torch.from_numpy(rng.standard_normal((4, 3, 224, 224)).astype(np.float32)).double()
    x = F.avg_pool2d(x, 5, stride=1, padding=2) * 3
    with torch.no_grad():
        conv("conv1.weight", 64, 3, 7)
        x = F.relu(bn("bn1", F.conv2d(x, sd["conv1.weight"].double(), stride=2, padding=3)))
        x = F.max_pool2d(x, 3, stride=2, padding=1)
        inplanes = 64
        for li, (planes, blocks, stride) in enumerate(LAYERS, start=1):
            for b in range(blocks):
                p = f"layer{li}.{b}."
                s = stride if b == 0 else 1
                conv(p + "conv1.weight", planes, inplanes, 1)
                out = F.relu(bn(p + "bn1", F.conv2d(x, sd[p + "conv1.weight"].double())))
                conv(p + "conv2.weight", planes, planes, 3)
                out = F.relu(bn(p + "bn2", F.conv2d(out, sd[p + "conv2.weight"].double(), stride=s, padding=1)))
                conv(p + "conv3.weight", planes * 4, planes, 1)
                out = bn(p + "bn3", F.conv2d(out, sd[p + "conv3.weight"].double()))
                if b == 0:
                    conv(p + "downsample.0.weight", planes * 4, inplanes, 1)
                    x = bn(p + "downsample.1", F.conv2d(x, sd[p + "downsample.0.weight"].double(), stride=s))
                x = F.relu(out + x)
                inplanes = planes * 4
        bound = 1 / 2048 ** 0.5
        sd["fc.weight"] = torch.from_numpy(rng.uniform(-bound, bound, (1000, 2048)).astype(np.float32))
        sd["fc.bias"] = torch.from_numpy(rng.uniform(-bound, bound, 1000).astype(np.float32))
    return sd


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--write-spots", action="store_true",
                    help="record its spot values in Tests/OctetModelsTests/Fixtures/expected.json")
    args = ap.parse_args()
    sd = make(np.random.default_rng(SEED))
    assert len(sd) == 320, len(sd)
    tmp = args.out + ".tmp"
    torch.save(sd, tmp)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: {len(sd)} tensors")
    if args.write_spots:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import make_checkpoint_fixtures as fx
        path = os.path.join(fx.OUT, "expected.json")
        expected = json.load(open(path))
        expected["real_files"]["resnet50-seeded.pth"] = fx.resnet50_spots(torch.load(args.out, weights_only=True))
        with open(path, "w") as f:
            json.dump(expected, f, indent=1)
            f.write("\n")
        print("spots written to", path)


if __name__ == "__main__":
    main()
