"""The trainer's Accelerator: runs with different precisions follow one another in one process."""

import pytest

pytest.importorskip("accelerate")

from kdtool.distill.runtime import accelerator_for  # noqa: E402


def test_a_bf16_run_after_an_fp32_run_in_the_same_process():
    # Accelerate's AcceleratorState is process-wide and refuses a change of precision; a recipe
    # (fp32 finetune, then a bf16 distill) or the test suite runs trainings one after another.
    assert accelerator_for("no").mixed_precision == "no"
    assert accelerator_for("bf16").mixed_precision == "bf16"
    assert accelerator_for("no").mixed_precision == "no"
