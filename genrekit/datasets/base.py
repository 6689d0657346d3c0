"""What every data set reader yields, and how tracks are split without leakage."""
from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable

from ..errors import DatasetError, LeakageError

SPLITS = ("train", "valid", "test")
SPLIT_ALIASES = {"training": "train", "train": "train", "validation": "valid", "valid": "valid",
                 "val": "valid", "test": "test", "testing": "test"}


@dataclass(frozen=True)
class Track:
    """One audio file with its label. ``artist`` is the group that must not cross splits."""

    track_id: str
    path: str
    label: str
    split: str | None = None
    artist: str | None = None

    @property
    def group(self) -> str:
        """Tracks of one artist (or, if unknown, one track) stay in one split."""
        return f"artist:{self.artist}" if self.artist else f"track:{self.track_id}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Dataset:
    """A labelled collection of tracks, as a reader found it.

    ``notes`` says what the reader skipped (for example metadata rows whose audio file
    is not there), so a summary can tell the user.
    """

    name: str
    root: str
    tracks: list[Track]
    notes: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return sorted({t.label for t in self.tracks})

    def describe(self) -> dict:
        counts: dict[str, int] = defaultdict(int)
        for t in self.tracks:
            counts[t.split or "none"] += 1
        return {"name": self.name, "root": self.root, "n_tracks": len(self.tracks),
                "labels": self.labels, "splits": dict(sorted(counts.items())), "notes": self.notes}

    def subset(self, split: str) -> list[Track]:
        return [t for t in self.tracks if t.split == split]


def normalise_split(value) -> str | None:
    """Map the split names used by FMA and others to ``train``/``valid``/``test``."""
    if value is None or (isinstance(value, float) and value != value) or str(value).strip() == "":
        return None
    text = str(value).strip().lower()
    return SPLIT_ALIASES.get(text, text)


def assign_splits(tracks: Iterable[Track], valid_fraction: float = 0.1, test_fraction: float = 0.1,
                  seed: int = 0, only_missing: bool = True) -> list[Track]:
    """Give tracks without a split one, by group (artist, else track) and per label.

    Groups are shuffled with ``seed`` and dealt to test, valid and train per label, so
    every split gets each label where there are enough groups. Segments never enter
    this: a track and all its segments land in one split. With ``only_missing``, tracks
    that have a split keep it, and the tracks of their group without one join them
    (the group's most common split), so a group never spans two splits.

    Examples
    --------
    >>> ts = [Track(str(i), f"{i}.wav", "rock" if i % 2 else "jazz") for i in range(20)]
    >>> sorted({t.split for t in assign_splits(ts)})
    ['test', 'train', 'valid']
    """
    tracks = list(tracks)
    given = _given_group_splits(tracks) if only_missing else {}
    todo = [t for t in tracks if not (only_missing and t.split) and t.group not in given]
    groups_by_label = _groups_by_label(todo)
    rng = random.Random(seed)
    split_of: dict[str, str] = {}
    for label in sorted(groups_by_label):
        groups = groups_by_label[label]
        rng.shuffle(groups)
        n = len(groups)
        n_test = round(n * test_fraction) if n >= 3 else 0
        n_valid = round(n * valid_fraction) if n >= 3 else 0
        if test_fraction > 0 and n >= 3:
            n_test = max(1, n_test)
        if valid_fraction > 0 and n >= 3:
            n_valid = max(1, n_valid)
        for i, group in enumerate(groups):
            split_of[group] = "test" if i < n_test else "valid" if i < n_test + n_valid else "train"
    split_of.update(given)  # a group some of whose tracks have a split: the others join it

    def with_split(t: Track) -> Track:
        if (only_missing and t.split) or t.group not in split_of:
            return t
        return replace(t, split=split_of[t.group])

    return [with_split(t) for t in tracks]


def kfold_assign(tracks: Iterable[Track], k: int, seed: int = 0) -> dict[str, int]:
    """The cross-validation fold (0 … k-1) of each track id, by group (artist, else track).

    Groups are shuffled with ``seed`` per label and dealt round-robin, continuing from
    label to label, so each fold gets every label that has at least ``k`` groups and
    small labels do not all land in fold 0. A group is never split across folds.

    Examples
    --------
    >>> ts = [Track(str(i), f"{i}.wav", "rock" if i % 2 else "jazz") for i in range(10)]
    >>> folds = kfold_assign(ts, 5)
    >>> sorted(Counter(folds.values()).values())
    [2, 2, 2, 2, 2]
    """
    if k < 2:
        raise DatasetError(f"k-fold needs k >= 2, not {k}")
    tracks = list(tracks)
    rng = random.Random(seed)
    fold_of: dict[str, int] = {}
    dealt = 0
    for label, groups in sorted(_groups_by_label(tracks).items()):
        rng.shuffle(groups)
        for group in groups:
            fold_of[group] = dealt % k
            dealt += 1
    if dealt < k:
        raise DatasetError(f"{k} folds need at least {k} tracks/artists, there are {dealt}")
    return {t.track_id: fold_of[t.group] for t in tracks}


def _groups_by_label(tracks: list[Track]) -> dict[str, list[str]]:
    """Groups (artist, else track) under the most common label of their tracks, in sorted order."""
    by_group: dict[str, list[Track]] = defaultdict(list)
    for t in tracks:
        by_group[t.group].append(t)
    groups_by_label: dict[str, list[str]] = defaultdict(list)
    for group, members in sorted(by_group.items()):
        labels = sorted(m.label for m in members)
        groups_by_label[max(set(labels), key=labels.count)].append(group)
    return groups_by_label


def _given_group_splits(tracks: list[Track]) -> dict[str, str]:
    """The split of each group that already has one (the most common, if several)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for t in tracks:
        if t.split:
            counts[t.group][t.split] += 1
    return {group: min(c, key=lambda s: (-c[s], s)) for group, c in counts.items()}


def check_disjoint(a: Iterable[Track], b: Iterable[Track], what: str = "train and valid") -> None:
    """Refuse two track sets that share a track id, a file or an artist."""
    a, b = list(a), list(b)
    for key, name in ((lambda t: t.track_id, "track"), (lambda t: str(Path(t.path).resolve()), "file"),
                      (lambda t: t.artist, "artist")):
        common = {key(t) for t in a if key(t)} & {key(t) for t in b if key(t)}
        if common:
            raise LeakageError(f"{what} share {len(common)} {name}(s), e.g. {sorted(common)[:3]}: "
                               "splits must be disjoint by track and artist")


def require_tracks(dataset: Dataset) -> Dataset:
    if not dataset.tracks:
        raise DatasetError(f"{dataset.name}: no tracks found under {dataset.root}"
                           + (f" ({'; '.join(dataset.notes)})" if dataset.notes else ""))
    return dataset
