"""Measurement primitives of the profiler: a synchronised clock, peak memory, latency statistics.

Kept apart from :mod:`kdtool.profiles.profiler` (which decides *what* runs *when*) so each can be
read on its own. Nothing here knows about shapes, models or reports.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np

PERCENTILES = (50, 90, 99)


def uses_cuda_events(engine) -> bool:
    return engine.kind == "pytorch" and str(engine.device).startswith("cuda")


def timed_run(engine, batch: dict, cuda_events: bool) -> float:
    """Milliseconds of one ``engine.run(batch)``, the device synchronised on both sides."""
    engine.synchronize()
    if cuda_events:
        import torch

        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        engine.run(batch)
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))
    t0 = time.perf_counter()
    engine.run(batch)
    engine.synchronize()
    return (time.perf_counter() - t0) * 1e3


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


class PeakMemory:
    """Peak process RSS (and CUDA allocations) over a block of runs.

    On Linux the kernel's high-water mark (VmHWM) is reset through ``/proc/self/clear_refs``, so the
    peak includes transient activations between samples; elsewhere RSS is sampled after each run.
    """

    def __init__(self, engine):
        self.cuda = uses_cuda_events(engine)
        self.baseline = rss()
        self.sampled = self.baseline
        self.hwm = self._reset_hwm()
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()

    @staticmethod
    def _reset_hwm() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def sample(self) -> None:
        self.sampled = max(self.sampled, rss())

    def result(self) -> dict:
        peak = self.sampled
        if self.hwm:
            match = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
            peak = max(peak, int(match.group(1)) * 1024) if match else peak
        cuda_peak = None
        if self.cuda:
            import torch

            cuda_peak = int(torch.cuda.max_memory_allocated())
        return {"rss_peak_bytes": peak, "rss_peak_delta_bytes": max(0, peak - self.baseline), "cuda_peak_bytes": cuda_peak}


def error_text(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:200] if lines else ''}".rstrip(": ")


def free_cuda_cache(engine) -> None:
    if uses_cuda_events(engine):
        import torch

        torch.cuda.empty_cache()


def warm_up(engine, batch: dict, n: int) -> dict:
    """Run ``batch`` ``n`` times untimed; return the peak memory seen while doing it."""
    memory = PeakMemory(engine)
    for _ in range(n):
        engine.run(batch)
        engine.synchronize()
        memory.sample()
    return memory.result()


def latency_stats(ms: list[float]) -> dict | None:
    """p50/p90/p99, mean, std, min, max in milliseconds (rounded to 0.1 microsecond)."""
    if not ms:
        return None
    a = np.asarray(ms, dtype=np.float64)
    out = {f"p{q}": float(np.percentile(a, q)) for q in PERCENTILES}
    out.update(mean=float(a.mean()), std=float(a.std(ddof=1)) if len(a) > 1 else 0.0, min=float(a.min()), max=float(a.max()))
    return {k: round(v, 4) for k, v in out.items()}
