"""kdtool serve as a real server subprocess on a free loopback port, driven by a real HTTP client
(httpx): answers equal kdtool answer's, concurrent clients get their own answers, windows of
concurrent requests share forward passes, overload is refused with 503 and loses nothing it
accepted, bad requests get one-line 413/422/401/403, SIGTERM drains and exits 0, Ctrl-C exits 130,
and a tampered bundle never starts serving."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import threading
import time

import httpx
import pytest
from click.testing import CliRunner
from serving import AUTH, KEY, Server, free_port, tiny_bundle

from kdtool.cli import main


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, roberta_dir):
    return tiny_bundle(tmp_path_factory, roberta_dir)


@pytest.fixture(scope="module")
def questions(squad_obj):
    """Every question of the tiny SQuAD with its own paragraph; ids repeat nothing."""
    return [{"id": qa["id"], "question": qa["question"], "context": p["context"]}
            for art in squad_obj["data"] for p in art["paragraphs"] for qa in p["qas"]]


@pytest.fixture(scope="module")
def server(bundle, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("server")
    (tmp / "key").write_text(KEY + "\n")
    srv = Server(bundle, tmp, "--api-key-file", tmp / "key", "--max-wait-ms", 30, "--max-batch-size", 8,
                 "--max-queue", 256, "--max-context-chars", 4000, "--max-body-bytes", 200_000)
    yield srv
    srv.proc.kill()


def post(url, body, headers=AUTH, **kw):
    return httpx.post(url + "/v1/answer", json=body, headers=headers, timeout=60, **kw)


def test_answers_equal_kdtool_answer(server, bundle, questions, tmp_path):
    # the last question's context needs several windows: it is answered across them, as answer does
    filler = "Otros viajeros llegaron a la ciudad durante aquellos años sin dejar constancia de nada. " * 25
    questions = questions + [dict(questions[0], id="long", context=filler + questions[0]["context"])]
    src, out = tmp_path / "q.jsonl", tmp_path / "a.jsonl"
    src.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in questions), encoding="utf-8")
    res = CliRunner().invoke(main, ["answer", str(bundle), "--input", str(src), "--output", str(out),
                                    "--device", "cpu", "--threads", "1"])
    assert res.exit_code == 0, res.output
    expected = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    r = post(server.url, questions)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["model"]["precision"] == "fp32" and got["model"]["name"] == "bundle"
    assert len(got["answers"]) == len(expected) == len(questions)
    for a, e in zip(got["answers"], expected, strict=True):
        assert (a["id"], a["answer"], a["start"], a["end"]) == (e["id"], e["answer"], e["start"], e["end"])
        assert a["score"] == pytest.approx(e["score"], abs=1e-4)
    text = httpx.get(server.url + "/metrics", headers=AUTH).text
    windows = float(re.search(r"kdtool_serve_request_windows_sum (\S+)", text).group(1))
    assert windows > len(questions)  # the long context was answered from several windows
    one = post(server.url, questions[0]).json()  # a single object gets a single answer
    assert {k: one[k] for k in ("id", "answer", "start", "end")} == {k: expected[0][k] for k in ("id", "answer", "start", "end")}


def _batch_histogram(url) -> dict[str, float]:
    text = httpx.get(url + "/metrics", headers=AUTH).text
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r'kdtool_serve_batch_windows_bucket\{le="([^"]+)"\} (\S+)', text)}


def test_concurrent_clients_get_their_own_answers_in_shared_batches(server, questions):
    before = _batch_histogram(server.url)
    # each client asks about a context of its own: a mixed-up answer would point into another text
    jobs = [dict(q, id=f"c{i}", context=f"Cliente {i}. " + q["context"]) for i, q in enumerate(questions * 2)]
    reference = {j["id"]: post(server.url, j).json() for j in jobs[:4]}  # answered alone
    results, errors = {}, []

    def client(batch):
        with httpx.Client(headers=AUTH, timeout=60) as c:
            for job in batch:
                r = c.post(server.url + "/v1/answer", json=job)
                (results.__setitem__(job["id"], r.json()) if r.status_code == 200 else errors.append(r.text))

    threads = [threading.Thread(target=client, args=(jobs[k::16],)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == len(jobs)
    for job in jobs:
        row = results[job["id"]]
        assert row["id"] == job["id"] and job["context"][row["start"]:row["end"]] == row["answer"]
    for key, alone in reference.items():
        assert (results[key]["answer"], results[key]["start"]) == (alone["answer"], alone["start"])
    after = _batch_histogram(server.url)
    batches = after["+Inf"] - before["+Inf"]
    single = after["1.0"] - before["1.0"]
    assert batches > single, f"no forward pass held more than one window ({after})"
    assert batches < len(jobs)  # fewer passes than windows: requests shared them


@pytest.mark.parametrize("body, status, words", [
    (b"{not json", 422, ["not valid JSON"]),
    ({"question": "¿Quién?"}, 422, ['"context" is missing']),
    ([{"question": "¿Quién?", "context": "Sevilla."}, {"question": 3, "context": "x"}], 422, ["body[1]", '"question" is a int']),
    ({"question": " ", "context": "Sevilla."}, 422, ["empty question"]),
    ({"question": "¿Quién?", "context": "x" * 4001}, 413, ["body.context", "4000"]),
    ({"question": "¿Quién?", "context": "Sevilla. " * 30000}, 413, ["200000-byte limit"]),
])
def test_bad_requests_get_one_line(server, body, status, words):
    kw = {"content": body} if isinstance(body, bytes) else {"json": body}
    r = httpx.post(server.url + "/v1/answer", headers=AUTH, timeout=30, **kw)
    assert r.status_code == status, r.text
    message = r.json()["error"]
    assert "\n" not in message and all(w in message for w in words), message


def test_bearer_token(server, questions):
    r = post(server.url, questions[0], headers={})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer" and "bearer token" in r.json()["error"]
    assert post(server.url, questions[0], headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert httpx.get(server.url + "/metrics").status_code == 401
    assert httpx.get(server.url + "/healthz").status_code == 200  # probes need no token
    model = httpx.get(server.url + "/v1/model", headers=AUTH).json()
    assert model["manifest"]["precision"] == "fp32" and model["auth"] is True and "files" not in model["manifest"]
    assert "/v1/answer" in httpx.get(server.url + "/openapi.json", headers=AUTH).json()["paths"]


def test_access_log_is_one_json_line_per_request(server):
    lines = [json.loads(line) for line in server.proc.stderr.splitlines() if line.startswith("{")]
    assert any(r["path"] == "/v1/answer" and r["status"] == 200 and r["questions"] for r in lines)
    assert any(r["status"] == 401 for r in lines)


def test_overload_is_refused_at_once_and_loses_nothing_accepted(bundle, questions, tmp_path):
    srv = Server(bundle, tmp_path, "--max-queue", 3, "--max-wait-ms", 100, "--max-batch-size", 2)
    try:
        jobs = [dict(questions[i % len(questions)], id=f"o{i}") for i in range(48)]
        with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=48)) as c:
            replies = {}

            def ask(job):
                replies[job["id"]] = c.post(srv.url + "/v1/answer", json=job)

            threads = [threading.Thread(target=ask, args=(j,)) for j in jobs]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        codes = [r.status_code for r in replies.values()]
        assert set(codes) <= {200, 503} and 200 in codes and 503 in codes, codes
        for job in jobs:
            r = replies[job["id"]]
            if r.status_code == 503:
                assert r.headers["retry-after"] == "1" and "--max-queue" in r.json()["error"]
            else:
                row = r.json()
                assert row["id"] == job["id"] and job["context"][row["start"]:row["end"]] == row["answer"]
        metrics = httpx.get(srv.url + "/metrics").text
        assert f'kdtool_serve_questions_total {float(codes.count(200))}' in metrics  # each accepted one answered once
        assert f'status="503"}} {float(codes.count(503))}' in metrics
    finally:
        srv.proc.kill()


def test_sigterm_drains_in_flight_requests_and_exits_0(bundle, questions, tmp_path):
    srv = Server(bundle, tmp_path, "--max-wait-ms", 400, "--max-batch-size", 64)
    replies, sent = [], threading.Event()

    def ask(i):
        with httpx.Client(timeout=60) as c:
            sent.set()
            replies.append(c.post(srv.url + "/v1/answer", json=dict(questions[i], id=f"d{i}")))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    sent.wait()
    time.sleep(0.25)  # the requests wait in the batcher (--max-wait-ms 400) when the signal lands
    rc = srv.stop(signal.SIGTERM)
    for t in threads:
        t.join()
    assert rc == 0, srv.proc.stderr[-2000:]
    assert len(replies) == 6 and all(r.status_code == 200 for r in replies), [r.text for r in replies]
    assert "stopped by SIGTERM" in srv.proc.stderr and "Traceback" not in srv.proc.stderr
    with pytest.raises(httpx.TransportError):
        httpx.get(srv.url + "/healthz", timeout=2)


def test_tampered_bundle_does_not_start(bundle, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(bundle, bad)
    with open(bad / "model.onnx", "r+b") as fh:
        fh.seek(200)
        byte = fh.read(1)
        fh.seek(200)
        fh.write(bytes([byte[0] ^ 1]))
    res = CliRunner().invoke(main, ["serve", str(bad), "--port", str(free_port()), "--device", "cpu"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "model.onnx" in res.stderr, res.output


def test_bad_options_fail_before_loading(bundle, tmp_path):
    (tmp_path / "short").write_text("abc\n")
    res = CliRunner().invoke(main, ["serve", str(bundle), "--api-key-file", str(tmp_path / "short")])
    assert res.exit_code == 2 and "at least 16 characters" in res.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        res = CliRunner().invoke(main, ["serve", str(bundle), "--port", str(taken.getsockname()[1])])
    assert res.exit_code == 2 and "cannot listen on" in res.stderr and res.stderr.count("\n") == 1


def test_a_request_not_answered_in_time_gets_504(bundle, questions):
    """The real app and batcher in-process, with the batcher's worker never started (as if the engine hung)."""
    import asyncio

    from kdtool.engines import load_engine
    from kdtool.serve.app import create_app
    from kdtool.serve.batcher import Batcher
    from kdtool.serve.config import ServeConfig
    from kdtool.serve.metrics import ServeMetrics
    from kdtool.serve.server import model_info

    config = ServeConfig(model=bundle, request_timeout=0.3)
    engine = load_engine(bundle, device="cpu", threads=1)
    metrics = ServeMetrics()
    batcher = Batcher(engine, config.predict, metrics, max_batch_size=4, max_wait_s=0, max_queue=8)
    app = create_app(config, batcher, metrics, model_info(engine, config))  # ASGITransport runs no lifespan

    async def ask():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve") as c:
            return await c.post("/v1/answer", json=questions[0])

    t0 = time.perf_counter()
    r = asyncio.run(ask())
    assert r.status_code == 504 and "--request-timeout" in r.json()["error"] and time.perf_counter() - t0 < 10
    assert 'route="/v1/answer",status="504"' in metrics.render().decode()
    engine.close()


def test_ctrl_c_drains_and_exits_130(server, questions):
    assert post(server.url, questions[0]).status_code == 200
    assert server.stop(signal.SIGINT) == 130, server.proc.stderr[-2000:]
    assert "stopped by SIGINT" in server.proc.stderr and "Traceback" not in server.proc.stderr


def test_unsigned_bundle_does_not_start_when_a_signature_is_required(bundle, tmp_path):
    assert CliRunner().invoke(main, ["keygen", str(tmp_path / "signer.pem")]).exit_code == 0
    res = CliRunner().invoke(main, ["serve", str(bundle), "--port", str(free_port()), "--device", "cpu",
                                    "--require-signature", str(tmp_path / "signer.pub")])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "is not signed" in res.stderr, res.output


def test_two_engine_instances_share_the_queue_and_answer_as_kdtool_answer_does(bundle, questions, tmp_path):
    two = Server(bundle, tmp_path, "--instances", 2, "--max-wait-ms", 2, "--max-batch-size", 2)
    try:
        model = httpx.get(two.url + "/v1/model")
        assert model.status_code == 200 and model.json()["limits"]["instances"] == 2, two.proc.stderr[-2000:]
        jobs = [dict(q, id=f"i{i}", context=f"Instancia {i}. " + q["context"]) for i, q in enumerate(questions * 3)]
        results = {}

        def client(batch):
            with httpx.Client(timeout=60) as c:
                for job in batch:
                    results[job["id"]] = c.post(two.url + "/v1/answer", json=job).json()

        threads = [threading.Thread(target=client, args=(jobs[k::8],)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        src, out = tmp_path / "q.jsonl", tmp_path / "a.jsonl"
        src.write_text("".join(json.dumps(j, ensure_ascii=False) + "\n" for j in jobs), encoding="utf-8")
        res = CliRunner().invoke(main, ["answer", str(bundle), "--input", str(src), "--output", str(out),
                                        "--device", "cpu", "--threads", "1"])
        assert res.exit_code == 0, res.output
        for expected in map(json.loads, out.read_text(encoding="utf-8").splitlines()):
            got = results[expected["id"]]
            assert (got["id"], got["answer"], got["start"], got["end"]) == \
                (expected["id"], expected["answer"], expected["start"], expected["end"])
        text = httpx.get(two.url + "/metrics").text
        per_instance = dict(re.findall(r'kdtool_serve_instance_questions_total\{instance="(\d)"\} (\S+)', text))
        assert set(per_instance) == {"0", "1"} and all(float(v) > 0 for v in per_instance.values()), per_instance
        assert sum(float(v) for v in per_instance.values()) >= len(jobs)
        assert two.stop() == 0
    finally:
        two.proc.kill()
