"""The KServe InferenceService example of docs/serving-triton.md against the kserve SDK's models.

kserve pins psutil<6 and kdtool's stack has psutil 7, so the SDK is not in the dev environment: the test
skips there and runs where the ``docs`` extra is installed (``python -m venv v && v/bin/pip install -e .[docs]
pytest``). The same check runs by hand: ``python docs/kserve/check_inferenceservice.py docs/kserve/*.yaml``.
"""

from __future__ import annotations

import copy
import runpy
from pathlib import Path

import pytest

pytest.importorskip("kserve", reason="kserve is not installed (docs extra; it pins psutil<6, so it needs an "
                                     "environment of its own)")
yaml = pytest.importorskip("yaml")

DOCS = Path(__file__).resolve().parents[1] / "docs" / "kserve"


def test_inferenceservice_example_is_valid_and_the_check_has_teeth():
    check = runpy.run_path(str(DOCS / "check_inferenceservice.py"))["check_document"]
    doc = yaml.safe_load((DOCS / "inferenceservice-triton.yaml").read_text(encoding="utf-8"))
    assert check(doc) == []
    bad = copy.deepcopy(doc)
    bad["spec"]["predictor"]["minReplica"] = bad["spec"]["predictor"].pop("minReplicas")
    bad["spec"]["predictor"]["triton"]["resources"]["limits"] = "8 cpus"
    errors = check(bad)
    assert any("minReplica: not a field of V1beta1PredictorSpec" in e for e in errors), errors
    assert any("resources.limits: expected a mapping" in e for e in errors), errors
