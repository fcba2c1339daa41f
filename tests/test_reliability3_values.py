"""Round three, class 2 and section 4: values that are bad input are refused as bad input.

Text that is not Unicode, numbers outside any sensible range, streams given as outputs, integers
beyond Python's 4300-digit conversion limit, manifests naming a file under several spellings, a
QAT model given to prune, weights that do not match their config: each is one line, exit 2, no
traceback, nothing written; output is UTF-8 whatever the locale; input checks stay linear; and
``validate --require-signature`` says which models it could not check (``--strict`` refuses them).
Everything runs the real ``kdtool`` on real files, in process or as a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import unicodedata
from pathlib import Path

import pytest
from badinput_fixtures import CONTEXT, KDTOOL, assert_one_line_error, copy_model, run, squad

from kdtool.bundle import manifest as B
from kdtool.data import squad as squad_module
from kdtool.distill.config import DistillConfig
from kdtool.errors import InputError

HUGE = "9" * 5000  # beyond Python's 4300-digit limit of int <-> str conversion
GREEK = "Ο Σωκράτης γεννήθηκε στην Αθήνα και δίδαξε τον Πλάτωνα στην αγορά της πόλης"


@pytest.fixture
def model(tmp_path, roberta_dir) -> Path:
    return copy_model(roberta_dir, tmp_path / "model")


@pytest.fixture(scope="module")
def signed(tmp_path_factory, roberta_dir):
    d = tmp_path_factory.mktemp("signed")
    assert run("keygen", d / "signer.pem").exit_code == 0
    res = run("export", roberta_dir, "-o", d / "bundle", "--no-fuse", "--sign-key", d / "signer.pem")
    assert res.exit_code == 0, res.output
    return d / "bundle", d / "signer.pub"


def _jsonl(path: Path, rows: list[str]) -> Path:
    path.write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def test_text_that_is_not_unicode_is_refused_where_it_is_read(tmp_path, model):
    """A lone surrogate escape in a JSONL question, id or context, a SQuAD context or a recipe value: one line
    naming the file, the line and the field, exit 2, and no answers file."""
    good = json.dumps({"id": "a", "question": "¿Quién?", "context": CONTEXT}, ensure_ascii=False)
    for field, n in (("question", 2), ("id", 3), ("context", 2)):
        bad = json.dumps({"id": "b", "question": "¿Quién?", "context": CONTEXT} | {field: "x\ud800y"})
        rows = [good, bad] if n == 2 else [good, good.replace('"a"', '"c"'), bad]
        src, out = _jsonl(tmp_path / f"{field}.jsonl", rows), tmp_path / f"{field}-answers.jsonl"
        assert_one_line_error(run("answer", model, "--input", src, "-o", out), 2, f"{src}:{n}", f"'{field}'",
                              "surrogate")
        assert not out.exists()
    data = tmp_path / "squad.json"
    data.write_text(json.dumps(squad([("Hola \ud800 mundo", [{"id": "q", "question": "¿Qué?",
                                                              "answers": [{"text": "Hola", "answer_start": 0}]}])]),
                               indent=1))
    assert_one_line_error(run("validate", model, "--data", data), 2, f"{data}:", "'context'", "surrogate")
    recipe = tmp_path / "r.yaml"
    recipe.write_text('name: "x\\ud800"\ndata:\n  train: t.json\ndistill:\n  teacher: t\n', encoding="utf-8")
    assert_one_line_error(run("run", recipe, "-o", tmp_path / "run"), 2, "surrogate")
    assert not (tmp_path / "run").exists()


def test_output_is_utf8_whatever_the_locale_says(tmp_path, model, squad_file):
    """PYTHONIOENCODING=ascii: an answer in Greek prints (as UTF-8), and so does validate's table (ΔF1)."""
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "LC_ALL": "C.UTF-8", "OMP_NUM_THREADS": "1"}
    src = _jsonl(tmp_path / "greek.jsonl", [json.dumps({"question": "Ποιος;", "context": GREEK})])
    res = subprocess.run([*KDTOOL, "answer", str(model), "--input", str(src)], capture_output=True, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stderr.decode("utf-8", "replace")
    row = json.loads(res.stdout.decode("utf-8"))
    assert row["answer"] and row["answer"] in GREEK and GREEK[row["start"]:row["end"]] == row["answer"]
    res = subprocess.run([*KDTOOL, "validate", str(model), "--data", str(squad_file), "--limit", "2"],
                         capture_output=True, env=env, timeout=300)
    assert res.returncode == 0 and "ΔF1" in res.stdout.decode("utf-8"), res.stderr.decode("utf-8", "replace")


NUMBERS = [
    (["distill", "{m}", "--train", "{d}", "-o", "{o}", "--temperature", "1e300"], "'--temperature'"),
    (["finetune", "{m}", "--train", "{d}", "-o", "{o}", "--max-train-examples", "-1"], "'--max-train-examples'"),
    (["finetune", "{m}", "--train", "{d}", "-o", "{o}", "--seed", "-1"], "'--seed'"),
    (["finetune", "{m}", "--train", "{d}", "-o", "{o}", "--seed", str(2**70)], "'--seed'"),
    (["finetune", "{m}", "--train", "{d}", "-o", "{o}", "--lr", "1e300"], "'--lr'"),
    (["split", "{d}", "--train", "{o}/a.json", "--dev", "{o}/b.json", "--seed", str(2**70)], "'--seed'"),
    (["answer", "{m}", "-q", "a", "-c", "b", "--threads", "100000"], "'--threads'"),
    (["answer", "{m}", "-q", "a", "-c", "b", "--threads", str(2**63)], "'--threads'"),
    (["validate", "{m}", "--data", "{d}", "--threads", "100000"], "'--threads'"),
    (["profile", "{m}", "--threads", "100000"], "'--threads'"),
    (["profile", "{m}", "--seq-len", str(2**40)], "'--seq-len'"),
    (["export", "{m}", "-o", "{o}", "--opset", "99999999999"], "'--opset'"),
    (["prune", "{m}", "--train", "{d}", "-o", "{o}", "--target-flops", "50%", "--steps", str(2**63)], "'--steps'"),
    (["validate", "{m}", "--data", "{d}", "--max-length", str(2**40)], "'--max-length'"),
]


@pytest.mark.parametrize("args, needle", NUMBERS, ids=[f"{a[0]}{n}" for a, n in NUMBERS])
def test_numeric_options_are_bounded_at_parse_time(tmp_path, squad_file, args, needle):
    """Out-of-range numbers are a usage error before anything is read: the model path does not even exist."""
    subst = {"{m}": str(tmp_path / "no-model"), "{d}": str(squad_file), "{o}": str(tmp_path / "out")}
    args = [subst.get(a, a.replace("{o}", subst["{o}"])) for a in args]
    assert_one_line_error(run(*args), 2, "Invalid value for", needle)
    assert not (tmp_path / "out").exists()


def test_recipe_and_library_configs_are_bounded_too(tmp_path, squad_file):
    base = {"model": "m", "train_file": str(squad_file), "output": str(tmp_path / "o")}
    for bad, needle in (({"temperature": 1e300}, "temperature"), ({"seed": -1}, "seed"), ({"seed": 2**70}, "seed"),
                        ({"max_train_examples": -1}, "max-train-examples")):
        with pytest.raises(InputError, match=needle):
            DistillConfig(**base, **bad)


def test_streams_as_outputs_are_refused_up_front(tmp_path, model, squad_file):
    """-o /dev/stdout into a pipe, a FIFO as --json, and '-': refused in one line before the model loads,
    without hanging; answers go to stdout when -o is left out."""
    res = subprocess.run([*KDTOOL, "answer", str(model), "-q", "¿Quién?", "-c", CONTEXT, "-o", "/dev/stdout"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stdout == "" and "pipe" in res.stderr and "Traceback" not in res.stderr
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    res = subprocess.run([*KDTOOL, "validate", str(model), "--data", str(squad_file), "--json", str(fifo)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "pipe (FIFO)" in res.stderr, res.stderr
    assert_one_line_error(run("answer", model, "-q", "a", "-c", "b", "-o", "-"), 2, "not streams")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_integers_beyond_the_conversion_limit_are_bad_input(tmp_path, model, squad_file, signed):
    data = tmp_path / "huge-id.json"
    data.write_text(json.dumps(squad([("Hola mundo", [{"id": 1, "question": "¿Qué?",
                                                       "answers": [{"text": "Hola", "answer_start": 0}]}])]))
                    .replace('"id": 1', f'"id": {HUGE}'))
    assert_one_line_error(run("validate", model, "--data", data), 2, "4300 digits")
    preds = tmp_path / "preds.json"
    preds.write_text(f'{{"q": {HUGE}}}')
    assert_one_line_error(run("score", squad_file, preds), 2, "4300 digits")
    src = _jsonl(tmp_path / "q.jsonl", [f'{{"id": {HUGE}, "question": "a", "context": "b"}}'])
    assert_one_line_error(run("answer", model, "--input", src), 2, f"{src}:1", "4300 digits")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: x\ndata:\n  train: {squad_file}\n  split_seed: {HUGE}\ndistill:\n  teacher: t\n")
    assert_one_line_error(run("run", recipe, "-o", tmp_path / "run"), 2, "4300 digits")
    assert_one_line_error(run("run", "minilm-squad-es-cpu", "-o", tmp_path / "run", "--override",
                              f"distill.seed={HUGE}"), 2, "4300 digits")
    bundle, _ = signed
    manifest = json.loads((bundle / B.MANIFEST).read_text())
    copy = copy_model(bundle, tmp_path / "bundle")
    (copy / B.MANIFEST).write_text(json.dumps(manifest).replace('"opset": 18', f'"opset": {HUGE}'))
    assert_one_line_error(run("answer", copy, "-q", "a", "-c", "b"), 2)
    assert_one_line_error(run("verify", copy), 2)


def _respelled(bundle: Path, copy: Path, names: list[str]) -> Path:
    copy = copy_model(bundle, copy)
    manifest = json.loads((copy / B.MANIFEST).read_text())
    meta = manifest["files"]["config.json"]
    manifest["files"].update({n: meta for n in names})
    (copy / B.MANIFEST).write_text(json.dumps(manifest))
    (copy / "model.sig").unlink()  # the signature no longer holds; the check here is the manifest's own
    return copy


def test_a_manifest_names_each_file_once_canonically(tmp_path, signed):
    """A member name with NUL, a file listed under many spellings (./config.json, .//config.json, ...),
    or a name given twice: the manifest is damaged, exit 2, one line, before any file is read."""
    bundle, _ = signed
    spellings = ["/".join(["."] * (1 + k % 7)) + "/" * (1 + k // 7) + "config.json" for k in range(500)]
    for k, names in enumerate((["config.json\0.onnx"], spellings, ["./config.json"], ["tokenizer.json/"])):
        copy = _respelled(bundle, tmp_path / f"bundle-{k}", names)
        assert_one_line_error(run("verify", copy), 2, "damaged")
        assert_one_line_error(run("answer", copy, "-q", "a", "-c", "b"), 2, "damaged")
    copy = copy_model(bundle, tmp_path / "dup")
    text = (copy / B.MANIFEST).read_text()
    (copy / B.MANIFEST).write_text(text.replace('"files": {', '"files": {"config.json": {"sha256": "' + "0" * 64 +
                                                '", "bytes": 1}, ', 1))
    (copy / "model.sig").unlink()
    assert_one_line_error(run("verify", copy), 2, "twice", "damaged")
    assert_one_line_error(run("answer", copy, "-q", "a", "-c", "b"), 2, "twice", "damaged")


def test_prune_refuses_qat_models_up_front(tmp_path, model, squad_file):
    out = tmp_path / "pruned"
    assert_one_line_error(run("prune", model, "--train", squad_file, "-o", out, "--target-flops", "50%", "--qat"), 2,
                          "--qat")
    qat = copy_model(model, tmp_path / "qat-student", extra={"modelopt_state.pth": b"state"})
    assert_one_line_error(run("prune", qat, "--train", squad_file, "-o", out, "--target-flops", "50%"), 2,
                          "quantization-aware")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "qat-student"]


def test_weights_that_do_not_match_the_config_are_a_damaged_model(tmp_path, model, squad_file):
    """config.json says 4 layers over weights of 2 (or 1 over 2): refused in one line, not filled with random layers."""
    config = json.loads((model / "config.json").read_text())
    for layers, needle in ((config["num_hidden_layers"] + 2, "weights missing"), (1, "unexpected weights")):
        other = copy_model(model, tmp_path / f"layers-{layers}")
        (other / "config.json").write_text(json.dumps(dict(config, num_hidden_layers=layers)))
        assert_one_line_error(run("answer", other, "-q", "¿Quién?", "-c", CONTEXT), 2, "do not match", needle)
        assert_one_line_error(run("validate", other, "--data", squad_file, "--limit", 2), 2, "do not match")
        assert_one_line_error(run("export", other, "-o", tmp_path / "b", "--no-fuse"), 2, "do not match")


class _Counting:
    """``unicodedata`` itself, counting the characters handed to ``normalize`` (the work of an offset check)."""

    def __init__(self):
        self.chars = 0

    def __getattr__(self, name):
        return getattr(unicodedata, name)

    def normalize(self, form, text):
        self.chars += len(text)
        return unicodedata.normalize(form, text)


def test_input_checks_are_linear(tmp_path, monkeypatch):
    """A wrong 2,000-character answer against a 6,000-character NFD context normalizes a bounded multiple of
    the record's characters (it once re-normalized every prefix: 35 million); 60,000 questions whose only
    duplicate id is the last pair are refused naming it (once a quadratic search)."""
    counting = _Counting()
    monkeypatch.setattr(squad_module, "unicodedata", counting)
    context = unicodedata.normalize("NFD", "é" * 6000)
    answer = unicodedata.normalize("NFC", context[10:4010])[:-1] + "x"
    data = tmp_path / "nfd.json"
    data.write_text(json.dumps(squad([(context, [{"id": "q", "question": "¿Qué?",
                                                  "answers": [{"text": answer, "answer_start": 10}]}])])))
    with pytest.raises(InputError, match="does not point at"):
        squad_module.load_squad(data)
    assert counting.chars <= 50 * (len(context) + len(answer)), counting.chars
    monkeypatch.undo()
    qas = [{"id": f"q{i}", "question": "¿Qué?", "answers": [{"text": "Hola", "answer_start": 0}]} for i in range(60000)]
    qas[-1]["id"] = "q59998"
    data.write_text(json.dumps(squad([("Hola mundo", qas)])))
    (tmp_path / "preds.json").write_text("{}")
    assert_one_line_error(run("score", data, tmp_path / "preds.json"), 2, "'q59998' appears more than once")


def test_require_signature_says_which_models_it_did_not_check(tmp_path, model, squad_file, signed):
    bundle, public = signed
    res = run("validate", bundle, model, "--data", squad_file, "--limit", 2, "--require-signature", public)
    assert res.exit_code == 0, res.output
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("Warning:")]
    assert len(warnings) == 1 and str(model) in warnings[0] and "not checked" in warnings[0], res.stderr
    assert str(bundle) not in warnings[0]
    out = tmp_path / "v.json"
    assert_one_line_error(run("validate", bundle, model, "--data", squad_file, "--limit", 2, "--require-signature",
                              public, "--strict", "--json", out), 2, str(model), "--strict")
    assert not out.exists()
    res = run("validate", bundle, "--data", squad_file, "--limit", 2, "--require-signature", public, "--strict")
    assert res.exit_code == 0 and "Warning" not in res.stderr, res.output
