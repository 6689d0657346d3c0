"""The service's limits, and the gate every upload passes: admission, queue, workers, shutdown.

A request to ``/v1/predict`` goes through three phases, each bounded:

1. **uploading**: its body streams to disk. At most ``max_uploads`` at once; each must
   arrive within ``upload_timeout_s`` in all, with no pause over ``upload_idle_s`` (408);
   their bytes on disk together stay within ``max_temp_mb`` (503 ``storage_full``).
2. **waiting** for one of the ``concurrency`` workers. Uploading and waiting requests
   together are the queue: at most ``max_queue`` (503 ``busy``), so the queue limit
   also bounds uploads in flight.
3. **running** in a worker thread.

A refusal is decided when the request arrives, before its body is read, and answered
with ``Retry-After`` and ``Connection: close``. When the server stops
(:meth:`Gate.close`, called on SIGTERM), uploading and waiting requests end at once with
503 ``shutting_down``; running ones finish.

Everything here runs on the event loop (no locks needed), except :meth:`Gate.close`.
"""
from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass

import anyio

from ..errors import ConfigError
from .errors import ServiceError
from .tempfiles import BudgetShare, TempBudget

RETRY_AFTER_S = 5


def default_concurrency() -> int:
    """Files processed at once by default: 2, or 1 on a single-core machine."""
    return max(1, min(2, os.cpu_count() or 1))


@dataclass
class ServiceLimits:
    """What one client, and all clients together, may use.

    Parameters
    ----------
    max_upload_mb : float
        Largest upload in MiB (413 ``upload_too_large``).
    max_duration_s : float
        Longest audio in seconds (413 ``audio_too_long``).
    concurrency : int, optional
        Files processed at once, each in a worker thread (default :func:`default_concurrency`).
    max_queue : int
        Requests uploading or waiting for a worker, together (503 ``busy``).
    max_uploads : int
        Requests receiving their body at once (503 ``too_many_uploads``).
    max_temp_mb : float
        MiB of uploads kept on disk at once, all requests together (503 ``storage_full``);
        at least ``max_upload_mb``.
    upload_timeout_s : float
        Longest time to receive a whole upload (408 ``upload_timeout``).
    upload_idle_s : float
        Longest pause while receiving an upload (408 ``upload_timeout``).

    Examples
    --------
    >>> ServiceLimits(max_upload_mb=20).max_upload_bytes
    20971520
    >>> ServiceLimits(max_upload_mb=100, max_temp_mb=50)
    Traceback (most recent call last):
    ...
    genrekit.errors.ConfigError: max_temp_mb (50) must be at least max_upload_mb (100): no upload would fit
    """

    max_upload_mb: float = 50.0
    max_duration_s: float = 600.0
    concurrency: int | None = None
    max_queue: int = 32
    max_uploads: int = 16
    max_temp_mb: float = 512.0
    upload_timeout_s: float = 120.0
    upload_idle_s: float = 20.0

    def __post_init__(self):
        if self.concurrency is None:
            self.concurrency = default_concurrency()
        for name, value in asdict(self).items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ConfigError(f"{name} must be a positive number, not {value!r}")
        for name in ("concurrency", "max_queue", "max_uploads"):
            if int(getattr(self, name)) != getattr(self, name):
                raise ConfigError(f"{name} must be a whole number, not {getattr(self, name)!r}")
        if self.max_temp_mb < self.max_upload_mb:
            raise ConfigError(f"max_temp_mb ({self.max_temp_mb:g}) must be at least max_upload_mb "
                              f"({self.max_upload_mb:g}): no upload would fit")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def max_temp_bytes(self) -> int:
        return int(self.max_temp_mb * 2**20)

    def to_dict(self) -> dict:
        return asdict(self)


def refusal(error: str, detail: str, retry_after: int = RETRY_AFTER_S) -> ServiceError:
    """A 503 decided before the body is read: the connection is closed, the body left unread."""
    return ServiceError(503, error, detail, headers={"Retry-After": str(retry_after), "Connection": "close"})


def shutting_down() -> ServiceError:
    return refusal("shutting_down", "the server is shutting down; retry in a few seconds")


class Gate:
    """Admission and the counts of uploading, waiting and running requests.

    Parameters
    ----------
    limits : ServiceLimits
    """

    def __init__(self, limits: ServiceLimits):
        self.limits = limits
        self.uploading = 0
        self.waiting = 0
        self.limiter = anyio.CapacityLimiter(limits.concurrency)
        self.budget = TempBudget(limits.max_temp_bytes)
        self.closing = False
        self._scopes: set[anyio.CancelScope] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def load(self) -> dict:
        """What ``/health`` reports."""
        return {"running": self.limiter.borrowed_tokens, "waiting": self.waiting, "uploading": self.uploading,
                "temp_mb": round(self.budget.used / 2**20, 3)}

    @asynccontextmanager
    async def enter(self, declared_bytes: int | None = None):
        """Admit a request or refuse it (503); yields its :class:`Ticket`, in the uploading phase.

        ``declared_bytes`` (its Content-Length) is reserved in the disk budget at once, so
        an upload that cannot fit is refused before its body is read.
        """
        self._loop = asyncio.get_running_loop()
        self._check_admission()
        ticket = Ticket(self)
        self.uploading += 1
        try:
            if declared_bytes:
                ticket.disk.grow_to(min(declared_bytes, self.limits.max_upload_bytes))
            yield ticket
        finally:
            ticket.leave()

    def _check_admission(self) -> None:
        lim = self.limits
        if self.closing:
            raise shutting_down()
        queued = self.uploading + self.waiting
        if queued >= lim.max_queue:
            raise refusal("busy", f"{queued} requests are already uploading or waiting for a worker "
                          f"(limit {lim.max_queue}); retry later")
        if self.uploading >= lim.max_uploads:
            raise refusal("too_many_uploads", f"{self.uploading} uploads are already in progress "
                          f"(limit {lim.max_uploads}); retry later")

    def close(self) -> None:
        """Stop admitting; end uploading and waiting requests with 503 ``shutting_down``.

        Safe to call from a signal handler or another thread.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            self.closing = True
            return
        loop.call_soon_threadsafe(self._close_now)

    def _close_now(self) -> None:
        self.closing = True
        for scope in list(self._scopes):
            scope.cancel()

    @contextmanager
    def cancellable(self):
        """A block that :meth:`close` interrupts with 503 ``shutting_down``."""
        if self.closing:
            raise shutting_down()
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                yield
            finally:
                self._scopes.discard(scope)
        if scope.cancelled_caught:
            raise shutting_down()


class Ticket:
    """One admitted request: its phase and its share of the disk budget."""

    def __init__(self, gate: Gate):
        self.gate = gate
        self.phase = "uploading"
        self.disk: BudgetShare = gate.budget.share()

    @asynccontextmanager
    async def worker(self):
        """Wait for a worker (phase ``waiting``), then hold it (phase ``running``) inside the block."""
        gate = self.gate
        self._move_to("waiting")
        with gate.cancellable():
            await gate.limiter.acquire()
        self._move_to("running")
        try:
            yield
        finally:
            gate.limiter.release()
            self._move_to("done")

    def _move_to(self, phase: str) -> None:
        gate = self.gate
        if self.phase == "uploading":
            gate.uploading -= 1
        elif self.phase == "waiting":
            gate.waiting -= 1
        if phase == "waiting":
            gate.waiting += 1
        self.phase = phase

    def leave(self) -> None:
        """Whatever happened: out of the counts, its disk share freed (its folder is removed by then)."""
        self._move_to("done")
        self.disk.release()
