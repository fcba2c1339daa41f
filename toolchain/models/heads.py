"""Model heads: which ``AutoModelFor*`` class a model has, what ``save_pretrained`` records for it and
what it outputs, as data. Engines and loaders read a :class:`Head`; a task (:mod:`kdtool.tasks`) adds
its data formats, losses and metrics on top of one.

:func:`detect_head` reads the head of a model directory (``config.json`` architectures) or a bundle
(``manifest.json`` task) without importing transformers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Head:
    name: str  # the task name it serves (kdtool.tasks.TASKS)
    auto_model: str  # transformers Auto class of the head
    architecture_suffix: str  # what save_pretrained records in config.json "architectures"
    optimum_task: str  # Optimum's export task; also the "task" of a bundle's manifest
    outputs: tuple[str, ...]  # model output fields, in the order engines return them


HEADS: dict[str, Head] = {
    "qa": Head("qa", "AutoModelForQuestionAnswering", "ForQuestionAnswering", "question-answering",
               ("start_logits", "end_logits")),
    "pair-classification": Head("pair-classification", "AutoModelForSequenceClassification", "ForSequenceClassification",
                                "text-classification", ("logits",)),
}


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # UnicodeDecodeError, JSONDecodeError, an integer of over 4300 digits
        return {}
    return obj if isinstance(obj, dict) else {}


def detect_head(path) -> str | None:
    """The head of a bundle (its manifest) or a model directory (its architectures); None when unknown."""
    p = Path(path)
    if (p / "manifest.json").is_file():
        task = _read_json(p / "manifest.json").get("task")
        return next((h.name for h in HEADS.values() if h.optimum_task == task), None)
    archs = _read_json(p / "config.json").get("architectures") or []
    return next((h.name for h in HEADS.values() for a in archs if a.endswith(h.architecture_suffix)), None)
