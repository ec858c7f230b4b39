#!/usr/bin/env python3
"""Makes the OctetImages test fixtures and their Pillow / torch goldens.

Pillow is the oracle: torchvision's ImageFolder opens images with
`PIL.Image.open(path).convert("RGB")` and its Resize/CenterCrop run on that PIL image, so the Swift
decoder and preprocessing must reproduce Pillow's pixels bit for bit. torchvision is not needed:
its Resize/CenterCrop/ToTensor/Normalize on a PIL image are spelled out below with Pillow and torch
calls, following torchvision's code.

Writes into Tests/OctetImagesTests/Fixtures:
  png/*.png         tiny PNGs of every color type and bit depth, some Adam7-interlaced, written
                    by the small encoder below (Pillow cannot write 16-bit RGB or interlaced PNG)
  jpeg/*.jpg        tiny JPEGs saved by Pillow: baseline 4:2:0/4:2:2/4:4:4, progressive,
                    grayscale, CMYK, restart markers, 1x1
  bad/*             truncated JPEG and PNG, text named .png, empty file, PNG/JPEG headers that
                    claim huge sizes, a JPEG missing only its EOI marker (Pillow refuses it
                    too), PNG data named .jpg
  resize/*.png      synthetic inputs for the resize goldens
  decode.json       per fixture: size, SHA-256 of Pillow's RGB bytes, a few pixels
  resize.json       Pillow's resize to several sizes (up and down) of the synthetic inputs, and
                    the full transform of them
  shared.json       the full transform of a few real images in ../shared/data (not copied here)
  png120.json       SHA-256 of Pillow's RGB decode of every PNG in imagenet-train-png-120
  jpeg-sweep-<folder>.tsv   file name, TAB, pixel_checksum (below) of Pillow's RGB decode, for
                    every JPEG in imagenet-val-1300 and imagenet-train-calibration-500

Pillow version matters: from Pillow 13 on, resize runs the vertical pass first when the height
shrinks by more than twice as many pixels as the width (older Pillow always went horizontal first,
which rounds differently). The goldens record the Pillow version that made them.

Usage: python3 Scripts/make_image_goldens.py   (from the package root; needs Pillow >= 13, numpy,
torch)
"""

import hashlib
import io
import json
import os
import struct
import sys
import zlib

import numpy as np
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "Tests", "OctetImagesTests", "Fixtures")
SHARED_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def rgb_bytes(path: str) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def describe(im: Image.Image) -> dict:
    """Size, hash and a few pixels of an RGB image (pixels as [x, y, r, g, b])."""
    assert im.mode == "RGB"
    w, h = im.size
    a = np.asarray(im)
    points = sorted({(0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1), (w // 2, h // 2), (w // 3, (2 * h) // 3)})
    return {
        "width": w,
        "height": h,
        "sha256": sha256(a.tobytes()),
        "pixels": [[x, y, *map(int, a[y, x])] for x, y in points],
    }


# MARK: a small PNG encoder (every color type, bit depth, filter type, and Adam7)

ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def pack_row(samples: np.ndarray, bit_depth: int) -> bytes:
    """One row of samples (flattened over channels) as PNG bytes."""
    if bit_depth == 16:
        return samples.astype(">u2").tobytes()
    if bit_depth == 8:
        return samples.astype(np.uint8).tobytes()
    per_byte = 8 // bit_depth
    padded = np.zeros(-(-len(samples) // per_byte) * per_byte, dtype=np.uint16)
    padded[: len(samples)] = samples
    out = bytearray()
    for i in range(0, len(padded), per_byte):
        byte = 0
        for s in padded[i : i + per_byte]:
            byte = (byte << bit_depth) | int(s)
        out.append(byte)
    return bytes(out)


def paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def filter_rows(rows: list, bpp: int) -> bytes:
    """Filters each row with type (row index % 5), so every filter type is exercised."""
    out = bytearray()
    previous = bytes(len(rows[0])) if rows else b""
    for index, row in enumerate(rows):
        kind = index % 5
        filtered = bytearray(len(row))
        for i, x in enumerate(row):
            a = row[i - bpp] if i >= bpp else 0
            b = previous[i]
            c = previous[i - bpp] if i >= bpp else 0
            predictor = [0, a, b, (a + b) // 2, paeth(a, b, c)][kind]
            filtered[i] = (x - predictor) & 0xFF
        out.append(kind)
        out += filtered
        previous = row
    return bytes(out)


def write_png(path, samples, color_type, bit_depth, palette=None, trns=None, interlace=False):
    """samples: (h, w, channels) integer array of raw sample values."""
    h, w, c = samples.shape
    assert c == CHANNELS[color_type]
    bpp = max(1, c * bit_depth // 8)
    if interlace:
        raw = b""
        for x0, y0, dx, dy in ADAM7:
            sub = samples[y0::dy, x0::dx]
            if sub.shape[0] == 0 or sub.shape[1] == 0:
                continue
            raw += filter_rows([pack_row(r.reshape(-1), bit_depth) for r in sub], bpp)
    else:
        raw = filter_rows([pack_row(r.reshape(-1), bit_depth) for r in samples], bpp)
    compressed = zlib.compress(raw, 9)
    half = len(compressed) // 2
    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlace else 0))
    if palette is not None:
        png += chunk(b"PLTE", bytes(np.asarray(palette, dtype=np.uint8).reshape(-1)))
    if trns is not None:
        png += chunk(b"tRNS", trns)
    # Two IDAT chunks: decoders must join them.
    png += chunk(b"IDAT", compressed[:half]) + chunk(b"IDAT", compressed[half:])
    png += chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def expected_rgb(samples, color_type, bit_depth, palette=None) -> np.ndarray:
    """What Pillow's convert("RGB") should give, from first principles (checked against Pillow)."""
    s = samples.astype(np.int64)
    if color_type == 3:
        return np.asarray(palette, dtype=np.uint8)[s[..., 0]]
    if color_type in (0, 4):
        g = s[..., 0]
        if bit_depth < 8:
            g = g * 255 // ((1 << bit_depth) - 1)
        elif bit_depth == 16:
            # Pillow: 16-bit gray is mode I;16, which convert("RGB") clamps; gray+alpha keeps the high byte.
            g = np.minimum(g, 255) if color_type == 0 else g >> 8
        return np.repeat(g[..., None], 3, axis=2).astype(np.uint8)
    rgb = s[..., :3]
    return (rgb >> 8 if bit_depth == 16 else rgb).astype(np.uint8)


def make_pngs(rng, goldens):
    os.makedirs(os.path.join(FIXTURES, "png"), exist_ok=True)
    palette = rng.integers(0, 256, size=(16, 3))
    palette256 = rng.integers(0, 256, size=(256, 3))
    cases = [
        # name, color type, bit depth, size (w, h), interlace
        ("gray1", 0, 1, (13, 7), False),
        ("gray2", 0, 2, (13, 7), False),
        ("gray4", 0, 4, (13, 7), False),
        ("gray8", 0, 8, (13, 7), False),
        ("gray16", 0, 16, (13, 7), False),
        ("gray8-trns", 0, 8, (13, 7), False),
        ("graya8", 4, 8, (13, 7), False),
        ("graya16", 4, 16, (13, 7), False),
        ("palette1", 3, 1, (13, 7), False),
        ("palette4", 3, 4, (13, 7), False),
        ("palette8-trns", 3, 8, (13, 7), False),
        ("rgb8", 2, 8, (13, 7), False),
        ("rgb8-trns", 2, 8, (13, 7), False),
        ("rgb16", 2, 16, (13, 7), False),
        ("rgba8", 6, 8, (13, 7), False),
        ("rgba16", 6, 16, (13, 7), False),
        ("rgb8-adam7", 2, 8, (29, 17), True),
        ("gray2-adam7", 0, 2, (13, 11), True),
        ("gray16-adam7", 0, 16, (11, 9), True),
        ("rgba16-adam7", 6, 16, (10, 9), True),
        ("palette4-adam7", 3, 4, (9, 13), True),
        ("rgb8-1x1", 2, 8, (1, 1), False),
        ("gray8-1x1", 0, 8, (1, 1), False),
        ("rgb8-1x1-adam7", 2, 8, (1, 1), True),
    ]
    for name, color_type, bit_depth, (w, h), interlace in cases:
        c = CHANNELS[color_type]
        if color_type == 3:
            top = 16 if bit_depth <= 4 else 256
            top = min(top, 1 << bit_depth)
            samples = rng.integers(0, top, size=(h, w, 1))
            pal = palette[:top] if top <= 16 else palette256
        else:
            samples = rng.integers(0, 1 << bit_depth, size=(h, w, c))
            if bit_depth == 16 and color_type == 0:
                # Mostly small values, so the clamp to 255 is visible next to unclamped values.
                samples[::2] = rng.integers(0, 256, size=samples[::2].shape)
            pal = None
        trns = None
        if name == "gray8-trns":
            trns = struct.pack(">H", int(samples[0, 0, 0]))
        elif name == "rgb8-trns":
            trns = struct.pack(">HHH", *map(int, samples[0, 0]))
        elif name == "palette8-trns":
            trns = bytes(rng.integers(0, 256, size=40).astype(np.uint8))
        path = os.path.join(FIXTURES, "png", name + ".png")
        write_png(path, samples, color_type, bit_depth, palette=pal, trns=trns, interlace=interlace)
        decoded = rgb_bytes(path)
        want = expected_rgb(samples, color_type, bit_depth, pal)
        assert np.array_equal(np.asarray(decoded), want), f"Pillow disagrees with the encoder on {name}"
        goldens["png/" + name + ".png"] = describe(decoded)

    # Files from Pillow's own encoder (its zlib settings and filter choices).
    base = (np.indices((23, 31)).sum(axis=0) * 5 % 256).astype(np.uint8)
    rgb = np.stack([base, base[::-1], rng.integers(0, 256, size=base.shape, dtype=np.uint8)], axis=2)
    for name, im in [
        ("pillow-rgb", Image.fromarray(rgb, "RGB")),
        ("pillow-p", Image.fromarray(rgb, "RGB").quantize(37)),
        ("pillow-la", Image.fromarray(np.stack([base, base[::-1]], axis=2), "LA")),
    ]:
        path = os.path.join(FIXTURES, "png", name + ".png")
        im.save(path, optimize=True)
        goldens["png/" + name + ".png"] = describe(rgb_bytes(path))


# MARK: JPEG fixtures

def synthetic_photo(rng, w, h) -> np.ndarray:
    """Smooth gradients, a hard-edged disc and some noise: exercises the IDCT and upsampling."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / 5.0) * np.cos(y / 7.0)
    g = 255 * x / max(w - 1, 1)
    b = 255 * y / max(h - 1, 1)
    disc = (x - w / 2) ** 2 + (y - h / 2) ** 2 < (min(w, h) / 3) ** 2
    r[disc], g[disc], b[disc] = 250, 30, 90
    img = np.stack([r, g, b], axis=2) + rng.normal(0, 12, size=(h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_jpegs(rng, goldens):
    os.makedirs(os.path.join(FIXTURES, "jpeg"), exist_ok=True)
    photo = Image.fromarray(synthetic_photo(rng, 61, 45), "RGB")
    cases = [
        ("baseline-420", photo, dict(quality=90, subsampling=2)),
        ("baseline-422", photo, dict(quality=90, subsampling=1)),
        ("baseline-444", photo, dict(quality=90, subsampling=0)),
        ("progressive-420", photo, dict(quality=85, subsampling=2, progressive=True)),
        ("optimized-q50", photo, dict(quality=50, optimize=True)),
        ("restart-420", photo, dict(quality=90, restart_marker_blocks=3)),
        ("gray", photo.convert("L"), dict(quality=90)),
        ("gray-progressive", photo.convert("L"), dict(quality=90, progressive=True)),
        ("cmyk", photo.convert("CMYK"), dict(quality=90)),
        ("rgb-1x1", photo.crop((10, 10, 11, 11)), dict(quality=95)),
        ("odd-17x9", photo.crop((3, 5, 20, 14)), dict(quality=80)),
    ]
    for name, im, options in cases:
        path = os.path.join(FIXTURES, "jpeg", name + ".jpg")
        im.save(path, "JPEG", **options)
        goldens["jpeg/" + name + ".jpg"] = describe(rgb_bytes(path))


def make_bad_inputs(goldens):
    bad = os.path.join(FIXTURES, "bad")
    os.makedirs(bad, exist_ok=True)
    with open(os.path.join(FIXTURES, "jpeg", "baseline-420.jpg"), "rb") as f:
        jpeg = f.read()
    with open(os.path.join(FIXTURES, "png", "rgb8-adam7.png"), "rb") as f:
        png = f.read()

    def write(name, data):
        with open(os.path.join(bad, name), "wb") as f:
            f.write(data)

    write("truncated.jpg", jpeg[: len(jpeg) // 2])
    write("truncated.png", png[: len(png) // 2])
    write("text.png", b"This is not an image, whatever its name says.\n")
    write("empty.png", b"")
    # A valid-looking IHDR for 100000 x 100000 RGB, then a tiny IDAT: must be refused before
    # anyone allocates 30 GB.
    huge = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
    huge += chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    write("huge-header.png", huge)
    # The same JPEG with its SOF claiming 60000 x 60000.
    sof = jpeg.index(b"\xff\xc0")
    patched = jpeg[: sof + 5] + struct.pack(">HH", 60000, 60000) + jpeg[sof + 9 :]
    write("huge-header.jpg", patched)
    # Missing only the EOI marker: all pixel data is present, but Pillow calls it truncated.
    assert jpeg.endswith(b"\xff\xd9")
    write("no-eoi.jpg", jpeg[:-2])
    # PNG data behind a .jpg name: the format comes from the signature.
    write("png-named.jpg", png)
    goldens["bad/png-named.jpg"] = describe(rgb_bytes(os.path.join(bad, "png-named.jpg")))

    for name in ["truncated.jpg", "truncated.png", "text.png", "empty.png", "no-eoi.jpg"]:
        try:
            rgb_bytes(os.path.join(bad, name))
        except Exception:  # noqa: BLE001 - Pillow refuses these too, which is the point
            continue
        sys.exit(f"Pillow unexpectedly decoded bad/{name}")


# MARK: torchvision's transform, on a PIL image

def torchvision_resize(im: Image.Image, size: int) -> Image.Image:
    """transforms.Resize(size) with an int size on a PIL image (torchvision >= 0.13)."""
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    return im.resize((new_w, new_h), Image.BILINEAR)


def torchvision_center_crop(im: Image.Image, crop: int) -> Image.Image:
    w, h = im.size
    if crop > w or crop > h:
        sys.exit("padding case not used by these goldens")
    top = int(round((h - crop) / 2.0))
    left = int(round((w - crop) / 2.0))
    return im.crop((left, top, left + crop, top + crop))


def to_tensor_normalize(im: Image.Image, mean, std) -> np.ndarray:
    """ToTensor() then Normalize(mean, std), returned as NHWC float32."""
    t = torch.from_numpy(np.array(im, np.uint8, copy=True))
    t = t.view(im.size[1], im.size[0], 3).permute((2, 0, 1)).contiguous()
    t = t.to(dtype=torch.float32).div(255)
    m = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)
    t = t.sub_(m).div_(s)
    return t.permute(1, 2, 0).contiguous().numpy()[None]


def describe_transform(im: Image.Image, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> dict:
    resized = torchvision_resize(im, 256)
    cropped = torchvision_center_crop(resized, 224)
    x = to_tensor_normalize(cropped, mean, std)
    flat = x.reshape(-1)
    picks = [0, 1, 2, 3 * 224 * 112 + 3 * 112 + 1, flat.size - 1]
    return {
        "resized_width": resized.size[0],
        "resized_height": resized.size[1],
        "resized_sha256": sha256(np.asarray(resized).tobytes()),
        "crop_sha256": sha256(np.asarray(cropped).tobytes()),
        "tensor_sha256": sha256(x.astype("<f4").tobytes()),
        "tensor_sum": float(flat.astype(np.float64).sum()),
        "tensor_mean": float(flat.astype(np.float64).mean()),
        "tensor_values": [[i, float(flat[i])] for i in picks],
    }


def make_resize_goldens(rng) -> dict:
    os.makedirs(os.path.join(FIXTURES, "resize"), exist_ok=True)
    y, x = np.mgrid[0:200, 0:300]
    pattern = np.stack(
        [(x * 255 // 299), (y * 255 // 199), (128 + 127 * np.sin(x / 9.0) * np.sin(y / 13.0)).astype(int)], axis=2
    ).astype(np.uint8)
    pattern[60:140:2, 100:200] = 255 - pattern[60:140:2, 100:200]  # hard horizontal stripes
    inputs = {
        "random-37x23.png": rng.integers(0, 256, size=(23, 37, 3), dtype=np.uint8),
        "random-160x120.png": rng.integers(0, 256, size=(120, 160, 3), dtype=np.uint8),
        "pattern-300x200.png": pattern,
    }
    targets = {
        "random-37x23.png": [(64, 40), (20, 11), (37, 50), (80, 23), (37, 9), (1, 1), (5, 3), (256, 159), (37, 23), (36, 22), (40, 5)],
        # Pillow 13 runs the vertical pass first when the height loses more than twice as many
        # pixels as the width: (150, 100) is just below that boundary, (151, 100) just above.
        "random-160x120.png": [(256, 192), (100, 75), (53, 40), (160, 256), (7, 120), (341, 256), (159, 121), (150, 100), (151, 100), (170, 60), (160, 30)],
        "pattern-300x200.png": [(384, 256), (150, 100), (299, 201), (97, 61), (1000, 3)],
    }
    out = {"resize": [], "transform": []}
    for name, array in inputs.items():
        path = os.path.join(FIXTURES, "resize", name)
        Image.fromarray(array, "RGB").save(path)
        im = rgb_bytes(path)
        assert np.array_equal(np.asarray(im), array)
        for w, h in targets[name]:
            out["resize"].append({"input": "resize/" + name, **describe(im.resize((w, h), Image.BILINEAR))})
        if min(im.size) >= 100:
            out["transform"].append({"input": "resize/" + name, "mean": IMAGENET_MEAN, "std": IMAGENET_STD, **describe_transform(im)})
            sym = [0.5, 0.5, 0.5]
            out["transform"].append({"input": "resize/" + name, "mean": sym, "std": sym, **describe_transform(im, sym, sym)})
    return out


def make_shared_goldens() -> dict:
    picks = [
        "imagenet-val-1300/ILSVRC2012_val_00000347.JPEG",
        "imagenet-val-1300/ILSVRC2012_val_00000355.JPEG",
        "imagenet-train-calibration-500/n01484850_great_white_shark.JPEG",
        "imagenet-train-calibration-500/n01494475_hammerhead.JPEG",
    ]
    calibration = os.path.join(SHARED_DATA, "imagenet-train-calibration-500")
    for f in sorted(os.listdir(calibration)):  # one grayscale JPEG and one portrait one
        if f.endswith(".JPEG"):
            with Image.open(os.path.join(calibration, f)) as im:
                if im.mode == "L" and not any("gray" in p for p in picks):
                    picks.append("imagenet-train-calibration-500/" + f)
                    break
    for f in sorted(os.listdir(calibration)):
        if f.endswith(".JPEG"):
            with Image.open(os.path.join(calibration, f)) as im:
                if im.size[0] < im.size[1]:
                    picks.append("imagenet-train-calibration-500/" + f)
                    break
    png_dir = os.path.join(SHARED_DATA, "imagenet-train-png-120")
    picks.append("imagenet-train-png-120/" + sorted(f for f in os.listdir(png_dir) if f.endswith(".png"))[0])
    out = []
    for rel in picks:
        im = rgb_bytes(os.path.join(SHARED_DATA, rel))
        out.append({"file": rel, "decoded": describe(im), **describe_transform(im)})
    return {"images": out}


def make_png120() -> dict:
    d = os.path.join(SHARED_DATA, "imagenet-train-png-120")
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".png"):
            im = rgb_bytes(os.path.join(d, f))
            out[f] = {"width": im.size[0], "height": im.size[1], "sha256": sha256(np.asarray(im).tobytes())}
    return out


def pixel_checksum(data: bytes) -> str:
    """The test suite's fast 64-bit checksum (PixelChecksum in Tests/OctetImagesTests/SHA256.swift):
    n XOR sum_i fmix64(w_i + i * 0x9E3779B97F4A7C15) mod 2^64 over the zero-padded little-endian
    64-bit words w_i."""
    padded = data + bytes(-len(data) % 8)
    w = np.frombuffer(padded, dtype="<u8").astype(np.uint64)
    with np.errstate(over="ignore"):
        x = w + np.arange(len(w), dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(33))) * np.uint64(0xFF51AFD7ED558CCD)
        x = (x ^ (x >> np.uint64(33))) * np.uint64(0xC4CEB9FE1A85EC53)
        x = x ^ (x >> np.uint64(33))
        total = int(x.sum(dtype=np.uint64))
    return f"{total ^ len(data):016x}"


def make_jpeg_sweep(folder: str) -> str:
    d = os.path.join(SHARED_DATA, folder)
    lines = []
    for f in sorted(os.listdir(d)):
        if f.endswith(".JPEG"):
            im = rgb_bytes(os.path.join(d, f))
            lines.append(f"{f}\t{pixel_checksum(np.asarray(im).tobytes())}")
    return "\n".join(lines) + "\n"


def write_json(name, value):
    with open(os.path.join(FIXTURES, name), "w") as f:
        json.dump(value, f, indent=1, sort_keys=True)
        f.write("\n")


def main():
    import PIL

    rng = np.random.default_rng(20240611)
    decode = {}
    make_pngs(rng, decode)
    make_jpegs(rng, decode)
    make_bad_inputs(decode)
    meta = {"pillow": PIL.__version__, "torch": torch.__version__}
    write_json("decode.json", {"generator": meta, "images": decode})
    write_json("resize.json", {"generator": meta, **make_resize_goldens(rng)})
    if os.path.isdir(SHARED_DATA):
        write_json("shared.json", {"generator": meta, **make_shared_goldens()})
        write_json("png120.json", {"generator": meta, "images": make_png120()})
        for folder in ["imagenet-val-1300", "imagenet-train-calibration-500"]:
            with open(os.path.join(FIXTURES, f"jpeg-sweep-{folder}.tsv"), "w") as f:
                f.write(make_jpeg_sweep(folder))
    else:
        print(f"note: {SHARED_DATA} not found; shared-data goldens left as they were")
    for dirpath, _, files in os.walk(FIXTURES):
        for f in files:
            size = os.path.getsize(os.path.join(dirpath, f))
            assert size < 100_000, f"{f} is {size} bytes; fixtures must stay under 100 KB"


if __name__ == "__main__":
    main()
