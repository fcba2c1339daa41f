"""The pruning-unit registry: every kind of structure ``kdtool prune`` removes is one registered class.

A unit (a subclass of :class:`PruningUnit`, added with :func:`register_unit`, as losses are added with
``kdtool.losses.register_loss``) owns the four things that differ from one structure to the next:

- **mask**: gate tensors of ones over its structures and the forward hooks that apply them
  (:meth:`~PruningUnit.masks`, :meth:`~PruningUnit.hooks`, :meth:`~PruningUnit.zero`; used by
  :class:`kdtool.prune.importance.Gates`);
- **importance**: its scores from the summed |dL/d gate| of its gates (:meth:`~PruningUnit.scores`);
- **shape arithmetic**: its next move on the pruning path, the importance that move loses and the
  shape it leaves (:meth:`~PruningUnit.start`, :meth:`~PruningUnit.move`, :meth:`~PruningUnit.narrow`,
  :meth:`~PruningUnit.removed`; used by :func:`kdtool.prune.search.pruning_path`);
- **slicing**: removing its positions from a model (:meth:`~PruningUnit.check`, :meth:`~PruningUnit.slice`;
  used by :func:`kdtool.prune.slicing.apply_plan`).

Everything else follows from the entries, in registration order: the choices, help and default of
``--prune`` (and ``PruneConfig.structures``), the keys of the scores and of a :class:`~kdtool.prune.slicing.Plan`,
the order in which moves of equal cost-effectiveness are preferred (the first registered wins), hooks
are added and a plan is sliced. The built-in units (:mod:`kdtool.prune.units`) register heads, ffn,
layers, hidden, in that order: heads and FFN neurons are sliced before layers drop, and hidden dimensions
last, once every layer that stays has at most the heads the narrower width holds.

The path's state that several units share lives on the walk (:class:`kdtool.prune.search.Walk`): the
layers still alive and the heads each keeps, in order of importance; a unit keeps anything else it needs
in ``walk.state[name]`` (and a gate set's in ``gates.state[name]``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch

    from kdtool.prune.shapes import Shape


@dataclass(frozen=True)
class Move:
    """One candidate step along the pruning path: the importance it loses, the cost (FLOPs or parameters) it
    saves, and ``take()``, which records it in the walk's state."""

    importance: float
    saved: float
    take: Callable[[], None]

    @property
    def ratio(self) -> float:
        return self.importance / self.saved


class PruningUnit:
    """One kind of structure that pruning removes. Subclass it, set the class attributes, implement the
    methods and register it with :func:`register_unit`. Positions are those of the model as it is now."""

    name: ClassVar[str]  # its --prune name and its key in scores and plans
    about: ClassVar[str] = ""  # what it is, for --prune's help ("" for nothing more than the name)
    default: ClassVar[bool] = True  # in --prune's default
    per_layer: ClassVar[bool] = False  # its positions are {layer: [positions]}, else a list

    def empty(self) -> Any:
        """What a plan removes of this unit when it removes none."""
        return {} if self.per_layer else []

    def describe(self, positions) -> Any:
        """Its positions as the report's JSON."""
        if self.per_layer:
            return {str(k): sorted(v) for k, v in sorted(positions.items()) if v}
        return sorted(positions)

    def refusal(self, model) -> str | None:
        """Why ``model`` cannot lose units of this kind (one line), or None."""
        return None

    # mask and importance
    def masks(self, gates) -> list[torch.Tensor]:
        """Gate tensors of ones over this unit's structures of ``gates.model`` (``gates.layers`` its layers)."""
        raise NotImplementedError

    def hooks(self, gates, masks: list[torch.Tensor]) -> list:
        """Register the forward hooks that multiply by ``masks``; return their handles."""
        raise NotImplementedError

    def zero(self, gates, masks: list[torch.Tensor], positions) -> None:
        """Set the gates of ``positions`` to 0 (called under ``torch.no_grad``)."""
        raise NotImplementedError

    def scores(self, grads: list[torch.Tensor]) -> Any:
        """The scores (plain lists) from the summed |gradient| of each of its masks."""
        raise NotImplementedError

    def no_scores(self, shape: Shape) -> Any:
        """All-zero scores of a model of ``shape`` (the budget check walks the path without scoring)."""
        raise NotImplementedError

    # shape arithmetic along the pruning path
    def start(self, walk) -> Any:
        """Its own state on a new walk (``walk.state[name]``); read scores only when ``walk.active(name)``."""
        return None

    def move(self, walk) -> Move | None:
        """Its next move from the walk's current shape (``walk.now``), or None when it cannot go further."""
        raise NotImplementedError

    def narrow(self, walk, shape: Shape) -> Shape:
        """``shape`` with what this unit has removed on the walk (the layers and heads are the walk's own)."""
        return shape

    def removed(self, walk) -> Any:
        """The positions this unit has removed on the walk, as a plan holds them."""
        raise NotImplementedError

    # slicing
    def check(self, model, positions) -> None:
        """Refuse (InputError) a plan that no model can take, before any unit slices anything."""

    def slice(self, model, positions) -> None:
        """Remove ``positions`` from ``model`` in place (only called with positions to remove)."""
        raise NotImplementedError


UNITS: dict[str, PruningUnit] = {}


def register_unit(cls: type[PruningUnit]) -> type[PruningUnit]:
    """Class decorator: register ``cls`` (a :class:`PruningUnit`) under ``cls.name``, after the units before it."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.isidentifier() or name in UNITS:
        raise ValueError(f"pruning unit {name!r} is already registered or is not a valid name")
    UNITS[name] = cls()
    return cls


def default_structures() -> tuple[str, ...]:
    """What ``--prune`` removes unless told: the registered units whose ``default`` is set."""
    return tuple(name for name, unit in UNITS.items() if unit.default)


def structures_help() -> str:
    """The registered units for ``--prune``'s help: ``heads (per layer), ffn (...), layers, ...``."""
    return ", ".join(f"{name} ({unit.about})" if unit.about else name for name, unit in UNITS.items())
