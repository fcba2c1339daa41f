"""Dynamic micro-batching: the questions of concurrent requests share forward passes.

One worker thread per engine instance owns that instance's tokenizer and session (the event loop
never runs either; fast tokenizers must not be called from two threads at once, and each extra
thread hop costs a scheduling delay on a busy 2-core device); the workers take batches from one
queue, so with several instances batches run side by side (ONNX Runtime releases the GIL). A
request's questions are queued as one :class:`Job`. A worker takes the oldest job, waits up to
``max_wait`` for more questions to arrive, takes jobs while they fit in ``max_batch_size`` questions
(a job is never split: its windows are answered together, across windows, exactly as ``kdtool
answer`` does), tokenizes each job with the shared :func:`kdtool.predict.features_for`, runs all
their windows through :func:`kdtool.predict.run_features` (length-sorted passes of at most
``max_batch_size`` windows with dynamic padding, as the profiler and ``answer`` do) and
post-processes each job with :func:`kdtool.data.postprocess`.

Admission is bounded: :meth:`Batcher.admit` counts the questions between arrival and the start of
their forward pass, and refuses (:class:`QueueFull`) beyond ``max_queue`` rather than letting a
queue grow without end. A job whose caller gave up (a timeout) is skipped, not run.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from kdtool.data import Example, QAFeatures, postprocess
from kdtool.engines import QAEngine
from kdtool.predict import PredictConfig, features_for, run_features
from kdtool.questions import answer_row
from kdtool.serve.metrics import ServeMetrics


class QueueFull(Exception):
    """The server holds ``max_queue`` questions already: the caller should retry later (503)."""


class Stopped(Exception):
    """The server is shutting down and takes no new work (503)."""


@dataclass
class Job:
    examples: list[Example]
    user_ids: list[str]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    enqueued: float = field(default_factory=time.monotonic)
    abandoned: bool = False  # the caller timed out: skip it

    @property
    def size(self) -> int:
        return len(self.examples)


def merge_features(parts: list[QAFeatures]) -> QAFeatures:
    """One feature set holding the windows of ``parts`` in order (``example_index`` kept per part)."""
    first = parts[0]
    return QAFeatures(
        input_ids=[w for p in parts for w in p.input_ids],
        attention_mask=[w for p in parts for w in p.attention_mask],
        token_type_ids=None if first.token_type_ids is None else [w for p in parts for w in p.token_type_ids],
        offsets=[w for p in parts for w in p.offsets],
        example_index=[i for p in parts for i in p.example_index],
        pad_token_id=first.pad_token_id,
    )


class Batcher:
    def __init__(self, engines: QAEngine | list[QAEngine], predict: PredictConfig, metrics: ServeMetrics, *,
                 max_batch_size: int, max_wait_s: float, max_queue: int):
        self.engines = engines if isinstance(engines, list) else [engines]
        self.predict, self.metrics = predict, metrics
        self.max_batch_size, self.max_wait_s, self.max_queue = max_batch_size, max_wait_s, max_queue
        self._cond = threading.Condition()
        self._jobs: deque[Job] = deque()
        self._admitted = 0  # questions between admit() and the start of their forward pass
        self._stopping = False
        self._workers = [threading.Thread(target=self._run_forever, args=(engine, str(i)), name=f"kdtool-batcher-{i}",
                                          daemon=True) for i, engine in enumerate(self.engines)]

    def start(self) -> None:
        for worker in self._workers:
            worker.start()

    def admit(self, questions: int) -> None:
        """Reserve room for ``questions`` or raise :class:`QueueFull` / :class:`Stopped` at once."""
        with self._cond:
            if self._stopping:
                raise Stopped()
            if self._admitted + questions > self.max_queue:
                raise QueueFull()
            self._admitted += questions
            self.metrics.queue.set(self._admitted)

    def release(self, questions: int) -> None:
        with self._cond:
            self._admitted -= questions
            self.metrics.queue.set(self._admitted)

    async def answer(self, examples: list[Example], user_ids: list[str]) -> list[dict]:
        """Answers for ``examples`` once admitted (:meth:`admit`); the worker releases them when it takes the job."""
        loop = asyncio.get_running_loop()
        job = Job(examples, user_ids, loop.create_future(), loop)
        with self._cond:
            self._jobs.append(job)
            self._cond.notify()
        try:
            return await asyncio.shield(job.future)
        except asyncio.CancelledError:  # a timeout upstream: the worker skips it if it has not started
            job.abandoned = True
            raise

    def stop(self) -> None:
        """Finish every queued job, then stop the worker (called once the HTTP server has drained)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for worker in self._workers:
            if worker.is_alive():
                worker.join()

    def _take(self) -> list[Job]:
        """The next jobs to run together; empty once stopping with nothing left."""
        with self._cond:
            while not self._jobs and not self._stopping:
                self._cond.wait()
            if not self._jobs:
                return []
            deadline = self._jobs[0].enqueued + self.max_wait_s
            while sum(j.size for j in self._jobs) < self.max_batch_size and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            taken, questions = [], 0
            while self._jobs and (not taken or questions + self._jobs[0].size <= self.max_batch_size):
                job = self._jobs.popleft()
                taken.append(job)
                questions += job.size
            self._admitted -= questions
            self.metrics.queue.set(self._admitted)
            return taken

    def _run_forever(self, engine: QAEngine, instance: str) -> None:
        while jobs := self._take():
            jobs = [j for j in jobs if not j.abandoned]
            if not jobs:
                continue
            try:
                results = self._run(engine, jobs)
                self.metrics.instance_questions.labels(instance).inc(sum(j.size for j in jobs))
            except Exception as err:  # resolve every waiter; the app turns it into a 500 line
                for job in jobs:
                    job.loop.call_soon_threadsafe(_resolve, job.future, None, err)
                continue
            for job, rows in zip(jobs, results, strict=True):
                job.loop.call_soon_threadsafe(_resolve, job.future, rows, None)

    def _run(self, engine: QAEngine, jobs: list[Job]) -> list[list[dict]]:
        features = [features_for(engine, j.examples, self.predict) for j in jobs]
        for f in features:
            self.metrics.request_windows.observe(len(f))
        merged = merge_features(features)
        t0, done = time.perf_counter(), 0

        def observe(event) -> None:  # a count event per batch: windows done so far
            nonlocal t0, done
            self.metrics.batch_windows.observe(event.done - done)
            self.metrics.batch_seconds.observe(time.perf_counter() - t0)
            t0, done = time.perf_counter(), event.done

        starts, ends = run_features(engine, merged, self.max_batch_size, progress=observe)
        out, at = [], 0
        for job, feats in zip(jobs, features, strict=True):
            n = len(feats)
            preds = postprocess(job.examples, feats, starts[at:at + n], ends[at:at + n], self.predict.postprocess)
            out.append([answer_row(preds[ex.id], uid) for ex, uid in zip(job.examples, job.user_ids, strict=True)])
            at += n
        self.metrics.questions.inc(sum(len(j.examples) for j in jobs))
        return out


def _resolve(future: asyncio.Future, result, error) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
