"""The precision table (kdtool.bundle.precision) is the one place a precision is described: every row
round-trips through a manifest, the CLI offers exactly its rows, what each row decides is consistent, and
a new precision is one module plus one row (its export behaviour, kdtool.export.precisions)."""

from __future__ import annotations

import click
import pytest

from kdtool.bundle import manifest as B
from kdtool.bundle.manifest_schema import check_manifest
from kdtool.bundle.precision import (
    CUDA,
    PRECISIONS,
    TRT_BUILDER_FLAGS,
    TRT_PRECISIONS,
    get_precision,
    manifest_precision,
)
from kdtool.errors import InputError
from kdtool.export.precisions import PrecisionExport, precision_export


@pytest.mark.parametrize("name", list(PRECISIONS))
def test_every_row_round_trips_through_a_written_manifest(tmp_path, name):
    (tmp_path / "graph.bin").write_bytes(b"graph")  # any member: the table is what is checked
    B.write_manifest(tmp_path, B.new_manifest(model="graph.bin", precision=name))
    read = check_manifest(B.verify_bundle(tmp_path), tmp_path / B.MANIFEST)
    assert read["precision"] == name and manifest_precision(read) is PRECISIONS[name]


def test_the_cli_offers_exactly_the_rows_of_the_table():
    from kdtool.cli.export import command
    from kdtool.export.config import PRECISIONS as CONFIG_PRECISIONS

    option = next(p for p in command.params if p.name == "precision")
    assert isinstance(option.type, click.Choice) and tuple(option.type.choices) == tuple(PRECISIONS)
    assert CONFIG_PRECISIONS == tuple(PRECISIONS)


@pytest.mark.parametrize("row", list(PRECISIONS.values()), ids=list(PRECISIONS))
def test_each_row_is_consistent(row):
    behaviour = precision_export(row)
    assert isinstance(behaviour, PrecisionExport) and behaviour.row is row
    assert row.trt_precision in TRT_PRECISIONS and row.trt_precision in TRT_BUILDER_FLAGS
    assert row.int8 == (row.trt_precision == "int8")
    assert (CUDA in row.providers) == (not row.int8)  # ORT's CUDA provider does not run INT8 graphs
    assert behaviour.gates_bundle_parity == (row.name == "fp32")  # only FP32 is held to the exactness tolerance
    # a calibrated graph's TRT twin needs calibration as well
    assert not row.calibrated or behaviour.trt_needs_calibration
    assert 0 < row.self_test_cpu <= row.self_test_cuda  # a GPU engine runs other kernels than the export machine's CPU


def test_qat_is_one_row_that_needs_no_calibration():
    qat = get_precision("int8-qat")
    behaviour = precision_export(qat)
    assert not qat.calibrated and not behaviour.trt_needs_calibration and qat.trt_precision == "int8"
    assert [r.name for r in PRECISIONS.values() if r.calibrated] == ["int8-static"]


NEW_PRECISION = """
from kdtool.export.precisions.base import PrecisionExport


class Unfused(PrecisionExport):  # the FP32 graph without ORT's fusion, held to the exactness tolerance
    gates_bundle_parity = True

    def fuse(self, config, custom):
        return False
"""


def test_a_new_precision_is_one_module_and_one_row(tmp_path, roberta_dir):
    import json
    import subprocess
    import sys

    (tmp_path / "unfused_precision.py").write_text(NEW_PRECISION)
    bundle = tmp_path / "bundle"
    script = (f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
              "from kdtool.bundle.precision import CPU, PRECISIONS, Precision\n"
              "PRECISIONS['fp32-unfused'] = Precision('fp32-unfused', 'unfused_precision:Unfused', False, 'fp32', (CPU,))\n"
              "from kdtool.cli import main\n"
              f"main(['export', {str(roberta_dir)!r}, '-o', {str(bundle)!r}, '--precision', 'fp32-unfused', "
              "'--max-seq-length', '64'], standalone_mode=False)\n"
              f"main(['verify', {str(bundle)!r}, '--run'], standalone_mode=False)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["precision"] == "fp32-unfused" and manifest["fusion"] == {} and manifest["int8"] is None
    assert "self-test PASS" in done.stdout


def test_an_unknown_precision_names_the_choices():
    with pytest.raises(InputError, match="int8-qat"):
        get_precision("int4")
    assert manifest_precision({"precision": "int4"}) is None and manifest_precision({}) is None


def test_providers_follow_the_bundles_precision():
    pytest.importorskip("onnxruntime")
    from kdtool.engines.ort import choose_providers

    wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    for row in PRECISIONS.values():
        chosen = choose_providers({"precision": row.name}, "auto", wanted)
        assert set(chosen) <= set(row.providers) and chosen[-1] == "CPUExecutionProvider"
