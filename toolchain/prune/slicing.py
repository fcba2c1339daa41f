"""Exact slicing: remove the units a :class:`Plan` names from a model, in place, so that the smaller
model computes exactly what the masked one did (:mod:`kdtool.prune.importance`).

- Heads go through Hugging Face's own ``model.prune_heads`` (rows of Q/K/V, columns of the output
  projection), which records them in ``config.pruned_heads``: ``from_pretrained`` re-applies that list
  before loading weights, so the saved model loads with plain transformers and no custom code, with
  a different head count per layer.
- FFN neurons: rows of ``intermediate.dense`` and columns of ``output.dense``. The config has one
  ``intermediate_size``, so every layer keeps the same number (each its own neurons).
- Layers: dropped from ``encoder.layer``; ``num_hidden_layers`` and the keys of ``pruned_heads`` follow.

Positions in a plan are those of the model as it is now (a layer that already lost heads numbers
its remaining heads 0..h-1); :func:`apply_plan` maps them to the original head numbers HF tracks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers.pytorch_utils import prune_linear_layer

from kdtool.errors import InputError
from kdtool.prune.shapes import encoder_layers, kept_heads


@dataclass
class Plan:
    """Units to remove, by current position: ``heads[l]``, ``ffn[l]`` (same count in every layer), ``layers``."""

    heads: dict[int, list[int]] = field(default_factory=dict)
    ffn: dict[int, list[int]] = field(default_factory=dict)
    layers: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"heads": {str(k): sorted(v) for k, v in sorted(self.heads.items()) if v},
                "ffn": {str(k): len(v) for k, v in sorted(self.ffn.items()) if v}, "layers": sorted(self.layers)}


def apply_plan(model, plan: Plan):
    """Slice ``model`` in place by ``plan``; returns it. Checks that every layer keeps a head and a neuron."""
    layers = encoder_layers(model)
    config = model.config
    n = len(layers)
    if len(set(plan.layers)) >= n:
        raise InputError("a plan may not remove every layer")
    widths = {len(v) for v in plan.ffn.values()}
    if plan.ffn and (len(widths) > 1 or set(plan.ffn) != set(range(n))):
        raise InputError("FFN pruning removes the same number of neurons from every layer (one intermediate_size)")
    to_prune = {}
    for i, positions in plan.heads.items():
        if not positions:
            continue
        original = kept_heads(config, i)
        if len(set(positions)) >= len(original):
            raise InputError(f"a plan may not remove every head of layer {i}")
        to_prune[i] = [original[p] for p in positions]
    if to_prune:
        model.prune_heads(to_prune)
    for i, positions in plan.ffn.items():
        layer = layers[i]
        keep = torch.tensor(sorted(set(range(layer.intermediate.dense.out_features)) - set(positions)), dtype=torch.long)
        if not len(keep):
            raise InputError(f"a plan may not remove every FFN neuron of layer {i}")
        layer.intermediate.dense = prune_linear_layer(layer.intermediate.dense, keep, dim=0)
        layer.output.dense = prune_linear_layer(layer.output.dense, keep, dim=1)
    if plan.ffn:
        config.intermediate_size = layers[0].intermediate.dense.out_features
    if plan.layers:
        keep_layers = [i for i in range(n) if i not in set(plan.layers)]
        model.base_model.encoder.layer = torch.nn.ModuleList([layers[i] for i in keep_layers])
        pruned = config.pruned_heads or {}
        config.pruned_heads = {new: list(pruned[old]) for new, old in enumerate(keep_layers) if pruned.get(old)}
        config.num_hidden_layers = len(keep_layers)
    return model
