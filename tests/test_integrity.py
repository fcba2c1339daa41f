"""The bytes verified are the bytes loaded; signed bundles; a manifest of the wrong types and a
tokenizer that does not fit its model are refused in one line (kdtool/bundle/verified.py,
signing.py, manifest_schema.py)."""

from __future__ import annotations

import json
import shutil
import threading
import time

import numpy as np
import pytest
from badinput_fixtures import CONTEXT, assert_one_line_error, run

from kdtool.atomic import _exchange
from kdtool.bundle import manifest as B
from kdtool.engines import load_engine
from kdtool.errors import IntegrityError


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    assert run("keygen", d / "signer.pem").exit_code == 0
    assert run("keygen", d / "other.pem").exit_code == 0
    assert oct((d / "signer.pem").stat().st_mode & 0o777) == "0o600"
    return d


@pytest.fixture(scope="module")
def signed_bundle(tmp_path_factory, roberta_dir, keys):
    out = tmp_path_factory.mktemp("signed") / "bundle"
    result = run("export", roberta_dir, "-o", out, "--precision", "fp32", "--sign-key", keys / "signer.pem")
    assert result.exit_code == 0, result.output
    assert "signed" in result.stdout and (out / "model.sig").is_file()
    return out


@pytest.fixture
def bundle(signed_bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(signed_bundle, copy)
    return copy


def _logits(engine) -> np.ndarray:
    ids = engine.tokenizer("¿Quién?", CONTEXT, return_tensors="np")
    batch = {k: ids[k].astype(np.int64) for k in engine.input_names if k in ids}
    return engine.run(batch)[0]


def test_signature_is_checked_by_verify_and_by_every_loader(bundle, keys, roberta_dir, squad_file):
    ok = run("verify", bundle, "--public-key", keys / "signer.pem".replace("pem", "pub"))
    assert ok.exit_code == 0 and "signed by" in ok.stdout, ok.output
    assert_one_line_error(run("verify", bundle, "--public-key", keys / "other.pub"), 2, "signature does not match")
    assert_one_line_error(run("build-engine", bundle, "--require-signature", keys / "other.pub"), 2,
                          "signature does not match")  # checked before anything else (no TensorRT needed)
    for args in (["answer", bundle, "-q", "¿Quién?", "-c", CONTEXT],
                 ["profile", bundle, "--seq-len", 16, "--batch-size", 1, "--runs", 1, "--warmup", 1]):
        assert_one_line_error(run(*args, "--require-signature", keys / "other.pub"), 2, "signature does not match")
        assert run(*args, "--require-signature", keys / "signer.pub").exit_code == 0
    # someone rewrites the manifest consistently (checksums updated): the checksums pass, the signature does not
    m = json.loads((bundle / B.MANIFEST).read_text())
    B.write_manifest(bundle, dict(m, precision="fp32-tampered"))
    assert run("verify", bundle).exit_code == 0
    assert_one_line_error(run("answer", bundle, "-q", "¿Quién?", "-c", CONTEXT, "--require-signature",
                              keys / "signer.pub"), 2, "signature does not match")
    (bundle / "model.sig").unlink()
    assert_one_line_error(run("validate", roberta_dir, bundle, "--data", squad_file, "--limit", 2,
                              "--require-signature", keys / "signer.pub"), 2, "is not signed")
    assert_one_line_error(run("verify", bundle, "--public-key", keys / "signer.pub"), 2, "is not signed")
    assert_one_line_error(run("keygen", keys / "signer.pem"), 2, "already exists")


def test_a_bundle_swapped_during_loading_never_runs_unverified_bytes(bundle, tmp_path):
    """A thread swaps the bundle directory with a tampered twin (other weights, stale checksums) in
    one rename, over and over, while the bundle is loaded: every load either refuses or runs the
    genuine weights; none runs the twin's."""
    import onnx

    genuine = _logits(load_engine(bundle, device="cpu"))
    twin = tmp_path / "twin"
    shutil.copytree(bundle, twin)
    graph = onnx.load(str(twin / "model.onnx"))
    for init in graph.graph.initializer:  # other weights, same graph: ORT loads it without complaint
        if init.data_type == onnx.TensorProto.FLOAT and init.raw_data:
            arr = np.frombuffer(init.raw_data, dtype=np.float32).copy() + 0.5
            init.raw_data = arr.tobytes()
    onnx.save(graph, str(twin / "model.onnx"))
    stop = threading.Event()

    def swapper():
        while not stop.is_set():
            _exchange(bundle, twin)
            time.sleep(0.002)

    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    loaded = refused = 0
    try:
        for _ in range(30):
            try:
                engine = load_engine(bundle, device="cpu")
            except IntegrityError:
                refused += 1
                continue
            np.testing.assert_allclose(_logits(engine), genuine, atol=1e-5)
            loaded += 1
    finally:
        stop.set()
        thread.join()
    assert loaded + refused == 30 and loaded > 0, (loaded, refused)


def test_a_manifest_of_the_wrong_types_is_bad_input(bundle):
    m = json.loads((bundle / B.MANIFEST).read_text())
    for change, needle in ((dict(model=["model.onnx"]), "field 'model' must be a string, got a list"),
                           (dict(max_seq_length="384"), "field 'max_seq_length' must be an integer or null"),
                           (dict(files={**m["files"], "config.json": {"sha256": 1, "bytes": "7"}}), "bytes")):
        (bundle / B.MANIFEST).write_text(json.dumps({**m, **change}))
        assert_one_line_error(run("verify", bundle), 2, needle)
        assert_one_line_error(run("answer", bundle, "-q", "¿Quién?", "-c", CONTEXT), 2, needle)


def test_a_tokenizer_that_does_not_fit_the_model_is_refused_before_onnxruntime(bundle):
    """A consistent manifest (checksums updated) whose tokenizer has more tokens than the model embeds."""
    config = json.loads((bundle / "config.json").read_text())
    config["vocab_size"] = 5
    (bundle / "config.json").write_text(json.dumps(config))
    B.write_manifest(bundle, json.loads((bundle / B.MANIFEST).read_text()))
    assert run("verify", bundle).exit_code == 0  # the checksums cannot catch it
    assert_one_line_error(run("answer", bundle, "-q", "¿Quién?", "-c", CONTEXT), 2, "tokens but the model embeds only 5")


def test_the_engine_keeps_no_second_copy_of_the_bundle_and_still_counts_parameters(bundle):
    """The verified bytes are released once ONNX Runtime holds the graph; a manifest without
    num_parameters gets them counted from the verified graph before that."""
    m = json.loads((bundle / B.MANIFEST).read_text())
    expected = m.pop("num_parameters")
    B.write_manifest(bundle, m)
    engine = load_engine(bundle, device="cpu")
    assert engine.verified.data == {}
    assert 0.9 * expected < engine.num_parameters() <= expected * 1.1
