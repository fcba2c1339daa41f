"""``kdtool triton`` repositories served by the real ``tritonserver`` 2.51 (from the nvidia-pytriton wheel) and
asked by the real ``tritonclient`` over HTTP and gRPC, on loopback ports only.

One server (one module fixture) serves four repositories written from one tiny real bundle:
``kdtool_qa`` (python layout), ``kdtool_bad`` (python layout, its bundle tampered after writing),
``kdtool_ens`` (ensemble, encoder on the Python backend running the bundle's model.onnx through ONNX Runtime)
and ``kdtool_gpu`` (ensemble for a GPU profile: onnxruntime encoder, plus a tensorrt encoder config, whose
backends the wheel does not ship). The tests skip only when tritonserver cannot start on the machine; on
the 2-core build machines it does.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.request

import pytest
from click.testing import CliRunner

from kdtool.cli import main
from kdtool.deploy import triton_configs as C
from kdtool.deploy.pbtxt import to_pbtxt
from kdtool.deploy.triton_repo import TritonRepoConfig, write_triton_repository
from kdtool.errors import EnvironmentUnsupported
from kdtool.export.config import ExportConfig
from kdtool.export.pipeline import export_model
from kdtool.serve.oip import infer_answers

tritonclient_utils = pytest.importorskip("tritonclient.utils")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, roberta_dir):
    return export_model(ExportConfig(roberta_dir, tmp_path_factory.mktemp("triton") / "bundle"))


@pytest.fixture(scope="module")
def questions(squad_obj):
    """Every question of the tiny SQuAD with its paragraph, and one whose context needs several windows."""
    rows = [(qa["question"], p["context"]) for art in squad_obj["data"] for p in art["paragraphs"] for qa in p["qas"]]
    filler = "Otros viajeros llegaron a la ciudad durante aquellos años sin dejar constancia de nada. " * 25
    return rows[:40] + [(rows[0][0], filler + rows[0][1])]  # a request holds at most max_batch_size (64)


@pytest.fixture(scope="module")
def expected(bundle, questions, tmp_path_factory):
    """``kdtool answer`` on the same questions: what every server must give."""
    tmp = tmp_path_factory.mktemp("answer")
    src, out = tmp / "q.jsonl", tmp / "a.jsonl"
    src.write_text("".join(json.dumps({"question": q, "context": c}, ensure_ascii=False) + "\n" for q, c in questions),
                   encoding="utf-8")
    res = CliRunner().invoke(main, ["answer", str(bundle), "--input", str(src), "--output", str(out), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def _repositories(bundle, root, env):
    repos = {}
    for name, kw in {"kdtool_qa": {}, "kdtool_bad": {}, "kdtool_ens": {"layout": "ensemble", "encoder_backend": "python"},
                     "kdtool_gpu": {"layout": "ensemble", "profile": "nvidia-t4"}}.items():
        repos[name] = write_triton_repository(TritonRepoConfig(bundle, root / name, name=name, execution_env=env, **kw)).path
    # a bundle member altered after the repository was written: the model must never become ready
    onnx = repos["kdtool_bad"] / "kdtool_bad" / "1" / "bundle" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-1] + bytes([onnx.read_bytes()[-1] ^ 1]))
    # the GPU ensemble's encoder graph swapped for another file (a new inode: the tokenizer's copy is intact)
    encoder = repos["kdtool_gpu"] / "kdtool_gpu_encoder" / "1" / "model.onnx"
    data = encoder.read_bytes()
    encoder.unlink()
    encoder.write_bytes(data + b"\0")
    # the tensorrt encoder config of the same bundle (no engine can be built here, so no repository writes it)
    manifest = json.loads((bundle / "manifest.json").read_text())
    trt = C.encoder_config("kdtool_trt_encoder", manifest, "tensorrt", C.Batching(4, 1000, 1, True, 4), {})
    (repos["kdtool_gpu"] / "kdtool_trt_encoder" / "1").mkdir(parents=True)
    (repos["kdtool_gpu"] / "kdtool_trt_encoder" / "config.pbtxt").write_text(to_pbtxt(trt))
    return repos


@pytest.fixture(scope="module")
def server(bundle, tmp_path_factory):
    from kdtool.deploy.tritonserver import TritonServer, backend_directory, find_tritonserver, make_execution_env

    root = tmp_path_factory.mktemp("repos")
    try:
        backends = backend_directory(find_tritonserver(), root / "backends")
        env = make_execution_env(root / "env")
    except EnvironmentUnsupported as err:
        pytest.skip(f"tritonserver cannot run here: {err}")
    repos = _repositories(bundle, root, env)
    srv = TritonServer(tuple(repos.values()), backends, log=root / "tritonserver.log")
    try:
        srv.start(timeout=240)  # every Python model has loaded (or failed) by the time the server is live
    except EnvironmentUnsupported as err:
        pytest.skip(f"tritonserver cannot start on this machine: {err}")
    yield srv
    srv.stop()


def _same(got, want):
    assert (got.answer, got.start, got.end) == (want["answer"], want["start"], want["end"])
    assert got.score == pytest.approx(want["score"], abs=1e-4)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_python_layout_answers_equal_kdtool_answer(server, questions, expected, protocol):
    assert server.wait_ready("kdtool_qa", timeout=60), server.model_states()
    url = server.http if protocol == "http" else server.grpc
    got = infer_answers(url, "kdtool_qa", questions, protocol=protocol)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        _same(g, e)


def _metric(text: str, name: str, model: str) -> float:
    return sum(float(m.group(1)) for m in re.finditer(rf'^{name}\{{[^}}]*model="{model}"[^}}]*\}} (\S+)', text, re.M))


def test_concurrent_clients_are_batched_by_triton(server, questions, expected):
    def metrics():
        with urllib.request.urlopen(server.metrics_url, timeout=10) as r:
            text = r.read().decode()
        return _metric(text, "nv_inference_request_success", "kdtool_qa"), _metric(text, "nv_inference_exec_count", "kdtool_qa")

    before = metrics()
    jobs = list(enumerate(questions[:-1])) * 2
    results, errors = {}, []

    def client(part):
        for i, pair in part:
            try:
                results.setdefault(i, []).append(infer_answers(server.http, "kdtool_qa", [pair])[0])
            except Exception as err:  # noqa: BLE001 (collected and asserted below)
                errors.append(repr(err))

    threads = [threading.Thread(target=client, args=(jobs[k::16],)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    for i, answers in results.items():  # each client got its own question's answer
        for got in answers:
            _same(got, expected[i])
    requests, executions = (a - b for a, b in zip(metrics(), before, strict=True))
    assert requests == len(jobs)
    assert executions < requests, f"{executions} executions for {requests} requests: Triton never batched"


def test_tampered_bundle_keeps_the_model_from_becoming_ready(server, questions):
    assert not server.wait_ready("kdtool_bad", timeout=5)
    state, reason = server.model_states()["kdtool_bad"]
    assert state == "UNAVAILABLE" and "model.onnx was altered" in reason, (state, reason)
    with pytest.raises(tritonclient_utils.InferenceServerException):
        infer_answers(server.http, "kdtool_bad", questions[:1])


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_ensemble_with_onnxruntime_encoder_on_python_backend_equals_kdtool_answer(server, questions, expected, protocol):
    assert server.wait_ready("kdtool_ens", timeout=60), server.model_states()
    url = server.http if protocol == "http" else server.grpc
    got = infer_answers(url, "kdtool_ens", questions, protocol=protocol)
    for g, e in zip(got, expected, strict=True):
        _same(g, e)


def test_gpu_configs_parse_in_triton_and_stop_only_at_the_missing_backends(server):
    states = server.model_states()
    for model, backend in (("kdtool_gpu_encoder", "onnxruntime"), ("kdtool_trt_encoder", "tensorrt")):
        state, reason = states[model]
        assert state == "UNAVAILABLE" and f"unable to find backend library for backend '{backend}'" in reason, reason
    assert states["kdtool_gpu_decoder"][0] == "READY"
    state, reason = states["kdtool_gpu_tokenizer"]  # it refuses the swapped encoder graph
    assert state == "UNAVAILABLE" and "is not the bundle's model.onnx" in reason, reason
    assert not server.wait_ready("kdtool_gpu", timeout=2)


def test_bad_text_gets_an_error_naming_the_row(server, questions):
    with pytest.raises(tritonclient_utils.InferenceServerException, match="input row 1 has an empty question"):
        infer_answers(server.http, "kdtool_qa", [questions[0], (" ", questions[0][1])])
    assert infer_answers(server.http, "kdtool_qa", questions[:1])[0].answer is not None  # the model still answers
