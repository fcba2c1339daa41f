"""Teacher logits computed once and kept on disk for the prediction-only epochs.

In a prediction-only stage the teacher contributes nothing but its logits, and those do not change
between epochs (the teacher is frozen and runs in eval mode). They are computed in one pass over
the training windows and stored as one float32 array per model output (memory-mapped when read):
``[windows, max_len]`` for per-token outputs (QA start/end), ``[windows, labels]`` otherwise
(a classifier's logits), so later epochs never run the teacher.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from kdtool import stamps
from kdtool.atomic import atomic_directory
from kdtool.data import length_sorted_batches


class LogitsCache:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.meta = stamps.read_json(self.path / "meta.json")
        self.arrays = [np.load(self.path / f"output{i}.npy", mmap_mode="r") for i in range(self.meta["outputs"])]
        self.per_token = self.meta["per_token"]

    def batch(self, indices, length: int, device) -> tuple[torch.Tensor, ...]:
        idx = np.asarray(indices)
        return tuple(torch.from_numpy(np.ascontiguousarray(a[idx, :length] if self.per_token else a[idx])).to(device)
                     for a in self.arrays)


def build_logits_cache(path: Path, run_teacher, features, *, batch_size: int, key: str,
                       per_token: bool = True) -> LogitsCache:
    """Run ``run_teacher(batch) -> tuple of outputs`` over every window and store them at ``path``.

    An existing cache with the same ``key`` (a fingerprint of teacher and features) is reused.
    """
    path = Path(path)
    meta = stamps.read_json(path / "meta.json")
    if isinstance(meta, dict) and meta.get("key") == key:
        return LogitsCache(path)
    n, width = len(features), int(features.lengths.max())
    arrays = None
    for idx in length_sorted_batches(features, batch_size):
        outs = run_teacher(features.batch(idx))
        if arrays is None:
            arrays = [np.zeros((n, width if per_token else o.shape[1]), dtype=np.float32) for o in outs]
        for row, i in enumerate(idx):
            k = len(features.input_ids[i])
            for a, o in zip(arrays, outs, strict=True):
                if per_token:
                    a[i, :k] = o[row, :k]
                else:
                    a[i] = o[row]
    with atomic_directory(path, overwrite=True, kind="teacher-logits") as tmp:
        for j, a in enumerate(arrays):
            np.save(tmp / f"output{j}.npy", a)
        (tmp / "meta.json").write_text(json.dumps({"key": key, "windows": n, "width": width, "outputs": len(arrays),
                                                   "per_token": per_token}))
    return LogitsCache(path)
