#!/usr/bin/env python3
"""ONNX Runtime fp32 baseline for octet-float-bench: the same ResNet50 convolution shapes (Conv +
Relu, batch 1) and a whole torchvision-style ResNet50 (random weights, BN already folded), one
intra-op thread, CPU execution provider (MLAS). Reports median and min over timed runs after
warm-up, like the Swift benchmark.

    python3 Benchmarks/ort_baseline.py [--reps 15] [--wall]
"""
import argparse
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

# (name, input size, cin, cout, kernel, stride, pad, count): mirrors resnet50Convs in main.swift.
RESNET50_CONVS = [
    ("conv1 7x7/2", 224, 3, 64, 7, 2, 3, 1),
    ("l1 1x1 64>64", 56, 64, 64, 1, 1, 0, 1),
    ("l1 1x1 256>64", 56, 256, 64, 1, 1, 0, 2),
    ("l1 3x3 64", 56, 64, 64, 3, 1, 1, 3),
    ("l1 1x1 64>256 (+ds)", 56, 64, 256, 1, 1, 0, 4),
    ("l2 1x1 256>128", 56, 256, 128, 1, 1, 0, 1),
    ("l2 3x3/2 128", 56, 128, 128, 3, 2, 1, 1),
    ("l2 ds 1x1/2 256>512", 56, 256, 512, 1, 2, 0, 1),
    ("l2 1x1 512>128", 28, 512, 128, 1, 1, 0, 3),
    ("l2 3x3 128", 28, 128, 128, 3, 1, 1, 3),
    ("l2 1x1 128>512", 28, 128, 512, 1, 1, 0, 4),
    ("l3 1x1 512>256", 28, 512, 256, 1, 1, 0, 1),
    ("l3 3x3/2 256", 28, 256, 256, 3, 2, 1, 1),
    ("l3 ds 1x1/2 512>1024", 28, 512, 1024, 1, 2, 0, 1),
    ("l3 1x1 1024>256", 14, 1024, 256, 1, 1, 0, 5),
    ("l3 3x3 256", 14, 256, 256, 3, 1, 1, 5),
    ("l3 1x1 256>1024", 14, 256, 1024, 1, 1, 0, 6),
    ("l4 1x1 1024>512", 14, 1024, 512, 1, 1, 0, 1),
    ("l4 3x3/2 512", 14, 512, 512, 3, 2, 1, 1),
    ("l4 ds 1x1/2 1024>2048", 14, 1024, 2048, 1, 2, 0, 1),
    ("l4 1x1 2048>512", 7, 2048, 512, 1, 1, 0, 2),
    ("l4 3x3 512", 7, 512, 512, 3, 1, 1, 2),
    ("l4 1x1 512>2048", 7, 512, 2048, 1, 1, 0, 3),
]

# (input size, channels, kernel, stride, count): mirrors liteDepthwise in main.swift. Padding is
# TensorFlow "same" (extra row/column bottom/right), ReLU6 fused as Clip.
LITE0_DEPTHWISE = [
    (112, 32, 3, 1, 1), (112, 96, 3, 2, 1), (56, 144, 3, 1, 1), (56, 144, 5, 2, 1),
    (28, 240, 5, 1, 1), (28, 240, 3, 2, 1), (14, 480, 3, 1, 2), (14, 480, 5, 1, 1),
    (14, 672, 5, 1, 2), (14, 672, 5, 2, 1), (7, 1152, 5, 1, 3), (7, 1152, 3, 1, 1),
]

rng = np.random.default_rng(0)


class Graph:
    def __init__(self):
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, prefix):
        self.count += 1
        return f"{prefix}{self.count}"

    def conv(self, x, cin, cout, k, s, p, relu=True, group=1):
        w, b, y = self.name("w"), self.name("b"), self.name("conv")
        pads = list(p) if isinstance(p, tuple) else [p, p, p, p]  # [top, left, bottom, right]
        weight = rng.standard_normal((cout, cin // group, k, k)) * np.sqrt(2 / (cin // group * k * k))
        self.inits.append(numpy_helper.from_array(weight.astype(np.float32), w))
        self.inits.append(numpy_helper.from_array(np.zeros(cout, np.float32), b))
        self.nodes.append(helper.make_node(
            "Conv", [x, w, b], [y], kernel_shape=[k, k], strides=[s, s], pads=pads, group=group))
        if not relu:
            return y
        r = self.name("relu")
        self.nodes.append(helper.make_node("Relu", [y], [r]))
        return r

    def session(self, output, input_shape, output_shape):
        graph = helper.make_graph(
            self.nodes, "g",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, output_shape)], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(model.SerializeToString(), options,
                                    providers=["CPUExecutionProvider"])


def resnet50():
    g = Graph()
    x = g.conv("input", 3, 64, 7, 2, 3)
    pooled = g.name("pool")
    g.nodes.append(helper.make_node("MaxPool", [x], [pooled], kernel_shape=[3, 3], strides=[2, 2],
                                    pads=[1, 1, 1, 1]))
    x, cin = pooled, 64
    for width, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        for i in range(blocks):
            s = stride if i == 0 else 1
            y = g.conv(x, cin, width, 1, 1, 0)
            y = g.conv(y, width, width, 3, s, 1)
            y = g.conv(y, width, width * 4, 1, 1, 0, relu=False)
            shortcut = g.conv(x, cin, width * 4, 1, s, 0, relu=False) if i == 0 else x
            added, out = g.name("add"), g.name("relu")
            g.nodes.append(helper.make_node("Add", [y, shortcut], [added]))
            g.nodes.append(helper.make_node("Relu", [added], [out]))
            x, cin = out, width * 4
    gap, flat = g.name("gap"), g.name("flat")
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], [gap]))
    g.nodes.append(helper.make_node("Flatten", [gap], [flat]))
    g.inits.append(numpy_helper.from_array(
        (rng.standard_normal((1000, 2048)) * 0.02).astype(np.float32), "fc_w"))
    g.inits.append(numpy_helper.from_array(np.zeros(1000, np.float32), "fc_b"))
    g.nodes.append(helper.make_node("Gemm", [flat, "fc_w", "fc_b"], ["logits"], transB=1))
    return g.session("logits", [1, 3, 224, 224], [1, 1000])


def timed(session, feed, reps, clock):
    for _ in range(2):
        session.run(None, feed)
    samples = []
    for _ in range(reps):
        start = clock()
        session.run(None, feed)
        samples.append((clock() - start) * 1e3)
    samples.sort()
    return samples[len(samples) // 2], samples[0]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--wall", action="store_true", help="wall time instead of thread CPU time")
    args = parser.parse_args()
    # With one intra-op thread ORT runs every kernel on the calling thread, so its thread CPU time
    # is comparable with octet-float-bench's default clock.
    clock = time.perf_counter if args.wall else time.thread_time
    print(f"onnxruntime {ort.__version__}, 1 thread, {args.reps} timed runs after 2 warm-ups, "
          f"{'wall time' if args.wall else 'thread CPU time'}")
    print(f"{'layer':24}{'M':>7}{'N':>6}{'K':>6}{'x':>3}  {'med/min ms':>16}  GF/s")
    total_median = total_min = 0.0
    for name, size, cin, cout, k, s, p, count in RESNET50_CONVS:
        g = Graph()
        y = g.conv("input", cin, cout, k, s, p)
        out = (size + 2 * p - k) // s + 1
        session = g.session(y, [1, cin, size, size], [1, cout, out, out])
        feed = {"input": rng.standard_normal((1, cin, size, size)).astype(np.float32)}
        median, minimum = timed(session, feed, args.reps, clock)
        total_median += median * count
        total_min += minimum * count
        m, kk = out * out, cin * k * k
        print(f"{name:24}{m:>7}{cout:>6}{kk:>6}{count:>3}  {median:>7.3f} / {minimum:<7.3f}"
              f"  {2 * m * cout * kk / median / 1e6:.1f}")
    print(f"sum of conv medians: {total_median:.1f} ms; sum of minima {total_min:.1f} ms")

    print("\nEfficientNet-Lite0 depthwise convolutions (Conv group=C, ReLU)")
    total_median = total_min = 0.0
    for size, c, k, s, count in LITE0_DEPTHWISE:
        out = (size + s - 1) // s
        pad = max((out - 1) * s + k - size, 0)
        g = Graph()
        y = g.conv("input", c, c, k, s, (pad // 2, pad // 2, pad - pad // 2, pad - pad // 2), group=c)
        session = g.session(y, [1, c, size, size], [1, c, out, out])
        feed = {"input": rng.standard_normal((1, c, size, size)).astype(np.float32)}
        median, minimum = timed(session, feed, args.reps, clock)
        total_median += median * count
        total_min += minimum * count
        name = f"dw {k}x{k}/{s} {size}x{size}x{c}"
        print(f"{name:24}{count:>3}  {median:>7.3f} / {minimum:<7.3f}"
              f"  {2 * out * out * c * k * k / median / 1e6:.1f}")
    print(f"sum of depthwise medians: {total_median:.2f} ms; sum of minima {total_min:.2f} ms")
    session = resnet50()
    feed = {"input": rng.standard_normal((1, 3, 224, 224)).astype(np.float32)}
    median, minimum = timed(session, feed, args.reps, clock)
    print(f"whole ResNet50 (NCHW, MLAS): median {median:.1f} ms, min {minimum:.1f} ms")


if __name__ == "__main__":
    main()
