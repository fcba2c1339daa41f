"""The Open Inference Protocol (KServe v2) on a real ``kdtool serve`` process, driven by the real
``tritonclient``: the answers equal ``kdtool answer``'s, the health and metadata routes say what the
protocol says, /v2 requests share batches with each other, and a malformed tensor is a 400 with
``{"error": "<one line naming it>"}`` (kdtool/serve/oip.py, v2.py)."""

from __future__ import annotations

import json
import re
import threading

import httpx
import pytest
from click.testing import CliRunner
from serving import AUTH, KEY, Server, tiny_bundle

from kdtool.cli import main
from kdtool.errors import InputError
from kdtool.serve import oip
from kdtool.serve.config import ServeConfig

tritonclient_http = pytest.importorskip("tritonclient.http")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, roberta_dir):
    return tiny_bundle(tmp_path_factory, roberta_dir)


@pytest.fixture(scope="module")
def questions(squad_obj):
    return [{"id": qa["id"], "question": qa["question"], "context": p["context"]}
            for art in squad_obj["data"] for p in art["paragraphs"] for qa in p["qas"]]


@pytest.fixture(scope="module")
def server(bundle, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("oip")
    (tmp / "key").write_text(KEY + "\n")
    srv = Server(bundle, tmp, "--api-key-file", tmp / "key", "--max-wait-ms", 20, "--max-batch-size", 8,
                 "--max-context-chars", 4000)
    yield srv
    srv.proc.kill()


def kdtool_answers(bundle, questions, tmp_path) -> list[dict]:
    src, out = tmp_path / "q.jsonl", tmp_path / "a.jsonl"
    src.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in questions), encoding="utf-8")
    res = CliRunner().invoke(main, ["answer", str(bundle), "--input", str(src), "--output", str(out),
                                    "--device", "cpu", "--threads", "1"])
    assert res.exit_code == 0, res.output
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def test_tritonclient_over_http_gets_the_answers_of_kdtool_answer(server, bundle, questions, tmp_path):
    filler = "Otros viajeros llegaron a la ciudad durante aquellos años sin dejar constancia de nada. " * 25
    questions = questions + [dict(questions[0], id="long", context=filler + questions[0]["context"])]
    expected = kdtool_answers(bundle, questions, tmp_path)
    got = oip.infer_answers(f"127.0.0.1:{server.port}", "bundle", [(q["question"], q["context"]) for q in questions],
                            protocol="http", headers=AUTH)
    assert len(got) == len(expected) == len(questions)
    for a, e in zip(got, expected, strict=True):
        assert (a.answer, a.start, a.end) == (e["answer"], e["start"], e["end"])
        assert a.score == pytest.approx(e["score"], abs=1e-4)
    with pytest.raises(Exception, match="bearer token"):  # the token is checked on /v2 as on /v1
        oip.infer_answers(f"127.0.0.1:{server.port}", "bundle", [("¿Quién?", "María.")], protocol="http")


def test_health_and_metadata_routes(server):
    client = tritonclient_http.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    try:
        assert client.is_server_live() and client.is_server_ready()  # probes need no token
        assert client.is_model_ready("bundle") and client.is_model_ready("bundle", "1")
        assert not client.is_model_ready("other")
        assert client.get_server_metadata(headers=AUTH)["name"] == "kdtool"
        meta = client.get_model_metadata("bundle", headers=AUTH)
    finally:
        client.close()
    assert meta["name"] == "bundle" and meta["versions"] == ["1"] and meta["platform"] == "kdtool_onnxruntime"
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [(n, d, [-1, 1]) for n, d in oip.INPUTS]
    assert [(t["name"], t["datatype"]) for t in meta["outputs"]] == list(oip.OUTPUTS)
    assert httpx.get(server.url + "/v2/models/bundle").status_code == 401
    for path, status in (("/v2/models/other", 404), ("/v2/models/bundle/versions/2", 404), ("/v2/nothing", 404)):
        r = httpx.get(server.url + path, headers=AUTH)
        assert r.status_code == status and set(r.json()) == {"error"}, (path, r.text)
    assert "'bundle'" in httpx.get(server.url + "/v2/models/other", headers=AUTH).json()["error"]


def test_v2_requests_share_forward_passes(server, questions):
    def histogram():
        text = httpx.get(server.url + "/metrics", headers=AUTH).text
        return {m.group(1): float(m.group(2))
                for m in re.finditer(r'kdtool_serve_batch_windows_bucket\{le="([^"]+)"\} (\S+)', text)}

    before, errors = histogram(), []

    def client(k):
        try:
            for q in questions[k::8]:
                [a] = oip.infer_answers(f"127.0.0.1:{server.port}", "bundle", [(q["question"], q["context"])],
                                        headers=AUTH)
                assert q["context"][a.start:a.end] == a.answer
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = histogram()
    assert not errors, errors
    assert after["+Inf"] - before["+Inf"] < len(questions)  # fewer passes than requests: they shared batches


def tensor(name, data, shape=None, datatype="BYTES"):
    return {"name": name, "datatype": datatype, "shape": shape or [len(data), 1], "data": data}


GOOD = [tensor("question", ["¿Quién?"]), tensor("context", ["María construyó un puente."])]


@pytest.mark.parametrize("body, words", [
    ({"inputs": [GOOD[0], tensor("context", [1.5], datatype="FP32")]}, ["'context'", "FP32", "BYTES"]),
    ({"inputs": [GOOD[0], tensor("context", ["a"], shape=[2, 1])]}, ["'context'", "1 elements", "[2, 1]"]),
    ({"inputs": [GOOD[0], tensor("context", ["a", "b"], shape=[2])]}, ["'context'", "[B, 1]"]),
    ({"inputs": [GOOD[0], tensor("context", ["a", "b"])]}, ["different batch sizes"]),
    ({"inputs": [GOOD[0]]}, ["'context' is missing"]),
    ({"inputs": [GOOD[0], tensor("context", [7])]}, ["'context' element 0", "not a JSON string"]),
    ({"inputs": [GOOD[0], tensor("context", ["ok", "\ud800x"])]}, ["'context' element 1", "lone surrogate"]),
    ({"inputs": [GOOD[0], GOOD[1], tensor("extra", ["x"])]}, ["inputs[2]", "'extra'"]),
    ({"inputs": [GOOD[0], GOOD[0], GOOD[1]]}, ["'question' is given twice"]),
    ({"inputs": GOOD, "outputs": [{"name": "logits"}]}, ["'logits'", "answer, start, end, score"]),
    ({"inputs": [tensor("question", [" "]), GOOD[1]]}, ["inputs row 0", "empty question"]),
    ({"inputs": "question"}, ['"inputs" must be a non-empty list']),
    (["not", "an", "object"], ["JSON object"]),
    (b'{"inputs": [{"name": "question", "datatype": "BYTES", "shape": [1, 1], "data": ["\xff"]}]}', ["not UTF-8"]),
    (b"{not json", ["not valid JSON"]),
])
def test_malformed_tensors_get_400_naming_the_tensor(server, body, words):
    if isinstance(body, bytes):
        kw = {"content": body}
    else:
        kw = {"content": json.dumps(body).encode()}  # json.dumps keeps a lone surrogate as its \ud800 escape
    r = httpx.post(server.url + "/v2/models/bundle/infer", headers={**AUTH, "Content-Type": "application/json"},
                   timeout=30, **kw)
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"error"}
    message = r.json()["error"]
    assert "\n" not in message and all(w in message for w in words), message


def test_binary_tensors_and_other_models_are_refused_in_one_line(server):
    r = httpx.post(server.url + "/v2/models/bundle/infer", content=b"{}", timeout=30,
                   headers={**AUTH, "Inference-Header-Content-Length": "2"})
    assert r.status_code == 400 and "binary_data=False" in r.json()["error"]
    r = httpx.post(server.url + "/v2/models/other/infer", json={"inputs": GOOD}, headers=AUTH, timeout=30)
    assert r.status_code == 404 and "this server serves 'bundle'" in r.json()["error"]
    r = httpx.post(server.url + "/v2/models/bundle/versions/1/infer", json={"id": "r1", "inputs": GOOD,
                   "outputs": [{"name": "start"}]}, headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == "r1" and [o["name"] for o in r.json()["outputs"]] == ["start"]


def test_model_name_rule_and_option(tmp_path):
    assert oip.default_model_name(tmp_path / "my bundle (v2)") == "my_bundle__v2_"
    assert oip.default_model_name(tmp_path / "qa-int8.v3") == "qa-int8.v3"
    assert oip.default_model_name("/") == "model"
    assert ServeConfig(model=tmp_path / "b", model_name="qa").served_name() == "qa"
    assert ServeConfig(model=tmp_path / "b").served_name() == "b"
    for bad in ("a/b", "", "..", "x" * 129):
        with pytest.raises(InputError, match="model name"):
            ServeConfig(model=tmp_path / "b", model_name=bad)
