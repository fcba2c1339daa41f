"""kdtool serve under hostile clients, on a real server process (kdtool/serve/handling.py,
connections.py, config.py): client mistakes are 4xx naming the field with one log line and never a
500, a request head that never completes is closed, an oversized header gets 431, connections
beyond the cap close an idle one or are refused while well-formed requests are answered, /v1/model
shows no path, and absurd settings are refused before anything loads. No test here measures time:
bench/serve_slowloris.py does."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
from badinput_fixtures import assert_one_line_error, run
from serving import Server, tiny_bundle

from kdtool.serve.server import is_loopback

QUESTION = {"question": "¿Quién construyó el puente?", "context": "María López construyó un puente en Sevilla."}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, roberta_dir):
    return tiny_bundle(tmp_path_factory, roberta_dir)


@pytest.fixture(scope="module")
def server(bundle, tmp_path_factory):
    srv = Server(bundle, tmp_path_factory.mktemp("hostile"), "--header-timeout", 1, "--max-header-bytes", 2048,
                 "--max-connections", 6)
    yield srv
    srv.proc.kill()


def log_lines(server) -> list[str]:
    return [line for line in server.proc.stderr.splitlines() if line.strip()]


def wait_for(condition, what: str, limit: float = 30):
    deadline = time.time() + limit
    while time.time() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


@pytest.mark.parametrize("body, field, words", [
    (b'{"id": ' + b"7" * 5000 + b', "question": "q?", "context": "c."}', "body.id", ["5000 digits"]),
    (b"[" * 100_000 + b"]" * 100_000, "body", ["nested too deeply"]),
    (b'{"id": "\\ud800", "question": "q?", "context": "c."}', "body.id", ["lone surrogate"]),
    (b'{"question": "q?", "context": "Sevilla \\ud800 1905."}', "body.context", ["lone surrogate at character 8"]),
    (b'[{"question": "q?", "context": "c."}, {"question": "\\udfff", "context": "c."}]', "body[1].question",
     ["lone surrogate"]),
    (b'{"question": ' + b"1" * 5000 + b', "context": "c."}', "body.question", ["5000 digits"]),
])
def test_client_mistakes_are_422_naming_the_field_with_one_log_line(server, body, field, words):
    before = len(log_lines(server))
    r = httpx.post(server.url + "/v1/answer", content=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 422, r.text
    message = r.json()["error"]
    assert message.startswith(field) or field == "body", message
    assert all(w in message for w in words), message
    wait_for(lambda: len(log_lines(server)) > before, "the access log line")
    time.sleep(0.2)  # anything else the server would print about this request comes with it
    # every line since, except access lines of other, well-formed requests: the readiness probe's or the
    # previous case's closing 200 can land after `before` was counted
    added = [ln for ln in log_lines(server)[before:] if not (ln.startswith("{") and json.loads(ln)["status"] < 400)]
    assert len(added) == 1 and json.loads(added[0])["status"] == 422, added
    assert httpx.post(server.url + "/v1/answer", json=QUESTION, timeout=30).status_code == 200


def test_v1_model_shows_what_a_client_needs_and_no_path(server, bundle, roberta_dir):
    model = httpx.get(server.url + "/v1/model").json()
    text = json.dumps(model)
    assert str(roberta_dir) not in text and str(bundle) not in text and '"path"' not in text
    assert model["identity"]["name"] == "bundle" and model["identity"]["precision"] == "fp32"
    assert len(model["identity"]["manifest_sha256"]) == 64 and model["oip"]["name"] == "bundle"
    assert model["limits"]["max_connections"] == 6 and model["limits"]["max_header_bytes"] == 2048


def read_until_closed(sock: socket.socket, limit: float = 60) -> bytes:
    """Everything the server sends until it closes the connection (a generous bound, not a measurement)."""
    sock.settimeout(limit)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def test_a_request_head_that_never_completes_is_closed(server):
    silent = socket.create_connection(("127.0.0.1", server.port))
    dribbling = socket.create_connection(("127.0.0.1", server.port))
    dribbling.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and never the rest
    assert read_until_closed(silent) == b""
    reply = read_until_closed(dribbling)
    assert reply.startswith(b"HTTP/1.1 408") and b"--header-timeout" in reply, reply
    silent.close(), dribbling.close()
    assert httpx.get(server.url + "/healthz", timeout=30).status_code == 200
    assert 'reason="header_timeout"' in httpx.get(server.url + "/metrics").text


def test_a_header_over_the_cap_gets_431_and_is_not_buffered(server):
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            for _ in range(64):  # 4 MiB offered; the server stops reading after its 2 KiB cap
                sock.sendall(b"a" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = read_until_closed(sock)
    assert reply == b"" or reply.startswith(b"HTTP/1.1 431"), reply[:200]
    assert httpx.get(server.url + "/healthz", timeout=30).status_code == 200


def test_connections_beyond_the_cap_close_an_idle_one_or_are_refused(server):
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(6)]
    assert httpx.post(server.url + "/v1/answer", json=QUESTION, timeout=30).status_code == 200
    assert read_until_closed(idle[0]) == b""  # the longest idle made room for the well-formed client
    for s in idle:
        s.close()
    busy = []
    for _ in range(6):  # requests in progress (the server has read their heads: it said 100 Continue)
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(b"POST /v1/answer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\nExpect: 100-continue\r\n\r\n")
        s.settimeout(60)
        assert s.recv(100).startswith(b"HTTP/1.1 100")
        busy.append(s)
    with socket.create_connection(("127.0.0.1", server.port)) as extra:
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = read_until_closed(extra)
    assert reply.startswith(b"HTTP/1.1 503") and b"--max-connections" in reply, reply
    for s in busy:
        s.close()
    wait_for(lambda: _answered(server), "a well-formed request answered once the busy connections closed")
    assert 'reason="refused"' in httpx.get(server.url + "/metrics").text


def _answered(server) -> bool:
    try:
        return httpx.post(server.url + "/v1/answer", json=QUESTION, timeout=30).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.parametrize("args, words", [
    (["--max-wait-ms", "1e300"], ["--max-wait-ms", "10000"]),
    (["--threads", "100000"], ["--threads 100000 is out of range"]),
    (["--request-timeout", "1e9"], ["--request-timeout"]),
    (["--max-connections", "100000000"], ["--max-connections", "file-descriptor limit"]),
    (["--instances", "100000"], ["--instances"]),
    (["--max-queue", "99999999999"], ["--max-queue"]),
    (["--model-name", "a/b"], ["model name 'a/b'"]),
])
def test_absurd_settings_are_refused_before_anything_loads(bundle, args, words):
    assert_one_line_error(run("serve", bundle, *args), 2, *words)


def test_listening_beyond_loopback_without_a_key_says_so_once(monkeypatch, tmp_path):
    monkeypatch.setattr("kdtool.serve.server.check_address", lambda host, port: None)  # no socket beyond loopback
    result = run("serve", tmp_path / "absent", "--host", "0.0.0.0")
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "0.0.0.0 without --api-key-file" in warnings[0], result.stderr
    (tmp_path / "key").write_text("k" * 32 + "\n")
    result = run("serve", tmp_path / "absent", "--host", "0.0.0.0", "--api-key-file", tmp_path / "key")
    assert "warning:" not in result.stderr and "model not found" in result.stderr
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and not is_loopback("0.0.0.0")
