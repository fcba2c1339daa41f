"""Tasks: what varies between extractive QA and sentence-pair matching, as data.

A :class:`Task` names the model head (:class:`kdtool.models.heads.Head`: ``AutoModelFor*``, the
architecture suffix it saves, the model outputs and the Optimum export task), whether the outputs are
per token, the metrics and the one that picks the best epoch. The code a task needs (loading
examples, features, losses, evaluation) lives in the module ``impl`` names, with the same function names for
every task (:mod:`kdtool.tasks.qa`, :mod:`kdtool.tasks.pair_task`); callers look the task up and call
``task.module().<function>``, never branch on the task's name.

:func:`detect_task` reads the task of a model directory (``config.json`` architectures) or a bundle
(``manifest.json``) without importing transformers. The task's code names: ``load_examples``,
``feature_config``, ``make_features``, ``hard_loss``, ``soft_mask`` and ``evaluate``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from kdtool.errors import InputError
from kdtool.models.heads import HEADS, Head, detect_head


@dataclass(frozen=True)
class Task:
    name: str
    about: str
    head: Head  # the model head, its outputs and its export task (kdtool.models.heads)
    per_token: bool  # outputs are [batch, seq] (masked by attention_mask) rather than [batch, labels]
    metrics: tuple[str, ...]  # reported metrics, percent; the first picks the best epoch
    impl: str  # module with load_examples, make_features, hard_loss, soft_mask, evaluate

    @property
    def auto_model(self) -> str:  # transformers Auto class of the task's head
        return self.head.auto_model

    @property
    def architecture_suffix(self) -> str:  # what save_pretrained records in config.json "architectures"
        return self.head.architecture_suffix

    @property
    def optimum_task(self) -> str:  # Optimum's export task; also the "task" of a bundle's manifest
        return self.head.optimum_task

    @property
    def outputs(self) -> tuple[str, ...]:  # model output fields, in the order engines return them
        return self.head.outputs

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
    "qa": Task("qa", "extractive question answering (SQuAD JSON)", HEADS["qa"], True, ("f1", "exact_match"),
               "kdtool.tasks.qa"),
    "pair-classification": Task("pair-classification", "sentence-pair matching (GLUE-style TSV/JSONL pairs)",
                                HEADS["pair-classification"], False, ("accuracy", "f1"), "kdtool.tasks.pair_task"),
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise InputError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}") from None


def detect_task(path) -> str | None:
    """The task of a bundle (its manifest) or a model directory (its architectures); None when unknown."""
    return detect_head(path)


def resolve_task(name: str | None, path) -> Task:
    """``name`` when given (not "auto"), else the task detected at ``path``, else QA (a bare encoder)."""
    if name and name != "auto":
        return get_task(name)
    return TASKS[detect_task(path) or "qa"]


__all__ = ["TASKS", "Task", "detect_task", "get_task", "resolve_task"]
