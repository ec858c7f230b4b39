#!/usr/bin/env python3
"""torchvision's ResNet family and MobileNetV2 against Octet: seeded checkpoints and torch logits.

Needs torch and torchvision (local checks only: CI has neither, and the committed fixtures this
writes are read by the Swift tests without them).

Two jobs:

  --fixtures DIR   (default Tests/OctetModelsTests/Fixtures/torchvision) small models in torchvision's
                   own layout, built from torchvision's own block classes (BasicBlock, Bottleneck,
                   InvertedResidual; MobileNetV2 itself at width 0.25) at reduced widths, each saved
                   by torch.save(state_dict) as NAME.pth, with NAME.json: two seeded NHWC 32x32
                   inputs and torch's logits for them. Tests/OctetModelsTests/TorchvisionFixtureTests
                   and Tests/OctetInt8Tests/TorchvisionBitExactTests read them.

  --check DIR      every full-size member (resnet18 … mobilenet_v2) with seeded random weights:
                   BatchNorm scales and shifts drawn from a seed, then its running statistics
                   estimated on --calibration images (as ../shared/models/resnet50-random-bnstats.pth
                   was made), so activations have realistic ranges. Writes DIR/NAME.pth and
                   DIR/NAME.logits.json (torch's logits on --count images of --images, preprocessed
                   as reference_numpy.preprocess does, which is what Octet does); with --octet BIN
                   also imports each checkpoint, classifies the same images with Octet's float
                   executor and prints the cosine of the logits, image by image.

Usage:
    python3 Scripts/make_torchvision_fixtures.py --fixtures Tests/OctetModelsTests/Fixtures/torchvision
    python3 Scripts/make_torchvision_fixtures.py --check /tmp/tv --octet .build/release/octet \\
        --images ../shared/data/imagenet-val-1300 --calibration ../shared/data/imagenet-train-calibration-500

torchvision's compiled operators (nms, roi_align, …) need a torch built alongside it; the models
here are plain Python, so a torchvision whose operators fail to register against the installed
torch is tolerated (the registration is skipped).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch
import torch.library
from torch import nn

_register_fake = torch.library.register_fake


def _lenient_register_fake(name, *args, **kwargs):
    decorator = _register_fake(name, *args, **kwargs)

    def apply(fn):
        try:
            return decorator(fn)
        except RuntimeError:
            return fn

    return apply


torch.library.register_fake = _lenient_register_fake
import torchvision  # noqa: E402
from torchvision.models.mobilenetv2 import MobileNetV2  # noqa: E402
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet  # noqa: E402

torch.library.register_fake = _register_fake

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
MEMBERS = [
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "wide_resnet50_2", "mobilenet_v2",
]


class NarrowResNet(ResNet):
    """torchvision's ResNet with every width chosen (torchvision fixes the stem at 64 and the
    layers at 64, 128, 256, 512): same module names, same blocks, same forward."""

    def __init__(self, block, layers, planes, num_classes, groups=1, width_per_group=64):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = planes[0]
        self.dilation = 1
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, planes[0], layers[0])
        self.layer2 = self._make_layer(block, planes[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, planes[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, planes[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(planes[3] * block.expansion, num_classes)


def randomize_batchnorm(model: nn.Module, generator: torch.Generator) -> None:
    """Scales, shifts and running statistics that are not the identity, so folding BN is tested."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=generator))
                m.bias.copy_(0.2 * torch.randn(c, generator=generator))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=generator))
                m.running_var.copy_(0.5 + torch.rand(c, generator=generator))


def estimate_batchnorm(model: nn.Module, batches: list[torch.Tensor]) -> None:
    """Running statistics as the cumulative average over the batches (momentum None)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    model.eval()


def nhwc_inputs(seed: int, count: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-2.0, 2.0, size=(count, size, size, 3)).astype(np.float32)


def tiny_models() -> dict[str, nn.Module]:
    torch.manual_seed(20261204)
    return {
        # BasicBlock, 2 blocks in layer1 (no downsample there: same width, stride 1).
        "tiny_resnet_basic": NarrowResNet(BasicBlock, [2, 1, 1, 1], [8, 16, 24, 32], num_classes=10),
        # Bottleneck with a deeper layer2.
        "tiny_resnet_bottleneck": NarrowResNet(Bottleneck, [1, 2, 1, 1], [8, 16, 16, 24], num_classes=7),
        # ResNeXt: 4 groups in every 3x3 (2, 4, 8, 16 channels per group).
        "tiny_resnext": NarrowResNet(
            Bottleneck, [1, 1, 1, 1], [8, 16, 32, 64], num_classes=10, groups=4, width_per_group=16),
        # torchvision's own MobileNetV2 at width 0.25 (stages 1 and 2 both 8 wide).
        "tiny_mobilenet_v2": MobileNetV2(num_classes=10, width_mult=0.25),
    }


def write_fixtures(out: str) -> None:
    os.makedirs(out, exist_ok=True)
    generator = torch.Generator().manual_seed(7)
    for i, (name, model) in enumerate(tiny_models().items()):
        randomize_batchnorm(model, generator)
        # Statistics from seeded inputs, so every layer sees values of a sensible range.
        estimate_batchnorm(model, [torch.from_numpy(nhwc_inputs(100 + i, 16, 32)).permute(0, 3, 1, 2)])
        x = nhwc_inputs(200 + i, 2, 32)
        with torch.no_grad():
            logits = model(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()).numpy()
        state = {k: v for k, v in model.state_dict().items()}
        torch.save(state, os.path.join(out, name + ".pth"))
        golden = {
            "comment": "written by Scripts/make_torchvision_fixtures.py --fixtures; torch "
            + torch.__version__ + ", torchvision " + torchvision.__version__,
            "input_size": 32,
            "inputs_nhwc": [[round(float(v), 7) for v in row.reshape(-1)] for row in x],
            "logits": [[float(v) for v in row] for row in logits],
        }
        with open(os.path.join(out, name + ".json"), "w") as f:
            json.dump(golden, f)
        params = sum(v.numel() for v in state.values())
        print(f"{name}: {params} values, logits[0][:3] {logits[0][:3]}")


def list_images(folder: str, count: int) -> list[str]:
    with open(os.path.join(folder, "labels.tsv")) as f:
        names = [line.split("\t")[0] for line in f if line.strip()]
    return [os.path.join(folder, n) for n in names[:count]]


def preprocessed(paths: list[str]) -> torch.Tensor:
    import reference_numpy as ref

    arrays = [ref.preprocess(p, MEAN, STD)[0].astype(np.float32) for p in paths]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def check(out: str, images: str, calibration: str, count: int, octet: str | None, members: list[str]) -> None:
    os.makedirs(out, exist_ok=True)
    paths = list_images(images, count)
    x = preprocessed(paths)
    calib = preprocessed(list_images(calibration, 32))
    batches = [calib[i:i + 8] for i in range(0, len(calib), 8)]
    summary = {}
    for i, name in enumerate(members):
        torch.manual_seed(1000 + i)
        model = getattr(torchvision.models, name)(weights=None, num_classes=1000 if i % 2 == 0 else 10)
        randomize_batchnorm(model, torch.Generator().manual_seed(2000 + i))
        estimate_batchnorm(model, batches)
        with torch.no_grad():
            logits = model(x).numpy().astype(np.float64)
        pth = os.path.join(out, name + ".pth")
        torch.save(model.state_dict(), pth)
        with open(os.path.join(out, name + ".logits.json"), "w") as f:
            json.dump({"images": paths, "logits": logits.tolist()}, f)
        line = f"{name}: {logits.shape[1]} classes"
        if octet:
            model_file = os.path.join(out, name + ".safetensors")
            subprocess.run([octet, "import", pth, "-o", model_file], check=True, stdout=subprocess.DEVNULL)
            result = os.path.join(out, name + ".octet.json")
            subprocess.run([octet, "classify", model_file, *paths, "--json", result], check=True,
                           stdout=subprocess.DEVNULL)
            with open(result) as f:
                ours = np.array([r["logits"] for r in json.load(f)["results"]], dtype=np.float64)
            cos = [float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in zip(ours, logits)]
            top = [int(a.argmax() == b.argmax()) for a, b in zip(ours, logits)]
            line += f", cosine min {min(cos):.7f} mean {np.mean(cos):.7f}, same top-1 {sum(top)}/{len(top)}"
            summary[name] = {"cosine_min": min(cos), "cosine_mean": float(np.mean(cos)), "top1_same": sum(top),
                             "images": len(top)}
        print(line, flush=True)
    if summary:
        with open(os.path.join(out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixtures", metavar="DIR")
    parser.add_argument("--check", metavar="DIR")
    parser.add_argument("--images", default="../shared/data/imagenet-val-1300")
    parser.add_argument("--calibration", default="../shared/data/imagenet-train-calibration-500")
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--octet", help="the octet binary, to import and classify with it")
    parser.add_argument("--members", default=",".join(MEMBERS))
    args = parser.parse_args()
    if not args.fixtures and not args.check:
        parser.error("give --fixtures DIR or --check DIR")
    if args.fixtures:
        write_fixtures(args.fixtures)
    if args.check:
        check(args.check, args.images, args.calibration, args.count, args.octet, args.members.split(","))


if __name__ == "__main__":
    main()
