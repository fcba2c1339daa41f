"""From importance scores to the shape that meets a budget.

:func:`pruning_path` removes units one move at a time, from the full model down to the smallest
shape the chosen structures allow (one head per layer, one FFN slice, one layer). Each move is the
one that loses the least importance per unit of cost saved (FLOPs at the sequence length, or
parameters for a parameter budget), among:

- ``heads``: the least important remaining head of any layer that keeps more than one;
- ``ffn``: the ``ffn_step`` least important remaining neurons of every layer (one width for all);
- ``layers``: the least important remaining layer (its heads and neurons go with it).

Importance is in one unit across structures (first-order loss change, :mod:`kdtool.prune.importance`),
so the comparison is meaningful; it is a first-order estimate, which is why ``--schedule iterative``
re-scores after each recovery. The path is monotone in cost, so a parameter or FLOP budget takes the
first point that meets it, and a latency budget is a bisection along the path over measured points.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdtool.prune.shapes import Shape
from kdtool.prune.slicing import Plan

STRUCTURES = ("heads", "ffn", "layers")


@dataclass(frozen=True)
class Point:
    """One shape on the path: what is removed from the current model to reach it, and what it costs."""

    plan: Plan
    shape: Shape
    params: int
    flops: int
    lost_importance: float


def default_ffn_step(ffn: int) -> int:
    """FFN width moves in steps of 1/32 of the width, rounded to a multiple of 8 (GEMM-friendly)."""
    return max(8, (ffn // 32) // 8 * 8) if ffn >= 64 else 1


def pruning_path(shape: Shape, scores: dict, structures: tuple[str, ...], *, seq_len: int, base_params: int,
                 cost: str = "flops", ffn_step: int | None = None, dropped_layers: tuple[int, ...] = ()) -> list[Point]:
    """Points from ``shape`` (removing nothing but ``dropped_layers``) down to the smallest reachable shape."""
    step = ffn_step or default_ffn_step(shape.ffn)
    n = shape.layers
    heads_left = {i: sorted(range(shape.heads[i]), key=lambda h: scores["heads"][i][h]) for i in range(n)}
    ffn_order = {i: sorted(range(shape.ffn), key=lambda j: scores["ffn"][i][j]) for i in range(n)}
    ffn_removed, layers_alive = 0, [i for i in range(n) if i not in dropped_layers]
    removed_heads: dict[int, list[int]] = {i: [] for i in range(n)}
    lost = float(sum(scores["layers"][i] for i in dropped_layers))

    def current() -> Point:
        heads = tuple(shape.heads[i] - len(removed_heads[i]) for i in layers_alive)
        s = Shape(heads, shape.ffn - ffn_removed, shape.hidden, shape.head_dim)
        plan = Plan(heads={i: list(v) for i, v in removed_heads.items() if v and i in layers_alive},
                    ffn={i: ffn_order[i][:ffn_removed] for i in range(n)} if ffn_removed else {},
                    layers=[i for i in range(n) if i not in layers_alive])
        return Point(plan, s, base_params + s.encoder_params(), s.flops(seq_len), lost)

    def saving(kind: str, arg=None) -> float:
        s = current().shape
        if cost == "params":
            per = {"heads": s.head_params(), "ffn": s.ffn_params_per_neuron() * step * len(layers_alive)}
            return per[kind] if kind != "layers" else s.layer_params(shape.heads[arg] - len(removed_heads[arg]))
        per = {"heads": s.head_flops(seq_len), "ffn": s.ffn_flops_per_neuron(seq_len) * step * len(layers_alive)}
        return per[kind] if kind != "layers" else s.layer_flops(shape.heads[arg] - len(removed_heads[arg]), seq_len)

    path = [current()]
    while True:
        moves = []  # (importance per cost, kind, arg, importance)
        if "heads" in structures:
            cands = [(scores["heads"][i][heads_left[i][0]], i) for i in layers_alive if len(heads_left[i]) > 1]
            if cands:
                imp, i = min(cands)
                moves.append((imp / saving("heads"), "heads", i, imp))
        if "ffn" in structures and shape.ffn - ffn_removed - step >= 1:
            imp = sum(scores["ffn"][i][j] for i in layers_alive for j in ffn_order[i][ffn_removed:ffn_removed + step])
            moves.append((imp / saving("ffn"), "ffn", None, imp))
        if "layers" in structures and len(layers_alive) > 1:
            imp, i = min((scores["layers"][i], i) for i in layers_alive)
            moves.append((imp / saving("layers", i), "layers", i, imp))
        if not moves:
            return path
        _, kind, arg, imp = min(moves, key=lambda m: m[0])
        if kind == "heads":
            removed_heads[arg].append(heads_left[arg].pop(0))
        elif kind == "ffn":
            ffn_removed += step
        else:
            layers_alive.remove(arg)
        lost += imp
        path.append(current())


def first_within(path: list[Point], limit: float, key: str) -> Point | None:
    """The first (largest) point whose ``key`` (``params`` or ``flops``) is at most ``limit``."""
    return next((p for p in path if getattr(p, key) <= limit), None)


def choose_within(shape: Shape, scores: dict, structures: tuple[str, ...], limit: float, *, seq_len: int,
                  base_params: int, cost: str = "flops", ffn_step: int | None = None) -> Point | None:
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
