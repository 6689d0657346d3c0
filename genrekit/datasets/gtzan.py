"""GTZAN (Tzanetakis & Cook 2002): ``<root>/<genre>/<genre>.000NN.(wav|au)``.

The folder is searched recursively, so a root holding several copies or parts of
GTZAN works; a track id found twice is kept once (the first path in sorted order).
Optional split lists give each track a split, e.g. the fault-filtered, artist-disjoint
split of Kereliuk, Sturm & Larsen (2015). GTZAN's files name no artist: an artist list
(``track_id,artist``, e.g. ``bench/data/gtzan_dev_artists.csv``) gives them, and tracks
whose credits share a name are one group (see :func:`~genrekit.datasets.base.group_credits`).
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import DatasetError
from .base import Dataset, Track, normalise_split, read_csv_rows, require_tracks, with_artists

GTZAN_GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")
_NAME = re.compile(r"^(?P<genre>[a-z]+)\.(?P<number>\d{5})\.(wav|au)$")


def read_split_csv(path, id_column: str = "track_id", split_column: str | None = None) -> dict[str, str]:
    """Read ``track_id -> split`` from a CSV with a ``split`` (or ``filtered_split``) column."""
    columns, rows = read_csv_rows(path, "split file")
    split_column = split_column or next((c for c in ("split", "filtered_split") if c in columns), None)
    if id_column not in columns or split_column not in columns:
        raise DatasetError(f"{path}: needs columns {id_column!r} and 'split' (or 'filtered_split'); has {columns}")
    return {row[id_column]: normalise_split(row.get(split_column)) for _, row in rows}


def read_gtzan(root, splits=None, split_column: str | None = None, artists=None) -> Dataset:
    """Find GTZAN tracks under ``root``.

    Parameters
    ----------
    root : path
    splits : path or dict, optional
        CSV with ``track_id`` and ``split``/``filtered_split`` columns, or a dict
        ``track_id -> split``. Tracks it does not list get no split.
    split_column : str, optional
        The column of ``splits`` to use (default ``split``, else ``filtered_split``).
    artists : path, optional
        CSV with ``track_id`` and ``artist`` columns. Each listed track's ``artist`` is
        the key of its credit's group; unlisted tracks have none (a group of their own).

    Examples
    --------
    >>> ds = read_gtzan("data/gtzan", splits="data/gtzan_labels.csv",
    ...                 artists="bench/data/gtzan_dev_artists.csv")  # doctest: +SKIP
    >>> {t.artist for t in ds.tracks if t.label == "rock"}  # doctest: +SKIP
    {'Morphine'}
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"GTZAN root is not a folder: {root}")
    split_of = read_split_csv(splits, split_column=split_column) if isinstance(splits, (str, Path)) else (splits or {})
    tracks, seen, notes = [], set(), []
    for path in sorted(root.rglob("*")):
        m = _NAME.match(path.name)
        if not m or path.parent.name != m["genre"]:
            continue
        track_id = f"{m['genre']}.{m['number']}"
        if track_id in seen:
            notes.append(f"duplicate {track_id} ignored: {path}")
            continue
        seen.add(track_id)
        tracks.append(Track(track_id, str(path), m["genre"], split_of.get(track_id)))
    dataset = require_tracks(Dataset("gtzan", str(root), tracks, notes))
    return with_artists(dataset, artists) if artists is not None else dataset
