#!/usr/bin/env python3
"""Runs a QDQ ONNX model written by `octet export` in ONNX Runtime and compares it with Octet.

Two modes:

  images  ORT on an image folder (with a labels.tsv), with the preprocessing the model's
          metadata_props records (`octet.preprocessing`: PIL bilinear resize of the shorter side,
          center crop, /255, mean/std in float32, as Octet's Preprocessing does), against Octet's
          int8 model on the same images (`octet classify --json`: its dequantized logits) and
          optionally the float model. Reports top-1 agreement ORT vs Octet int8, ORT vs float,
          Octet int8 vs float, top-1 against the labels, and the logits' closeness; JSON out.

      python3 Scripts/check_qdq_export.py images MODEL.onnx --int8 Q.safetensors \\
          [--float F.safetensors] --images DIR --octet-bin .build/release/octet [--limit N] \\
          [--threads T] --json out.json

  run     ORT on given inputs, for the Swift tests: reads {"input": {"shape": [...], "data": [...]},
          "tensors": [names]} as JSON, makes the named intermediate tensors graph outputs (with
          the `onnx` package), runs the model with ORT_ENABLE_ALL and writes
          {"outputs": {name: {"shape": [...], "data": [...]}}, "optimized_ops": {op: count}}.

      python3 Scripts/check_qdq_export.py run MODEL.onnx --request in.json --json out.json

ORT requantizes in float with round-half-to-even; Octet uses a 31-bit fixed-point multiplier
with ties toward +infinity (docs/quantization.md §3). The two are close, not bit-exact.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
from PIL import Image

from _ort_session import make_session


def optimized_ops(path: str) -> dict:
    """Op types of ORT's optimized graph: QLinearConv, QLinearAdd, QGemm... show the fusion."""
    import onnx

    m = onnx.load(path)
    return dict(sorted(collections.Counter(n.op_type for n in m.graph.node).items()))


def metadata(path: str) -> dict:
    meta = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    return meta


# ---------------------------------------------------------------------------------------------
# Preprocessing: torchvision's (Octet's Preprocessing): shorter side to R (long side truncated),
# PIL bilinear, center crop C with Python's round (half to even), /255, (x - mean) / std, float32.


def preprocess(path: str, resize: int, crop: int, mean, std) -> np.ndarray:
    with open(path, "rb") as f:
        img = Image.open(f).convert("RGB")
    w, h = img.size
    nw, nh = (resize, int(resize * h / w)) if w <= h else (int(resize * w / h), resize)
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.BILINEAR)
    if nw < crop or nh < crop:
        raise SystemExit(f"error: {path}: {nw}x{nh} after resize is smaller than the crop {crop}")
    left, top = int(round((nw - crop) / 2.0)), int(round((nh - crop) / 2.0))
    p = np.asarray(img.crop((left, top, left + crop, top + crop)), dtype=np.uint8)
    x = (p.astype(np.float32) / np.float32(255) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return x.transpose(2, 0, 1)[None].astype(np.float32)  # NCHW


def labels(folder: str) -> list[tuple[str, int]]:
    path = os.path.join(folder, "labels.tsv")
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                name, label = line.split("\t")
                rows.append((name, int(label)))
    return rows


def octet_logits(octet_bin: str, model: str, images: list[str]) -> np.ndarray:
    """`octet classify --json`: one logits row per image, in order (int8: dequantized logits)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "classify.json")
        cmd = [octet_bin, "classify", model, *images, "--top", "1", "--json", out]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"error: `octet classify {model}` exited {proc.returncode}: {proc.stderr.strip()}")
        with open(out) as f:
            results = json.load(f)["results"]
    if [r["image"] for r in results] != images:
        raise SystemExit("error: octet classify returned the images in another order")
    return np.asarray([r["logits"] for r in results], dtype=np.float64)


def cpu_info() -> dict:
    info = {"machine": platform.machine(), "python": platform.python_version(), "onnxruntime": ort.__version__}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        flags = next((l.split(":", 1)[1].split() for l in text.splitlines() if l.startswith("flags")), [])
        info["isa"] = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    except OSError:
        pass
    return info


def top1_agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a.argmax(1) == b.argmax(1)))


def images_mode(args) -> int:
    meta = metadata(args.model)
    if "octet.preprocessing" not in meta:
        raise SystemExit(f"error: {args.model} has no 'octet.preprocessing' metadata; was it written by `octet export`?")
    pre = json.loads(meta["octet.preprocessing"])
    rows = labels(args.images)[: args.limit] if args.limit else labels(args.images)
    paths = [os.path.join(args.images, name) for name, _ in rows]
    truth = np.asarray([label for _, label in rows])

    with tempfile.TemporaryDirectory() as tmp:
        optimized = os.path.join(tmp, "optimized.onnx")
        sess = make_session(args.model, args.threads, optimized)
        ops = optimized_ops(optimized)
    input_name = sess.get_inputs()[0].name
    ort_rows = []
    t0 = time.perf_counter()
    for i, path in enumerate(paths):
        x = preprocess(path, pre["resize_shorter"], pre["crop"], pre["mean"], pre["std"])
        ort_rows.append(sess.run(None, {input_name: x})[0][0])
        if sys.stderr.isatty() and (i % 50 == 49 or i == len(paths) - 1):
            print(f"\rORT {i + 1}/{len(paths)}", end="", file=sys.stderr)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    ort_seconds = time.perf_counter() - t0
    ort_logits = np.asarray(ort_rows, dtype=np.float64)

    print(f"octet classify {args.int8} on {len(paths)} images", file=sys.stderr)
    int8_logits = octet_logits(args.octet_bin, args.int8, paths)
    float_logits = None
    if args.float:
        print(f"octet classify {args.float} on {len(paths)} images", file=sys.stderr)
        float_logits = octet_logits(args.octet_bin, args.float, paths)

    diff = np.abs(ort_logits - int8_logits)
    span = np.abs(int8_logits).max(1)
    disagree = [
        {"image": rows[i][0], "label": int(truth[i]), "ort": int(ort_logits[i].argmax()), "octet_int8": int(int8_logits[i].argmax())}
        for i in np.nonzero(ort_logits.argmax(1) != int8_logits.argmax(1))[0]
    ]
    report = {
        "model": args.model,
        "int8_model": args.int8,
        "float_model": args.float,
        "images": args.images,
        "count": len(paths),
        "preprocessing": pre,
        "machine": cpu_info(),
        "ort_threads": args.threads,
        "ort_seconds": ort_seconds,
        "ort_optimized_ops": ops,
        "top1_agreement_ort_vs_octet_int8": top1_agreement(ort_logits, int8_logits),
        "top1": {"ort": float(np.mean(ort_logits.argmax(1) == truth)), "octet_int8": float(np.mean(int8_logits.argmax(1) == truth))},
        "logits_ort_vs_octet_int8": {
            "max_abs_diff_over_max_abs_logit": float((diff.max(1) / span).max()),
            "mean_abs_diff_over_max_abs_logit": float((diff.mean(1) / span).mean()),
            "mean_cosine": float(np.mean(np.sum(ort_logits * int8_logits, 1) / (np.linalg.norm(ort_logits, axis=1) * np.linalg.norm(int8_logits, axis=1)))),
        },
        "disagreements_ort_vs_octet_int8": disagree,
    }
    if float_logits is not None:
        report["top1_agreement_ort_vs_float"] = top1_agreement(ort_logits, float_logits)
        report["top1_agreement_octet_int8_vs_float"] = top1_agreement(int8_logits, float_logits)
        report["top1"]["float"] = float(np.mean(float_logits.argmax(1) == truth))
    text = json.dumps(report, indent=2)
    if args.json:
        tmp_path = args.json + ".tmp"
        with open(tmp_path, "w") as f:
            f.write(text + "\n")
        os.replace(tmp_path, args.json)
    summary = {k: v for k, v in report.items() if k not in ("disagreements_ort_vs_octet_int8", "preprocessing")}
    print(json.dumps(summary, indent=2))
    return 0


def run_mode(args) -> int:
    with open(args.request) as f:
        request = json.load(f)
    model_path = args.model
    with tempfile.TemporaryDirectory() as tmp:
        tensors = request.get("tensors", [])
        if tensors:
            import onnx

            m = onnx.load(args.model)
            for name in tensors:
                m.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.UINT8, None))
            model_path = os.path.join(tmp, "with_outputs.onnx")
            onnx.save(m, model_path)
        optimized = os.path.join(tmp, "optimized.onnx")
        sess = make_session(model_path, 1, optimized)
        ops = optimized_ops(optimized)
        x = np.asarray(request["input"]["data"], dtype=np.float32).reshape(request["input"]["shape"])
        names = [o.name for o in sess.get_outputs()]
        values = sess.run(names, {sess.get_inputs()[0].name: x})
    out = {
        "outputs": {n: {"shape": list(v.shape), "data": v.astype(np.float64).ravel().tolist()} for n, v in zip(names, values)},
        "optimized_ops": ops,
        "onnxruntime": ort.__version__,
    }
    with open(args.json, "w") as f:
        json.dump(out, f)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("images", help="ORT vs Octet int8 (and float) top-1 on an image folder")
    p.add_argument("model", help="the QDQ ONNX file (`octet export`)")
    p.add_argument("--int8", required=True, help="the Octet int8 model it was exported from")
    p.add_argument("--float", help="the float model, for ORT-vs-float agreement")
    p.add_argument("--images", required=True, help="folder with labels.tsv")
    p.add_argument("--octet-bin", default=".build/release/octet")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json")
    r = sub.add_parser("run", help="run the model on one input and return outputs and intermediate tensors")
    r.add_argument("model")
    r.add_argument("--request", required=True)
    r.add_argument("--json", required=True)
    args = parser.parse_args()
    return images_mode(args) if args.mode == "images" else run_mode(args)


if __name__ == "__main__":
    sys.exit(main())
