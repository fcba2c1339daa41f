"""TensorRT engine building: runs where tensorrt and a CUDA GPU exist, skipped with the reason elsewhere."""

from __future__ import annotations

import json

import pytest

from kdtool.engines.trt import build_unavailable_reason

REASON = build_unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"TensorRT engine build needs tensorrt and a GPU: {REASON}")


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "int8-static"])
def test_engine_is_built_versioned_and_answers_like_onnxruntime(tmp_path, roberta_dir, squad_file, precision):
    import tensorrt as trt

    from kdtool.data import load_squad
    from kdtool.engines import load_engine
    from kdtool.export.config import ExportConfig
    from kdtool.export.pipeline import export_model
    from kdtool.predict import predict

    bundle = export_model(ExportConfig(roberta_dir, tmp_path / "b", precision=precision, trt=True,
                                       calibration_data=squad_file, profile="nvidia-t4", max_seq_length=128))
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["tensorrt"]["built"] and m["tensorrt"]["version"] == trt.__version__
    assert m["tensorrt"]["strongly_typed"] == (int(trt.__version__.split(".")[0]) >= 11)
    assert {"model.engine", "timing.cache"} <= set(m["files"])
    examples = load_squad(squad_file).examples
    trt_engine, ort_engine = load_engine(bundle, device="tensorrt"), load_engine(bundle, device="cpu")
    assert trt_engine.kind == "tensorrt"
    a, b = predict(trt_engine, examples), predict(ort_engine, examples)
    assert sum(a[k].text == b[k].text for k in a) / len(a) >= 0.7
