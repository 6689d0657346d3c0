"""``genrekit prepare --engine ray``: decode → features → cache as Ray tasks.

Each Ray task takes a batch of tracks (``tracks_per_task``, 16 by default), featurizes
them one after the other with :func:`genrekit.cache.featurize_track` on one core (torch
with 1 thread), and writes ONE shard (``shards/NAME.npy`` then ``shards/NAME.json``)
straight to the output storage through :mod:`genrekit.distributed.storage`. The driver
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

import os
import time
import uuid
import warnings
from dataclasses import dataclass, field

from ..cache import PrepareOptions, PrepareSummary, featurize_track
from ..config import FeatureConfig
from ..datasets.base import Dataset, Track
from ..errors import AudioError, CacheError, ConfigError, GenrekitError
from .storage import cache_target, require

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
    MissingDependencyError
        Ray (or fsspec for a URL) is not installed: ``pip install genrekit[ray]``.
    CacheError
        ``out`` holds a cache with other settings, or shards written by workers are
        not visible to the driver (``out`` is not shared storage).

    Examples
    --------
    >>> from genrekit.datasets import open_dataset
    >>> ds = open_dataset("fma:/data/fma_large", metadata="/data/tracks.csv", subset="large")  # doctest: +SKIP
    >>> print(prepare_ray(ds, "s3://bucket/caches/fma_large", address="auto").report())  # doctest: +SKIP
    """
    ray = require("ray", "the Ray engine (prepare --engine ray)")
    if tracks_per_task < 1:
        raise ConfigError(f"tracks_per_task must be at least 1, not {tracks_per_task}")
    config = config or FeatureConfig()
    options = options or PrepareOptions()
    target = _open_target(out, config, dataset, overwrite)
    done_ids = target.index(config).done_ids
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


def _open_target(out, config: FeatureConfig, dataset: Dataset, overwrite: bool):
    target = cache_target(out)
    if target.process_local:
        raise CacheError(f"{out}: a memory:// file system lives inside one process, so Ray workers cannot write "
                         "to it; use a folder, a file:// URL or an object store (s3://...)")
    target.open(config, dataset.describe(), overwrite)
    return target


def _connect(ray, address: str | None, todo: list[Track]) -> bool:
    """Start a local Ray or connect to a cluster; False if Ray was already initialised."""
    if address is not None and any(not os.path.isabs(t.path) for t in todo):
        warnings.warn("some audio paths are relative; on a cluster the workers resolve them from their own "
                      "working folder: give the data set as an absolute path", stacklevel=3)
    if ray.is_initialized():
        return False
    kwargs = {"include_dashboard": False, "log_to_driver": False}
    try:
        if address is None:
            ray.init(num_cpus=os.cpu_count() or 1, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise ClusterError(f"cannot start or reach {where}: {e} (a cluster is started with `ray start --head`; "
                           "leave --address out for a local Ray)") from e
    return True


def _run_tasks(ray, target, todo: list[Track], config, options, tracks_per_task: int, progress: bool,
               summary: RayPrepareSummary) -> set[str]:
    """Submit one task per batch, collect results as they finish; the names of the shards written."""
    from tqdm import tqdm

    remote = ray.remote(_prepare_batch).options(num_cpus=1, max_retries=TASK_RETRIES, retry_exceptions=[OSError])
    # Shard names sort after those of earlier runs, as cache.py's do, so a redone track's latest shard wins.
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    batches = {}
    for number, i in enumerate(range(0, len(todo), tracks_per_task)):
        batch = todo[i: i + tracks_per_task]
        batches[remote.remote(target, f"{run_id}-{number:05d}", batch, config, options)] = batch
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
        lost = [{"track_id": t.track_id, "path": t.path, "reason": reason} for t in batch]
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


def _finish(target, config: FeatureConfig, dataset: Dataset, written: set[str], summary: RayPrepareSummary) -> None:
    """Write ``failures.csv``, check every shard reached the storage, sort failures as the data set."""
    index = target.index(config)
    target.write_failures(index.failures + summary.lost)
    order = {t.track_id: i for i, t in enumerate(dataset.tracks)}
    summary.failed.sort(key=lambda f: order.get(f["track_id"], len(order)))
    missing = sorted(written - index.shards)
    if missing:
        raise CacheError(f"{len(missing)} shard(s) that Ray workers wrote are not visible at {target.url} "
                         f"(e.g. {missing[:3]}): on a cluster the output must be shared storage, a folder mounted "
                         "at the same path on every node or a URL such as s3://bucket/cache")


def _prepare_batch(target, name: str, tracks: list[Track], config: FeatureConfig, options: PrepareOptions) -> dict:
    """The Ray task: featurize ``tracks`` on one core and write them as the shard ``name``."""
    import torch

    torch.set_num_threads(1)
    start, cpu_start = time.perf_counter(), time.process_time()
    records, arrays, failures = [], [], []
    for track in tracks:
        record, segments, reason = _featurize(track, config, options)
        if reason is None:
            records.append(record)
            arrays.append(segments)
        else:
            failures.append({"track_id": track.track_id, "path": track.path, "reason": reason})
    target.write_shard(name, records, arrays, failures)
    return {"shard": name, "done": [(r["track_id"], r["duration"]) for r in records], "failures": failures,
            "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu_start,
            "torch_threads": torch.get_num_threads()}


def _featurize(track: Track, config: FeatureConfig, options: PrepareOptions):
    """``(record, segments, None)`` or ``(None, None, reason)``, with the reasons ``prepare`` records."""
    try:
        record, segments = featurize_track(track, config, options)
        return record, segments, None
    except AudioError as e:
        return None, None, f"{e.reason}" + (f" ({e.detail})" if e.detail else "")
    except Exception as e:  # a decoder bug must not lose the batch
        return None, None, f"unexpected error: {type(e).__name__}: {e}"


__all__ = ["prepare_ray", "RayPrepareSummary", "ClusterError", "DEFAULT_TRACKS_PER_TASK"]
