#!/usr/bin/env python3
"""Small ONNX fixtures for the ONNX importer's tests, built from NumPy with the `onnx` package (no
torch), and their goldens from ONNX Runtime (an independent implementation of every operator).

Writes Tests/OctetModelsTests/Fixtures/onnx/*.onnx (the importer's and the CLI's tests) and
Tests/OctetModelsTests/Fixtures/onnx/goldens.json: for each good model, a seeded input batch
[N, 3, H, W] and ORT's output. The fixtures are committed (a few KB each); run this again after
changing it:

    python3 Scripts/make_onnx_fixtures.py
"""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "OctetModelsTests", "Fixtures", "onnx")
rng = np.random.default_rng(20261204)


def w(*shape, scale=0.3):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def model(name, nodes, inits, out_features, opset, size=16, batch="N", extra_inputs=(), elem=TensorProto.FLOAT):
    x = helper.make_tensor_value_info("image", elem, [batch, 3, size, size])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, out_features])
    graph = helper.make_graph(nodes, name, [x, *extra_inputs], [y], initializer=inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="make_onnx_fixtures")
    m.ir_version = 8
    return m


def bn_inits(prefix, c):
    return [
        init(prefix + ".scale", (1 + 0.2 * rng.standard_normal(c)).astype(np.float32)),
        init(prefix + ".bias", (0.1 * rng.standard_normal(c)).astype(np.float32)),
        init(prefix + ".mean", (0.1 * rng.standard_normal(c)).astype(np.float32)),
        init(prefix + ".var", (0.5 + rng.random(c)).astype(np.float32)),
    ]


def cnn_opset17():
    """Conv+BN+Relu, a zero Pad folded into a strided depthwise Conv, Clip(0,6) with input bounds,
    SAME_UPPER and dilated convolutions, MaxPool with pads, a residual Add, GlobalAveragePool,
    Flatten and Gemm(transB=1); symbolic batch."""
    n = [
        helper.make_node("Conv", ["image", "c1.w", "c1.b"], ["a"], name="conv1", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("BatchNormalization", ["a", "bn1.scale", "bn1.bias", "bn1.mean", "bn1.var"], ["b"], name="bn1", epsilon=1e-3),
        helper.make_node("Relu", ["b"], ["c"], name="relu1"),
        helper.make_node("Pad", ["c", "pad.pads", ""], ["d"], name="pad", mode="constant"),
        helper.make_node("Conv", ["d", "dw.w"], ["e"], name="dwconv", group=8, strides=[2, 2]),
        helper.make_node("Clip", ["e", "zero", "six"], ["f"], name="relu6"),
        helper.make_node("Conv", ["f", "c2.w", "c2.b"], ["g"], name="same", auto_pad="SAME_UPPER", strides=[2, 2]),
        helper.make_node("Relu", ["g"], ["h"], name="relu2"),
        helper.make_node("MaxPool", ["h"], ["i"], name="pool", kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["i", "c3.w"], ["j"], name="dilated", dilations=[2, 2], pads=[2, 2, 2, 2]),
        helper.make_node("Add", ["j", "h"], ["k"], name="residual"),
        helper.make_node("GlobalAveragePool", ["k"], ["l"], name="gap"),
        helper.make_node("Flatten", ["l"], ["m"], name="flatten"),
        helper.make_node("Gemm", ["m", "fc.w", "fc.b"], ["logits"], name="fc", transB=1),
    ]
    inits = [
        init("c1.w", w(8, 3, 3, 3)), init("c1.b", w(8)), *bn_inits("bn1", 8),
        init("pad.pads", np.array([0, 0, 0, 0, 0, 0, 1, 1], dtype=np.int64)),
        init("dw.w", w(8, 1, 3, 3, scale=0.6)),
        init("zero", np.array(0, dtype=np.float32)), init("six", np.array(6, dtype=np.float32)),
        init("c2.w", w(12, 8, 3, 3, scale=0.2)), init("c2.b", w(12)),
        init("c3.w", w(12, 12, 3, 3, scale=0.1)),
        init("fc.w", w(5, 12)), init("fc.b", w(5)),
    ]
    return model("cnn_opset17", n, inits, 5, 17)


def matmul_opset13():
    """Constant nodes, Identity, Dropout, ReduceMean with axes as an attribute (opset 13),
    Relu, MatMul followed by the Add of its bias; fixed batch 2."""
    c1 = helper.make_node("Constant", [], ["k.w"], name="const_w", value=numpy_helper.from_array(w(6, 3, 1, 1), "k.w"))
    n = [
        c1,
        helper.make_node("Conv", ["image", "k.w"], ["a"], name="pointwise", strides=[2, 2]),
        helper.make_node("Identity", ["a"], ["b"], name="identity"),
        helper.make_node("Relu", ["b"], ["c"], name="relu"),
        helper.make_node("Dropout", ["c"], ["d"], name="dropout"),
        helper.make_node("ReduceMean", ["d"], ["e"], name="mean", axes=[2, 3], keepdims=0),
        helper.make_node("Constant", [], ["m.w"], name="const_m", value=numpy_helper.from_array(w(6, 4), "m.w")),
        helper.make_node("MatMul", ["e", "m.w"], ["f"], name="matmul"),
        helper.make_node("Add", ["f", "m.b"], ["logits"], name="bias"),
    ]
    return model("matmul_opset13", n, [init("m.b", w(4))], 4, 13, batch=2)


def reshape_opset21():
    """ReduceMean with axes as an input (opset 18+), keepdims 1, then Reshape [0, -1]; a second
    branch that flattens a [4, 3, 3] map (NCHW order, which Octet's NHWC flatten must undo in the
    weights), AveragePool over the whole map, and Gemm with alpha, beta and transB=0."""
    n = [
        helper.make_node("Conv", ["image", "c.w", "c.b"], ["a"], name="conv", strides=[3, 3], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "s.w"], ["s"], name="squeeze", strides=[2, 2], pads=[0, 0, 1, 1]),
        helper.make_node("Reshape", ["s", "shape"], ["flat"], name="reshape"),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="fc", alpha=0.5, beta=2.0),
    ]
    inits = [
        init("c.w", w(6, 3, 3, 3)), init("c.b", w(6)), init("s.w", w(4, 6, 1, 1)),
        init("shape", np.array([0, -1], dtype=np.int64)),
        init("fc.w", w(36, 7)), init("fc.b", w(7)),
    ]
    return model("reshape_opset21", n, inits, 7, 21, size=16)


def reducemean_opset18():
    n = [
        helper.make_node("Conv", ["image", "c.w"], ["a"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["a", "zero"], ["b"], name="relu_clip"),
        helper.make_node("ReduceMean", ["b", "axes"], ["c"], name="mean", keepdims=1),
        helper.make_node("AveragePool", ["b"], ["c2"], name="avg", kernel_shape=[8, 8]),
        helper.make_node("Add", ["c", "c2"], ["d"], name="sum"),
        helper.make_node("Flatten", ["d"], ["e"], name="flatten", axis=1),
        helper.make_node("Gemm", ["e", "fc.w"], ["logits"], name="fc", transB=1),
    ]
    inits = [
        init("c.w", w(5, 3, 3, 3)), init("zero", np.array(0, dtype=np.float32)),
        init("axes", np.array([-2, -1], dtype=np.int64)), init("fc.w", w(3, 5)),
    ]
    return model("reducemean_opset18", n, inits, 3, 18, size=8)


def onnx_ops_opset17():
    """The operators of issue 15 item 2 in a tiny MobileNetV3/EfficientNet-like net: Conv+BN+HardSwish,
    a depthwise Conv+BN+Relu, squeeze-and-excitation (GlobalAveragePool, Conv+Relu, Conv,
    HardSigmoid with torch's alpha 1/6, Mul with the [N, C, 1, 1] factor first), a 1x1 Conv and
    LeakyRelu, a SiLU block (Conv, Sigmoid, Mul(x, sigmoid)), Concat of the two branches along
    channels and a Relu after it (no Conv to fuse into), a padded 3x3 AveragePool without count_include_pad and a 2x2 one with it,
    GlobalAveragePool, Flatten and MobileNetV3's head: Gemm, HardSwish, Dropout, Gemm. Its own seeded generator: the older fixtures keep their bytes."""
    g = np.random.default_rng(151)

    def wt(*shape, scale=0.3):
        return (g.standard_normal(shape) * scale).astype(np.float32)

    def bn(prefix, c):
        return [
            init(prefix + ".scale", (1 + 0.2 * g.standard_normal(c)).astype(np.float32)),
            init(prefix + ".bias", (0.1 * g.standard_normal(c)).astype(np.float32)),
            init(prefix + ".mean", (0.1 * g.standard_normal(c)).astype(np.float32)),
            init(prefix + ".var", (0.5 + g.random(c)).astype(np.float32)),
        ]

    n = [
        helper.make_node("Conv", ["image", "stem.w"], ["a"], name="stem", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["a", "bn0.scale", "bn0.bias", "bn0.mean", "bn0.var"], ["b"], name="bn0"),
        helper.make_node("HardSwish", ["b"], ["c"], name="hswish"),
        helper.make_node("Conv", ["c", "dw.w"], ["d"], name="dw", group=8, pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["d", "bn1.scale", "bn1.bias", "bn1.mean", "bn1.var"], ["e"], name="bn1"),
        helper.make_node("Relu", ["e"], ["f"], name="relu_dw"),
        helper.make_node("GlobalAveragePool", ["f"], ["se0"], name="se_pool"),
        helper.make_node("Conv", ["se0", "se1.w", "se1.b"], ["se1"], name="se_reduce"),
        helper.make_node("Relu", ["se1"], ["se2"], name="se_relu"),
        helper.make_node("Conv", ["se2", "se3.w", "se3.b"], ["se3"], name="se_expand"),
        helper.make_node("HardSigmoid", ["se3"], ["se4"], name="se_gate", alpha=1.0 / 6, beta=0.5),
        helper.make_node("Mul", ["se4", "f"], ["h"], name="se_scale"),
        helper.make_node("Conv", ["h", "pw.w", "pw.b"], ["i"], name="project"),
        helper.make_node("LeakyRelu", ["i"], ["j"], name="leaky", alpha=0.1),
        helper.make_node("Conv", ["h", "sw.w", "sw.b"], ["k"], name="silu_conv"),
        helper.make_node("Sigmoid", ["k"], ["l"], name="sigmoid"),
        helper.make_node("Mul", ["k", "l"], ["m"], name="silu"),
        helper.make_node("Concat", ["j", "m"], ["o0"], name="concat", axis=1),
        helper.make_node("Relu", ["o0"], ["o"], name="concat_relu"),
        helper.make_node("AveragePool", ["o"], ["p"], name="avg3", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("AveragePool", ["p"], ["q"], name="avg2", kernel_shape=[2, 2], pads=[0, 0, 1, 1], count_include_pad=1),
        helper.make_node("GlobalAveragePool", ["q"], ["r"], name="gap"),
        helper.make_node("Flatten", ["r"], ["s"], name="flatten"),
        helper.make_node("Gemm", ["s", "fc1.w", "fc1.b"], ["s1"], name="fc1", transB=1),
        helper.make_node("HardSwish", ["s1"], ["s2"], name="head_hswish"),
        helper.make_node("Dropout", ["s2"], ["s3"], name="dropout"),
        helper.make_node("Gemm", ["s3", "fc.w", "fc.b"], ["logits"], name="fc", transB=1),
    ]
    inits = [
        init("stem.w", wt(8, 3, 3, 3)), *bn("bn0", 8),
        init("dw.w", wt(8, 1, 3, 3, scale=0.6)), *bn("bn1", 8),
        init("se1.w", wt(4, 8, 1, 1, scale=0.5)), init("se1.b", wt(4)),
        init("se3.w", wt(8, 4, 1, 1, scale=0.8)), init("se3.b", wt(8)),
        init("pw.w", wt(6, 8, 1, 1, scale=0.5)), init("pw.b", wt(6)),
        init("sw.w", wt(10, 8, 1, 1, scale=0.5)), init("sw.b", wt(10)),
        init("fc.w", wt(5, 12)), init("fc.b", wt(5)),
        init("fc1.w", wt(12, 16, scale=0.5)), init("fc1.b", wt(12)),
    ]
    return model("onnx_ops_opset17", n, inits, 5, 17, size=16)


GOOD = {
    "cnn_opset17": cnn_opset17,
    "matmul_opset13": matmul_opset13,
    "reshape_opset21": reshape_opset21,
    "reducemean_opset18": reducemean_opset18,
    "onnx_ops_opset17": onnx_ops_opset17,
}


def bad_models():
    """Each is refused with one line; the expected words are in the Swift tests."""
    bad = {}
    m = cnn_opset17()
    m.graph.node[2].op_type = "Tanh"  # relu1
    bad["unsupported_tanh"] = m
    m = cnn_opset17()
    m.opset_import[0].version = 12
    bad["opset12"] = m
    m = cnn_opset17()
    t = m.graph.initializer[0]
    t.data_location = TensorProto.EXTERNAL
    t.ClearField("raw_data")
    t.external_data.add(key="location", value="../../../../etc/passwd")
    bad["external_data"] = m
    m = cnn_opset17()
    m.graph.node[0].input[0] = "k"  # conv1 reads the residual Add's output: a cycle
    bad["cycle"] = m
    m = cnn_opset17()
    m.graph.node[3].input[0] = "nowhere"
    bad["missing_input"] = m
    m = cnn_opset17()
    m.graph.initializer[0].CopyFrom(init("c1.w", np.ones((8, 3, 3, 3), dtype=np.int64)))
    bad["int64_weight"] = m
    m = cnn_opset17()
    m.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    bad["float16_input"] = m
    m = cnn_opset17()
    t = m.graph.initializer[0]
    del t.dims[:]
    t.dims.extend([1 << 40, 1 << 40, 3, 3])
    bad["huge_dims"] = m
    m = cnn_opset17()
    t = m.graph.initializer[0]
    t.raw_data = t.raw_data[:-4]
    bad["short_raw_data"] = m
    m = cnn_opset17()
    m.graph.node[5].input[2] = "seven"  # Clip(0, 7)
    m.graph.initializer.append(init("seven", np.array(7, dtype=np.float32)))
    bad["clip_0_7"] = m
    m = onnx_ops_opset17()
    next(x for x in m.graph.node if x.name == "silu").input[1] = "sw.b"  # Mul(k, a [10] constant)
    bad["mul_by_constant"] = m
    m = onnx_ops_opset17()
    next(x for x in m.graph.node if x.name == "concat").attribute[0].i = 2  # Concat along H
    bad["concat_axis2"] = m
    m = onnx_ops_opset17()
    se = next(x for x in m.graph.node if x.name == "se_scale")
    se.input[0] = "se2"  # [N, 4, 1, 1] by [N, 8, 8, 8]: not squeeze-and-excitation's broadcast
    bad["mul_broadcast_channels"] = m
    return bad


def main():
    os.makedirs(OUT, exist_ok=True)
    goldens = {}
    for name, make in GOOD.items():
        m = make()
        onnx.checker.check_model(m, full_check=True)
        path = os.path.join(OUT, name + ".onnx")
        onnx.save(m, path)
        dims = m.graph.input[0].type.tensor_type.shape.dim
        batch = dims[0].dim_value or 3
        size = dims[2].dim_value
        x = np.random.default_rng(7).standard_normal((batch, 3, size, size)).astype(np.float32)
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        (y,) = session.run(None, {"image": x})
        goldens[name] = {
            "input_nchw_shape": list(x.shape), "input_nchw": [float(v) for v in x.ravel()],
            "output_shape": list(y.shape), "output": [float(v) for v in y.ravel()],
        }
        print(f"{name}: {os.path.getsize(path)} bytes, output {list(y.shape)}")
    for name, m in bad_models().items():
        with open(os.path.join(OUT, name + ".onnx"), "wb") as f:
            f.write(m.SerializeToString())
    with open(os.path.join(OUT, "not_onnx.onnx"), "wb") as f:
        f.write(b"\x08\x08this is not a protobuf message \xff\xff\xff\xff\xff")
    with open(os.path.join(OUT, "goldens.json"), "w") as f:
        json.dump({"generator": "Scripts/make_onnx_fixtures.py", "onnxruntime": ort.__version__,
                   "onnx": onnx.__version__, "models": goldens}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
