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
import sys
import tempfile

import onnxruntime as ort
import torch

from _bench_common import (check_ort_matches_torch, combine_rounds, export_onnx, load_resnet50,
                           machine_info, make_session, print_table, run_octet_bench, seeded_input,
                           time_ort, warn_if_loaded, write_json_atomic)


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

    x = seeded_input()
    sanity = check_ort_matches_torch(model, sess, x)
    if sanity is None:
        return 1

    # Other work on the machine skews every number; record how busy it was.
    load_before = os.getloadavg()[0]
    ort_rounds, octet_rounds, octet_error = [], [], None
    for r in range(args.rounds):
        ort_rounds.append(time_ort(sess, x, args.iterations, args.warmup))
        print(f"round {r + 1}: ORT fp32 median {ort_rounds[-1]['median_ms']:.2f} ms", flush=True)
        if args.octet_bin and octet_error is None:
            try:
                octet_rounds.append(run_octet_bench(args.octet_bin, args.octet_model, args.threads,
                                                    args.iterations, args.warmup))
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
        "machine": machine_info(load_before, load_after),
        "onnxruntime": {"version": ort.__version__, "fp32": ort_summary, "rounds": ort_rounds},
        "sanity": sanity,
    }

    rows = [("ONNX Runtime fp32", ort_summary)]
    if octet_rounds:
        oct_summary = combine_rounds(octet_rounds)
        rows.append(("Octet float", oct_summary))
        result["octet"] = {"model": args.octet_model, "float": oct_summary, "rounds": octet_rounds}
        result["ratio_octet_over_ort"] = oct_summary["median_ms"] / ort_summary["median_ms"]
    print_table(rows)
    if octet_rounds:
        print(f"ratio Octet/ORT (median): {result['ratio_octet_over_ort']:.3f}  (threads {args.threads})")
    if octet_error:
        result["octet_error"] = octet_error
    warn_if_loaded(load_before, load_after)

    if args.json:
        write_json_atomic(args.json, result)
    if tmp is not None:
        tmp.cleanup()
    return 1 if octet_error else 0


if __name__ == "__main__":
    sys.exit(main())
