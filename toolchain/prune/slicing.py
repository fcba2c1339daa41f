"""Exact slicing: remove the units a :class:`Plan` names from a model, in place, so that the smaller
model computes exactly what the masked one did (:mod:`kdtool.prune.importance`).

- Heads go through Hugging Face's own ``model.prune_heads`` (rows of Q/K/V, columns of the output
  projection), which records them in ``config.pruned_heads``: ``from_pretrained`` re-applies that list
  before loading weights, so the saved model loads with plain transformers and no custom code, with
  a different head count per layer.
- FFN neurons: rows of ``intermediate.dense`` and columns of ``output.dense``. The config has one
  ``intermediate_size``, so every layer keeps the same number (each its own neurons).
- Layers: dropped from ``encoder.layer``; ``num_hidden_layers`` and the keys of ``pruned_heads`` follow.
- Hidden dimensions: columns of the embedding tables, entries of every LayerNorm, input columns of Q/K/V,
  the FFN's first matrix and the task head, output rows of the attention and FFN output projections
  (and both sides of a pooler or classification-head dense layer). ``hidden_size`` becomes the kept
  width and ``num_attention_heads`` becomes ``hidden_size // head_dim`` (so the head size Hugging Face
  derives stays the same); each layer's heads are renumbered 0..k-1 and ``pruned_heads`` lists the rest.
  The sliced model equals the masked one whose LayerNorms normalise over the kept dimensions only
  (:func:`kdtool.prune.importance.masked`): a LayerNorm's mean and variance are taken over the width it
  has, which is why hidden pruning is the one structure whose removal moves the remaining activations
  (recovery distillation absorbs it, as in CoFi).

Positions in a plan are those of the model as it is now (a layer that already lost heads numbers
its remaining heads 0..h-1); :func:`apply_plan` maps them to the original head numbers HF tracks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers.pytorch_utils import prune_linear_layer

from kdtool.errors import InputError
from kdtool.prune.shapes import encoder_layers, head_dim, kept_heads


@dataclass
class Plan:
    """Units to remove, by current position: ``heads[l]``, ``ffn[l]`` (same count in every layer), ``layers``,
    ``hidden`` (dimensions of the residual stream)."""

    heads: dict[int, list[int]] = field(default_factory=dict)
    ffn: dict[int, list[int]] = field(default_factory=dict)
    layers: list[int] = field(default_factory=list)
    hidden: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"heads": {str(k): sorted(v) for k, v in sorted(self.heads.items()) if v},
                "ffn": {str(k): len(v) for k, v in sorted(self.ffn.items()) if v}, "layers": sorted(self.layers),
                "hidden": sorted(self.hidden)}


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
    if plan.hidden:
        _slice_hidden(model, plan.hidden)
    return model


def _slice_hidden(model, positions: list[int]) -> None:
    config = model.config
    hidden, size = config.hidden_size, head_dim(config)
    keep = torch.tensor(sorted(set(range(hidden)) - set(positions)), dtype=torch.long)
    width = len(keep)
    if width < size or width % size:
        raise InputError(f"hidden pruning keeps a multiple of the head size ({size}); this plan keeps {width} of {hidden}")
    layers = encoder_layers(model)
    if any(layer.attention.self.num_attention_heads > width // size for layer in layers):
        raise InputError(f"a hidden width of {width} holds at most {width // size} heads per layer; remove heads first")
    for layer in layers:
        att = layer.attention
        for name in ("query", "key", "value"):
            setattr(att.self, name, prune_linear_layer(getattr(att.self, name), keep, dim=1))
        att.output.dense = prune_linear_layer(att.output.dense, keep, dim=0)
        att.output.LayerNorm = _slice_norm(att.output.LayerNorm, keep)
        layer.intermediate.dense = prune_linear_layer(layer.intermediate.dense, keep, dim=1)
        layer.output.dense = prune_linear_layer(layer.output.dense, keep, dim=0)
        layer.output.LayerNorm = _slice_norm(layer.output.LayerNorm, keep)
    _slice_outside(model, hidden, keep)
    config.hidden_size, config.num_attention_heads = width, width // size
    config.pruned_heads = {}
    for i, layer in enumerate(layers):  # heads renumbered 0..k-1; from_pretrained prunes k..max-1 again
        kept = layer.attention.self.num_attention_heads
        gone = list(range(kept, width // size))
        layer.attention.pruned_heads = set(gone)
        if gone:
            config.pruned_heads[i] = gone


def _slice_outside(model, hidden: int, keep: torch.Tensor) -> None:
    """Every hidden-sized side of the modules outside the layers: embeddings, their LayerNorm, the task head."""
    layers = encoder_layers(model)
    inside = {id(m) for m in layers.modules()}
    for parent in model.modules():
        for name, child in parent.named_children():
            if id(child) in inside or id(child) == id(layers):
                continue
            if isinstance(child, torch.nn.Linear):
                new = child
                if child.in_features == hidden:
                    new = prune_linear_layer(new, keep, dim=1)
                if child.out_features == hidden:
                    new = prune_linear_layer(new, keep, dim=0)
                setattr(parent, name, new)
            elif isinstance(child, torch.nn.Embedding) and child.embedding_dim == hidden:
                emb = torch.nn.Embedding(child.num_embeddings, len(keep), padding_idx=child.padding_idx)
                emb.weight.data = child.weight.data[:, keep].clone()
                setattr(parent, name, emb)
            elif isinstance(child, torch.nn.LayerNorm) and tuple(child.normalized_shape) == (hidden,):
                setattr(parent, name, _slice_norm(child, keep))


def _slice_norm(norm: torch.nn.LayerNorm, keep: torch.Tensor) -> torch.nn.LayerNorm:
    new = torch.nn.LayerNorm(len(keep), eps=norm.eps, elementwise_affine=norm.elementwise_affine)
    if norm.elementwise_affine:
        new.weight.data = norm.weight.data[keep].clone()
        new.bias.data = norm.bias.data[keep].clone()
    return new.to(norm.weight.device if norm.elementwise_affine else "cpu")
