"""The feature cache format, and the only code that writes or deletes its files.

Layout of a cache (a folder, or any fsspec URL such as ``s3://bucket/cache``)::

    manifest.json          format, writer, FeatureConfig, data set description
    shards/<name>.npy      float16 segments, shape (n, bins, frames), memory-mappable
    shards/<name>.json     the tracks in that shard (id, path, label, split, artist, rows,
                           content hashes), the tracks that failed with their reasons, and
                           the array's size and SHA-256
    failures.csv           all failures of the last run, for people
    .prepare.lock          held while a ``prepare`` writes (local folders)

A shard counts once its ``.json`` exists. Each file is written whole or not at all: on
file systems to a temporary ``.NAME.UUID.tmp`` beside it, then renamed; on object
stores (S3, GCS, Azure, ``memory://``) with a single put, since an object becomes
visible only when its upload completes and a "rename" there would be a copy. The
``.npy`` is written before its ``.json``, so a reader never sees a shard without its
array; a run killed at any moment leaves only complete shards (and perhaps a ``.tmp``).

Damage (a missing or truncated array, a truncated index) is found by comparing each
array with the size and checksum its ``.json`` recorded (:meth:`CacheStore.index`);
``prepare`` then deletes the damaged shard, if genrekit can prove it wrote it, and
computes its tracks again.

What genrekit deletes: only files it can prove it wrote. A cache is genrekit's when its
``manifest.json`` says so. A shard is genrekit's when its name has genrekit's pattern
(:data:`SHARD_NAME`) and its ``.json`` is genrekit's record: it starts with the marker
``{"writer": "genrekit", ...`` (still there when the rest is truncated), or, written by
an earlier genrekit (before the marker), it parses with exactly the keys of a shard index. ``--overwrite``
then deletes those shards, genrekit's temporary files of them, ``failures.csv``, the
lock and the manifest, and the folders only if they are left empty
(:meth:`CacheStore.remove`). Anything else stays, and is named in a note
(:attr:`CacheIndex.foreign`, and damaged shards outside :attr:`CacheIndex.proven`).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import time
import uuid
from dataclasses import dataclass, field

import numpy as np

from .. import __version__
from ..config import FeatureConfig, prepare_flags
from ..errors import CacheError

CACHE_FORMAT = 2
READABLE_FORMATS = (1, 2)  # format 1 (genrekit 0.1) has no recorded sizes or checksums
WRITER = "genrekit"
SHARD_NAME = re.compile(r"^\d{8}T\d{6}-[0-9a-f]{8}(-\d{5})?$")
SHARD_TEMP_NAME = re.compile(r"^\.(\d{8}T\d{6}-[0-9a-f]{8}(-\d{5})?)\.(npy|json)\.[0-9a-f]{8}\.tmp$")
SHARD_MARKER = b'{\n  "writer": "genrekit"'  # how every shard index genrekit writes begins
OLD_SHARD_KEYS = (frozenset({"tracks", "failures", "array"}), frozenset({"tracks", "failures"}))
OBJECT_STORE_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl", "oss", "memory"})
PROCESS_LOCAL_PROTOCOLS = frozenset({"memory"})
FAILURE_FIELDS = ("track_id", "path", "reason")
HASH_CHUNK = 1 << 22


def new_shard_name(suffix: int | None = None) -> str:
    """A shard name that sorts after those of earlier runs (a redone track's latest shard wins)."""
    name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    return name if suffix is None else f"{name}-{suffix:05d}"


def is_url(location) -> bool:
    """True for ``PROTOCOL://...`` (fsspec), false for a plain path."""
    return isinstance(location, str) and "://" in location


@dataclass
class ShardInfo:
    """One complete shard as its ``.json`` describes it."""

    name: str
    tracks: list[dict]
    failures: list[dict]
    array: dict | None  # {"bytes", "sha256", "shape", "dtype"}; None for a shard of failures only, or format 1


@dataclass
class CacheIndex:
    """What a cache holds: its good shards, the tracks in them, unresolved failures, damaged shards."""

    shards: dict[str, ShardInfo] = field(default_factory=dict)
    damaged: dict[str, str] = field(default_factory=dict)  # shard name -> reason
    proven: set[str] = field(default_factory=set)  # shard names genrekit can prove it wrote (good or damaged)
    foreign: list[str] = field(default_factory=list)  # .json files in shards/ that are no shard

    @property
    def tracks(self) -> list[dict]:
        """Track records with their shard, the latest shard winning for a track done twice."""
        latest = {}
        for name in sorted(self.shards):
            for rec in self.shards[name].tracks:
                latest[str(rec["track_id"])] = rec | {"shard": name}
        return list(latest.values())

    @property
    def done_ids(self) -> set[str]:
        return {str(rec["track_id"]) for info in self.shards.values() for rec in info.tracks}

    @property
    def failures(self) -> list[dict]:
        """Failures of tracks that are in no good shard, the latest reason per track."""
        done, latest = self.done_ids, {}
        for name in sorted(self.shards):
            for f in self.shards[name].failures:
                if str(f["track_id"]) not in done:
                    latest[str(f["track_id"])] = f
        return list(latest.values())


class CacheStore:
    """A cache location (folder or fsspec URL) and the operations on its files.

    Examples
    --------
    >>> store = CacheStore("caches/gtzan")  # doctest: +SKIP
    >>> store.index(verify="size").done_ids  # doctest: +SKIP
    """

    def __init__(self, location):
        import fsspec

        self.location = str(location)
        try:
            self.fs, root = fsspec.core.url_to_fs(self.location)
        except ImportError as e:  # the protocol's package (s3fs, gcsfs, adlfs) is missing
            raise CacheError(f"cannot open {self.location}: {e}") from None
        except ValueError as e:
            raise CacheError(f"cannot open cache location {self.location}: {e}") from None
        self.root = root.rstrip("/") or "/"
        names = {self.fs.protocol} if isinstance(self.fs.protocol, str) else set(self.fs.protocol)
        self.object_store = bool(names & OBJECT_STORE_PROTOCOLS)
        self.process_local = bool(names & PROCESS_LOCAL_PROTOCOLS)
        self.local = "file" in names or "local" in names

    def __repr__(self):
        return f"CacheStore({self.location!r})"

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *(p.strip("/") for p in parts)])

    # ------------------------------------------------------------ writing

    def put_bytes(self, relpath: str, data: bytes) -> None:
        """Write a small file whole or not at all (storage errors are raised as ``OSError``)."""
        self._write(relpath, lambda f: f.write(data))

    def _write(self, relpath: str, fill) -> None:
        path = self.path(relpath)
        if self.object_store:
            with self.fs.open(path, "wb") as f:
                fill(f)
            return
        parent, _, name = path.rpartition("/")
        self.fs.makedirs(parent or "/", exist_ok=True)
        tmp = f"{parent}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with self.fs.open(tmp, "wb") as f:
                fill(f)
            self.fs.mv(tmp, path)
        finally:
            if self.fs.exists(tmp):
                self.fs.rm_file(tmp)

    def write_manifest(self, config: FeatureConfig, description: dict) -> None:
        self.put_bytes("manifest.json", _json_bytes({
            "format": CACHE_FORMAT, "writer": WRITER, "genrekit_version": __version__,
            "feature_config": config.to_dict(), "dataset": description}))

    def write_shard(self, name: str, records: list[dict], arrays: list[np.ndarray], failures: list[dict]) -> None:
        """Write one shard: the array (streamed, with its size and SHA-256), then the index that makes it count.

        Sets ``record["row"]`` of each record. Writing the same name twice (a retried
        task) replaces the shard instead of adding a duplicate.
        """
        row = 0
        for rec, arr in zip(records, arrays):
            rec["row"] = row
            row += len(arr)
        array = self._write_array(f"shards/{name}.npy", arrays) if arrays else None
        self.put_bytes(f"shards/{name}.json", _json_bytes({"writer": WRITER, "tracks": records, "failures": failures,
                                                           "array": array}))

    def _write_array(self, relpath: str, arrays: list[np.ndarray]) -> dict:
        """Write ``np.concatenate(arrays)`` as ``.npy`` without building the concatenation."""
        first = arrays[0]
        shape = (sum(len(a) for a in arrays), *first.shape[1:])
        dtype = first.dtype
        header = io.BytesIO()
        np.lib.format.write_array_header_2_0(header, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                      "fortran_order": False, "shape": shape})
        digest, size = hashlib.sha256(), 0

        def fill(f):
            nonlocal size
            for part in (header.getvalue(), *(np.ascontiguousarray(a, dtype=dtype).tobytes() for a in arrays)):
                f.write(part)
                digest.update(part)
                size += len(part)

        self._write(relpath, fill)
        return {"bytes": size, "sha256": digest.hexdigest(), "shape": list(shape), "dtype": str(dtype)}

    def write_failures(self, failures: list[dict]) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(FAILURE_FIELDS))
        writer.writeheader()
        writer.writerows({k: f[k] for k in FAILURE_FIELDS} for f in failures)
        self.put_bytes("failures.csv", buf.getvalue().encode())

    def remove_shard(self, name: str) -> None:
        """Delete one shard of this cache (its index first, so it stops counting at once).

        Only for a name in :attr:`CacheIndex.proven`: the caller checks genrekit wrote it.
        """
        for suffix in (".json", ".npy"):
            path = self.path("shards", name + suffix)
            if self.fs.exists(path):
                self.fs.rm_file(path)

    # ------------------------------------------------------------ reading

    def exists(self) -> bool:
        return self.fs.exists(self.root)

    def read_manifest(self) -> dict | None:
        """The manifest, None if there is none; :class:`CacheError` if it is damaged or not genrekit's."""
        path = self.path("manifest.json")
        if not self.fs.exists(path):
            return None
        try:
            manifest = json.loads(self.fs.cat_file(path))
        except (ValueError, UnicodeDecodeError):
            raise CacheError(f"{self.location}: manifest.json is damaged (not readable JSON); this folder cannot "
                             "be proved to be a genrekit cache, so genrekit will not touch it: delete it yourself "
                             "and prepare again") from None
        if not isinstance(manifest, dict) or manifest.get("format") not in READABLE_FORMATS:
            found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
            raise CacheError(f"{self.location}: cache format {found!r}, expected one of {READABLE_FORMATS}")
        return manifest

    def check_config(self, manifest: dict, config: FeatureConfig | None) -> FeatureConfig:
        """The cache's FeatureConfig; :class:`CacheError` if ``config`` is given and differs."""
        built = FeatureConfig.from_dict(manifest["feature_config"])
        if config is not None and built != config:
            raise CacheError(_other_settings(self.location, built, config))
        return built

    def index(self, verify: str = "size") -> CacheIndex:
        """Read every shard's index and check its array.

        Parameters
        ----------
        verify : {"size", "checksum"}
            ``size``: the array file exists with the recorded size (a stat per shard);
            ``checksum``: also its SHA-256 (reads every array).
        """
        shards_dir = self.path("shards")
        self.fs.invalidate_cache(shards_dir)  # s3fs/gcsfs cache listings; workers wrote since
        try:
            names = self.fs.ls(shards_dir, detail=True)
        except FileNotFoundError:
            names = []
        sizes = {e["name"].rstrip("/").rpartition("/")[2]: e.get("size") for e in names if e.get("type") != "directory"}
        index = CacheIndex()
        for stem in sorted(n[:-5] for n in sizes if n.endswith(".json") and not n.startswith(".")):
            raw = self.fs.cat_file(self.path("shards", f"{stem}.json"))
            info, problem = self._read_shard(stem, raw, sizes, verify)
            if _proves_ours(stem, raw):
                index.proven.add(stem)
            elif info is None and not SHARD_NAME.match(stem):
                index.foreign.append(f"{stem}.json")  # not a shard at all: someone else's file
                continue
            if problem is None:
                index.shards[stem] = info
            else:
                index.damaged[stem] = problem
        return index

    def _read_shard(self, stem: str, raw: bytes, sizes: dict, verify: str):
        try:
            meta = json.loads(raw)
            info = ShardInfo(stem, list(meta["tracks"]), list(meta.get("failures", [])), meta.get("array"))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return None, "its index (.json) is truncated or not valid"
        if not info.tracks:
            return info, None
        npy = f"{stem}.npy"
        if npy not in sizes:
            return None, "its array (.npy) is missing"
        if info.array is None:  # format 1: no record to check against
            return info, None
        if sizes[npy] != info.array["bytes"]:
            return None, f"its array has {sizes[npy]} bytes, {info.array['bytes']} were written"
        if verify == "checksum" and self.sha256(f"shards/{npy}") != info.array["sha256"]:
            return None, "its array's checksum differs from the one recorded when it was written"
        return info, None

    def sha256(self, relpath: str) -> str:
        digest = hashlib.sha256()
        with self.fs.open(self.path(relpath), "rb") as f:
            for chunk in iter(lambda: f.read(HASH_CHUNK), b""):
                digest.update(chunk)
        return digest.hexdigest()

    # ------------------------------------------------------------ deleting

    def remove(self) -> list[str]:
        """Delete this cache's own files (see the module notes); returns what was left in place.

        Raises
        ------
        CacheError
            The location is not a genrekit cache (no readable manifest written by genrekit).
        """
        manifest = self.read_manifest()
        if manifest is None or manifest.get("writer", WRITER) != WRITER:
            raise CacheError(f"{self.location} is not a genrekit cache (no manifest.json written by genrekit): "
                             "refusing to delete anything there")
        proven = self.index(verify="size").proven
        shards_dir = self.path("shards")
        try:
            entries = [e.rstrip("/").rpartition("/")[2] for e in self.fs.ls(shards_dir, detail=False)]
        except FileNotFoundError:
            entries = []
        for entry in entries:
            stem, _, suffix = entry.rpartition(".")
            temp = SHARD_TEMP_NAME.match(entry)
            if (stem in proven and suffix in ("npy", "json")) or (temp and temp.group(1) in proven):
                self.fs.rm_file(f"{shards_dir}/{entry}")
        for name in ("failures.csv", ".prepare.lock", "manifest.json"):
            if self.fs.exists(self.path(name)):
                self.fs.rm_file(self.path(name))
        return self._remove_empty_folders()

    def _remove_empty_folders(self) -> list[str]:
        left = []
        for folder in (self.path("shards"), self.root):
            if not self.fs.exists(folder):
                continue
            remaining = self.fs.ls(folder, detail=False)
            if remaining:
                left += [r for r in remaining if r.rstrip("/") != self.path("shards")]
            elif not self.object_store:
                self.fs.rmdir(folder)
        return left


def _other_settings(location: str, built: FeatureConfig, asked: FeatureConfig) -> str:
    """One line: which settings differ, and the ``genrekit prepare`` command for a cache with those asked."""
    differ = [name for name, value in built.to_dict().items() if asked.to_dict()[name] != value]
    cache = ", ".join(f"{n}={getattr(built, n)!r}" for n in differ)
    wanted = ", ".join(f"{n}={getattr(asked, n)!r}" for n in differ)
    flags = prepare_flags(asked)
    how = (f"genrekit prepare DATA --out NEW {flags}".rstrip() if flags is not None
           else f"genrekit.cache.prepare(dataset, NEW, FeatureConfig.from_dict({asked.to_dict()!r}))")
    return f"{location} was built with other feature settings (cache: {cache}; asked: {wanted}): build a new cache: {how}"


def _proves_ours(stem: str, raw: bytes) -> bool:
    """True if a shard index's name and content prove genrekit wrote it (see the module notes)."""
    if not SHARD_NAME.match(stem):
        return False
    if raw.startswith(SHARD_MARKER):
        return True
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(meta, dict) and frozenset(meta) in OLD_SHARD_KEYS


def _json_bytes(data) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=False, default=str) + "\n").encode()
