#!/usr/bin/env python3
"""ONNX Runtime fp32 ResNet50 latency: the baseline Octet's float executor is compared with.

Method (kept in the --json output so a number never travels without it):
  * ResNet50 is built here as a torch.nn.Module with torchvision's parameter names (torchvision
    is not installed), loaded strictly from the checkpoint, exported to ONNX (opset 17, batch 1,
    1x3x224x224, legacy TorchScript exporter: the new one needs onnxscript).
  * One InferenceSession: intra_op_num_threads=T, inter_op_num_threads=1, ORT_ENABLE_ALL graph
    optimizations, sequential execution. Input: a seeded N(0,1) tensor (latency of a dense CNN
    does not depend on the values).
  * Each round: W warm-up runs, then N timed runs of session.run (time.perf_counter per run).
  * With --octet-bin/--octet-model, each round also runs `octet bench` with the same T/N/W, and
    the two alternate (ORT, Octet, ORT, Octet, ...) so slow drift (thermal, a neighbour process)
    biases neither side. A side's median/p10/p90 is the median over rounds of its per-round value,
    the same rule for both sides, since Octet only reports summaries.

Usage:
    python3 Scripts/bench_onnxruntime_float.py --model-pth ../shared/models/resnet50-random-bnstats.pth \
        --threads 1 --iterations 50 --warmup 10 [--octet-bin .build/release/octet --octet-model M] \
        [--rounds 2] [--json out/bench_float.json] [--onnx-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import onnxruntime as ort
import torch
import torch.nn as nn

# ---------------------------------------------------------------------------------------------
# ResNet50 with torchvision's module names, so load_state_dict(strict=True) accepts both our
# checkpoint and torchvision's own resnet50-0676ba61.pth.


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, width, stride, downsample):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        # torchvision "v1.5": the stride is on the 3x3 conv.
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = 64
        for i, (width, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], 1):
            layers = []
            for b in range(blocks):
                s = stride if b == 0 else 1
                down = None
                if b == 0 and (s != 1 or inplanes != width * 4):
                    down = nn.Sequential(nn.Conv2d(inplanes, width * 4, 1, stride=s, bias=False), nn.BatchNorm2d(width * 4))
                layers.append(Bottleneck(inplanes, width, s, down))
                inplanes = width * 4
            setattr(self, f"layer{i}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def load_resnet50(path: str) -> ResNet50:
    model = ResNet50()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


# ---------------------------------------------------------------------------------------------


def summarize(samples_ms: list[float]) -> dict:
    a = np.asarray(samples_ms)
    med = float(np.median(a))
    return {
        "median_ms": med,
        "p10_ms": float(np.percentile(a, 10)),
        "p90_ms": float(np.percentile(a, 90)),
        "images_per_s": 1000.0 / med,
    }


def combine_rounds(rounds: list[dict]) -> dict:
    out = {k: statistics.median(r[k] for r in rounds) for k in ("median_ms", "p10_ms", "p90_ms")}
    out["images_per_s"] = 1000.0 / out["median_ms"]
    return out


def cosine(a, b) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def export_onnx(model: nn.Module, path: str) -> None:
    x = torch.zeros(1, 3, 224, 224)
    # The legacy exporter is deprecated but still ships, and it needs no onnxscript; its
    # warning would otherwise be the loudest line of every benchmark run.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
    warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
    torch.onnx.export(
        model, (x,), path, opset_version=17, dynamo=False,
        input_names=["input"], output_names=["logits"], do_constant_folding=True,
    )


def make_session(path: str, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def time_ort(sess, x, iterations, warmup) -> dict:
    feed = {"input": x}
    for _ in range(warmup):
        sess.run(None, feed)
    samples = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        sess.run(None, feed)
        samples.append((time.perf_counter() - t0) * 1000.0)
    return summarize(samples)


def time_octet(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "octet_bench.json")
        cmd = [args.octet_bin, "bench", args.octet_model, "--threads", str(args.threads),
               "--iterations", str(args.iterations), "--warmup", str(args.warmup), "--json", out]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` exited {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
        with open(out) as f:
            result = json.load(f)
    missing = [k for k in ("median_ms", "p10_ms", "p90_ms") if k not in result]
    if missing:
        raise RuntimeError(f"octet bench JSON lacks {missing}: {result}")
    return result


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-pth", required=True, help="torchvision-layout ResNet50 state_dict")
    ap.add_argument("--octet-bin", help="path to the octet CLI (optional)")
    ap.add_argument("--octet-model", help="model file passed to `octet bench` (optional)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds per side")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--onnx-dir", help="keep the exported .onnx here (default: a temp dir, deleted)")
    args = ap.parse_args()
    if bool(args.octet_bin) != bool(args.octet_model):
        ap.error("--octet-bin and --octet-model go together")
    if args.threads < 1 or args.iterations < 1 or args.warmup < 0 or args.rounds < 1:
        ap.error("--threads, --iterations and --rounds must be >= 1, --warmup >= 0")
    if args.octet_bin and not os.access(args.octet_bin, os.X_OK):
        ap.error(f"--octet-bin {args.octet_bin} is not an executable file")

    # The sanity check and export are not timed; keep torch from competing for cores afterwards.
    torch.set_num_threads(max(1, args.threads))
    model = load_resnet50(args.model_pth)

    tmp = None
    onnx_dir = args.onnx_dir
    if onnx_dir is None:
        tmp = tempfile.TemporaryDirectory()
        onnx_dir = tmp.name
    os.makedirs(onnx_dir, exist_ok=True)
    onnx_path = os.path.join(onnx_dir, "resnet50_fp32_opset17.onnx")
    export_onnx(model, onnx_path)
    sess = make_session(onnx_path, args.threads)

    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(x)).numpy()
    ort_logits = sess.run(None, {"input": x})[0]
    sanity = {"cosine": cosine(torch_logits, ort_logits),
              "max_abs_diff": float(np.abs(torch_logits - ort_logits).max())}
    print(f"ORT vs torch logits (seeded N(0,1) input): cosine {sanity['cosine']:.9f}, "
          f"max |diff| {sanity['max_abs_diff']:.3g}")
    if sanity["cosine"] <= 0.9999:
        print("error: the exported ONNX model does not reproduce torch's logits", file=sys.stderr)
        return 1

    # Other work on the machine skews every number; record how busy it was.
    load_before = os.getloadavg()[0]
    ort_rounds, octet_rounds, octet_error = [], [], None
    for r in range(args.rounds):
        ort_rounds.append(time_ort(sess, x, args.iterations, args.warmup))
        print(f"round {r + 1}: ORT fp32 median {ort_rounds[-1]['median_ms']:.2f} ms", flush=True)
        if args.octet_bin and octet_error is None:
            try:
                octet_rounds.append(time_octet(args))
                print(f"round {r + 1}: Octet float median {octet_rounds[-1]['median_ms']:.2f} ms", flush=True)
            except (RuntimeError, OSError, json.JSONDecodeError) as e:
                octet_error = str(e)
                print(f"error: octet bench failed: {e}", file=sys.stderr)

    load_after = os.getloadavg()[0]
    ort_summary = combine_rounds(ort_rounds)
    result = {
        "method": {
            "model": os.path.basename(args.model_pth),
            "input": "1x3x224x224 float32, seeded N(0,1)",
            "threads": args.threads, "iterations": args.iterations, "warmup": args.warmup,
            "rounds": args.rounds,
            "statistic": "per round: median/p10/p90 of per-run wall time; overall: median over rounds",
            "order": "ORT then Octet within each round" if args.octet_bin else "ORT only",
            "onnx": "opset 17, torch.onnx.export(dynamo=False), ORT_ENABLE_ALL, sequential, inter_op 1",
        },
        "machine": {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_1min": [round(load_before, 2), round(load_after, 2)]},
        "onnxruntime": {"version": ort.__version__, "fp32": ort_summary, "rounds": ort_rounds},
        "sanity": sanity,
    }

    print()
    print(f"{'':28}{'median ms':>11}{'p10 ms':>9}{'p90 ms':>9}{'img/s':>9}")
    print(f"{'ONNX Runtime fp32':28}{ort_summary['median_ms']:11.2f}{ort_summary['p10_ms']:9.2f}"
          f"{ort_summary['p90_ms']:9.2f}{ort_summary['images_per_s']:9.2f}")
    if octet_rounds:
        oct_summary = combine_rounds(octet_rounds)
        ratio = oct_summary["median_ms"] / ort_summary["median_ms"]
        print(f"{'Octet float':28}{oct_summary['median_ms']:11.2f}{oct_summary['p10_ms']:9.2f}"
              f"{oct_summary['p90_ms']:9.2f}{oct_summary['images_per_s']:9.2f}")
        print(f"ratio Octet/ORT (median): {ratio:.3f}  (threads {args.threads})")
        result["octet"] = {"model": args.octet_model, "float": oct_summary, "rounds": octet_rounds}
        result["ratio_octet_over_ort"] = ratio
    if octet_error:
        result["octet_error"] = octet_error
    # The load average counts this benchmark too; more runnable tasks than CPUs means sharing.
    if max(load_before, load_after) > (os.cpu_count() or 1) + 0.5:
        print(f"warning: 1-min load average {load_before:.1f} -> {load_after:.1f} on "
              f"{os.cpu_count()} CPUs: other processes competed for the cores", file=sys.stderr)

    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        tmp_json = args.json + ".tmp"
        with open(tmp_json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        os.replace(tmp_json, args.json)
        print("wrote", args.json)
    if tmp is not None:
        tmp.cleanup()
    return 1 if octet_error else 0


if __name__ == "__main__":
    sys.exit(main())
