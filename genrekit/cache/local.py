"""``genrekit prepare``: decode a data set into a feature cache with all local cores.

Resumable: tracks already in a good shard are skipped, failed ones are tried again,
damaged shards are deleted and their tracks computed again. Interrupting (Ctrl-C or
SIGTERM) writes what is done before stopping. One ``prepare`` writes a cache at a time
(a lock file), and the decoding processes die with the parent, even on SIGKILL.
"""
from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from ..config import FeatureConfig
from ..datasets.base import Dataset
from ..errors import CacheError
from .featurize import PrepareOptions, failure_record, featurize_or_reason
from .format import CacheIndex, CacheStore, new_shard_name

SHARD_TRACKS = 64               # tracks per shard at most
SHARD_SECONDS = 30.0            # or a shard every 30 s, so an interruption loses little
SHARD_BYTES = 256 * 2**20       # or when the arrays reach this size (large features)
PR_SET_PDEATHSIG = 1


@dataclass
class PrepareSummary:
    done: int = 0
    skipped: int = 0
    repaired: int = 0
    failed: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    audio_seconds: float = 0.0
    interrupted: bool = False

    def report(self) -> str:
        lines = [f"tracks done: {self.done}, skipped (already cached): {self.skipped}, failed: {len(self.failed)}"
                 f" in {self.seconds:.1f} s ({self.audio_seconds / max(self.seconds, 1e-9):.0f} s of audio per s)"]
        if self.repaired:
            lines.append(f"repaired: {self.repaired} damaged shard(s) deleted and their tracks computed again")
        lines += [f"  FAILED {f['path']}: {f['reason']}" for f in self.failed]
        if self.interrupted:
            lines.append("interrupted: run the same command again to resume")
        return "\n".join(lines)


def open_for_writing(out, config: FeatureConfig, dataset: Dataset, overwrite: bool = False) -> CacheStore:
    """Create a cache at ``out``, or check that the one there has the same settings.

    Refuses an ``out`` that holds the data set's own audio, and a non-empty folder that
    is not a genrekit cache. ``overwrite`` deletes only what genrekit wrote there.
    """
    store = CacheStore(out)
    _refuse_input_inside(store, dataset)
    was_ours = False
    if overwrite and store.exists() and store.read_manifest() is not None:
        left = store.remove()
        was_ours = True
        for path in left:
            print(f"--overwrite: kept {path}: genrekit cannot prove it wrote it")
    manifest = store.read_manifest()
    if manifest is None:
        if not was_ours:
            _refuse_foreign_folder(store)
        try:
            store.write_manifest(config, dataset.describe())
        except OSError as e:
            raise CacheError(f"{out}: cannot write the cache there ({e.strerror or e})") from None
    else:
        store.check_config(manifest, config)
    return store


def _refuse_input_inside(store: CacheStore, dataset: Dataset) -> None:
    if not store.local:
        return
    root = Path(store.root).resolve()
    for track in dataset.tracks:
        path = Path(track.path).resolve()
        if path == root or root in path.parents:
            raise CacheError(f"--out {store.location} contains the data set's audio (e.g. {track.path}): "
                             "write the cache to a folder outside the data set")


def _refuse_foreign_folder(store: CacheStore) -> None:
    if store.local and store.exists():
        entries = store.fs.ls(store.root, detail=False)
        if entries:
            raise CacheError(f"{store.location} exists, is not empty and is not a genrekit cache (no manifest.json): "
                             "choose a new or empty folder")


@contextmanager
def writer_lock(store: CacheStore):
    """Hold ``.prepare.lock`` in a local cache folder for the duration (one writer at a time)."""
    if not store.local:
        yield
        return
    import fcntl

    path = Path(store.root) / ".prepare.lock"
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            raise CacheError(f"another genrekit prepare (pid {holder}) is writing {store.location}: wait for it "
                             "to finish, or use another --out") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def repair(store: CacheStore, summary: PrepareSummary) -> CacheIndex:
    """The cache's index, checked by checksum; damaged shards are deleted so their tracks are redone.

    Only shards genrekit can prove it wrote are deleted (:attr:`CacheIndex.proven`); a
    note names each other damaged shard and each file in ``shards/`` that is no shard.
    """
    index = store.index(verify="checksum")
    for name in index.foreign:
        print(f"kept {store.path('shards', name)}: not a shard genrekit wrote (genrekit ignores it)")
    for name, problem in sorted(index.damaged.items()):
        if name in index.proven:
            print(f"repairing {store.location}: shard {name} is damaged ({problem}); its tracks will be computed again")
            store.remove_shard(name)
            summary.repaired += 1
        else:
            print(f"kept {store.path('shards', name + '.json')}: damaged ({problem}) and nothing proves genrekit "
                  "wrote it; move or delete it yourself, the cache cannot be read while it is there")
    index.damaged.clear()
    return index


def _die_with_parent(parent: int) -> None:
    """Decoder processes must not outlive ``prepare``, even when it is killed with SIGKILL."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the check below still catches a parent already gone
        pass
    if os.getppid() != parent:
        os._exit(1)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)  # one core per process
    except ImportError:
        pass


@contextmanager
def _sigterm_as_interrupt():
    """Handle SIGTERM like Ctrl-C (write what is done, then stop), in the main thread."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _work(args):
    track, config, options = args
    return (track, *featurize_or_reason(track, config, options))


class _ShardWriter:
    """Collects results and writes a shard every SHARD_TRACKS tracks, SHARD_SECONDS or SHARD_BYTES."""

    def __init__(self, store: CacheStore):
        self.store = store
        self.records, self.arrays, self.failures = [], [], []
        self.bytes, self.last = 0, time.monotonic()

    def add(self, record, segments, failure) -> None:
        if failure is None:
            self.records.append(record)
            self.arrays.append(segments)
            self.bytes += segments.nbytes
        else:
            self.failures.append(failure)
        if (len(self.records) + len(self.failures) >= SHARD_TRACKS or self.bytes >= SHARD_BYTES
                or time.monotonic() - self.last > SHARD_SECONDS):
            self.flush()

    def flush(self) -> None:
        if self.records or self.failures:
            self.store.write_shard(new_shard_name(), self.records, self.arrays, self.failures)
        self.records, self.arrays, self.failures, self.bytes, self.last = [], [], [], 0, time.monotonic()


def prepare(dataset: Dataset, out, config: FeatureConfig | None = None, workers: int | None = None,
            options: PrepareOptions | None = None, overwrite: bool = False, progress: bool = True) -> PrepareSummary:
    """Decode a data set and write its features to a cache at ``out``.

    Parameters
    ----------
    dataset : Dataset
    out : path or fsspec URL
    config : FeatureConfig, optional
        Default: the log-mel preset.
    workers : int, optional
        Decoding processes (default: all cores).
    options : PrepareOptions, optional
    overwrite : bool
        Delete what genrekit wrote at ``out`` first (never anything else).
    progress : bool

    Examples
    --------
    >>> from genrekit.datasets import open_dataset
    >>> ds = open_dataset("gtzan:data/gtzan")  # doctest: +SKIP
    >>> print(prepare(ds, "caches/gtzan").report())  # doctest: +SKIP
    """
    config = config or FeatureConfig()
    options = options or PrepareOptions()
    workers = workers or os.cpu_count() or 1
    store = open_for_writing(out, config, dataset, overwrite)
    with writer_lock(store):
        return _prepare_locked(store, dataset, config, options, workers, progress)


def _prepare_locked(store, dataset, config, options, workers, progress) -> PrepareSummary:
    from tqdm import tqdm

    summary = PrepareSummary()
    done_ids = repair(store, summary).done_ids
    todo = [t for t in dataset.tracks if t.track_id not in done_ids]
    summary.skipped = len(dataset.tracks) - len(todo)
    start = time.perf_counter()
    writer = _ShardWriter(store)
    jobs = ((t, config, options) for t in todo)
    pool = None
    if workers > 1 and len(todo) > 1:
        pool = ProcessPoolExecutor(min(workers, len(todo)), mp_context=get_context("fork"),
                                   initializer=_die_with_parent, initargs=(os.getpid(),))
    bar = tqdm(total=len(todo), desc="prepare", unit="track", disable=not progress)
    with _sigterm_as_interrupt():
        try:
            results = pool.map(_work, jobs, chunksize=1) if pool else map(_work, jobs)
            for track, record, segments, reason in results:
                failure = None if reason is None else failure_record(track, reason)
                writer.add(record, segments, failure)
                if failure is None:
                    summary.done += 1
                    summary.audio_seconds += record["duration"]
                else:
                    summary.failed.append(failure)
                bar.update()
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            bar.close()
            writer.flush()
            if pool:
                pool.shutdown(wait=not summary.interrupted, cancel_futures=True)
    store.write_failures(store.index(verify="size").failures)
    summary.seconds = time.perf_counter() - start
    return summary
