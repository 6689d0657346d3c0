"""``genrekit prepare --engine ray``: decode → features → cache as Ray tasks.

Each Ray task takes a batch of tracks (``tracks_per_task``, 16 by default), featurizes
them one after the other with :func:`genrekit.cache.featurize.featurize_track` on one
core, and writes ONE shard (``shards/NAME.npy`` then ``shards/NAME.json``) straight to
the output storage through the cache format's one writer,
:class:`genrekit.cache.format.CacheStore`. The driver
gets back only a few hundred bytes per task (track ids, durations, failures); the
arrays never pass through it or through Ray's object store. The result is the cache
the single-machine :func:`genrekit.cache.prepare` writes: same ``manifest.json``, same
shard format, same index, same ``failures.csv``, same resume rules (a track in a
complete shard is skipped, a failed track is tried again) and the same
:class:`~genrekit.cache.PrepareSummary`. Only the grouping of tracks into shards differs.

Why Ray tasks and not Ray Data
------------------------------
The unit of work is "a batch of tracks → one shard written atomically by the worker that
computed it", and what comes back is a small record. That is a plain task:

* Ray Data's strength is streaming blocks between operators through the object store
  with back-pressure. Here nothing has to flow on: the arrays go to storage where they
  were made. With Ray Data they would be written as a side effect of ``map_batches``
  (its own datasinks such as ``write_numpy`` use their own file layout, not ours), and
  the batch → shard mapping would depend on how Ray Data cuts and fuses blocks.
* Resume and failure accounting are ours either way (the driver reads the cache index
  and decides what is left to do), so Ray Data would add nothing there.
* Tasks give us exactly the retry we want: a shard name is fixed per batch when the
  task is submitted, so a retried task (lost worker: ``max_retries``; storage error:
  ``retry_exceptions=[OSError]``) rewrites the same shard instead of adding a duplicate.
* ``ray.remote``/``ray.wait`` is the smallest, most stable part of Ray's API; Ray Data
  also brings its streaming executor's start-up cost, progress bars and logging.
* All tasks are submitted at once, so an autoscaling cluster sees the whole backlog.

Ray Data would be the right tool for decoding feeding training directly, without a
cache; that is the distributed training part, not this one.

Ray is imported when :func:`prepare_ray` is called, never on import: ``import genrekit``
and the local ``prepare`` work without it.
"""
from __future__ import annotations

import json
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..config import FeatureConfig
from ..datasets.base import Dataset, Track
from ..errors import CacheError, ConfigError, GenrekitError
from ..extras import require
from ..io import atomic_path
from .featurize import PrepareOptions, failure_record, featurize_or_reason
from .format import CacheStore, new_shard_name
from .local import PrepareSummary, open_for_writing

DEFAULT_TRACKS_PER_TASK = 16
TASK_RETRIES = 3  # for a lost worker or node, and for storage errors (OSError)


class ClusterError(GenrekitError):
    """The Ray cluster could not be reached."""


@dataclass
class RayPrepareSummary(PrepareSummary):
    """:class:`~genrekit.cache.PrepareSummary` plus what Ray did.

    ``tasks``: tasks that wrote a shard; ``task_seconds``: their wall time summed (busy
    worker-seconds); ``task_cpu_seconds``: the CPU time the worker processes spent in
    them (core-seconds); ``startup_seconds``: starting or connecting to Ray (part of
    ``seconds``); ``lost``: tracks of tasks that failed as a whole, nothing written for
    them (they are also in ``failed``; a second run redoes them).
    """

    tasks: int = 0
    task_seconds: float = 0.0
    task_cpu_seconds: float = 0.0
    startup_seconds: float = 0.0
    lost: list[dict] = field(default_factory=list)

    def report(self) -> str:
        lines = [super().report(), f"ray: {self.tasks} tasks, {self.task_seconds:.1f} worker-s busy "
                 f"({self.task_cpu_seconds:.1f} CPU-s), {self.startup_seconds:.1f} s to start or reach Ray"]
        return "\n".join(lines)


def prepare_ray(dataset: Dataset, out, config: FeatureConfig | None = None, options: PrepareOptions | None = None,
                address: str | None = None, overwrite: bool = False, progress: bool = True,
                tracks_per_task: int = DEFAULT_TRACKS_PER_TASK) -> RayPrepareSummary:
    """Decode a data set on a Ray cluster and write its features to a cache at ``out``.

    Parameters
    ----------
    dataset : Dataset
        Its audio paths must be readable by every worker at the same path.
    out : str or path
        A cache folder (shared by all nodes on a cluster) or an fsspec URL such as
        ``s3://bucket/caches/fma_large``; ``memory://`` is refused (one process only).
    config, options : optional
        As for :func:`genrekit.cache.prepare`.
    address : str, optional
        Ray cluster address (``auto``, ``HOST:6379``, ``ray://HOST:10001``). None
        starts a local Ray on all cores. If Ray is already initialised, it is used.
    overwrite : bool
        Delete an existing cache at ``out`` first.
    progress : bool
        Show a progress bar.
    tracks_per_task : int
        Tracks per Ray task, hence per shard.

    Returns
    -------
    RayPrepareSummary

    Raises
    ------
    MissingExtraError
        Ray is not installed: ``pip install 'genrekit[ray]'``.
    CacheError
        ``out`` holds a cache with other settings, or shards written by workers are
        not visible to the driver (``out`` is not shared storage).

    Examples
    --------
    >>> from genrekit.datasets import open_dataset
    >>> ds = open_dataset("fma:/data/fma_large", metadata="/data/tracks.csv", subset="large")  # doctest: +SKIP
    >>> print(prepare_ray(ds, "s3://bucket/caches/fma_large", address="auto").report())  # doctest: +SKIP
    """
    ray = require("ray", "ray", "the Ray engine (prepare --engine ray)")
    if tracks_per_task < 1:
        raise ConfigError(f"tracks_per_task must be at least 1, not {tracks_per_task}")
    config = config or FeatureConfig()
    options = options or PrepareOptions()
    target = _open_target(out, config, dataset, overwrite)
    done_ids = target.index(verify="size").done_ids
    todo = [t for t in dataset.tracks if t.track_id not in done_ids]
    summary = RayPrepareSummary(skipped=len(dataset.tracks) - len(todo))
    start = time.perf_counter()
    written: set[str] = set()
    if todo:
        started = _connect(ray, address, todo)
        summary.startup_seconds = time.perf_counter() - start
        try:
            written = _run_tasks(ray, target, todo, config, options, tracks_per_task, progress, summary)
        finally:
            if started:
                ray.shutdown()
    _finish(target, config, dataset, written, summary)
    summary.seconds = time.perf_counter() - start
    return summary


def _open_target(out, config: FeatureConfig, dataset: Dataset, overwrite: bool) -> CacheStore:
    if CacheStore(out).process_local:
        raise CacheError(f"{out}: a memory:// file system lives inside one process, so Ray workers cannot write "
                         "to it; use a folder, a file:// URL or an object store (s3://...)")
    return open_for_writing(out, config, dataset, overwrite)


def _connect(ray, address: str | None, todo: list[Track]) -> bool:
    """Start a local Ray or connect to a cluster; False if Ray was already initialised."""
    if address is not None and any(not os.path.isabs(t.path) for t in todo):
        warnings.warn("some audio paths are relative; on a cluster the workers resolve them from their own "
                      "working folder: give the data set as an absolute path", stacklevel=3)
    if ray.is_initialized():
        return False
    if address is not None:
        _check_reachable(address)
    kwargs = {"include_dashboard": False, "log_to_driver": False}
    since = time.time()
    try:
        if address is None:
            ray.init(address="local", num_cpus=os.cpu_count() or 1, **kwargs)  # not a cluster `ray start` left running
        else:
            ray.init(address=address, **kwargs)
    except KeyboardInterrupt:
        ray.shutdown()
        _stop_ray_processes_since(since, Path(ray.__file__).parent)
        raise
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise ClusterError(f"cannot start or reach {where}: {e} (a cluster is started with `ray start --head`; "
                           "leave --address out for a local Ray)") from e
    return True


def _stop_ray_processes_since(since: float, ray_dir: Path, grace: float = 3.0) -> list[int]:
    """Stop the Ray processes started since ``since`` in this process group; returns their pids.

    Ctrl-C while ``ray.init`` starts a local Ray stops the raylet (it is in the terminal's
    process group) before Ray knows what it started, and ``ray.shutdown()`` then finds nothing:
    its dashboard and runtime-env agents, orphaned, run on for about a minute. They are found by
    name (``ray::…``, or a program under ``ray_dir``, the ray package), process group and start
    time, so a program in the same pipeline (``genrekit prepare … | tee log``) is never touched.
    """
    import psutil

    group, mine = os.getpgrp(), []
    for proc in psutil.process_iter(["cmdline", "create_time"]):
        try:
            command = " ".join(proc.info["cmdline"] or [])
            if (proc.pid != os.getpid() and proc.info["create_time"] >= since - 1 and os.getpgid(proc.pid) == group
                    and (command.startswith("ray::") or str(ray_dir) in command)):
                mine.append(proc)
        except (psutil.Error, OSError):
            continue
    for proc in mine:
        proc.terminate()
    _, alive = psutil.wait_procs(mine, timeout=grace)
    for proc in alive:
        proc.kill()
    return [proc.pid for proc in mine]


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse a ``HOST:PORT`` (or ``ray://HOST:PORT``) where nothing listens: ``ray.init`` would retry
    it forever, deaf to Ctrl-C for half a minute at a time. ``auto`` and other forms go to Ray as given."""
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {e.strerror or e} (is `ray start --head` "
                           "running there, and is the port open? leave --address out for a local Ray)") from None


def _run_tasks(ray, target, todo: list[Track], config, options, tracks_per_task: int, progress: bool,
               summary: RayPrepareSummary) -> set[str]:
    """Submit one task per batch, collect results as they finish; the names of the shards written."""
    from tqdm import tqdm

    remote = ray.remote(_prepare_batch).options(num_cpus=1, max_retries=TASK_RETRIES, retry_exceptions=[OSError])
    # One run id, a number per task: names sort after earlier runs' and a retried task rewrites its own shard.
    run_id = new_shard_name()
    batches = {}
    for number, i in enumerate(range(0, len(todo), tracks_per_task)):
        batch = todo[i: i + tracks_per_task]
        batches[remote.remote(target.location, f"{run_id}-{number:05d}", batch, config, options)] = batch
    written: set[str] = set()
    pending = list(batches)
    bar = tqdm(total=len(todo), desc="prepare (ray)", unit="track", disable=not progress)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            _collect(ray, ready[0], batches[ready[0]], summary, written)
            bar.update(len(batches[ready[0]]))
    except KeyboardInterrupt:
        summary.interrupted = True
        for ref in pending:
            ray.cancel(ref)
    finally:
        bar.close()
    return written


def _collect(ray, ref, batch: list[Track], summary: RayPrepareSummary, written: set[str]) -> None:
    """Add one task's result to ``summary``; a task failed as a whole makes its tracks ``lost``."""
    try:
        result = ray.get(ref)
    except ray.exceptions.RayError as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        reason = f"Ray task failed, nothing written ({type(e).__name__}: {first_line})"
        lost = [failure_record(t, reason) for t in batch]
        summary.lost += lost
        summary.failed += lost
        return
    written.add(result["shard"])
    summary.tasks += 1
    summary.task_seconds += result["seconds"]
    summary.task_cpu_seconds += result["cpu_seconds"]
    summary.done += len(result["done"])
    summary.audio_seconds += sum(duration for _, duration in result["done"])
    summary.failed += result["failures"]


def _finish(target: CacheStore, config: FeatureConfig, dataset: Dataset, written: set[str],
            summary: RayPrepareSummary) -> None:
    """Write ``failures.csv``, check every shard reached the storage, sort failures as the data set."""
    index = target.index(verify="size")
    target.write_failures(index.failures + summary.lost)
    order = {t.track_id: i for i, t in enumerate(dataset.tracks)}
    summary.failed.sort(key=lambda f: order.get(f["track_id"], len(order)))
    missing = sorted(written - set(index.shards))
    if missing:
        raise CacheError(f"{len(missing)} shard(s) that Ray workers wrote are not visible at {target.location} "
                         f"(e.g. {missing[:3]}): on a cluster the output must be shared storage, a folder mounted "
                         "at the same path on every node or a URL such as s3://bucket/cache")


def _prepare_batch(location: str, name: str, tracks: list[Track], config: FeatureConfig,
                   options: PrepareOptions) -> dict:
    """The Ray task: featurize ``tracks`` on one core and write them as the shard ``name``."""
    start, cpu_start = time.perf_counter(), time.process_time()
    records, arrays, failures = [], [], []
    for track in tracks:
        record, segments, reason = featurize_or_reason(track, config, options)
        if reason is None:
            records.append(record)
            arrays.append(segments)
        else:
            failures.append(failure_record(track, reason))
    CacheStore(location).write_shard(name, records, arrays, failures)
    return {"shard": name, "done": [(r["track_id"], r["duration"]) for r in records], "failures": failures,
            "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu_start}


# ---------------------------------------------------------------- copying a cache from a URL


@dataclass
class FetchSummary:
    """What :func:`fetch_cache` did with the shard files and ``failures.csv`` (``manifest.json`` is always written).

    ``copied``/``skipped``: files copied or already there; ``bytes``: bytes copied;
    ``pruned``: local shard files removed because the source no longer has them.
    """

    copied: int = 0
    skipped: int = 0
    bytes: int = 0
    pruned: int = 0

    def report(self) -> str:
        return (f"copied {self.copied} files ({self.bytes / 1e6:.1f} MB), skipped {self.skipped} already there"
                + (f", removed {self.pruned} local shard files not in the source" if self.pruned else ""))


def fetch_cache(url, local_dir, prune: bool = False, threads: int = 8) -> FetchSummary:
    """Copy a feature cache from ``url`` (any fsspec URL or path) to the folder ``local_dir``.

    Files already in ``local_dir`` with the size of the source are skipped, so a fetch
    resumes and a later fetch copies only new shards. Each shard's ``.npy`` is copied
    before its ``.json`` and every file lands atomically, so ``local_dir`` is a valid
    cache at every moment.

    Parameters
    ----------
    url : str or path
        The cache, e.g. ``s3://bucket/caches/fma_large``.
    local_dir : path
        A new folder or one holding an earlier fetch of the same cache.
    prune : bool
        Delete local shards that the source no longer has (e.g. after ``--overwrite``).
    threads : int
        Files copied at the same time.

    Raises
    ------
    CacheError
        ``url`` is not a cache, or ``local_dir`` holds another cache.

    Examples
    --------
    >>> print(fetch_cache("s3://bucket/caches/fma", "caches/fma").report())  # doctest: +SKIP
    >>> FeatureCache("caches/fma")  # doctest: +SKIP
    """
    source = CacheStore(url)
    fs = source.fs
    local = Path(local_dir)
    _fetch_manifest(source, local)
    remote = _list_shard_files(source)
    stems = sorted({name[:-5] for name in remote if name.endswith(".json")})
    summary = FetchSummary()

    def copy_shard(stem):
        names = [n for n in (f"{stem}.npy", f"{stem}.json") if n in remote]  # the array first
        return [_copy_file(fs, source.path("shards", n), local / "shards" / n, remote[n]) for n in names]

    with ThreadPoolExecutor(max(1, threads)) as pool:
        for copied in pool.map(copy_shard, stems):
            _count(summary, copied)
    if fs.exists(source.path("failures.csv")):
        _count(summary, [_copy_small_file(fs, source.path("failures.csv"), local / "failures.csv")])
    if prune:
        summary.pruned = _prune(local / "shards", set(stems))
    return summary


def _fetch_manifest(source: CacheStore, local: Path) -> None:
    if source.read_manifest() is None:
        raise CacheError(f"{source.location}: not a feature cache (no manifest.json)")
    data = source.fs.cat_file(source.path("manifest.json"))
    url = source.location
    mine = local / "manifest.json"
    if mine.is_file() and json.loads(mine.read_bytes()) != json.loads(data):
        raise CacheError(f"{local} holds another cache than {url} (their manifest.json differ): "
                         "fetch into an empty folder")
    (local / "shards").mkdir(parents=True, exist_ok=True)
    with atomic_path(mine) as tmp:
        tmp.write_bytes(data)


def _list_shard_files(source: CacheStore) -> dict[str, int]:
    """``{file name: size}`` of the complete files in a shards folder (temporary files left out)."""
    source.fs.invalidate_cache(source.path("shards"))
    try:
        entries = source.fs.ls(source.path("shards"), detail=True)
    except FileNotFoundError:
        return {}
    files = {e["name"].rstrip("/").rpartition("/")[2]: e.get("size") for e in entries if e.get("type") != "directory"}
    return {n: s for n, s in files.items() if not n.startswith(".") and n.endswith((".npy", ".json"))}


def _copy_file(fs, src: str, dst: Path, size: int) -> int:
    """Copy one file atomically; ``-1`` if ``dst`` already has ``size`` bytes, else the bytes copied."""
    if dst.is_file() and dst.stat().st_size == size:
        return -1
    with atomic_path(dst) as tmp:
        fs.get_file(src, str(tmp))
        return tmp.stat().st_size


def _copy_small_file(fs, src: str, dst: Path) -> int:
    """Copy a small file unless ``dst`` has the same bytes (same return values as :func:`_copy_file`)."""
    data = fs.cat_file(src)
    if dst.is_file() and dst.read_bytes() == data:
        return -1
    with atomic_path(dst) as tmp:
        tmp.write_bytes(data)
    return len(data)


def _count(summary: FetchSummary, results: list[int]) -> None:
    for n in results:
        if n < 0:
            summary.skipped += 1
        else:
            summary.copied += 1
            summary.bytes += n


def _prune(shards: Path, keep: set[str]) -> int:
    """Delete the local shards genrekit wrote that are not in ``keep``; anything else stays, with a note."""
    proven, removed = CacheStore(shards.parent).index(verify="size").proven, 0
    for path in sorted(shards.glob("*")):
        if path.suffix not in (".npy", ".json") or path.stem in keep or path.name.startswith("."):
            continue
        if path.stem in proven:
            path.unlink()
            removed += 1
        else:
            print(f"--prune: kept {path}: genrekit cannot prove it wrote it")
    return removed


__all__ = ["prepare_ray", "RayPrepareSummary", "ClusterError", "DEFAULT_TRACKS_PER_TASK", "fetch_cache", "FetchSummary"]
