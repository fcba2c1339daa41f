"""``kdtool --help``, ``--version`` and the light commands (score, verify, keygen, profiles, and their
``--help``) load no torch, transformers or onnxruntime: each runs the real click main in a fresh
interpreter, which then reports the modules it loaded (what was loaded, never how long it took)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "onnxruntime")

# runs ``kdtool ARGV`` in-process in a fresh interpreter, then prints its exit code and the heavy modules loaded
PROBE = r'''
import json, sys
argv, preload, heavy = json.loads(sys.argv[1])
for name in preload:
    __import__(name)
from kdtool.cli import main
try:
    main(argv, prog_name="kdtool")
    code = 0
except SystemExit as e:
    code = e.code or 0
loaded = sorted({m.partition(".")[0] for m in sys.modules} & set(heavy))
print("PROBE " + json.dumps({"code": code, "heavy": loaded}))
'''


def probe(argv: list[str], preload: tuple[str, ...] = ()) -> tuple[int, list[str], str]:
    res = subprocess.run([sys.executable, "-c", PROBE, json.dumps([argv, list(preload), HEAVY])], capture_output=True,
                         text=True, timeout=300)
    lines = [line for line in res.stdout.splitlines() if line.startswith("PROBE ")]
    assert lines, res.stderr[-3000:]
    out = json.loads(lines[-1][len("PROBE "):])
    return out["code"], out["heavy"], res.stdout + res.stderr


@pytest.fixture(scope="module")
def files(tmp_path_factory, squad_obj, squad_file):
    import onnx
    from onnx import TensorProto, helper

    from kdtool.bundle.manifest import new_manifest, write_manifest

    root = tmp_path_factory.mktemp("light")
    answers = {qa["id"]: qa["answers"][0]["text"] for art in squad_obj["data"] for par in art["paragraphs"]
               for qa in par["qas"]}
    (root / "preds.json").write_text(json.dumps(answers), encoding="utf-8")
    bundle = root / "bundle"
    bundle.mkdir()
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])),
              bundle / "model.onnx")
    write_manifest(bundle, new_manifest(model="model.onnx"))
    return {"data": str(squad_file), "preds": str(root / "preds.json"), "bundle": str(bundle)}


# the command line, and what its output shows when it really ran
LIGHT = [
    (["--help"], "distill"), (["--version"], "kdtool, version"),
    (["score", "--help"], "--lang"), (["score", "{data}", "{preds}", "--lang", "es"], '"f1": 100.0'),
    (["verify", "--help"], "--public-key"), (["verify", "{bundle}"], "files verified"),
    (["keygen", "--help"], "--public-key"), (["keygen", "{key}"], "private key, keep it secret"),
    (["profiles"], "x86-avx512-vnni"), (["profiles", "--help"], "Usage"),
]


@pytest.mark.parametrize("argv, shows", LIGHT, ids=[" ".join(argv) for argv, _ in LIGHT])
def test_light_commands_load_no_torch_transformers_or_onnxruntime(argv, shows, files, tmp_path):
    if argv == ["keygen", "{key}"]:
        files = {**files, "key": str(tmp_path / "release.pem")}
    code, heavy, output = probe([a.format(**files) for a in argv])
    assert code == 0 and shows in output, output[-3000:]
    assert heavy == [], f"kdtool {' '.join(argv)} loaded {heavy}"


def test_the_probe_sees_a_heavy_import():
    """The check can fail: a command run after importing the trainer reports torch and transformers."""
    code, heavy, output = probe(["--version"], preload=("kdtool.distill.trainer",))
    assert code == 0, output[-3000:]
    assert {"torch", "transformers"} <= set(heavy)
