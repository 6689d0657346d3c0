"""Where a distributed ``prepare`` writes its cache: a folder or any fsspec URL.

A cache target is one of

* :class:`LocalTarget` for a plain path (``caches/fma`` or ``/mnt/nfs/caches/fma``). The
  workers write with :mod:`genrekit.cache`'s own functions, so the files are byte for
  byte those of the single-machine ``prepare``. On a cluster the folder must be shared
  storage mounted at the same path on every node (NFS, EFS, Lustre...).
* :class:`FsspecTarget` for a URL (``s3://bucket/cache``, ``gs://...``, ``file:///...``,
  ``memory://...``). The workers write through fsspec, in the same format.

Atomicity. A shard counts once its ``.json`` exists, and the ``.json`` is written after
the ``.npy``, so a reader never sees a shard whose array is missing. Each file is written
whole or not at all:

* on object stores (S3, GCS, Azure, ``memory://``) with a single put: an object becomes
  visible only when its upload has completed, and a "rename" there would be a copy;
* on file systems (``file://``, local folders, SFTP, HDFS...) by writing a temporary
  ``.NAME.UUID.tmp`` beside the file and renaming it.

A temporary file left by a killed worker ends in ``.tmp``, so it is never read as a
shard; :func:`fetch_cache` does not copy it.

:func:`fetch_cache` copies a cache from any URL to a local folder, skipping the shards
already there, so :class:`~genrekit.cache.FeatureCache` can memory-map it.
"""
from __future__ import annotations

import csv
import importlib
import io
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..config import FeatureConfig
from ..errors import CacheError, GenrekitError
from ..io import atomic_path

OBJECT_STORE_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl", "oss", "memory"})
"""Protocols where a single put is atomic (and a rename is not)."""

PROCESS_LOCAL_PROTOCOLS = frozenset({"memory"})
"""Protocols whose files live in one process only: other processes (Ray workers) cannot share them."""

INSTALL_HINT = "pip install genrekit[ray]"


class MissingDependencyError(GenrekitError, ImportError):
    """An optional package (Ray, fsspec) is needed and not installed."""


def require(module: str, feature: str):
    """Import an optional module or raise :class:`MissingDependencyError` saying how to install it.

    Parameters
    ----------
    module : str
        Module name, e.g. ``"ray"``.
    feature : str
        What needs it, for the message.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(f"{feature} needs the optional package {module!r}, which is not installed "
                                     f"({e}): {INSTALL_HINT}") from e


def is_url(target) -> bool:
    """True for ``PROTOCOL://...`` (fsspec), false for a plain path."""
    return isinstance(target, str) and "://" in target


def open_fs(url: str):
    """``(filesystem, root path)`` of an fsspec URL or path; :class:`CacheError` if it cannot be opened."""
    fsspec = require("fsspec", "a cache URL")
    try:
        fs, root = fsspec.core.url_to_fs(str(url))
    except ImportError as e:  # the protocol's package (s3fs, gcsfs, adlfs) is missing
        raise MissingDependencyError(f"cannot open {url}: {e}") from e
    except ValueError as e:  # unknown protocol
        raise CacheError(f"cannot open cache location {url}: {e}") from e
    return fs, root.rstrip("/") or "/"


def forget_listings(fs, *paths: str) -> None:
    """Drop fsspec's cached directory listings (s3fs, gcsfs keep them), so files written since are seen."""
    for path in paths:
        fs.invalidate_cache(path)


def protocols(fs) -> set[str]:
    """The names an fsspec filesystem answers to, e.g. ``{"s3", "s3a"}``."""
    return {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)


def join(*parts: str) -> str:
    return "/".join([parts[0].rstrip("/"), *(p.strip("/") for p in parts[1:])])


def put_bytes(fs, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (see the module notes).

    Storage errors (``OSError``) are raised as they are, so Ray can retry the task.
    """
    if protocols(fs) & OBJECT_STORE_PROTOCOLS:
        fs.pipe_file(path, data)
        return
    parent, _, name = path.rpartition("/")
    fs.makedirs(parent or "/", exist_ok=True)
    tmp = join(parent, f".{name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        fs.pipe_file(tmp, data)
        fs.mv(tmp, path)
    finally:
        if fs.exists(tmp):
            fs.rm_file(tmp)


def manifest_bytes(config: FeatureConfig, description: dict) -> bytes:
    """``manifest.json`` as :func:`genrekit.cache.open_cache_for_writing` writes it."""
    from ..cache import CACHE_FORMAT

    return _json_bytes({"format": CACHE_FORMAT, "genrekit_version": __version__,
                        "feature_config": config.to_dict(), "dataset": description})


def shard_bytes(records: list[dict], arrays: list[np.ndarray], failures: list[dict]):
    """``(npy bytes or None, json bytes)`` of a shard, as :func:`genrekit.cache.write_shard` writes it.

    Sets ``record["row"]`` like ``write_shard`` does.
    """
    row = 0
    for rec, arr in zip(records, arrays):
        rec["row"] = row
        row += len(arr)
    npy = None
    if arrays:
        buf = io.BytesIO()
        np.save(buf, np.concatenate(arrays))
        npy = buf.getvalue()
    return npy, _json_bytes({"tracks": records, "failures": failures})


def failures_csv_text(failures: list[dict]) -> str:
    """``failures.csv`` as :func:`genrekit.cache.write_failures_csv` writes it."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["track_id", "path", "reason"])
    writer.writeheader()
    writer.writerows({k: f[k] for k in ("track_id", "path", "reason")} for f in failures)
    return buf.getvalue()


def _json_bytes(data) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=False, default=str) + "\n").encode()


def check_manifest(manifest: dict, config: FeatureConfig, where: str) -> None:
    """Refuse a cache of another format or built with other feature settings (as ``FeatureCache`` does)."""
    from ..cache import CACHE_FORMAT

    if manifest.get("format") != CACHE_FORMAT:
        raise CacheError(f"{where}: cache format {manifest.get('format')}, expected {CACHE_FORMAT}")
    built = FeatureConfig.from_dict(manifest["feature_config"])
    if built != config:
        raise CacheError(f"{where} was built with other feature settings:\n  cache: {built}\n"
                         f"  asked: {config}\nbuild a new cache (genrekit prepare --out NEW)")


@dataclass
class CacheIndex:
    """What a cache holds: ids of cached tracks, unresolved failures, and the shard names."""

    done_ids: set[str] = field(default_factory=set)
    failures: list[dict] = field(default_factory=list)
    shards: set[str] = field(default_factory=set)


def index_from_shards(metas: dict[str, dict]) -> CacheIndex:
    """Build a :class:`CacheIndex` from ``{shard name: shard json}``, with ``FeatureCache``'s rules.

    Shards are read in name order; a failure counts only if the track is in no shard,
    and a track failing in several shards keeps its latest reason.
    """
    done, failures = set(), []
    for name in sorted(metas):
        done.update(str(rec["track_id"]) for rec in metas[name]["tracks"])
        failures += metas[name].get("failures", [])
    latest = {f["track_id"]: f for f in failures if str(f["track_id"]) not in done}
    return CacheIndex(done, list(latest.values()), set(metas))


class LocalTarget:
    """A cache folder, written with :mod:`genrekit.cache`'s own functions.

    On a cluster the folder must be mounted at the same path on every node.
    """

    process_local = False

    def __init__(self, path):
        self.url = str(path)

    def open(self, config: FeatureConfig, description: dict, overwrite: bool = False) -> None:
        from ..cache import open_cache_for_writing

        open_cache_for_writing(self.url, config, description, overwrite)

    def index(self, config: FeatureConfig) -> CacheIndex:
        from ..cache import FeatureCache

        cache = FeatureCache(self.url, config)
        shards = {p.stem for p in (Path(self.url) / "shards").glob("*.json")}
        return CacheIndex(set(cache.tracks["track_id"]), cache.failures, shards)

    def write_shard(self, name: str, records: list[dict], arrays: list[np.ndarray], failures: list[dict]) -> None:
        from ..cache import write_shard

        write_shard(self.url, records, arrays, failures, name=name)

    def write_failures(self, failures: list[dict]) -> None:
        from ..cache import write_failures_csv

        write_failures_csv(self.url, failures)

    def __repr__(self):
        return f"LocalTarget({self.url!r})"


class FsspecTarget:
    """A cache at an fsspec URL (``s3://``, ``gs://``, ``file://``, ``memory://``...), same format."""

    def __init__(self, url: str):
        self.url = url
        self.fs, self.root = open_fs(url)

    @property
    def process_local(self) -> bool:
        """True where other processes cannot see the files (``memory://``)."""
        return bool(protocols(self.fs) & PROCESS_LOCAL_PROTOCOLS)

    def path(self, *parts: str) -> str:
        return join(self.root, *parts)

    def open(self, config: FeatureConfig, description: dict, overwrite: bool = False) -> None:
        """Create the cache, or check that the existing one has the same settings."""
        forget_listings(self.fs, self.root)
        if overwrite and self.fs.exists(self.root):
            self.fs.rm(self.root, recursive=True)
        manifest = self.path("manifest.json")
        if self.fs.exists(manifest):
            check_manifest(json.loads(self.fs.cat_file(manifest)), config, self.url)
        else:
            put_bytes(self.fs, manifest, manifest_bytes(config, description))

    def index(self, config: FeatureConfig) -> CacheIndex:
        forget_listings(self.fs, self.root, self.path("shards"))  # workers wrote shards since the last listing
        paths = self.fs.glob(self.path("shards", "*.json"))
        contents = self.fs.cat(paths) if paths else {}
        metas = {Path(p).stem: json.loads(data) for p, data in contents.items()}
        return index_from_shards(metas)

    def write_shard(self, name: str, records: list[dict], arrays: list[np.ndarray], failures: list[dict]) -> None:
        npy, meta = shard_bytes(records, arrays, failures)
        if npy is not None:
            put_bytes(self.fs, self.path("shards", f"{name}.npy"), npy)
        put_bytes(self.fs, self.path("shards", f"{name}.json"), meta)

    def write_failures(self, failures: list[dict]) -> None:
        put_bytes(self.fs, self.path("failures.csv"), failures_csv_text(failures).encode())

    def __repr__(self):
        return f"FsspecTarget({self.url!r})"


def cache_target(out):
    """:class:`FsspecTarget` for a URL (``file://`` included), :class:`LocalTarget` for a plain path."""
    return FsspecTarget(out) if is_url(out) else LocalTarget(out)


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
    fs, root = open_fs(str(url))
    forget_listings(fs, root, join(root, "shards"))
    local = Path(local_dir)
    _fetch_manifest(fs, root, url, local)
    remote = _list_shard_files(fs, join(root, "shards"))
    stems = sorted({name[:-5] for name in remote if name.endswith(".json")})
    summary = FetchSummary()

    def copy_shard(stem):
        names = [n for n in (f"{stem}.npy", f"{stem}.json") if n in remote]  # the array first
        return [_copy_file(fs, join(root, "shards", n), local / "shards" / n, remote[n]) for n in names]

    with ThreadPoolExecutor(max(1, threads)) as pool:
        for copied in pool.map(copy_shard, stems):
            _count(summary, copied)
    if fs.exists(join(root, "failures.csv")):
        _count(summary, [_copy_small_file(fs, join(root, "failures.csv"), local / "failures.csv")])
    if prune:
        summary.pruned = _prune(local / "shards", set(stems))
    return summary


def _fetch_manifest(fs, root: str, url, local: Path) -> None:
    manifest = join(root, "manifest.json")
    if not fs.exists(manifest):
        raise CacheError(f"not a feature cache (no manifest.json): {url}")
    data = fs.cat_file(manifest)
    mine = local / "manifest.json"
    if mine.is_file() and json.loads(mine.read_bytes()) != json.loads(data):
        raise CacheError(f"{local} holds another cache than {url} (their manifest.json differ): "
                         "fetch into an empty folder")
    (local / "shards").mkdir(parents=True, exist_ok=True)
    with atomic_path(mine) as tmp:
        tmp.write_bytes(data)


def _list_shard_files(fs, shards: str) -> dict[str, int]:
    """``{file name: size}`` of the complete files in a shards folder (temporary files left out)."""
    try:
        entries = fs.ls(shards, detail=True)
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
    removed = 0
    for path in sorted(shards.glob("*")):
        if path.suffix in (".npy", ".json") and path.stem not in keep:
            path.unlink()
            removed += 1
    return removed


__all__ = ["fetch_cache", "FetchSummary", "cache_target", "LocalTarget", "FsspecTarget", "CacheIndex",
           "MissingDependencyError", "put_bytes", "open_fs", "is_url", "require", "index_from_shards"]
