"""Per-request temporary folders, the disk budget they share, and stale folders' cleanup.

Every request that uploads a file gets its own folder under the service's temporary root,
named after the process that made it::

    genrekit-serve-<pid>.<start>-<random>

``<start>`` is the process's start time in clock ticks since boot (Linux ``/proc``; 0
elsewhere), so a folder is known to be stale when no process with that pid *and* that
start time is alive, even after the pid has been reused. A folder is removed when its
request ends, whatever happened; one left by a killed server (``SIGKILL``, power loss) is
removed by the next :func:`clean_stale` (``create_app`` calls it at start). Only folders
matching that name, owned by this user, whose owner process is gone are touched.

The bytes of all uploads on disk at once are bounded by a :class:`TempBudget`.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import ServiceError

PREFIX = "genrekit-serve-"
NAME = re.compile(r"^genrekit-serve-(?P<pid>\d+)\.(?P<start>\d+)-[A-Za-z0-9_]+$")
PROC = Path("/proc")
log = logging.getLogger("genrekit.service")


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot, or None if unknown or gone.

    Read from ``/proc/<pid>/stat`` (field 22), so Linux only; None elsewhere.
    """
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except (OSError, ValueError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the command name (field 2) may hold spaces
    return int(fields[19])  # field 22; fields[0] is field 3


def owner_tag(pid: int | None = None) -> str:
    """``<pid>.<start>`` for a folder name (this process by default)."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}.{process_start(pid) or 0}"


def owner_alive(pid: int, start: int) -> bool:
    """Whether the process that named a folder ``<pid>.<start>`` still runs.

    When in doubt (no ``/proc``, a process of another user), the answer is True: a folder
    is only removed when its owner is known to be gone.
    """
    if pid == os.getpid():
        return True
    current = process_start(pid)
    if current is not None:
        return start == 0 or current == start
    if (PROC / "self" / "stat").exists():  # /proc works and has no such process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, as another user
        return True
    return True


def clean_stale(root: Path) -> list[Path]:
    """Remove the request folders under ``root`` whose owner process is gone.

    Only directories (not links) named like :data:`NAME` and owned by this user are
    considered; anything else under ``root`` is left alone.

    Returns
    -------
    list of Path
        The folders removed.
    """
    removed = []
    try:
        entries = list(os.scandir(root))
    except OSError as e:
        log.warning("cannot list %s to clean stale upload folders: %s", root, e)
        return removed
    for entry in entries:
        match = NAME.match(entry.name)
        if match is None or not entry.is_dir(follow_symlinks=False):
            continue
        if hasattr(os, "getuid") and entry.stat(follow_symlinks=False).st_uid != os.getuid():
            continue
        if owner_alive(int(match["pid"]), int(match["start"])):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    if removed:
        log.info("removed %d stale upload folder(s) of stopped servers under %s", len(removed), root)
    return removed


@contextmanager
def request_dir(root: Path) -> Iterator[Path]:
    """A fresh folder for one request under ``root``, removed with its contents on exit."""
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{owner_tag()}-", dir=root))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def storage_full(limit_bytes: int, used: int, wanted: int) -> ServiceError:
    detail = (f"the server's space for uploads in progress is full ({used / 2**20:.1f} of "
              f"{limit_bytes / 2**20:g} MB in use, this upload needs {wanted / 2**20:.1f} MB more); retry later")
    return ServiceError(503, "storage_full", detail, headers={"Retry-After": "10", "Connection": "close"})


class TempBudget:
    """The bytes all requests together may keep on disk; used from the event loop only.

    Parameters
    ----------
    limit_bytes : int

    Examples
    --------
    >>> budget = TempBudget(100)
    >>> share = budget.share()
    >>> share.grow_to(60); budget.used
    60
    >>> budget.share().grow_to(50)
    Traceback (most recent call last):
    ...
    genrekit.service.errors.ServiceError: 503 storage_full: ...
    >>> share.release(); budget.used
    0
    """

    def __init__(self, limit_bytes: int):
        self.limit = int(limit_bytes)
        self.used = 0

    def share(self) -> BudgetShare:
        return BudgetShare(self)


class BudgetShare:
    """One request's part of a :class:`TempBudget`: it grows with the upload, is freed at the end."""

    def __init__(self, budget: TempBudget):
        self.budget = budget
        self.held = 0

    def grow_to(self, total_bytes: int) -> None:
        """Hold ``total_bytes`` in all; raises 503 ``storage_full`` (holding nothing more) if they do not fit."""
        extra = int(total_bytes) - self.held
        if extra <= 0:
            return
        if self.budget.used + extra > self.budget.limit:
            raise storage_full(self.budget.limit, self.budget.used, extra)
        self.budget.used += extra
        self.held += extra

    def release(self) -> None:
        self.budget.used -= self.held
        self.held = 0
