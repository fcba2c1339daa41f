"""A recipe's run directory and the records that make a stage "done".

``stages/<name>.json`` records what a finished stage was run with (its hash), what it wrote, how
long it took and its summary; :mod:`kdtool.recipes.runner` compares those hashes to decide what runs.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

from kdtool import __version__, stamps
from kdtool.atomic import atomic_write_json


def config_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]


class RunDir:
    """A recipe's run directory: stage outputs, and ``stages/<name>.json`` records of finished stages.

    A stage is done when its record exists, holds the hash the stage has now (its configuration
    chained with the hash of the stage before it), and every output it recorded still exists. So a
    changed configuration re-runs its stage and every later one.
    """

    def __init__(self, root: Path):
        self.root = Path(root).absolute()

    def path(self, rel: str) -> Path:
        return self.root / rel

    def record_path(self, stage: str) -> Path:
        return self.root / "stages" / f"{stage}.json"

    def record(self, stage: str) -> dict | None:
        record = stamps.read_json(self.record_path(stage))  # a FIFO or link planted there is not waited for
        return record if isinstance(record, dict) else None

    def is_done(self, stage: str, stage_hash: str) -> bool:
        rec = self.record(stage)
        return bool(rec and rec.get("config_hash") == stage_hash
                    and all(self.path(o).exists() for o in rec.get("outputs", [])))

    def write_record(self, stage: str, stage_hash: str, outputs: list[str], summary: dict, seconds: float,
                     command: str | None = None) -> None:
        atomic_write_json(self.record_path(stage), {
            "stage": stage, "config_hash": stage_hash, "outputs": outputs, "seconds": round(seconds, 2),
            "finished_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "kdtool_version": __version__, "command": command, "summary": summary})

    def forget(self, stages: list[str]) -> None:
        """Drop the records of ``stages`` (a stage about to run invalidates every later one)."""
        for s in stages:
            self.record_path(s).unlink(missing_ok=True)
