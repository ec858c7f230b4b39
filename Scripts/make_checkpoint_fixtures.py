#!/usr/bin/env python3
"""Writes the small checkpoint fixtures for Tests/OctetModelsTests and the expected values.

Run from the package root:  python3 Scripts/make_checkpoint_fixtures.py
Needs torch (any 2.x). The fixtures are deterministic; the malicious ones are written byte by byte
and are never unpickled here.

Outputs in Tests/OctetModelsTests/Fixtures/:
  tiny_zip.pth          torch.save(sd) in the zip format (protocol 2, like torchvision's files)
  tiny_zip_p5.pth       the same with pickle_protocol=5 (FRAME, MEMOIZE, STACK_GLOBAL, ...)
  tiny_zip_deflated.pth tiny_zip.pth repacked with deflate compression
  tiny_legacy.pth       torch.save(sd, _use_new_zipfile_serialization=False)
  tiny_nested.pth       {'epoch': 7, 'arch': 'tiny', 'state_dict': sd, 'best': 0.5}, zip format
  tiny_model_key.pth    {'model': <Conv2d+BatchNorm2d state_dict>, 'step': 3}, legacy format
  tiny.safetensors      sd (contiguous copies) written by hand from the safetensors spec
  evil_zip.pth          zip checkpoint whose data.pkl calls os.system('touch <marker>')
  evil_legacy.pth       the same payload after a valid legacy header
  broken_missing_storage.pth  tiny_zip.pth without its record data/3
  broken_big_endian.pth       tiny_zip.pth whose byteorder record says "big"
  broken_big_endian_legacy.pth  a legacy header whose sys_info says little_endian=False
  expected.json         names, dtypes, shapes and row-major values of sd, plus spot values of the
                        real weight files in ../shared/models when they are present
"""

import collections
import io
import json
import os
import struct
import sys
import zipfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "OctetModelsTests", "Fixtures")
MODELS = os.path.join(os.path.dirname(ROOT), "shared", "models")
# The malicious fixtures would create this file if anything executed them.
PWNED_MARKER = "/tmp/octet-checkpoint-fixture-pwned"


def tiny_state_dict():
    sd = collections.OrderedDict()
    sd["conv.weight"] = (torch.arange(4 * 3 * 3 * 3, dtype=torch.float32) * 0.25 - 13.0).reshape(4, 3, 3, 3)
    sd["conv.bias"] = torch.tensor([0.5, -1.5, 2.25, 1e-3], dtype=torch.float32)
    # A transposed view: torch.save writes the whole storage plus strides (1, 4).
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 8
    sd["linear.weight_t"] = base.t()
    # A strided slice with a storage offset.
    grid = torch.arange(30, dtype=torch.float32).reshape(5, 6)
    sd["slice"] = grid[1:4, ::2]
    # Two tensors sharing one storage.
    shared = torch.arange(10, dtype=torch.float32) - 5
    sd["shared.a"] = shared[:4]
    sd["shared.b"] = shared[6:].reshape(2, 2)
    sd["half.weight"] = torch.tensor([[1.0, -2.5, 0.099975586], [65504.0, 6.1035156e-05, -0.0]], dtype=torch.float16)
    sd["bf16.weight"] = torch.tensor([1.0, -3.140625, 256.0], dtype=torch.bfloat16)
    sd["double"] = torch.tensor([1.0 / 3.0, -2.0], dtype=torch.float64)
    sd["bn.num_batches_tracked"] = torch.tensor(12345, dtype=torch.int64)
    sd["index"] = torch.tensor([-(2**40), 0, 7], dtype=torch.int64)
    sd["int32"] = torch.tensor([[-7, 8]], dtype=torch.int32)
    sd["int16"] = torch.tensor([-300, 300], dtype=torch.int16)
    sd["int8"] = torch.tensor([-128, 127, 0], dtype=torch.int8)
    sd["uint8"] = torch.tensor([0, 255], dtype=torch.uint8)
    sd["mask"] = torch.tensor([True, False, True], dtype=torch.bool)
    sd["empty"] = torch.zeros(0, 3, dtype=torch.float32)
    sd["param"] = torch.nn.Parameter(torch.tensor([[0.125, -0.25]], dtype=torch.float32))
    # Expanded (stride 0) view.
    sd["expanded"] = torch.tensor([1.5, -1.0], dtype=torch.float32).reshape(2, 1).expand(2, 3)
    return sd


def values_of(t):
    t = t.detach().contiguous()
    if t.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        return [float(v) for v in t.to(torch.float64).flatten().tolist()]
    return [int(v) for v in t.to(torch.int64).flatten().tolist()]


DTYPE_NAMES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}


def describe(sd):
    return [
        {"name": k, "dtype": DTYPE_NAMES[v.dtype], "shape": list(v.shape), "values": values_of(v)}
        for k, v in sd.items()
    ]


def write_safetensors(path, sd, metadata):
    """The safetensors layout, straight from the spec (no safetensors package)."""
    header = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name, t in sd.items():
        raw = t.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def evil_pickle():
    """pickle protocol 2 for `os.system('touch MARKER')`, written opcode by opcode.

    Python itself would pickle os.system as 'posix system'; naming 'os system' matches the
    payloads found in the wild. Never unpickle this.
    """
    command = ("touch " + PWNED_MARKER).encode()
    return (
        b"\x80\x02"  # PROTO 2
        + b"cos\nsystem\n"  # GLOBAL os.system
        + b"q\x00"  # BINPUT 0
        + b"X" + struct.pack("<I", len(command)) + command  # BINUNICODE
        + b"q\x01"  # BINPUT 1
        + b"\x85"  # TUPLE1
        + b"q\x02"  # BINPUT 2
        + b"R"  # REDUCE
        + b"q\x03"  # BINPUT 3
        + b"."  # STOP
    )


def write_evil_zip(path):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("evil_zip/data.pkl", evil_pickle())
        z.writestr("evil_zip/byteorder", "little")
        z.writestr("evil_zip/version", "3\n")


def write_evil_legacy(path):
    with open(path, "wb") as f:
        f.write(b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.")  # magic number
        f.write(b"\x80\x02M\xe9\x03.")  # protocol version 1001
        buffer = io.BytesIO()
        import pickle

        pickle.dump({"protocol_version": 1001, "little_endian": True,
                     "type_sizes": {"short": 2, "int": 4, "long": 4}}, buffer, protocol=2)
        f.write(buffer.getvalue())
        f.write(evil_pickle())


def write_broken_zips(source):
    with zipfile.ZipFile(source) as z:
        records = [(info.filename, z.read(info.filename)) for info in z.infolist()]
    prefix = records[0][0].split("/")[0] + "/"
    for name, change in [
        ("broken_missing_storage.pth", lambda n, b: None if n == prefix + "data/3" else b),
        ("broken_big_endian.pth", lambda n, b: b"big" if n == prefix + "byteorder" else b),
    ]:
        with zipfile.ZipFile(os.path.join(OUT, name), "w", compression=zipfile.ZIP_STORED) as out:
            for n, b in records:
                b = change(n, b)
                if b is not None:
                    out.writestr(n, b)


def write_deflated_copy(source, path):
    """The same records, deflate-compressed, as `zip -r` would repack a checkpoint."""
    with zipfile.ZipFile(source) as z, zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for info in z.infolist():
            out.writestr(info.filename, z.read(info.filename))


def write_big_endian_legacy(path):
    import pickle

    with open(path, "wb") as f:
        f.write(b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.")
        f.write(b"\x80\x02M\xe9\x03.")
        pickle.dump({"protocol_version": 1001, "little_endian": False,
                     "type_sizes": {"short": 2, "int": 4, "long": 4}}, f, protocol=2)


def real_file_spots():
    spots = {}
    eff = os.path.join(MODELS, "efficientnet-lite0-57934424.pth")
    if os.path.exists(eff):
        sd = torch.load(eff, map_location="cpu", weights_only=True)
        stem = sd["_conv_stem.weight"]
        flat = stem.contiguous().flatten()
        spots["efficientnet-lite0-57934424.pth"] = {
            "count": len(sd),
            "first": list(sd.keys())[0],
            "last": list(sd.keys())[-1],
            "tensors": [
                {"name": "_conv_stem.weight", "dtype": "F32", "shape": list(stem.shape),
                 "stride": list(stem.stride()),
                 "indices": [0, 1, 2, 27, 100, 863],
                 "values": [float(flat[i]) for i in [0, 1, 2, 27, 100, 863]],
                 "sum": float(stem.double().sum()), "abssum": float(stem.double().abs().sum())},
                tensor_spot(sd, "_fc.bias"),
                tensor_spot(sd, "_blocks.15._project_conv.weight"),
            ],
        }
    # ../shared's ResNet50, and the seeded stand-in Scripts/make_resnet50_seeded.py writes without it.
    for res in [os.path.join(MODELS, "resnet50-random-bnstats.pth"),
                os.path.join(ROOT, ".cache", "models", "resnet50-seeded.pth")]:
        if os.path.exists(res):
            spots[os.path.basename(res)] = resnet50_spots(torch.load(res, map_location="cpu", weights_only=True))
    return spots


def resnet50_spots(sd):
    return {
        "count": len(sd),
        "first": list(sd.keys())[0],
        "last": list(sd.keys())[-1],
        "tensors": [
            tensor_spot(sd, "conv1.weight"),
            tensor_spot(sd, "fc.weight"),
            tensor_spot(sd, "fc.bias"),
            tensor_spot(sd, "layer4.2.bn3.running_var"),
            tensor_spot(sd, "bn1.num_batches_tracked"),
        ],
    }


def tensor_spot(sd, name):
    t = sd[name]
    flat = t.contiguous().flatten()
    n = flat.numel()
    indices = sorted({0, 1, n // 3, n // 2, n - 1}) if n > 1 else [0]
    return {"name": name, "dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape), "stride": list(t.stride()),
            "indices": indices, "values": [float(flat[i]) for i in indices],
            "sum": float(t.double().sum()), "abssum": float(t.double().abs().sum())}


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    sd = tiny_state_dict()
    torch.save(sd, os.path.join(OUT, "tiny_zip.pth"))
    torch.save(sd, os.path.join(OUT, "tiny_zip_p5.pth"), pickle_protocol=5)
    torch.save(sd, os.path.join(OUT, "tiny_legacy.pth"), _use_new_zipfile_serialization=False)
    nested = {"epoch": 7, "arch": "tiny", "state_dict": sd, "best": 0.5}
    torch.save(nested, os.path.join(OUT, "tiny_nested.pth"))
    # A real module's state_dict carries `_metadata` (set through BUILD) and num_batches_tracked.
    module = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch.nn.BatchNorm2d(3))
    module.train()(torch.randn(4, 2, 2, 2))
    module_sd = module.state_dict()
    torch.save({"model": module_sd, "step": 3}, os.path.join(OUT, "tiny_model_key.pth"), _use_new_zipfile_serialization=False)
    write_safetensors(os.path.join(OUT, "tiny.safetensors"), sd, {"format": "pt", "source": "make_checkpoint_fixtures.py"})
    write_evil_zip(os.path.join(OUT, "evil_zip.pth"))
    write_evil_legacy(os.path.join(OUT, "evil_legacy.pth"))
    write_broken_zips(os.path.join(OUT, "tiny_zip.pth"))
    write_deflated_copy(os.path.join(OUT, "tiny_zip.pth"), os.path.join(OUT, "tiny_zip_deflated.pth"))
    write_big_endian_legacy(os.path.join(OUT, "broken_big_endian_legacy.pth"))

    # Check the benign fixtures the way torch reads them.
    for name in ["tiny_zip.pth", "tiny_zip_p5.pth", "tiny_zip_deflated.pth", "tiny_legacy.pth"]:
        back = torch.load(os.path.join(OUT, name), weights_only=False)  # our own fixture
        assert list(back.keys()) == list(sd.keys()), name
        for k in sd:
            assert torch.equal(back[k], sd[k]), (name, k)

    expected = {
        "torch_version": torch.__version__,
        "pwned_marker": PWNED_MARKER,
        "tensors": describe(sd),
        "module_tensors": describe(module_sd),
        "safetensors_metadata": {"format": "pt", "source": "make_checkpoint_fixtures.py"},
        "real_files": real_file_spots(),
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    for name in sorted(os.listdir(OUT)):
        size = os.path.getsize(os.path.join(OUT, name))
        print(f"{name:24s} {size:8d} bytes")
        assert size < 50_000, name
    for file, info in expected["real_files"].items():
        print(file, info["count"], "tensors")
        for t in info["tensors"]:
            print(" ", t["name"], t["shape"], t["values"][:3])


if __name__ == "__main__":
    sys.exit(main())
