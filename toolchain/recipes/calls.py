"""The library calls of the stages, in the progress shape of :mod:`kdtool.progress`.

MERGE NOTE (issue 15): export_model and validate (helper A) and finetune/distill/prune (helper B)
take ``progress=`` once their branches land; each function below then becomes the one call named in
its docstring and this module can go (its callers import the library function instead).
"""

from __future__ import annotations

from dataclasses import replace

from kdtool.progress import Progress, counter, say


def export(config, progress: Progress | None):
    """``export_model(config, progress=progress)``."""
    from kdtool.export.pipeline import export_model

    return export_model(config, progress=lambda message: say(progress, message))


def validate(config, progress: Progress | None):
    """``validate(config, progress=progress)`` (task "score NAME", unit "win")."""
    from kdtool.validate import validate as run

    def on_model(name, n):
        say(progress, f"scoring {name} on {n} questions")
        return counter(progress, f"score {name}", unit="win")

    return run(config, on_model)


def train(stage: str, config, progress: Progress | None) -> dict:
    """``finetune(config, progress=progress)`` or ``distill(config, progress=progress)``."""
    from kdtool.distill import distill, finetune

    return (finetune if stage == "finetune" else distill)(replace(config, progress=progress is not None))


def prune(config, progress: Progress | None) -> dict:
    """``prune(config, progress=progress)``."""
    from kdtool.prune import prune as run

    return run(replace(config, progress=progress is not None))
