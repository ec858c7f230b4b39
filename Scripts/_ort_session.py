"""ONNX Runtime sessions as Octet's scripts open them (benchmarks and the QDQ export check).
Kept apart from _bench_common so that scripts which run in CI (without torch) can use it."""

from __future__ import annotations

import onnxruntime as ort


def make_session(path: str, threads: int, optimized_model_path: str | None = None) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # ORT's pool threads spin between its operators (kept), and by default keep spinning after
    # session.run returns, on the CPUs Octet runs on next: at two threads an Octet run started
    # right after ORT's took 52.7 ms instead of 30.5, and the next one 36.6 instead of 30.4.
    # force_spinning_stop ends the spinning when run returns; ORT's own time was unchanged
    # (32.3 against 32.4 ms, same run).
    so.add_session_config_entry("session.force_spinning_stop", "1")
    if optimized_model_path:
        so.optimized_model_filepath = optimized_model_path
        # ORT warns that an ORT_ENABLE_ALL graph is machine specific; it is only read back on
        # this machine, to count its op types.
        so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
