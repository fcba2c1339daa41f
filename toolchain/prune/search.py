"""From importance scores to the shape that meets a budget.

:func:`pruning_path` removes units one move at a time, from the full model down to the smallest
shape the chosen structures allow (one head per layer, one FFN slice, one layer, one head size of
hidden width). Each registered unit (:mod:`kdtool.prune.units`) offers its next move; the one taken is
the one that loses the least importance per unit of cost saved (FLOPs at the sequence length, or
parameters for a parameter budget), the first registered among equals.

Importance is in one unit across structures (first-order loss change, :mod:`kdtool.prune.importance`),
so the comparison is meaningful; it is a first-order estimate, which is why ``--schedule iterative``
re-scores after each recovery. The path is monotone in cost, so a parameter or FLOP budget takes the
first point that meets it, and a latency budget is a bisection along the path over measured points.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdtool.prune.shapes import Shape
from kdtool.prune.slicing import Plan
from kdtool.prune.units import UNITS, default_ffn_step


@dataclass(frozen=True)
class Point:
    """One shape on the path: what is removed from the current model to reach it, and what it costs."""

    plan: Plan
    shape: Shape
    params: int
    flops: int
    lost_importance: float


class Walk:
    """The state of a walk down the pruning path, which the units' moves read and change.

    Shared by the units: ``alive`` (the original layers still there) and, per original layer, ``heads_left``
    (its remaining heads, least important first) and ``removed_heads``; each unit keeps the rest of its
    state in ``state[name]`` (:meth:`~kdtool.prune.units.PruningUnit.start`). ``now`` is the current shape
    while the units are asked for their moves; ``ffn_step`` the FFN unit's step (``--ffn-step``).
    """

    def __init__(self, shape: Shape, scores: dict, structures: tuple[str, ...], *, seq_len: int, base_params,
                 cost: str, ffn_step: int | None, dropped_layers: tuple[int, ...]):
        self.origin, self.scores, self.structures = shape, scores, tuple(structures)
        self.seq_len, self.base_params, self.cost = seq_len, base_params, cost
        self.ffn_step = ffn_step or default_ffn_step(shape.ffn)
        n = shape.layers
        self.heads_left = {i: sorted(range(shape.heads[i]), key=lambda h: scores["heads"][i][h]) for i in range(n)}
        self.removed_heads: dict[int, list[int]] = {i: [] for i in range(n)}
        self.alive = [i for i in range(n) if i not in dropped_layers]
        self.lost = float(sum(scores["layers"][i] for i in dropped_layers))
        self.state: dict = {}
        for name, unit in UNITS.items():  # in order: a unit's start may read the states before it
            self.state[name] = unit.start(self)
        self.now = self.shape()

    def active(self, name: str) -> bool:
        return name in self.structures

    def shape(self) -> Shape:
        s = Shape(tuple(self.origin.heads[i] - len(self.removed_heads[i]) for i in self.alive), self.origin.ffn,
                  self.origin.hidden, self.origin.head_dim)
        for unit in UNITS.values():
            s = unit.narrow(self, s)
        return s

    def cost_of(self, shape: Shape) -> int:
        return shape.params(self.base_params) if self.cost == "params" else shape.flops(self.seq_len)

    def saved(self, after: Shape) -> int:
        """What a move from the current shape to ``after`` saves, in the walk's cost."""
        return self.cost_of(self.now) - self.cost_of(after)

    def point(self) -> Point:
        plan = Plan(**{name: unit.removed(self) for name, unit in UNITS.items()})
        return Point(plan, self.now, self.now.params(self.base_params), self.now.flops(self.seq_len), self.lost)


def pruning_path(shape: Shape, scores: dict, structures: tuple[str, ...], *, seq_len: int, base_params,
                 cost: str = "flops", ffn_step: int | None = None, dropped_layers: tuple[int, ...] = ()) -> list[Point]:
    """Points from ``shape`` (removing nothing but ``dropped_layers``) down to the smallest reachable shape.

    ``scores``: the units' importance (:func:`~kdtool.prune.importance.score_units`); ``base_params``: the
    parameters outside the layers, an :class:`~kdtool.prune.shapes.Outside` (or an int when the hidden width
    stays)."""
    walk = Walk(shape, scores, structures, seq_len=seq_len, base_params=base_params, cost=cost, ffn_step=ffn_step,
                dropped_layers=dropped_layers)
    path = [walk.point()]
    while True:
        moves = [m for name, unit in UNITS.items() if name in structures for m in [unit.move(walk)] if m is not None]
        if not moves:
            return path
        move = min(moves, key=lambda m: m.ratio)  # the first of equals: registration order
        move.take()
        walk.lost += move.importance
        walk.now = walk.shape()
        path.append(walk.point())


def first_within(path: list[Point], limit: float, key: str) -> Point | None:
    """The first (largest) point whose ``key`` (``params`` or ``flops``) is at most ``limit``."""
    return next((p for p in path if getattr(p, key) <= limit), None)


def choose_within(shape: Shape, scores: dict, structures: tuple[str, ...], limit: float, *, seq_len: int,
                  base_params, cost: str = "flops", ffn_step: int | None = None) -> Point | None:
    """The point of a parameter or FLOP budget: the first on the path within ``limit``.

    A whole layer is a big step: when the move into the budget dropped one, the budget may be
    overshot by far (a 6-layer model at 33% of its FLOPs dropping to 17%). Then the same path
    is also continued from the point before that move with heads and FFN only, and the larger
    of the two points within the budget is taken ("the largest model that fits").
    """
    path = pruning_path(shape, scores, structures, seq_len=seq_len, base_params=base_params, cost=cost,
                        ffn_step=ffn_step)
    point = first_within(path, limit, cost)
    if point is None:
        return None
    i = path.index(point)
    narrower = tuple(s for s in structures if s != "layers")
    if i and narrower and len(point.plan.layers) > len(path[i - 1].plan.layers):
        alt = first_within(pruning_path(shape, scores, narrower, seq_len=seq_len, base_params=base_params, cost=cost,
                                        ffn_step=ffn_step, dropped_layers=tuple(path[i - 1].plan.layers)), limit, cost)
        if alt is not None and getattr(alt, cost) > getattr(point, cost):
            return alt
    return point


def bisect_latency(path: list[Point], budget_ms: float, measure) -> tuple[Point | None, list[dict]]:
    """The largest point whose measured latency (``measure(point) -> ms``) is within ``budget_ms``.

    Latency falls along the path (up to noise), so this bisects: about log2(len(path)) measurements.
    Returns the point (None when even the last is over) and every measurement made.
    """
    seen: dict[int, float] = {}

    def ms(i: int) -> float:
        if i not in seen:
            seen[i] = measure(path[i])
        return seen[i]

    lo, hi = 0, len(path) - 1
    if ms(hi) > budget_ms:
        return None, _log(path, seen)
    if ms(lo) <= budget_ms:
        return path[lo], _log(path, seen)
    while hi - lo > 1:  # invariant: lo over budget, hi within
        mid = (lo + hi) // 2
        if ms(mid) <= budget_ms:
            hi = mid
        else:
            lo = mid
    return path[hi], _log(path, seen)


def _log(path: list[Point], seen: dict[int, float]) -> list[dict]:
    return [{"path_index": i, "flops": path[i].flops, "params": path[i].params, "latency_ms": round(v, 3)}
            for i, v in sorted(seen.items())]
