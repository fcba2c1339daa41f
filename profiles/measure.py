"""The timing loop of a profile: warm-up, round-robin timed runs across models, per-row statistics.

:class:`Measurer` appends one row per (model, shape) to a :class:`~kdtool.profiles.profiler.ProfileResult`
as shapes complete, so an interrupted profile keeps what it measured. It reports progress as task
``"profile"`` in unit ``"run"`` (warm-up runs count), plus a line ``[ NN%] WHAT`` when it moves on
to another shape.
"""

from __future__ import annotations

import numpy as np

from kdtool.data.features import length_sorted_batches
from kdtool.profiles.loading import random_batch
from kdtool.profiles.timing import error_text, free_cuda_cache, latency_stats, timed_run, uses_cuda_events, warm_up
from kdtool.progress import Progress, count, say


def set_speedups(rows: list[dict], stats_key: str, budget_ms: float | None = None) -> None:
    """``speedup = reference p50 / p50`` within each shape (rows of one shape share ``shape_key``)."""
    ref = {r["_shape"]: r for r in rows if r["model_index"] == 0}
    for r in rows:
        mine, theirs = r.get(stats_key), (ref.get(r["_shape"]) or {}).get(stats_key)
        r["speedup"] = theirs["p50"] / mine["p50"] if mine and theirs and mine["p50"] > 0 else None
        if stats_key == "latency_ms":
            r["within_budget"] = (mine["p90"] <= budget_ms) if (mine and budget_ms) else None


def finish_rows(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]


# ---------------------------------------------------------------------------------------------
# measuring


class Measurer:
    """Runs the measurements of one profile, appending rows to ``result`` as shapes complete."""

    def __init__(self, engines: list, result, progress: Progress | None):
        self.engines, self.result, self.progress = engines, result, progress
        self.s = result.settings
        self.done, self.total = 0, 0
        self.what: str | None = None

    def tick(self, what: str, n: int = 1) -> None:
        self.done += n
        if n or not self.done:
            if what != self.what:
                say(self.progress, f"[{100 * self.done // max(self.total, 1):3d}%] {what}")
                self.what = what
            count(self.progress, "profile", self.done, self.total, "run")

    def _row(self, i: int, shape: dict, **extra) -> dict:
        return {"model": self.result.models[i]["name"], "model_index": i, **shape, "status": "ok", "error": None, **extra}

    def _round_robin(self, rows: list[dict], work: list[list], what: str) -> None:
        """``work[i]``: model i's batches, timed round-robin across models into ``rows[i]['_times']``."""
        longest = max((len(w) for w in work), default=0)
        for j in range(longest):
            for i, (row, batches) in enumerate(zip(rows, work, strict=True)):
                if j >= len(batches) or row["status"] == "error":
                    continue
                try:
                    row["_times"].append(timed_run(self.engines[i], batches[j], row["_events"]))
                except Exception as err:  # noqa: BLE001 - a model failing at a shape is that row's error
                    row.update(status="error", error=error_text(err))
                    free_cuda_cache(self.engines[i])
                self.tick(what)

    def _warm(self, i: int, row: dict, batch: dict, what: str) -> None:
        engine = self.engines[i]
        row["_events"] = uses_cuda_events(engine)
        try:
            row["memory"] = warm_up(engine, batch, self.s["warmup"])
        except Exception as err:  # noqa: BLE001
            row.update(status="error", error=error_text(err))
            free_cuda_cache(engine)
        self.tick(what, self.s["warmup"])

    def fixed_shape(self, batch_size: int, seq_len: int) -> None:
        what = f"batch {batch_size} x seq {seq_len}"
        rows, work = [], []
        for i, engine in enumerate(self.engines):
            row = self._row(i, {"batch_size": batch_size, "seq_len": seq_len}, runs=0, latency_ms=None, throughput_qps=None,
                            speedup=None, within_budget=None, memory=None, _shape=(batch_size, seq_len), _times=[])
            rows.append(row)
            self.result.fixed.append(row)
            work.append([])
            if engine.max_length and seq_len > engine.max_length:
                row.update(status="error", error=f"sequence length {seq_len} exceeds the model's maximum {engine.max_length}")
                self.tick(what, self.s["warmup"] + self.s["runs"])
                continue
            rng = np.random.default_rng([self.s["seed"], batch_size, seq_len, i])
            batch = random_batch(engine, batch_size, seq_len, rng)
            self._warm(i, row, batch, what)
            work[-1] = [batch] * self.s["runs"] if row["status"] == "ok" else []
            self.tick(what, self.s["runs"] - len(work[-1]))
        try:
            self._round_robin(rows, work, what)
        finally:
            for row in rows:
                self._stats(row, row["batch_size"])

    @staticmethod
    def _stats(row: dict, batch_size: int) -> None:
        times = row.get("_times", [])
        row["runs"] = len(times)
        row["latency_ms"] = latency_stats(times)
        if row["latency_ms"]:
            row["throughput_qps"] = round(batch_size / (row["latency_ms"]["mean"] / 1e3), 3)

    def data_pass(self, batch_size: int, features: list) -> None:
        what = f"real lengths, batch {batch_size}"
        rows, work, rng = [], [], np.random.default_rng([self.s["seed"], batch_size])
        for i, feats in enumerate(features):
            row = self._row(i, {"batch_size": batch_size}, questions=0, windows=0, batches=0, question_latency_ms=None,
                            questions_per_second=None, speedup=None, memory=None, _shape=batch_size, _times=[], _index=[])
            rows.append(row)
            self.result.data["rows"].append(row)
            if feats is None:
                row.update(status="error", error=self.result.data["lengths"][i]["error"])
                work.append([])
                continue
            row.update(questions=len(set(feats.example_index)), windows=len(feats))
            index = list(length_sorted_batches(feats, batch_size))
            order = rng.permutation(len(index))  # shuffled, so drift does not line up with length
            row["_index"] = [index[k] for k in order]
            batches = [feats.batch(idx) for idx in row["_index"]]
            batches = [{k: b[k] for k in self.engines[i].input_names if k in b} for b in batches]
            row["batches"] = len(batches)
            self._warm(i, row, max(batches, key=lambda b: b["input_ids"].size), what)
            work.append(batches if row["status"] == "ok" else [])
            self.tick(what, len(batches) - len(work[-1]))
        try:
            self._round_robin(rows, work, what)
        finally:
            for row, feats in zip(rows, features, strict=True):
                self._question_stats(row, feats)

    @staticmethod
    def _question_stats(row: dict, feats) -> None:
        """Per question: the sum over its windows of (batch latency / windows in that batch)."""
        times = row["_times"]
        if row["status"] == "error" or not times:
            return
        per_question: dict[int, float] = {}
        for t, idx in zip(times, row["_index"], strict=False):  # fewer times when interrupted
            for w in idx:
                q = feats.example_index[w]
                per_question[q] = per_question.get(q, 0.0) + t / len(idx)
        if len(times) < len(row["_index"]):  # interrupted: only questions whose windows all ran
            ran = {w for idx in row["_index"][: len(times)] for w in idx}
            per_question = {q: v for q, v in per_question.items()
                            if all(w in ran for w, e in enumerate(feats.example_index) if e == q)}
        row["question_latency_ms"] = latency_stats(list(per_question.values()))
        row["questions_per_second"] = round(len(per_question) / (sum(times) / 1e3), 3) if per_question else None
