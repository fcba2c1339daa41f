"""Attention heads: a different number per layer (Hugging Face's ``prune_heads``, recorded in ``config.pruned_heads``).

- mask: head h of layer l has its context vector (``probs @ V`` for that head) multiplied by ``g[l][h]``,
  Michel et al. (2019)'s gate xi_h (HF's ``head_mask`` scales the probabilities, the same thing);
- move: the least important remaining head of any layer that keeps more than one;
- slicing: ``model.prune_heads`` (rows of Q/K/V, columns of the output projection), which records the
  heads in ``config.pruned_heads``, so ``from_pretrained`` re-applies the list before loading weights and
  the saved model loads with plain transformers, a different head count per layer. Positions are those
  of the layer as it is (a layer that lost heads numbers the rest 0..h-1); the original numbers HF tracks
  come from :func:`~kdtool.prune.shapes.kept_heads`.

The heads left in each layer, in order of importance, are the walk's own (:class:`kdtool.prune.search.Walk`):
hidden moves remove heads too.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from kdtool.errors import InputError
from kdtool.prune.shapes import kept_heads
from kdtool.prune.units.registry import Move, PruningUnit, register_unit


@register_unit
class Heads(PruningUnit):
    name = "heads"
    about = "per layer"
    per_layer = True

    def masks(self, gates):
        return [torch.ones(layer.attention.self.num_attention_heads) for layer in gates.layers]

    def hooks(self, gates, masks):
        return [layer.attention.self.register_forward_hook(_head_hook(layer.attention.self, mask))
                for layer, mask in zip(gates.layers, masks, strict=True)]

    def zero(self, gates, masks, positions):
        for i, hs in positions.items():
            masks[i][hs] = 0.0

    def scores(self, grads):
        return [t.tolist() for t in grads]

    def no_scores(self, shape):
        return [[0.0] * h for h in shape.heads]

    def move(self, walk):
        cands = [(walk.scores["heads"][i][walk.heads_left[i][0]], i) for i in walk.alive if len(walk.heads_left[i]) > 1]
        if not cands:
            return None
        imp, i = min(cands)
        heads = list(walk.now.heads)
        heads[walk.alive.index(i)] -= 1
        return Move(imp, walk.saved(replace(walk.now, heads=tuple(heads))),
                    lambda: walk.removed_heads[i].append(walk.heads_left[i].pop(0)))

    def removed(self, walk):
        return {i: list(v) for i, v in walk.removed_heads.items() if v and i in walk.alive}

    def check(self, model, positions):
        for i, hs in positions.items():
            if hs and len(set(hs)) >= len(kept_heads(model.config, i)):
                raise InputError(f"a plan may not remove every head of layer {i}")

    def slice(self, model, positions):
        to_prune = {}
        for i, hs in positions.items():
            if hs:
                original = kept_heads(model.config, i)
                to_prune[i] = [original[p] for p in hs]
        if to_prune:
            model.prune_heads(to_prune)


def _head_hook(att, mask):
    def hook(mod, args, out):
        ctx = out[0]
        b, n, _ = ctx.shape
        gated = (ctx.view(b, n, att.num_attention_heads, att.attention_head_size) * mask.to(ctx.dtype)[:, None]).view(b, n, -1)
        return (gated, *out[1:])
    return hook
