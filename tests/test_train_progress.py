"""The trainer reports progress through kdtool.progress (a count per optimizer step, a line per
evaluated epoch) and draws nothing itself."""

from __future__ import annotations

from pathlib import Path

import kdtool.distill
from kdtool.distill import TrainConfig, finetune
from kdtool.progress import Event


def test_train_counts_steps_and_says_each_evaluation(tmp_path, roberta_dir, squad_file):
    events: list[Event] = []
    config = TrainConfig(model=str(roberta_dir), train_file=str(squad_file), dev_file=str(squad_file),
                         output=str(tmp_path / "o"), max_train_examples=16, max_dev_examples=4, max_length=64,
                         doc_stride=16, max_query_length=16, batch_size=8, epochs=2)
    report = finetune(config, progress=events.append)
    total = report["data"]["steps_per_epoch"] * 2
    counts = [e for e in events if e.task]
    assert [(e.task, e.done, e.total, e.unit) for e in counts] == [("train", n, total, "step") for n in range(1, total + 1)]
    lines = [e.message for e in events if e.message]
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2 (finetune): dev f1 ")


def test_the_training_library_does_not_draw_bars():
    package = Path(kdtool.distill.__file__).parent
    for path in package.glob("*.py"):
        assert "tqdm" not in path.read_text(encoding="utf-8"), path.name
