"""From importance scores to the shape that meets a budget.

:func:`pruning_path` removes units one move at a time, from the full model down to the smallest
shape the chosen structures allow (one head per layer, one FFN slice, one layer). Each move is the
one that loses the least importance per unit of cost saved (FLOPs at the sequence length, or
parameters for a parameter budget), among:

- ``heads``: the least important remaining head of any layer that keeps more than one;
- ``ffn``: the ``ffn_step`` least important remaining neurons of every layer (one width for all);
- ``layers``: the least important remaining layer (its heads and neurons go with it);
- ``hidden``: the ``head_dim`` least important remaining hidden dimensions (the residual stream of every
  layer, the embeddings and the task head). Hugging Face derives the head size from ``hidden_size //
  num_attention_heads``, so the hidden width moves in steps of one head size and every layer keeps at most
  ``hidden // head_dim`` heads: a layer over that loses its least important heads in the same move, and
  their importance counts against it.

Importance is in one unit across structures (first-order loss change, :mod:`kdtool.prune.importance`),
so the comparison is meaningful; it is a first-order estimate, which is why ``--schedule iterative``
re-scores after each recovery. The path is monotone in cost, so a parameter or FLOP budget takes the
first point that meets it, and a latency budget is a bisection along the path over measured points.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdtool.prune.shapes import Shape
from kdtool.prune.slicing import Plan

STRUCTURES = ("heads", "ffn", "hidden", "layers")
# What --prune removes unless told: the structures whose slicing is exact. Hidden dimensions move every
# LayerNorm's statistics, so they are asked for by name.
DEFAULT_STRUCTURES = ("heads", "ffn", "layers")


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


def pruning_path(shape: Shape, scores: dict, structures: tuple[str, ...], *, seq_len: int, base_params,
                 cost: str = "flops", ffn_step: int | None = None, dropped_layers: tuple[int, ...] = ()) -> list[Point]:
    """Points from ``shape`` (removing nothing but ``dropped_layers``) down to the smallest reachable shape.

    ``base_params``: the parameters outside the layers, an :class:`~kdtool.prune.shapes.Outside` (or an int
    when the hidden width stays)."""
    step = ffn_step or default_ffn_step(shape.ffn)
    n = shape.layers
    heads_left = {i: sorted(range(shape.heads[i]), key=lambda h: scores["heads"][i][h]) for i in range(n)}
    ffn_order = {i: sorted(range(shape.ffn), key=lambda j: scores["ffn"][i][j]) for i in range(n)}
    hidden_order = sorted(range(shape.hidden), key=lambda d: scores["hidden"][d]) if "hidden" in structures else []
    ffn_removed, hidden_removed, layers_alive = 0, 0, [i for i in range(n) if i not in dropped_layers]
    removed_heads: dict[int, list[int]] = {i: [] for i in range(n)}
    lost = float(sum(scores["layers"][i] for i in dropped_layers))

    def current() -> Point:
        heads = tuple(shape.heads[i] - len(removed_heads[i]) for i in layers_alive)
        s = Shape(heads, shape.ffn - ffn_removed, shape.hidden - hidden_removed, shape.head_dim)
        plan = Plan(heads={i: list(v) for i, v in removed_heads.items() if v and i in layers_alive},
                    ffn={i: ffn_order[i][:ffn_removed] for i in range(n)} if ffn_removed else {},
                    layers=[i for i in range(n) if i not in layers_alive], hidden=hidden_order[:hidden_removed])
        return Point(plan, s, s.params(base_params), s.flops(seq_len), lost)

    def narrower_hidden() -> tuple[dict[int, int], float, float]:
        """The hidden move: heads each layer must lose, its importance, and the cost it saves."""
        width = shape.hidden - hidden_removed - shape.head_dim
        forced = {i: max(0, len(heads_left[i]) - width // shape.head_dim) for i in layers_alive}
        imp = sum(scores["hidden"][d] for d in hidden_order[hidden_removed:hidden_removed + shape.head_dim])
        imp += sum(scores["heads"][i][h] for i, k in forced.items() for h in heads_left[i][:k])
        now = current().shape
        after = Shape(tuple(h - forced[i] for h, i in zip(now.heads, layers_alive, strict=True)), now.ffn, width,
                      now.head_dim)
        saved = (now.params(base_params) - after.params(base_params) if cost == "params"
                 else now.flops(seq_len) - after.flops(seq_len))
        return forced, imp, saved

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
        if "hidden" in structures and shape.hidden - hidden_removed - shape.head_dim >= shape.head_dim:
            forced, imp, saved = narrower_hidden()
            moves.append((imp / saved, "hidden", forced, imp))
        if not moves:
            return path
        _, kind, arg, imp = min(moves, key=lambda m: m[0])
        if kind == "heads":
            removed_heads[arg].append(heads_left[arg].pop(0))
        elif kind == "ffn":
            ffn_removed += step
        elif kind == "hidden":
            for i, k in arg.items():
                removed_heads[i] += [heads_left[i].pop(0) for _ in range(k)]
            hidden_removed += shape.head_dim
        else:
            layers_alive.remove(arg)
        lost += imp
        path.append(current())


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
