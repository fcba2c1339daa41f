"""One training step's loss: the student, its hidden-state projection and the weighted components.

:class:`Objective` is the module that data-parallel training wraps (so the projection is trained and
synchronised with the student). The components, which stages use them and their weights come from
the loss registry (:mod:`kdtool.losses`): ``forward`` computes each component a stage uses with a
non-zero weight and sums them weighted.
The teacher runs outside it, without gradients (:func:`teacher_targets`). The task (kdtool.tasks)
names the model outputs and supplies the hard loss and the soft-loss mask, so QA and pair
classification share every line here; a strategy (kdtool.strategies) only sets the weights.

Attention losses never ask either model for ``output_attentions``: Q and K of a mapped layer are
recomputed from the hidden state that entered it (``hidden_states[k-1]``) with that layer's own
query/key projections, so both models keep their SDPA attention.
"""

from __future__ import annotations

import torch
from torch import nn

from kdtool.data import MODEL_INPUTS
from kdtool.errors import InputError
from kdtool.losses import LOSSES, LossInputs, loss_weights, projected_losses, reads_hidden, stage_losses
from kdtool.tasks import TASKS


def self_attention(model, layer: int):
    """The self-attention module of transformer layer ``layer`` (1-based) of a BERT-style model."""
    try:
        return model.base_model.encoder.layer[layer - 1].attention.self
    except (AttributeError, IndexError):
        raise InputError(f"{type(model).__name__} has no BERT-style encoder.layer[i].attention.self; the attention "
                         "loss supports BERT/RoBERTa-family models (use --attention-loss none)") from None


def check_attention_support(model) -> None:
    att = self_attention(model, 1)
    if not all(hasattr(att, a) for a in ("query", "key", "num_attention_heads", "attention_head_size")):
        raise InputError(f"{type(model).__name__}: attention layers lack query/key projections; use --attention-loss none")
    if getattr(model.config, "position_embedding_type", "absolute") != "absolute":
        raise InputError(f"{type(model).__name__} uses {model.config.position_embedding_type} position scores, which "
                         "recomputed Q/K cannot reproduce; use --attention-loss none")


def layer_qk(model, layer: int, hidden_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Q and K (``[batch, heads, seq, head_dim]``) of ``layer`` from the hidden state that entered it."""
    att = self_attention(model, layer)
    b, n, _ = hidden_in.shape
    def heads(x):
        return x.view(b, n, att.num_attention_heads, att.attention_head_size).transpose(1, 2)
    return heads(att.query(hidden_in)), heads(att.key(hidden_in))


def model_inputs(batch: dict) -> dict:
    return {k: batch[k] for k in MODEL_INPUTS if k in batch}


def task_outputs(out, task=None) -> tuple[torch.Tensor, ...]:
    return tuple(getattr(out, name) for name in (task or TASKS["qa"]).outputs)


@torch.no_grad()
def teacher_targets(teacher, batch: dict, stage: str, layer_map: dict[int, int], attention: bool, task=None,
                    needs_hidden: bool | None = None) -> dict:
    """What the student learns from in ``stage``: logits (``outputs``), hidden states and Q/K of the mapped layers."""
    if needs_hidden is None:
        needs_hidden = reads_hidden(stage_losses(stage))
    out = teacher(**model_inputs(batch), output_hidden_states=needs_hidden)
    targets = {"outputs": task_outputs(out, task)}
    if needs_hidden:
        hs = out.hidden_states
        targets["hidden"] = {t: hs[t] for t in layer_map.values()}
        targets["last_hidden"] = hs[-1]
        if attention:
            targets["qk"] = {t: layer_qk(teacher, t, hs[t - 1]) for t in layer_map.values() if t > 0}
    return targets


class Objective(nn.Module):
    """The student and what it needs to be trained; ``forward`` returns the loss and its components."""

    def __init__(self, student, *, config=None, layer_map: dict[int, int] | None = None, teacher_hidden: int = 0,
                 task=None):
        super().__init__()
        self.student = student
        self.config = config  # a DistillConfig, or None for fine-tuning
        self.task = task or TASKS["qa"]
        self.layer_map = layer_map or {}
        self.weights = {"hard": 1.0} if config is None else loss_weights(config)
        self.projection = None
        projected = config is not None and config.schedule != "prediction"
        if projected and config.projection == "none" and student.config.hidden_size != teacher_hidden and \
                any(self.weights[c] > 0 for c in projected_losses()):
            raise InputError(f"--projection none compares hidden states as they are, but the student is "
                             f"{student.config.hidden_size} wide and the teacher {teacher_hidden}; use --projection shared")
        if projected and config.projection != "none":
            d_s = student.config.hidden_size
            n = 1 if config.projection == "shared" else len(self.layer_map)
            self.projection = nn.ModuleList(nn.Linear(d_s, teacher_hidden) for _ in range(n))
            if d_s == teacher_hidden:  # start from the identity when widths match
                for p in self.projection:
                    nn.init.eye_(p.weight)
                    nn.init.zeros_(p.bias)

    def components(self, stage: str) -> tuple[str, ...]:
        return tuple(c for c in stage_losses(stage) if self.weights.get(c, 0.0) > 0)

    @property
    def needs_hidden(self) -> bool:
        """Whether any stage of this objective reads hidden states (so the teacher must return them)."""
        return reads_hidden(c for c, w in self.weights.items() if w > 0)

    def project(self, k: int, h: torch.Tensor) -> torch.Tensor:
        if self.projection is None:
            return h
        layer = 0 if len(self.projection) == 1 else list(self.layer_map).index(k) if k in self.layer_map else -1
        return self.projection[layer](h)

    def forward(self, batch: dict, stage: str, targets: dict | None = None) -> dict[str, torch.Tensor]:
        comps = self.components(stage)
        needs_hidden = reads_hidden(comps)
        out = self.student(**model_inputs(batch), output_hidden_states=needs_hidden)
        hs = out.hidden_states if needs_hidden else None
        inputs = LossInputs(batch=batch, outputs=task_outputs(out, self.task), hidden=hs, targets=targets,
                            layer_pairs=list(self.layer_map.items()), config=self.config, task=self.task.module(),
                            project=self.project, student_qk=lambda s: layer_qk(self.student, s, hs[s - 1]))
        losses = {c: LOSSES[c].compute(inputs) for c in comps}
        losses["loss"] = sum(self.weights[c] * losses[c] for c in comps)
        return losses
