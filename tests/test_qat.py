"""Quantization-aware training (kdtool.models.qat) and its int8-qat export (kdtool.export.qat).

Tiny real models, real Model Optimizer quantizers, real ONNX Runtime sessions. Stated tolerance of the
QDQ graph on ORT's integer kernels against the fake-quantized PyTorch model: 1e-2 in logits (measured here:
about 1e-7 on the random models, 1.3e-3 after a few QAT steps, where a value on a rounding boundary can land
one INT8 level away); the export gate (ExportConfig.qat_parity_tolerance) allows 0.05 for deeper models.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("modelopt.torch.quantization")

from kdtool.cli import main  # noqa: E402
from kdtool.export.int8_forms import count_weight_forms, to_u8_weights  # noqa: E402
from kdtool.export.onnx_export import run_session, torch_logits  # noqa: E402
from kdtool.export.qat import export_qat_onnx, ort_integer_kernels, ort_session_options, qdq_summary  # noqa: E402
from kdtool.export.samples import sample_windows  # noqa: E402
from kdtool.models import load_qa_model, load_tokenizer  # noqa: E402
from kdtool.models.qat import attention_scale_summary, quantize_model  # noqa: E402

TOLERANCE = 1e-2
TRAIN = ["--epochs", "1", "--batch-size", "8", "--max-length", "96", "--doc-stride", "32", "--max-query-length", "24",
         "--lr", "1e-3", "--no-progress", "--seed", "3", "--qat-calibration-windows", "16"]


def _quantized(model_dir, windows):
    model = load_qa_model(model_dir).eval()
    batches = [{k: torch.from_numpy(v) for k, v in b.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
               for b in windows]
    info = quantize_model(model, batches)
    return model.eval(), info


@pytest.mark.parametrize("kind", ["roberta", "bert"])
def test_qdq_graph_matches_fake_quantized_model(kind, request, tmp_path, squad_file):
    model_dir = request.getfixturevalue(f"{kind}_dir")
    windows = sample_windows(load_tokenizer(model_dir), squad_file, 12, 96, batch_size=4)
    model, info = _quantized(model_dir, windows)
    layers = model.config.num_hidden_layers
    assert info["attention_quantizers"] == 4 * layers  # Q, K, P, V of every layer
    path = export_qat_onnx(model, tmp_path / "qat.onnx", windows[0], opset=18)
    summary = qdq_summary(path)  # raises unless every Q/DQ is int8 with zero point 0; runs onnx.checker
    assert summary["symmetric"] and summary["per_channel_nodes"] > 0
    import onnx

    graph = onnx.load(str(path)).graph  # weights folded: INT8 initializers behind DequantizeLinear only
    int8_weights = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.INT8}
    assert len(int8_weights) == 6 * layers + 1
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] in {i.name for i in graph.initializer} for n in graph.node)
    assert summary["int8_attention_matmuls"] == 2 * layers  # QK^T and PV as integer products
    assert summary["int8_matmuls"] == 6 * layers + 1 + 2 * layers  # 6 Linear per layer + QA head + attention
    for int8_activations in (False, True):  # every matrix product runs on ORT's integer kernels
        assert ort_integer_kernels(path, int8_activations=int8_activations)["float_matmuls"] == 0
    reference = torch_logits(model, windows)
    import onnxruntime as ort

    for int8_activations in (False, True):  # ORT's exact u8 rewrite, and s8 x s8
        session = ort.InferenceSession(str(path), ort_session_options(int8_activations), providers=["CPUExecutionProvider"])
        for ref, batch in zip(reference, windows, strict=True):
            got = run_session(session, batch)
            mask = batch["attention_mask"].astype(bool)
            for r, g in zip(ref, got, strict=True):
                assert np.abs(r - g)[mask].max() < TOLERANCE
    # the x86-avx2 form: the same weights as u8 (zero point 128), exact in a plain ONNX Runtime session on any CPU
    u8 = tmp_path / "qat-u8.onnx"
    u8.write_bytes(path.read_bytes())
    assert to_u8_weights(u8)["u8_weight_nodes"] == 6 * layers + 1
    assert count_weight_forms(u8)["s8"] == 0 and ort_integer_kernels(u8)["float_matmuls"] == 0
    plain = ort.SessionOptions()
    plain.log_severity_level = 3
    session = ort.InferenceSession(str(u8), plain, providers=["CPUExecutionProvider"])
    for ref, batch in zip(reference, windows, strict=True):
        mask = batch["attention_mask"].astype(bool)
        for r, g in zip(ref, run_session(session, batch), strict=True):
            assert np.abs(r - g)[mask].max() < TOLERANCE


def test_fake_quantization_changes_the_model(roberta_dir, squad_file):
    """The quantizers are live: the fake-quantized logits differ from FP32 (else every other test here is vacuous)."""
    windows = sample_windows(load_tokenizer(roberta_dir), squad_file, 4, 96, batch_size=4)
    fp32 = torch_logits(load_qa_model(roberta_dir).eval(), windows)[0][0]
    quant = torch_logits(_quantized(roberta_dir, windows)[0], windows)[0][0]
    assert np.abs(fp32 - quant).max() > 1e-4


def test_qat_distillation_lowers_the_loss_against_the_teacher(roberta_dir, squad_file, tmp_path):
    out = tmp_path / "qat"
    result = CliRunner().invoke(main, ["distill", str(roberta_dir), "--student", "micro-2l-128", "--student-init", "random",
                                       "--qat", "--schedule", "prediction", "--hard-weight", "0", "--train",
                                       str(squad_file), "-o", str(out), *TRAIN, "--epochs", "4"])
    assert result.exit_code == 0, result.output
    assert (out / "modelopt_state.pth").is_file()
    report = json.loads((out / "distill_report.json").read_text())
    assert report["qat"]["attention_quantizers"] == 8 and report["config"]["qat"]
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    first, last = log[0]["prediction"], sum(r["prediction"] for r in log[-3:]) / 3
    assert last < 0.9 * first, (first, last)
    reloaded = load_qa_model(out)  # the fake-quantized student again, with its calibrated scales
    scales = attention_scale_summary(reloaded)
    assert len(scales) == report["qat"]["quantizers"] and all(v > 0 for v in scales.values())


def test_qat_resume_is_bit_identical(roberta_dir, squad_file, tmp_path):
    args = ["distill", str(roberta_dir), "--student", "micro-2l-128", "--student-init", "random", "--qat",
            "--schedule", "joint", "--train", str(squad_file), *TRAIN, "--epochs", "2", "--save-every", "2"]
    runner = CliRunner()
    full = tmp_path / "full"
    assert runner.invoke(main, [*args, "-o", str(full)]).exit_code == 0
    part = tmp_path / "part"
    stopped = runner.invoke(main, [*args, "-o", str(part), "--stop-after", "3"])
    assert stopped.exit_code == 0 and "stopped after step 3" in stopped.output
    resumed = runner.invoke(main, [*args, "-o", str(part), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    a, b = load_qa_model(full).state_dict(), load_qa_model(part).state_dict()
    amax = [k for k in a if k.endswith("_amax")]
    assert amax and any("bmm_quantizer" in k for k in amax)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_export_int8_qat_bundle_validates(roberta_dir, squad_file, tmp_path):
    student = tmp_path / "student"
    assert CliRunner().invoke(main, ["finetune", str(roberta_dir), "--qat", "--train", str(squad_file), "-o",
                                     str(student), *TRAIN]).exit_code == 0
    bundle = tmp_path / "bundle"
    result = CliRunner().invoke(main, ["export", str(student), "-o", str(bundle), "--precision", "int8-qat", "--trt",
                                       "--calibration-data", str(squad_file), "--max-seq-length", "96"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["precision"] == "int8-qat" and manifest["quantization"]["symmetric"]
    assert manifest["parity"]["plain_onnx"]["max_abs_logit_diff"] < TOLERANCE
    assert manifest["tensorrt"]["onnx"]["form"].startswith("symmetric INT8 Q/DQ from quantization-aware")
    assert qdq_summary(bundle / manifest["trt_onnx"])["int8_attention_matmuls"] == 4
    check = CliRunner().invoke(main, ["validate", str(student), str(bundle), "--data", str(squad_file), "--json",
                                      str(tmp_path / "v.json"), "--max-length", "96", "--doc-stride", "32"])
    assert check.exit_code == 0, check.output
    models = json.loads((tmp_path / "v.json").read_text())["models"]
    assert len(models) == 2 and 0 <= models[1]["f1"] <= 100 and models[1]["agreement"] > 0


@pytest.mark.parametrize("extra, needle", [
    (["--student", "bilstm", "--student-init", "random"], "--qat supports BERT/RoBERTa"),
    (["--precision", "fp16"], "--qat trains the INT8 graph"),
])
def test_bad_qat_combinations_exit_2(roberta_dir, squad_file, tmp_path, extra, needle):
    out = tmp_path / "o"
    result = CliRunner().invoke(main, ["distill", str(roberta_dir), "--qat", "--schedule", "prediction",
                                       "--train", str(squad_file), "-o", str(out), *TRAIN, *extra])
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists() and not out.with_name("o.work").exists()


def test_export_int8_qat_refuses_a_plain_model(roberta_dir, tmp_path):
    result = CliRunner().invoke(main, ["export", str(roberta_dir), "-o", str(tmp_path / "b"), "--precision", "int8-qat"])
    assert result.exit_code == 2 and "modelopt_state.pth" in result.output
    assert not (tmp_path / "b").exists()
