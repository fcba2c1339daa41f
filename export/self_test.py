"""The bundle's self-test, made at export: golden windows and the logits its graphs give on this machine.

See :mod:`kdtool.bundle.selftest` for the format and the check a device runs; the bounds come from the
precision table (:attr:`kdtool.bundle.precision.Precision.self_test_bound`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdtool.bundle.arithmetic import ort_exactness_config, this_machine
from kdtool.bundle.precision import Precision
from kdtool.bundle.selftest import SELF_TEST_FILE, build_self_test
from kdtool.export.onnx_export import ort_session, run_session

SELF_TEST_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def certified_on() -> dict:
    """This machine as the manifest records it: INT8 class, CPU, flags, ONNX Runtime and its exactness config."""
    import onnxruntime as ort

    return {**this_machine().to_dict(), "onnxruntime": ort.__version__, "session_config": ort_exactness_config()}


def write_self_test(out: Path, batch: dict[str, np.ndarray], task, precision: Precision, graphs: list[str]) -> dict:
    """Write ``self_test.json`` into the bundle being made at ``out``; return the manifest's ``self_test`` section.

    ``batch`` holds the golden windows (the first parity batch: real text). ``graphs`` are the bundle's ONNX
    members an engine can run (``model.onnx``, ``model.trt.onnx``); a graph ONNX Runtime's CPU provider cannot
    run (some FP16 graphs) gets no expected logits, and is named under ``skipped``.
    """
    expected, skipped = {}, {}
    for rel in graphs:
        try:
            expected[rel] = run_session(ort_session(out / rel), batch, task.outputs)
        except Exception as err:  # onnxruntime raises its own exception types
            skipped[rel] = f"not runnable on ONNX Runtime CPU: {str(err).splitlines()[0][:120]}"
    section = {"file": None, "graphs": [], "skipped": skipped} if skipped else {"file": None, "graphs": []}
    if not expected:
        return section
    inputs = {n: batch[n] for n in SELF_TEST_INPUTS if n in batch}
    raw = build_self_test(inputs, task.outputs, task.per_token, expected, precision.self_test_bound,
                          made_on=certified_on())
    (out / SELF_TEST_FILE).write_bytes(raw)
    return {**section, "file": SELF_TEST_FILE, "graphs": sorted(expected), "windows": int(len(batch["input_ids"])),
            "bound": precision.self_test_bound}
