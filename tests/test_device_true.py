"""Device-true bundles: INT8 that is exact on each arithmetic class, and the self-test a bundle carries.

Real ONNX Runtime sessions, real exports of tiny models, the real CLI. Nothing here depends on which x86
arithmetic this machine has: expectations are derived from what :func:`probe_u8s8_saturates` measured,
and the bounds are the stated ones (exact integer products give the same logits to float rounding).
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import tiny
from badinput_fixtures import assert_one_line_error, run

from kdtool.bundle.arithmetic import ARITHMETIC, probe_u8s8_saturates, this_machine
from kdtool.bundle.manifest import write_manifest
from kdtool.bundle.selftest import SELF_TEST_FILE
from kdtool.engines import load_engine
from kdtool.engines.ort import session_options
from kdtool.export.config import ExportConfig
from kdtool.export.int8_forms import count_weight_forms
from kdtool.export.onnx_export import run_session
from kdtool.export.pipeline import export_model
from kdtool.export.samples import sample_windows

# a profile per class this suite can export for; the "other" class is whichever this machine is not
PROFILE_OF = {"x86-avx2": "x86-avx2", "x86-vnni": "x86-avx512-vnni"}


def _saturating_product():
    """A u8 x s8 product whose pairs overflow int16 (255 * 127 * 2 > 32767): the graph and its exact result."""
    from onnx import TensorProto, helper, numpy_helper

    k = 64
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["A", "W"], ["Y"])], "g",
                              [helper.make_tensor_value_info("A", TensorProto.UINT8, [2, k])],
                              [helper.make_tensor_value_info("Y", TensorProto.INT32, [2, 3])],
                              [numpy_helper.from_array(np.full((k, 3), 127, np.int8), "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=9)
    return model.SerializeToString(), np.full((2, k), 255, np.uint8), 255 * 127 * k


def test_the_probe_reports_what_onnxruntime_computes_and_kdtool_sessions_are_exact():
    graph, a, exact = _saturating_product()
    plain = ort.SessionOptions()
    plain.log_severity_level = 3
    raw = ort.InferenceSession(graph, plain, providers=["CPUExecutionProvider"]).run(None, {"A": a})[0]
    assert bool((raw != exact).any()) == probe_u8s8_saturates()  # the probe is this very kernel's behaviour
    ours = ort.InferenceSession(graph, session_options(), providers=["CPUExecutionProvider"]).run(None, {"A": a})[0]
    assert (ours == exact).all()  # exact on every class: u8 x u8 where u8 x s8 would saturate
    machine = this_machine()
    assert machine.arithmetic in ARITHMETIC and ARITHMETIC[machine.arithmetic].u8s8_saturates == machine.u8s8_saturates


@pytest.fixture(scope="module")
def roberta_dir(tmp_path_factory, bpe_tokenizer):
    """The suite's tiny RoBERTa with the 256 positions it had when the saturation below was measured: that is a
    property of these weights, and the suite's 512-position model draws its weights differently."""
    return tiny.tiny_qa_model(tmp_path_factory.mktemp("device-true") / "roberta", bpe_tokenizer, "roberta",
                              max_positions=256)


@pytest.fixture(scope="module")
def int8_bundles(tmp_path_factory, roberta_dir, squad_file):
    """Dynamic INT8 bundles of the same model for both x86 classes (fused: QAttention and DynamicQuantizeMatMul)."""
    root = tmp_path_factory.mktemp("int8-forms")
    return {cls: export_model(ExportConfig(roberta_dir, root / cls, precision="int8", profile=profile,
                                           calibration_data=squad_file, max_seq_length=96))
            for cls, profile in PROFILE_OF.items()}


def test_avx2_bundles_store_u8_weights_with_the_same_values(int8_bundles, roberta_dir, squad_file):
    avx2, vnni = int8_bundles["x86-avx2"], int8_bundles["x86-vnni"]
    m_avx2, m_vnni = (json.loads((b / "manifest.json").read_text()) for b in (avx2, vnni))
    assert m_avx2["int8"]["target"] == "x86-avx2" and m_avx2["int8"]["weights"] == "u8"
    assert m_vnni["int8"]["target"] == "x86-vnni" and m_vnni["int8"]["weights"] == "s8"
    forms_avx2, forms_vnni = count_weight_forms(avx2 / "model.onnx"), count_weight_forms(vnni / "model.onnx")
    assert forms_avx2["s8"] == forms_avx2["s7"] == 0 and forms_avx2["u8"] == forms_vnni["s8"] + forms_vnni["s7"] > 0
    assert m_avx2["certified_on"]["arithmetic"] == this_machine().arithmetic
    windows = sample_windows(load_engine(avx2).tokenizer, squad_file, 8, 96, batch_size=4)
    plain = ort.SessionOptions()  # no kdtool options: the u8 form is exact in any ONNX Runtime
    plain.log_severity_level = 3
    raw_u8 = ort.InferenceSession(str(avx2 / "model.onnx"), plain, providers=["CPUExecutionProvider"])
    ours_s8 = ort.InferenceSession(str(vnni / "model.onnx"), session_options(), providers=["CPUExecutionProvider"])
    for batch in windows:  # the same integer products, so the same logits to float rounding
        for a, b in zip(run_session(raw_u8, batch), run_session(ours_s8, batch), strict=True):
            assert np.abs(a - b).max() < 1e-4


def test_verify_run_reports_device_and_provider_and_passes(int8_bundles):
    bundle = int8_bundles[this_machine().arithmetic if this_machine().arithmetic in PROFILE_OF else "x86-vnni"]
    result = run("verify", bundle, "--run")
    assert result.exit_code == 0, result.output
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("self-test PASS") and "CPUExecutionProvider" in line and this_machine().cpu in line
    as_json = run("verify", bundle, "--run", "--json")
    report = json.loads(as_json.stdout[as_json.stdout.index("{"):])
    assert report["passed"] and report["max_abs_logit_diff"] <= report["bound"] and report["windows"] > 0
    assert report["machine"]["arithmetic"] == this_machine().arithmetic and report["argmax_agreement"] == 1.0


def _altered_copy(bundle, dst, *, rehash: bool):
    """A copy of ``bundle`` whose self-test expects other logits (+0.5 on every start logit)."""
    import shutil

    shutil.copytree(bundle, dst)
    doc = json.loads((dst / SELF_TEST_FILE).read_text())
    for graph in doc["graphs"].values():
        graph["expected"]["start_logits"] = (np.asarray(graph["expected"]["start_logits"]) + 0.5).tolist()
    (dst / SELF_TEST_FILE).write_text(json.dumps(doc))
    if rehash:  # someone who rewrites the manifest too: only a signature or the self-test itself catches it
        manifest = json.loads((dst / "manifest.json").read_text())
        write_manifest(dst, {k: v for k, v in manifest.items() if k != "files"})
    return dst


def test_altered_self_test_fails_checksums_signature_or_the_test_itself(int8_bundles, tmp_path):
    from kdtool.bundle.signing import generate_keypair
    from kdtool.bundle.verified import sign_bundle

    bundle = int8_bundles["x86-vnni"]
    altered = _altered_copy(bundle, tmp_path / "altered", rehash=False)
    assert_one_line_error(run("verify", altered, "--run"), 2, SELF_TEST_FILE, "altered")
    rehashed = _altered_copy(bundle, tmp_path / "rehashed", rehash=True)
    failing = run("verify", rehashed, "--run")
    assert failing.exit_code == 1 and "self-test FAIL" in failing.stdout, failing.output
    answered = run("answer", rehashed, "-q", "¿Quién construyó un puente?", "-c", "María construyó un puente.")
    assert_one_line_error(answered, 1, "self-test FAIL", "--no-self-test")
    assert run("answer", rehashed, "--no-self-test", "-q", "¿Quién?", "-c", "María construyó un puente.").exit_code == 0
    signed = tmp_path / "signed"
    import shutil

    shutil.copytree(bundle, signed)
    generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    sign_bundle(signed, tmp_path / "k.pem")
    assert run("verify", signed, "--run", "--public-key", tmp_path / "k.pub").exit_code == 0
    doc = json.loads((signed / SELF_TEST_FILE).read_text())
    doc["graphs"]["model.onnx"]["bound"]["cpu"] = 100.0  # loosen the bound, re-hash: the signature no longer holds
    (signed / SELF_TEST_FILE).write_text(json.dumps(doc))
    manifest = json.loads((signed / "manifest.json").read_text())
    write_manifest(signed, {k: v for k, v in manifest.items() if k != "files"})
    assert_one_line_error(run("verify", signed, "--run", "--public-key", tmp_path / "k.pub"), 2, "signature")


def test_a_bundle_for_another_arithmetic_class_is_named_and_strict_refuses_it(int8_bundles, tmp_path):
    here = this_machine().arithmetic
    other = "x86-vnni" if here == "x86-avx2" else "x86-avx2"
    ask = ["-q", "¿Quién construyó un puente?", "-c", "María construyó un puente en Sevilla."]
    named = run("answer", int8_bundles[other], *ask)
    assert named.exit_code == 0, named.output
    notes = [ln for ln in named.stderr.splitlines() if "INT8 arithmetic" in ln]
    assert len(notes) == 1 and f"exported for {other} INT8 arithmetic" in notes[0] and here in notes[0]
    out = tmp_path / "a.jsonl"
    refused = run("answer", int8_bundles[other], *ask, "--strict", "-o", out)
    assert_one_line_error(refused, 3, f"exported for {other}", "--strict")
    assert not out.exists()
    if here in PROFILE_OF:  # a bundle made for this class opens without a word
        quiet = run("answer", int8_bundles[here], *ask, "--strict")
        assert quiet.exit_code == 0 and "INT8 arithmetic" not in quiet.stderr, quiet.output


QEMU = shutil.which("qemu-x86_64")
EMULATED = """
import json, sys
import numpy as np
import onnxruntime as ort
from kdtool.bundle.arithmetic import this_machine
from kdtool.engines import load_engine
from kdtool.engines.ort import session_options
from kdtool.export.onnx_export import run_session

out = {"arithmetic": this_machine().arithmetic, "self_tests": {}}
for bundle in sys.argv[2:]:
    result = load_engine(bundle, device="cpu").self_test()
    out["self_tests"][bundle] = [result.passed, result.max_abs_logit_diff]
work = sys.argv[1]
windows = dict(np.load(work + "/windows.npz"))
plain = ort.SessionOptions()
plain.log_severity_level = 3
for name, opts in (("kdtool", session_options()), ("plain", plain)):
    for graph in ("qat.onnx", "qat-u8.onnx"):
        logits = run_session(ort.InferenceSession(work + "/" + graph, opts, providers=["CPUExecutionProvider"]), windows)
        np.save(f"{work}/{name}-{graph}.npy", np.stack(logits))
print(json.dumps(out))
"""


@pytest.mark.skipif(QEMU is None or platform.machine() != "x86_64",
                    reason="needs qemu-user (qemu-x86_64) to emulate an x86 CPU without VNNI (.ci/run installs it)")
def test_on_an_emulated_cpu_without_vnni_bundles_stay_exact_and_plain_onnxruntime_saturates(
        int8_bundles, roberta_dir, squad_file, tmp_path):
    """qemu's Haswell has AVX2 and no AVX-512 or VNNI: ONNX Runtime there runs the very kernels of an AVX2 EPYC
    (vpmaddubsw, saturating). The self-tests of both INT8 forms pass there, kdtool's sessions and the u8 form give
    the host's logits, and a plain ONNX Runtime session (without kdtool's exactness) on the s8 QDQ graph of a
    quantization-aware model does not: its u8 x s8 products saturate."""
    pytest.importorskip("modelopt.torch.quantization")
    import torch

    from kdtool.export.int8_forms import to_u8_weights
    from kdtool.export.qat import export_qat_onnx
    from kdtool.models import load_qa_model, load_tokenizer
    from kdtool.models.qat import quantize_model

    windows = sample_windows(load_tokenizer(roberta_dir), squad_file, 4, 96, batch_size=4)
    model = load_qa_model(roberta_dir).eval()
    quantize_model(model, [{k: torch.from_numpy(v) for k, v in w.items() if k != "token_type_ids"} for w in windows])
    graph = export_qat_onnx(model, tmp_path / "qat.onnx", windows[0], opset=18)
    (tmp_path / "qat-u8.onnx").write_bytes(graph.read_bytes())
    to_u8_weights(tmp_path / "qat-u8.onnx")
    np.savez(tmp_path / "windows.npz", **windows[0])
    exact = np.stack(run_session(ort.InferenceSession(str(graph), session_options(), providers=["CPUExecutionProvider"]),
                                 windows[0]))
    done = subprocess.run([QEMU, "-cpu", "Haswell", sys.executable, "-c", EMULATED, str(tmp_path),
                           *(str(b) for b in int8_bundles.values())], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["arithmetic"] == "x86-avx2"  # the probe sees the emulated CPU's kernels, whatever the host is
    assert all(passed for passed, _ in report["self_tests"].values()), report
    mask = windows[0]["attention_mask"].astype(bool)

    def diff(name):
        return float(np.abs(np.load(tmp_path / name) - exact)[:, mask].max())

    # exact integer products: the tiny model's logits agree to float rounding (1e-3 is the FP32 parity tolerance)
    assert diff("kdtool-qat.onnx.npy") <= 1e-3 and diff("kdtool-qat-u8.onnx.npy") <= 1e-3
    assert diff("plain-qat-u8.onnx.npy") <= 1e-3  # the u8 form is exact without kdtool's session options
    assert diff("plain-qat.onnx.npy") > 1e-2  # full-range s8 weights saturate on these kernels (0.05 measured)
