"""``kdtool triton`` without a server: the repository it writes (layouts, configs parsed by Triton's own
``ModelConfig`` schema from tritonclient, batching from device profiles, the bundle and its signature kept)
and its refusals (one line, exit 2, nothing written). The server side is tests/test_triton_server.py."""

from __future__ import annotations

import json
import shutil

import pytest
from badinput_fixtures import assert_one_line_error, run

from kdtool.bundle.signing import generate_keypair
from kdtool.bundle.verified import sign_bundle
from kdtool.deploy import triton_configs as C
from kdtool.deploy.triton_repo import TritonRepoConfig, batching_for
from kdtool.export.config import ExportConfig
from kdtool.export.pipeline import export_model
from kdtool.profiles import get_profile
from kdtool.serve.oip import INPUTS, OUTPUTS

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
text_format = pytest.importorskip("google.protobuf.text_format")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, bert_dir):
    return export_model(ExportConfig(bert_dir, tmp_path_factory.mktemp("repo") / "bundle"))


def parsed(path):
    """``config.pbtxt`` through Triton's ModelConfig message (strict: an unknown field or bad value raises)."""
    return text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())


def params(config) -> dict[str, str]:
    return {k: v.string_value for k, v in config.parameters.items()}


def test_python_layout(bundle, tmp_path):
    res = run("triton", bundle, "-o", tmp_path / "repo", "--profile", "x86-avx512-vnni", "--threads", 2)
    assert res.exit_code == 0, res.output
    model = tmp_path / "repo" / "kdtool_qa"
    config = parsed(model / "config.pbtxt")
    assert config.backend == "python" and config.max_batch_size == 64
    assert [(t.name, list(t.dims)) for t in config.input] == [(n, [1]) for n, _ in INPUTS]
    assert [(t.name, model_config_pb2.DataType.Name(t.data_type)) for t in config.output] == \
        [(n, {"BYTES": "TYPE_STRING", "INT64": "TYPE_INT64", "FP32": "TYPE_FP32"}[d]) for n, d in OUTPUTS]
    assert config.dynamic_batching.max_queue_delay_microseconds == 0
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert params(config) == {"kdtool_role": "qa", "batch_size": "4", "bundle": "bundle", "max_answer_length": "30",
                              "device": "cpu", "threads": "2"}
    copy = model / "1" / "bundle"
    assert (copy / "manifest.json").read_bytes() == (bundle / "manifest.json").read_bytes()
    assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in bundle.iterdir() if p.name != ".kdtool")
    assert (model / "1" / "model.py").read_text().startswith('"""Triton Python-backend entry point')


@pytest.mark.parametrize("backend", ["onnxruntime", "python"])
def test_ensemble_layout_chains_tokenizer_encoder_decoder(bundle, tmp_path, backend):
    res = run("triton", bundle, "-o", tmp_path / "repo", "--layout", "ensemble", "--encoder-backend", backend,
              "--profile", "nvidia-t4", "--name", "qa")
    assert res.exit_code == 0, res.output
    repo = tmp_path / "repo"
    ens = parsed(repo / "qa" / "config.pbtxt")
    assert ens.platform == "ensemble" and [s.model_name for s in ens.ensemble_scheduling.step] == \
        ["qa_tokenizer", "qa_encoder", "qa_decoder"]
    assert [t.name for t in ens.input] == [n for n, _ in INPUTS] and [t.name for t in ens.output] == [n for n, _ in OUTPUTS]
    encoder = parsed(repo / "qa_encoder" / "config.pbtxt")
    assert encoder.backend == backend and encoder.max_batch_size == 64
    assert [t.name for t in encoder.input] == ["input_ids", "attention_mask", "token_type_ids"]  # the BERT graph's
    gpu = model_config_pb2.ModelInstanceGroup.KIND_GPU if backend == "onnxruntime" else \
        model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert encoder.instance_group[0].kind == gpu and encoder.dynamic_batching.max_queue_delay_microseconds == 1000
    tokenizer = parsed(repo / "qa_tokenizer" / "config.pbtxt")
    assert [t.name for t in tokenizer.output] == [t.name for t in encoder.input] + [C.WINDOW_QUESTION, C.WINDOW_OFFSETS]
    if backend == "onnxruntime":  # the graph beside the encoder is the bundle's, and the tokenizer checks it
        assert (repo / "qa_encoder" / "1" / "model.onnx").read_bytes() == (bundle / "model.onnx").read_bytes()
        assert params(tokenizer)["encoder_file"] == "../../qa_encoder/1/model.onnx"
    assert params(parsed(repo / "qa_decoder" / "config.pbtxt"))["logits"] == "start_logits,end_logits"


def test_tensorrt_encoder_config_and_batch(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    config = TritonRepoConfig(bundle, bundle.parent / "unused", layout="ensemble", encoder_backend="tensorrt")
    batching = batching_for(config, get_profile("jetson-orin"))
    assert batching.max_batch_size == get_profile("jetson-orin").tensorrt.max_shape[0] and batching.gpu
    from kdtool.deploy.pbtxt import to_pbtxt

    trt = text_format.Parse(to_pbtxt(C.encoder_config("enc", manifest, "tensorrt", batching, {})), model_config_pb2.ModelConfig())
    assert trt.backend == "tensorrt" and trt.default_model_filename == "model.plan" and trt.max_batch_size == 4


def test_signed_bundle_keeps_its_signature_and_the_model_checks_it(bundle, tmp_path):
    signed = shutil.copytree(bundle, tmp_path / "signed")
    generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    sign_bundle(signed, tmp_path / "k.pem")
    res = run("triton", signed, "-o", tmp_path / "repo", "--require-signature", tmp_path / "k.pub")
    assert res.exit_code == 0, res.output
    copy = tmp_path / "repo" / "kdtool_qa" / "1" / "bundle"
    assert (copy / "model.sig").read_bytes() == (signed / "model.sig").read_bytes()
    assert params(parsed(tmp_path / "repo" / "kdtool_qa" / "config.pbtxt"))["require_signature"] == \
        str((tmp_path / "k.pub").absolute())
    generate_keypair(tmp_path / "other.pem", tmp_path / "other.pub")
    res = run("triton", signed, "-o", tmp_path / "repo2", "--require-signature", tmp_path / "other.pub")
    assert res.exit_code == 2 and not (tmp_path / "repo2").exists()


def _tampered(bundle, tmp_path):
    bad = shutil.copytree(bundle, tmp_path / "bad")
    data = bytearray((bad / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 1
    (bad / "model.onnx").write_bytes(bytes(data))
    return bad


@pytest.mark.parametrize("args, words", [
    (["--layout", "ensemble", "--encoder-backend", "tensorrt"], ["no TensorRT engine", "kdtool build-engine"]),
    (["--profile", "nope"], ["unknown device profile 'nope'"]),
    (["--name", "../x"], ["model name '../x'"]),
    (["--execution-env", "missing-env"], ["--execution-env missing-env is not a directory"]),
    (["--layout", "grpc"], ["'grpc' is not one of"]),
])
def test_bad_input_is_one_line_and_writes_nothing(bundle, tmp_path, args, words):
    out = tmp_path / "repo"
    assert_one_line_error(run("triton", bundle, "-o", out, *args), 2, *words)
    assert not out.exists() and not any(p.name.endswith(".partial") for p in tmp_path.iterdir())


def test_tampered_bundle_and_existing_output_are_refused(bundle, tmp_path):
    assert_one_line_error(run("triton", _tampered(bundle, tmp_path), "-o", tmp_path / "r"), 2, "model.onnx was altered")
    assert not (tmp_path / "r").exists()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep")
    assert_one_line_error(run("triton", bundle, "-o", tmp_path / "taken"), 2, "already exists", "--overwrite")
    assert_one_line_error(run("triton", bundle, "-o", tmp_path / "taken", "--overwrite"), 2, "not written by kdtool")
    assert (tmp_path / "taken" / "mine.txt").read_text() == "keep"
