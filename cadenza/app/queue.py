"""A bounded job queue: at most N generations run at once, at most Q wait, the rest are told "busy".

Why bounded: a generation holds a CPU core (or more) for seconds to minutes, so an unbounded
queue only turns a burst of requests into minutes of silent waiting and growing memory. Past
``max_running + max_waiting`` jobs, ``reserve`` refuses at once with ``Busy`` (HTTP 503 with
``Retry-After``), which a client can show and retry. A slot is reserved *before* uploads are
stored, and released if the request turns out to be bad, so the count is always exact.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from cadenza.app.validation import RequestError
from cadenza.errors import CadenzaError

log = logging.getLogger("cadenza.app")

KEEP_FINISHED = 512  # finished jobs remembered for polling (their results live on in the history)


class Busy(RequestError):
    """Every slot (running and waiting) is taken."""

    def __init__(self, running: int, waiting: int, retry_after: int = 5) -> None:
        super().__init__(
            f"the studio is busy: {running} generation(s) running and {waiting} waiting, the most it takes at once",
            f"try again in a few seconds (retry after {retry_after} s)",
            status=503,
        )
        self.retry_after = retry_after


@dataclass
class Job:
    """One queued generation and what became of it."""

    id: str
    status: str = "queued"  # queued → running → done | failed
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    result: Any = None
    error: dict | None = None

    def to_dict(self) -> dict:
        return {
            "id": self.id, "status": self.status, "created": self.created, "started": self.started,
            "finished": self.finished, "error": self.error,
        }


class Slot:
    """A reserved place in the queue; ``start`` runs work in it, ``release`` gives it back unused."""

    def __init__(self, queue: "JobQueue") -> None:
        self._queue = queue
        self._used = False

    def start(self, job_id: str, fn: Callable[[Job], Any]) -> Job:
        if self._used:
            raise RuntimeError("slot already used")
        self._used = True
        return self._queue._start(job_id, fn)

    def release(self) -> None:
        if not self._used:
            self._used = True
            self._queue._release()


class JobQueue:
    """``max_running`` worker threads fed by a queue of at most ``max_waiting`` jobs."""

    def __init__(self, max_running: int = 1, max_waiting: int = 8) -> None:
        self.max_running = int(max_running)
        self.max_waiting = int(max_waiting)
        self._pool = ThreadPoolExecutor(max_workers=self.max_running, thread_name_prefix="cadenza-gen")
        self._lock = threading.Lock()
        self._pending = 0  # reserved + queued + running
        self._running = 0
        self._jobs: OrderedDict[str, Job] = OrderedDict()

    @property
    def capacity(self) -> int:
        return self.max_running + self.max_waiting

    def stats(self) -> dict:
        with self._lock:
            return {
                "running": self._running, "waiting": self._pending - self._running,
                "max_running": self.max_running, "max_waiting": self.max_waiting,
            }

    def reserve(self) -> Slot:
        """A place for one more job, or ``Busy`` right away."""
        with self._lock:
            if self._pending >= self.capacity:
                raise Busy(self._running, self._pending - self._running)
            self._pending += 1
        return Slot(self)

    def _release(self) -> None:
        with self._lock:
            self._pending -= 1

    def _start(self, job_id: str, fn: Callable[[Job], Any]) -> Job:
        job = Job(job_id)
        with self._lock:
            self._jobs[job_id] = job
            self._forget_old()
        self._pool.submit(self._run, job, fn)
        return job

    def _run(self, job: Job, fn: Callable[[Job], Any]) -> None:
        with self._lock:
            self._running += 1
            job.status, job.started = "running", time.time()
        try:
            job.result = fn(job)
            job.status = "done"
        except CadenzaError as err:  # the user's input: reported, not logged as a server fault
            job.error = {"error": err.message, "hint": err.hint}
            job.status = "failed"
        except Exception as exc:  # a bug: keep serving, but say so in the log
            log.error("generation %s crashed:\n%s", job.id, traceback.format_exc())
            job.error = {"error": f"internal error ({type(exc).__name__})", "hint": "see the server log; the studio keeps running"}
            job.status = "failed"
        finally:
            job.finished = time.time()
            with self._lock:
                self._running -= 1
                self._pending -= 1

    def _forget_old(self) -> None:
        finished = [jid for jid, j in self._jobs.items() if j.status in ("done", "failed")]
        for jid in finished[: max(0, len(self._jobs) - KEEP_FINISHED)]:
            del self._jobs[jid]

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def position(self, job_id: str) -> int:
        """How many queued jobs are ahead of this one (0 when running or finished)."""
        with self._lock:
            queued = [jid for jid, j in self._jobs.items() if j.status == "queued"]
        return queued.index(job_id) if job_id in queued else 0

    def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        """Block until the job finishes (for tests and scripts)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job is None or job.status in ("done", "failed"):
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout:g} s")
            time.sleep(0.02)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)
