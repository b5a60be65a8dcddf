"""Jobs: heavy work in a bounded pool of worker processes, recorded in the store.

Each server process has one ``JobEngine``: a ``ProcessPoolExecutor`` of
``settings.job_workers`` processes (spawned, each opening its own runtime,
at a lower CPU priority so residents' requests come first) and a bound of
``settings.job_queue`` jobs waiting or running; past it new work is refused
with ``ServiceBusy`` (503 and Retry-After), never queued without end.

Every job is a row in the store (``gs_jobs``): its inputs, status, progress
and result, so any worker of a multi-process server can answer for it, a
restart marks what it was running as failed instead of losing it, and a
result is reused for the same process, inputs and layer versions.

Why not huey or procrastinate: procrastinate needs PostgreSQL, and the
embedded store is the default; huey wants a separate consumer process and
its own storage beside the store. A standard-library process pool with its
records in the store works the same on both backends and under
``geo-service serve``. Workers on other machines would claim accepted jobs
from ``gs_jobs`` (``SELECT … FOR UPDATE SKIP LOCKED`` on PostGIS) and run
``run_job``; nothing here assumes the worker is local but the pool itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import multiprocessing
import os
import socket
import threading
import time
import uuid
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import orjson

from geo_service.errors import (
    GeoServiceError,
    InvalidFeature,
    InvalidParameter,
    JobFailed,
    JobInterrupted,
    NotFound,
    ServiceBusy,
)
from geo_service.runtime import Runtime
from geo_service.services.processes import Output, Process, process
from geo_service.settings import Settings
from geo_service.store.base import JobRecord, now

__all__ = ["JobEngine", "JobNotFound", "cache_key", "run_here", "run_job"]

log = logging.getLogger("geo_service.jobs")

#: How often a worker writes progress to the store, at most (seconds).
PROGRESS_EVERY_S = 0.5
HOST = socket.gethostname()


class JobNotFound(NotFound):
    title = "Job not found"

    def __init__(self, job_id: str):
        super().__init__(f"no job {job_id!r}")


class JobDismissed(Exception):
    """Raised inside a worker when its job was dismissed: stop the work."""


def _stat(pid: int) -> list[bytes]:
    """The fields of /proc/PID/stat after the command name (which may hold
    spaces): [0] is the state, [19] the start time; [] elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _started(pid: int) -> str:
    """When a process started (clock ticks since boot), so that a new process
    given an old one's pid is not taken for it; "" where /proc does not say."""
    fields = _stat(pid)
    return fields[19].decode() if len(fields) > 19 else ""


def owner_here() -> str:
    """Who runs a job: this machine, this process and when it started."""
    return f"{HOST}:{os.getpid()}:{_started(os.getpid())}"


def cache_key(rt: Runtime, proc: Process, inputs: dict[str, Any]) -> str:
    """Same process, same inputs, same data (every layer's version) and the
    same base of printed links and QR codes: same key. A PDF printed before
    ``public_url`` was set (or changed) is never handed out after it."""
    from geo_service.services.printing import base_url, qr_target

    versions = sorted(rt.store.layer_versions().items())
    links = [base_url(rt), qr_target(rt)]
    text = orjson.dumps([proc.id, inputs, versions, links], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(text).hexdigest()


def problem_of(error: BaseException) -> dict[str, Any]:
    """A failed job's error as data an adapter in another process can answer
    with: the error's class (the HTTP table maps it), its message and extras."""
    if not isinstance(error, GeoServiceError):
        return {
            "error": ["InternalError"],
            "title": "Job failed",
            "detail": "the job failed unexpectedly; the error has been logged",
        }
    body: dict[str, Any] = {
        # The class and its parents, most specific first: the HTTP table maps
        # a subclass (FeatureNotFound) by its parent (NotFound).
        "error": [cls.__name__ for cls in type(error).__mro__ if issubclass(cls, GeoServiceError)],
        "title": error.title,
        "detail": error.detail,
    }
    if isinstance(error, InvalidParameter):
        body["parameter"] = error.parameter
    if isinstance(error, InvalidFeature):
        body["errors"] = [{"field": p.field, "message": p.message} for p in error.problems]
    report = getattr(error, "report", None)
    if report is not None:
        body["report"] = report
    if isinstance(error, JobFailed):
        body = dict(error.problem)
    return body


# -- running one job (in a worker, or right here for the CLI) -------------------------


class _Reporter:
    """Progress of one job into the store, at most every ``PROGRESS_EVERY_S``;
    a dismissed job's next report stops the work."""

    def __init__(self, rt: Runtime, job_id: str, listener=None):
        self.rt, self.job_id, self.listener = rt, job_id, listener
        self._last = 0.0
        self._sent = -1

    def __call__(self, share: float) -> None:
        percent = max(0, min(99, int(share * 100)))
        if self.listener is not None:
            self.listener(percent)
        moment = time.monotonic()
        if percent == self._sent or moment - self._last < PROGRESS_EVERY_S:
            return
        self._last, self._sent = moment, percent
        if not self.rt.store.update_job(self.job_id, expect=("running",), progress=percent):
            raise JobDismissed(self.job_id)


def run_job(rt: Runtime, job_id: str, listener=None) -> str:
    """Run an accepted job to its end and record the outcome; returns the final status.

    Called in a worker process (or by the CLI in its own). The job must be
    ``accepted``: one dismissed before it started is left alone."""
    record = rt.store.job(job_id)
    if record is None:
        return "dismissed"
    proc = process(record.process)
    if not rt.store.update_job(
        job_id, expect=("accepted",), status="running", started=now(), owner=owner_here()
    ):
        return "dismissed"
    inputs = orjson.loads(record.inputs or "{}")
    try:
        output: Output = proc.run(rt, inputs, _Reporter(rt, job_id, listener))
    except JobDismissed:
        return "dismissed"
    except Exception as error:  # every failure is recorded in the job, never lost
        if not isinstance(error, GeoServiceError):
            log.exception("job %s (%s) failed", job_id, record.process)
        problem = problem_of(error)
        rt.store.update_job(
            job_id,
            expect=("running",),
            status="failed",
            finished=now(),
            message=problem["detail"][:500],
            result=orjson.dumps(problem),
            result_media="application/problem+json",
        )
        return "failed"
    changed = rt.store.update_job(
        job_id,
        expect=("running",),
        status="successful",
        progress=100,
        finished=now(),
        message="完成 done",
        result=output.content,
        result_media=output.media_type,
    )
    return "successful" if changed else "dismissed"


def new_record(
    rt: Runtime, proc: Process, inputs: dict[str, Any], key: str | None, actor: str | None
) -> JobRecord:
    moment = now()
    return JobRecord(
        id=uuid.uuid4().hex,
        process=proc.id,
        status="accepted",
        inputs=orjson.dumps(inputs, option=orjson.OPT_SORT_KEYS).decode(),
        cache_key=key,
        owner=owner_here(),
        actor=actor,
        created=moment,
        updated=moment,
        message="排队中 queued",
    )


def run_here(
    rt: Runtime, process_id: str, raw: dict[str, Any], *, actor: str | None, listener=None
) -> tuple[JobRecord, Output]:
    """Run a process in this process (the CLI), recorded as a job like any
    other, with its cache. Raises the job's error as ``JobFailed``."""
    proc = process(process_id)
    inputs = proc.check(rt, raw)
    key = cache_key(rt, proc, inputs) if proc.cacheable else None
    if key is not None:
        cached = rt.store.cached_job(proc.id, key)
        if cached is not None:
            return cached, _result(rt, cached)
    record = new_record(rt, proc, inputs, key, actor)
    rt.store.create_job(record)
    run_job(rt, record.id, listener)
    done = rt.store.job(record.id)
    assert done is not None
    return done, _result(rt, done)


def _result(rt: Runtime, record: JobRecord) -> Output:
    """A finished job's result, or its recorded error raised as ``JobFailed``."""
    stored = rt.store.job_result(record.id)
    if record.status == "failed":
        problem = orjson.loads(stored[0]) if stored else {"detail": record.message}
        raise JobFailed(problem)
    if record.status != "successful" or stored is None:
        raise JobFailed({"error": ["NotFound"], "detail": f"job {record.id} has no result"})
    return Output(bytes(stored[0]), stored[1])


# -- the worker processes --------------------------------------------------------------

_worker_runtime: Runtime | None = None


def _start_worker(settings: dict[str, Any]) -> None:
    """Each worker process opens its own runtime, once, and yields the CPU to
    the server's residents: heavy work waits, a map request does not."""
    global _worker_runtime
    with contextlib.suppress(OSError):  # not allowed here: run at the same priority
        os.nice(10)
    # A job runs one thing at a time: two connections (the job's and its
    # progress reports) are all it needs of the database's max_connections.
    _worker_runtime = Runtime.open(Settings(**{**settings, "store_pool_size": 2}), seed=False)


def _work(job_id: str) -> str:
    assert _worker_runtime is not None
    return run_job(_worker_runtime, job_id)


# -- the engine in a server process ------------------------------------------------------


class JobEngine:
    """Submits jobs to the pool, bounds the queue, answers for them."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        self.settings = rt.settings
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        #: this process's jobs not yet finished: id -> future
        self._pending: dict[str, Future] = {}
        #: identical work asked for while it runs joins the running job
        self._running_keys: dict[str, str] = {}

    # -- lifecycle

    def start(self) -> None:
        """Mark jobs whose process is gone (a restart, a kill) as failed."""
        for record in self.rt.store.unfinished_jobs():
            self._fail_if_orphaned(record)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            pending = list(self._pending)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        for job_id in pending:
            _interrupted(
                self.rt,
                job_id,
                "服务已停止，任务未完成 (the service stopped before the job finished)",
            )

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.settings.job_workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(self.settings.model_dump(mode="json"),),
            )
        return self._pool

    def _fail_if_orphaned(self, record: JobRecord) -> JobRecord:
        """A job owned by a process of this machine that no longer exists will
        never finish: say so in its record."""
        host, pid, started = [*(record.owner or "").split(":"), "", "", ""][:3]
        if host != HOST or not pid.isdigit() or _alive(int(pid), started):
            return record
        if record.id in self._pending:
            return record
        _interrupted(
            self.rt,
            record.id,
            "服务重启，任务未完成，请重新提交 (the service restarted before the job finished; "
            "ask again)",
        )
        return self.rt.store.job(record.id) or record

    # -- submitting

    def submit(
        self, proc: Process, inputs: dict[str, Any], *, actor: str | None = None
    ) -> JobRecord:
        """Queue a checked job (or return the one that already answers it)."""
        key = cache_key(self.rt, proc, inputs) if proc.cacheable else None
        if key is not None:
            cached = self.rt.store.cached_job(proc.id, key)
            if cached is not None:
                return cached
        with self._lock:
            if key is not None and key in self._running_keys:
                running = self.rt.store.job(self._running_keys[key])
                if running is not None and running.status in {"accepted", "running"}:
                    return running
            if len(self._pending) >= self.settings.job_queue:
                raise ServiceBusy(
                    f"服务繁忙：已有 {len(self._pending)} 个任务在排队或运行，请稍后再试 "
                    f"(the job queue is full: {len(self._pending)} jobs are waiting or running; "
                    "try again shortly)",
                    self.settings.job_retry_after,
                )
            record = new_record(self.rt, proc, inputs, key, actor)
            self.rt.store.create_job(record)
            try:
                future = self._executor().submit(_work, record.id)
            except BrokenProcessPool:
                self._pool = None
                future = self._executor().submit(_work, record.id)
            self._pending[record.id] = future
            if key is not None:
                self._running_keys[key] = record.id
        future.add_done_callback(lambda f, job=record.id, k=key: self._finished(job, k, f))
        return record

    def _finished(self, job_id: str, key: str | None, future: Future) -> None:
        with self._lock:
            self._pending.pop(job_id, None)
            if key is not None and self._running_keys.get(key) == job_id:
                del self._running_keys[key]
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            # The worker itself died (killed, out of memory): the job cannot finish.
            log.error("job %s: its worker process failed: %r", job_id, error)
            if isinstance(error, BrokenProcessPool):
                with self._lock:
                    self._pool = None
            _interrupted(
                self.rt,
                job_id,
                "任务进程意外退出，请重新提交 "
                "(the worker process running the job stopped; ask again)",
            )

    async def queue(
        self, process_id: str, raw: dict[str, Any], *, actor: str | None = None
    ) -> JobRecord:
        """Check and queue a job (or find the one that answers it) without
        blocking the event loop."""
        proc = process(process_id)
        inputs = await asyncio.to_thread(proc.check, self.rt, raw)
        return await asyncio.to_thread(self.submit, proc, inputs, actor=actor)

    async def run(
        self, process_id: str, raw: dict[str, Any], *, actor: str | None = None
    ) -> tuple[JobRecord, Output]:
        """``queue`` and wait: the job's record and result, or its error (``JobFailed``)."""
        record = await self.queue(process_id, raw, actor=actor)
        return await self.wait(record.id)

    async def wait(self, job_id: str) -> tuple[JobRecord, Output]:
        future = self._pending.get(job_id)
        if future is not None:
            with contextlib.suppress(Exception):  # recorded in the job by _finished
                await asyncio.wrap_future(future)
        while True:
            record = await asyncio.to_thread(self.job, job_id)
            if record.status not in {"accepted", "running"}:
                break
            # Run by another server process: follow its record.
            await asyncio.sleep(0.2)
        return record, await asyncio.to_thread(_result, self.rt, record)

    # -- answering

    def job(self, job_id: str) -> JobRecord:
        record = self.rt.store.job(job_id)
        if record is None:
            raise JobNotFound(job_id)
        if record.status in {"accepted", "running"}:
            record = self._fail_if_orphaned(record)
        return record

    def result(self, job_id: str) -> Output:
        return _result(self.rt, self.job(job_id))

    def dismiss(self, job_id: str) -> JobRecord:
        """Stop a job (a queued one never starts; a running one stops at its
        next progress report) or forget a finished one's result."""
        record = self.job(job_id)
        future = self._pending.get(job_id)
        if future is not None:
            future.cancel()
        self.rt.store.update_job(
            job_id, status="dismissed", message="已取消 dismissed", finished=now(), result=None
        )
        return self.job(record.id)

    @property
    def queued(self) -> int:
        return len(self._pending)


def _interrupted(rt: Runtime, job_id: str, message: str) -> None:
    """A job that will never finish through no fault of its inputs: failed,
    with an error that tells the client to ask again (503), not a crash."""
    problem = {
        "error": [JobInterrupted.__name__, GeoServiceError.__name__],
        "title": JobInterrupted.title,
        "detail": message,
    }
    rt.store.update_job(
        job_id,
        expect=("accepted", "running"),
        status="failed",
        finished=now(),
        message=message,
        result=orjson.dumps(problem),
        result_media="application/problem+json",
    )


def _alive(pid: int, started: str) -> bool:
    """The process that took the job still runs: it exists, is the same
    process (its start time), and is not a zombie waiting to be reaped (a
    killed worker stays one until its parent, or forever under an init that
    does not reap)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _stat(pid)
    if fields and fields[0] in {b"Z", b"X"}:
        return False
    return _started(pid) == started
