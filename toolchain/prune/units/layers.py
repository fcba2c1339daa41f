"""Whole layers.

- mask: layer l's output becomes ``x + g_l * (layer(x) - x)``, so ``g_l = 0`` is the layer removed;
- move: the least important remaining layer (its heads and neurons go with it);
- slicing: dropped from ``encoder.layer``; ``num_hidden_layers`` and the keys of ``pruned_heads`` follow.

The layers still alive are the walk's own (:class:`kdtool.prune.search.Walk`): every unit prices its move
over them.
"""

from __future__ import annotations

import torch

from kdtool.errors import InputError
from kdtool.prune.shapes import Shape, encoder_layers
from kdtool.prune.units.registry import Move, PruningUnit, register_unit


@register_unit
class Layers(PruningUnit):
    name = "layers"

    def masks(self, gates):
        return [torch.ones(len(gates.layers))]

    def hooks(self, gates, masks):
        return [layer.register_forward_hook(_layer_hook(masks[0], i), with_kwargs=True)
                for i, layer in enumerate(gates.layers)]

    def zero(self, gates, masks, positions):
        for i in positions:
            masks[0][i] = 0.0

    def scores(self, grads):
        return grads[0].tolist()

    def no_scores(self, shape):
        return [0.0] * shape.layers

    def move(self, walk):
        if len(walk.alive) < 2:
            return None
        imp, i = min((walk.scores["layers"][i], i) for i in walk.alive)
        now = walk.now
        after = Shape(tuple(h for h, j in zip(now.heads, walk.alive, strict=True) if j != i), now.ffn, now.hidden,
                      now.head_dim)
        return Move(imp, walk.saved(after), lambda: walk.alive.remove(i))

    def removed(self, walk):
        return [i for i in range(walk.origin.layers) if i not in walk.alive]

    def check(self, model, positions):
        if len(set(positions)) >= len(encoder_layers(model)):
            raise InputError("a plan may not remove every layer")

    def slice(self, model, positions):
        layers, config = encoder_layers(model), model.config
        keep = [i for i in range(len(layers)) if i not in set(positions)]
        model.base_model.encoder.layer = torch.nn.ModuleList([layers[i] for i in keep])
        pruned = config.pruned_heads or {}
        config.pruned_heads = {new: list(pruned[old]) for new, old in enumerate(keep) if pruned.get(old)}
        config.num_hidden_layers = len(keep)


def _layer_hook(mask, i):
    def hook(mod, args, kwargs, out):
        x = args[0] if args else kwargs["hidden_states"]
        g = mask[i].to(x.dtype)
        return (x + g * (out[0] - x), *out[1:])
    return hook
