"""Read access to a local feature cache: the track table, memory-mapped segments, content hashes."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import FeatureConfig
from ..datasets.base import Track
from ..errors import CacheError, ConfigError
from .format import CacheStore

TRACK_COLUMNS = ["track_id", "path", "label", "split", "artist", "duration", "n_segments", "row", "shard",
                 "sha256", "audio_sha256"]
REPAIR_HINT = "run the same `genrekit prepare` command again to repair it"


class FeatureCache:
    """A feature cache folder opened for reading.

    Parameters
    ----------
    root : path
        The cache folder (a cache at a URL is copied here first with
        :func:`genrekit.cache.fetch_cache`).
    config : FeatureConfig, optional
        Refuse a cache built with other settings.
    verify : {"size", "checksum"}
        How far each shard is checked against what was recorded when it was written;
        a damaged shard raises :class:`~genrekit.errors.CacheError` naming it.

    Examples
    --------
    >>> cache = FeatureCache("caches/gtzan")  # doctest: +SKIP
    >>> x, y, track = cache.segments(split="train")  # doctest: +SKIP
    """

    def __init__(self, root, config: FeatureConfig | None = None, verify: str = "size"):
        self.root = Path(root)
        if not self.root.is_dir():
            what = "no such folder" if not self.root.exists() else "not a folder"
            raise CacheError(f"{self.root}: not a feature cache ({what})")
        store = CacheStore(self.root)
        manifest = store.read_manifest()
        if manifest is None:
            raise CacheError(f"{self.root}: not a feature cache (no manifest.json)")
        self.manifest = manifest
        self.config = store.check_config(manifest, config)
        self.dataset = manifest.get("dataset", {})
        index = store.index(verify)
        if index.damaged:
            name, problem = next(iter(sorted(index.damaged.items())))
            hint = REPAIR_HINT if name in index.proven else (
                f"genrekit cannot prove it wrote shards/{name}.json, so move or delete it yourself")
            raise CacheError(f"{self.root}: damaged cache, {len(index.damaged)} shard(s) unusable, e.g. {name}: "
                             f"{problem}; {hint}")
        self.tracks = _track_table(index.tracks)
        self.failures = index.failures
        self._arrays: dict[str, np.ndarray] = {}

    @property
    def labels(self) -> list[str]:
        return sorted(self.tracks["label"].unique())

    def array(self, shard: str) -> np.ndarray:
        if shard not in self._arrays:
            path = self.root / "shards" / f"{shard}.npy"
            try:
                self._arrays[shard] = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as e:
                raise CacheError(f"{path}: damaged shard ({e}); {REPAIR_HINT}") from None
        return self._arrays[shard]

    def select(self, split: str | list[str] | None = None):
        """The track rows of a split (or several, or all)."""
        if split is None:
            return self.tracks
        splits = [split] if isinstance(split, str) else list(split)
        return self.tracks[self.tracks["split"].isin(splits)]

    def track_segments(self, row) -> np.ndarray:
        """float16 segments of one track row, ``(n_segments, bins, frames)``."""
        segments = self.array(row.shard)[row.row: row.row + row.n_segments]
        if len(segments) != row.n_segments:
            raise CacheError(f"{self.root}: shard {row.shard} holds fewer rows than its index says; {REPAIR_HINT}")
        return segments

    def segments_of(self, tracks, labels: list[str]):
        """All segments of the given track rows in memory: ``(x float16, label index, track index)``.

        Raises :class:`~genrekit.errors.ConfigError` for a track whose label is not in ``labels``.
        """
        index = {label: i for i, label in enumerate(labels)}
        xs, ys, ts = [], [], []
        for i, row in enumerate(tracks.itertuples()):
            if row.label not in index:
                raise ConfigError(f"track {row.track_id} has label {row.label!r}, not among {labels}")
            seg = np.asarray(self.track_segments(row))
            xs.append(seg)
            ys.append(np.full(len(seg), index[row.label]))
            ts.append(np.full(len(seg), i))
        if not xs:
            return np.zeros((0, *self.config.segment_shape), np.float16), np.zeros(0, int), np.zeros(0, int)
        return np.concatenate(xs), np.concatenate(ys), np.concatenate(ts)

    def segments(self, split=None, labels: list[str] | None = None):
        """All segments of a split in memory: ``(x float16, label index, track index)``."""
        return self.segments_of(self.select(split), labels or self.labels)

    def __len__(self):
        return len(self.tracks)

    def __repr__(self):
        return f"FeatureCache({str(self.root)!r}, tracks={len(self.tracks)}, failures={len(self.failures)})"


def _track_table(records: list[dict]):
    import pandas as pd

    tracks = pd.DataFrame(records, columns=TRACK_COLUMNS)
    tracks = tracks.astype({"track_id": str}).sort_values("track_id", kind="stable").reset_index(drop=True)
    tracks["artist"] = [a if isinstance(a, str) and a else None for a in tracks["artist"]]
    return tracks


def tracks_of(frame) -> list[Track]:
    """The :class:`~genrekit.datasets.base.Track` records of a track table."""
    return [Track(str(r.track_id), r.path, r.label, r.split, r.artist if isinstance(r.artist, str) and r.artist
                  else None) for r in frame.itertuples()]


def artists_of(frame) -> list[str]:
    """The distinct artists of a track table, sorted."""
    return sorted({a for a in frame["artist"] if isinstance(a, str) and a})


def content_hashes(frame) -> list[str]:
    """The content hashes (file bytes and decoded audio) of a track table's tracks, sorted."""
    values = set()
    for column in ("sha256", "audio_sha256"):
        if column in frame:
            values.update(h for h in frame[column] if isinstance(h, str) and h)
    return sorted(values)
