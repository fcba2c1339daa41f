"""Importance of every pruning unit: first-order Taylor scores over masks.

:class:`Gates` puts a mask of ones on every prunable unit of a BERT-style model through forward
hooks, so the model itself is unchanged and keeps its SDPA attention. Each registered unit
(:mod:`kdtool.prune.units`) says where its masks go: head h of layer l on its context vector
(Michel et al. 2019's gate), FFN neuron j on the GELU output, layer l on its residual update
(``x + g_l * (layer(x) - x)``), hidden dimension d on every LayerNorm that writes the residual stream
(CoFi's ``hidden_z``).

The importance of a unit is ``sum over batches |dL/d gate|`` at gates = 1, the first-order estimate
of how much the loss grows when that gate goes to 0 (Michel et al. for heads; the Taylor criterion of
Molchanov et al. 2019 and Model Optimizer's gradnas for neurons). All share one unit (loss
change), which is what lets :mod:`kdtool.prune.search` compare a head with a slice of FFN.

``L`` is the distillation loss against the teacher: KL(teacher || model) x T^2 on the task's logits
plus the hard-label loss. When the teacher is the unpruned model itself the KL term has zero
gradient at gates = 1, so the hard loss carries the signal; a separate teacher adds its own.
Setting gates to 0/1 by hand (:meth:`Gates.set`) gives the masked model that exact slicing must equal.
"""

from __future__ import annotations

import contextlib

import torch

from kdtool.distill.objective import model_inputs, task_outputs
from kdtool.losses import prediction_loss
from kdtool.prune.shapes import encoder_layers
from kdtool.prune.units import UNITS


class Gates:
    """Mask tensors of every registered pruning unit on ``model`` (``masks[name]``); active inside ``with gates:``."""

    def __init__(self, model):
        self.model = model
        self.layers = encoder_layers(model)
        self.state: dict = {}  # what a unit's hooks read besides its masks (hidden: the dimensions kept)
        self.masks = {name: unit.masks(self) for name, unit in UNITS.items()}
        self._handles: list = []

    def tensors(self) -> list[torch.Tensor]:
        return [t for masks in self.masks.values() for t in masks]

    def requires_grad_(self, flag: bool = True) -> Gates:
        for t in self.tensors():
            t.requires_grad_(flag)
        return self

    def set(self, **zeros) -> Gates:
        """Zero the listed units, by unit name: ``heads={layer: [positions]}``, ``ffn={layer: [neurons]}``,
        ``layers=[...]``, ``hidden=[dimensions of the residual stream]`` (a plan's entries)."""
        unknown = sorted(set(zeros) - set(UNITS))
        if unknown:
            raise TypeError(f"Gates.set() got unknown pruning units {unknown}; registered: {', '.join(UNITS)}")
        with torch.no_grad():
            for name, positions in zeros.items():
                if positions:
                    UNITS[name].zero(self, self.masks[name], positions)
        return self

    def __enter__(self):
        for name, unit in UNITS.items():
            self._handles += unit.hooks(self, self.masks[name])
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()


def score_units(model, batches, task, *, teacher=None, temperature: float = 1.0) -> dict:
    """``{unit: scores}`` (``"heads": [[..] per layer], "ffn": [[..] per layer], "layers": [..], "hidden": [..]``):
    sum over ``batches`` of |dL/d gate|.

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
    scores, k = {}, 0
    for name, unit in UNITS.items():
        m = len(gates.masks[name])
        scores[name] = unit.scores(totals[k:k + m])
        k += m
    return scores


@contextlib.contextmanager
def masked(model, **zeros):
    """``model`` with the listed units' gates at 0 (see :meth:`Gates.set`), for comparison with a sliced copy."""
    with Gates(model).set(**zeros) as gates:
        yield gates
