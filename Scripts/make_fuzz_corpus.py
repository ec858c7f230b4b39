#!/usr/bin/env python3
"""Writes the small committed seed corpora of the fuzz targets into Fuzz/corpus/<target>/.

Run from the package root:  python3 Scripts/make_fuzz_corpus.py
Needs torch (any 2.x) for the checkpoints and Pillow for the images; the rest is written byte by
byte. The seeds are
deliberately tiny (a few hundred bytes to a few KB): libFuzzer mutates small inputs much faster.
Legacy checkpoints (storage keys) and the deflated zip (timestamps) differ from run to run, so
re-running rewrites them with equivalent bytes.
Scripts/fuzz.sh adds the existing test fixtures and a few files of ../shared to each run's corpus.
"""

import collections
import io
import json
import os
import struct
import zipfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "Fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def torch_bytes(obj, **kwargs):
    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    return buf.getvalue()


def checkpoints():
    torch.manual_seed(0)
    two = collections.OrderedDict(w=torch.arange(6, dtype=torch.float32).reshape(2, 3),
                                  b=torch.tensor([1, -2], dtype=torch.int64))
    base = torch.arange(12, dtype=torch.float16).reshape(3, 4)
    # A transposed view and a slice sharing one storage: strides, offsets, shared storages.
    views = collections.OrderedDict(t=base.t(), s=base[1, 1:3], n=torch.tensor(3.5, dtype=torch.float64),
                                    e=torch.zeros(0, 2, dtype=torch.uint8))
    nested = {"epoch": 1, "state_dict": two, "best": 0.5, "names": ["a", "b"]}
    for name, obj in [("two", two), ("views", views), ("nested", nested)]:
        put("checkpoint-zip", f"{name}.pth", torch_bytes(obj))
        put("checkpoint-legacy", f"{name}.pth", torch_bytes(obj, _use_new_zipfile_serialization=False))
    put("checkpoint-zip", "two_p5.pth", torch_bytes(two, pickle_protocol=5))
    # Deflated records exercise the inflate path and its size bounds.
    src = zipfile.ZipFile(io.BytesIO(torch_bytes(two)))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            z.writestr(info.filename, src.read(info.filename))
    put("checkpoint-zip", "two_deflated.pth", out.getvalue())


def safetensors_bytes(entries, metadata=None, pad=True):
    """entries: [(name, dtype, shape, raw bytes)] written in order."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


def safetensors():
    put("safetensors", "two.safetensors", safetensors_bytes([
        ("w", "F32", [2, 3], struct.pack("<6f", *range(6))),
        ("b", "I64", [2], struct.pack("<2q", 1, -2)),
    ], metadata={"format": "pt"}))
    put("safetensors", "kinds.safetensors", safetensors_bytes([
        ("a", "U8", [3], b"\x01\x02\x03"), ("b", "I8", [1, 1], b"\xff"), ("c", "F16", [], b"\x00\x3c"),
        ("d", "I32", [0, 5], b""), ("e", "BF16", [1], b"\x80\x3f"),
    ]))
    put("safetensors", "empty.safetensors", safetensors_bytes([]))


def range_tables():
    def table(tensors, **extra):
        doc = {"format": "octet-ranges", "version": 1,
               "model": {"architecture": "tiny", "source": "tiny.pth"}, "method": "minmax", "images": 2,
               "tensors": tensors}
        doc.update(extra)
        return json.dumps(doc, indent=1).encode()
    t = lambda n, lo, hi: {"name": n, "min": lo, "max": hi, "observed_min": lo, "observed_max": hi}
    put("rangetable", "two.json", table([t("input", -2.1, 2.6), t("fc", 0.0, 1e3)]))
    put("rangetable", "note.json", table([dict(t("logits", -1.5e-3, 7.25), note="int32 \u00e9\\n")]))


def quantized_model():
    """A two-node int8 model (quantize_input -> linear 3 -> 2) as `octet quantize` writes it."""
    aq = lambda s, z: {"scale": s, "zeroPoint": z}
    nodes = [
        {"name": "input", "op": "quantize_input", "inputs": [], "fused": [], "output": aq(0.02, 128)},
        {"name": "fc", "op": "linear", "inputs": ["input"], "fused": ["fc"], "output": aq(0.001, 0),
         "inChannels": 3, "outChannels": 2, "inputQuantization": [aq(0.02, 128)]},
    ]
    info = {"architecture": "tiny", "inputSize": 1, "classes": 2, "source": "tiny.pth",
            "preprocessing": {"resizeShorter": 1, "cropSize": 1, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}
    meta = {"octet.format": "octet-int8", "octet.format_version": "1",
            "octet.model": json.dumps(info, sort_keys=True, separators=(",", ":")),
            "octet.int8_graph": json.dumps({"nodes": nodes, "output": "fc"}, sort_keys=True, separators=(",", ":"))}
    i32 = lambda *v: struct.pack(f"<{len(v)}i", *v)
    # The graph alone: the fuzz target pairs it with tensors of the sizes its nodes declare.
    conv = {"name": "conv", "op": "conv2d", "inputs": ["input"], "fused": ["conv", "relu"], "output": aq(0.05, 0),
            "inChannels": 3, "outChannels": 4, "kernel": [3, 3], "stride": [2, 2], "padding": [1, 1, 1, 1],
            "groups": 1, "inputQuantization": [aq(0.02, 128)], "clamp": [0, 255]}
    pool = {"name": "pool", "op": "global_average_pool", "inputs": ["conv"], "fused": ["pool"],
            "output": aq(0.05, 0), "inputQuantization": [aq(0.05, 0)],
            "requant": {"multiplier": 1 << 30, "shift": 31}}
    add = {"name": "add", "op": "add", "inputs": ["pool", "pool"], "fused": ["add"], "output": aq(0.1, 0),
           "inputQuantization": [aq(0.05, 0), aq(0.05, 0)], "clamp": [0, 255],
           "addMultipliers": {"a": 1 << 30, "b": 1 << 30, "shift": 20}}
    fc = dict(nodes[1], inputs=["add"], inChannels=4, inputQuantization=[aq(0.1, 0)])
    graph = {"nodes": [nodes[0], conv, pool, add, {"name": "flat", "op": "flatten", "inputs": ["add"],
                                                    "fused": ["flat"], "output": aq(0.1, 0)}, dict(fc, inputs=["flat"])],
             "output": "fc"}
    put("quantized-model", "graph.json", json.dumps(graph, sort_keys=True).encode())
    put("quantized-model", "linear.octet", safetensors_bytes([
        ("fc.weight", "I8", [2, 3], bytes([1, 2, 3, 0x81, 0, 127])),
        ("fc.bias", "I32", [2], i32(10, -10)),
        ("fc.multiplier", "I32", [2], i32(1 << 30, 1 << 30)),
        ("fc.shift", "I32", [2], i32(31, 62)),
        ("fc.weight_scale", "F32", [2], struct.pack("<2f", 0.01, 0.02)),
    ], metadata=meta))


def images():
    """Tiny PNGs and JPEGs of the kinds the decoders branch on; the fixtures and ../shared add more."""
    from PIL import Image
    rgb = Image.new("RGB", (5, 3))
    rgb.putdata([(i * 40 % 256, i * 90 % 256, i * 17 % 256) for i in range(15)])
    for name, im, kwargs in [
        ("rgb.png", rgb, {}),
        ("palette.png", rgb.convert("P"), {}),
        ("gray.png", rgb.convert("L"), {}),
        ("rgba.png", rgb.convert("RGBA"), {}),
    ]:
        buf = io.BytesIO()
        im.save(buf, "PNG", **kwargs)
        put("image", name, buf.getvalue())
    for name, im, kwargs in [
        ("baseline.jpg", rgb, {"quality": 90}),
        ("progressive.jpg", rgb, {"quality": 90, "progressive": True}),
        ("gray.jpg", rgb.convert("L"), {"quality": 90}),
        ("cmyk.jpg", rgb.convert("CMYK"), {"quality": 90}),
    ]:
        buf = io.BytesIO()
        im.save(buf, "JPEG", **kwargs)
        put("image", name, buf.getvalue())


if __name__ == "__main__":
    images()
    checkpoints()
    safetensors()
    range_tables()
    quantized_model()
