"""Data set readers, one module each, all yielding :class:`Track` records.

:func:`open_dataset` resolves a spec such as ``gtzan:PATH``, ``fma:AUDIO_DIR``,
``folder:PATH`` or ``manifest:FILE.csv``.
"""
from __future__ import annotations

from ..errors import DatasetError
from .base import (
    Dataset,
    Track,
    assign_splits,
    check_disjoint,
    group_credits,
    normalise_split,
    read_artist_csv,
    with_artists,
)
from .fma import fma_audio_path, id3_artist, load_fma_metadata, read_fma
from .folder import read_folder
from .gtzan import GTZAN_GENRES, read_gtzan
from .manifest import read_manifest

KINDS = ("gtzan", "fma", "folder", "manifest")


def open_dataset(spec: str, metadata=None, subset: str = "small", splits=None, split_column=None,
                 valid_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0, artists=None) -> Dataset:
    """Read a data set from a ``KIND:PATH`` spec; tracks without a split get one by group.

    Parameters
    ----------
    spec : str
        ``gtzan:ROOT``, ``fma:AUDIO_DIR`` (needs ``metadata``), ``folder:ROOT`` or
        ``manifest:CSV``.
    metadata : path, optional
        FMA ``tracks.csv`` or a plain ``track_id,genre_top,split`` CSV.
    splits : path, optional
        GTZAN split CSV (``track_id`` + ``split``/``filtered_split``).
    artists : path, optional
        Artist list (``track_id,artist``) for any kind, e.g. for GTZAN, whose files name
        no artist. Credits that share a name are one group, which never spans two splits.

    Examples
    --------
    >>> ds = open_dataset("gtzan:data", splits="data/gtzan_labels.csv",
    ...                   artists="bench/data/gtzan_dev_artists.csv")  # doctest: +SKIP
    """
    kind, sep, path = spec.partition(":")
    if not sep or kind not in KINDS or not path:
        raise DatasetError(f"data set spec must be KIND:PATH with KIND in {KINDS}, not {spec!r}")
    if kind == "fma":
        if metadata is None:
            raise DatasetError("an FMA data set needs --metadata (tracks.csv or a label CSV)")
        dataset = read_fma(path, metadata, subset)
    elif kind == "gtzan":
        dataset = read_gtzan(path, splits, split_column, artists)
    elif kind == "folder":
        dataset = read_folder(path)
    else:
        dataset = read_manifest(path)
    if artists is not None and kind != "gtzan":
        dataset = with_artists(dataset, artists)
    if any(t.split is None for t in dataset.tracks):
        dataset.tracks = assign_splits(dataset.tracks, valid_fraction, test_fraction, seed)
        dataset.notes.append(f"tracks without a split were split by group (seed {seed})")
    return dataset


__all__ = ["Dataset", "Track", "open_dataset", "read_gtzan", "read_fma", "read_folder", "read_manifest",
           "assign_splits", "check_disjoint", "normalise_split", "load_fma_metadata", "fma_audio_path",
           "id3_artist", "group_credits", "read_artist_csv", "with_artists",
           "GTZAN_GENRES", "KINDS"]
