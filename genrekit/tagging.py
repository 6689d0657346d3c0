"""Write predicted genres into a music library's own tags, resumably.

:func:`tag_library` classifies each audio file and writes the genre into the file's own
tag block with mutagen: ID3 (MP3, WAV, AIFF), Vorbis comments (FLAC, Ogg Vorbis, Opus,
Ogg FLAC, Speex) or MP4 atoms (M4A/MP4). Beside the usual genre field it writes a
``GENREKIT`` marker (JSON: genre, confidence, model) so later runs recognise files that
genrekit has tagged already. Only tag blocks are rewritten; the audio frames are left
byte for byte as they were.

Nothing is written unless ``write=True`` (a dry run is the default). Each file's outcome
is committed to a small SQLite database as soon as it is known, so an interrupted run
over a big library resumes where it stopped: files whose row is complete and whose size
and mtime are unchanged are not classified again.

Examples
--------
>>> def classify(path):  # doctest: +SKIP
...     return "rock", 0.9, {"rock": 0.9, "jazz": 0.1}, "my-model@1"
>>> summary = tag_library(["~/Music"], classify, write=True)  # doctest: +SKIP
>>> print(summary.format())  # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import signal
import sqlite3
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from .errors import GenrekitError

MARKER = "GENREKIT"
MP4_MARKER = "----:com.genrekit:genrekit"
DEFAULT_DB = "genrekit-tags.sqlite"
SCHEMA_VERSION = 1

Classify = Callable[[Path], "tuple[str, float, dict[str, float], str]"]

# FileResult.status values. Rows in the database keep the same names.
TAGGED = "tagged"                  # tags written (this run)
DONE = "done"                      # tagged in an earlier run, file unchanged since (not stored)
WOULD_TAG = "would-tag"            # dry run: would be written
ALREADY_TAGGED = "already-tagged"  # the file carries a GENREKIT marker; --force rewrites it
LOW_CONFIDENCE = "low-confidence"  # below min_confidence: not written
UNSUPPORTED = "unsupported"        # decodable, but mutagen cannot write tags of this kind
FAILED = "failed"
SKIP_REASONS = {DONE: "done in an earlier run", ALREADY_TAGGED: "already tagged by genrekit",
                LOW_CONFIDENCE: "below the minimum confidence", UNSUPPORTED: "tag format not supported"}
SKIPPED = frozenset(SKIP_REASONS)


class TagError(GenrekitError):
    """A file's tags could not be read or written. ``path`` and ``reason`` say which and why."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class UnsupportedTagFormatError(TagError):
    """mutagen cannot write tags into this kind of file."""


class TaggingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`tag_library`; ``summary`` holds what was done (and saved)."""

    def __init__(self, summary: "TagSummary"):
        super().__init__("interrupted")
        self.summary = summary


# --------------------------------------------------------------------------- tags

@dataclass(frozen=True)
class GenrekitTag:
    """The marker genrekit leaves in a file it has tagged."""

    genre: str | None
    confidence: float | None
    model_id: str | None
    raw: str = ""


def _marker_text(genre: str, confidence: float, model_id: str) -> str:
    return json.dumps({"genre": genre, "confidence": round(float(confidence), 4), "model": model_id},
                      separators=(",", ":"), ensure_ascii=False)


def _parse_marker(text: str) -> GenrekitTag:
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):  # a marker written by hand or by something else
        return GenrekitTag(None, None, None, text)
    conf = data.get("confidence")
    return GenrekitTag(data.get("genre"), float(conf) if isinstance(conf, (int, float)) else None,
                       data.get("model"), text)


def _first(values) -> str | None:
    return str(values[0]) if values else None


def _id3_read(tags):
    marker = tags.getall(f"TXXX:{MARKER}")
    genre = tags.getall("TCON")
    return _first(genre[0].genres) if genre else None, _first(marker[0].text) if marker else None


def _id3_write(audio, genre: str, marker: str) -> dict:
    from mutagen.id3 import TCON, TXXX

    if audio.tags is None:
        audio.add_tags()
    tags = audio.tags
    # Keep the file's ID3 version: v2.3 players do not read v2.4 tags.
    version = 3 if tags.version[:2] == (2, 3) else 4
    tags.setall("TCON", [TCON(encoding=3, text=[genre])])  # UTF-8; UTF-16 when saved as v2.3
    tags.setall(f"TXXX:{MARKER}", [TXXX(encoding=3, desc=MARKER, text=[marker])])
    return {"v2_version": version}


def _vorbis_read(tags):
    return _first(tags.get("GENRE")), _first(tags.get(MARKER))


def _vorbis_write(audio, genre: str, marker: str) -> dict:
    if audio.tags is None:
        audio.add_tags()
    audio.tags["GENRE"] = [genre]
    audio.tags[MARKER] = [marker]
    return {}


def _mp4_read(tags):
    marker = tags.get(MP4_MARKER)
    return _first(tags.get("\xa9gen")), bytes(marker[0]).decode("utf-8", "replace") if marker else None


def _mp4_write(audio, genre: str, marker: str) -> dict:
    from mutagen.mp4 import AtomDataType, MP4FreeForm

    if audio.tags is None:
        audio.add_tags()
    audio.tags.pop("gnre", None)  # an old numeric genre would contradict the new one
    audio.tags["\xa9gen"] = [genre]
    audio.tags[MP4_MARKER] = [MP4FreeForm(marker.encode("utf-8"), dataformat=AtomDataType.UTF8)]
    return {}


def _handlers():
    """(mutagen file types, read, write) for each tag family genrekit writes."""
    from mutagen.aiff import AIFF
    from mutagen.flac import FLAC
    from mutagen.mp3 import MP3
    from mutagen.mp4 import MP4
    from mutagen.oggflac import OggFLAC
    from mutagen.oggopus import OggOpus
    from mutagen.oggspeex import OggSpeex
    from mutagen.oggvorbis import OggVorbis
    from mutagen.wave import WAVE

    return [((MP3, WAVE, AIFF), _id3_read, _id3_write),
            ((FLAC, OggVorbis, OggOpus, OggFLAC, OggSpeex), _vorbis_read, _vorbis_write),
            ((MP4,), _mp4_read, _mp4_write)]


def _open_tags(path: Path):
    """Open ``path`` with mutagen and pick its tag handler; raise TagError if impossible."""
    import mutagen

    try:
        audio = mutagen.File(path)
    except (mutagen.MutagenError, OSError) as e:
        raise TagError(path, f"cannot read tags ({e})") from None
    if audio is None:
        raise UnsupportedTagFormatError(path, "tag format not supported (unknown container)")
    for types, read, write in _handlers():
        if isinstance(audio, types):
            return audio, read, write
    raise UnsupportedTagFormatError(path, f"tag format not supported ({type(audio).__name__})")


def read_tags(path) -> tuple[str | None, GenrekitTag | None]:
    """The file's current genre and its genrekit marker (None where absent).

    Raises
    ------
    UnsupportedTagFormatError
        mutagen cannot tag this kind of file.
    TagError
        The tags cannot be read (e.g. a corrupt header).

    Examples
    --------
    >>> read_tags("song.flac")  # doctest: +SKIP
    ('Rock', None)
    """
    audio, read, _ = _open_tags(Path(path))
    if audio.tags is None:
        return None, None
    genre, marker = read(audio.tags)
    return genre, None if marker is None else _parse_marker(marker)


def read_genrekit_tag(path) -> GenrekitTag | None:
    """The genrekit marker in ``path``'s tags, or None if genrekit has not tagged it.

    Examples
    --------
    >>> read_genrekit_tag("song.mp3")  # doctest: +SKIP
    GenrekitTag(genre='rock', confidence=0.91, model_id='genrekit-gtzan-default@0.1.0', raw='...')
    """
    return read_tags(path)[1]


def write_genre_tag(path, genre: str, confidence: float, model_id: str) -> None:
    """Write ``genre`` and the genrekit marker into ``path``'s own tags, in place.

    Only the tag block is rewritten (by mutagen); the audio frames are not touched.
    Ctrl-C during the write is held back until the file is consistent again.

    Raises
    ------
    UnsupportedTagFormatError, TagError

    Examples
    --------
    >>> write_genre_tag("song.mp3", "rock", 0.91, "genrekit-gtzan-default@0.1.0")  # doctest: +SKIP
    """
    import mutagen

    path = Path(path)
    audio, _, write = _open_tags(path)
    save_options = write(audio, genre, _marker_text(genre, confidence, model_id))
    try:
        with _sigint_deferred():
            audio.save(**save_options)
    except (mutagen.MutagenError, OSError) as e:
        raise TagError(path, f"cannot write tags ({e})") from None


@contextlib.contextmanager
def _sigint_deferred():
    """Hold a Ctrl-C back until the block ends (a half-rewritten file would be damaged)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received and callable(previous):
        previous(signal.SIGINT, None)


# --------------------------------------------------------------------------- database

_COLUMNS = ["path", "size", "mtime_ns", "genre", "confidence", "probabilities", "model",
            "status", "error", "old_genre", "written", "updated_at"]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    genre TEXT,
    confidence REAL,
    probabilities TEXT,
    model TEXT,
    status TEXT NOT NULL,
    error TEXT,
    old_genre TEXT,
    written INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
)"""


def open_db(db_path) -> sqlite3.Connection:
    """Open (creating if needed) the results database.

    Examples
    --------
    >>> con = open_db("genrekit-tags.sqlite")  # doctest: +SKIP
    """
    db_path = Path(db_path)
    try:
        con = sqlite3.connect(db_path, timeout=30)
        con.row_factory = sqlite3.Row
        version = con.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            con.close()
            raise GenrekitError(f"{db_path}: results database has schema version {version}, "
                                f"this genrekit reads version {SCHEMA_VERSION}")
        con.execute(_SCHEMA)
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        con.commit()
    except sqlite3.DatabaseError as e:
        raise GenrekitError(f"{db_path}: cannot use as results database ({e})") from None
    return con


def _get_row(con, key: str):
    return con.execute("SELECT * FROM files WHERE path = ?", (key,)).fetchone()


def _put_row(con, row: dict) -> None:
    row = {**row, "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    con.execute(f"INSERT OR REPLACE INTO files ({', '.join(_COLUMNS)}) VALUES "
                f"({', '.join('?' * len(_COLUMNS))})", [row.get(c) for c in _COLUMNS])
    con.commit()


def export_csv(db_path, csv_path) -> int:
    """Write the results database as CSV, atomically; return the number of rows.

    Examples
    --------
    >>> export_csv("genrekit-tags.sqlite", "tags.csv")  # doctest: +SKIP
    120
    """
    from .io import atomic_path

    if not Path(db_path).is_file():
        raise GenrekitError(f"{db_path}: no such results database")
    con = open_db(db_path)
    try:
        rows = con.execute(f"SELECT {', '.join(_COLUMNS)} FROM files ORDER BY path").fetchall()
    finally:
        con.close()
    with atomic_path(csv_path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(_COLUMNS)
            writer.writerows(tuple(r) for r in rows)
    return len(rows)


# --------------------------------------------------------------------------- the run

@dataclass
class FileResult:
    """What happened to one file."""

    path: str
    status: str
    genre: str | None = None
    confidence: float | None = None
    model_id: str | None = None
    old_genre: str | None = None
    reason: str = ""

    def describe(self) -> str:
        """One line for the user, e.g. ``would tag a.mp3: rock (91%), was 'Pop'``."""
        pred = f"{self.genre} ({self.confidence:.0%})" if self.confidence is not None else str(self.genre)
        was = f", was {self.old_genre!r}" if self.old_genre and self.old_genre != self.genre else ""
        if self.status == TAGGED:
            return f"tagged {self.path}: {pred}{was}"
        if self.status == WOULD_TAG:
            return f"would tag {self.path}: {pred}{was}"
        if self.status == FAILED:
            return f"failed {self.path}: {self.reason}"
        return f"skipped {self.path}: {self.reason}"


@dataclass
class TagSummary:
    """Outcome of :func:`tag_library`: one :class:`FileResult` per file handled."""

    results: list[FileResult] = field(default_factory=list)
    total: int = 0
    interrupted: bool = False

    def _with(self, statuses) -> list[FileResult]:
        return [r for r in self.results if r.status in statuses]

    @property
    def tagged(self) -> list[FileResult]:
        return self._with({TAGGED})

    @property
    def would_tag(self) -> list[FileResult]:
        return self._with({WOULD_TAG})

    @property
    def skipped(self) -> list[FileResult]:
        return self._with(SKIPPED)

    @property
    def failed(self) -> list[FileResult]:
        return self._with({FAILED})

    def format(self) -> str:
        """The end-of-run report: counts, skip reasons and every failure."""
        reasons: dict[str, int] = {}
        for r in self.skipped:
            reasons[SKIP_REASONS[r.status]] = reasons.get(SKIP_REASONS[r.status], 0) + 1
        why = " (" + ", ".join(f"{n} {k}" for k, n in reasons.items()) + ")" if reasons else ""
        lines = [f"tagged {len(self.tagged)}, would tag {len(self.would_tag)}, "
                 f"skipped {len(self.skipped)}{why}, failed {len(self.failed)}"]
        if self.interrupted:
            lines.append(f"interrupted after {len(self.results)} of {self.total} files; "
                         "run again to resume")
        if self.failed:
            lines.append("failures:")
            lines.extend(f"  {r.path}: {r.reason}" for r in self.failed)
        return "\n".join(lines)


def _check_prediction(path: Path, result) -> tuple[str, float, dict, str]:
    try:
        genre, confidence, probabilities, model_id = result
        confidence = float(confidence)
    except (TypeError, ValueError):
        raise TagError(path, "classify must return (genre, confidence, probabilities, model_id), "
                             f"not {result!r}") from None
    if not isinstance(genre, str) or not genre.strip():
        raise TagError(path, f"classifier returned no genre ({genre!r})")
    if not (math.isfinite(confidence) and 0.0 <= confidence <= 1.0):
        raise TagError(path, f"classifier returned an invalid confidence ({confidence})")
    return genre, confidence, {str(k): float(v) for k, v in dict(probabilities).items()}, str(model_id)


def _reason(error: GenrekitError) -> str:
    """The error's message without the leading ``path:`` (the report names the path)."""
    text, path = str(error), getattr(error, "path", None)
    return text[len(path) + 2:] if path and text.startswith(f"{path}: ") else text


def _unique_files(paths) -> list[Path]:
    from .audio import find_audio_files

    seen, files = set(), []
    for p in find_audio_files(paths):
        key = os.path.abspath(p)
        if key not in seen:
            seen.add(key)
            files.append(p)
    return files


@dataclass
class _Run:
    """One tag_library call: settings, database connection and the classifier."""

    con: sqlite3.Connection
    classify: Classify
    write: bool
    force: bool
    min_confidence: float
    model_id: str | None

    def process(self, path: Path) -> FileResult:
        key = os.path.abspath(path)
        try:
            st = path.stat()
        except OSError as e:
            return self._fail(path, key, None, f"cannot read file ({e.strerror or e})")
        if st.st_size == 0:
            return self._fail(path, key, st, "empty file (0 bytes)")
        row = None if self.force else _get_row(self.con, key)
        unchanged = row is not None and (row["size"], row["mtime_ns"]) == (st.st_size, st.st_mtime_ns)
        if unchanged and row["status"] == TAGGED and row["written"]:
            return FileResult(str(path), DONE, row["genre"], row["confidence"], row["model"],
                              reason="done in an earlier run")
        return self._classify_and_tag(path, key, st, row if unchanged else None)

    def _classify_and_tag(self, path: Path, key: str, st, row) -> FileResult:
        old_genre, marker, tag_problem = None, None, None
        try:
            old_genre, marker = read_tags(path)
        except TagError as e:
            tag_problem = e
        if marker is not None and not self.force:
            return self._record(path, key, st, ALREADY_TAGGED, marker.genre, marker.confidence, None,
                                marker.model_id, old_genre, "already tagged by genrekit (--force rewrites)")
        try:
            genre, confidence, probs, model_id = self._predict(path, row)
        except GenrekitError as e:  # AudioError from the classifier, or a bad prediction
            return self._fail(path, key, st, _reason(e))
        except Exception as e:  # noqa: BLE001 - a file that always crashes must not block every re-run
            return self._fail(path, key, st, f"unexpected error: {type(e).__name__}: {e}")
        if tag_problem is not None:
            status = UNSUPPORTED if isinstance(tag_problem, UnsupportedTagFormatError) else FAILED
            return self._record(path, key, st, status, genre, confidence, probs, model_id, old_genre,
                                tag_problem.reason)
        if confidence < self.min_confidence:
            return self._record(path, key, st, LOW_CONFIDENCE, genre, confidence, probs, model_id,
                                old_genre, f"confidence {confidence:.2f} below {self.min_confidence:.2f}")
        if not self.write:
            return self._record(path, key, st, WOULD_TAG, genre, confidence, probs, model_id, old_genre)
        return self._write(path, key, genre, confidence, probs, model_id, old_genre)

    def _predict(self, path: Path, row):
        reusable = (row is not None and row["probabilities"] and row["status"] != FAILED
                    and (self.model_id is None or row["model"] == self.model_id))
        if reusable:  # classified in an earlier run (e.g. a dry run) and unchanged since
            return row["genre"], row["confidence"], json.loads(row["probabilities"]), row["model"]
        return _check_prediction(path, self.classify(path))

    def _write(self, path, key, genre, confidence, probs, model_id, old_genre) -> FileResult:
        try:
            with _sigint_deferred():  # the file and its row change together
                write_genre_tag(path, genre, confidence, model_id)
                return self._record(path, key, path.stat(), TAGGED, genre, confidence, probs,
                                    model_id, old_genre, written=True)
        except TagError as e:
            return self._fail(path, key, path.stat() if path.exists() else None, e.reason)

    def _fail(self, path, key, st, reason: str) -> FileResult:
        return self._record(path, key, st, FAILED, None, None, None, None, None, reason)

    def _record(self, path, key, st, status, genre, confidence, probs, model_id, old_genre,
                reason: str = "", written: bool = False) -> FileResult:
        _put_row(self.con, {
            "path": key, "size": st.st_size if st else -1, "mtime_ns": st.st_mtime_ns if st else -1,
            "genre": genre, "confidence": confidence,
            "probabilities": None if probs is None else json.dumps(probs, sort_keys=True),
            "model": model_id, "status": status, "error": reason or None, "old_genre": old_genre,
            "written": int(written)})
        return FileResult(str(path), status, genre, confidence, model_id, old_genre, reason)


def tag_library(paths, classify: Classify, write: bool = False, force: bool = False,
                db_path=DEFAULT_DB, min_confidence: float = 0.0, progress: bool = True,
                model_id: str | None = None,
                on_result: Callable[[FileResult], None] | None = None) -> TagSummary:
    """Classify audio files and write the genre into their tags (dry run unless ``write``).

    Parameters
    ----------
    paths : path or iterable of paths
        Files, or folders searched recursively for audio files by extension.
    classify : callable
        ``classify(path) -> (genre, confidence, probabilities, model_id)``; raises an
        :class:`~genrekit.errors.AudioError` for unusable audio. The file is then
        recorded as failed and the run goes on (so it does for any other exception,
        reported as "unexpected error"; only KeyboardInterrupt stops the run).
    write : bool
        Write the tags. If False (default), only report what would be written.
    force : bool
        Re-classify and rewrite files already tagged by genrekit, ignoring earlier runs.
    db_path : path
        SQLite results database; one row per file, committed as each file is done.
        Files whose row is complete and whose size and mtime are unchanged are not
        classified again (a dry run's predictions are reused by a later ``write``);
        files that failed are tried again.
    min_confidence : float
        Predictions below this are recorded but not written.
    progress : bool
        Show a tqdm progress bar on stderr.
    model_id : str or None
        The model ``classify`` uses; earlier predictions by another model are not reused.
    on_result : callable or None
        Called with each :class:`FileResult` as it is known (e.g. to print it).

    Returns
    -------
    TagSummary

    Raises
    ------
    TaggingInterrupted
        On Ctrl-C (a KeyboardInterrupt); ``.summary`` holds the files done, all saved.

    Examples
    --------
    >>> s = tag_library("Music/", classify, db_path="tags.sqlite")  # doctest: +SKIP
    >>> len(s.would_tag), len(s.failed)  # doctest: +SKIP
    (412, 3)
    """
    from tqdm import tqdm

    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must be in [0, 1], not {min_confidence}")
    files = _unique_files(paths)
    summary = TagSummary(total=len(files))
    con = open_db(db_path)
    run = _Run(con, classify, write, force, min_confidence, model_id)
    bar = tqdm(files, disable=not progress, unit="file", desc="tagging" if write else "dry run",
               file=sys.stderr, dynamic_ncols=True)
    try:
        for path in bar:
            result = run.process(path)
            summary.results.append(result)
            if on_result is not None:
                on_result(result)
    except KeyboardInterrupt:
        summary.interrupted = True
        raise TaggingInterrupted(summary) from None
    finally:
        bar.close()
        con.close()
    return summary
