"""Nothing untrusted is executed: pickled weights are not unpickled, a model's own Python code runs
only with --trust-remote-code, and no shell command or unsafe loader is reachable from user input."""

from __future__ import annotations

import ast
import json
import os
import pickle
from pathlib import Path

import pytest
from badinput_fixtures import CONTEXT, assert_one_line_error, copy_model, run

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("toolchain", "export", "profiles", "kernels")


class _Payload:
    """Unpickling this runs ``touch MARKER``: what a malicious pytorch_model.bin does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _pickled_model(tmp_path, roberta_dir, *, torch_format: bool) -> tuple[Path, Path]:
    import torch

    marker = tmp_path / "PWNED"
    src = copy_model(roberta_dir, tmp_path / "evil", without={"model.safetensors"})
    state = {"roberta.embeddings.word_embeddings.weight": _Payload(marker)}
    if torch_format:
        torch.save(state, src / "pytorch_model.bin")
    else:
        (src / "pytorch_model.bin").write_bytes(pickle.dumps(state))
    # the payload is live: plain unpickling would run it (checked, then undone)
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.exists()
    marker.unlink()
    return src, marker


@pytest.mark.parametrize("torch_format", [True, False], ids=["torch.save", "raw-pickle"])
def test_malicious_pickle_weights_are_not_executed(tmp_path, roberta_dir, squad_file, torch_format):
    src, marker = _pickled_model(tmp_path, roberta_dir, torch_format=torch_format)
    for args in (("answer", src, "-q", "¿Quién?", "-c", CONTEXT), ("validate", src, "--data", squad_file),
                 ("export", src, "-o", tmp_path / "bundle")):
        assert_one_line_error(run(*args), 2, "pytorch_model.bin", "safetensors")
        assert not marker.exists(), f"kdtool {args[0]} executed the pickle payload"
    assert not (tmp_path / "bundle").exists()


def _remote_code_model(tmp_path, roberta_dir) -> tuple[Path, Path]:
    marker = tmp_path / "REMOTE_CODE_RAN"
    src = copy_model(roberta_dir, tmp_path / "remote")
    config = json.loads((src / "config.json").read_text())
    config.update(model_type="kdtool-remote-test", architectures=["RemoteForQuestionAnswering"],
                  auto_map={"AutoConfig": "remote_model.RemoteConfig",
                            "AutoModelForQuestionAnswering": "remote_model.RemoteForQuestionAnswering"})
    (src / "config.json").write_text(json.dumps(config))
    (src / "remote_model.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).touch()\n"
        "from transformers import RobertaConfig, RobertaForQuestionAnswering\n"
        "class RemoteConfig(RobertaConfig):\n    model_type = 'kdtool-remote-test'\n"
        "class RemoteForQuestionAnswering(RobertaForQuestionAnswering):\n    config_class = RemoteConfig\n")
    return src, marker


def test_remote_code_runs_only_with_the_flag(tmp_path, roberta_dir, squad_file):
    src, marker = _remote_code_model(tmp_path, roberta_dir)
    for args in (("answer", src, "-q", "¿Quién?", "-c", CONTEXT), ("validate", src, "--data", squad_file),
                 ("export", src, "-o", tmp_path / "bundle"), ("profile", src, "--seq-len", 16, "--runs", 1)):
        assert_one_line_error(run(*args), 2, "custom Python code", "--trust-remote-code")
        assert not marker.exists(), f"kdtool {args[0]} ran the model's code without --trust-remote-code"
    # the flag reaches the loader: the user asked for it, the code runs and the model answers
    res = run("answer", src, "-q", "¿Quién?", "-c", CONTEXT, "--trust-remote-code")
    assert res.exit_code == 0, res.output
    assert marker.exists() and CONTEXT[json.loads(res.stdout)["start"]:json.loads(res.stdout)["end"]]


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            owner = getattr(f.value, "id", "") if isinstance(f, ast.Attribute) else ""
            yield node, owner, name


def _sources():
    for d in SOURCE_DIRS:
        for path in sorted((ROOT / d).rglob("*.py")):
            yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_no_shell_and_no_unsafe_loader_in_the_shipped_code():
    """Every call that could execute text or pickles is absent, or pinned to its safe form."""
    problems, seen = [], 0
    for path, tree in _sources():
        seen += 1
        rel = path.relative_to(ROOT)
        for node, owner, name in _calls(tree):
            kw = {k.arg: k.value for k in node.keywords}
            where = f"{rel}:{node.lineno}"
            bare = isinstance(node.func, ast.Name)
            if (owner, name) in {("os", "system"), ("os", "popen"), ("os", "execv"), ("os", "execvp")} \
                    or (bare and name in ("eval", "exec", "compile", "__import__")):
                problems.append(f"{where}: {owner}.{name}")
            if owner == "subprocess" or name in ("Popen", "check_output", "getoutput", "getstatusoutput"):
                shell = kw.get("shell")
                if name in ("getoutput", "getstatusoutput") or (isinstance(shell, ast.Constant) and shell.value) \
                        or (shell is not None and not isinstance(shell, ast.Constant)):
                    problems.append(f"{where}: subprocess with a shell")
                if node.args and not isinstance(node.args[0], (ast.List, ast.Tuple, ast.Name)):
                    problems.append(f"{where}: subprocess command is not an argument list")
            if owner == "torch" and name == "load":
                wo = kw.get("weights_only")
                if not (isinstance(wo, ast.Constant) and wo.value is True):
                    problems.append(f"{where}: torch.load without weights_only=True")
            if owner in ("pickle", "cPickle", "dill", "marshal") and name in ("load", "loads"):
                problems.append(f"{where}: {owner}.{name}")
            if owner == "yaml" and name in ("load", "unsafe_load", "full_load", "load_all"):
                problems.append(f"{where}: yaml.{name} (use yaml.safe_load)")
            if owner == "np" and name == "load":
                ap = kw.get("allow_pickle")
                if ap is not None and not (isinstance(ap, ast.Constant) and ap.value is False):
                    problems.append(f"{where}: np.load with allow_pickle")
            if name == "from_pretrained":
                trc = kw.get("trust_remote_code")
                if isinstance(trc, ast.Constant) and trc.value is True:
                    problems.append(f"{where}: from_pretrained(trust_remote_code=True)")
    assert seen > 50, "the scan found no sources"
    assert not problems, "\n".join(problems)


def test_every_model_loader_takes_trust_remote_code_from_the_caller():
    """Each from_pretrained / AutoX call in the shipped code passes trust_remote_code (default False
    upstream), so the flag is the only way remote code can be switched on."""
    missing = []
    for path, tree in _sources():
        for node, owner, name in _calls(tree):
            if name == "from_pretrained" and owner.startswith("Auto"):
                if "trust_remote_code" not in {k.arg for k in node.keywords}:
                    missing.append(f"{path.relative_to(ROOT)}:{node.lineno}: {owner}.from_pretrained")
    assert not missing, "\n".join(missing)
