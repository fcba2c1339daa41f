"""Does this device compute what the bundle was certified with? The checks a bundle gets when it opens.

Two checks, both on the engine that will answer (:func:`check_on_device`):

- the INT8 arithmetic class the bundle was exported for (``manifest.int8.target``) against the one this
  engine runs on (:func:`kdtool.bundle.arithmetic.this_machine`, or TensorRT): another class is said in
  one warning line, and refused with ``strict``;
- the bundle's self-test (:mod:`kdtool.bundle.selftest`): its golden windows through this engine, compared
  with the logits they gave where the bundle was certified. A failure is :class:`DeviceCheckFailed`
  (exit 1): ``answer``, ``validate`` and ``serve`` do not run a bundle whose self-test fails.
"""

from __future__ import annotations

import logging

from kdtool.bundle.arithmetic import get_arithmetic, this_machine
from kdtool.bundle.precision import manifest_precision
from kdtool.bundle.selftest import SelfTestResult
from kdtool.engines.base import BundleEngine, QAEngine
from kdtool.errors import DeviceCheckFailed, EnvironmentUnsupported

log = logging.getLogger("kdtool.device")


def arithmetic_note(engine: BundleEngine) -> str | None:
    """One line when the engine's INT8 arithmetic is not the class the bundle was exported for, else None."""
    section = engine.manifest.get("int8")
    precision = manifest_precision(engine.manifest)
    if not isinstance(section, dict) or precision is None or not precision.int8:
        return None
    target = str(section.get("target", ""))
    here = "tensorrt" if engine.kind == "tensorrt" else this_machine().arithmetic
    if not target or target == here:
        return None
    where = "TensorRT" if here == "tensorrt" else this_machine().describe()
    exactly = ("ONNX Runtime runs its exact u8 x u8 kernels here" if get_arithmetic(here).u8s8_saturates
               else "its integer products are exact here too")
    return (f"bundle {engine.path} was exported for {target} INT8 arithmetic ({section.get('weights', '?')} weights) "
            f"and runs on {where}: {exactly}, and the self-test checks the logits; export it with the device profile "
            "of this machine (kdtool profiles) for its own form")


def check_on_device(engine: QAEngine, *, self_test: bool = True, strict: bool = False) -> SelfTestResult | None:
    """The device checks of a bundle engine (a model directory has none); the self-test result, if one ran."""
    if not isinstance(engine, BundleEngine):
        return None
    note = arithmetic_note(engine)
    if note and strict:
        raise EnvironmentUnsupported(f"{note}; --strict refuses it")
    if note:
        log.warning(note)
    if not self_test:
        return None
    result = engine.self_test()
    if result is None:
        missing = (f"bundle {engine.path} carries no self-test for {engine.graph_member or 'its engine'} (exported by "
                   "an older kdtool); export it again to check it on this device")
        if strict:
            raise EnvironmentUnsupported(f"{missing}; --strict refuses it")
        log.warning(missing)
        return None
    engine.self_test_result = result
    if not result.passed:
        raise DeviceCheckFailed(f"bundle {engine.path}: {result.line()}; this device does not compute what the bundle "
                                "was certified with: export it for this device (kdtool export --profile) or pass "
                                "--no-self-test to run it anyway")
    return result

