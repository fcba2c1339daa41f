"""Tasks: what varies between extractive QA and sentence-pair matching, as data.

A :class:`Task` names the model head (``AutoModelFor*`` and the architecture suffix it saves), the
model outputs and whether they are per token, the metrics and the one that picks the best epoch, the
Optimum export task and the bundle's manifest task. The code a task needs (loading examples,
features, losses, evaluation) lives in the module ``impl`` names, with the same function names for
every task (:mod:`kdtool.tasks.qa`, :mod:`kdtool.tasks.pair_task`); callers look the task up and call
``task.module().<function>``, never branch on the task's name.

:func:`detect_task` reads the task of a model directory (``config.json`` architectures) or a bundle
(``manifest.json``) without importing transformers.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path

from kdtool.errors import InputError


@dataclass(frozen=True)
class Task:
    name: str
    about: str
    auto_model: str  # transformers Auto class of the task's head
    architecture_suffix: str  # what save_pretrained records in config.json "architectures"
    optimum_task: str  # Optimum's export task; also the "task" of a bundle's manifest
    outputs: tuple[str, ...]  # model output fields, in the order engines return them
    per_token: bool  # outputs are [batch, seq] (masked by attention_mask) rather than [batch, labels]
    metrics: tuple[str, ...]  # reported metrics, percent; the first picks the best epoch
    impl: str  # module with load_examples, make_features, hard_loss, soft_mask, evaluate

    @property
    def primary_metric(self) -> str:
        return self.metrics[0]

    def module(self):
        return importlib.import_module(self.impl)

    def auto_class(self):
        import transformers

        import kdtool.students  # noqa: F401 - kdtool's own model types

        return getattr(transformers, self.auto_model)


TASKS: dict[str, Task] = {
    "qa": Task("qa", "extractive question answering (SQuAD JSON)", "AutoModelForQuestionAnswering",
               "ForQuestionAnswering", "question-answering", ("start_logits", "end_logits"), True,
               ("f1", "exact_match"), "kdtool.tasks.qa"),
    "pair-classification": Task("pair-classification", "sentence-pair matching (GLUE-style TSV/JSONL pairs)",
                                "AutoModelForSequenceClassification", "ForSequenceClassification", "text-classification",
                                ("logits",), False, ("accuracy", "f1"), "kdtool.tasks.pair_task"),
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise InputError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}") from None


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return obj if isinstance(obj, dict) else {}


def detect_task(path) -> str | None:
    """The task of a bundle (its manifest) or a model directory (its architectures); None when unknown."""
    p = Path(path)
    if (p / "manifest.json").is_file():
        task = _read_json(p / "manifest.json").get("task")
        return next((t.name for t in TASKS.values() if t.optimum_task == task), None)
    archs = _read_json(p / "config.json").get("architectures") or []
    return next((t.name for t in TASKS.values() for a in archs if a.endswith(t.architecture_suffix)), None)


def resolve_task(name: str | None, path) -> Task:
    """``name`` when given (not "auto"), else the task detected at ``path``, else QA (a bare encoder)."""
    if name and name != "auto":
        return get_task(name)
    return TASKS[detect_task(path) or "qa"]


__all__ = ["TASKS", "Task", "detect_task", "get_task", "resolve_task"]
