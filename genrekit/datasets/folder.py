"""Any folder-per-genre tree: ``<root>/<label>/**/<file>.<audio extension>``."""
from __future__ import annotations

from pathlib import Path

from ..audio import find_audio_files
from ..errors import DatasetError
from .base import Dataset, Track, require_tracks


def read_folder(root) -> Dataset:
    """One label per top-level sub-folder; track ids are paths relative to ``root``.

    Examples
    --------
    >>> ds = read_folder("my_music")  # my_music/jazz/a.mp3, my_music/rock/b.flac  # doctest: +SKIP
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"not a folder: {root}")
    tracks = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        # as predict and tag find them: broken links and unreadable folders kept, so prepare reports them
        for path in find_audio_files(label_dir):
            tracks.append(Track(path.relative_to(root).as_posix(), str(path), label_dir.name))
    return require_tracks(Dataset("folder", str(root), tracks))
