"""The bundle's self-test, made at export: golden windows and the logits its graphs give on this machine.

See :mod:`kdtool.bundle.selftest` for the format and the check a device runs. A device passes when its logits
are within the bundle's bound of the ones the export machine gave: the larger of the precision's floor
(:attr:`kdtool.bundle.precision.Precision.self_test_bound`, what correct devices of another class differ by)
and the bundle's own certified error (its max |logit diff| against the reference the export checked it
with; twice that on GPU engines). A device whose error is within what the bundle was certified with passes;
a saturating product, a wrong provider or a damaged kernel moves the logits further.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdtool.bundle.arithmetic import ort_exactness_config, this_machine
from kdtool.bundle.precision import Precision
from kdtool.bundle.selftest import SELF_TEST_FILE, build_self_test
from kdtool.data import MODEL_INPUTS
from kdtool.export.onnx_export import ort_session, run_session

SELF_TEST_INPUTS = MODEL_INPUTS


def certified_on() -> dict:
    """This machine as the manifest records it: INT8 class, CPU, flags, ONNX Runtime and its exactness config."""
    import onnxruntime as ort

    return {**this_machine().to_dict(), "onnxruntime": ort.__version__, "session_config": ort_exactness_config()}


def self_test_bound(precision: Precision, certified_error: float | None) -> dict[str, float]:
    """The bundle's bound: the precision's floor, or its certified error where that is larger (rounded up)."""
    error = float(certified_error or 0.0)
    return {"cpu": float(f"{max(precision.self_test_cpu, error):.3g}"),
            "cuda": float(f"{max(precision.self_test_cuda, 2 * error):.3g}")}


def write_self_test(out: Path, batch: dict[str, np.ndarray], task, precision: Precision, graphs: list[str],
                    certified_error: float | None = None) -> dict:
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
    bound = self_test_bound(precision, certified_error)
    raw = build_self_test(inputs, task.outputs, task.per_token, expected, bound, made_on=certified_on())
    (out / SELF_TEST_FILE).write_bytes(raw)
    return {**section, "file": SELF_TEST_FILE, "graphs": sorted(expected), "windows": int(len(batch["input_ids"])),
            "bound": bound}
