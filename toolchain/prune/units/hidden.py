"""Hidden dimensions: the width of the residual stream, shared by every layer (CoFi's ``hidden_z``).
Asked for by name (not in ``--prune``'s default): it is the one structure whose removal moves the
other activations, since a LayerNorm's mean and variance are taken over the width it has.

- mask: every LayerNorm of the embeddings and the layers (each writes the residual stream) has its
  output's dimension d multiplied by ``g[d]``, one gate shared by all of them, and so has any hidden-wide
  dense layer of the task head (a pooler), which slicing narrows with them. A dimension removed by hand
  (``Gates.set``) also drops out of those LayerNorms' mean and variance, which is what the sliced model computes.
- move: the ``head_dim`` least important remaining dimensions. Hugging Face derives the head size from
  ``hidden_size // num_attention_heads``, so the width moves in steps of one head size and every layer
  keeps at most ``hidden // head_dim`` heads: a layer over that loses its least important heads in the
  same move, and their importance counts against it.
- slicing: columns of the embedding tables, entries of every LayerNorm, input columns of Q/K/V, the FFN's
  first matrix and the task head, output rows of the attention and FFN output projections (and both sides
  of a pooler or classification-head dense layer). ``hidden_size`` becomes the kept width and
  ``num_attention_heads`` becomes ``hidden_size // head_dim`` (so the head size Hugging Face derives stays
  the same); each layer's heads are renumbered 0..k-1 and ``pruned_heads`` lists the rest. The sliced model
  equals the masked one whose LayerNorms normalise over the kept dimensions only (recovery distillation
  absorbs the change, as in CoFi).

A model whose embeddings are projected up to the hidden width (ELECTRA) has no LayerNorm of that width
to narrow, and is refused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.pytorch_utils import prune_linear_layer

from kdtool.errors import InputError
from kdtool.prune.shapes import Shape, encoder_layers, head_dim, hidden_prunable
from kdtool.prune.units.registry import Move, PruningUnit, register_unit


class _State:
    def __init__(self, order: list[int]):
        self.order = order  # the dimensions, least important first
        self.removed = 0  # dimensions removed


@register_unit
class Hidden(PruningUnit):
    name = "hidden"
    about = ("the residual stream's width, in steps of one head size; not in the default because it changes every "
             "LayerNorm's statistics, so only recovery brings the model back")
    default = False

    def refusal(self, model):
        if hidden_prunable(model):
            return None
        return ("its embeddings are projected to the hidden width (no LayerNorm of that width starts the residual "
                "stream), so kdtool cannot prune hidden dimensions")

    def masks(self, gates):
        return [torch.ones(gates.model.config.hidden_size)]

    def hooks(self, gates, masks):
        mask = masks[0]

        def norm_hook(mod, args, out):
            kept = gates.state.get(self.name)
            if kept is not None:  # the removed dimensions leave the statistics too (what slicing computes)
                x = args[0]
                out = torch.zeros_like(out)
                out[..., kept] = F.layer_norm(x[..., kept], (len(kept),), mod.weight[kept], mod.bias[kept], mod.eps)
            return out * mask.to(out.dtype)

        handles = [norm.register_forward_hook(norm_hook) for norm in _norms(gates.model, gates.layers)]
        handles += [dense.register_forward_hook(lambda mod, args, out: out * mask.to(out.dtype))
                    for dense in _head_layers(gates.model, len(mask))]
        return handles

    def zero(self, gates, masks, positions):
        gates.state[self.name] = torch.tensor(sorted(set(range(len(masks[0]))) - set(positions)), dtype=torch.long)
        masks[0][list(positions)] = 0.0

    def scores(self, grads):
        return grads[0].tolist()

    def no_scores(self, shape):
        return [0.0] * shape.hidden

    def start(self, walk):
        scores = walk.scores["hidden"] if walk.active(self.name) else None
        return _State(sorted(range(walk.origin.hidden), key=lambda d: scores[d]) if scores is not None else [])

    def move(self, walk):
        st, now, size = walk.state[self.name], walk.now, walk.origin.head_dim
        width = walk.origin.hidden - st.removed - size
        if width < size:
            return None
        forced = {i: max(0, len(walk.heads_left[i]) - width // size) for i in walk.alive}
        imp = sum(walk.scores["hidden"][d] for d in st.order[st.removed:st.removed + size])
        imp += sum(walk.scores["heads"][i][h] for i, k in forced.items() for h in walk.heads_left[i][:k])
        after = Shape(tuple(h - forced[i] for h, i in zip(now.heads, walk.alive, strict=True)), now.ffn, width,
                      now.head_dim)

        def take():
            for i, k in forced.items():
                walk.removed_heads[i] += [walk.heads_left[i].pop(0) for _ in range(k)]
            st.removed += size
        return Move(imp, walk.saved(after), take)

    def narrow(self, walk, shape):
        return Shape(shape.heads, shape.ffn, shape.hidden - walk.state[self.name].removed, shape.head_dim)

    def removed(self, walk):
        st = walk.state[self.name]
        return st.order[:st.removed]

    def slice(self, model, positions):
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


def _norms(model, layers) -> list[torch.nn.LayerNorm]:
    """The LayerNorms that write the residual stream (none when the model's hidden width cannot be pruned)."""
    if not hidden_prunable(model):
        return []
    norms = [m for m in model.base_model.embeddings.modules() if isinstance(m, torch.nn.LayerNorm)]
    for layer in layers:
        norms += [layer.attention.output.LayerNorm, layer.output.LayerNorm]
    return norms


def _head_layers(model, hidden: int) -> list[torch.nn.Linear]:
    """Hidden-wide layers of the task head (a pooler, RoBERTa's classification dense layer): slicing
    narrows their outputs with the residual stream, so the same gate masks them."""
    if not hidden_prunable(model):
        return []
    inside = {id(m) for m in model.base_model.encoder.modules()}
    inside |= {id(m) for m in model.base_model.embeddings.modules()}
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear) and id(m) not in inside
            and m.out_features == hidden]


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
