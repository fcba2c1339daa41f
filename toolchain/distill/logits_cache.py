"""Teacher start/end logits computed once and kept on disk for the prediction-only epochs.

In a prediction-only stage the teacher contributes nothing but its logits, and those do not change
between epochs (the teacher is frozen and runs in eval mode). They are computed in one pass over
the training windows and stored as two float32 ``[windows, max_len]`` arrays (memory-mapped when
read), so later epochs never run the teacher.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from kdtool.atomic import atomic_directory
from kdtool.data import QAFeatures, length_sorted_batches


class LogitsCache:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.start = np.load(self.path / "start.npy", mmap_mode="r")
        self.end = np.load(self.path / "end.npy", mmap_mode="r")
        self.meta = json.loads((self.path / "meta.json").read_text())

    def batch(self, indices, length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.asarray(indices)
        return (torch.from_numpy(np.ascontiguousarray(self.start[idx, :length])).to(device),
                torch.from_numpy(np.ascontiguousarray(self.end[idx, :length])).to(device))


def build_logits_cache(path: Path, run_teacher, features: QAFeatures, *, batch_size: int, key: str) -> LogitsCache:
    """Run ``run_teacher(batch) -> (start, end)`` over every window and store the logits at ``path``.

    An existing cache with the same ``key`` (a fingerprint of teacher and features) is reused.
    """
    path = Path(path)
    if (path / "meta.json").is_file() and json.loads((path / "meta.json").read_text()).get("key") == key:
        return LogitsCache(path)
    n, width = len(features), int(features.lengths.max())
    start = np.zeros((n, width), dtype=np.float32)
    end = np.zeros((n, width), dtype=np.float32)
    for idx in length_sorted_batches(features, batch_size):
        s, e = run_teacher(features.batch(idx))
        for row, i in enumerate(idx):
            k = len(features.input_ids[i])
            start[i, :k], end[i, :k] = s[row, :k], e[row, :k]
    with atomic_directory(path, overwrite=True, kind="teacher-logits") as tmp:
        np.save(tmp / "start.npy", start)
        np.save(tmp / "end.npy", end)
        (tmp / "meta.json").write_text(json.dumps({"key": key, "windows": n, "width": width}))
    return LogitsCache(path)
