"""Which teacher layer each student layer learns from, and how attention heads pair up.

Layers are numbered as in ``output_hidden_states``: 0 is the embedding output, k >= 1 the output of
transformer layer k. The default map is TinyBERT's ``g(k) = k * T / S`` (24 -> 6: 0, 4, 8, ..., 24);
``g(0) = 0`` pairs the embeddings (the embedding loss). Hidden states pair ``student[k]`` with
``teacher[g(k)]``; attention pairs student layer k with teacher layer g(k), whose inputs are
``hidden[k-1]`` and ``hidden[g(k)-1]``.

Named maps (:data:`NAMED_MAPS`): ``uniform`` (the default above), and Patient KD's two, which leave
the top student layer to the prediction loss: ``skip`` (k -> k*T/S for k < S: every (T/S)-th teacher
layer) and ``last`` (k -> T-S+k for k < S: the last S-1 teacher layers below the top one).
"""

from __future__ import annotations

from kdtool.errors import InputError


def default_layer_map(student_layers: int, teacher_layers: int) -> dict[int, int]:
    if student_layers > teacher_layers:
        raise InputError(f"the student has more layers ({student_layers}) than the teacher ({teacher_layers}); "
                         "give an explicit --layer-map")
    return {k: (k * teacher_layers) // student_layers for k in range(student_layers + 1)}


def skip_layer_map(student_layers: int, teacher_layers: int) -> dict[int, int]:
    """PKD-skip: every (T/S)-th teacher layer for student layers 1..S-1 (plus the embeddings)."""
    full = default_layer_map(student_layers, teacher_layers)
    return {k: t for k, t in full.items() if k < student_layers}


def last_layer_map(student_layers: int, teacher_layers: int) -> dict[int, int]:
    """PKD-last: student layer k learns teacher layer T-S+k for k = 1..S-1 (plus the embeddings)."""
    default_layer_map(student_layers, teacher_layers)  # the same "more layers than the teacher" check
    return {0: 0, **{k: teacher_layers - student_layers + k for k in range(1, student_layers)}}


NAMED_MAPS = {"uniform": default_layer_map, "skip": skip_layer_map, "last": last_layer_map}


def parse_layer_map(text: str, student_layers: int, teacher_layers: int) -> dict[int, int]:
    """``"1:4,2:8,3:12"`` -> {0: 0, 1: 4, 2: 8, 3: 12}; student layers left out get no hidden/attention loss."""
    mapping = {0: 0}
    try:
        pairs = [p.split(":") for p in text.replace(" ", "").split(",") if p]
        parsed = {int(s): int(t) for s, t in pairs}
    except ValueError:
        raise InputError(f"--layer-map {text!r} is not a list of student:teacher pairs like 1:4,2:8") from None
    for s, t in parsed.items():
        if not (0 <= s <= student_layers and 0 <= t <= teacher_layers):
            raise InputError(f"--layer-map pair {s}:{t} is out of range (student 0..{student_layers}, "
                             f"teacher 0..{teacher_layers})")
        if (s == 0) != (t == 0):
            raise InputError(f"--layer-map pair {s}:{t}: layer 0 (embeddings) pairs only with layer 0")
    mapping.update(parsed)
    return dict(sorted(mapping.items()))


def layer_map(student_layers: int, teacher_layers: int, explicit: str | None = None) -> dict[int, int]:
    if explicit in NAMED_MAPS:
        return NAMED_MAPS[explicit](student_layers, teacher_layers)
    if explicit:
        return parse_layer_map(explicit, student_layers, teacher_layers)
    return default_layer_map(student_layers, teacher_layers)


def head_groups(student_heads: int, teacher_heads: int) -> int:
    """How many teacher heads average into one student head; an InputError when they cannot pair."""
    if teacher_heads % student_heads:
        raise InputError(f"cannot pair attention heads: the teacher has {teacher_heads}, the student {student_heads}; "
                         "the teacher's must be a multiple of the student's (or use --attention-loss none)")
    return teacher_heads // student_heads
