#!/usr/bin/env python3
"""Exports the two real models to ONNX with torch.onnx (opset 17), for the local ONNX import check.

Not used by CI (torch and torchvision stay out of it). The check: import each .onnx with
`octet import`, import the same checkpoint with `octet import`, and compare top-1 image for image
(`octet eval --json` on both). Usage:

    python3 Scripts/export_onnx_torch.py --lite0 ../shared/models/efficientnet-lite0-57934424.pth \
        --resnet50 ../shared/models/resnet50-random-bnstats.pth --out /tmp/onnx-real

EfficientNet-Lite0 is written here as an nn.Module over the checkpoint's names (no package ships
its code): TensorFlow "same" padding is an explicit F.pad before each convolution, which torch.onnx
exports as Pad + Conv. ResNet50 is torchvision's own module (torchvision is a local install only).
"""

from __future__ import annotations

import argparse
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

STAGE_STRIDES = [1, 2, 2, 2, 1, 2, 1]


class SameConv(nn.Conv2d):
    """The padding is computed on a first eager call and then frozen, so the export holds a Pad with
    constant pads rather than the shape arithmetic that tracing records."""

    pads = None

    def forward(self, x):
        if self.pads is not None:
            if any(self.pads):
                x = F.pad(x, self.pads)
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        ih, iw = (int(v) for v in x.shape[-2:])
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        self.pads = [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2]
        if any(self.pads):
            x = F.pad(x, self.pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def conv(sd, name, stride=1, groups=1):
    w = sd[name + ".weight"]
    c = SameConv(w.shape[1] * groups, w.shape[0], w.shape[2], stride=stride, groups=groups, bias=False)
    c.weight.data.copy_(w)
    return c


def bn(sd, name):
    w = sd[name + ".weight"]
    b = nn.BatchNorm2d(w.shape[0], eps=1e-3)
    for k in ["weight", "bias", "running_mean", "running_var"]:
        getattr(b, k).data.copy_(sd[f"{name}.{k}"])
    return b


class Lite(nn.Module):
    def __init__(self, sd):
        super().__init__()
        self.stem = nn.Sequential(conv(sd, "_conv_stem", 2), bn(sd, "_bn0"), nn.ReLU6())
        count = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("_blocks."))
        blocks, cin, stage = [], sd["_conv_stem.weight"].shape[0], -1
        for i in range(count):
            p = f"_blocks.{i}"
            mid = sd[p + "._depthwise_conv.weight"].shape[0]
            out = sd[p + "._project_conv.weight"].shape[0]
            first = out != cin or i == 0
            if first:
                stage += 1
            stride = STAGE_STRIDES[stage] if first else 1
            layers = []
            if p + "._expand_conv.weight" in sd:
                layers += [conv(sd, p + "._expand_conv"), bn(sd, p + "._bn0"), nn.ReLU6()]
            layers += [conv(sd, p + "._depthwise_conv", stride, mid), bn(sd, p + "._bn1"), nn.ReLU6()]
            layers += [conv(sd, p + "._project_conv"), bn(sd, p + "._bn2")]
            blocks.append((nn.Sequential(*layers), stride == 1 and cin == out))
            cin = out
        self.blocks = nn.ModuleList([b for b, _ in blocks])
        self.residual = [r for _, r in blocks]
        self.head = nn.Sequential(conv(sd, "_conv_head"), bn(sd, "_bn1"), nn.ReLU6())
        self.fc = nn.Linear(sd["_fc.weight"].shape[1], sd["_fc.weight"].shape[0])
        self.fc.weight.data.copy_(sd["_fc.weight"])
        self.fc.bias.data.copy_(sd["_fc.bias"])

    def forward(self, x):
        x = self.stem(x)
        for block, residual in zip(self.blocks, self.residual):
            x = block(x) + x if residual else block(x)
        x = self.head(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def export(model, path, opset, fold=False):
    model.eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        model(x)  # freezes SameConv's pads
    torch.onnx.export(
        model, (x,), path, opset_version=opset, input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    if fold:
        # torch.onnx records F.pad's pads as a chain of shape operators over constants; ONNX
        # Runtime's basic level folds them (and nothing past standard ONNX operators), as onnxsim would.
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = path
        ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    print("wrote", path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lite0")
    ap.add_argument("--resnet50")
    ap.add_argument("--out", required=True)
    ap.add_argument("--opset", type=int, default=17)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(1)
    if a.lite0:
        sd = torch.load(a.lite0, map_location="cpu", weights_only=True)
        export(Lite(sd), os.path.join(a.out, "efficientnet-lite0.onnx"), a.opset, fold=True)
    if a.resnet50:
        import torchvision

        m = torchvision.models.resnet50(weights=None)
        m.load_state_dict(torch.load(a.resnet50, map_location="cpu", weights_only=True))
        export(m, os.path.join(a.out, "resnet50.onnx"), a.opset)


if __name__ == "__main__":
    main()
