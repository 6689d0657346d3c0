"""A CSV manifest: ``path,label[,split][,group][,artist][,track_id]``.

Relative paths are from the CSV's folder. The file is read strictly, so that a mistake
stops the run with the line that holds it rather than skewing a data set:

- UTF-8, with or without a byte order mark (Excel writes one); other bytes are refused
  with their line and offset;
- ``split`` is empty or one of train, valid, test, excluded (and the aliases training,
  validation, val, testing); anything else (``tset``) is refused;
- one file listed twice, under any spelling (``a.wav``, ``./a.wav``, a symlink), is
  refused, naming both lines and, if they differ, both labels;
- labels that differ only in case (``Rock``, ``rock``) are refused, naming both;
- ``track_id`` is optional: without it a track's id is its path as written, normalised
  (``./audio/../a.wav`` is ``a.wav``), which is stable wherever the manifest is moved.

``group`` keeps tracks together in one split as given; ``artist`` does too, credits that
share a name being one group (see :func:`~genrekit.datasets.base.group_credits`).
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from ..errors import DatasetError
from .base import Dataset, Track, check_split, credit_artists, read_csv_rows, require_tracks


def read_manifest(csv_path) -> Dataset:
    """Tracks listed in a CSV. ``group`` (or ``artist``) keeps tracks together in one split.

    Raises
    ------
    DatasetError
        Missing file or columns, non-UTF-8 bytes, an empty path or label, an unknown
        split, a file listed twice, a track id listed twice, or labels that differ only
        in case; the message names the line.

    Examples
    --------
    >>> ds = read_manifest("library.csv")  # doctest: +SKIP
    >>> ds.tracks[0]  # doctest: +SKIP
    Track(track_id='audio/a.mp3', path='lists/audio/a.mp3', label='jazz', split='train', artist='artist1')
    """
    csv_path = Path(csv_path)
    columns, rows = read_csv_rows(csv_path, "manifest")
    if "path" not in columns or "label" not in columns:
        raise DatasetError(f"{csv_path}: a manifest needs columns path,label[,split][,group]; has {columns}")
    checker = _RowChecker(csv_path)
    tracks, credits = [], {}
    for line, row in rows:
        where = f"{csv_path}:{line}"
        if not row.get("path") or not row.get("label"):
            raise DatasetError(f"{where}: empty path or label")
        path = Path(row["path"])
        path = path if path.is_absolute() else csv_path.parent / path
        track_id = row.get("track_id") or path_id(row["path"])
        checker.check(line, row["path"], path, row["label"], track_id)
        tracks.append(Track(track_id, str(path), row["label"], check_split(row.get("split"), where),
                            row.get("group") or None))
        if not row.get("group") and row.get("artist"):
            credits[track_id] = row["artist"]
    return require_tracks(Dataset("manifest", str(csv_path), credit_artists(tracks, credits)))


def path_id(path_text: str) -> str:
    """A track id from a path as written in a manifest: normalised, with forward slashes.

    Examples
    --------
    >>> path_id("./audio/../a.wav"), path_id("../audio/b.mp3")
    ('a.wav', '../audio/b.mp3')
    """
    return PurePosixPath(os.path.normpath(path_text.replace("\\", "/"))).as_posix()


class _RowChecker:
    """Remembers the rows seen so far, to refuse one file twice, one id twice and
    labels that differ only in case."""

    def __init__(self, csv_path: Path):
        self.csv_path = csv_path
        self.files: dict[str, tuple[int, str, str]] = {}   # real path -> line, path as written, label
        self.ids: dict[str, int] = {}
        self.labels: dict[str, tuple[str, int]] = {}       # casefolded label -> spelling, line

    def check(self, line: int, written: str, path: Path, label: str, track_id: str) -> None:
        where = f"{self.csv_path}:{line}"
        real = os.path.realpath(path)
        if real in self.files:
            first_line, first_written, first_label = self.files[real]
            labels = f" with another label ({first_label!r} there, {label!r} here)" if first_label != label else ""
            raise DatasetError(f"{where}: {written} is the same file as {first_written} on line {first_line}"
                               f"{labels}; list each file once")
        self.files[real] = (line, written, label)
        if track_id in self.ids:
            raise DatasetError(f"{where}: {track_id} listed twice (first on line {self.ids[track_id]})")
        self.ids[track_id] = line
        spelling, first_line = self.labels.setdefault(label.casefold(), (label, line))
        if spelling != label:
            raise DatasetError(f"{where}: label {label!r} differs from {spelling!r} (line {first_line}) only in "
                               "case; write one spelling")
