#!/usr/bin/env python3
"""Independent NumPy reference of Octet's int8 scheme (docs/quantization.md), for a bit-exact golden.

It builds a small network with seeded random float weights, fixes calibration ranges, quantizes it
following the contract text (not the Swift code), runs it with integer arithmetic and writes
Tests/OctetQuantizerTests/Goldens/small_net.json: the graph (in Octet's Graph JSON), the float
weights, the ranges, the input, the expected uint8 tensor of every integer node and the int32 logits.

    input 1x12x12x3
    stem.conv 3x3/2, padding [top 0, left 0, bottom 1, right 1] + stem.bn + stem.relu6  -> 6x6x8
    dw.conv   depthwise 3x3/1 SAME + dw.bn + dw.relu6                                   -> 6x6x8
    pw.conv   1x1 + pw.bn                                                               -> 6x6x8
    short.conv 1x1 with bias + short.bn (epsilon 0.1), reads stem.relu6                  -> 6x6x8
    block.add (pw.bn, short.bn) + block.relu                                             -> 6x6x8
    pool      max 3x3/2 padding 1                                                       -> 3x3x8
    avgpool   global average pool, flatten, fc linear 8 -> 10                            -> int32 logits

Offline arithmetic (where the contract leaves the precision open, this follows the order stated in
Sources/OctetQuantizer/Quantizer.swift's doc comment and OctetCore's ActivationQuantization):
activation scales and zero points in float32, BatchNorm folding, weight quantization, bias and
multipliers in float64, rounding half away from zero.

With --exact-input (docs/quantization.md §12) the input is a seeded random uint8 image normalized
with ImageNet's mean/std in float32 (torchvision's order), the stem reads the pixels (its weights
divided by 255 · std, the mean in one bias per border class), and the golden goes to
small_net_exact.json; its "expected" has no "input" (a pixel input is not observed) and adds
"pixels", the uint8 image.

Usage: python3 Scripts/int8_reference.py [--seed 20240611] [--out PATH] [--exact-input]
"""
import argparse
import json
import math
import os

import numpy as np

F32 = np.float32


def round_half_away(x):
    """Round half away from zero, exactly (np.round is half to even)."""
    x = np.asarray(x)
    t = np.trunc(x)
    frac = x - t  # exact in binary floating point
    return t + np.where(np.abs(frac) >= 0.5, np.sign(x), 0).astype(x.dtype)


# ---- Contract: activations (per-tensor asymmetric uint8), float32 arithmetic ----

def activation_quantization(lo, hi):
    lo = min(F32(lo), F32(0))
    hi = max(F32(hi), F32(0))
    s = F32(F32(hi - lo) / F32(255))
    if not s > 0:
        s = F32(1)
    z = float(round_half_away(F32(-lo / s)))
    return s, int(min(max(z, 0), 255))


def clamp_bound(r, s, z):
    """clamp(round(r / s) + z, 0, 255) in float32; r may be +-inf."""
    v = F32(round_half_away(F32(F32(r) / s))) + F32(z)
    return int(min(max(v, F32(0)), F32(255)))


def clamp_bounds(activation, s, z):
    lo = clamp_bound(0.0, s, z) if activation in ("relu", "relu6") else 0
    hi = clamp_bound(6.0, s, z) if activation == "relu6" else 255
    return lo, hi


def quantize_input(x, s, z):
    v = round_half_away((x.astype(F32) / s).astype(F32)).astype(F32) + F32(z)
    return np.clip(v, 0, 255).astype(np.int64)


# ---- Contract: requantization multipliers (m, n), M ~= m * 2^-n ----

def exponent(x):
    """IEEE exponent: x = f * 2^e with f in [1, 2)."""
    return math.frexp(x)[1] - 1


def requant_multiplier(M):
    assert 0 <= M < 2.0**30, M
    if M == 0:
        return 0, 62
    n = min(30 - exponent(M), 62)
    m = int(round_half_away(math.ldexp(M, n)))
    if m == 2**31:
        m, n = 2**30, n - 1
    assert n >= 1
    return m, n


def add_multipliers(Ma, Mb):
    larger = max(Ma, Mb)
    n = 62 if larger == 0 else min(30 - exponent(larger), 62)
    ma, mb = int(round_half_away(math.ldexp(Ma, n))), int(round_half_away(math.ldexp(Mb, n)))
    if max(ma, mb) == 2**31:
        n -= 1
        ma, mb = int(round_half_away(math.ldexp(Ma, n))), int(round_half_away(math.ldexp(Mb, n)))
    return ma, mb, n


def requantize(acc, m, n):
    """(acc * m + 2^(n-1)) >> n, arithmetic shift (ties toward +inf). Python ints: exact."""
    acc = np.asarray(acc, dtype=object)
    return np.vectorize(lambda a: (int(a) * m + (1 << (n - 1))) >> n, otypes=[object])(acc)


# ---- Contract: weights (per-channel symmetric int8) and bias (int32, zero point folded) ----

def fold_bn(w, b, bn, eps):
    gamma, beta, mean, var = (bn[k].astype(np.float64) for k in ("weight", "bias", "running_mean", "running_var"))
    factor = gamma / np.sqrt(var + np.float64(F32(eps)))
    wf = w.astype(np.float64) * factor.reshape((-1,) + (1,) * (w.ndim - 1))
    bf = ((b.astype(np.float64) if b is not None else np.zeros(len(gamma))) - mean) * factor + beta
    return wf, bf


def saturate32(v):
    return int(min(max(v, -(2**31)), 2**31 - 1))


def quantize_channels(w, b, s_in, z_in):
    """w: float64 [O, ...]; returns int weights, float32 scales, folded int32 biases."""
    o = w.shape[0]
    flat = w.reshape(o, -1)
    wq = np.zeros(flat.shape, dtype=np.int64)
    scales, biases = [], []
    for c in range(o):
        max_abs = F32(np.max(np.abs(flat[c])))
        s = F32(max_abs / F32(127))
        if not s > 0:
            s = F32(1)
        # docs/quantization.md §5: raise the scale so |bias| fits in 2^30 (dead channels).
        floor = abs(np.float64(b[c])) / (np.float64(s_in) * 2.0**30)
        if np.float64(s) < floor:
            f = F32(floor)
            if np.float64(f) < floor:
                f = np.nextafter(f, F32(np.inf))
            s = f
        q = np.clip(round_half_away(flat[c] / np.float64(s)), -127, 127).astype(np.int64)
        wq[c] = q
        bq = saturate32(int(round_half_away(b[c] / (np.float64(s_in) * np.float64(s)))))
        biases.append(saturate32(bq - z_in * int(q.sum())))
        scales.append(s)
    return wq.reshape(w.shape), scales, biases


# ---- Integer operators (NHWC, one image) ----

def conv_int(x, wq_oihw, bias, mult, pads, stride, groups, z_in, z_out, lo, hi):
    h, w_, c = x.shape
    o, icg, kh, kw = wq_oihw.shape
    top, left, bottom, right = pads
    xp = np.full((h + top + bottom, w_ + left + right, c), z_in, dtype=np.int64)
    xp[top:top + h, left:left + w_] = x
    oh = (h + top + bottom - kh) // stride + 1
    ow = (w_ + left + right - kw) // stride + 1
    out = np.zeros((oh, ow, o), dtype=np.int64)
    ocg = o // groups
    for oy in range(oh):
        for ox in range(ow):
            window = xp[oy * stride:oy * stride + kh, ox * stride:ox * stride + kw]  # kh, kw, c
            for oc in range(o):
                g = oc // ocg
                patch = window[:, :, g * icg:(g + 1) * icg].transpose(2, 0, 1)  # icg, kh, kw
                acc = bias[oc] + int(np.sum(patch * wq_oihw[oc]))
                assert -(2**31) <= acc < 2**31
                m, n = mult[oc]
                y = ((acc * m + (1 << (n - 1))) >> n) + z_out
                out[oy, ox, oc] = min(max(y, lo), hi)
    return out


def add_int(a, b, za, zb, mults, z_out, lo, hi):
    ma, mb, n = mults
    out = np.zeros(a.shape, dtype=np.int64)
    for idx in np.ndindex(a.shape):
        acc = (int(a[idx]) - za) * ma + (int(b[idx]) - zb) * mb
        y = ((acc + (1 << (n - 1))) >> n) + z_out
        out[idx] = min(max(y, lo), hi)
    return out


def max_pool_int(x, k, stride, pad):
    h, w, c = x.shape
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    out = np.zeros((oh, ow, c), dtype=np.int64)
    for oy in range(oh):
        for ox in range(ow):
            ys = range(max(oy * stride - pad, 0), min(oy * stride - pad + k, h))
            xs = range(max(ox * stride - pad, 0), min(ox * stride - pad + k, w))
            out[oy, ox] = x[ys.start:ys.stop, xs.start:xs.stop].reshape(-1, c).max(axis=0)
    return out


def same_padding(size, k, s):
    out = (size + s - 1) // s
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


# ---- Float network (for the calibration ranges only) ----

def conv_float(x, w, b, pads, stride, groups):
    h, w_, c = x.shape
    o, icg, kh, kw = w.shape
    top, left, bottom, right = pads
    xp = np.zeros((h + top + bottom, w_ + left + right, c))
    xp[top:top + h, left:left + w_] = x
    oh, ow = (h + top + bottom - kh) // stride + 1, (w_ + left + right - kw) // stride + 1
    out = np.zeros((oh, ow, o))
    ocg = o // groups
    for oy in range(oh):
        for ox in range(ow):
            window = xp[oy * stride:oy * stride + kh, ox * stride:ox * stride + kw]
            for oc in range(o):
                g = oc // ocg
                out[oy, ox, oc] = np.sum(window[:, :, g * icg:(g + 1) * icg].transpose(2, 0, 1) * w[oc]) + (b[oc] if b is not None else 0)
    return out


# ---- §12 exact input: the stem reads uint8 pixels ----

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=F32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=F32)


def tap_range(o, stride, pad, k, size):
    """Kernel taps [first, end) of output position o that fall inside an axis of `size`."""
    start = o * stride - pad
    first = max(0, -start)
    return first, max(first, min(k, size - start))


def exact_stem(w, b, pads, stride, size):
    """w'' = w' / (255 std_c); weights per channel at s_in = 1, z_in = 0; then for every output
    position (oy, ox) the bias round(b' / s_w - sum over inside taps of w_q * 255 mean_c)."""
    std = IMAGENET_STD.astype(np.float64)
    mean = IMAGENET_MEAN.astype(np.float64)
    w2 = w / (255.0 * std).reshape(1, 3, 1, 1)
    interior = b - (w2 * (255.0 * mean).reshape(1, 3, 1, 1)).sum(axis=(1, 2, 3))
    wq, scales, _ = quantize_channels(w2, interior, F32(1), 0)
    o, _, kh, kw = wq.shape
    oh = (size + pads[0] + pads[2] - kh) // stride + 1
    ow = (size + pads[1] + pads[3] - kw) // stride + 1
    bias = np.zeros((oh, ow, o), dtype=object)
    for oy in range(oh):
        r0, r1 = tap_range(oy, stride, pads[0], kh, size)
        for ox in range(ow):
            c0, c1 = tap_range(ox, stride, pads[1], kw, size)
            for oc in range(o):
                term = np.float64(0)
                for c in range(3):
                    for y in range(r0, r1):
                        for x in range(c0, c1):
                            term += np.float64(wq[oc, c, y, x]) * (255.0 * mean[c])
                bias[oy, ox, oc] = int(round_half_away(np.float64(b[oc]) / np.float64(scales[oc]) - term))
    return wq, scales, bias


def conv_int_pixels(p, wq_oihw, bias, mult, pads, stride, z_out, lo, hi):
    """conv_int on uint8 pixels (zero point 0, padding 0) with a bias per output position."""
    h, w_, c = p.shape
    o, _, kh, kw = wq_oihw.shape
    top, left, bottom, right = pads
    xp = np.zeros((h + top + bottom, w_ + left + right, c), dtype=np.int64)
    xp[top:top + h, left:left + w_] = p
    oh, ow = bias.shape[0], bias.shape[1]
    out = np.zeros((oh, ow, o), dtype=np.int64)
    for oy in range(oh):
        for ox in range(ow):
            window = xp[oy * stride:oy * stride + kh, ox * stride:ox * stride + kw].transpose(2, 0, 1)
            for oc in range(o):
                acc = bias[oy, ox, oc] + int(np.sum(window * wq_oihw[oc]))
                assert -(2**31) <= acc < 2**31
                m, n = mult[oc]
                out[oy, ox, oc] = min(max(((acc * m + (1 << (n - 1))) >> n) + z_out, lo), hi)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=20240611)
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--out")
    parser.add_argument("--exact-input", action="store_true")
    args = parser.parse_args()
    if args.out is None:
        name = "small_net_exact.json" if args.exact_input else "small_net.json"
        args.out = os.path.join(here, "..", "Tests", "OctetQuantizerTests", "Goldens", name)
    rng = np.random.default_rng(args.seed)

    def uniform(shape, lo, hi):
        return rng.uniform(lo, hi, size=shape).astype(F32)

    # Epsilons other than PyTorch's 1e-5, and a large one on short.bn, so that folding BatchNorm
    # without its epsilon (or with another one) changes the results.
    C, S, EPS, SHORT_EPS = 8, 12, 1e-3, 0.1
    weights = {}

    def bn_params(prefix):
        weights[prefix + ".weight"] = uniform([C], 0.5, 1.5)
        weights[prefix + ".bias"] = uniform([C], -0.5, 0.5)
        weights[prefix + ".running_mean"] = uniform([C], -0.2, 0.2)
        weights[prefix + ".running_var"] = uniform([C], 0.5, 1.5)

    weights["stem.conv.weight"] = uniform([C, 3, 3, 3], -0.5, 0.5)
    bn_params("stem.bn")
    weights["dw.conv.weight"] = uniform([C, 1, 3, 3], -0.8, 0.8)
    bn_params("dw.bn")
    weights["pw.conv.weight"] = uniform([C, C, 1, 1], -0.5, 0.5)
    weights["pw.conv.weight"][3] = 0  # an all-zero output channel: scale 1, weights 0
    bn_params("pw.bn")
    weights["short.conv.weight"] = uniform([C, C, 1, 1], -0.5, 0.5)
    weights["short.conv.bias"] = uniform([C], -0.3, 0.3)
    weights["fc.weight"] = uniform([10, C], -0.6, 0.6)
    weights["fc.bias"] = uniform([10], -0.2, 0.2)
    if args.exact_input:
        pixels = rng.integers(0, 256, size=[1, S, S, 3]).astype(np.uint8)
        x = ((pixels.astype(F32) / F32(255) - IMAGENET_MEAN) / IMAGENET_STD).astype(F32)
    else:
        x = uniform([1, S, S, 3], -2.0, 2.5)
    # A conv with both a bias and a BatchNorm (drawn last, so the tensors above keep their values).
    bn_params("short.bn")

    def node(name, op, inputs, **attrs):
        n = {"name": name, "op": op, "inputs": inputs}
        n.update(attrs)
        return n

    def conv(name, inp, weight, kernel, stride, padding=None, same=False, groups=1, bias=None):
        attrs = dict(weight=weight, kernel=kernel, stride=[stride, stride], dilation=[1, 1],
                     paddingMode="same" if same else "explicit", groups=groups)
        if not same:
            attrs["padding"] = padding
        if bias:
            attrs["bias"] = bias
        return node(name, "conv2d", [inp], **attrs)

    def bn(name, inp, prefix, eps=EPS):
        return node(name, "batch_norm", [inp], weight=prefix + ".weight", bias=prefix + ".bias",
                    runningMean=prefix + ".running_mean", runningVariance=prefix + ".running_var", epsilon=eps)

    nodes = [
        conv("stem.conv", "input", "stem.conv.weight", [3, 3], 2, padding=[0, 0, 1, 1]),
        bn("stem.bn", "stem.conv", "stem.bn"),
        node("stem.relu6", "relu6", ["stem.bn"]),
        conv("dw.conv", "stem.relu6", "dw.conv.weight", [3, 3], 1, same=True, groups=C),
        bn("dw.bn", "dw.conv", "dw.bn"),
        node("dw.relu6", "relu6", ["dw.bn"]),
        conv("pw.conv", "dw.relu6", "pw.conv.weight", [1, 1], 1, padding=[0, 0, 0, 0]),
        bn("pw.bn", "pw.conv", "pw.bn"),
        conv("short.conv", "stem.relu6", "short.conv.weight", [1, 1], 1, padding=[0, 0, 0, 0], bias="short.conv.bias"),
        bn("short.bn", "short.conv", "short.bn", SHORT_EPS),
        node("block.add", "add", ["pw.bn", "short.bn"]),
        node("block.relu", "relu", ["block.add"]),
        node("pool", "max_pool", ["block.relu"], kernel=[3, 3], stride=[2, 2], paddingMode="explicit", padding=[1, 1, 1, 1]),
        node("avgpool", "global_average_pool", ["pool"]),
        node("flatten", "flatten", ["avgpool"]),
        node("fc", "linear", ["flatten"], weight="fc.weight", bias="fc.bias"),
    ]

    # Float forward pass (float64), for ranges.
    dw_pad = same_padding(6, 3, 1)
    dw_pads = [dw_pad[0], dw_pad[0], dw_pad[1], dw_pad[1]]
    bnp = lambda p: {k: weights[f"{p}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")}
    folded = {
        "stem": fold_bn(weights["stem.conv.weight"], None, bnp("stem.bn"), EPS),
        "dw": fold_bn(weights["dw.conv.weight"], None, bnp("dw.bn"), EPS),
        "pw": fold_bn(weights["pw.conv.weight"], None, bnp("pw.bn"), EPS),
        "short": fold_bn(weights["short.conv.weight"], weights["short.conv.bias"], bnp("short.bn"), SHORT_EPS),
    }
    xf = x[0].astype(np.float64)
    f = {"input": xf}
    f["stem.relu6"] = np.clip(conv_float(xf, *folded["stem"], [0, 0, 1, 1], 2, 1), 0, 6)
    f["dw.relu6"] = np.clip(conv_float(f["stem.relu6"], *folded["dw"], dw_pads, 1, C), 0, 6)
    f["pw.bn"] = conv_float(f["dw.relu6"], *folded["pw"], [0, 0, 0, 0], 1, 1)
    f["short.bn"] = conv_float(f["stem.relu6"], *folded["short"], [0, 0, 0, 0], 1, 1)
    f["block.relu"] = np.maximum(f["pw.bn"] + f["short.bn"], 0)
    f["avgpool"] = f["block.relu"].max(axis=(0, 1))  # placeholder, replaced below
    pooled = np.full((3, 3, C), -np.inf)
    for oy in range(3):
        for ox in range(3):
            ys, xs = slice(max(2 * oy - 1, 0), min(2 * oy + 2, 6)), slice(max(2 * ox - 1, 0), min(2 * ox + 2, 6))
            pooled[oy, ox] = f["block.relu"][ys, xs].reshape(-1, C).max(axis=0)
    f["avgpool"] = pooled.mean(axis=(0, 1))

    # Ranges: observed min/max rounded outward to multiples of 1/64 (exact in float32); the ReLU6
    # outputs get hi = 7 and block.relu lo = -0.5, so that the fused clamps are not at 0 and 255.
    ranges = {}
    for name, v in f.items():
        ranges[name] = [math.floor(float(v.min()) * 64) / 64, math.ceil(float(v.max()) * 64) / 64]
    ranges["stem.relu6"][1] = 7.0
    ranges["dw.relu6"][1] = 7.0
    ranges["block.relu"][0] = -0.5

    # ---- Quantize (contract) and run with integers ----
    qp = {name: activation_quantization(*r) for name, r in ranges.items()}
    expected = {}
    s_in, z_in = qp["input"]
    q = quantize_input(x[0], s_in, z_in)
    expected["input"] = q

    def qconv(name, src, w, b, pads, stride, groups, activation):
        s_i, z_i = qp[src]
        s_o, z_o = qp[name]
        wq, scales, biases = quantize_channels(w, b, s_i, z_i)
        mult = [requant_multiplier(np.float64(s_i) * np.float64(sw) / np.float64(s_o)) for sw in scales]
        lo, hi = clamp_bounds(activation, s_o, z_o)
        expected[name] = conv_int(expected[src], wq, biases, mult, pads, stride, groups, z_i, z_o, lo, hi)

    if args.exact_input:
        del expected["input"]
        s_o, z_o = qp["stem.relu6"]
        wq, scales, class_bias = exact_stem(*folded["stem"], [0, 0, 1, 1], 2, S)
        mult = [requant_multiplier(np.float64(sw) / np.float64(s_o)) for sw in scales]
        lo, hi = clamp_bounds("relu6", s_o, z_o)
        expected["stem.relu6"] = conv_int_pixels(pixels[0], wq, class_bias, mult, [0, 0, 1, 1], 2, z_o, lo, hi)
    else:
        qconv("stem.relu6", "input", *folded["stem"], [0, 0, 1, 1], 2, 1, "relu6")
    qconv("dw.relu6", "stem.relu6", *folded["dw"], dw_pads, 1, C, "relu6")
    qconv("pw.bn", "dw.relu6", *folded["pw"], [0, 0, 0, 0], 1, 1, None)
    qconv("short.bn", "stem.relu6", *folded["short"], [0, 0, 0, 0], 1, 1, None)

    (sa, za), (sb, zb), (so, zo) = qp["pw.bn"], qp["short.bn"], qp["block.relu"]
    mults = add_multipliers(np.float64(sa) / np.float64(so), np.float64(sb) / np.float64(so))
    lo, hi = clamp_bounds("relu", so, zo)
    expected["block.relu"] = add_int(expected["pw.bn"], expected["short.bn"], za, zb, mults, zo, lo, hi)

    expected["pool"] = max_pool_int(expected["block.relu"], 3, 2, 1)
    qp["pool"] = qp["block.relu"]

    (s_i, z_i), (s_o, z_o) = qp["pool"], qp["avgpool"]
    m, n = requant_multiplier(np.float64(s_i) / (np.float64(s_o) * np.float64(9)))
    sums = (expected["pool"] - z_i).sum(axis=(0, 1))
    expected["avgpool"] = np.array([min(max(((int(v) * m + (1 << (n - 1))) >> n) + z_o, 0), 255) for v in sums]).reshape(1, 1, C)
    expected["flatten"] = expected["avgpool"].reshape(C)

    wq, scales, biases = quantize_channels(weights["fc.weight"].astype(np.float64), weights["fc.bias"].astype(np.float64), s_o, z_o)
    max_scale = max(scales)
    logits = []
    for c in range(10):
        mc, nc = requant_multiplier(np.float64(scales[c]) / np.float64(max_scale))
        acc = biases[c] + int(np.dot(expected["flatten"].astype(np.int64), wq[c]))
        logits.append(saturate32((acc * mc + (1 << (nc - 1))) >> nc))
    logit_scale = float(F32(s_o * max_scale))

    golden = {
        "script": "Scripts/int8_reference.py",
        "seed": args.seed,
        "input_size": S,
        "graph": {"nodes": nodes, "output": "fc"},
        "weights": {k: {"shape": list(v.shape), "data": [float(t) for t in v.reshape(-1)]} for k, v in weights.items()},
        "ranges": ranges,
        "input": {"shape": list(x.shape), "data": [float(t) for t in x.reshape(-1)]},
        **({"pixels": [int(t) for t in pixels.reshape(-1)]} if args.exact_input else {}),
        "expected": {k: [int(t) for t in np.asarray(v).reshape(-1)] for k, v in expected.items()},
        "logits": logits,
        "logit_scale": logit_scale,
        "float_logits": [float(t) for t in (weights["fc.weight"].astype(np.float64) @ f["avgpool"] + weights["fc.bias"])],
        # The float network's tensors (float64, BatchNorm folded as above), for FloatExecutor.
        "float_tensors": {k: [float(t) for t in np.asarray(v).reshape(-1)] for k, v in f.items() if k != "input"},
    }
    with open(args.out, "w") as fh:
        json.dump(golden, fh, indent=None, separators=(",", ":"))
        fh.write("\n")
    print(f"wrote {args.out}: {len(expected)} tensors, logits {logits}")


if __name__ == "__main__":
    main()
