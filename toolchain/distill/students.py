"""Building the student: a preset (registry data below), a JSON config, or a model directory.

A preset or JSON config only sets the shape; everything else (model type, vocabulary, positions,
special token ids) comes from the base model (the teacher), because the student always uses the
base model's tokenizer. ``teacher-layers`` initialisation copies the embeddings, the task head and,
for each student layer k, teacher layer g(k) (the layer map) when the layer shapes match;
``teacher-bottom`` copies teacher layers 1..S instead (Patient KD); ``teacher-embeddings`` only the
embeddings (for the BiLSTM: the teacher's token embeddings projected to its width).

The presets (shapes, :data:`~kdtool.distill.presets.RELATIVE_PRESETS` derived from the teacher's,
and the names of other architectures) are data in :mod:`kdtool.distill.presets`; :data:`BUILDERS`
builds the other architectures (``bilstm``: kdtool.students.bilstm).
"""

from __future__ import annotations

import json
from pathlib import Path

from kdtool.distill.mapping import layer_map
from kdtool.distill.presets import ARCHITECTURES, PRESETS, RELATIVE_PRESETS
from kdtool.errors import InputError
from kdtool.models import load_config, load_task_model, load_tokenizer, max_positions
from kdtool.students.bilstm import (
    BiLSTMConfig,
    BiLSTMForQuestionAnswering,
    BiLSTMForSequenceClassification,
    init_embeddings_from_teacher,
)
from kdtool.tasks import TASKS


def _bilstm(base_config, task):
    cls = BiLSTMForQuestionAnswering if task.name == "qa" else BiLSTMForSequenceClassification
    limit = max_positions(base_config)
    config = BiLSTMConfig(vocab_size=base_config.vocab_size, embedding_size=min(256, base_config.hidden_size),
                          hidden_size=256, num_hidden_layers=1, pad_token_id=base_config.pad_token_id or 0,
                          max_position_embeddings=limit, num_labels=getattr(base_config, "num_labels", 2),
                          architectures=[cls.__name__])
    return cls(config)


# non-transformer students: name -> builder(base_config, task) -> model (what each is: presets.ARCHITECTURES)
BUILDERS = {"bilstm": _bilstm}

SHORT_KEYS = {"layers": "num_hidden_layers", "hidden": "hidden_size", "heads": "num_attention_heads",
              "intermediate": "intermediate_size"}


def _json_overrides(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:  # ValueError: bad JSON, or an integer of over 4300 digits
        raise InputError(f"student config {path} is not valid JSON ({type(err).__name__})") from None
    if not isinstance(obj, dict):
        raise InputError(f"student config {path} must be a JSON object of config fields")
    return {SHORT_KEYS.get(k, k): v for k, v in obj.items()}


def student_kind(spec: str | None) -> str:
    """``base`` (train the base model itself), ``preset``, ``json`` or ``directory``."""
    if spec is None:
        return "base"
    if spec in PRESETS or spec in RELATIVE_PRESETS:
        return "preset"
    if spec in ARCHITECTURES:
        return "architecture"
    p = Path(spec)
    if p.is_dir():
        return "directory"
    if p.suffix == ".json" and p.is_file():
        return "json"
    raise InputError(f"unknown student {spec!r}: not a preset ({', '.join([*PRESETS, *RELATIVE_PRESETS, *ARCHITECTURES])}),"
                     " a JSON config file or a model directory")


def same_tokenizer(a, b) -> bool:
    return type(a).__name__ == type(b).__name__ and a.get_vocab() == b.get_vocab()


def build_student(spec: str | None, base_dir: str, *, init: str = "random", layer_map_spec: str | None = None,
                  dropout: float | None = None, base_model=None, task=None):
    """The student model (``attn_implementation="sdpa"``) and a short description of where it came from.

    ``base_model`` (optional) is the already loaded base/teacher, reused for ``teacher-*`` inits.
    ``task`` (kdtool.tasks, default QA) picks the head.
    """

    task = task or TASKS["qa"]
    kind = student_kind(spec)
    drop = {} if dropout is None else {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    if init != "random" and kind in ("base", "directory"):
        raise InputError(f"--student-init {init} builds a student from a preset or JSON config; "
                         f"{'the model' if kind == 'base' else spec} already has weights")
    if kind == "architecture":
        if init not in ("random", "teacher-embeddings"):
            raise InputError(f"--student-init {init} copies transformer layers; the {spec} student can start "
                             "random or from teacher-embeddings")
        model = BUILDERS[spec](load_config(base_dir), task)
        desc = {"kind": kind, "source": spec, "init": init}
        if init == "teacher-embeddings":
            teacher = base_model if base_model is not None else load_task_model(base_dir, task, require_head=False)
            desc.update(init_embeddings_from_teacher(model, teacher))
        return model, desc
    if kind in ("base", "directory"):
        path = base_dir if kind == "base" else spec
        model = load_task_model(path, task, require_head=False, attn_implementation="sdpa", **drop)
        if kind == "directory" and not same_tokenizer(load_tokenizer(path), load_tokenizer(base_dir)):
            raise InputError(f"student {spec} has a different tokenizer from the teacher {base_dir}; "
                             "the student must use the teacher's tokenizer (vocabulary and type)")
        return model, {"kind": kind, "source": str(path)}
    config = load_config(base_dir)
    if spec in RELATIVE_PRESETS:
        overrides = RELATIVE_PRESETS[spec][1](config).config_overrides()
    else:
        overrides = PRESETS[spec].config_overrides() if kind == "preset" else _json_overrides(Path(spec))
    for key, value in {**overrides, **drop}.items():
        setattr(config, key, value)
    config.architectures = None
    if config.hidden_size % config.num_attention_heads:
        raise InputError(f"student hidden size {config.hidden_size} is not a multiple of its "
                         f"{config.num_attention_heads} heads")
    model = task.auto_class().from_config(config, attn_implementation="sdpa")
    desc = {"kind": kind, "source": spec, "init": init}
    if init != "random":
        teacher = base_model if base_model is not None else load_task_model(base_dir, task, require_head=False)
        layers = config.num_hidden_layers
        spec_map = {"teacher-layers": layer_map_spec if layer_map_spec not in ("skip", "last") else None,
                    "teacher-bottom": ",".join(f"{k}:{k}" for k in range(1, layers + 1)),
                    "teacher-embeddings": "0:0"}[init]
        desc["copied_tensors"] = init_from_teacher(model, teacher, spec_map)
    return model, desc


def init_from_teacher(student, teacher, layer_map_spec: str | None = None) -> int:
    """Copy embeddings, QA head and mapped layers from ``teacher``; returns how many tensors were copied."""

    s, t = student.config, teacher.config
    for name in ("hidden_size", "num_attention_heads", "intermediate_size"):
        if getattr(s, name) != getattr(t, name):
            raise InputError(f"--student-init teacher-layers needs the teacher's layer shape; {name} is "
                             f"{getattr(s, name)} in the student and {getattr(t, name)} in the teacher")
    lmap = layer_map(s.num_hidden_layers, t.num_hidden_layers, layer_map_spec)
    sp, tp = f"{student.base_model_prefix}.encoder.layer.", f"{teacher.base_model_prefix}.encoder.layer."
    t_sd, s_sd = teacher.state_dict(), student.state_dict()
    copied = {}
    for key, value in s_sd.items():
        src = key
        if key.startswith(sp):
            i, tail = key[len(sp):].split(".", 1)
            j = lmap.get(int(i) + 1)
            if not j:
                continue
            src = f"{tp}{j - 1}.{tail}"
        if src in t_sd and t_sd[src].shape == value.shape:
            copied[key] = t_sd[src].detach().clone()
    student.load_state_dict(copied, strict=False)
    return len(copied)
