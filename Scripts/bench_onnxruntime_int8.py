#!/usr/bin/env python3
"""Octet int8 vs ONNX Runtime int8 ResNet50 latency, side by side in one run.

Method (kept in the --json output so a number never travels without it):
  * ResNet50 is built as a torch.nn.Module with torchvision's names, loaded strictly from the
    checkpoint and exported to ONNX fp32 (opset 17, batch 1, 1x3x224x224), exactly as in
    bench_onnxruntime_float.py; the export must reproduce torch's logits (cosine > 0.9999).
  * ONNX Runtime quantizes it with its own tools, as its documentation recommends:
    quant_pre_process (symbolic shape inference, ORT basic optimizations, ONNX shape inference),
    then quantize_static with QuantFormat.QDQ, per_channel=True, activations QUInt8, weights
    QInt8 (U8S8), calibration MinMax (or Entropy/Percentile), reduce_range=False. Calibration
    data: the first C images of the calibration folder's labels.tsv, with torchvision's
    preprocessing (reference_numpy.preprocess: RGB, shorter side 256 PIL bilinear, center crop
    224, /255, ImageNet mean/std), NCHW float32.
  * The QDQ model is loaded once with ORT_ENABLE_ALL and optimized_model_filepath; counting the
    op types of the optimized graph shows whether ORT fused the Q/DQ pairs into integer kernels
    (QLinearConv, QLinearAdd, QGemm, ...) or left float Convs between them.
  * Timing as in the float script: one InferenceSession per model, intra_op_num_threads=T,
    inter_op_num_threads=1, ORT_ENABLE_ALL, sequential; each round runs W warm-ups and N timed
    session.run calls on a seeded N(0,1) input. Each round runs ORT int8, `octet bench` int8
    [, ORT fp32, `octet bench` float], in reverse order every other round, so slow drift biases
    no side. A side's median/p10/p90 is the median over rounds of its per-round value. The paired
    ratio is the median over rounds of each round's Octet / ORT median: on a machine whose speed
    moves in phases of seconds, it compares runs made next to each other.
  * --pin (with fewer threads than CPUs): every round runs both sides on the same CPUs (the
    script's affinity, inherited by `octet bench`), moving to the next CPU every two rounds (one
    in each order). On a VM whose cores run at different speeds, the scheduler otherwise puts the
    two processes on different cores, and the ratio measures the cores.
  * --interleave P (int8 only): instead of rounds, P pairs of single runs. Octet runs as
    `octet bench --paced` (loaded and warmed once, then one run per request, timed inside the
    process as ORT's session.run is timed here); each pair runs ORT then Octet, or Octet then ORT
    in every other pair, each turn doing --turn-runs runs (default 2) of which the last is timed:
    the untimed run refills the caches the other side just used. ORT's sessions set
    session.force_spinning_stop, so its pool threads stop spinning when session.run returns
    instead of competing with Octet's next run (_bench_common.make_session). The two runs of a pair are tens of milliseconds
    apart, so they see the same phase of a machine whose speed moves over seconds; the statistic
    is the median over pairs of Octet / ORT, with a bootstrap 95% interval. With --pin both run
    on one CPU, moving to the next CPU every 20 pairs.

Usage:
    python3 Scripts/bench_onnxruntime_int8.py --threads 1,2 --interleave 400 --pin \\
        --octet-bin .build/release/octet --octet-int8-model r50-q7.safetensors --json out/int8.json
    python3 Scripts/bench_onnxruntime_int8.py --threads 1 --iterations 50 --warmup 10 \\
        [--octet-bin .build/release/octet --octet-int8-model r50-int8.safetensors [--octet-backend auto]] \\
        [--with-float [--octet-float-model r50.safetensors]] [--check-accuracy 50] \\
        [--ort-calibration minmax|entropy|percentile] [--calibration-count 100] [--json out/bench_int8.json]
    # another model: its float ONNX (EfficientNet-Lite0 from Scripts/export_onnx_torch.py), quantized by ORT
    python3 Scripts/bench_onnxruntime_int8.py --fp32-onnx /tmp/onnx-real/efficientnet-lite0.onnx \
        --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5 --threads 1,2 --interleave 200 --pin \
        --octet-bin .build/release/octet --octet-int8-model lite0-q8.safetensors --json out/lite0.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quant_pre_process, quantize_static)

import reference_numpy as ref
from _bench_common import (ONNX_OPSET, PacedOctet, bootstrap_median_interval, check_ort_matches_torch,
                           combine_rounds, cosine, export_onnx, summarize,
                           load_resnet50, machine_info, make_session, print_table, run_octet_bench,
                           seeded_input, time_ort, warn_if_loaded, write_json_atomic)

CALIBRATION_METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                       "percentile": CalibrationMethod.Percentile}
QUANT_CONFIG = {"quant_format": "QDQ", "per_channel": True, "activation_type": "QUInt8",
                "weight_type": "QInt8", "reduce_range": False, "extra_options": {}}

# How both methods set up ORT's sessions (_bench_common.make_session), recorded in the JSON.
SESSION_TEXT = ("ORT_ENABLE_ALL, ORT_SEQUENTIAL, intra_op T, inter_op 1, CPUExecutionProvider, "
                "session.force_spinning_stop=1")

# Op types in ORT's optimized graph. A QDQ model runs in integer arithmetic only where ORT's
# QDQ transformers replaced DequantizeLinear -> op -> QuantizeLinear by one of these.
INT8_CONV_OPS = {"QLinearConv", "ConvInteger"}
INT8_OTHER_OPS = {"QLinearAdd", "QLinearMul", "QLinearMatMul", "MatMulInteger", "QGemm", "QLinearGlobalAveragePool",
                  "QLinearAveragePool", "QLinearConcat", "MatMulIntegerToFloat", "DynamicQuantizeMatMul"}
# NCHWc float convolutions keep the op type "Conv" (domain com.microsoft.nchwc).
FLOAT_CONV_OPS = {"Conv", "FusedConv"}
FLOAT_OTHER_OPS = {"Gemm", "FusedGemm", "MatMul", "FusedMatMul", "Add", "Sum", "GlobalAveragePool", "AveragePool"}


def sha256_text(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


# Normalization of the calibration images: torchvision's ImageNet mean/std, or --mean/--std for a
# model given with --fp32-onnx (EfficientNet-Lite0: 0.5, 0.5).
NORMALIZATION = {"mean": ref.IMAGENET_MEAN, "std": ref.IMAGENET_STD}


def nchw_input(path: str) -> np.ndarray:
    hwc, _ = ref.preprocess(path, NORMALIZATION["mean"], NORMALIZATION["std"])
    return np.ascontiguousarray(hwc.transpose(2, 0, 1)[None]).astype(np.float32)


class ImageReader(CalibrationDataReader):
    """Feeds `batch` preprocessed images at a time (the model's fixed batch), so 100 images never
    sit in memory at once. MinMax ranges do not depend on how the images are grouped."""

    def __init__(self, paths: list[str], batch: int = 1):
        self.paths, self.batch = list(paths), batch

    def get_next(self):
        if not self.paths:
            return None
        group, self.paths = self.paths[:self.batch], self.paths[self.batch:]
        return {"input": np.concatenate([nchw_input(p) for p in group])}


def first_images(folder: str, count: int) -> list[tuple[str, int]]:
    items = ref.read_labels(folder)
    if len(items) < count:
        raise SystemExit(f"error: {folder}/labels.tsv lists {len(items)} images, {count} were asked for")
    return [(os.path.join(folder, name), label) for name, label in items[:count]]


# ---------------------------------------------------------------------------------------------
# Cached models. Every file name carries a hash of what made it, so changing the checkpoint,
# the calibration set or a library version makes a new file instead of reusing a stale one.


def fp32_onnx(model, model_pth: str, onnx_dir: str, batch: int = 1) -> str:
    what = {"checkpoint_sha256": ref.sha256_of(model_pth), "torch": torch.__version__, "opset": ONNX_OPSET}
    if batch > 1:  # batch 1 keeps the key (and the cached file) it always had
        what["batch"] = batch
    key = sha256_text(what)[:12]
    suffix = f"_b{batch}" if batch > 1 else ""
    path = os.path.join(onnx_dir, f"resnet50_fp32_opset{ONNX_OPSET}{suffix}_{key}.onnx")
    if not os.path.exists(path):
        print(f"exporting {path}", flush=True)
        export_onnx(model, path, batch)
    return path


def int8_onnx(fp32_path: str, name: str, onnx_dir: str, calibration: list[str], method: str,
              batch: int = 1) -> tuple[str, dict]:
    key_inputs = {
        "fp32_onnx_sha256": ref.sha256_of(fp32_path), "onnxruntime": ort.__version__, "onnx": onnx.__version__,
        "quantization": QUANT_CONFIG, "calibration_method": method,
        "calibration_images": [os.path.relpath(p, os.path.dirname(os.path.dirname(p))) for p in calibration],
        "preprocessing": ref.preprocessing_spec(NORMALIZATION["mean"], NORMALIZATION["std"]),
    }
    key = sha256_text(key_inputs)[:12]
    suffix = f"_b{batch}" if batch > 1 else ""  # the key already differs: the fp32 model does
    stem = os.path.join(onnx_dir, f"{name}_int8_qdq_u8s8_{method}{suffix}_{key}")
    path = stem + ".onnx"
    if os.path.exists(path):
        return path, key_inputs
    # quant_pre_process and quantize_static write their outputs directly; writing to a
    # .partial name and renaming keeps a killed run from leaving a truncated model in the cache.
    pre = stem + ".preprocessed.partial.onnx"
    part = stem + ".partial.onnx"
    print(f"ORT quant_pre_process -> quantize_static ({method}, {len(calibration)} images) -> {path}", flush=True)
    quant_pre_process(fp32_path, pre)
    quantize_static(pre, part, ImageReader(calibration, batch), quant_format=QuantFormat.QDQ, per_channel=True,
                    reduce_range=False, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CALIBRATION_METHODS[method], extra_options={})
    os.remove(pre)
    os.replace(part, path)
    with open(stem + ".json", "w") as f:  # what the hash in the name stands for
        json.dump(key_inputs, f, indent=1)
    return path, key_inputs


# ---------------------------------------------------------------------------------------------
# Does ORT run it in int8?


def op_counts(path: str) -> dict:
    graph = onnx.load(path, load_external_data=False).graph
    return dict(sorted(Counter(n.op_type for n in graph.node).items()))


def classify_ops(counts: dict) -> dict:
    def total(ops):
        return sum(n for op, n in counts.items() if op in ops)

    return {"int8_conv": total(INT8_CONV_OPS), "float_conv": total(FLOAT_CONV_OPS),
            "int8_other": total(INT8_OTHER_OPS), "float_other": total(FLOAT_OTHER_OPS),
            "QuantizeLinear": counts.get("QuantizeLinear", 0), "DequantizeLinear": counts.get("DequantizeLinear", 0),
            "nodes": sum(counts.values())}


def inspect_int8(int8_path: str) -> tuple[dict, list[str]]:
    optimized = int8_path[: -len(".onnx")] + ".ort_optimized.onnx"
    make_session(int8_path, 1, optimized_model_path=optimized)  # loading writes the file
    qdq, opt = op_counts(int8_path), op_counts(optimized)
    summary = classify_ops(opt)
    convs_in_qdq = qdq.get("Conv", 0)
    print(f"QDQ model: {convs_in_qdq} Conv, {qdq.get('QuantizeLinear', 0)} QuantizeLinear, "
          f"{qdq.get('DequantizeLinear', 0)} DequantizeLinear")
    print("ORT optimized graph (ORT_ENABLE_ALL): " + ", ".join(f"{op} {n}" for op, n in opt.items()))
    print(f"  int8 convs {summary['int8_conv']}, float convs {summary['float_conv']}, "
          f"other int8 ops {summary['int8_other']}, other float compute ops {summary['float_other']}")
    warnings = []
    if summary["float_conv"]:
        warnings.append(f"ORT left {summary['float_conv']} of {convs_in_qdq} convolutions in FLOAT "
                        f"(only {summary['int8_conv']} became QLinearConv/ConvInteger): ORT int8 numbers "
                        f"are partly float time")
    if summary["int8_conv"] == 0:
        warnings.append("ORT's optimized graph has NO integer convolution: this is not an int8 run")
    for w in warnings:
        print(f"\n!!! WARNING: {w} !!!\n", file=sys.stderr)
    return {"quantized_model": qdq, "ort_optimized": opt, "summary": summary,
            "optimized_model": os.path.basename(optimized)}, warnings


def check_accuracy(fp32_sess, int8_sess, folder: str, count: int) -> dict:
    """ORT int8 against ORT fp32 on real images. Agreement and cosine are the signal; top-1 against
    the labels is recorded but means nothing for the random-weight ResNet50."""
    agree, top5_hit, cosines, fp32_right, int8_right = 0, 0, [], 0, 0
    for path, label in first_images(folder, count):
        x = nchw_input(path)
        f = fp32_sess.run(None, {"input": x})[0][0]
        q = int8_sess.run(None, {"input": x})[0][0]
        agree += int(np.argmax(f) == np.argmax(q))
        top5_hit += int(np.argmax(f) in ref.top_k(q, 5))
        cosines.append(cosine(f, q))
        fp32_right += int(np.argmax(f) == label)
        int8_right += int(np.argmax(q) == label)
    result = {"images": count, "folder": os.path.basename(folder), "top1_agreement": agree / count,
              "fp32_top1_in_int8_top5": top5_hit / count, "logits_cosine_mean": float(np.mean(cosines)),
              "logits_cosine_min": float(np.min(cosines)),
              "top1_vs_labels": {"fp32": fp32_right / count, "int8": int8_right / count}}
    print(f"ORT int8 vs ORT fp32 on {count} images of {result['folder']}: top-1 agreement "
          f"{agree}/{count}, fp32 top-1 in int8 top-5 {top5_hit}/{count}, logits cosine mean "
          f"{result['logits_cosine_mean']:.5f} min {result['logits_cosine_min']:.5f}")
    return result


# ---------------------------------------------------------------------------------------------


def parse_args():
    shared = ref.DEFAULT_SHARED
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-pth", default=os.path.join(shared, "models", ref.RESNET50_FILE),
                    help="torchvision-layout ResNet50 state_dict (default: %(default)s)")
    ap.add_argument("--fp32-onnx", help="time ORT's quantization of this float ONNX model (input 'input', "
                    "1x3x224x224, e.g. EfficientNet-Lite0 from Scripts/export_onnx_torch.py) instead of "
                    "the ResNet50 exported from --model-pth; no torch comparison is made")
    ap.add_argument("--mean", help="with --fp32-onnx: the calibration images' normalization mean, "
                    "three comma-separated values (default: ImageNet's)")
    ap.add_argument("--std", help="with --fp32-onnx: the normalization std (default: ImageNet's)")
    ap.add_argument("--onnx-dir", default=os.path.join(ref.REPO_ROOT, ".cache", "onnx"),
                    help="cache of the fp32, int8 and ORT-optimized .onnx files (default: %(default)s)")
    ap.add_argument("--calibration-images", default=os.path.join(shared, "data", "imagenet-train-calibration-500"),
                    help="folder with labels.tsv; its first --calibration-count images calibrate ORT")
    ap.add_argument("--calibration-count", type=int, default=100)
    ap.add_argument("--ort-calibration", choices=sorted(CALIBRATION_METHODS), default="minmax")
    ap.add_argument("--octet-bin", help="path to the octet CLI (optional)")
    ap.add_argument("--octet-int8-model", help="int8 model file passed to `octet bench`")
    ap.add_argument("--octet-backend", help="pass `--backend X` to `octet bench` for the int8 model "
                    "(reference|scalar|avx2|avx512vnni|amx|auto); not passed when omitted")
    ap.add_argument("--with-float", action="store_true", help="also time ORT fp32 (and `octet bench "
                    "--octet-float-model` when --octet-bin is given)")
    ap.add_argument("--octet-float-model", help="float model file passed to `octet bench` with --with-float")
    ap.add_argument("--check-accuracy", type=int, default=0, metavar="N",
                    help="compare ORT int8 with ORT fp32 on the first N images of --val-images")
    ap.add_argument("--val-images", default=os.path.join(shared, "data", "imagenet-val-1300"))
    ap.add_argument("--threads", default="1", help="threads (default 1); with --interleave a comma list "
                    "such as 1,2: one interleaved series per count, one after the other in one run")
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds per side")
    ap.add_argument("--pin", action="store_true",
                    help="run both sides of a round on the same CPUs, rotating every two rounds")
    ap.add_argument("--batch", type=int, default=1, help="images per run (default 1; other batches need "
                    "--interleave; ORT gets a model exported and quantized at that fixed batch)")
    ap.add_argument("--interleave", type=int, default=0, metavar="P",
                    help="int8 only: time P interleaved pairs of single runs instead of rounds")
    ap.add_argument("--turn-runs", type=int, default=2, metavar="K",
                    help="with --interleave: runs per turn, the last one timed (default: %(default)s)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    try:
        args.thread_counts = [int(t) for t in args.threads.split(",")]
    except ValueError:
        ap.error(f"--threads {args.threads!r}: expected a count or a comma list of counts")
    if len(args.thread_counts) > 1 and not args.interleave:
        ap.error("a list of thread counts needs --interleave")
    if min(args.thread_counts) < 1:
        ap.error("thread counts must be >= 1")
    args.threads = args.thread_counts[0]
    if args.threads < 1 or args.iterations < 1 or args.warmup < 0 or args.rounds < 1:
        ap.error("--threads, --iterations and --rounds must be >= 1, --warmup >= 0")
    if args.batch < 1 or (args.batch > 1 and not args.interleave):
        ap.error("--batch must be >= 1, and a batch above 1 needs --interleave")
    if args.batch > 1 and (args.calibration_count % args.batch or args.check_accuracy):
        ap.error("with --batch B, --calibration-count must be a multiple of B, and --check-accuracy is not run")
    if args.interleave < 0 or not 1 <= args.turn_runs <= 1000:
        ap.error("--interleave must be >= 0 and --turn-runs 1...1000")
    if args.interleave and (not args.octet_bin or args.with_float):
        ap.error("--interleave times Octet int8 against ORT int8: it needs --octet-bin and not --with-float")
    if args.calibration_count < 1 or args.check_accuracy < 0:
        ap.error("--calibration-count must be >= 1 and --check-accuracy >= 0")
    if args.octet_bin:
        if not os.access(args.octet_bin, os.X_OK):
            ap.error(f"--octet-bin {args.octet_bin} is not an executable file")
        if not args.octet_int8_model:
            ap.error("--octet-bin needs --octet-int8-model")
        if args.with_float and not args.octet_float_model:
            ap.error("--with-float with --octet-bin needs --octet-float-model")
    elif args.octet_int8_model or args.octet_float_model or args.octet_backend:
        ap.error("--octet-int8-model, --octet-float-model and --octet-backend need --octet-bin")
    if args.octet_float_model and not args.with_float:
        ap.error("--octet-float-model is only timed with --with-float")
    if (args.mean or args.std) and not args.fp32_onnx:
        ap.error("--mean and --std go with --fp32-onnx (the ResNet50 export uses ImageNet's)")
    if args.fp32_onnx and args.batch > 1:
        ap.error("--fp32-onnx takes batch-1 models only")
    if args.fp32_onnx and args.with_float:
        ap.error("--with-float times the ResNet50 export; it does not go with --fp32-onnx")
    for option, text in (("mean", args.mean), ("std", args.std)):
        if text:
            try:
                values = tuple(float(v) for v in text.split(","))
            except ValueError:
                values = ()
            if len(values) != 3 or (option == "std" and min(values) <= 0):
                ap.error(f"--{option} {text!r}: expected three comma-separated numbers"
                         + (", each above 0" if option == "std" else ""))
            NORMALIZATION[option] = values
    for path in (args.fp32_onnx, None if args.fp32_onnx else args.model_pth, args.octet_int8_model,
                 args.octet_float_model):
        if path and not os.path.isfile(path):
            ap.error(f"{path}: no such file")
    return args


class Side:
    """One timed contender: its per-round summaries, and the error that stopped it, if any."""

    def __init__(self, name: str, run):
        self.name, self.run, self.rounds, self.reported, self.error = name, run, [], {}, None

    def time_round(self, r: int) -> None:
        if self.error:
            return
        try:
            result = self.run()
        except (RuntimeError, OSError, json.JSONDecodeError) as e:
            self.error = str(e)
            print(f"error: {self.name} failed: {e}", file=sys.stderr)
            return
        self.rounds.append({k: result[k] for k in ("median_ms", "p10_ms", "p90_ms", "images_per_s") if k in result})
        # What octet bench says about itself (backend, runtime, ...), kept from the last round.
        self.reported = {k: v for k, v in result.items() if k not in self.rounds[-1]}
        print(f"round {r + 1}: {self.name} median {result['median_ms']:.2f} ms", flush=True)

    def summary(self) -> dict | None:
        return combine_rounds(self.rounds) if self.rounds else None


def pinned_cpus(cpus: list[int], block: int, threads: int) -> list[int]:
    """The `threads` CPUs for the block-th stretch of a --pin run: the next CPU each block."""
    first = block % len(cpus)
    return [cpus[(first + j) % len(cpus)] for j in range(threads)]


def interleaved(args, threads: int, int8_sess, x, backend_args) -> dict:
    """--interleave: pairs of single runs, ORT and Octet side by side; see the method text."""
    feed = {"input": x}
    octet = PacedOctet(args.octet_bin, args.octet_int8_model, threads, args.warmup, backend_args)
    if octet.header.get("runtime") != "int8":
        octet.close()
        raise RuntimeError(f"{args.octet_int8_model} runs as {octet.header.get('runtime')!r} in `octet bench`, "
                           f"not int8: --octet-int8-model needs an int8 model (`octet quantize`)")
    for _ in range(args.warmup):
        int8_sess.run(None, feed)
    cpus = sorted(os.sched_getaffinity(0))
    pin = args.pin and threads < len(cpus)
    ort_ms, octet_ms, pinning = [], [], []

    def ort_turn() -> float:
        for _ in range(args.turn_runs - 1):
            int8_sess.run(None, feed)
        t0 = time.perf_counter()
        int8_sess.run(None, feed)
        return (time.perf_counter() - t0) * 1000.0

    try:
        for i in range(args.interleave):
            if pin and i % 20 == 0:
                chosen = pinned_cpus(cpus, i // 20, threads)
                os.sched_setaffinity(0, chosen)
                octet.pin(chosen)
                pinning.append(chosen)
            if i % 2 == 0:
                ort_ms.append(ort_turn())
                octet_ms.append(octet.run(args.turn_runs)[-1])
            else:
                octet_ms.append(octet.run(args.turn_runs)[-1])
                ort_ms.append(ort_turn())
            if (i + 1) % 50 == 0 or i + 1 == args.interleave:
                print(f"{threads} thread(s), pair {i + 1}/{args.interleave}: Octet {statistics.median(octet_ms):.2f} ms, "
                      f"ORT {statistics.median(ort_ms):.2f} ms (medians so far)", flush=True)
    finally:
        os.sched_setaffinity(0, cpus)
        if octet.proc.poll() is None:  # a process that died has already been reported
            octet.close()
    ratios = [a / b for a, b in zip(octet_ms, ort_ms)]
    # The machine's phases, seen through the baseline: pairs in which ORT ran at or below its own
    # median time (the machine's faster phases) and above it.
    cut = statistics.median(ort_ms)
    halves = {name: [r for r, t in zip(ratios, ort_ms) if keep(t)] for name, keep in
              (("ort_fast_half", lambda t: t <= cut), ("ort_slow_half", lambda t: t > cut))}
    by_phase = {name: {"pairs": len(v), "median": statistics.median(v) if v else None,
                       "pairs_octet_faster": sum(r < 1 for r in v)} for name, v in halves.items()}
    summaries = {"ort_int8": summarize(ort_ms), "octet_int8": summarize(octet_ms)}
    for summary in summaries.values():  # per run of `batch` images
        summary["images_per_s"] *= args.batch
    return {**summaries, "octet_reported": octet.header,
            "paired": {"median": statistics.median(ratios), "interval95": bootstrap_median_interval(ratios),
                       "pairs_octet_faster": sum(r < 1 for r in ratios), "pairs": len(ratios),
                       "by_ort_phase": by_phase},
            "samples_ms": {"ort_int8": ort_ms, "octet_int8": octet_ms}, "pinned_cpus_per_20_pairs": pinning or None}


def main() -> int:
    args = parse_args()
    # Export, calibration and the sanity checks are not timed; keep torch off the other cores.
    torch.set_num_threads(max(1, args.threads))
    os.makedirs(args.onnx_dir, exist_ok=True)
    x = seeded_input(args.batch)
    if args.fp32_onnx:
        fp32_path = args.fp32_onnx
        name = os.path.splitext(os.path.basename(fp32_path))[0]
        fp32_sess = make_session(fp32_path, args.threads)
        sanity = {"fp32_onnx": os.path.basename(fp32_path), "checked_against_torch": False}
    else:
        model = load_resnet50(args.model_pth)
        fp32_path = fp32_onnx(model, args.model_pth, args.onnx_dir, args.batch)
        name = "resnet50"
        fp32_sess = make_session(fp32_path, args.threads)
        sanity = check_ort_matches_torch(model, fp32_sess, x)
        if sanity is None:
            return 1
        del model

    calibration = [p for p, _ in first_images(args.calibration_images, args.calibration_count)]
    int8_path, cache_key = int8_onnx(fp32_path, name, args.onnx_dir, calibration, args.ort_calibration, args.batch)
    ops, warnings = inspect_int8(int8_path)
    int8_sess = make_session(int8_path, args.threads)
    accuracy = check_accuracy(fp32_sess, int8_sess, args.val_images, args.check_accuracy) if args.check_accuracy else None

    def octet(model_path, extra=()):
        return lambda: run_octet_bench(args.octet_bin, model_path, args.threads, args.iterations, args.warmup, extra)

    backend_args = ["--backend", args.octet_backend] if args.octet_backend else []
    if args.interleave:
        backend_args += ["--batch", str(args.batch)] if args.batch > 1 else []
        load_before = os.getloadavg()[0]
        series = {}
        for threads in args.thread_counts:
            try:
                sess = int8_sess if threads == args.threads else make_session(int8_path, threads)
                pairs = interleaved(args, threads, sess, x, backend_args)
            except (RuntimeError, OSError, ValueError) as e:
                print(f"error: Octet int8 failed: {e}", file=sys.stderr)
                return 1
            series[str(threads)] = pairs
        load_after = os.getloadavg()[0]
        for threads, pairs in series.items():
            print(f"\n{threads} thread(s):")
            print_table([("ORT int8", pairs["ort_int8"]), ("Octet int8", pairs["octet_int8"])])
            p = pairs["paired"]
            print(f"paired ratio Octet int8 / ORT int8: median over {p['pairs']} pairs {p['median']:.3f} "
                  f"(95% interval {p['interval95'][0]:.3f}-{p['interval95'][1]:.3f}), Octet faster in "
                  f"{p['pairs_octet_faster']} of {p['pairs']} pairs")
            for name, h in p["by_ort_phase"].items():
                if h["pairs"]:
                    print(f"  pairs where ORT ran in its {name.split('_')[1]} half: median ratio {h['median']:.3f}, "
                          f"Octet faster in {h['pairs_octet_faster']} of {h['pairs']}")
            print(f"ratio of medians: {pairs['octet_int8']['median_ms'] / pairs['ort_int8']['median_ms']:.3f} "
                  f"(threads {threads}; below 1 means Octet is faster)")
        warn_if_loaded(load_before, load_after)
        if args.json:
            write_json_atomic(args.json, {
                "method": {"text": __doc__.split("Usage:")[0].strip(), "model": os.path.basename(args.fp32_onnx or args.model_pth),
                           "input": f"{args.batch}x3x224x224 float32, seeded N(0,1), batch {args.batch}",
                           "threads": args.thread_counts,
                           "pairs": args.interleave, "turn_runs": args.turn_runs, "warmup": args.warmup,
                           "pinned": args.pin, "octet_backend_arg": args.octet_backend,
                           "session": SESSION_TEXT,
                           "ort_quantization": {**QUANT_CONFIG, "calibration_method": args.ort_calibration,
                                                "calibration_count": args.calibration_count}},
                "machine": machine_info(load_before, load_after), "onnxruntime": {"version": ort.__version__},
                "octet": {"model": args.octet_int8_model},
                "by_threads": {t: {"summary": {"ort_int8": v["ort_int8"], "octet_int8": v["octet_int8"]},
                                   "paired_ratio": v["paired"], "octet_reported": v["octet_reported"],
                                   "samples_ms": v["samples_ms"],
                                   "pinned_cpus_per_20_pairs": v["pinned_cpus_per_20_pairs"]}
                               for t, v in series.items()},
                "op_counts": ops, "sanity": {"fp32_onnx_vs_torch": sanity}, "warnings": warnings,
                "files": {"fp32_onnx": fp32_path, "int8_onnx": int8_path, "int8_cache_key": cache_key}})
        return 0
    sides = {"ort_int8": Side("ORT int8", lambda: time_ort(int8_sess, x, args.iterations, args.warmup))}
    if args.octet_bin:
        sides["octet_int8"] = Side("Octet int8", octet(args.octet_int8_model, backend_args))
    if args.with_float:
        sides["ort_fp32"] = Side("ORT fp32", lambda: time_ort(fp32_sess, x, args.iterations, args.warmup))
        if args.octet_bin:
            sides["octet_float"] = Side("Octet float", octet(args.octet_float_model))

    # Other work on the machine skews every number; record how busy it was.
    load_before = os.getloadavg()[0]
    # The order within a round flips every round, so neither side always runs first after the
    # other's load.
    cpus = sorted(os.sched_getaffinity(0))
    pinning = []
    for r in range(args.rounds):
        if args.pin and args.threads < len(cpus):
            chosen = pinned_cpus(cpus, r // 2, args.threads)
            os.sched_setaffinity(0, chosen)
            pinning.append(chosen)
        for side in (list(sides.values()) if r % 2 == 0 else list(sides.values())[::-1]):
            side.time_round(r)
    os.sched_setaffinity(0, cpus)
    load_after = os.getloadavg()[0]

    for key, want in (("octet_int8", "int8"), ("octet_float", "float32")):
        if key not in sides or not sides[key].rounds:
            continue
        runtime = sides[key].reported.get("runtime")
        if runtime is None:
            warnings.append(f"`octet bench` did not report a runtime for {sides[key].name}: cannot confirm "
                            f"it ran {want}")
        elif runtime != want:
            warnings.append(f"`octet bench` reported runtime {runtime!r} for {sides[key].name}, not {want!r}: "
                            f"that row is mislabeled")
        else:
            continue
        print(f"warning: {warnings[-1]}", file=sys.stderr)

    summaries = {k: s.summary() for k, s in sides.items()}
    print_table([(s.name, summaries[k]) for k, s in sides.items() if summaries[k]])
    ratios = {}
    for num, den in (("octet_int8", "ort_int8"), ("octet_int8", "ort_fp32"), ("octet_float", "ort_fp32"),
                     ("ort_int8", "ort_fp32"), ("octet_int8", "octet_float")):
        if summaries.get(num) and summaries.get(den):
            ratios[f"{num}/{den}"] = summaries[num]["median_ms"] / summaries[den]["median_ms"]
            print(f"ratio {sides[num].name} / {sides[den].name} (median): {ratios[f'{num}/{den}']:.3f}")
    # The machine's speed drifts in phases of seconds; a round's two sides ran next to each other,
    # so the per-round ratio cancels the phase better than the ratio of medians over rounds.
    paired = {}
    for num, den in (("octet_int8", "ort_int8"), ("octet_float", "ort_fp32")):
        a, b = sides.get(num), sides.get(den)
        if a and b and a.rounds and len(a.rounds) == len(b.rounds):
            per_round = [x["median_ms"] / y["median_ms"] for x, y in zip(a.rounds, b.rounds)]
            paired[f"{num}/{den}"] = {"median": statistics.median(per_round), "per_round": per_round,
                                      "rounds_numerator_faster": sum(q < 1 for q in per_round)}
            print(f"paired ratio {a.name} / {b.name}: median over rounds {statistics.median(per_round):.3f}, "
                  f"faster in {sum(q < 1 for q in per_round)} of {len(per_round)} rounds")
    print(f"(threads {args.threads}; a ratio below 1 means the numerator is faster)")
    warn_if_loaded(load_before, load_after)

    result = {
        "method": {
            "text": __doc__.split("Usage:")[0].strip(),
            "model": os.path.basename(args.fp32_onnx or args.model_pth),
            "input": "1x3x224x224 float32, seeded N(0,1), batch 1",
            "threads": args.threads, "iterations": args.iterations, "warmup": args.warmup, "rounds": args.rounds,
            "pinned_cpus_per_round": pinning or None,
            "statistic": "per round: median/p10/p90 of per-run wall time; overall: median over rounds",
            "order": " then ".join(s.name for s in sides.values()) + " in even rounds, reversed in odd ones",
            "session": SESSION_TEXT,
            "ort_quantization": {**QUANT_CONFIG, "calibration_method": args.ort_calibration,
                                 "calibration_images": os.path.basename(args.calibration_images.rstrip("/")),
                                 "calibration_count": args.calibration_count,
                                 "pre_process": "onnxruntime.quantization.quant_pre_process defaults"},
            "octet_backend_arg": args.octet_backend,
        },
        "machine": machine_info(load_before, load_after),
        "threads": args.threads,
        "onnxruntime": {"version": ort.__version__},
        "octet": {},
        "ratios": ratios,
        "paired_ratios": paired,
        "op_counts": ops,
        "sanity": {"fp32_onnx_vs_torch": sanity},
        "files": {"fp32_onnx": fp32_path, "int8_onnx": int8_path, "int8_cache_key": cache_key},
        "warnings": warnings,
    }
    if accuracy:
        result["accuracy"] = accuracy
    for key, side in sides.items():
        group, kind = key.split("_")
        entry = {"summary": summaries[key], "rounds": side.rounds}
        if group == "octet":
            entry.update(model=args.octet_int8_model if kind == "int8" else args.octet_float_model,
                         reported=side.reported)
        if side.error:
            entry["error"] = side.error
        result["onnxruntime" if group == "ort" else "octet"][kind] = entry
    if args.json:
        write_json_atomic(args.json, result)
    return 1 if any(s.error for s in sides.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
