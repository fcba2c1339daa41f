"""OpenSSF Model Signing of bundles with the real ``model-signing`` library and CLI (kdtool/bundle/oms.py,
signing.py, verified.py): kdtool's signature verifies with ``model_signing verify`` and the library's
verifies in kdtool, the signature must cover every file loaded, a rolled-back bundle is refused with
--min-version, the bytes checked are the bytes loaded, Ed25519 bundles keep verifying with one
deprecation line, and two racing ``kdtool keygen`` never both succeed nor leave a mismatched pair."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from badinput_fixtures import CONTEXT, KDTOOL, assert_one_line_error, run
from serving import tiny_bundle

from kdtool.atomic import _exchange
from kdtool.bundle import manifest as B
from kdtool.bundle.verified import sign_bundle
from kdtool.engines import load_engine
from kdtool.errors import IntegrityError

pytest.importorskip("model_signing")
MODEL_SIGNING = [sys.executable, "-m", "model_signing"]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("oms-keys")
    for name in ("signer", "other"):
        result = run("keygen", d / f"{name}.pem")
        assert result.exit_code == 0 and "EC P-256" in result.stdout, result.output
    return d


@pytest.fixture(scope="module")
def unsigned(tmp_path_factory, roberta_dir):
    return tiny_bundle(tmp_path_factory, roberta_dir)  # shared with the serve tests; copied before any change


@pytest.fixture
def bundle(unsigned, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(unsigned, copy)
    return copy


def model_signing(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*MODEL_SIGNING, *map(str, args)], capture_output=True, text=True, timeout=300)


def test_a_kdtool_signed_bundle_verifies_with_model_signing_verify(bundle, keys):
    assert sign_bundle(bundle, keys / "signer.pem") == bundle / "model.sig"
    ok = model_signing("verify", "key", bundle, "--signature", bundle / "model.sig", "--public_key", keys / "signer.pub")
    assert ok.returncode == 0 and "Verification succeeded" in ok.stdout, ok.stdout + ok.stderr
    bad = model_signing("verify", "key", bundle, "--signature", bundle / "model.sig", "--public_key", keys / "other.pub")
    assert bad.returncode != 0
    verified = run("verify", bundle, "--public-key", keys / "signer.pub")
    assert verified.exit_code == 0 and "signed by" in verified.stdout and "version 20" in verified.stdout, verified.output


def test_a_bundle_signed_by_model_signing_sign_verifies_in_kdtool(bundle, keys):
    signed = model_signing("sign", "key", bundle, "--private_key", keys / "signer.pem", "--signature", bundle / "model.sig")
    assert signed.returncode == 0, signed.stdout + signed.stderr
    assert run("verify", bundle, "--public-key", keys / "signer.pub").exit_code == 0
    assert run("answer", bundle, "-q", "¿Quién?", "-c", CONTEXT, "--require-signature", keys / "signer.pub").exit_code == 0
    assert_one_line_error(run("verify", bundle, "--public-key", keys / "other.pub"), 2, "signature does not match")
    (bundle / "vocab.json").write_text((bundle / "vocab.json").read_text() + " ")  # and the manifest re-written to match
    m = json.loads((bundle / B.MANIFEST).read_text())
    B.write_manifest(bundle, m)
    assert run("verify", bundle).exit_code == 0  # the checksums alone cannot tell
    assert_one_line_error(run("verify", bundle, "--public-key", keys / "signer.pub"), 2, "signature does not match")


def test_a_signature_that_leaves_a_loaded_file_out_is_refused(bundle, keys):
    signed = model_signing("sign", "key", bundle, "--private_key", keys / "signer.pem", "--signature",
                           bundle / "model.sig", "--ignore-paths", bundle / "model.onnx")
    assert signed.returncode == 0, signed.stdout + signed.stderr
    assert_one_line_error(run("verify", bundle, "--public-key", keys / "signer.pub"), 2, "model.onnx is not covered")


def test_a_rolled_back_bundle_is_refused_with_min_version(bundle, keys, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(bundle, old)
    B.write_manifest(old, dict(json.loads((old / B.MANIFEST).read_text()), created="2026-01-01T00:00:00Z"))
    sign_bundle(old, keys / "signer.pem")
    B.write_manifest(bundle, dict(json.loads((bundle / B.MANIFEST).read_text()), created="2026-06-01T00:00:00Z"))
    sign_bundle(bundle, keys / "signer.pem")
    pub = keys / "signer.pub"
    assert run("verify", bundle, "--public-key", pub, "--min-version", "2026-06-01T00:00:00Z").exit_code == 0
    assert_one_line_error(run("verify", old, "--public-key", pub, "--min-version", "2026-06-01T00:00:00Z"), 2,
                          "version 2026-01-01T00:00:00Z", "rolled-back")
    assert_one_line_error(run("answer", old, "-q", "¿Quién?", "-c", CONTEXT, "--require-signature", pub,
                              "--min-version", "2026-03-01"), 2, "rolled-back")
    assert run("answer", old, "-q", "¿Quién?", "-c", CONTEXT, "--require-signature", pub,
               "--min-version", "2025-12-31").exit_code == 0
    # the version is the signed one: editing it in the manifest breaks the signature
    B.write_manifest(old, dict(json.loads((old / B.MANIFEST).read_text()), created="2027-01-01T00:00:00Z"))
    assert_one_line_error(run("verify", old, "--public-key", pub, "--min-version", "2026-06-01"), 2,
                          "signature does not match")
    assert_one_line_error(run("answer", bundle, "-q", "?", "-c", CONTEXT, "--min-version", "2026-01-01"), 2,
                          "--min-version needs --require-signature")
    assert_one_line_error(run("verify", bundle, "--public-key", pub, "--min-version", "yesterday"), 2, "yesterday")


def _logits(engine) -> np.ndarray:
    ids = engine.tokenizer("¿Quién?", CONTEXT, return_tensors="np")
    return engine.run({k: ids[k].astype(np.int64) for k in engine.input_names if k in ids})[0]


def test_the_bytes_whose_signature_is_checked_are_the_bytes_loaded(bundle, keys, tmp_path):
    """A thread swaps the signed bundle with a twin whose weights differ and whose manifest is re-written to
    match (checksums consistent, signature stale), over and over, while the bundle is loaded with its public
    key: every load refuses or runs the genuine weights."""
    import onnx

    sign_bundle(bundle, keys / "signer.pem")
    genuine = _logits(load_engine(bundle, device="cpu", require_signature=keys / "signer.pub"))
    twin = tmp_path / "twin"
    shutil.copytree(bundle, twin)
    graph = onnx.load(str(twin / "model.onnx"))
    for init in graph.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT and init.raw_data:
            init.raw_data = (np.frombuffer(init.raw_data, dtype=np.float32) + 0.5).tobytes()
    onnx.save(graph, str(twin / "model.onnx"))
    B.write_manifest(twin, json.loads((twin / B.MANIFEST).read_text()))
    stop = threading.Event()

    def swapper():
        while not stop.is_set():
            _exchange(bundle, twin)
            time.sleep(0.003)

    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    loaded = refused = 0
    try:
        for _ in range(15):
            try:
                engine = load_engine(bundle, device="cpu", require_signature=keys / "signer.pub")
            except IntegrityError:
                refused += 1
                continue
            np.testing.assert_allclose(_logits(engine), genuine, atol=1e-5)
            loaded += 1
    finally:
        stop.set()
        thread.join()
    assert loaded + refused == 15, (loaded, refused)


def test_ed25519_bundles_keep_verifying_with_one_deprecation_line(bundle, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()  # what kdtool keygen made before, and export signed with
    (tmp_path / "ed.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    (tmp_path / "ed.pub").write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    (bundle / "manifest.sig").write_bytes(key.sign((bundle / B.MANIFEST).read_bytes()))
    done = subprocess.run([*KDTOOL, "verify", str(bundle), "--public-key", str(tmp_path / "ed.pub")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "deprecated" in line]
    assert len(lines) == 1 and "Ed25519" in lines[0] and "kdtool keygen" in lines[0], done.stderr
    assert run("answer", bundle, "-q", "¿Quién?", "-c", CONTEXT, "--require-signature", tmp_path / "ed.pub").exit_code == 0
    (bundle / "config.json").write_text((bundle / "config.json").read_text() + " ")
    B.write_manifest(bundle, json.loads((bundle / B.MANIFEST).read_text()))
    assert_one_line_error(run("verify", bundle, "--public-key", tmp_path / "ed.pub"), 2, "signature does not match")
    assert_one_line_error(run("export", bundle, "-o", tmp_path / "b2", "--sign-key", tmp_path / "ed.pem"), 2,
                          "Ed25519", "deprecated", "kdtool keygen")


def _pair_matches(private, public) -> bool:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo) == public.read_bytes()


@pytest.mark.parametrize("rounds", [12])
def test_two_keygens_racing_for_one_path_never_both_win_nor_mismatch(tmp_path, rounds):
    for r in range(rounds):
        d = tmp_path / f"r{r}"
        d.mkdir()
        # even rounds: the same private path; odd rounds: two private keys, one public path
        second = [d / "k.pem"] if r % 2 == 0 else [d / "other.pem", "--public-key", d / "k.pub"]
        procs = [subprocess.Popen([*KDTOOL, "keygen", *map(str, args)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for args in ([d / "k.pem"], second)]
        results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
        codes = sorted(code for code, _ in results)
        assert codes == [0, 2], results
        assert "already exists" in next(err for code, err in results if code == 2)
        winners = [p for p in (d / "k.pem", d / "other.pem") if p.exists()]  # the pair of whoever won k.pub
        assert len(winners) == 1 and _pair_matches(winners[0], d / "k.pub"), sorted(p.name for p in d.iterdir())
        assert not [p for p in d.iterdir() if p.name.endswith(".partial")]
        assert oct(winners[0].stat().st_mode & 0o777) == "0o600"
