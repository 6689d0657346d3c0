"""Feature caches: ``genrekit prepare`` writes them, training and evaluation read them.

Layout of a cache folder::

    manifest.json          format, FeatureConfig, data set description
    shards/<name>.npy      float16 segments, shape (n, n_mels, segment_frames), memory-mappable
    shards/<name>.json     the tracks in that shard (id, path, label, split, artist, rows)
                           and the tracks that failed, with their reasons
    failures.csv           all failures of the last run, for people

A shard counts once its ``.json`` exists; both files are written to a temporary name
and renamed, so a run killed at any moment leaves only complete shards behind and a
second run redoes just the tracks not yet in one. Failed tracks are tried again.
"""
from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from . import __version__
from .config import FeatureConfig
from .datasets.base import Dataset, Track
from .errors import AudioError, CacheError
from .io import atomic_path, read_json, write_json, write_text

CACHE_FORMAT = 1
SHARD_TRACKS = 64       # tracks per shard at most
SHARD_SECONDS = 30.0    # or a shard every 30 s, so an interruption loses little


@dataclass
class PrepareOptions:
    """How tracks are read for a cache.

    ``excerpt``: seconds of a centred excerpt per track (None = windows over the whole
    file); ``max_duration``: longer files fail (after ``excerpt``), ``min_duration``:
    shorter ones fail.
    """

    excerpt: float | None = None
    max_duration: float | None = 1200.0
    min_duration: float = 1.0


@dataclass
class PrepareSummary:
    done: int = 0
    skipped: int = 0
    failed: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    audio_seconds: float = 0.0
    interrupted: bool = False

    def report(self) -> str:
        lines = [f"tracks done: {self.done}, skipped (already cached): {self.skipped}, failed: {len(self.failed)}"
                 f" in {self.seconds:.1f} s ({self.audio_seconds / max(self.seconds, 1e-9):.0f} s of audio per s)"]
        lines += [f"  FAILED {f['path']}: {f['reason']}" for f in self.failed]
        if self.interrupted:
            lines.append("interrupted: run the same command again to resume")
        return "\n".join(lines)


def featurize_track(track: Track, config: FeatureConfig, options: PrepareOptions):
    """Decode one track and compute its segments: ``(record, float16 array)``.

    Raises :class:`~genrekit.errors.AudioError` for unusable audio.
    """
    from .audio import audio_info, check_waveform, stream_audio
    from .features import iter_segments

    offset, duration = 0.0, None
    if options.excerpt is not None:
        info = audio_info(track.path)
        if info.duration is not None and info.duration > options.excerpt:
            offset, duration = (info.duration - options.excerpt) / 2, options.excerpt
    elif options.max_duration is not None:
        info = audio_info(track.path)
        if info.duration is not None and info.duration > options.max_duration + 0.5:
            from .errors import TooLongError

            raise TooLongError(track.path, f"{info.duration:.0f} s > {options.max_duration:.0f} s; use an excerpt")
    # The waveform is checked as a whole, so it is read into memory (bounded by max_duration).
    blocks = list(stream_audio(track.path, config.sr, offset, duration))
    y = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    check_waveform(y, config.sr, track.path, min_duration=options.min_duration)
    segments = np.asarray(next(iter_segments([y], config, batch_segments=10**9))).astype(np.float16)
    record = track.to_dict() | {"duration": round(len(y) / config.sr, 3), "n_segments": len(segments)}
    return record, segments


def _work(args):
    track, config, options = args
    try:
        record, segments = featurize_track(track, config, options)
        return track, record, segments, None
    except AudioError as e:
        return track, None, None, f"{e.reason}" + (f" ({e.detail})" if e.detail else "")
    except Exception as e:  # a decoder bug must not stop the batch
        return track, None, None, f"unexpected error: {type(e).__name__}: {e}"


def _init_worker():
    import torch

    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C


class FeatureCache:
    """Read access to a feature cache.

    Examples
    --------
    >>> cache = FeatureCache("caches/gtzan")  # doctest: +SKIP
    >>> x, y = cache.segments(split="train")  # doctest: +SKIP
    """

    def __init__(self, root, config: FeatureConfig | None = None):
        self.root = Path(root)
        manifest_path = self.root / "manifest.json"
        if not manifest_path.is_file():
            raise CacheError(f"not a feature cache (no manifest.json): {self.root}")
        self.manifest = read_json(manifest_path)
        if self.manifest.get("format") != CACHE_FORMAT:
            raise CacheError(f"{self.root}: cache format {self.manifest.get('format')}, expected {CACHE_FORMAT}")
        self.config = FeatureConfig.from_dict(self.manifest["feature_config"])
        if config is not None and config != self.config:
            raise CacheError(f"{self.root} was built with other feature settings:\n  cache: {self.config}\n"
                             f"  asked: {config}\nbuild a new cache (genrekit prepare --out NEW)")
        self.dataset = self.manifest.get("dataset", {})
        self._arrays: dict[str, np.ndarray] = {}
        self.tracks, self.failures = self._read_shards()

    def _read_shards(self):
        import pandas as pd

        rows, failures = [], []
        for meta_path in sorted((self.root / "shards").glob("*.json")):
            meta = read_json(meta_path)
            shard = meta_path.stem
            for rec in meta["tracks"]:
                rows.append(rec | {"shard": shard})
            failures += meta.get("failures", [])
        columns = ["track_id", "path", "label", "split", "artist", "duration", "n_segments", "row", "shard"]
        tracks = pd.DataFrame(rows, columns=columns)
        # A track re-done after a failure can sit in two shards: keep the latest.
        tracks = tracks.drop_duplicates("track_id", keep="last").sort_values("track_id", kind="stable")
        tracks = tracks.astype({"track_id": str}).reset_index(drop=True)
        done = set(tracks["track_id"])
        failures = list({f["track_id"]: f for f in failures if f["track_id"] not in done}.values())
        return tracks, failures

    @property
    def labels(self) -> list[str]:
        return sorted(self.tracks["label"].unique())

    def array(self, shard: str) -> np.ndarray:
        if shard not in self._arrays:
            self._arrays[shard] = np.load(self.root / "shards" / f"{shard}.npy", mmap_mode="r")
        return self._arrays[shard]

    def select(self, split: str | list[str] | None = None):
        """The track rows of a split (or several, or all)."""
        if split is None:
            return self.tracks
        splits = [split] if isinstance(split, str) else list(split)
        return self.tracks[self.tracks["split"].isin(splits)]

    def track_segments(self, row) -> np.ndarray:
        """float16 segments of one track row, ``(n_segments, n_mels, frames)``."""
        return self.array(row.shard)[row.row: row.row + row.n_segments]

    def segments(self, split=None, labels: list[str] | None = None):
        """All segments of a split in memory: ``(x float16, label index, track index)``."""
        labels = labels or self.labels
        index = {label: i for i, label in enumerate(labels)}
        selected = self.select(split)
        xs, ys, ts = [], [], []
        for i, row in enumerate(selected.itertuples()):
            seg = self.track_segments(row)
            xs.append(seg)
            ys.append(np.full(len(seg), index.get(row.label, -1)))
            ts.append(np.full(len(seg), i))
        if not xs:
            return np.zeros((0, *self.config.segment_shape), np.float16), np.zeros(0, int), np.zeros(0, int)
        return np.concatenate(xs), np.concatenate(ys), np.concatenate(ts)

    def __len__(self):
        return len(self.tracks)

    def __repr__(self):
        return f"FeatureCache({str(self.root)!r}, tracks={len(self.tracks)}, failures={len(self.failures)})"


def open_cache_for_writing(out, config: FeatureConfig, dataset_description: dict, overwrite: bool = False) -> Path:
    """Create a cache folder or check that an existing one has the same settings."""
    out = Path(out)
    manifest = out / "manifest.json"
    if overwrite and out.exists():
        shutil.rmtree(out)
    if manifest.exists():
        FeatureCache(out, config)  # raises on other settings
    else:
        (out / "shards").mkdir(parents=True, exist_ok=True)
        write_json(manifest, {"format": CACHE_FORMAT, "genrekit_version": __version__,
                              "feature_config": config.to_dict(), "dataset": dataset_description})
    (out / "shards").mkdir(parents=True, exist_ok=True)
    return out


def write_shard(out, records: list[dict], arrays: list[np.ndarray], failures: list[dict], name: str | None = None) -> str:
    """Write one shard atomically: the array first, then the index that makes it count."""
    name = name or f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    shards = Path(out) / "shards"
    row = 0
    for rec, arr in zip(records, arrays):
        rec["row"] = row
        row += len(arr)
    if arrays:
        with atomic_path(shards / f"{name}.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.concatenate(arrays))
    write_json(shards / f"{name}.json", {"tracks": records, "failures": failures})
    return name


def write_failures_csv(out, failures: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["track_id", "path", "reason"])
    writer.writeheader()
    writer.writerows({k: f[k] for k in ("track_id", "path", "reason")} for f in failures)
    write_text(Path(out) / "failures.csv", buf.getvalue())


def prepare(dataset: Dataset, out, config: FeatureConfig | None = None, workers: int | None = None,
            options: PrepareOptions | None = None, overwrite: bool = False, progress: bool = True) -> PrepareSummary:
    """Decode a data set and write its features to a cache at ``out``.

    Resumable: tracks already in the cache are skipped. Interrupting (Ctrl-C) writes
    what is done before stopping.

    Examples
    --------
    >>> from genrekit.datasets import open_dataset
    >>> ds = open_dataset("gtzan:data/gtzan")  # doctest: +SKIP
    >>> print(prepare(ds, "caches/gtzan").report())  # doctest: +SKIP
    """
    from tqdm import tqdm

    config = config or FeatureConfig()
    options = options or PrepareOptions()
    workers = workers or os.cpu_count() or 1
    out = open_cache_for_writing(out, config, dataset.describe(), overwrite)
    done_ids = set(FeatureCache(out, config).tracks["track_id"])
    todo = [t for t in dataset.tracks if t.track_id not in done_ids]
    summary = PrepareSummary(skipped=len(dataset.tracks) - len(todo))
    start = time.perf_counter()
    records, arrays, failures = [], [], []
    last_flush = time.monotonic()

    def flush():
        nonlocal records, arrays, failures, last_flush
        if records or failures:
            write_shard(out, records, arrays, failures)
        records, arrays, failures, last_flush = [], [], [], time.monotonic()

    jobs = ((t, config, options) for t in todo)
    # Imported once here so that forked workers inherit them instead of importing them each.
    import torch  # noqa: F401

    from . import audio, features  # noqa: F401

    pool = ProcessPoolExecutor(workers, mp_context=get_context("fork"), initializer=_init_worker) if workers > 1 and len(todo) > 1 else None
    results = pool.map(_work, jobs, chunksize=1) if pool else map(_work, jobs)
    bar = tqdm(total=len(todo), desc="prepare", unit="track", disable=not progress)
    try:
        for track, record, segments, error in results:
            if error is None:
                records.append(record)
                arrays.append(segments)
                summary.done += 1
                summary.audio_seconds += record["duration"]
            else:
                failure = {"track_id": track.track_id, "path": track.path, "reason": error}
                failures.append(failure)
                summary.failed.append(failure)
            bar.update()
            if len(records) + len(failures) >= SHARD_TRACKS or time.monotonic() - last_flush > SHARD_SECONDS:
                flush()
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
        flush()
        if pool:
            pool.shutdown(wait=not summary.interrupted, cancel_futures=True)
    write_failures_csv(out, FeatureCache(out, config).failures)
    summary.seconds = time.perf_counter() - start
    return summary
