"""Write predicted genres into a music library's own tags: keep what is there, and undo.

:func:`tag_library` classifies audio files and writes the genre into each file's own tag
block with mutagen: ID3 (MP3, WAV, AIFF), Vorbis comments (FLAC, Ogg Vorbis, Opus, Ogg
FLAC, Speex) or MP4 atoms (M4A/MP4). It behaves as beets and MusicBrainz Picard do:

* a dry run is the default; nothing is written unless ``write=True``;
* a file that has a genre keeps it unless ``overwrite=True``;
* the genre is written as a display name (``Hip-Hop``, not the label ``hiphop``) from
  the model's ``display_names``, which a user map can override (:func:`read_genre_map`);
* when the model abstains (``not_music`` or ``uncertain``) nothing is written;
* every genre value is read and recorded (ID3 TCON, Vorbis GENRE and MP4 ``©gen`` may
  hold several);
* before a file is changed, the genre fields as they were (all values, their order,
  their absence) are saved in a SQLite database, so :func:`undo_library` can put them
  back exactly. It refuses a file whose tags changed since genrekit wrote them.

Beside the genre a ``GENREKIT`` marker (JSON: label, written genre, confidence, model)
tells later runs that genrekit tagged the file. Only tag blocks are rewritten; audio
frames stay byte for byte. ID3 frames are read as stored (no v2.3 → v2.4 translation)
and saved in the file's own ID3 version, so only the frames genrekit sets change. An
MP3's ID3v1 tag is kept byte for byte but for its genre byte, and counts as a genre.

Each file's outcome is committed to the database as soon as it is known: an interrupted
run resumes where it stopped, and a dry run's predictions are reused by a later write.

Examples
--------
>>> from genrekit import load_model
>>> model = load_model()  # doctest: +SKIP
>>> summary = tag_library(["~/Music"], model, write=True)  # doctest: +SKIP
>>> print(summary.format())  # doctest: +SKIP
tagged 412, would tag 0, kept 87, abstained 9 (4 not music, 5 uncertain), skipped 0, failed 1
>>> print(undo_library(["~/Music/Album"]).format())  # doctest: +SKIP
restored 12, nothing to undo 0, refused 0, failed 0
"""
from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import json
import math
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from .audio import shown_path
from .errors import ConfigError, EmptyAudioError, GenrekitError

MARKER = "GENREKIT"
MP4_MARKER = "----:com.genrekit:genrekit"
MP4_GENRE = "\xa9gen"
DEFAULT_DB = "genrekit-tags.sqlite"
SCHEMA_VERSION = 2  # 1: genrekit 0.1 (first genre value only, no undo records)

# FileResult.status values of a tag run. Rows in the database keep the same names.
TAGGED = "tagged"                  # genre written (this run)
WOULD_TAG = "would-tag"            # dry run: would be written
KEPT = "kept"                      # the file's own genre is kept (no --overwrite)
ABSTAINED = "abstained"            # the model abstained: nothing written
DONE = "done"                      # tagged in an earlier run, file unchanged since (not stored)
ALREADY_TAGGED = "already-tagged"  # the file carries a GENREKIT marker; --force re-tags it
UNSUPPORTED = "unsupported"        # decodable, but mutagen cannot write tags of this kind
FAILED = "failed"
SKIP_REASONS = {DONE: "done in an earlier run", ALREADY_TAGGED: "already tagged by genrekit",
                UNSUPPORTED: "tag format not supported"}
SKIPPED = frozenset(SKIP_REASONS)
# ... and of an undo run.
RESTORED = "restored"              # genre fields put back as they were
NOTHING_TO_UNDO = "nothing-to-undo"
REFUSED = "refused"                # changed since genrekit wrote it, or no record: left alone

ABSTAIN_TEXT = {"not_music": "not music", "uncertain": "uncertain"}


class TagError(GenrekitError):
    """A file's tags could not be read or written. ``path`` and ``reason`` say which and why."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class UnsupportedTagFormatError(TagError):
    """mutagen cannot write tags into this kind of file."""


class GenreMapError(ConfigError):
    """A genre map (``--genre-map``) is unreadable or invalid; the message names file and entry."""

    def __init__(self, source, reason: str):
        self.path = str(source)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ResultsDatabaseError(GenrekitError):
    """The results database cannot be opened, migrated or used."""


class TaggingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a tag or undo run; ``summary`` holds what was done (and saved)."""

    def __init__(self, summary):
        super().__init__("interrupted")
        self.summary = summary


# --------------------------------------------------------------------------- the marker

@dataclass(frozen=True)
class GenrekitTag:
    """The marker genrekit leaves in a file it has tagged.

    ``genre`` is the model's label, ``written`` the genre text written into the file.
    """

    genre: str | None
    confidence: float | None
    model_id: str | None
    raw: str = ""
    written: str | None = None


def _marker_text(label: str, written: str, confidence: float, model_id: str) -> str:
    return json.dumps({"genre": label, "written": written, "confidence": round(float(confidence), 4),
                       "model": model_id}, separators=(",", ":"), ensure_ascii=False)


def _parse_marker(text: str) -> GenrekitTag:
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):  # a marker written by hand or by something else
        return GenrekitTag(None, None, None, text)
    conf = data.get("confidence")
    # genrekit 0.1 wrote the label itself as the genre and had no "written" field.
    return GenrekitTag(data.get("genre"), float(conf) if isinstance(conf, (int, float)) else None,
                       data.get("model"), text, data.get("written") or data.get("genre"))


# --------------------------------------------------------------------------- tag families
# Each family knows the fields genrekit reads and changes: the genre and the marker.
# ``snapshot`` returns them as JSON-able data that ``restore`` puts back exactly.

class _ID3:
    name = "id3"
    keys = ("TCON", f"TXXX:{MARKER}")

    @staticmethod
    def types():
        from mutagen.aiff import AIFF
        from mutagen.mp3 import MP3
        from mutagen.wave import WAVE

        return (MP3, WAVE, AIFF)

    @staticmethod
    def load_as_stored(audio, path: Path) -> None:
        # mutagen translates v2.3 frames to v2.4 and merges an ID3v1 tag in as it loads;
        # saving that would change frames genrekit never set ("(17)" → "Rock", TYER → TDRC).
        # The ID3v1 tag is kept apart, as bytes (see _TagFile.v1): mutagen would rebuild it
        # from the ID3v2 frames on save, zeroing the fields only ID3v1 holds.
        tags = audio.tags
        if tags is not None and tags.version < (2, 0, 0):  # only an ID3v1 tag, read in as frames
            audio.tags = None
        elif tags is not None and tags.version >= (2, 3, 0):
            audio.tags = type(tags)(path, translate=False, load_v1=False)

    @staticmethod
    def genres(tags) -> list[str]:
        frame = tags.get("TCON")
        return list(frame.genres) if frame is not None else []

    @staticmethod
    def marker(tags) -> str | None:
        frame = tags.get(f"TXXX:{MARKER}")
        return str(frame.text[0]) if frame is not None and frame.text else None

    @staticmethod
    def snapshot(tags) -> dict:
        frames = {}
        for key in _ID3.keys:
            frame = tags.get(key)
            if frame is not None:
                frames[key] = {"encoding": int(frame.encoding), "text": [str(t) for t in frame.text]}
        return {"frames": frames}

    @staticmethod
    def write(tags, genre: str, marker: str) -> None:
        from mutagen.id3 import TCON, TXXX

        tags.setall("TCON", [TCON(encoding=3, text=[genre])])  # UTF-8; UTF-16 when saved as v2.3
        tags.setall(f"TXXX:{MARKER}", [TXXX(encoding=3, desc=MARKER, text=[marker])])

    @staticmethod
    def restore(tags, before: dict) -> None:
        from mutagen.id3 import TCON, TXXX

        for key in _ID3.keys:
            tags.delall(key)
        frames = before["frames"]
        if "TCON" in frames:
            tags.add(TCON(**frames["TCON"]))
        if f"TXXX:{MARKER}" in frames:
            tags.add(TXXX(desc=MARKER, **frames[f"TXXX:{MARKER}"]))

    @staticmethod
    def save(audio) -> None:
        # Keep the file's ID3 version: v2.3 players do not read v2.4 tags.
        audio.save(v2_version=3 if audio.tags.version[:2] == (2, 3) else 4)

    @staticmethod
    def is_empty(tags) -> bool:
        return len(tags) == 0 and not tags.unknown_frames

    @staticmethod
    def digest(tags, h) -> None:
        h.update(repr(tuple(tags.version)).encode())
        for key in sorted(tags.keys()):
            h.update(f"{key}\0{tags[key]!r}\0".encode("utf-8", "surrogatepass"))
        for data in tags.unknown_frames:
            h.update(bytes(data))


class _Vorbis:
    name = "vorbis"
    keys = ("genre", MARKER.lower())  # Vorbis comment names are case-insensitive

    @staticmethod
    def types():
        from mutagen.flac import FLAC
        from mutagen.oggflac import OggFLAC
        from mutagen.oggopus import OggOpus
        from mutagen.oggspeex import OggSpeex
        from mutagen.oggvorbis import OggVorbis

        return (FLAC, OggVorbis, OggOpus, OggFLAC, OggSpeex)

    @staticmethod
    def load_as_stored(audio, path: Path) -> None:
        pass

    @staticmethod
    def genres(tags) -> list[str]:
        return [v for k, v in tags if k.lower() == "genre"]

    @staticmethod
    def marker(tags) -> str | None:
        return next((v for k, v in tags if k.lower() == MARKER.lower()), None)

    @staticmethod
    def snapshot(tags) -> dict:
        # Positions too: a comment list is ordered, and undo puts each entry back in place.
        return {"entries": [[i, k, v] for i, (k, v) in enumerate(tags) if k.lower() in _Vorbis.keys]}

    @staticmethod
    def write(tags, genre: str, marker: str) -> None:
        tags["GENRE"] = [genre]
        tags[MARKER] = [marker]

    @staticmethod
    def restore(tags, before: dict) -> None:
        tags[:] = [(k, v) for k, v in tags if k.lower() not in _Vorbis.keys]
        for index, key, value in before["entries"]:  # ascending: each lands where it was
            tags.insert(index, (key, value))

    @staticmethod
    def save(audio) -> None:
        audio.save()

    @staticmethod
    def is_empty(tags) -> bool:
        return len(tags) == 0

    @staticmethod
    def digest(tags, h) -> None:
        h.update(f"{tags.vendor}\0".encode("utf-8", "surrogatepass"))
        for key, value in tags:
            h.update(f"{key}\0{value}\0".encode("utf-8", "surrogatepass"))


class _MP4:
    name = "mp4"
    keys = (MP4_GENRE, MP4_MARKER)

    @staticmethod
    def types():
        from mutagen.mp4 import MP4

        return (MP4,)

    @staticmethod
    def load_as_stored(audio, path: Path) -> None:
        pass

    @staticmethod
    def genres(tags) -> list[str]:
        return [str(v) for v in tags.get(MP4_GENRE, [])]

    @staticmethod
    def marker(tags) -> str | None:
        values = tags.get(MP4_MARKER)
        return bytes(values[0]).decode("utf-8", "replace") if values else None

    @staticmethod
    def snapshot(tags) -> dict:
        genre, marker = tags.get(MP4_GENRE), tags.get(MP4_MARKER)
        return {"genre": None if genre is None else [str(v) for v in genre],
                "marker": None if marker is None else [
                    {"data": base64.b64encode(bytes(v)).decode("ascii"), "format": int(v.dataformat)}
                    for v in marker]}

    @staticmethod
    def write(tags, genre: str, marker: str) -> None:
        from mutagen.mp4 import AtomDataType, MP4FreeForm

        tags[MP4_GENRE] = [genre]
        tags[MP4_MARKER] = [MP4FreeForm(marker.encode("utf-8"), dataformat=AtomDataType.UTF8)]

    @staticmethod
    def restore(tags, before: dict) -> None:
        from mutagen.mp4 import MP4FreeForm

        for key in _MP4.keys:
            tags.pop(key, None)
        if before["genre"] is not None:
            tags[MP4_GENRE] = list(before["genre"])
        if before["marker"] is not None:
            tags[MP4_MARKER] = [MP4FreeForm(base64.b64decode(v["data"]), dataformat=v["format"])
                                for v in before["marker"]]

    @staticmethod
    def save(audio) -> None:
        audio.save()

    @staticmethod
    def is_empty(tags) -> bool:
        return len(tags) == 0

    @staticmethod
    def digest(tags, h) -> None:
        for key in sorted(tags.keys()):
            h.update(f"{key}\0{tags[key]!r}\0".encode("utf-8", "surrogatepass"))


_FAMILIES = (_ID3, _Vorbis, _MP4)


# ID3v1: a 128-byte block at the end of an MP3 whose last byte is a genre number. genrekit
# keeps it byte for byte and changes only that byte (mutagen can only rebuild the whole
# block from the ID3v2 frames, which zeroes what only ID3v1 holds).

def _read_id3v1(path: Path) -> bytes | None:
    """The file's ID3v1 block as stored, found as mutagen finds it; None without one."""
    from mutagen.id3._id3v1 import find_id3v1

    with open(path, "rb") as f:
        frames, offset = find_id3v1(f)
        if frames is None:
            return None
        f.seek(offset, os.SEEK_END)
        return f.read()


def _put_id3v1(path: Path, block: bytes | None) -> None:
    """Make ``block`` the file's ID3v1 block (none if None), replacing whatever is there."""
    from mutagen.id3._id3v1 import find_id3v1

    with open(path, "r+b") as f:
        frames, offset = find_id3v1(f)
        f.seek(offset if frames is not None else 0, os.SEEK_END)
        f.truncate()
        f.write(block or b"")


def _id3v1_genres(block: bytes | None) -> list[str]:
    from mutagen.id3 import TCON

    if block is None or len(block) != 128 or block[127] >= len(TCON.GENRES):
        return []
    return [TCON.GENRES[block[127]]]


def _other_genres(path: Path, audio) -> list[str]:
    """Genres in a tag block genrekit reads but does not write: APEv2 in an MP3 (foobar2000,
    MP3Gain), RIFF INFO ``IGNR`` in a WAV (Windows, ffmpeg). Players show them, so they count."""
    from mutagen.mp3 import MP3
    from mutagen.wave import WAVE

    try:
        if isinstance(audio, MP3):
            return _apev2_genres(path)
        return _riff_info_genres(path) if isinstance(audio, WAVE) else []
    except Exception:  # noqa: BLE001 - a damaged secondary tag must not stop the file's tagging
        return []


def _apev2_genres(path: Path) -> list[str]:
    from mutagen.apev2 import APENoHeaderError, APEv2

    try:
        value = APEv2(path).get("Genre")
    except APENoHeaderError:
        return []
    return [str(g) for g in value] if value is not None and value.kind == 0 else []


_MAX_INFO_BYTES = 1 << 20  # an INFO list holds a few short texts; a larger LIST chunk is something else


def _riff_info_genres(path: Path) -> list[str]:
    """The ``IGNR`` texts of a WAV's ``LIST``/``INFO`` chunks. RIFF INFO has no encoding field:
    UTF-8 where the bytes are valid UTF-8, else Windows-1252 (what Windows programs wrote),
    else Latin-1, so that ``Música`` written by either reads back as written."""
    genres = []
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return []
        while len(chunk := f.read(8)) == 8:
            size = int.from_bytes(chunk[4:], "little")
            if chunk[:4] == b"LIST" and 4 <= size <= _MAX_INFO_BYTES:
                body = f.read(size)
                if body[:4] == b"INFO":
                    genres += _info_texts(body[4:], b"IGNR")
                f.seek(size & 1, os.SEEK_CUR)
            else:
                f.seek(size + (size & 1), os.SEEK_CUR)
    return [g for g in genres if g.strip()]


def _info_texts(body: bytes, key: bytes) -> list[str]:
    texts, at = [], 0
    while at + 8 <= len(body):
        size = int.from_bytes(body[at + 4: at + 8], "little")
        if body[at: at + 4] == key:
            texts.append(_riff_text(body[at + 8: at + 8 + size].split(b"\0", 1)[0]))
        at += 8 + size + (size & 1)
    return texts


def _riff_text(raw: bytes) -> str:
    for encoding in ("utf-8", "cp1252"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            pass
    return raw.decode("latin-1")


def _id3v1_with_genre(block: bytes | None, genre: str) -> bytes | None:
    """``block`` with its genre byte set to ``genre`` (255, "none", if ID3v1 lacks it)."""
    from mutagen.id3 import TCON

    if block is None or len(block) != 128:
        return block
    number = next((i for i, g in enumerate(TCON.GENRES) if g.lower() == genre.lower()), 255)
    return block[:127] + bytes([number])


class _TagFile:
    """An audio file opened with mutagen, with the tag family genrekit handles in it."""

    def __init__(self, path: Path):
        import mutagen

        self.path = path
        try:
            audio = mutagen.File(path)
        except (mutagen.MutagenError, OSError) as e:
            raise TagError(path, _NO_SIZE if _unsized_container(path) else f"cannot read tags ({_why(e)})") from None
        if audio is None:
            raise UnsupportedTagFormatError(path, "tag format not supported (unknown container)")
        family = next((f for f in _FAMILIES if isinstance(audio, f.types())), None)
        if family is None:
            raise UnsupportedTagFormatError(path, f"tag format not supported ({type(audio).__name__})")
        try:
            family.load_as_stored(audio, path)
        except (mutagen.MutagenError, OSError) as e:
            raise TagError(path, f"cannot read tags ({_why(e)})") from None
        self.audio, self.family = audio, family
        self.has_v1 = isinstance(audio, _mp3_type())  # ID3v1 lives at the end of MP3s only
        try:
            self.v1 = _read_id3v1(path) if self.has_v1 else None
        except OSError as e:
            raise TagError(path, f"cannot read tags ({_why(e)})") from None
        self.other_genres = _other_genres(path, audio)

    @property
    def tags(self):
        return self.audio.tags

    def genres(self) -> list[str]:
        """Every genre value, in order, blank ones left out (ID3v1's where ID3v2 has none, then
        APEv2's or RIFF INFO's)."""
        found = [] if self.tags is None else [g for g in self.family.genres(self.tags) if g.strip()]
        return found or _id3v1_genres(self.v1) or self.other_genres

    def marker_text(self) -> str | None:
        return None if self.tags is None else self.family.marker(self.tags)

    def marker(self) -> GenrekitTag | None:
        text = self.marker_text()
        return None if text is None else _parse_marker(text)

    def snapshot(self) -> dict:
        """The fields genrekit may change, as they are now (JSON-able, for undo)."""
        fields = {} if self.tags is None else self.family.snapshot(self.tags)
        if self.has_v1:
            fields["v1"] = None if self.v1 is None else base64.b64encode(self.v1).decode("ascii")
        return json.loads(json.dumps({"format": self.family.name, "had_tags": self.tags is not None, **fields}))

    def digest(self, with_v1: bool = True) -> str:
        """A hash of every tag value in the file (not only genrekit's): did anything change?

        ``with_v1=False`` leaves the ID3v1 block out, as genrekit did before it kept that block
        apart (undo records without ``"v1"``).
        """
        h = hashlib.sha256(self.family.name.encode())
        if self.tags is not None:
            self.family.digest(self.tags, h)
        if with_v1 and self.v1 is not None:
            h.update(b"ID3v1\0" + self.v1)
        return h.hexdigest()

    def check_writable(self) -> None:
        """Raise TagError if genrekit cannot write this file's tags (checked in a dry run too)."""
        if self.family is _ID3 and _unsized_container(self.path):
            raise TagError(self.path, _NO_SIZE)

    def write(self, genre: str, marker: str) -> None:
        self.check_writable()
        if self.tags is None:
            self.audio.add_tags()
        self.family.write(self.tags, genre, marker)
        self._save(self.family.save, _id3v1_with_genre(self.v1, genre))

    def restore(self, before: dict) -> None:
        if before["format"] != self.family.name:
            raise TagError(self.path, f"saved tags are {before['format']}, the file has {self.family.name}")
        if self.tags is None:
            self.audio.add_tags()
        self.family.restore(self.tags, before if before["had_tags"] else _EMPTY[self.family.name])
        v1 = self._saved_v1(before)
        if not before["had_tags"] and self.family.is_empty(self.tags):
            self._save(lambda audio: audio.delete(), v1)  # there was no tag block at all
        else:
            self._save(self.family.save, v1)

    def _saved_v1(self, before: dict) -> bytes | None:
        if "v1" not in before:  # recorded before genrekit kept ID3v1 apart: its genre follows ID3v2's,
            genres = _genres_of(before) if before["had_tags"] else []  # as mutagen's save made it then
            return _id3v1_with_genre(self.v1, genres[0] if genres else "")
        return None if before["v1"] is None else base64.b64decode(before["v1"])

    def _save(self, save: Callable, v1: bytes | None) -> None:
        """Save with mutagen, then put ``v1`` back as the ID3v1 block (MP3 only)."""
        import mutagen

        try:
            with _sigint_deferred():
                save(self.audio)
                if self.has_v1:
                    _put_id3v1(self.path, v1)
        except (mutagen.MutagenError, OSError) as e:
            raise TagError(self.path, f"cannot write tags ({_why(e)})") from None
        except Exception as e:  # noqa: BLE001 - a file mutagen chokes on must not stop the batch
            raise TagError(self.path, f"cannot write tags (unexpected error: {type(e).__name__}: {e})") from None


def _why(error: Exception) -> str:
    """An error's reason without the path, which the line already names (``permission denied``)."""
    import errno

    if error.args and isinstance(error.args[0], OSError):  # mutagen's MutagenError wraps the OSError
        error = error.args[0]
    if isinstance(error, OSError) and error.errno == errno.ELOOP:
        return "symlink loop"  # as genrekit.audio says it
    if isinstance(error, OSError) and error.strerror:
        return error.strerror[0].lower() + error.strerror[1:]
    return str(error)


_NO_SIZE = ("cannot write tags (the header gives no size, as when written to a pipe or not finished; "
            "rewrite the file, e.g. with ffmpeg, to tag it)")


def _unsized_container(path: Path) -> bool:
    """A WAV (RIFF) or AIFF (FORM) whose size is 0 or 0xFFFFFFFF (written to a pipe, or not
    finished): mutagen cannot parse the one, and appends its chunk to the other, then fails
    to count it in that size."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return head[:4] in (b"RIFF", b"FORM") and head[4:] in (bytes(4), b"\xff" * 4)


def _mp3_type():
    from mutagen.mp3 import MP3

    return MP3


_EMPTY = {"id3": {"frames": {}}, "vorbis": {"entries": []}, "mp4": {"genre": None, "marker": None}}


def _same_fields(a: dict, b: dict) -> bool:
    """Snapshots equal, taking "no tag block" as "a tag block without genre or marker"."""
    ignored = {"had_tags"} | ({"v1"} if "v1" not in a or "v1" not in b else set())  # older records lack it

    def fields(snap: dict) -> dict:
        v1 = {"v1": snap["v1"]} if "v1" not in ignored and "v1" in snap else {}
        return {k: v for k, v in snap.items() if k not in ignored} if snap["had_tags"] else \
            {"format": snap["format"], **_EMPTY[snap["format"]], **v1}

    return fields(a) == fields(b)


class FileTags(NamedTuple):
    """A file's genre values (all of them, in order) and its genrekit marker."""

    genres: list[str]
    marker: GenrekitTag | None


def read_tags(path) -> FileTags:
    """The file's genre values and its genrekit marker (None where absent).

    Raises
    ------
    UnsupportedTagFormatError
        mutagen cannot tag this kind of file.
    TagError
        The tags cannot be read (e.g. a corrupt header).

    Examples
    --------
    >>> read_tags("song.flac")  # doctest: +SKIP
    FileTags(genres=['Rock', 'Indie'], marker=None)
    """
    tagged = _TagFile(Path(path))
    return FileTags(tagged.genres(), tagged.marker())


def read_genrekit_tag(path) -> GenrekitTag | None:
    """The genrekit marker in ``path``'s tags, or None if genrekit has not tagged it.

    Examples
    --------
    >>> read_genrekit_tag("song.mp3")  # doctest: +SKIP
    GenrekitTag(genre='hiphop', confidence=0.91, model_id='genrekit-gtzan@0.1.0+20261202T215843Z', raw='...', written='Hip-Hop')
    """
    return read_tags(path).marker


def write_genre_tag(path, genre: str, confidence: float, model_id: str, label: str | None = None) -> dict:
    """Write ``genre`` and the genrekit marker into ``path``'s own tags, in place.

    Only the tag block is rewritten (by mutagen); the audio frames are not touched.
    Ctrl-C during the write is held back until the file is consistent again. This writes
    whatever is there; :func:`tag_library` is what keeps existing genres and records undo.

    Parameters
    ----------
    genre : str
        The text written into the genre field (e.g. ``"Hip-Hop"``).
    label : str or None
        The model's label, kept in the marker (default: ``genre``).

    Returns
    -------
    dict
        The genre fields as they were, for :func:`restore_tags`.

    Raises
    ------
    UnsupportedTagFormatError, TagError

    Examples
    --------
    >>> before = write_genre_tag("song.mp3", "Hip-Hop", 0.91, "my-model@1", label="hiphop")  # doctest: +SKIP
    >>> restore_tags("song.mp3", before)  # doctest: +SKIP
    """
    tagged = _TagFile(Path(path))
    before = tagged.snapshot()
    tagged.write(genre, _marker_text(label or genre, genre, confidence, model_id))
    return before


def restore_tags(path, before: dict) -> None:
    """Put back the genre fields saved by :func:`write_genre_tag` (no check of later changes)."""
    _TagFile(Path(path)).restore(before)


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


# --------------------------------------------------------------------------- genre map

def read_genre_map(path) -> dict[str, str]:
    """Read a user's label → display name map: CSV ``label,display`` or a JSON object.

    A CSV may start with the header ``label,display``. Labels are checked against the
    model later (:func:`display_names`).

    Raises
    ------
    GenreMapError
        Unreadable file, unknown format, a malformed line, a blank or duplicate entry.

    Examples
    --------
    >>> read_genre_map("genres.csv")  # doctest: +SKIP
    {'hiphop': 'Hip Hop', 'metal': 'Heavy Metal'}
    """
    path = Path(path)
    if path.is_dir():
        raise GenreMapError(path, "is a folder, not a genre map file")
    if not path.is_file():
        raise GenreMapError(path, "no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM from a spreadsheet is fine
    except (OSError, UnicodeDecodeError) as e:
        raise GenreMapError(path, f"cannot read ({e})") from None
    suffix = path.suffix.lower()
    if suffix == ".json":
        entries = _json_entries(path, text)
    elif suffix == ".csv":
        entries = _csv_entries(path, text)
    else:
        raise GenreMapError(path, "unknown genre map format: use .csv (label,display) or .json")
    return _checked_map(path, entries)


def _json_entries(path: Path, text: str) -> list[tuple[str, object, object]]:
    if not text.lstrip().startswith("{"):
        raise GenreMapError(path, 'must be a JSON object such as {"hiphop": "Hip-Hop"}')
    try:
        pairs = json.loads(text, object_pairs_hook=lambda pairs: pairs)  # keeps duplicate keys
    except ValueError as e:
        raise GenreMapError(path, f"not valid JSON ({e})") from None
    return [(f"key {label!r}", label, display) for label, display in pairs]


def _csv_entries(path: Path, text: str) -> list[tuple[str, object, object]]:
    entries, header_seen = [], False
    for line, row in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        if not header_seen and not entries and [c.lower() for c in cells] == ["label", "display"]:
            header_seen = True
            continue
        if len(cells) != 2:
            raise GenreMapError(path, f"line {line}: expected 2 fields label,display, got {len(cells)}")
        entries.append((f"line {line}", cells[0], cells[1]))
    return entries


def _checked_map(path: Path, entries) -> dict[str, str]:
    names: dict[str, str] = {}
    for where, label, display in entries:
        if not isinstance(display, str):
            raise GenreMapError(path, f"{where}: the display name must be a string, not {display!r}")
        label, display = label.strip(), display.strip()
        if not label or not display:
            raise GenreMapError(path, f"{where}: empty label or display name")
        if any(ord(c) < 32 for c in display):
            raise GenreMapError(path, f"{where}: control character in display name {display!r}")
        if label in names:
            raise GenreMapError(path, f"{where}: label {label!r} given twice")
        names[label] = display
    if not names:
        raise GenreMapError(path, "no label,display entries")
    return names


def display_names(model, genre_map: Mapping[str, str] | str | os.PathLike | None = None) -> dict[str, str]:
    """Label → genre text to write: the model's ``display_names``, overridden by ``genre_map``.

    ``genre_map`` is a dict or a file for :func:`read_genre_map`; it may cover only some
    labels, but every label in it must be one of the model's.

    Examples
    --------
    >>> display_names(model, {"hiphop": "Rap"})["hiphop"]  # doctest: +SKIP
    'Rap'
    """
    names = {str(k): str(v) for k, v in dict(model.display_names).items()}
    if genre_map is None:
        return names
    source = "genre map"
    if isinstance(genre_map, (str, os.PathLike)):
        source, genre_map = str(genre_map), read_genre_map(genre_map)
    unknown = sorted(set(genre_map) - set(names))
    if unknown:
        raise GenreMapError(source, f"unknown label(s) {', '.join(map(repr, unknown))}; "
                                    f"the model's labels are {', '.join(names)}")
    return {**names, **genre_map}


# --------------------------------------------------------------------------- database

_FILE_COLUMNS = ["path", "status", "genre", "tag_genre", "abstain", "confidence", "old_genres", "written",
                 "model", "min_confidence", "error", "size", "mtime_ns", "probabilities", "updated_at"]
_FILES_TABLE = """CREATE TABLE {name} (
    path TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    genre TEXT,              -- the model's label (NULL when it abstained)
    tag_genre TEXT,          -- the genre text written, or to be written
    abstain TEXT,            -- not_music / uncertain
    confidence REAL,
    old_genres TEXT,         -- JSON list: the file's genre values before (NULL: unknown)
    written INTEGER NOT NULL DEFAULT 0,
    model TEXT,
    min_confidence REAL,
    error TEXT,              -- why a file was skipped, kept, abstained or failed
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    probabilities TEXT,      -- JSON: label -> probability
    updated_at TEXT NOT NULL
)"""
_UNDO_TABLE = """CREATE TABLE undo (
    path TEXT PRIMARY KEY,
    before TEXT NOT NULL,    -- JSON: the genre fields before genrekit first wrote the file
    marker TEXT NOT NULL,    -- the marker genrekit wrote
    digest TEXT,             -- hash of all tag values after the write; NULL while writing
    written_at TEXT NOT NULL
)"""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@contextlib.contextmanager
def _transaction(con: sqlite3.Connection):
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def open_db(db_path, create: bool = True) -> sqlite3.Connection:
    """Open the results database, creating it (``create``) or migrating a version-1 one.

    A database of schema version 1 (genrekit 0.1) is migrated in place after a copy is
    kept beside it as ``<name>.schema1.bak``.

    Raises
    ------
    ResultsDatabaseError
        Missing (with ``create=False``), not a genrekit database, or from a newer genrekit.

    Examples
    --------
    >>> con = open_db("genrekit-tags.sqlite")  # doctest: +SKIP
    """
    db_path = Path(db_path)
    if db_path.is_dir():
        raise ResultsDatabaseError(f"{db_path}: is a folder; give a file name")
    if not db_path.exists() and not db_path.parent.is_dir():
        raise ResultsDatabaseError(f"{db_path}: the folder {db_path.parent} does not exist")
    if not create and not db_path.is_file():
        raise ResultsDatabaseError(f"{db_path}: no such results database")
    try:
        con = sqlite3.connect(db_path, timeout=30, isolation_level=None)
        con.row_factory = sqlite3.Row
        try:
            _prepare_schema(con, db_path)
        except BaseException:
            con.close()
            raise
    except sqlite3.DatabaseError as e:
        if not db_path.exists():  # e.g. a folder genrekit may not write in
            raise ResultsDatabaseError(f"{db_path}: cannot create the results database ({e}); "
                                       "give another --db") from None
        raise ResultsDatabaseError(f"{db_path}: cannot use as a genrekit results database ({e}); "
                                   "move it aside or give another --db") from None
    return con


def _prepare_schema(con: sqlite3.Connection, db_path: Path) -> None:
    version = _user_version(con)
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise ResultsDatabaseError(f"{db_path}: results database has schema version {version}, newer than this "
                                   f"genrekit reads ({SCHEMA_VERSION}); upgrade genrekit or give another --db")
    if version == 1:
        with contextlib.closing(sqlite3.connect(db_path.with_name(db_path.name + ".schema1.bak"))) as copy:
            con.backup(copy)
    with _transaction(con):
        version = _user_version(con)  # again, inside the lock: another run may have done it meanwhile
        if version == 0:
            _create_tables(con, db_path)
        elif version == 1:
            _migrate_from_v1(con)


def _user_version(con: sqlite3.Connection) -> int:
    return con.execute("PRAGMA user_version").fetchone()[0]


def _create_tables(con: sqlite3.Connection, db_path: Path) -> None:
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    if tables:
        raise ResultsDatabaseError(f"{db_path}: not a genrekit results database (it has tables "
                                   f"{', '.join(tables)}); give another --db")
    con.execute(_FILES_TABLE.format(name="files"))
    con.execute(_UNDO_TABLE)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _migrate_from_v1(con: sqlite3.Connection) -> None:
    """Schema 1 → 2: one genre value becomes a list, low-confidence becomes an abstention."""
    con.create_function("genrekit_json_list", 1, lambda v: None if v is None else json.dumps([v]))
    con.execute(_FILES_TABLE.format(name="files_v2"))
    con.execute(f"""INSERT INTO files_v2 ({', '.join(_FILE_COLUMNS)})
        SELECT path,
               CASE status WHEN 'low-confidence' THEN '{ABSTAINED}' ELSE status END,
               CASE status WHEN 'low-confidence' THEN NULL ELSE genre END,
               CASE WHEN written THEN genre END,
               CASE status WHEN 'low-confidence' THEN 'uncertain' END,
               confidence, genrekit_json_list(old_genre), written, model, NULL, error,
               size, mtime_ns, probabilities, updated_at
        FROM files""")
    con.execute("DROP TABLE files")
    con.execute("ALTER TABLE files_v2 RENAME TO files")
    con.execute(_UNDO_TABLE)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


class _Store:
    """The two tables: ``files`` (one row per file, last outcome) and ``undo``."""

    def __init__(self, con: sqlite3.Connection):
        self.con = con

    def file(self, key: str):
        return self.con.execute("SELECT * FROM files WHERE path = ?", (_db_path(key),)).fetchone()

    def undo(self, key: str):
        return self.con.execute("SELECT * FROM undo WHERE path = ?", (_db_path(key),)).fetchone()

    def put_file(self, row: dict) -> None:
        with _transaction(self.con):
            self._put_file(row)

    def _put_file(self, row: dict) -> None:
        row = {**row, "path": _db_path(row["path"]), "updated_at": _now()}
        self.con.execute(f"INSERT OR REPLACE INTO files ({', '.join(_FILE_COLUMNS)}) VALUES "
                         f"({', '.join('?' * len(_FILE_COLUMNS))})", [row.get(c) for c in _FILE_COLUMNS])

    def begin_write(self, key: str, before: dict, marker: str) -> None:
        """Save the original fields before the file changes (digest NULL: write in progress)."""
        with _transaction(self.con):
            self.con.execute("INSERT OR REPLACE INTO undo (path, before, marker, digest, written_at) "
                             "VALUES (?, ?, ?, NULL, ?)", (_db_path(key), json.dumps(before), marker, _now()))

    def abort_write(self, key: str, previous) -> None:
        with _transaction(self.con):
            self.con.execute("DELETE FROM undo WHERE path = ?", (_db_path(key),))
            if previous is not None:
                self.con.execute("INSERT INTO undo (path, before, marker, digest, written_at) VALUES (?, ?, ?, ?, ?)",
                                 tuple(previous))

    def end_write(self, key: str, digest: str, row: dict) -> None:
        with _transaction(self.con):
            self.con.execute("UPDATE undo SET digest = ?, written_at = ? WHERE path = ?",
                             (digest, _now(), _db_path(key)))
            self._put_file(row)

    def end_undo(self, key: str, st) -> None:
        with _transaction(self.con):
            self.con.execute("DELETE FROM undo WHERE path = ?", (_db_path(key),))
            self.con.execute("UPDATE files SET status = ?, written = 0, error = NULL, size = ?, mtime_ns = ?, "
                             "updated_at = ? WHERE path = ?",
                             (RESTORED, st.st_size, st.st_mtime_ns, _now(), _db_path(key)))

    def drop_undo(self, key: str) -> None:
        with _transaction(self.con):
            self.con.execute("DELETE FROM undo WHERE path = ?", (_db_path(key),))

    def undo_keys(self) -> list[str]:
        """Every file genrekit wrote or restored, per this database."""
        rows = self.con.execute(f"SELECT path FROM undo UNION SELECT path FROM files "
                                f"WHERE written = 1 OR status = '{RESTORED}' ORDER BY path")
        return sorted(os.fsdecode(r[0]) if isinstance(r[0], bytes) else r[0] for r in rows)


def _db_path(key: str) -> str | bytes:
    """A path as the database stores it: text, or the file name's bytes (a BLOB) where it is
    not valid UTF-8 (SQLite text must be), so that every file name is kept exactly."""
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(key)
    return key




def export_csv(db_path, csv_path) -> int:
    """Write the results database as CSV, atomically; return the number of rows.

    One row per file with its status (``tagged``, ``would-tag``, ``kept``, ``abstained``
    with ``abstain`` = ``not_music``/``uncertain``, ``restored``, ...), the label, the
    genre text written, the old genre values (JSON list) and the probabilities (JSON).

    Examples
    --------
    >>> export_csv("genrekit-tags.sqlite", "tags.csv")  # doctest: +SKIP
    120
    """
    from .io import atomic_path

    con = open_db(db_path, create=False)
    try:
        rows = con.execute(f"SELECT {', '.join(_FILE_COLUMNS)} FROM files ORDER BY path")
        with atomic_path(csv_path) as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(_FILE_COLUMNS)
                n = 0
                for row in rows:
                    writer.writerow((shown_path(row[0]), *tuple(row)[1:]))
                    n += 1
    finally:
        con.close()
    return n


# --------------------------------------------------------------------------- results

def _quoted(genres) -> str:
    return ", ".join(repr(g) for g in genres)


def _genre_word(genres) -> str:
    return "genres" if len(genres) > 1 else "genre"


@dataclass
class FileResult:
    """What happened to one file in a tag or undo run."""

    path: str
    status: str
    genre: str | None = None            # the model's label
    tag_genre: str | None = None        # the genre text written (or to be)
    confidence: float | None = None
    model_id: str | None = None
    old_genres: list[str] | None = None
    abstain: str | None = None
    reason: str = ""

    def describe(self) -> str:
        """One line for the user, e.g. ``a.mp3: would write genre 'Hip-Hop' (hiphop 91%)``."""
        return f"{shown_path(self.path, one_line=True)}: {self._message()}"

    def _message(self) -> str:
        if self.status in (TAGGED, WOULD_TAG) and self.old_genres == [self.tag_genre]:
            # --force on genrekit's own genre, predicted again: the genre stays, the marker is renewed.
            done = "only genrekit's marker rewritten" if self.status == TAGGED else "would rewrite only genrekit's marker"
            return (f"genre already {self.tag_genre!r}, the same as predicted "
                    f"({self.genre} {self.confidence:.0%}); {done}")
        if self.status in (TAGGED, WOULD_TAG):
            verb = "wrote" if self.status == TAGGED else "would write"
            was = f", replacing {_quoted(self.old_genres)}" if self.old_genres else ""
            return f"{verb} genre {self.tag_genre!r} ({self.genre} {self.confidence:.0%}){was}"
        if self.status == ABSTAINED:
            return f"abstained ({self.reason}); nothing written"
        if self.status == FAILED:
            return f"failed: {self.reason}"
        if self.status == REFUSED:
            return f"not restored: {self.reason}"
        return self.reason


@dataclass
class _Summary:
    """The results of a run over files, and how far it got."""

    results: list[FileResult] = field(default_factory=list)
    total: int = 0
    interrupted: bool = False

    def _with(self, *statuses) -> list[FileResult]:
        return [r for r in self.results if r.status in statuses]


@dataclass
class TagSummary(_Summary):
    """Outcome of :func:`tag_library`: one :class:`FileResult` per file handled."""

    @property
    def tagged(self) -> list[FileResult]:
        return self._with(TAGGED)

    @property
    def would_tag(self) -> list[FileResult]:
        return self._with(WOULD_TAG)

    @property
    def kept(self) -> list[FileResult]:
        return self._with(KEPT)

    @property
    def abstained(self) -> list[FileResult]:
        return self._with(ABSTAINED)

    @property
    def skipped(self) -> list[FileResult]:
        return self._with(*SKIPPED)

    @property
    def failed(self) -> list[FileResult]:
        return self._with(FAILED)

    def format(self) -> str:
        """The end-of-run report: counts, reasons and every failure."""
        lines = [f"tagged {len(self.tagged)}, would tag {len(self.would_tag)}, kept {len(self.kept)}, "
                 f"abstained {len(self.abstained)}{self._abstain_counts()}, "
                 f"skipped {len(self.skipped)}{self._skip_counts()}, failed {len(self.failed)}"]
        if self.interrupted:
            lines.append(f"interrupted after {len(self.results)} of {self.total} files; run again to resume")
        if self.failed:
            lines.append("failures:")
            lines.extend(f"  {shown_path(r.path, one_line=True)}: {r.reason}" for r in self.failed)
        return "\n".join(lines)

    def _abstain_counts(self) -> str:
        counts = {text: sum(r.abstain == k for r in self.abstained) for k, text in ABSTAIN_TEXT.items()}
        return _counts_in_brackets(counts)

    def _skip_counts(self) -> str:
        return _counts_in_brackets({text: len(self._with(status)) for status, text in SKIP_REASONS.items()})


def _counts_in_brackets(counts: dict[str, int]) -> str:
    """`` (2 not music, 1 uncertain)``; empty when all counts are 0."""
    parts = [f"{n} {text}" for text, n in counts.items() if n]
    return f" ({', '.join(parts)})" if parts else ""


@dataclass
class UndoSummary(_Summary):
    """Outcome of :func:`undo_library`: one :class:`FileResult` per file considered."""

    @property
    def restored(self) -> list[FileResult]:
        return self._with(RESTORED)

    @property
    def nothing_to_undo(self) -> list[FileResult]:
        return self._with(NOTHING_TO_UNDO)

    @property
    def refused(self) -> list[FileResult]:
        return self._with(REFUSED)

    @property
    def failed(self) -> list[FileResult]:
        return self._with(FAILED)

    def format(self) -> str:
        """The end-of-run report: counts, then every refused and failed file with its reason."""
        lines = [f"restored {len(self.restored)}, nothing to undo {len(self.nothing_to_undo)}, "
                 f"refused {len(self.refused)}, failed {len(self.failed)}"]
        if self.interrupted:
            lines.append(f"interrupted after {len(self.results)} of {self.total} files; run again to go on")
        for title, results in (("not restored:", self.refused), ("failures:", self.failed)):
            if results:
                lines.append(title)
                lines.extend(f"  {shown_path(r.path, one_line=True)}: {r.reason}" for r in results)
        return "\n".join(lines)


# --------------------------------------------------------------------------- the tag run

@dataclass(frozen=True)
class _Guess:
    """A checked prediction: a label, or an abstention with its reason."""

    label: str | None
    abstain: str | None
    confidence: float | None  # None: the model was not asked (all-silent audio)
    probabilities: dict[str, float]
    music_probability: float | None = None


def _checked_prediction(path: Path, pred) -> _Guess:
    try:
        label, abstain = pred.genre, pred.abstain
        probabilities = {str(k): float(v) for k, v in dict(pred.probabilities).items()}
        confidence = float(pred.confidence)
        music = getattr(pred, "music_probability", None)
    except (AttributeError, TypeError, ValueError) as e:
        raise TagError(path, f"the model returned an unusable prediction ({type(e).__name__}: {e})") from None
    if (label is None) == (abstain is None):
        raise TagError(path, f"the model returned genre {label!r} with abstention {abstain!r}")
    if label is not None and (not isinstance(label, str) or not label.strip()):
        raise TagError(path, f"the model returned no genre ({label!r})")
    if abstain is not None and abstain not in ABSTAIN_TEXT:
        raise TagError(path, f"the model returned an unknown abstention {abstain!r}")
    if not (math.isfinite(confidence) and 0.0 <= confidence <= 1.0):
        raise TagError(path, f"the model returned an invalid confidence ({confidence})")
    return _Guess(label, abstain, confidence, probabilities, None if music is None else float(music))


_SILENCE = _Guess(None, "not_music", None, {})  # all-silent audio: not music, the model not asked


def _reason(error: GenrekitError) -> str:
    """The error's message without the leading ``path:`` (the report names the path)."""
    text, path = str(error), getattr(error, "path", None)
    return text[len(path) + 2:] if path and text.startswith(f"{path}: ") else text


def _unique_files(paths) -> list[Path]:
    """Each file once, though reached by two paths (a folder given twice, a symlink, a hard link)."""
    from .audio import find_audio_files

    seen, files = set(), []
    for p in find_audio_files(paths):
        keys = {os.path.abspath(p), _inode(p)} - {None}
        if not keys & seen:
            seen |= keys
            files.append(p)
    return files


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:  # reported when the file is processed
        return None
    return st.st_dev, st.st_ino


class _TagRun:
    """One :func:`tag_library` call: settings, the database and the model."""

    def __init__(self, store: _Store, model, names: dict[str, str], write: bool, overwrite: bool, force: bool):
        self.store, self.model, self.names = store, model, names
        self.write, self.overwrite, self.force = write, overwrite, force
        self.model_id = str(model.model_id)
        min_confidence = getattr(model, "min_confidence", None)
        self.min_confidence = None if min_confidence is None else float(min_confidence)

    def process(self, path: Path) -> FileResult:
        key = os.path.abspath(path)
        try:
            st = path.stat()
        except OSError as e:
            return self._record(path, key, None, FAILED, reason=f"cannot read file ({_why(e)})")
        if st.st_size == 0:
            return self._record(path, key, st, FAILED, reason=_reason(EmptyAudioError(path, "0 bytes")))
        row = None if self.force else self.store.file(key)
        unchanged = row is not None and (row["size"], row["mtime_ns"]) == (st.st_size, st.st_mtime_ns)
        if unchanged and row["status"] == TAGGED and row["written"]:
            return FileResult(str(path), DONE, row["genre"], row["tag_genre"], row["confidence"], row["model"],
                              reason=f"done in an earlier run (genre {row['tag_genre']!r})")
        return self._decide(path, key, st, row if unchanged else None)

    def _decide(self, path: Path, key: str, st, row) -> FileResult:
        tagged, tag_problem = None, None
        try:
            tagged = _TagFile(path)
            tagged.check_writable()
        except TagError as e:
            tag_problem = e
        old = tagged.genres() if tagged else None
        marker = tagged.marker() if tagged else None
        own = marker is not None and old == [marker.written]  # the genre is genrekit's own write
        if marker is not None and not self.force:
            return self._record(path, key, st, ALREADY_TAGGED, old=old,
                                reason=f"already tagged by genrekit (genre {_quoted(old) or 'removed'}); "
                                       "--force re-tags it")
        if old and not own and not self.overwrite:
            return self._record(path, key, st, KEPT, old=old,
                                reason=f"kept existing {_genre_word(old)} {_quoted(old)} (--overwrite replaces it)")
        try:
            guess = self._predict(path, row)
        except GenrekitError as e:  # AudioError from the model, or an unusable prediction
            if getattr(e, "no_sound", False):  # all-silent audio: not music
                return self._record(path, key, st, ABSTAINED, _SILENCE, old=old, reason=f"not music: {e.reason}")
            return self._record(path, key, st, FAILED, reason=_reason(e))
        except Exception as e:  # noqa: BLE001 - a file that always crashes must not block every re-run
            return self._record(path, key, st, FAILED, reason=f"unexpected error: {type(e).__name__}: {e}")
        if guess.abstain is not None:
            return self._record(path, key, st, ABSTAINED, guess, old=old, reason=self._abstain_reason(guess))
        tag_genre = self.names.get(guess.label, guess.label)
        if tag_problem is not None:
            status = UNSUPPORTED if isinstance(tag_problem, UnsupportedTagFormatError) else FAILED
            return self._record(path, key, st, status, guess, tag_genre, reason=tag_problem.reason)
        if old == [tag_genre] and not own:
            return self._record(path, key, st, KEPT, guess, tag_genre, old,
                                reason=f"kept existing genre {tag_genre!r} (the same as predicted)")
        if not self.write:
            return self._record(path, key, st, WOULD_TAG, guess, tag_genre, old)
        return self._write(tagged, key, guess, tag_genre, old)

    def _abstain_reason(self, guess: _Guess) -> str:
        if guess.abstain == "not_music":
            music = "" if guess.music_probability is None else f", music probability {guess.music_probability:.0%}"
            return f"not music{music}"
        best = max(guess.probabilities, key=guess.probabilities.get) if guess.probabilities else "?"
        below = "" if self.min_confidence is None else f", below {self.min_confidence:.0%}"
        return f"uncertain: best guess {best} {guess.confidence:.0%}{below}"

    def _predict(self, path: Path, row) -> _Guess:
        reusable = (row is not None and row["probabilities"] and row["status"] in (WOULD_TAG, ABSTAINED, KEPT, RESTORED)
                    and row["model"] == self.model_id and row["min_confidence"] == self.min_confidence
                    and (row["genre"] or row["abstain"]))
        if reusable:  # classified in an earlier run (e.g. a dry run), file and settings unchanged
            return _Guess(row["genre"], row["abstain"], row["confidence"], json.loads(row["probabilities"]))
        return _checked_prediction(path, self.model.predict_file(path))

    def _write(self, tagged: _TagFile, key: str, guess: _Guess, tag_genre: str, old) -> FileResult:
        path = tagged.path
        marker = _marker_text(guess.label, tag_genre, guess.confidence, self.model_id)
        previous = self.store.undo(key)
        # Re-tagging genrekit's own write keeps the record of what was there first.
        keep_original = previous is not None and tagged.marker() is not None
        before = json.loads(previous["before"]) if keep_original else tagged.snapshot()
        digest_before = tagged.digest()
        with _sigint_deferred():  # the file and its rows change together
            self.store.begin_write(key, before, marker)
            try:
                tagged.write(tag_genre, marker)
            except TagError as e:
                if _digest_or_none(path) == digest_before:  # the file did not change
                    self.store.abort_write(key, previous)
                return self._record(path, key, _stat_or_none(path), FAILED, guess, tag_genre, old, e.reason)
            try:
                digest = _TagFile(path).digest()
            except TagError as e:  # written, but unreadable now: the undo row stays "in progress"
                return self._record(path, key, _stat_or_none(path), FAILED, guess, tag_genre, old,
                                    f"written, but cannot read back ({e.reason})")
            result, row = self._result_and_row(path, key, path.stat(), TAGGED, guess, tag_genre, old, "", True)
            self.store.end_write(key, digest, row)
            return result

    def _record(self, path, key, st, status, guess: _Guess | None = None, tag_genre=None, old=None,
                reason: str = "") -> FileResult:
        result, row = self._result_and_row(path, key, st, status, guess, tag_genre, old, reason, False)
        self.store.put_file(row)
        return result

    def _result_and_row(self, path, key, st, status, guess, tag_genre, old, reason, written):
        label = guess.label if guess else None
        confidence = guess.confidence if guess else None
        abstain = guess.abstain if guess else None
        model_id = self.model_id if guess else None
        row = {"path": key, "status": status, "genre": label, "tag_genre": tag_genre, "abstain": abstain,
               "confidence": confidence, "old_genres": None if old is None else json.dumps(old, ensure_ascii=False),
               "written": int(written), "model": model_id, "min_confidence": self.min_confidence if guess else None,
               "error": reason or None, "size": st.st_size if st else -1, "mtime_ns": st.st_mtime_ns if st else -1,
               "probabilities": json.dumps(guess.probabilities, sort_keys=True) if guess and guess.probabilities
               else None}
        return FileResult(str(path), status, label, tag_genre, confidence, model_id, old, abstain, reason), row


def _stat_or_none(path: Path):
    try:
        return path.stat()
    except OSError:
        return None


def _digest_or_none(path: Path) -> str | None:
    try:
        return _TagFile(path).digest()
    except TagError:
        return None


def _run_files(files, handle: Callable[[Path], FileResult], summary, desc: str, progress: bool,
               on_result: Callable[[FileResult], None] | None):
    from tqdm import tqdm

    bar = tqdm(files, disable=not progress, unit="file", desc=desc, file=sys.stderr, dynamic_ncols=True)
    try:
        for path in bar:
            result = handle(path)
            summary.results.append(result)
            if on_result is not None:
                on_result(result)
    except KeyboardInterrupt:
        summary.interrupted = True
        raise TaggingInterrupted(summary) from None
    finally:
        bar.close()
    return summary


def tag_library(paths, model, write: bool = False, overwrite: bool = False, force: bool = False,
                db_path=DEFAULT_DB, genre_map=None, progress: bool = True,
                on_result: Callable[[FileResult], None] | None = None) -> TagSummary:
    """Classify audio files and write the genre into their tags (dry run unless ``write``).

    Parameters
    ----------
    paths : path or iterable of paths
        Files, or folders searched recursively for audio files by extension.
    model : GenreClassifier or alike
        ``model.predict_file(path)`` returns a :class:`~genrekit.prediction.Prediction`
        (``genre`` None when it abstains, ``abstain`` then says why) or raises an
        :class:`~genrekit.errors.AudioError`; ``model.model_id`` names it and
        ``model.display_names`` maps labels to the genre text to write. An optional
        ``model.min_confidence`` is recorded so that earlier predictions are reused
        only under the same threshold. A file whose audio fails is recorded as failed
        and the run goes on (so it does for any other exception, reported as
        "unexpected error"; only KeyboardInterrupt stops the run).
    write : bool
        Write the tags. If False (default), only report what would be written.
    overwrite : bool
        Replace a genre the file already has (default: keep it and report it kept).
    force : bool
        Re-classify and re-tag files genrekit has tagged before, ignoring earlier runs.
        A genre changed by the user since stays unless ``overwrite``.
    db_path : path
        SQLite results database; one row per file, committed as each file is done, and
        the original genre fields of every file written, for :func:`undo_library`.
        Files whose row is complete and whose size and mtime are unchanged are not
        classified again; files that failed are tried again.
    genre_map : dict, path or None
        Label → genre text overriding ``model.display_names`` (see :func:`read_genre_map`).
    progress : bool
        Show a tqdm progress bar on stderr.
    on_result : callable or None
        Called with each :class:`FileResult` as it is known (e.g. to print it).

    Returns
    -------
    TagSummary

    Raises
    ------
    GenreMapError
        The genre map is invalid (checked before any file is touched).
    ResultsDatabaseError
        The database cannot be used.
    TaggingInterrupted
        On Ctrl-C (a KeyboardInterrupt); ``.summary`` holds the files done, all saved.

    Examples
    --------
    >>> s = tag_library("Music/", model, db_path="tags.sqlite")  # doctest: +SKIP
    >>> len(s.would_tag), len(s.kept), len(s.failed)  # doctest: +SKIP
    (412, 87, 3)
    """
    names = display_names(model, genre_map)
    files = _unique_files(paths)
    con = open_db(db_path)
    try:
        run = _TagRun(_Store(con), model, names, write, overwrite, force)
        return _run_files(files, run.process, TagSummary(total=len(files)), "tagging" if write else "dry run",
                          progress, on_result)
    finally:
        con.close()


# --------------------------------------------------------------------------- undo

def _undo_one(store: _Store, key: str, shown: str) -> FileResult:
    record, row = store.undo(key), store.file(key)
    if record is None:
        if row is not None and row["status"] == RESTORED:
            return FileResult(shown, NOTHING_TO_UNDO, reason=f"nothing to undo (restored {row['updated_at']})")
        if row is not None and row["written"]:
            return FileResult(shown, REFUSED, reason="no record of its tags before genrekit wrote it "
                                                     "(written by genrekit 0.1, database schema 1)")
        return FileResult(shown, NOTHING_TO_UNDO, reason="nothing to undo (genrekit has not written this file)")
    path = Path(key)
    if not path.is_file():
        return FileResult(shown, FAILED, reason="file not found (moved or deleted since genrekit wrote it)")
    try:
        tagged = _TagFile(path)
    except TagError as e:
        return FileResult(shown, FAILED, reason=e.reason)
    before = json.loads(record["before"])
    if record["digest"] is None:  # a run stopped while writing this file
        if _same_fields(tagged.snapshot(), before):
            store.drop_undo(key)
            return FileResult(shown, NOTHING_TO_UNDO, reason="nothing to undo (genrekit's write did not happen)")
        if tagged.marker_text() != record["marker"]:
            return FileResult(shown, REFUSED, reason="changed since genrekit wrote it (its marker differs)")
    elif tagged.digest(with_v1="v1" in before) != record["digest"]:
        return FileResult(shown, REFUSED, reason=f"changed since genrekit wrote it on {record['written_at']} "
                                                 "(its tags differ); left as it is")
    with _sigint_deferred():  # the file and its rows change together
        try:
            tagged.restore(before)
            after = _TagFile(path).snapshot()
        except TagError as e:
            return FileResult(shown, FAILED, reason=e.reason)
        if not _same_fields(after, before):
            return FileResult(shown, FAILED, reason="restored tags read back differently; the undo record is kept")
        store.end_undo(key, path.stat())
    genres = _genres_of(before)
    what = f" {_genre_word(genres)} {_quoted(genres)}" if genres else ": no genre"
    return FileResult(shown, RESTORED, old_genres=genres, reason=f"restored{what} (as before genrekit)")


def _genres_of(before: dict) -> list[str]:
    """Genre values in a saved snapshot, for the report."""
    v1 = _id3v1_genres(base64.b64decode(before["v1"])) if before.get("v1") else []
    if not before.get("had_tags"):
        return v1
    if before["format"] == "id3":
        from mutagen.id3 import TCON

        frame = before["frames"].get("TCON")
        return v1 if frame is None else [g for g in TCON(**frame).genres if g.strip()] or v1
    if before["format"] == "vorbis":
        return [v for _, k, v in before["entries"] if k.lower() == "genre" and v.strip()]
    return [g for g in before["genre"] or [] if g.strip()]


def _undo_targets(store: _Store, paths) -> list[tuple[str, str]]:
    """(database key, path to show) for each file to undo; a file named directly always counts."""
    keys = store.undo_keys()
    if paths is None:
        return [(k, k) for k in keys]
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    targets, seen = [], set()
    for p in paths:
        root = os.path.abspath(p)
        matched = [k for k in keys if k == root or k.startswith(root.rstrip(os.sep) + os.sep)]
        if not matched and not os.path.isdir(root):
            matched = [root]  # reported as "nothing to undo" rather than silently ignored
        for key in matched:
            if key not in seen:
                seen.add(key)  # shown as the user named it: "Music/a.mp3", not "/home/me/Music/a.mp3"
                targets.append((key, str(p) if key == root else os.path.join(p, os.path.relpath(key, root))))
    return targets


def undo_library(paths=None, db_path=DEFAULT_DB, progress: bool = True,
                 on_result: Callable[[FileResult], None] | None = None) -> UndoSummary:
    """Put back the genre fields genrekit replaced, exactly as they were, from the database.

    For each file genrekit wrote (under ``paths``, or all of them), the genre values,
    their order, the absence of a genre (or of any tag block) are restored and the
    ``GENREKIT`` marker is removed. A file whose tags changed since genrekit wrote
    them (another tagger, a re-rip) is refused and left as it is; the run goes on.
    Running it twice is safe: the second run finds nothing to undo.

    Parameters
    ----------
    paths : path, iterable of paths or None
        Files or folders to undo; None: every file in the database.
    db_path : path
        The results database the tag run used.

    Returns
    -------
    UndoSummary

    Raises
    ------
    ResultsDatabaseError
        No such database, or unusable.
    TaggingInterrupted
        On Ctrl-C; ``.summary`` holds the files done (restored files stay restored).

    Examples
    --------
    >>> print(undo_library(["Music/Album"], db_path="tags.sqlite").format())  # doctest: +SKIP
    restored 12, nothing to undo 0, refused 1, failed 0
    not restored:
      /home/me/Music/Album/03.flac: changed since genrekit wrote it on ... (its tags differ); left as it is
    """
    con = open_db(db_path, create=False)
    try:
        store = _Store(con)
        targets = _undo_targets(store, paths)
        shown = dict(targets)
        return _run_files([k for k, _ in targets], lambda key: _undo_one(store, key, shown[key]),
                          UndoSummary(total=len(targets)), "undo", progress, on_result)
    finally:
        con.close()
