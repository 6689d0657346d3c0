"""FMA (Defferrard et al., ISMIR 2017): the real ``tracks.csv`` or a plain label CSV.

``tracks.csv`` has a two-row header (``pandas.read_csv(header=[0, 1], index_col=0)``);
the columns used are ``('track', 'genre_top')``, ``('set', 'split')``,
``('set', 'subset')`` and ``('artist', 'id')``. A plain CSV with
``track_id,genre_top[,split][,artist_id]`` is accepted too. Audio lives at
``<audio_dir>/123/123456.mp3``.

Tracks keep their artists together in one split: by ``artist_id`` where the metadata
has one, else by the artist in the MP3's ID3 tag (``TPE1``, read with mutagen), credits
that share a name being one group (see :func:`~genrekit.datasets.base.group_credits`).
"""
from __future__ import annotations

from pathlib import Path

from ..errors import DatasetError
from .base import Dataset, Track, credit_artists, normalise_split, require_tracks

SUBSETS = ("small", "medium", "large")


def fma_audio_path(audio_dir, track_id: int) -> Path:
    """``fma_small/000/000002.mp3`` for track 2."""
    name = f"{int(track_id):06d}"
    return Path(audio_dir) / name[:3] / f"{name}.mp3"


def _is_multiheader(path: Path) -> bool:
    with open(path, newline="") as f:
        first, second = f.readline(), f.readline()
    return first.startswith(",") or ("track" in first and "genre_top" in second)


def load_fma_metadata(path, subset: str = "small"):
    """Read FMA metadata into a DataFrame with ``genre_top, split, subset, artist_id``, indexed by track id.

    ``subset`` keeps tracks of that subset and the smaller ones (small ⊂ medium ⊂ large).
    Needs pandas (the ``[train]`` extra); without it, :class:`~genrekit.errors.MissingExtraError`.
    """
    from ..extras import require

    pd = require("pandas", "train", "FMA's metadata (fma: data sets)")

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"FMA metadata not found: {path}")
    if subset not in SUBSETS:
        raise DatasetError(f"FMA subset must be one of {SUBSETS}, not {subset!r}")
    if _is_multiheader(path):
        raw = pd.read_csv(path, header=[0, 1], index_col=0, low_memory=False)
        needed = [("track", "genre_top"), ("set", "split"), ("set", "subset")]
        missing = [c for c in needed if c not in raw.columns]
        if missing:
            raise DatasetError(f"{path}: not an FMA tracks.csv, missing columns {missing}")
        meta = pd.DataFrame({
            "genre_top": raw[("track", "genre_top")],
            "split": raw[("set", "split")],
            "subset": raw[("set", "subset")],
            "artist_id": raw[("artist", "id")] if ("artist", "id") in raw.columns else None,
        }, index=raw.index)
    else:
        raw = pd.read_csv(path)
        if "track_id" not in raw.columns or "genre_top" not in raw.columns:
            raise DatasetError(f"{path}: needs columns track_id and genre_top; has {list(raw.columns)}")
        raw = raw.set_index("track_id")
        meta = pd.DataFrame({"genre_top": raw["genre_top"],
                             "split": raw["split"] if "split" in raw.columns else None,
                             "subset": raw["subset"] if "subset" in raw.columns else subset,
                             "artist_id": raw["artist_id"] if "artist_id" in raw.columns else None},
                            index=raw.index)
    meta.index = meta.index.astype(int)
    meta.index.name = "track_id"
    allowed = SUBSETS[: SUBSETS.index(subset) + 1]
    meta = meta[meta["subset"].astype(str).isin(allowed)]
    return meta[meta["genre_top"].notna()]


def read_fma(audio_dir, metadata, subset: str = "small") -> Dataset:
    """FMA tracks of ``subset`` whose audio file exists under ``audio_dir``.

    Examples
    --------
    >>> ds = read_fma("fma_small", "fma_metadata/tracks.csv", subset="small")  # doctest: +SKIP
    """
    audio_dir = Path(audio_dir)
    if not audio_dir.is_dir():
        raise DatasetError(f"FMA audio folder not found: {audio_dir}")
    meta = load_fma_metadata(metadata, subset)
    tracks, absent = [], 0
    for track_id, row in meta.iterrows():
        path = fma_audio_path(audio_dir, track_id)
        if not path.exists():
            absent += 1
            continue
        artist = row["artist_id"]
        artist = None if artist is None or artist != artist else str(int(artist))
        tracks.append(Track(str(track_id), str(path), str(row["genre_top"]), normalise_split(row["split"]), artist))
    notes = [f"{absent} tracks in the metadata have no audio file under {audio_dir}"] if absent else []
    credits = {t.track_id: id3_artist(t.path) for t in tracks if t.artist is None}
    if credits:
        tracks = credit_artists(tracks, credits)
        found = sum(1 for c in credits.values() if c)
        notes.append(f"artist read from the ID3 tag for {found} of {len(credits)} tracks without artist_id")
    return require_tracks(Dataset(f"fma_{subset}", str(audio_dir), tracks, notes))


def id3_artist(path) -> str | None:
    """The artist (``TPE1``) of a file's ID3 tag, or None without one.

    Examples
    --------
    >>> id3_artist("fma_small/000/000002.mp3")  # doctest: +SKIP
    'AWOL'
    """
    from mutagen.id3 import ID3

    try:
        frame = ID3(str(path)).get("TPE1")
    except Exception:  # no tag, or not a file mutagen can read: the artist is unknown
        return None
    text = str(frame).strip() if frame is not None else ""
    return text or None
