"""What a BERT/RoBERTa-family model is made of, counted: per-layer heads, FFN width, parameters and FLOPs.

A :class:`Shape` is the part of a model that pruning changes: the heads kept in each layer (a count
per layer: Hugging Face stores per-layer removals in ``config.pruned_heads``), the FFN width (one
``intermediate_size`` for every layer: the config has no per-layer width) and the number of layers.
The hidden width and head dimension stay as they are.

FLOPs are those of one forward pass of one sequence of ``seq_len`` tokens, counting a multiply-add
as 2: per layer ``2n*d*3*h*hd`` (Q, K, V), ``2n*h*hd*d`` (output projection), ``4n^2*h*hd`` (scores
and context) and ``4n*d*I`` (FFN), plus the task head. Embedding lookups, LayerNorm, softmax and
GELU are left out (they are not matrix products and are a few percent at these widths).
"""

from __future__ import annotations

from dataclasses import dataclass

from kdtool.errors import InputError

SUPPORTED_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "electra")


def encoder_layers(model):
    """The ``nn.ModuleList`` of transformer layers of a BERT-style model, or a one-line InputError."""
    if getattr(model.config, "model_type", None) not in SUPPORTED_TYPES:
        raise InputError(f"kdtool prune handles BERT-style encoders ({', '.join(SUPPORTED_TYPES)}); "
                         f"this model is {getattr(model.config, 'model_type', type(model).__name__)!r}")
    return model.base_model.encoder.layer


def head_dim(config) -> int:
    return config.hidden_size // config.num_attention_heads


def kept_heads(config, layer: int) -> list[int]:
    """The original head numbers still present in ``layer`` (what ``config.pruned_heads`` leaves)."""
    gone = set((config.pruned_heads or {}).get(layer, []))
    return [h for h in range(config.num_attention_heads) if h not in gone]


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

    def head_flops(self, seq_len: int) -> int:
        """What one head of a layer costs (Q/K/V/O columns and its share of the scores)."""
        n, d, a = seq_len, self.hidden, self.head_dim
        return 8 * n * d * a + 4 * n * n * a

    def ffn_flops_per_neuron(self, seq_len: int) -> int:
        return 4 * seq_len * self.hidden

    def flops(self, seq_len: int) -> int:
        return sum(self.layer_flops(h, seq_len) for h in self.heads) + 2 * seq_len * self.hidden * 2

    def layer_params(self, heads: int) -> int:
        d, a, i = self.hidden, heads * self.head_dim, self.ffn
        return 3 * (d * a + a) + (a * d + d) + 2 * d + (d * i + i) + (i * d + d) + 2 * d

    def head_params(self) -> int:
        d, a = self.hidden, self.head_dim
        return 4 * d * a + 3 * a

    def ffn_params_per_neuron(self) -> int:
        return 2 * self.hidden + 1

    def encoder_params(self) -> int:
        return sum(self.layer_params(h) for h in self.heads)

    def describe(self, seq_len: int, base_params: int) -> dict:
        return {"layers": self.layers, "heads_per_layer": list(self.heads), "heads": sum(self.heads), "ffn": self.ffn,
                "hidden": self.hidden, "parameters": base_params + self.encoder_params(), "flops": self.flops(seq_len)}


def base_params(model) -> int:
    """Parameters outside the transformer layers (embeddings, task head): pruning leaves them."""
    from kdtool.models import count_parameters

    return count_parameters(model) - Shape.of(model).encoder_params()
