"""Structured pruning under distillation (``kdtool prune``): remove the heads, FFN neurons, layers and
(asked for by name) hidden dimensions that matter least, to a parameter, FLOP or measured-latency
budget, and recover with the trainer.

Modules: ``units`` (the pruning units, one registered class each: mask, importance, shape arithmetic and
slicing of heads, FFN neurons, layers, hidden dimensions), ``shapes`` (what a model is made of,
parameters and FLOPs), ``importance`` (Taylor scores over the units' masks), ``search`` (the pruning path
and budget search), ``slicing`` (a plan's removal into a dense, smaller HF model: exact for heads, FFN and
layers), ``latency`` (candidate shapes measured with kdtool's export and profiler), ``config`` (the typed
config and budget), ``pipeline`` (steps, recovery, resume, report).
"""

from kdtool.prune.config import Budget, PruneConfig, parse_budget


def __getattr__(name: str):
    """``prune`` is imported when first asked for: ``kdtool prune --help`` reads the config (light), not the pipeline
    (torch, transformers)."""
    if name != "prune":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from kdtool.prune.pipeline import prune

    globals()["prune"] = prune
    return prune


__all__ = ["Budget", "PruneConfig", "parse_budget", "prune"]
