"""Exact slicing: remove the units a :class:`Plan` names from a model, in place, so that the smaller
model computes exactly what the masked one did (:mod:`kdtool.prune.importance`).

Each registered unit slices its own positions (:mod:`kdtool.prune.units`: heads through Hugging Face's
``prune_heads``, FFN neurons, layers, hidden dimensions), in registration order, after every unit has
checked the plan. The result is a dense, smaller Hugging Face model that saves and loads with plain
transformers and no custom code. Heads, FFN neurons and layers are exact; hidden dimensions equal the
masked model whose LayerNorms normalise over the kept dimensions only.

Positions in a plan are those of the model as it is now (a layer that already lost heads numbers
its remaining heads 0..h-1); the heads unit maps them to the original head numbers HF tracks.
"""

from __future__ import annotations

from kdtool.prune.shapes import encoder_layers
from kdtool.prune.units import UNITS


class Plan:
    """Units to remove, by current position, one entry per registered unit: ``heads[l]``, ``ffn[l]`` (same
    count in every layer), ``layers``, ``hidden`` (dimensions of the residual stream), and so on."""

    def __init__(self, **removed):
        unknown = sorted(set(removed) - set(UNITS))
        if unknown:
            raise TypeError(f"Plan() got unknown pruning units {unknown}; registered: {', '.join(UNITS)}")
        self.removed = {name: removed[name] if name in removed else unit.empty() for name, unit in UNITS.items()}

    def __getattr__(self, name: str):
        removed = self.__dict__.get("removed", {})
        if name in removed:
            return removed[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __eq__(self, other) -> bool:
        return isinstance(other, Plan) and self.removed == other.removed

    def __repr__(self) -> str:
        return f"Plan({', '.join(f'{k}={v!r}' for k, v in self.removed.items())})"

    def to_dict(self) -> dict:
        return {name: unit.describe(self.removed[name]) for name, unit in UNITS.items()}


def apply_plan(model, plan: Plan):
    """Slice ``model`` in place by ``plan``; returns it. Refuses a plan that would leave a layer without a
    head or a neuron, or the model without a layer."""
    encoder_layers(model)  # a one-line error for a model that is not BERT-style
    for name, unit in UNITS.items():
        unit.check(model, plan.removed[name])
    for name, unit in UNITS.items():
        if plan.removed[name]:
            unit.slice(model, plan.removed[name])
    return model
