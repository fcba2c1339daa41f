"""The precision table (kdtool.bundle.precision) is the one place a precision is described: every row
round-trips through a manifest, the CLI offers exactly its rows, and what each row decides is consistent."""

from __future__ import annotations

import click
import pytest

from kdtool.bundle import manifest as B
from kdtool.bundle.manifest_schema import check_manifest
from kdtool.bundle.precision import (
    CUDA,
    PRECISIONS,
    QUANTIZERS,
    TRT_BUILDER_FLAGS,
    TRT_GRAPHS,
    TRT_PRECISIONS,
    get_precision,
    manifest_precision,
)
from kdtool.errors import InputError


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
    assert row.quantizer in QUANTIZERS and row.trt_precision in TRT_PRECISIONS and row.trt_graph in TRT_GRAPHS
    assert (row.trt_graph == "qdq-qat") == (row.quantizer == "qat")  # only a QAT model carries its own scales
    assert row.trt_precision in TRT_BUILDER_FLAGS
    assert row.int8 == (row.trt_precision == "int8")
    assert (CUDA in row.providers) == (not row.int8)  # ORT's CUDA provider does not run INT8 graphs
    assert row.exact == (row.name == "fp32")  # only the FP32 graph is held to the exactness tolerance
    assert not row.calibrated or row.trt_calibrated  # a calibrated graph's TRT twin needs calibration as well


def test_qat_is_one_row_that_needs_no_calibration():
    qat = get_precision("int8-qat")
    assert qat.quantizer == "qat" and not qat.calibrated and not qat.trt_calibrated and qat.trt_precision == "int8"
    assert [r.name for r in PRECISIONS.values() if r.calibrated] == ["int8-static"]


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
