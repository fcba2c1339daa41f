"""Checkpoints of a run, written atomically, and the run directory's identity.

A run directory (``--work-dir``, default ``<output>.work``) holds ``run.json`` (the config and its
fingerprint), ``checkpoints/step-NNNNNNNN/state.pt`` (the newest complete one named by ``latest.json``),
``best/`` (the best student so far), ``train_log.jsonl`` and the teacher-logits cache. A checkpoint is
written into a temporary directory and renamed (:func:`kdtool.atomic.atomic_directory`); only then does
``latest.json`` point at it, and only then are older checkpoints removed, so a run killed at any
moment resumes from the newest complete checkpoint.

``state.pt`` holds model, projection, optimizer, scheduler and scaler states, the data position
(epoch, step within the epoch, optimizer step), the RNG states (python, numpy, torch, CUDA) and the
run's bookkeeping (best score, evaluations, time per stage); it loads with ``weights_only=True``.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import torch

from kdtool import stamps
from kdtool.atomic import atomic_directory, atomic_write_json
from kdtool.distill.config import RESUMABLE_FIELDS
from kdtool.errors import InputError, IntegrityError


def rng_state() -> dict:
    py = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def open_run_dir(work: Path, config, *, resume: bool, overwrite: bool = False) -> dict | None:
    """Check ``work`` against ``config`` before anything is written; the latest checkpoint state when resuming."""
    run_file = work / "run.json"
    if not work.exists():
        if resume:
            raise InputError(f"nothing to resume: run directory {work} does not exist")
        return None
    if work.is_dir() and not work.is_symlink() and not any(work.iterdir()):
        return None  # killed between mkdir and run.json: nothing in it
    recorded = stamps.read_json(run_file) if stamps.container_kind(work) == "work" else None
    if not isinstance(recorded, dict):
        raise InputError(f"{work} exists but is not a kdtool run directory (no intact stamp and run.json: made by "
                         "another program or an older kdtool, or copied); remove it or choose --work-dir")
    if not resume:
        if overwrite:
            return None  # start over: start_run_dir replaces it
        raise InputError(f"run directory {work} exists from an earlier run; pass --resume to continue it "
                         "or --overwrite to start over")
    if recorded.get("fingerprint") != config.fingerprint():
        changed = sorted(k for k, v in config.to_dict().items()
                         if recorded.get("config", {}).get(k) != v and k not in RESUMABLE_FIELDS)
        raise InputError(f"cannot resume {work}: it was started with a different configuration "
                         f"(differs in: {', '.join(changed) or 'kind of run'})")
    return load_latest(work)


_STARTED: set[Path] = set()  # run directories this process created


def start_run_dir(work: Path, config) -> None:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    stamps.stamp_container(work, "work")  # what a later --overwrite checks before it removes the directory
    _STARTED.add(Path(work))
    atomic_write_json(work / "run.json", {"fingerprint": config.fingerprint(), "kind": type(config).__name__,
                                          "config": config.to_dict()})


def forget_started_runs() -> None:
    """Start tracking afresh: only directories the run about to start creates may be discarded."""
    _STARTED.clear()


def discard_runs_without_checkpoint() -> None:
    """Remove the run directories this process started that hold no checkpoint yet.

    Called when a run fails (an exception, not Ctrl-C or --stop-after): a run that died before its
    first checkpoint has nothing to resume, and its directory would refuse the corrected command
    (different configuration) and --resume alike.
    """
    for work in list(_STARTED):
        if not (work / "latest.json").is_file():
            shutil.rmtree(work, ignore_errors=True)
        _STARTED.discard(work)


def save_checkpoint(work: Path, step: int, state: dict) -> Path:
    root = work / "checkpoints"
    name = f"step-{step:08d}"
    target = root / name
    # A checkpoint of this very step may exist (epoch end right after a periodic one) and be the one
    # latest.json names: it is swapped for the new one in one rename, never removed first.
    with atomic_directory(target, overwrite=True, kind="checkpoint") as tmp:
        torch.save(state, tmp / "state.pt")
    atomic_write_json(work / "latest.json", {"checkpoint": name, "step": step})
    for old in root.iterdir():
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return target


def load_latest(work: Path) -> dict | None:
    latest = work / "latest.json"
    if not latest.is_file():
        return None  # killed before the first checkpoint: start from the beginning
    record = stamps.read_json(latest)
    name = record.get("checkpoint") if isinstance(record, dict) else None
    if not isinstance(name, str) or "/" in name or name.startswith("."):
        raise IntegrityError(f"{latest} does not name a checkpoint; the run directory is damaged")
    path = work / "checkpoints" / name / "state.pt"
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as err:
        raise IntegrityError(f"checkpoint {path} could not be read ({type(err).__name__}); "
                             "the run directory is damaged") from None
