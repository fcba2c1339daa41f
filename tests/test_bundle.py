"""Bundle integrity: checksums verified before loading, escapes and extras refused, atomic writes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

from kdtool.bundle.manifest import MANIFEST, sha256_file, verify_bundle
from kdtool.cli import main
from kdtool.engines import load_engine
from kdtool.engines.trt import check_engine_version
from kdtool.errors import IntegrityError
from kdtool.export.config import ExportConfig
from kdtool.export.pipeline import export_model


@pytest.fixture(scope="module")
def clean_bundle(tmp_path_factory, roberta_dir):
    return export_model(ExportConfig(roberta_dir, tmp_path_factory.mktemp("b") / "bundle", precision="int8"))


@pytest.fixture
def bundle(clean_bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(clean_bundle, copy, symlinks=True)
    return copy


def _rewrite_manifest(bundle, change):
    m = json.loads((bundle / MANIFEST).read_text())
    change(m)
    (bundle / MANIFEST).write_text(json.dumps(m))


def _refused(bundle, *needles):
    with pytest.raises(IntegrityError) as err:
        load_engine(bundle)
    msg = str(err.value)
    assert "\n" not in msg and all(n in msg for n in needles), msg
    return msg


def test_clean_bundle_verifies_and_loads(bundle):
    m = verify_bundle(bundle)
    assert m["files"]["model.onnx"]["sha256"] == sha256_file(bundle / "model.onnx")
    assert load_engine(bundle).kind == "onnxruntime"


def test_altered_model_is_refused_before_onnxruntime_reads_it(bundle):
    (bundle / "model.onnx").write_bytes(b"not an onnx graph at all")  # ORT would fail differently
    _refused(bundle, "model.onnx", "altered")


def test_one_flipped_byte_in_the_tokenizer_is_refused(bundle):
    data = bytearray((bundle / "tokenizer.json").read_bytes())
    data[len(data) // 2] ^= 1
    (bundle / "tokenizer.json").write_bytes(bytes(data))
    _refused(bundle, "tokenizer.json", "altered")


def test_missing_file_is_refused(bundle):
    (bundle / "config.json").unlink()
    _refused(bundle, "config.json", "missing")


def test_unlisted_file_is_refused(bundle):
    (bundle / "extra.onnx").write_bytes(b"x")
    _refused(bundle, "extra.onnx", "not listed")


@pytest.mark.parametrize("bad", ["../outside.json", "/etc/passwd", "sub/../../x"])
def test_manifest_path_leaving_the_bundle_is_refused(bundle, bad):
    _rewrite_manifest(bundle, lambda m: m["files"].__setitem__(bad, {"sha256": "0" * 64, "bytes": 1}))
    _refused(bundle, "leaves the bundle")


def test_symlinked_member_is_refused(bundle, tmp_path):
    outside = tmp_path / "outside.json"
    shutil.copy(bundle / "config.json", outside)
    (bundle / "config.json").unlink()
    os.symlink(outside, bundle / "config.json")
    _refused(bundle, "symlink")


def test_manifest_that_is_not_json_is_refused(bundle):
    (bundle / MANIFEST).write_text("{broken")
    _refused(bundle, "not valid JSON")


def test_engine_from_another_tensorrt_version_is_refused(tmp_path):
    check_engine_version("10.8.0", "10.8.0", tmp_path)
    with pytest.raises(IntegrityError, match="built by TensorRT 10.3.0 but this machine has TensorRT 10.8.0"):
        check_engine_version("10.3.0", "10.8.0", tmp_path)


def test_cli_reports_tampering_in_one_line(bundle):
    (bundle / "model.onnx").write_bytes(b"tampered")
    result = CliRunner().invoke(main, ["answer", str(bundle), "-q", "¿Quién?", "-c", "María López construyó un puente."])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "altered" in result.stderr and "Traceback" not in result.output


def test_killed_export_leaves_no_bundle(tmp_path, roberta_dir):
    target = tmp_path / "bundle"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-c", "from kdtool.cli import main; main()", "export", str(roberta_dir),
                             "-o", str(target), "--precision", "fp16"], env=env, stderr=subprocess.PIPE, text=True)
    try:  # wait until the export is writing into its temporary directory, then kill it hard
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if line.startswith("[4/6]"):
                break
        assert seen and seen[-1].startswith("[4/6]"), "".join(seen)
        assert any(p.name.endswith(".partial") for p in tmp_path.iterdir())
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not target.exists()
