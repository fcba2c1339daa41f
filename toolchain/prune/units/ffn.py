"""FFN neurons: each layer keeps its own most important neurons, every layer the same number (the config
has one ``intermediate_size``; per-layer widths would need custom model code).

- mask: the GELU output's neuron j of layer l is multiplied by ``g[l][j]`` (the Taylor criterion of
  Molchanov et al. 2019 and Model Optimizer's gradnas);
- move: the ``ffn_step`` least important remaining neurons of every layer (:func:`default_ffn_step`);
- slicing: rows of ``intermediate.dense`` and columns of ``output.dense``.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from transformers.pytorch_utils import prune_linear_layer

from kdtool.errors import InputError
from kdtool.prune.shapes import encoder_layers
from kdtool.prune.units.registry import Move, PruningUnit, register_unit


def default_ffn_step(ffn: int) -> int:
    """FFN width moves in steps of 1/32 of the width, rounded to a multiple of 8 (GEMM-friendly)."""
    return max(8, (ffn // 32) // 8 * 8) if ffn >= 64 else 1


class _State:
    def __init__(self, order: dict[int, list[int]]):
        self.order = order  # each layer's neurons, least important first
        self.removed = 0  # neurons removed from every layer


@register_unit
class FFN(PruningUnit):
    name = "ffn"
    about = "one width for all layers"
    per_layer = True

    def describe(self, positions):
        return {str(k): len(v) for k, v in sorted(positions.items()) if v}

    def masks(self, gates):
        return [torch.ones(layer.intermediate.dense.out_features) for layer in gates.layers]

    def hooks(self, gates, masks):
        return [layer.intermediate.register_forward_hook(lambda mod, args, out, m=mask: out * m.to(out.dtype))
                for layer, mask in zip(gates.layers, masks, strict=True)]

    def zero(self, gates, masks, positions):
        for i, js in positions.items():
            masks[i][js] = 0.0

    def scores(self, grads):
        return [t.tolist() for t in grads]

    def no_scores(self, shape):
        return [[0.0] * shape.ffn] * shape.layers

    def start(self, walk):
        scores = walk.scores["ffn"] if walk.active(self.name) else None
        return _State({i: sorted(range(walk.origin.ffn), key=lambda j: scores[i][j]) for i in range(walk.origin.layers)}
                      if scores is not None else {})

    def move(self, walk):
        st, step = walk.state[self.name], walk.ffn_step
        if walk.origin.ffn - st.removed - step < 1:
            return None
        imp = sum(walk.scores["ffn"][i][j] for i in walk.alive for j in st.order[i][st.removed:st.removed + step])

        def take():
            st.removed += step
        return Move(imp, walk.saved(replace(walk.now, ffn=walk.now.ffn - step)), take)

    def narrow(self, walk, shape):
        return replace(shape, ffn=shape.ffn - walk.state[self.name].removed)

    def removed(self, walk):
        st = walk.state[self.name]
        return {i: st.order[i][:st.removed] for i in range(walk.origin.layers)} if st.removed else {}

    def check(self, model, positions):
        widths = {len(v) for v in positions.values()}
        if positions and (len(widths) > 1 or set(positions) != set(range(len(encoder_layers(model))))):
            raise InputError("FFN pruning removes the same number of neurons from every layer (one intermediate_size)")

    def slice(self, model, positions):
        layers = encoder_layers(model)
        for i, js in positions.items():
            layer = layers[i]
            keep = torch.tensor(sorted(set(range(layer.intermediate.dense.out_features)) - set(js)), dtype=torch.long)
            if not len(keep):
                raise InputError(f"a plan may not remove every FFN neuron of layer {i}")
            layer.intermediate.dense = prune_linear_layer(layer.intermediate.dense, keep, dim=0)
            layer.output.dense = prune_linear_layer(layer.output.dense, keep, dim=1)
        model.config.intermediate_size = layers[0].intermediate.dense.out_features
