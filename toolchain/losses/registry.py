"""The loss registry: every loss component the trainer knows is one function and one entry.

An entry (:class:`LossSpec`, added with :func:`register_loss`, as TextBrewer's ``MATCH_LOSS_MAP`` /
``register_new``) says which stages of a schedule use the loss, its default weight, which inputs it
reads, and whether it compares student states through the projection. Everything else is derived
from the entries, in registration order: the ``<name>_weight`` fields of a strategy and of the
distillation config (:func:`with_weight_fields`), their checks, the objective's weights and stage
components (:func:`loss_weights`, :func:`stage_losses`) and the ``--<name>-weight`` options of
``kdtool distill`` (and ``kdtool prune``'s recovery). The registration order is the order the
objective computes and sums the components in, and the order of the CLI options.

A loss function receives a :class:`LossInputs` (the batch, the student's logits and hidden states,
the teacher's targets, the layer pairs and the config) and returns a scalar tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kdtool.fields import setting

if TYPE_CHECKING:  # the registry is read by every command's options (kdtool --help): it must not load torch
    import torch

STAGES = ("finetune", "intermediate", "prediction", "joint")
# what a loss may read: gold labels, the teacher's logits, both models' hidden states, the teacher's Q/K
INPUTS = ("labels", "teacher_outputs", "hidden", "teacher_qk")
# the choices of --attention-loss (besides "none") and --prediction-loss; their functions are in
# kdtool.losses.attention (ATTENTION_LOSSES) and kdtool.losses.logits (prediction_loss)
ATTENTION_KINDS = ("scores", "probs")
PREDICTION_KINDS = ("kl", "soft-ce", "mse")


@dataclass(frozen=True)
class LossInputs:
    """What one training step offers a loss (built by :class:`kdtool.distill.objective.Objective`)."""

    batch: dict  # the model inputs and labels of the step, on the device
    outputs: tuple[torch.Tensor, ...]  # the student's task logits ((start, end) for QA, (logits,) for pairs)
    hidden: tuple[torch.Tensor, ...] | None  # the student's hidden states, embeddings first, when a loss reads them
    targets: dict | None  # the teacher's: ``outputs``, ``hidden`` {layer: state}, ``last_hidden``, ``qk`` {layer: (q, k)}
    layer_pairs: list[tuple[int, int]]  # mapped (student layer, teacher layer), layer 0 the embeddings
    config: Any  # the DistillConfig (None when fine-tuning): temperature, prediction_loss, attention_loss
    task: Any  # the task's module (kdtool.tasks): ``hard_loss(outputs, batch)``, ``soft_mask(batch)``
    project: Callable[[int, torch.Tensor], torch.Tensor]  # a student state of layer k at the teacher's width
    student_qk: Callable[[int], tuple[torch.Tensor, torch.Tensor]]  # Q, K of student layer k (1-based)

    @property
    def mask(self) -> torch.Tensor:
        return self.batch["attention_mask"]


@dataclass(frozen=True)
class LossSpec:
    name: str  # the component's name in logs and reports, and its config field ``<name>_weight``
    compute: Callable[[LossInputs], torch.Tensor]
    stages: tuple[str, ...]  # the stages of a schedule that use it (see :data:`STAGES`)
    default: float  # its weight in a strategy that does not set it (TinyBERT's)
    about: str  # "the hidden-state loss": the help of ``--<name>-weight``
    needs: tuple[str, ...] = ()  # what it reads (see :data:`INPUTS`)
    projected: bool = False  # compares student states to the teacher's through the learned projection
    off_when: tuple[str, str] | None = None  # (config field, value) that turns it off whatever its weight

    @property
    def weight_field(self) -> str:
        return f"{self.name}_weight"

    @property
    def option(self) -> str:
        return f"--{self.name.replace('_', '-')}-weight"


LOSSES: dict[str, LossSpec] = {}


def register_loss(name: str, *, stages: tuple[str, ...], about: str, default: float = 0.0, needs: tuple[str, ...] = (),
                  projected: bool = False, off_when: tuple[str, str] | None = None):
    """Decorator: register ``fn(inputs: LossInputs) -> Tensor`` as the loss component ``name``.

    Register before :mod:`kdtool.distill.config` and :mod:`kdtool.strategies` are imported: their
    ``<name>_weight`` fields are made from the registry when the classes are defined.
    """
    if name in LOSSES or not name.isidentifier():
        raise ValueError(f"loss {name!r} is already registered or is not a valid name")
    for what, given, allowed in (("stage", stages, STAGES), ("input", needs, INPUTS)):
        if not set(given) <= set(allowed):
            raise ValueError(f"loss {name!r}: unknown {what} {sorted(set(given) - set(allowed))}; choose from {allowed}")

    def add(fn: Callable[[LossInputs], torch.Tensor]) -> Callable[[LossInputs], torch.Tensor]:
        LOSSES[name] = LossSpec(name, fn, tuple(stages), float(default), about, tuple(needs), projected, off_when)
        return fn

    return add


def stage_losses(stage: str) -> tuple[str, ...]:
    """The loss components ``stage`` uses, in registration order."""
    return tuple(name for name, spec in LOSSES.items() if stage in spec.stages)


def reads_hidden(names) -> bool:
    """Whether any of the components ``names`` reads hidden states (so both models must return them)."""
    return any("hidden" in LOSSES[n].needs for n in names)


def projected_losses() -> set[str]:
    return {name for name, spec in LOSSES.items() if spec.projected}


def weight_fields() -> tuple[str, ...]:
    return tuple(spec.weight_field for spec in LOSSES.values())


def loss_weights(config) -> dict[str, float]:
    """Each component's weight in ``config`` (a DistillConfig); 0 where its ``off_when`` switch is set."""
    return {name: 0.0 if spec.off_when and getattr(config, spec.off_when[0]) == spec.off_when[1]
            else getattr(config, spec.weight_field) for name, spec in LOSSES.items()}


def with_weight_fields(after: str, *, preset: bool, spelling: dict | None = None):
    """Class decorator (put it under ``@dataclass``): add a ``<name>_weight: float`` field per registered
    loss after the field ``after``, defaulting to the loss's default (``preset``) or to ``None``; with
    ``spelling`` (more :class:`kdtool.fields.Spelling` keys), each is an option ``--<name>-weight``."""

    def add(cls):
        own = dict(cls.__annotations__)
        ordered = {}
        for name, annotation in own.items():
            ordered[name] = annotation
            if name == after:
                for spec in LOSSES.values():
                    ordered[spec.weight_field] = "float" if preset else "float | None"
                    value = spec.default if preset else None
                    if spelling is not None:
                        value = setting(value, option=spec.option, type="weight", help=f"Weight of {spec.about}.",
                                        **spelling)
                    setattr(cls, spec.weight_field, value)
        if after not in own:
            raise TypeError(f"{cls.__name__} has no field {after!r} to put the loss weights after")
        cls.__annotations__ = ordered
        return cls

    return add
