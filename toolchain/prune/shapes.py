"""What a BERT/RoBERTa-family model is made of, counted: per-layer heads, FFN width, parameters and FLOPs.

A :class:`Shape` is the part of a model that pruning changes: the heads kept in each layer (a count
per layer: Hugging Face stores per-layer removals in ``config.pruned_heads``), the FFN width (one
``intermediate_size`` for every layer: the config has no per-layer width), the number of layers and
the hidden width (the residual stream, shared by every layer). The head dimension stays as it is:
Hugging Face derives it as ``hidden_size // num_attention_heads``, so a narrower hidden width also
lowers the most heads a layer can keep to ``hidden // head_dim``.
The parameters outside the layers (embeddings, task head) are a polynomial in the hidden width
(:class:`Outside`), so a parameter budget sees what hidden pruning saves there too.

What a pruning move saves is the difference of these totals between the shape before and after it
(:mod:`kdtool.prune.units`), so a unit needs no cost formula of its own.

FLOPs are those of one forward pass of one sequence of ``seq_len`` tokens, counting a multiply-add
as 2: per layer ``2n*d*3*h*hd`` (Q, K, V), ``2n*h*hd*d`` (output projection), ``4n^2*h*hd`` (scores
and context) and ``4n*d*I`` (FFN), plus the task head. Embedding lookups, LayerNorm, softmax and
GELU are left out (they are not matrix products and are a few percent at these widths).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kdtool.errors import InputError

SUPPORTED_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "electra")


def encoder_layers(model):
    """The ``nn.ModuleList`` of transformer layers of a BERT-style model, or a one-line InputError."""
    if getattr(model.config, "model_type", None) not in SUPPORTED_TYPES:
        raise InputError(f"kdtool prune handles BERT-style encoders ({', '.join(SUPPORTED_TYPES)}); "
                         f"this model is {getattr(model.config, 'model_type', type(model).__name__)!r}")
    return model.base_model.encoder.layer


def hidden_prunable(model) -> bool:
    """Whether the residual stream starts at a LayerNorm of the hidden width (BERT, RoBERTa; not an
    ELECTRA whose embeddings are projected up), which hidden pruning slices and masks."""
    width = (model.config.hidden_size,)
    norms = [m for m in model.base_model.embeddings.modules() if isinstance(m, torch.nn.LayerNorm)]
    return bool(norms) and tuple(norms[-1].normalized_shape) == width and not hasattr(model.base_model, "embeddings_project")


def head_dim(config) -> int:
    return config.hidden_size // config.num_attention_heads


def kept_heads(config, layer: int) -> list[int]:
    """The original head numbers still present in ``layer`` (what ``config.pruned_heads`` leaves)."""
    gone = set((config.pruned_heads or {}).get(layer, []))
    return [h for h in range(config.num_attention_heads) if h not in gone]


@dataclass(frozen=True)
class Outside:
    """Parameters outside the transformer layers as ``sum(coef[k] * hidden**k)``: an embedding table is
    ``rows * hidden``, a pooler ``hidden**2 + hidden``; a plain int works where nothing but heads/FFN/layers go."""

    coef: tuple[int, ...]

    def at(self, hidden: int) -> int:
        return sum(c * hidden ** k for k, c in enumerate(self.coef))


def _outside(base) -> Outside:
    return base if isinstance(base, Outside) else Outside((int(base),))


@dataclass(frozen=True)
class Shape:
    heads: tuple[int, ...]  # heads kept per layer, one entry per layer
    ffn: int  # FFN width of every layer
    hidden: int
    head_dim: int

    @property
    def layers(self) -> int:
        return len(self.heads)

    @classmethod
    def of(cls, model) -> Shape:
        c = model.config
        return cls(tuple(len(kept_heads(c, i)) for i in range(c.num_hidden_layers)), c.intermediate_size,
                   c.hidden_size, head_dim(c))

    def layer_flops(self, heads: int, seq_len: int) -> int:
        n, d, a = seq_len, self.hidden, heads * self.head_dim
        return 2 * n * d * 3 * a + 2 * n * a * d + 4 * n * n * a + 4 * n * d * self.ffn

    def flops(self, seq_len: int) -> int:
        return sum(self.layer_flops(h, seq_len) for h in self.heads) + 2 * seq_len * self.hidden * 2

    def layer_params(self, heads: int) -> int:
        d, a, i = self.hidden, heads * self.head_dim, self.ffn
        return 3 * (d * a + a) + (a * d + d) + 2 * d + (d * i + i) + (i * d + d) + 2 * d

    def encoder_params(self) -> int:
        return sum(self.layer_params(h) for h in self.heads)

    def params(self, base_params) -> int:
        return _outside(base_params).at(self.hidden) + self.encoder_params()

    def describe(self, seq_len: int, base_params) -> dict:
        return {"layers": self.layers, "heads_per_layer": list(self.heads), "heads": sum(self.heads), "ffn": self.ffn,
                "hidden": self.hidden, "parameters": self.params(base_params), "flops": self.flops(seq_len)}


def base_params(model) -> Outside:
    """Parameters outside the transformer layers (embeddings, task head) as a polynomial in the hidden
    width: each dimension of a parameter that equals ``hidden_size`` scales with it."""
    hidden = model.config.hidden_size
    inside = {id(p) for p in encoder_layers(model).parameters()}
    coef = [0] * 4
    for p in model.parameters():
        if id(p) in inside:
            continue
        k = sum(1 for s in p.shape if s == hidden)
        rest = p.numel() // hidden ** k
        coef[k] += rest
    return Outside(tuple(coef))
