"""Helpers shared by the ONNX Runtime baseline scripts (bench_onnxruntime_float.py and
bench_onnxruntime_int8.py): the torchvision-layout ResNet50, ONNX export, ORT sessions, the timing
loop, `octet bench` as a subprocess, statistics and machine information.

Both scripts must time ORT the same way, or their numbers could not be compared; that is why the
timing loop and the session options live here once.
"""

from __future__ import annotations

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

from _ort_session import make_session  # noqa: F401 (re-exported for the bench scripts)

ONNX_OPSET = 17
INPUT_SHAPE = (1, 3, 224, 224)

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


def export_onnx(model: nn.Module, path: str, batch: int = 1) -> None:
    """A fixed batch (1 unless asked), Bx3x224x224, input "input", output "logits". Written next to
    `path` first and renamed, so an interrupted export never leaves a truncated model in a cache."""
    x = torch.zeros(batch, *INPUT_SHAPE[1:])
    # The legacy exporter is deprecated but still ships, and it needs no onnxscript; its
    # warning would otherwise be the loudest line of every benchmark run.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
    warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
    tmp = path + ".tmp"
    torch.onnx.export(
        model, (x,), tmp, opset_version=ONNX_OPSET, dynamo=False,
        input_names=["input"], output_names=["logits"], do_constant_folding=True,
    )
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# ONNX Runtime


def seeded_input(batch: int = 1) -> np.ndarray:
    """A seeded N(0,1) tensor: latency of a dense CNN does not depend on the values."""
    return np.random.default_rng(0).standard_normal((batch, *INPUT_SHAPE[1:])).astype(np.float32)


def check_ort_matches_torch(model: nn.Module, sess: ort.InferenceSession, x: np.ndarray) -> dict | None:
    """Returns the comparison, or None (after printing why) when the export is wrong."""
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(x)).numpy()
    ort_logits = sess.run(None, {"input": x})[0]
    sanity = {"cosine": cosine(torch_logits, ort_logits),
              "max_abs_diff": float(np.abs(torch_logits - ort_logits).max())}
    print(f"ORT vs torch logits (seeded N(0,1) input): cosine {sanity['cosine']:.9f}, "
          f"max |diff| {sanity['max_abs_diff']:.3g}")
    if sanity["cosine"] <= 0.9999:
        print("error: the exported ONNX model does not reproduce torch's logits", file=sys.stderr)
        return None
    return sanity


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


# ---------------------------------------------------------------------------------------------
# octet bench


def run_octet_bench(octet_bin: str, model: str, threads: int, iterations: int, warmup: int,
                    extra_args: list[str] | tuple = ()) -> dict:
    """Runs `octet bench` once and returns its JSON; raises RuntimeError on any failure."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "octet_bench.json")
        cmd = [octet_bin, "bench", model, "--threads", str(threads), "--iterations", str(iterations),
               "--warmup", str(warmup), *extra_args, "--json", out]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` exited {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
        with open(out) as f:
            result = json.load(f)
    missing = [k for k in ("median_ms", "p10_ms", "p90_ms") if k not in result]
    if missing:
        raise RuntimeError(f"octet bench JSON lacks {missing}: {result}")
    return result


class PacedOctet:
    """`octet bench --paced`: the model is loaded and warmed up once; each request runs it k times
    and returns the k wall times (ms) measured inside the process."""

    def __init__(self, octet_bin: str, model: str, threads: int, warmup: int, extra_args=()):
        self.cmd = [octet_bin, "bench", model, "--threads", str(threads), "--warmup", str(warmup),
                    *extra_args, "--paced"]
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        header = self.proc.stdout.readline()
        if not header:
            self._fail("exited before its first line")
        self.header = json.loads(header)

    def _fail(self, what: str):
        self.proc.kill()
        _, err = self.proc.communicate()
        raise RuntimeError(f"`{' '.join(self.cmd)}` {what}: {err.strip()}")

    def pin(self, cpus: list[int]) -> None:
        """Moves every thread of the process (the kernels' workers too) onto `cpus`."""
        for tid in os.listdir(f"/proc/{self.proc.pid}/task"):
            os.sched_setaffinity(int(tid), cpus)

    def run(self, count: int) -> list[float]:
        try:
            self.proc.stdin.write(f"{count}\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            self._fail("stopped reading its input")
        line = self.proc.stdout.readline()
        times = [float(t) for t in line.split()]
        if len(times) != count:
            self._fail(f"answered {line.strip()!r} to a request for {count} runs")
        return times

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            if self.proc.wait(timeout=60) != 0:
                raise RuntimeError(f"`{' '.join(self.cmd)}` exited {self.proc.returncode}: "
                                   f"{self.proc.stderr.read().strip()}")
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise RuntimeError(f"`{' '.join(self.cmd)}` did not exit at the end of its input")


# ---------------------------------------------------------------------------------------------
# Statistics


def summarize(samples_ms: list[float]) -> dict:
    a = np.asarray(samples_ms)
    med = float(np.median(a))
    return {
        "median_ms": med,
        "p10_ms": float(np.percentile(a, 10)),
        "p90_ms": float(np.percentile(a, 90)),
        "images_per_s": 1000.0 / med,
    }


def bootstrap_median_interval(values: list[float], draws: int = 2000, seed: int = 0) -> list[float]:
    """95% percentile-bootstrap interval of the median of `values`."""
    a = np.asarray(values)
    rng = np.random.default_rng(seed)
    medians = np.median(a[rng.integers(0, len(a), size=(draws, len(a)))], axis=1)
    return [float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))]


def combine_rounds(rounds: list[dict]) -> dict:
    """Median over rounds of each per-round statistic: the same rule for ORT and Octet, since
    Octet reports only summaries, not samples."""
    out = {k: statistics.median(r[k] for r in rounds) for k in ("median_ms", "p10_ms", "p90_ms")}
    out["images_per_s"] = 1000.0 / out["median_ms"]
    return out


def cosine(a, b) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def print_table(rows: list[tuple[str, dict]]) -> None:
    print()
    print(f"{'':28}{'median ms':>11}{'p10 ms':>9}{'p90 ms':>9}{'img/s':>9}")
    for name, s in rows:
        print(f"{name:28}{s['median_ms']:11.2f}{s['p10_ms']:9.2f}{s['p90_ms']:9.2f}{s['images_per_s']:9.2f}")


# ---------------------------------------------------------------------------------------------
# Machine

# The flags that decide which int8 kernels either side can use.
CPU_FLAGS_OF_INTEREST = ("avx2", "fma", "avx_vnni", "avx512f", "avx512bw", "avx512_vnni", "amx_tile", "amx_int8")


def _cpuinfo_field(name: str) -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    return _cpuinfo_field("model name") or platform.processor() or "unknown"


def cpu_flags() -> dict:
    flags = set((_cpuinfo_field("flags") or "").split())
    return {f: f in flags for f in CPU_FLAGS_OF_INTEREST}


def machine_info(load_before: float, load_after: float) -> dict:
    return {"cpu": cpu_name(), "cpu_flags": cpu_flags(), "logical_cpus": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(),
            "load_avg_1min": [round(load_before, 2), round(load_after, 2)]}


def warn_if_loaded(load_before: float, load_after: float) -> None:
    # The load average counts this benchmark too; more runnable tasks than CPUs means sharing.
    if max(load_before, load_after) > (os.cpu_count() or 1) + 0.5:
        print(f"warning: 1-min load average {load_before:.1f} -> {load_after:.1f} on "
              f"{os.cpu_count()} CPUs: other processes competed for the cores", file=sys.stderr)


def write_json_atomic(path: str, obj) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    print("wrote", path)
