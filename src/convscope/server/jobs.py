"""Long jobs of the web app (report, feature visualization, DeepDream): one background
worker thread runs them one at a time, reports progress, and stops them on cancel, or when
no client has asked about a job for ``abandon_after`` seconds (its page was closed)."""

from __future__ import annotations

__all__ = ["Job", "JobCancelled", "JobRunner", "JobWork", "QueueFull"]

import queue
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from .store import release_memory


class JobCancelled(BaseException):
    """Raised inside a job's progress callback (or a forward pass, see
    :func:`~convscope.server.guards.cancellation_point`) to stop it. A ``BaseException``, like
    ``KeyboardInterrupt``, so that no ``except Exception`` on the way (a report section that
    records its own failure, a method that rewords errors) turns a cancel into a failure."""


class QueueFull(RuntimeError):
    """More jobs are waiting than the worker accepts."""


@dataclass
class Job:
    """One long job: its state as the API reports it."""

    id: str
    kind: str
    status: str = "queued"  # queued | running | done | failed | cancelled
    progress: float = 0.0
    message: str = ""
    result: Any = None
    created: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)
    cancel: threading.Event = field(default_factory=threading.Event)

    def public(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "progress": round(self.progress, 4),
            "message": self.message,
        }


#: A job's work: ``work(report)`` where ``report(fraction, message)`` updates the progress
#: and raises :class:`JobCancelled` when the job should stop; ``report.check()`` only checks.
JobWork = Callable[[Callable[[float, str], None]], Any]


class JobRunner:
    """A queue of jobs and the one worker thread that runs them.

    Args:
        max_queued: jobs waiting (not yet running) beyond which :meth:`submit` refuses.
        keep: finished jobs remembered (oldest forgotten first).
        abandon_after: seconds without a :meth:`get` after which a job is cancelled.
        lock: held while a job runs (the app's model lock: one computation at a time).
    """

    def __init__(
        self, max_queued: int = 4, keep: int = 32, abandon_after: float = 60.0, lock: threading.Lock | None = None
    ):
        self.max_queued, self.keep, self.abandon_after = max_queued, keep, abandon_after
        self.lock = lock or threading.Lock()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._work: dict[str, JobWork] = {}
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, kind: str, work: JobWork) -> Job:
        with self._guard:
            waiting = sum(job.status == "queued" for job in self._jobs.values())
            if waiting >= self.max_queued:
                raise QueueFull(f"{waiting} jobs are already waiting; try again later")
            job = Job(id=uuid.uuid4().hex, kind=kind)
            self._jobs[job.id] = job
            self._work[job.id] = work
            self._forget_old()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="convscope-jobs", daemon=True)
                self._thread.start()
        self._queue.put(job.id)
        return job

    def get(self, job_id: str, touch: bool = True) -> Job | None:
        """The job (``touch``: a client asked about it, so it is not abandoned)."""
        job = self._jobs.get(job_id)
        if job is not None and touch:
            job.last_seen = time.monotonic()
        return job

    def cancel(self, job_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        if job is not None:
            job.cancel.set()
            if job.status == "queued":
                job.status, job.message = "cancelled", "cancelled before it started"
        return job

    def stop(self) -> None:
        """Cancel everything and end the worker thread (app shutdown)."""
        for job in list(self._jobs.values()):
            job.cancel.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def __len__(self) -> int:
        return len(self._jobs)

    def _forget_old(self) -> None:
        finished = [j.id for j in self._jobs.values() if j.status in ("done", "failed", "cancelled")]
        for job_id in finished[: max(0, len(self._jobs) - self.keep)]:
            del self._jobs[job_id]
            self._work.pop(job_id, None)

    def _run(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            job, work = self._jobs.get(job_id), self._work.pop(job_id, None)
            if job is None or work is None or job.status != "queued":
                continue

            def check(job=job) -> None:
                if job.cancel.is_set():
                    raise JobCancelled("cancelled")
                if time.monotonic() - job.last_seen > self.abandon_after:
                    raise JobCancelled(f"abandoned: nobody asked about it for {self.abandon_after:g} s")

            def report(fraction: float, message: str = "", job=job) -> None:
                check()
                job.progress, job.message = min(max(fraction, 0.0), 1.0), message

            report.check = check
            with self.lock:
                job.status = "running"
                try:
                    report(0.0, "started")
                    result = work(report)
                    check()  # a cancel during the last step ends "cancelled", not "done"
                    job.result = result
                    job.status, job.progress, job.message = "done", 1.0, "done"
                except JobCancelled as stop:
                    job.status, job.message = "cancelled", str(stop)
                except Exception as error:  # the job fails, the server stays up
                    job.status, job.message = (
                        "failed",
                        f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
                    )
                finally:
                    release_memory()
