"""What every data set reader yields, how tracks are split without leakage, and the
pieces the readers share: CSV files read strictly, artist credits grouped."""
from __future__ import annotations

import csv
import io
import random
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..errors import DatasetError, LeakageError

SPLITS = ("train", "valid", "test")
SPLIT_ALIASES = {"training": "train", "train": "train", "validation": "valid", "valid": "valid",
                 "val": "valid", "test": "test", "testing": "test"}
# A track listed but kept out of every split (GTZAN's fault-filtered list marks them so).
EXCLUDED = "excluded"
# Where one credit names several artists: "A & B", "A, B", "A feat. B", "A featuring B".
CREDIT_SEPARATORS = re.compile(r" & |, | feat\. | featuring | ft\. ", re.IGNORECASE)


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
        """Tracks of one artist (or, if unknown, one track) stay in one split.

        Readers that know artists by their credits put the key of the credit's group in
        ``artist`` (see :func:`group_credits`), so that "George S. Clinton & Morphine"
        and "Morphine" are one group."""
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


def check_split(value, where: str) -> str | None:
    """The normalised split of a cell, or None if empty; refuses anything else, naming
    ``where`` (e.g. ``"library.csv:7"``) and the allowed values.

    Examples
    --------
    >>> check_split("Validation", "m.csv:2"), check_split("", "m.csv:3")
    ('valid', None)
    >>> check_split("tset", "m.csv:4")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    genrekit.errors.DatasetError: m.csv:4: unknown split 'tset'; use train, valid, test or excluded (or ...
    """
    split = normalise_split(value)
    if split is None or split in SPLITS or split == EXCLUDED:
        return split
    aliases = ", ".join(a for a in SPLIT_ALIASES if a not in SPLITS)
    raise DatasetError(f"{where}: unknown split {str(value).strip()!r}; use {', '.join(SPLITS)} or {EXCLUDED} "
                       f"(or {aliases}), or leave it empty")


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
    for _label, groups in sorted(_groups_by_label(tracks).items()):
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


# --- CSV files ---------------------------------------------------------------------------

def read_csv_rows(path, what: str = "CSV file") -> tuple[list[str], list[tuple[int, dict]]]:
    """Columns and ``(line, row)`` pairs of a UTF-8 CSV file, read strictly.

    A UTF-8 byte order mark (as Excel writes) is accepted; column names and cells are
    stripped of surrounding spaces. Bytes that are not UTF-8 raise a
    :class:`~genrekit.errors.DatasetError` naming the line and byte offset.

    Examples
    --------
    >>> read_csv_rows("library.csv", "manifest")  # doctest: +SKIP
    (['path', 'label'], [(2, {'path': 'a.mp3', 'label': 'jazz'})])
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{what} not found: {path}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DatasetError(f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                           "save the file as UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        columns = [c.strip() for c in next(reader, [])]
        rows = []
        for cells in reader:
            if any(c.strip() for c in cells):
                rows.append((reader.line_num, {c: v.strip() for c, v in zip(columns, cells)}))
    except csv.Error as e:
        raise DatasetError(f"{path}:{reader.line_num}: not valid CSV ({e})") from None
    return columns, rows


# --- artists -----------------------------------------------------------------------------

def credit_names(credit: str) -> list[str]:
    """The artists a credit names, split on " & ", ", ", " feat. ", " featuring ", " ft. ".

    Examples
    --------
    >>> credit_names("Ice Cube, Mack 10 & Ms. Toi")
    ['Ice Cube', 'Mack 10', 'Ms. Toi']
    >>> credit_names("De La Soul feat. Chaka Khan")
    ['De La Soul', 'Chaka Khan']
    """
    return [name.strip() for name in CREDIT_SEPARATORS.split(credit) if name.strip()]


def name_key(name: str) -> str:
    """A spelling-proof key of an artist name: case, accents, punctuation, a leading
    "the" and word order do not count.

    Examples
    --------
    >>> name_key("Alec K. Redfearn and the Eyesores") == name_key("Alec K Redfearn And The Eyesores")
    True
    >>> name_key("Askew Ed") == name_key("Ed Askew"), name_key("The Prodigy")
    (True, 'prodigy')
    """
    text = unicodedata.normalize("NFKD", name).casefold()
    text = "".join(c if c.isalnum() else " " for c in text if not unicodedata.combining(c))
    words = text.split()
    if len(words) > 1 and words[0] == "the":
        words = words[1:]
    return " ".join(sorted(words))


def group_credits(credits: Iterable[str]) -> dict[str, str]:
    """Map each credit to the key of its group: credits that share a name, directly or
    through other credits, are one group (union of their names).

    The key is the group's name found in most credits (ties: the first in sorted
    order), as first spelled. It depends only on the credits given, not their order.

    Examples
    --------
    >>> groups = group_credits(["Morphine", "George S. Clinton & Morphine", "Ice Cube"])
    >>> groups["George S. Clinton & Morphine"], groups["Morphine"], groups["Ice Cube"]
    ('Morphine', 'Morphine', 'Ice Cube')
    """
    credits = sorted(set(credits))
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    spelling: dict[str, str] = {}
    count: Counter = Counter()
    names_of = {}
    for credit in credits:
        keys = [name_key(n) for n in credit_names(credit)] or [name_key(credit)]
        names_of[credit] = keys
        for key, name in zip(keys, credit_names(credit) or [credit]):
            parent.setdefault(key, key)
            spelling.setdefault(key, name)
            count[key] += 1
        for key in keys[1:]:
            parent[root(key)] = root(keys[0])
    members: dict[str, list[str]] = defaultdict(list)
    for key in parent:
        members[root(key)].append(key)
    best = {r: min(keys, key=lambda k: (-count[k], k)) for r, keys in members.items()}
    return {credit: spelling[best[root(names_of[credit][0])]] for credit in credits}


def credit_artists(tracks: list[Track], credits: dict[str, str]) -> list[Track]:
    """Tracks whose id has a credit get the key of the credit's group as ``artist``
    (see :func:`group_credits`); the others are left as they are."""
    given = {tid: c for tid, c in credits.items() if c}
    groups = group_credits(given.values())
    return [replace(t, artist=groups[given[t.track_id]]) if t.track_id in given else t for t in tracks]


def read_artist_csv(path) -> dict[str, str]:
    """``track_id -> artist`` credits from a CSV with ``track_id`` and ``artist`` columns
    (others are ignored; an empty artist means unknown).

    Examples
    --------
    >>> read_artist_csv("bench/data/gtzan_dev_artists.csv")["blues.00040"]  # doctest: +SKIP
    'Stevie Ray Vaughan & Double Trouble'
    """
    columns, rows = read_csv_rows(path, "artist list")
    if "track_id" not in columns or "artist" not in columns:
        raise DatasetError(f"{path}: an artist list needs columns track_id,artist; has {columns}")
    return {row["track_id"]: row["artist"] for _, row in rows if row.get("track_id") and row.get("artist")}


def with_artists(dataset: Dataset, path) -> Dataset:
    """The data set with the credits of an artist CSV applied and grouped by name."""
    credits = read_artist_csv(path)
    ids = {t.track_id for t in dataset.tracks}
    dataset.tracks = credit_artists(dataset.tracks, credits)
    unmatched = sum(1 for tid in credits if tid not in ids)
    if unmatched:
        dataset.notes.append(f"{unmatched} rows of the artist list {path} match no track")
    return dataset
