"""The library calls of the stages, in the progress shape of :mod:`kdtool.progress`.

MERGE NOTE (issue 15): export_model and validate (helper A) and finetune/distill/prune (helper B)
take ``progress=`` once their branches land; each function below then becomes the one call named in
its docstring and this module can go (its callers import the library function instead).
"""

from __future__ import annotations

import sys
from dataclasses import replace

from kdtool import validate as validation
from kdtool.distill import distill, finetune
from kdtool.export.pipeline import export_model
from kdtool.progress import Progress, counter, say
from kdtool.prune import prune as prune_model


def export(config, progress: Progress | None):
    """``export_model(config, progress=progress)``."""
    return export_model(config, progress=lambda message: say(progress, message))


def validate(config, progress: Progress | None):
    """``validate(config, progress=progress)`` (task "score NAME", unit "win")."""
    def on_model(name, n):
        say(progress, f"scoring {name} on {n} questions")
        return counter(progress, f"score {name}", unit="win")

    return validation.validate(config, on_model)


def _bars(progress: Progress | None) -> bool:
    """Until the trainer reports through ``progress``, its own tqdm bar: only on a terminal, so that a log
    (``make demo > log``) is not thousands of carriage-return frames."""
    return progress is not None and sys.stderr.isatty()


def train(stage: str, config, progress: Progress | None) -> dict:
    """``finetune(config, progress=progress)`` or ``distill(config, progress=progress)``."""
    return (finetune if stage == "finetune" else distill)(replace(config, progress=_bars(progress)))


def prune(config, progress: Progress | None) -> dict:
    """``prune(config, progress=progress)``."""
    return prune_model(replace(config, progress=_bars(progress)))
