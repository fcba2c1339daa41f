"""The pruning units: what ``kdtool prune --prune`` can remove, one registered class each.

    heads    attention heads, a different number per layer
    ffn      FFN neurons, one width for every layer
    layers   whole layers
    hidden   the residual stream's width, in head-size steps (asked for by name)

A new unit is one module like these (a :class:`PruningUnit` subclass under ``@register_unit``: its
mask, importance, shape arithmetic and slicing) and one import line below, or, outside kdtool, one
module imported before the prune runs; its ``--prune`` name, scores, plan entry, place on the
pruning path and slicing follow from the registry (:mod:`kdtool.prune.units.registry`).
"""

from kdtool.prune.units import heads, ffn, layers, hidden  # noqa: F401, I001  (registers the built-ins, in this order)
from kdtool.prune.units.ffn import default_ffn_step
from kdtool.prune.units.registry import (
    UNITS,
    Move,
    PruningUnit,
    default_structures,
    register_unit,
    structures_help,
)

__all__ = ["UNITS", "Move", "PruningUnit", "default_ffn_step", "default_structures", "register_unit", "structures_help"]
