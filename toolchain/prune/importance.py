"""Importance of heads, FFN neurons, hidden dimensions and layers: first-order Taylor scores over masks.

:class:`Gates` puts a mask of ones on every prunable unit of a BERT-style model through forward
hooks, so the model itself is unchanged and keeps its SDPA attention:

- head h of layer l: its context vector (``probs @ V`` for that head) is multiplied by ``heads[l][h]``,
  which is Michel et al. (2019)'s gate xi_h (HF's ``head_mask`` scales the probabilities, the same thing);
- FFN neuron j of layer l: the GELU output is multiplied by ``ffn[l][j]``;
- layer l: its output becomes ``x + g_l * (layer(x) - x)``, so ``g_l = 0`` is the layer removed;
- hidden dimension d: every LayerNorm of the embeddings and the layers (each writes the residual stream)
  has its output's dimension d multiplied by ``hidden[d]``, one gate shared by all of them (CoFi's
  ``hidden_z``), and so has any hidden-wide dense layer of the task head (a pooler), which slicing
  narrows with them. A dimension removed by hand (:meth:`Gates.set`) also drops out of those LayerNorms'
  mean and variance, which is what the sliced model computes (:mod:`kdtool.prune.slicing`).

The importance of a unit is ``sum over batches |dL/d gate|`` at gates = 1, the first-order estimate
of how much the loss grows when that gate goes to 0 (Michel et al. for heads; the Taylor criterion of
Molchanov et al. 2019 and Model Optimizer's gradnas for neurons). All three share one unit (loss
change), which is what lets :mod:`kdtool.prune.search` compare a head with a slice of FFN.

``L`` is the distillation loss against the teacher: KL(teacher || model) x T^2 on the task's logits
plus the hard-label loss. When the teacher is the unpruned model itself the KL term has zero
gradient at gates = 1, so the hard loss carries the signal; a separate teacher adds its own.
Setting gates to 0/1 by hand (:meth:`Gates.set`) gives the masked model that exact slicing must equal.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from kdtool.distill.objective import model_inputs, task_outputs
from kdtool.losses import prediction_loss
from kdtool.prune.shapes import encoder_layers, hidden_prunable


class Gates:
    """Mask tensors on heads, FFN neurons, layers and hidden dimensions of ``model``; active inside ``with gates:``."""

    def __init__(self, model):
        self.model = model
        self.layers = encoder_layers(model)
        self.heads = [torch.ones(layer.attention.self.num_attention_heads) for layer in self.layers]
        self.ffn = [torch.ones(layer.intermediate.dense.out_features) for layer in self.layers]
        self.layer = torch.ones(len(self.layers))
        self.hidden = torch.ones(model.config.hidden_size)
        self._kept: torch.Tensor | None = None  # hidden dimensions left after set(hidden=...), None: all
        self._handles: list = []

    def tensors(self) -> list[torch.Tensor]:
        return [*self.heads, *self.ffn, self.layer, self.hidden]

    def requires_grad_(self, flag: bool = True) -> Gates:
        for t in self.tensors():
            t.requires_grad_(flag)
        return self

    def set(self, *, heads: dict[int, list[int]] | None = None, ffn: dict[int, list[int]] | None = None,
            layers: list[int] | None = None, hidden: list[int] | None = None) -> Gates:
        """Zero the listed units: ``heads`` and ``ffn`` map a layer to positions; ``layers`` lists layers,
        ``hidden`` dimensions of the residual stream."""
        if hidden:
            self._kept = torch.tensor(sorted(set(range(len(self.hidden))) - set(hidden)), dtype=torch.long)
        with torch.no_grad():
            self.hidden[list(hidden or [])] = 0.0
            for i, hs in (heads or {}).items():
                self.heads[i][hs] = 0.0
            for i, js in (ffn or {}).items():
                self.ffn[i][js] = 0.0
            for i in layers or []:
                self.layer[i] = 0.0
        return self

    def __enter__(self):
        for i, layer in enumerate(self.layers):
            att = layer.attention.self
            self._handles.append(att.register_forward_hook(self._head_hook(i, att)))
            self._handles.append(layer.intermediate.register_forward_hook(
                lambda mod, args, out, i=i: out * self.ffn[i].to(out.dtype)))
            self._handles.append(layer.register_forward_hook(self._layer_hook(i), with_kwargs=True))
        for norm in self._hidden_norms():
            self._handles.append(norm.register_forward_hook(self._hidden_hook))
        for dense in self._hidden_head_layers():
            self._handles.append(dense.register_forward_hook(lambda mod, args, out: out * self.hidden.to(out.dtype)))
        return self

    def _hidden_head_layers(self) -> list[torch.nn.Linear]:
        """Hidden-wide layers of the task head (a pooler, RoBERTa's classification dense layer): slicing
        narrows their outputs with the residual stream, so the same gate masks them."""
        if not hidden_prunable(self.model):
            return []
        inside = {id(m) for m in self.model.base_model.encoder.modules()}
        inside |= {id(m) for m in self.model.base_model.embeddings.modules()}
        return [m for m in self.model.modules() if isinstance(m, torch.nn.Linear) and id(m) not in inside
                and m.out_features == len(self.hidden)]

    def _hidden_norms(self) -> list[torch.nn.LayerNorm]:
        """The LayerNorms that write the residual stream (none when the model's hidden width cannot be pruned)."""
        if not hidden_prunable(self.model):
            return []
        norms = [m for m in self.model.base_model.embeddings.modules() if isinstance(m, torch.nn.LayerNorm)]
        for layer in self.layers:
            norms += [layer.attention.output.LayerNorm, layer.output.LayerNorm]
        return norms

    def _hidden_hook(self, mod, args, out):
        if self._kept is not None:  # the removed dimensions leave the statistics too (what slicing computes)
            x, kept = args[0], self._kept
            out = torch.zeros_like(out)
            out[..., kept] = F.layer_norm(x[..., kept], (len(kept),), mod.weight[kept], mod.bias[kept], mod.eps)
        return out * self.hidden.to(out.dtype)

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _head_hook(self, i, att):
        def hook(mod, args, out):
            ctx = out[0]
            b, n, _ = ctx.shape
            gated = (ctx.view(b, n, att.num_attention_heads, att.attention_head_size)
                     * self.heads[i].to(ctx.dtype)[:, None]).view(b, n, -1)
            return (gated, *out[1:])
        return hook

    def _layer_hook(self, i):
        def hook(mod, args, kwargs, out):
            x = args[0] if args else kwargs["hidden_states"]
            g = self.layer[i].to(x.dtype)
            return (x + g * (out[0] - x), *out[1:])
        return hook


def score_units(model, batches, task, *, teacher=None, temperature: float = 1.0) -> dict:
    """``{"heads": [[..] per layer], "ffn": [[..] per layer], "layers": [..]}``: sum over ``batches`` of |dL/d gate|.

    ``batches`` are feature batches with labels (tensors); ``teacher`` (default: none, hard loss only)
    gives the soft targets. The model runs in eval mode (no dropout), its weights get no gradient.
    """

    impl = task.module()
    was_training = model.training
    model.eval()
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    gates = Gates(model).requires_grad_(True)
    totals = [torch.zeros_like(t) for t in gates.tensors()]
    try:
        with gates:
            for batch in batches:
                outputs = task_outputs(model(**model_inputs(batch)), task)
                loss = impl.hard_loss(outputs, batch)
                if teacher is not None:
                    with torch.no_grad():
                        target = task_outputs(teacher(**model_inputs(batch)), task)
                    loss = loss + prediction_loss(outputs, target, impl.soft_mask(batch), temperature=temperature,
                                                  kind="kl")
                # allow_unused: a model whose hidden width cannot be pruned has no hidden gate in its graph
                grads = torch.autograd.grad(loss, gates.tensors(), allow_unused=True)
                for acc, g in zip(totals, grads, strict=True):
                    if g is not None:
                        acc += g.abs()
    finally:
        for p, f in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(f)
        model.train(was_training)
    n = len(gates.heads)
    return {"heads": [t.tolist() for t in totals[:n]], "ffn": [t.tolist() for t in totals[n:2 * n]],
            "layers": totals[-2].tolist(), "hidden": totals[-1].tolist()}


@contextlib.contextmanager
def masked(model, **zeros):
    """``model`` with the listed units' gates at 0 (see :meth:`Gates.set`), for comparison with a sliced copy."""
    with Gates(model).set(**zeros) as gates:
        yield gates
