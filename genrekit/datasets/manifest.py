"""A CSV manifest: ``path,label[,split][,group]``; relative paths are from the CSV's folder."""
from __future__ import annotations

import csv
from pathlib import Path

from ..errors import DatasetError
from .base import Dataset, Track, normalise_split, require_tracks


def read_manifest(csv_path) -> Dataset:
    """Tracks listed in a CSV. ``group`` (e.g. an artist) keeps tracks together in one split.

    Examples
    --------
    >>> ds = read_manifest("library.csv")  # doctest: +SKIP
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DatasetError(f"manifest not found: {csv_path}")
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        if "path" not in columns or "label" not in columns:
            raise DatasetError(f"{csv_path}: a manifest needs columns path,label[,split][,group]; has {columns}")
        rows = list(reader)
    tracks, seen = [], set()
    for line, row in enumerate(rows, start=2):
        if not row["path"] or not row["label"]:
            raise DatasetError(f"{csv_path}:{line}: empty path or label")
        path = Path(row["path"])
        path = path if path.is_absolute() else csv_path.parent / path
        track_id = row.get("track_id") or row["path"]
        if track_id in seen:
            raise DatasetError(f"{csv_path}:{line}: {track_id} listed twice")
        seen.add(track_id)
        tracks.append(Track(track_id, str(path), row["label"], normalise_split(row.get("split")),
                            row.get("group") or row.get("artist") or None))
    return require_tracks(Dataset("manifest", str(csv_path), tracks))
