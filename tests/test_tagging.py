"""genrekit tag: genres written as display names, existing genres kept, exact undo, audio untouched.

The audio is synthetic (soundfile writes MP3/FLAC/Ogg/WAV/AIFF, PyAV encodes AAC into
.m4a). The model is a small deterministic fake with genrekit's real ``Prediction``
objects; it decodes one second with genrekit.audio so that bad files raise the real
AudioErrors. One CLI test runs the shipped model on a real GTZAN clip.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genrekit.audio import load_audio
from genrekit.errors import ConfigError
from genrekit.prediction import Prediction
from genrekit.tagging import (
    GenreMapError,
    ResultsDatabaseError,
    TaggingInterrupted,
    UnsupportedTagFormatError,
    _sigint_deferred,
    display_names,
    export_csv,
    read_genre_map,
    read_genrekit_tag,
    read_tags,
    restore_tags,
    tag_library,
    undo_library,
    write_genre_tag,
)

GENRES = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]
NAMES = {"blues": "Blues", "classical": "Classical", "country": "Country", "disco": "Disco", "hiphop": "Hip-Hop",
         "jazz": "Jazz", "metal": "Metal", "pop": "Pop", "reggae": "Reggae", "rock": "Rock"}
MODEL = "fake-model@1"
FORMATS = ["mp3", "flac", "ogg", "opus", "wav", "aiff", "m4a"]
MAIN_FORMATS = ["mp3", "flac", "ogg", "m4a"]


class FakeModel:
    """Stands in for GenreClassifier: ``predict_file`` → Prediction; genre from the file name."""

    def __init__(self, genre=None, confidence=0.8, abstain=None, model_id=MODEL, names=None,
                 interrupt_on=None, min_confidence=None):
        self.genre, self.confidence, self.abstain, self.model_id = genre, confidence, abstain, model_id
        self.display_names = dict(names or NAMES)
        self.interrupt_on, self.min_confidence = interrupt_on, min_confidence
        self.calls: list[str] = []

    def predict_file(self, path):
        self.calls.append(Path(path).name)
        if self.interrupt_on == len(self.calls):
            raise KeyboardInterrupt
        load_audio(path, duration=1.0)  # bad audio raises genrekit's AudioError
        best = self.genre or GENRES[zlib.crc32(Path(path).name.encode()) % len(GENRES)]
        rest = (1 - self.confidence) / (len(GENRES) - 1)
        probs = {best: self.confidence, **{g: rest for g in GENRES if g != best}}
        return Prediction(str(path), None if self.abstain else best, probs, abstain=self.abstain)


def tag(paths, model, db, **kwargs):
    return tag_library(paths, model, db_path=db, progress=False, **kwargs)


def undo(paths, db):
    return undo_library(paths, db_path=db, progress=False)


# --------------------------------------------------------------------------- test files

def _tone(seconds=1.5, sr=22050):
    t = np.arange(int(seconds * sr)) / sr
    noise = np.random.default_rng(0).normal(0, 0.02, t.size)
    return (0.3 * np.sin(2 * np.pi * 330 * t) + noise).astype(np.float32)


def _write_m4a(path: Path, y: np.ndarray, sr: int) -> None:
    av = pytest.importorskip("av")
    try:
        out = av.open(str(path), "w")
        stream = out.add_stream("aac", rate=sr)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(y[None, :], format="fltp", layout="mono")
        frame.sample_rate = sr
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
        out.close()
    except (av.FFmpegError, ValueError) as e:
        pytest.skip(f"PyAV cannot encode AAC here: {e}")


def make_file(folder: Path, fmt: str, name: str = "song") -> Path:
    """1.5 s of a noisy tone in ``fmt``, written by soundfile (or PyAV for .m4a)."""
    path, y, sr = folder / f"{name}.{fmt}", _tone(), 22050
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "m4a":
        _write_m4a(path, y, sr)
    elif fmt == "opus":  # Opus runs at 48 kHz only
        sf.write(path, _tone(sr=48000), 48000, format="OGG", subtype="OPUS")
    else:
        sf.write(path, y, sr, subtype={"ogg": "VORBIS", "mp3": "MPEG_LAYER_III"}.get(fmt, "PCM_16"))
    return path


def set_tags(path: Path, genres=None, title="A Title") -> None:
    """Give ``path`` a title and artist, and the genre values ``genres`` (None: no genre)."""
    import mutagen
    from mutagen.id3 import TCON, TIT2, TPE1

    f = mutagen.File(path)
    if f.tags is None:
        f.add_tags()
    if path.suffix in (".mp3", ".wav", ".aiff"):
        f.tags.setall("TIT2", [TIT2(encoding=3, text=[title])])
        f.tags.setall("TPE1", [TPE1(encoding=3, text=["An Artist"])])
        if genres is not None:
            f.tags.setall("TCON", [TCON(encoding=3, text=list(genres))])
    elif path.suffix == ".m4a":
        f.tags["\xa9nam"], f.tags["\xa9ART"] = [title], ["An Artist"]
        if genres is not None:
            f.tags["\xa9gen"] = list(genres)
    else:
        f.tags["TITLE"], f.tags["ARTIST"] = [title], ["An Artist"]
        if genres is not None:
            f.tags["GENRE"] = list(genres)
    f.save()


def all_tags(path: Path):
    """Every tag value, read with mutagen directly (not through genrekit); order kept for Vorbis."""
    import mutagen

    tags = mutagen.File(path).tags
    if tags is None:
        return None
    if isinstance(tags, list):  # Vorbis comments: an ordered list of (name, value)
        return [tags.vendor, *tags]
    return {k: repr(v) for k, v in tags.items()}


def genres_with_mutagen(path: Path) -> list[str]:
    import mutagen

    tags = mutagen.File(path).tags
    if path.suffix in (".mp3", ".wav", ".aiff"):
        return list(tags["TCON"].text) if "TCON" in tags else []
    if path.suffix == ".m4a":
        return list(tags.get("\xa9gen", []))
    return list(tags.get("GENRE", []))


def marker_with_mutagen(path: Path):
    import mutagen

    tags = mutagen.File(path).tags
    if tags is None:
        return None
    if path.suffix in (".mp3", ".wav", ".aiff"):
        return json.loads(tags["TXXX:GENREKIT"].text[0]) if "TXXX:GENREKIT" in tags else None
    if path.suffix == ".m4a":
        value = tags.get("----:com.genrekit:genrekit")
        return json.loads(bytes(value[0])) if value else None
    return json.loads(tags["GENREKIT"][0]) if "GENREKIT" in tags else None


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def db_rows(db: Path, table: str = "files") -> dict:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return {Path(r["path"]).name: dict(r) for r in con.execute(f"SELECT * FROM {table}")}
    finally:
        con.close()


@pytest.fixture
def library(tmp_path):
    """One file per main format plus a sub-folder; the FLAC has two genres, the MP3 one."""
    lib = tmp_path / "lib"
    for fmt in MAIN_FORMATS:
        make_file(lib, fmt)
    make_file(lib / "sub", "flac", name="other")
    set_tags(lib / "song.flac", ["Rock", "Indie"])
    set_tags(lib / "song.mp3", ["Hip-Hop"])
    return lib


# --------------------------------------------------------------------------- audio payloads

def mp3_payload(data: bytes) -> bytes:
    """The MPEG frames: after the ID3v2 tag, before an ID3v1 tag."""
    start = 0
    if data[:3] == b"ID3":
        size = sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(data[6:10]))
        start = 10 + size + (10 if data[5] & 0x10 else 0)
    end = len(data) - 128 if data[-128:-125] == b"TAG" else len(data)
    return data[start:end]


def flac_parts(data: bytes) -> tuple[bytes, bytes]:
    """(STREAMINFO block, audio frames) of a FLAC file."""
    assert data[:4] == b"fLaC"
    pos, streaminfo = 4, None
    while True:
        header, size = data[pos], int.from_bytes(data[pos + 1:pos + 4], "big")
        if header & 0x7F == 0:
            streaminfo = data[pos + 4:pos + 4 + size]
        pos += 4 + size
        if header & 0x80:
            return streaminfo, data[pos:]


def ogg_packets(data: bytes) -> list[bytes]:
    """The packets of a single-stream Ogg file (page framing removed)."""
    packets, current, pos = [], b"", 0
    while pos < len(data):
        assert data[pos:pos + 4] == b"OggS"
        n = data[pos + 26]
        lacing, pos = data[pos + 27:pos + 27 + n], pos + 27 + n
        for lace in lacing:
            current, pos = current + data[pos:pos + lace], pos + lace
            if lace < 255:
                packets.append(current)
                current = b""
    return packets


def iff_chunk(data: bytes, name: bytes, byteorder: str) -> bytes:
    """One chunk's payload from a RIFF (little-endian) or AIFF (big-endian) file."""
    pos = 12
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos + 4:pos + 8], byteorder)
        if data[pos:pos + 4] == name:
            return data[pos + 8:pos + 8 + size]
        pos += 8 + size + (size & 1)
    raise AssertionError(f"no {name!r} chunk")


def mp4_mdat(data: bytes) -> bytes:
    pos = 0
    while pos < len(data):
        size, kind, head = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8], 8
        if size == 1:
            size, head = int.from_bytes(data[pos + 8:pos + 16], "big"), 16
        elif size == 0:
            size = len(data) - pos
        if kind == b"mdat":
            return data[pos + head:pos + size]
        pos += size
    raise AssertionError("no mdat atom")


def audio_payload(path: Path) -> dict:
    """Raw audio bytes (and FLAC's STREAMINFO) that tagging must leave as they are."""
    data, fmt = path.read_bytes(), path.suffix[1:]
    if fmt == "mp3":
        return {"frames": mp3_payload(data)}
    if fmt == "flac":
        streaminfo, frames = flac_parts(data)
        return {"streaminfo": streaminfo, "frames": frames}
    if fmt in ("ogg", "opus"):  # packet 1 is the comment header; the rest must not change
        packets = ogg_packets(data)
        return {"id": packets[0], "audio": packets[2:]}
    if fmt == "wav":
        return {"data": iff_chunk(data, b"data", "little"), "fmt": iff_chunk(data, b"fmt ", "little")}
    if fmt == "aiff":
        return {"SSND": iff_chunk(data, b"SSND", "big"), "COMM": iff_chunk(data, b"COMM", "big")}
    if fmt == "m4a":
        return {"mdat": mp4_mdat(data)}
    raise AssertionError(fmt)


# --------------------------------------------------------------------------- dry run, write

def test_dry_run_writes_nothing(library, tmp_path):
    before = snapshot(library)
    model = FakeModel(genre="jazz")
    summary = tag([library], model, tmp_path / "t.sqlite")
    assert snapshot(library) == before  # bytes and mtimes
    assert sorted(Path(r.path).name for r in summary.would_tag) == ["other.flac", "song.m4a", "song.ogg"]
    assert sorted(Path(r.path).name for r in summary.kept) == ["song.flac", "song.mp3"]
    assert not summary.tagged and not summary.failed
    assert sorted(model.calls) == ["other.flac", "song.m4a", "song.ogg"]  # kept files are not classified
    rows = db_rows(tmp_path / "t.sqlite")
    assert not any(r["written"] for r in rows.values())
    assert rows["song.ogg"]["tag_genre"] == "Jazz" and rows["song.ogg"]["genre"] == "jazz"
    assert json.loads(rows["song.flac"]["old_genres"]) == ["Rock", "Indie"]
    assert db_rows(tmp_path / "t.sqlite", "undo") == {}


@pytest.mark.parametrize("fmt", FORMATS)
def test_write_display_name_and_keep_audio(fmt, tmp_path):
    path = make_file(tmp_path, fmt)
    payload, raw = audio_payload(path), path.read_bytes()
    summary = tag([path], FakeModel(genre="hiphop", confidence=0.75), tmp_path / "t.sqlite", write=True)

    assert [r.status for r in summary.results] == ["tagged"]
    assert path.read_bytes() != raw  # the tag block did change...
    assert audio_payload(path) == payload  # ...and the audio bytes did not
    assert genres_with_mutagen(path) == ["Hip-Hop"]
    assert marker_with_mutagen(path) == {"genre": "hiphop", "written": "Hip-Hop", "confidence": 0.75, "model": MODEL}
    assert read_tags(path).genres == ["Hip-Hop"] and read_genrekit_tag(path).written == "Hip-Hop"
    assert summary.results[0].describe() == f"{path}: wrote genre 'Hip-Hop' (hiphop 75%)"


def test_flac_md5_and_other_tags_kept(tmp_path):
    import mutagen

    flac, mp3 = make_file(tmp_path, "flac"), make_file(tmp_path, "mp3")
    set_tags(mp3)
    md5 = mutagen.File(flac).info.md5_signature
    tag([tmp_path], FakeModel(), tmp_path / "t.sqlite", write=True)
    assert md5 != 0 and mutagen.File(flac).info.md5_signature == md5
    tags = mutagen.File(mp3).tags
    assert tags["TIT2"].text == ["A Title"] and tags["TPE1"].text == ["An Artist"]
    assert tags.version[:2] == (2, 4)


# --------------------------------------------------------------------------- keep / overwrite / undo

@pytest.mark.parametrize("fmt", MAIN_FORMATS)
def test_existing_genres_kept_without_overwrite(fmt, tmp_path):
    path = make_file(tmp_path, fmt)
    set_tags(path, ["Rock", "Indie"])
    raw, model, db = path.read_bytes(), FakeModel(genre="hiphop"), tmp_path / "t.sqlite"
    summary = tag([path], model, db, write=True)
    assert [r.status for r in summary.results] == ["kept"] and model.calls == []
    assert summary.results[0].describe() == (f"{path}: kept existing genres 'Rock', 'Indie' "
                                             "(--overwrite replaces it)")
    assert path.read_bytes() == raw
    row = db_rows(db)[path.name]
    assert row["status"] == "kept" and json.loads(row["old_genres"]) == ["Rock", "Indie"]
    assert read_tags(path).genres == ["Rock", "Indie"]


@pytest.mark.parametrize("genres", [None, ["Rap"], ["Rock", "Indie"]], ids=["no-genre", "one", "two"])
@pytest.mark.parametrize("fmt", MAIN_FORMATS)
def test_overwrite_then_undo_restores_exactly(fmt, genres, tmp_path):
    path, db = make_file(tmp_path, fmt), tmp_path / "t.sqlite"
    set_tags(path, genres)
    before = all_tags(path)

    summary = tag([path], FakeModel(genre="hiphop"), db, write=True, overwrite=True)
    assert [r.status for r in summary.results] == ["tagged"]
    assert genres_with_mutagen(path) == ["Hip-Hop"] and all_tags(path) != before
    row = db_rows(db)[path.name]
    assert json.loads(row["old_genres"]) == (genres or []) and row["written"] == 1

    first = undo([path], db)
    assert [r.status for r in first.results] == ["restored"], first.format()
    assert all_tags(path) == before  # every value, in order; the marker is gone
    assert marker_with_mutagen(path) is None
    assert db_rows(db)[path.name]["status"] == "restored" and db_rows(db, "undo") == {}

    raw = path.read_bytes()
    second = undo([path], db)  # safe to run twice
    assert [r.status for r in second.results] == ["nothing-to-undo"] and path.read_bytes() == raw


@pytest.mark.parametrize("fmt", ["mp3", "wav", "aiff"])
def test_undo_of_file_without_tags_removes_the_tag_block(fmt, tmp_path):
    path, db = make_file(tmp_path, fmt), tmp_path / "t.sqlite"
    raw = path.read_bytes()
    tag([path], FakeModel(), db, write=True)
    undo(None, db)
    assert path.read_bytes() == raw  # byte for byte: no empty ID3 tag left behind


def test_id3v23_frames_restored_as_stored(tmp_path):
    from mutagen.id3 import ID3, TCON, TYER

    path, db = make_file(tmp_path, "mp3"), tmp_path / "t.sqlite"
    tags = ID3()
    tags.add(TCON(encoding=0, text=["(17)(131)"]))  # ID3v1 genre numbers: Rock, Indie
    tags.add(TYER(encoding=0, text=["1999"]))
    tags.save(path, v2_version=3)
    stored = {k: repr(v) for k, v in ID3(path, translate=False).items()}
    assert read_tags(path).genres == ["Rock", "Indie"]

    tag([path], FakeModel(genre="metal"), db, write=True, overwrite=True)
    written = ID3(path, translate=False)
    assert written.version[:2] == (2, 3) and written["TCON"].text == ["Metal"]
    assert written["TYER"].text == ["1999"]  # not translated to TDRC by the write
    undo(None, db)
    assert {k: repr(v) for k, v in ID3(path, translate=False).items()} == stored


def test_vorbis_genre_entries_restored_in_place(tmp_path):
    import mutagen

    path, db = make_file(tmp_path, "flac"), tmp_path / "t.sqlite"
    f = mutagen.File(path)
    f.tags.extend([("TITLE", "t"), ("Genre", "Rock"), ("ARTIST", "a"), ("GENRE", "Indie"), ("DATE", "2001")])
    f.save()
    before = all_tags(path)
    tag([path], FakeModel(genre="jazz"), db, write=True, overwrite=True)
    assert genres_with_mutagen(path) == ["Jazz"]
    undo([tmp_path], db)
    assert all_tags(path) == before


def test_undo_refuses_a_file_changed_since_and_goes_on(tmp_path):
    import mutagen

    a, b, db = make_file(tmp_path, "flac", "a"), make_file(tmp_path, "mp3", "b"), tmp_path / "t.sqlite"
    set_tags(a, ["Rock"])
    set_tags(b, ["Pop"])
    tag([tmp_path], FakeModel(genre="jazz"), db, write=True, overwrite=True)
    f = mutagen.File(a)
    f.tags["TITLE"] = ["Edited in another tagger"]
    f.save()
    edited = a.read_bytes()

    summary = undo(None, db)
    status = {Path(r.path).name: r for r in summary.results}
    assert status["a.flac"].status == "refused" and "changed since genrekit wrote it" in status["a.flac"].reason
    assert status["b.mp3"].status == "restored" and genres_with_mutagen(b) == ["Pop"]
    assert a.read_bytes() == edited  # left alone
    report = summary.format()
    assert "refused 1" in report and "a.flac: changed since" in report and len(report.splitlines()) == 3


def test_undo_after_a_run_stopped_mid_write(tmp_path, monkeypatch):
    from genrekit import tagging

    path, db = make_file(tmp_path, "ogg"), tmp_path / "t.sqlite"
    set_tags(path, ["Blues"])
    before = all_tags(path)

    def crash(*args):
        raise SystemExit("power cut")  # the file is written; its row is not finished

    monkeypatch.setattr(tagging._Store, "end_write", crash)
    with pytest.raises(SystemExit):
        tag([path], FakeModel(genre="rock"), db, write=True, overwrite=True)
    monkeypatch.undo()
    assert genres_with_mutagen(path) == ["Rock"] and db_rows(db, "undo")[path.name]["digest"] is None
    assert [r.status for r in undo(None, db).results] == ["restored"]
    assert all_tags(path) == before


def test_force_retag_keeps_the_original_for_undo(tmp_path):
    path, db = make_file(tmp_path, "m4a"), tmp_path / "t.sqlite"
    before = all_tags(path)
    tag([path], FakeModel(genre="hiphop"), db, write=True)
    again = tag([path], FakeModel(genre="rock"), db, write=True)
    assert [r.status for r in again.results] == ["done"]
    forced = tag([path], FakeModel(genre="rock", model_id="fake-model@2"), db, write=True, force=True)
    assert [r.status for r in forced.results] == ["tagged"] and genres_with_mutagen(path) == ["Rock"]
    assert forced.results[0].old_genres == ["Hip-Hop"]
    undo(None, db)
    assert all_tags(path) == before  # what was there before genrekit's first write


def test_force_keeps_a_genre_the_user_changed(tmp_path):
    import mutagen

    path, db = make_file(tmp_path, "mp3"), tmp_path / "t.sqlite"
    tag([path], FakeModel(genre="hiphop"), db, write=True)
    f = mutagen.File(path)
    f.tags["TCON"].text = ["Trip-Hop"]  # the marker stays, the genre is the user's now
    f.save()
    summary = tag([path], FakeModel(genre="rock"), db, write=True, force=True)
    assert [r.status for r in summary.results] == ["kept"] and genres_with_mutagen(path) == ["Trip-Hop"]


def test_force_on_genrekits_own_genre_predicted_again_says_so(tmp_path, capsys, fake_load_model):
    """--force re-tags a file whose genre genrekit wrote and predicts again: not "replacing 'Hip-Hop'"."""
    from genrekit.cli import main

    path, db = make_file(tmp_path, "mp3"), tmp_path / "t.sqlite"
    assert main(["tag", str(path), "--write", "--db", str(db)]) == 0
    assert f"{path}: wrote genre 'Hip-Hop' (hiphop 80%)\n" in capsys.readouterr().out
    for extra, done in (([], "would rewrite only genrekit's marker"),
                        (["--write"], "only genrekit's marker rewritten")):
        assert main(["tag", str(path), "--overwrite", "--force", "--db", str(db), *extra]) == 0
        out = capsys.readouterr().out
        assert "replacing" not in out
        assert f"{path}: genre already 'Hip-Hop', the same as predicted (hiphop 80%); {done}\n" in out
    assert genres_with_mutagen(path) == ["Hip-Hop"] and marker_with_mutagen(path) is not None


def test_already_tagged_by_genrekit_is_skipped_without_force(tmp_path):
    path = make_file(tmp_path, "flac")
    tag([path], FakeModel(genre="rock"), tmp_path / "a.sqlite", write=True)
    raw, model = path.read_bytes(), FakeModel(genre="metal")
    # A fresh database: only the GENREKIT marker in the file tells genrekit it is done.
    summary = tag([path], model, tmp_path / "b.sqlite", write=True, overwrite=True)
    assert [r.status for r in summary.results] == ["already-tagged"] and model.calls == []
    assert path.read_bytes() == raw and "1 already tagged by genrekit" in summary.format()


def test_id3v23_file_stays_v23_and_restore_tags(tmp_path):
    from mutagen.id3 import ID3

    path = make_file(tmp_path, "mp3")
    set_tags(path, ["Pop"])
    ID3(path).save(v2_version=3)
    before = write_genre_tag(path, "Blues", 0.6, MODEL, label="blues")
    tags = ID3(path)
    assert tags.version[:2] == (2, 3) and tags["TCON"].text == ["Blues"] and read_genrekit_tag(path).genre == "blues"
    restore_tags(path, before)
    assert ID3(path)["TCON"].text == ["Pop"] and read_genrekit_tag(path) is None


# --------------------------------------------------------------------------- abstentions

@pytest.mark.parametrize("reason", ["not_music", "uncertain"])
def test_abstention_writes_nothing(reason, library, tmp_path):
    db, before = tmp_path / "t.sqlite", snapshot(library)
    model = FakeModel(confidence=0.3, abstain=reason, min_confidence=0.5)
    summary = tag([library], model, db, write=True, overwrite=True)
    assert snapshot(library) == before
    assert len(summary.abstained) == 5 and not summary.tagged
    assert f"abstained 5 (5 {reason.replace('_', ' ')})" in summary.format()
    line = summary.results[0].describe()
    assert line.endswith("nothing written") and ("below 50%" in line if reason == "uncertain" else "not music" in line)
    rows = db_rows(db)
    assert all(r["status"] == "abstained" and r["abstain"] == reason and r["genre"] is None
               and r["tag_genre"] is None and not r["written"] for r in rows.values())
    out = tmp_path / "tags.csv"
    assert export_csv(db, out) == 5
    assert [r["abstain"] for r in csv.DictReader(out.open())] == [reason] * 5
    assert db_rows(db, "undo") == {}


def test_abstention_reused_only_under_the_same_threshold(tmp_path):
    path, db = make_file(tmp_path, "ogg"), tmp_path / "t.sqlite"
    tag([path], FakeModel(abstain="uncertain", confidence=0.4, min_confidence=0.5), db)
    strict = FakeModel(abstain="uncertain", confidence=0.4, min_confidence=0.5)
    assert [r.status for r in tag([path], strict, db, write=True).results] == ["abstained"]
    assert strict.calls == []  # the dry run's answer is reused
    lenient = FakeModel(genre="pop", confidence=0.4, min_confidence=0.3)
    assert [r.status for r in tag([path], lenient, db, write=True).results] == ["tagged"]
    assert lenient.calls == ["song.ogg"] and genres_with_mutagen(path) == ["Pop"]


# --------------------------------------------------------------------------- display names, genre map

def test_genre_text_comes_from_the_model_and_the_user_map(tmp_path):
    a, b = make_file(tmp_path, "flac", "a"), make_file(tmp_path, "mp3", "b")
    model = FakeModel(genre="hiphop", names={**NAMES, "hiphop": "Hip Hop"})
    tag([a], model, tmp_path / "t.sqlite", write=True)
    assert genres_with_mutagen(a) == ["Hip Hop"]
    tag([b], model, tmp_path / "t.sqlite", write=True, genre_map={"hiphop": "Rap"})
    assert genres_with_mutagen(b) == ["Rap"] and marker_with_mutagen(b)["genre"] == "hiphop"


def test_read_genre_map_csv_and_json(tmp_path):
    c = tmp_path / "map.csv"
    c.write_text("\ufefflabel,display\nhiphop, Hip Hop \n\nmetal,\"Heavy Metal, loud\"\n", encoding="utf-8")
    assert read_genre_map(c) == {"hiphop": "Hip Hop", "metal": "Heavy Metal, loud"}
    j = tmp_path / "map.json"
    j.write_text(json.dumps({"hiphop": "Rap", "rock": "Rock & Roll"}))
    assert read_genre_map(j) == {"hiphop": "Rap", "rock": "Rock & Roll"}
    names = display_names(FakeModel(), j)
    assert names["hiphop"] == "Rap" and names["jazz"] == "Jazz"


@pytest.mark.parametrize("name, text, message", [
    ("m.csv", "hiphop,Rap,extra\n", "line 1: expected 2 fields label,display, got 3"),
    ("m.csv", "label,display\nhiphop,Rap\nhiphop,Hip Hop\n", "line 3: label 'hiphop' given twice"),
    ("m.csv", "hiphop,\n", "line 1: empty label or display name"),
    ("m.csv", "label,display\n", "no label,display entries"),
    ("m.json", '{"hiphop": 3}', "key 'hiphop': the display name must be a string, not 3"),
    ("m.json", '{"hiphop": "Rap",}', "not valid JSON"),
    ("m.json", '["hiphop", "Rap"]', "must be a JSON object"),
    ("m.json", '{"hiphop": "Rap", "hiphop": "Hip"}', "key 'hiphop': label 'hiphop' given twice"),
    ("m.json", '{"hiphop": "Rap\\nHop"}', "control character"),
    ("m.txt", "hiphop,Rap\n", "use .csv (label,display) or .json"),
])
def test_bad_genre_map_one_line_error(name, text, message, tmp_path):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(GenreMapError) as e:
        read_genre_map(path)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, ConfigError)


def test_genre_map_with_unknown_label_fails_before_any_file(tmp_path):
    path, m = make_file(tmp_path, "ogg"), tmp_path / "m.csv"
    m.write_text("hip-hop,Rap\n")
    raw = path.read_bytes()
    with pytest.raises(GenreMapError, match=r"m\.csv: unknown label\(s\) 'hip-hop'; the model's labels are blues"):
        tag([path], FakeModel(), tmp_path / "t.sqlite", write=True, genre_map=m)
    assert path.read_bytes() == raw and not (tmp_path / "t.sqlite").exists()
    with pytest.raises(GenreMapError, match="no such file"):
        read_genre_map(tmp_path / "missing.csv")


# --------------------------------------------------------------------------- database

V1_SCHEMA = """CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    genre TEXT, confidence REAL, probabilities TEXT, model TEXT, status TEXT NOT NULL, error TEXT,
    old_genre TEXT, written INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL)"""


def test_schema_1_database_is_migrated(tmp_path):
    path, db = make_file(tmp_path, "mp3"), tmp_path / "old.sqlite"
    st = path.stat()
    con = sqlite3.connect(db)
    con.execute(V1_SCHEMA)
    rows = [(str(path), st.st_size, st.st_mtime_ns, "rock", 0.9, '{"rock": 0.9}', MODEL, "tagged", None, "Pop", 1, "t"),
            ("/x/low.flac", 10, 1, "jazz", 0.2, '{"jazz": 0.2}', MODEL, "low-confidence", "below", None, 0, "t")]
    con.executemany("INSERT INTO files VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()

    assert export_csv(db, tmp_path / "out.csv") == 2  # opening migrates
    assert (tmp_path / "old.sqlite.schema1.bak").is_file()
    new = db_rows(db)
    assert json.loads(new[path.name]["old_genres"]) == ["Pop"] and new[path.name]["tag_genre"] == "rock"
    assert new["low.flac"]["status"] == "abstained" and new["low.flac"]["abstain"] == "uncertain"
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == 2
    # Unchanged and tagged in schema 1: still done; but no undo record was kept then.
    assert [r.status for r in tag([path], FakeModel(), db, write=True).results] == ["done"]
    summary = undo([path], db)
    assert [r.status for r in summary.results] == ["refused"] and "schema 1" in summary.results[0].reason


@pytest.mark.parametrize("setup, message", [
    ("PRAGMA user_version = 7", "schema version 7, newer than this genrekit reads (2); upgrade genrekit"),
    ("CREATE TABLE songs (x)", "not a genrekit results database (it has tables songs)"),
])
def test_database_refused_with_one_line(setup, message, tmp_path):
    db = tmp_path / "t.sqlite"
    sqlite3.connect(db).execute(setup)
    with pytest.raises(ResultsDatabaseError) as e:
        tag([make_file(tmp_path, "ogg")], FakeModel(), db)
    assert str(e.value).startswith(f"{db}: ") and message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("where, message", [
    ("folder", "is a folder; give a file name"),
    ("missing/t.sqlite", "the folder missing does not exist"),
])
def test_database_path_that_cannot_be_a_file_says_why(where, message, tmp_path, monkeypatch):
    """Not "move it aside" (there is nothing to move): what is wrong with the path."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    song = make_file(tmp_path, "ogg")
    with pytest.raises(ResultsDatabaseError) as e:
        tag([song], FakeModel(), Path(where))
    assert str(e.value) == f"{where}: {message}"


def test_undo_needs_the_database(tmp_path):
    with pytest.raises(ResultsDatabaseError, match="no such results database"):
        undo(None, tmp_path / "missing.sqlite")


# --------------------------------------------------------------------------- resume, failures

def test_resume_after_interrupt(library, tmp_path):
    db = tmp_path / "t.sqlite"
    files = sorted(p.name for p in library.rglob("*.*"))
    with pytest.raises(TaggingInterrupted) as stop:
        tag([library], FakeModel(interrupt_on=2), db, write=True, overwrite=True)
    assert len(stop.value.summary.results) == 1 and "interrupted" in stop.value.summary.format()
    assert isinstance(stop.value, KeyboardInterrupt)
    done = list(db_rows(db))
    assert len(done) == 1

    resumed = FakeModel()
    summary = tag([library], resumed, db, write=True, overwrite=True)
    assert not set(resumed.calls) & set(done) and len(resumed.calls) == 4
    assert sorted(r.status for r in summary.results) == ["done"] + ["tagged"] * 4
    rows = db_rows(db)
    assert sorted(rows) == files and all(r["status"] == "tagged" and r["written"] for r in rows.values())


def test_dry_run_predictions_reused_unless_file_or_model_changed(library, tmp_path):
    db = tmp_path / "t.sqlite"
    tag([library], FakeModel(), db, overwrite=True)
    later = FakeModel()
    touched = library / "song.ogg"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    summary = tag([library], later, db, write=True, overwrite=True)
    assert later.calls == ["song.ogg"] and len(summary.tagged) == 5
    other_model = FakeModel(model_id="fake-model@2")
    tag([library], other_model, db, force=True, overwrite=True)
    assert len(other_model.calls) == 5


def test_bad_files_reported_and_others_tagged(library, tmp_path):
    (library / "empty.mp3").write_bytes(b"")
    (library / "notes.mp3").write_text("not audio at all\n" * 20)
    (library / "broken.flac").write_bytes(b"fLaC" + bytes(range(256)) * 8)
    (library / "cut.ogg").write_bytes((library / "song.ogg").read_bytes()[:200])
    db = tmp_path / "t.sqlite"
    summary = tag([library], FakeModel(), db, write=True, overwrite=True)
    failed = {Path(r.path).name: r.reason for r in summary.failed}
    assert set(failed) == {"empty.mp3", "notes.mp3", "broken.flac", "cut.ogg"}
    assert "empty" in failed["empty.mp3"] and "not an audio file" in failed["notes.mp3"]
    assert len(summary.tagged) == 5
    rows = db_rows(db)
    assert all(rows[n]["status"] == "failed" and rows[n]["error"] and not rows[n]["written"] for n in failed)
    report = summary.format()
    assert "failed 4" in report and all(n in report for n in failed)


def test_unexpected_model_error_fails_one_file_only(library, tmp_path):
    model = FakeModel()
    predict = model.predict_file

    def predict_file(path):
        if Path(path).name == "song.ogg":
            raise RuntimeError("boom")
        return predict(path)

    model.predict_file = predict_file
    summary = tag([library], model, tmp_path / "t.sqlite", write=True, overwrite=True)
    assert [(Path(r.path).name, r.reason) for r in summary.failed] == [
        ("song.ogg", "unexpected error: RuntimeError: boom")]
    assert len(summary.tagged) == 4


def test_unsupported_tag_format_is_skipped_not_failed(tmp_path):
    path = make_file(tmp_path, "au")
    raw = path.read_bytes()
    summary = tag([path], FakeModel(), tmp_path / "t.sqlite", write=True)
    assert [r.status for r in summary.results] == ["unsupported"] and not summary.failed
    assert "tag format not supported" in summary.results[0].reason
    assert path.read_bytes() == raw
    with pytest.raises(UnsupportedTagFormatError, match="song.au"):
        write_genre_tag(path, "Rock", 0.5, MODEL)


def test_export_csv(library, tmp_path):
    db, out = tmp_path / "t.sqlite", tmp_path / "out" / "tags.csv"
    tag([library], FakeModel(), db)
    assert export_csv(db, out) == 5
    rows = {Path(r["path"]).name: r for r in csv.DictReader(out.open())}
    assert sorted(rows) == sorted(p.name for p in library.rglob("*.*"))
    for r in rows.values():
        if r["status"] == "would-tag":
            probs = json.loads(r["probabilities"])
            assert probs[r["genre"]] == pytest.approx(float(r["confidence"])) and r["tag_genre"] == NAMES[r["genre"]]
    assert json.loads(rows["song.flac"]["old_genres"]) == ["Rock", "Indie"] and rows["song.flac"]["status"] == "kept"
    assert sorted(p.name for p in out.parent.iterdir()) == ["tags.csv"]  # no temp file left


def test_sigint_during_write_is_held_back():
    reached_end = False
    with pytest.raises(KeyboardInterrupt):
        with _sigint_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            reached_end = True
    assert reached_end


# --------------------------------------------------------------------------- CLI

@pytest.fixture
def fake_load_model(monkeypatch):
    """genrekit.prediction.load_model returning a FakeModel; records its arguments."""
    import genrekit.prediction

    calls = []

    def load_model(model=None, min_confidence=None, **kwargs):
        calls.append({"model": model, "min_confidence": min_confidence})
        return FakeModel(genre="hiphop", min_confidence=min_confidence)

    monkeypatch.setattr(genrekit.prediction, "load_model", load_model)
    return calls


def test_cli_dry_run(library, tmp_path, monkeypatch, capsys, fake_load_model):
    from genrekit.cli import main

    monkeypatch.chdir(tmp_path)
    before = snapshot(library)
    assert main(["tag", str(library), "--model", "m1", "--min-confidence", "0.4"]) == 0
    out = capsys.readouterr().out
    assert out.count("would write genre 'Hip-Hop' (hiphop 80%)") == 3 and "nothing was written" in out
    assert f"{library / 'song.mp3'}: kept existing genre 'Hip-Hop'" in out and "add --overwrite" in out
    assert snapshot(library) == before and fake_load_model == [{"model": "m1", "min_confidence": 0.4}]
    assert (tmp_path / "genrekit-tags.sqlite").is_file()


def test_cli_write_undo_twice_and_export(library, tmp_path, capsys, fake_load_model):
    from genrekit.cli import main

    (library / "notes.mp3").write_text("not audio\n" * 20)
    db, out, before = tmp_path / "t.sqlite", tmp_path / "tags.csv", all_tags(library / "song.flac")
    rc = main(["tag", str(library), "--write", "--overwrite", "--quiet", "--db", str(db), "--export-csv", str(out)])
    text = capsys.readouterr().out
    assert rc == 1
    assert "tagged 4, would tag 0, kept 1" in text and "failed 1" in text and "notes.mp3" in text
    assert "wrote genre" not in text  # --quiet: no line per file
    assert len(list(csv.DictReader(out.open()))) == 6
    assert genres_with_mutagen(library / "song.flac") == ["Hip-Hop"]

    assert main(["tag", "--undo", str(library / "song.flac"), "--db", str(db)]) == 0
    text = capsys.readouterr().out
    assert f"{library / 'song.flac'}: restored genres 'Rock', 'Indie' (as before genrekit)" in text
    assert all_tags(library / "song.flac") == before
    assert main(["tag", "--undo", "--db", str(db), "--quiet"]) == 0
    assert "restored 3, nothing to undo 1, refused 0, failed 0" in capsys.readouterr().out
    assert main(["tag", "--undo", "--db", str(db), "--quiet"]) == 0
    assert "restored 0, nothing to undo 4" in capsys.readouterr().out


def test_cli_undo_refused_file_exits_1(tmp_path, capsys, fake_load_model):
    import mutagen

    from genrekit.cli import main

    path, db = make_file(tmp_path, "ogg"), tmp_path / "t.sqlite"
    assert main(["tag", str(path), "--write", "--quiet", "--db", str(db)]) == 0
    f = mutagen.File(path)
    f.tags["GENRE"] = ["Mine"]
    f.save()
    assert main(["tag", "--undo", str(tmp_path), "--db", str(db)]) == 1
    out = capsys.readouterr().out
    assert f"{path}: not restored: changed since genrekit wrote it" in out and genres_with_mutagen(path) == ["Mine"]


@pytest.mark.parametrize("argv, message", [
    (["--undo", "--overwrite"], "--undo cannot be combined with --overwrite"),
    (["x.mp3", "--genre-map", "nope.csv"], "nope.csv: no such file"),
    ([], "give audio files or folders"),
    (["x.mp3", "--export-csv", "."], "--export-csv .: is a folder"),
    (["x.mp3", "--export-csv", "nodir/x.csv"], "--export-csv nodir/x.csv: no such folder nodir"),
    (["--export-csv", "nodir/x.csv"], "--export-csv nodir/x.csv: no such folder nodir"),
    (["x.mp3", "--genre-map", "."], ".: is a folder, not a genre map file"),
])
def test_cli_one_line_errors(argv, message, tmp_path, monkeypatch, capsys, fake_load_model):
    from genrekit.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.mp3").write_bytes(b"")
    assert main(["tag", *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert fake_load_model == []  # failed before loading the model
    assert not (tmp_path / "nodir").exists() and not (tmp_path / "genrekit-tags.sqlite").exists()


def test_cli_ctrl_c_saves_and_reports(library, tmp_path, capsys, monkeypatch):
    import genrekit.prediction
    from genrekit.cli import main

    model = FakeModel(interrupt_on=3)
    monkeypatch.setattr(genrekit.prediction, "load_model", lambda *a, **k: model)
    db = tmp_path / "t.sqlite"
    assert main(["tag", str(library), "--write", "--overwrite", "--quiet", "--db", str(db)]) == 130
    assert "interrupted after 2 of 5 files" in capsys.readouterr().out
    assert len(db_rows(db)) == 2


def test_cli_module_is_light():
    code = ("import sys, genrekit.cli.tag as t, argparse; t.add_arguments(argparse.ArgumentParser()); "
            "print(sorted(m for m in ('torch', 'mutagen', 'genrekit.tagging', 'genrekit.prediction') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert out.strip() == "[]"


def test_cli_with_the_shipped_model_on_real_music(tmp_path, capsys, gtzan_wav):
    """The real model on a real GTZAN clip: display name written, then undone byte for byte."""
    from genrekit.cli import main
    from genrekit.prediction import DISPLAY_NAMES

    path, db = tmp_path / "clip.wav", tmp_path / "t.sqlite"
    shutil.copyfile(gtzan_wav, path)
    raw = path.read_bytes()
    rc = main(["tag", str(path), "--write", "--quiet", "--db", str(db)])
    out = capsys.readouterr().out
    row = db_rows(db)[path.name]
    assert rc == 0, out
    if row["status"] == "abstained":
        assert path.read_bytes() == raw and "abstained 1" in out
        return
    assert row["status"] == "tagged" and row["genre"] in DISPLAY_NAMES
    assert genres_with_mutagen(path) == [DISPLAY_NAMES[row["genre"]]]
    assert main(["tag", "--undo", str(path), "--db", str(db), "--quiet"]) == 0
    assert path.read_bytes() == raw


# --------------------------------------------------------------------------- ID3v1

def _id3v1(title=b"V1 Title", artist=b"V1 Artist", album=b"V1 Album", year=b"1999", comment=b"a comment",
           track=7, genre=8) -> bytes:
    """An ID3v1.1 block: 128 bytes, genre 8 = Jazz."""
    def pad(b, n):
        return b.ljust(n, b"\0")
    return b"TAG" + pad(title, 30) + pad(artist, 30) + pad(album, 30) + year + pad(comment, 28) + \
        bytes([0, track, genre])


def _mp3_with_v23_title_and_v1(folder: Path, v2: bool = True) -> Path:
    from mutagen.id3 import ID3, TIT2

    path = make_file(folder, "mp3")
    if v2:
        tags = ID3()
        tags.add(TIT2(encoding=1, text=["v2 title"]))
        tags.save(path, v2_version=3, v1=0)
    with open(path, "ab") as f:
        f.write(_id3v1())
    return path


@pytest.mark.parametrize("v2", [True, False], ids=["v23+v1", "v1-only"])
def test_id3v1_genre_counts_and_is_kept_without_overwrite(v2, tmp_path):
    path = _mp3_with_v23_title_and_v1(tmp_path / "lib", v2)
    before = path.read_bytes()
    s = tag([path], FakeModel(genre="metal"), tmp_path / "db.sqlite", write=True)
    assert [r.status for r in s.results] == ["kept"] and "'Jazz'" in s.results[0].reason
    assert path.read_bytes() == before
    assert read_tags(path).genres == ["Jazz"]


@pytest.mark.parametrize("v2", [True, False], ids=["v23+v1", "v1-only"])
def test_id3v1_overwrite_changes_only_the_genre_and_undo_restores_exactly(v2, tmp_path):
    path = _mp3_with_v23_title_and_v1(tmp_path / "lib", v2)
    before, db = path.read_bytes(), tmp_path / "db.sqlite"
    original = shutil.copy(path, tmp_path / "original.mp3")
    s = tag([path], FakeModel(genre="metal"), db, write=True, overwrite=True)
    assert [r.status for r in s.results] == ["tagged"] and s.results[0].old_genres == ["Jazz"]
    after = path.read_bytes()
    assert after[-128:] == _id3v1(genre=9)  # only the genre byte changed: 9 = Metal
    assert genres_with_mutagen(path) == ["Metal"]
    assert audio_payload(path) == audio_payload(Path(original))
    u = undo([path], db)
    assert [r.status for r in u.results] == ["restored"] and "'Jazz'" in u.results[0].reason
    assert path.read_bytes() == before


def test_undo_of_a_write_recorded_before_id3v1_was_kept_apart(tmp_path):
    """An undo record from genrekit before ID3v1 was kept (no "v1", a digest without the block) is
    undone, not refused as changed; the ID3v1 genre follows the restored ID3v2 genre, as mutagen did then."""
    import json

    from mutagen.id3 import ID3, TCON

    from genrekit.tagging import _TagFile

    path, db = _mp3_with_v23_title_and_v1(tmp_path / "lib"), tmp_path / "db.sqlite"
    tags = ID3(path, translate=False)
    tags.add(TCON(encoding=1, text=["Jazz"]))
    tags.save(path, v2_version=3, v1=0)  # v1=0 drops the ID3v1 block: put it back
    with open(path, "ab") as f:
        f.write(_id3v1())
    before_bytes = path.read_bytes()
    tag([path], FakeModel(genre="metal"), db, write=True, overwrite=True)
    con = sqlite3.connect(db)
    with con:
        (key, before), = con.execute("SELECT path, before FROM undo").fetchall()
        old = {k: v for k, v in json.loads(before).items() if k != "v1"}
        con.execute("UPDATE undo SET before = ?, digest = ? WHERE path = ?",
                    (json.dumps(old), _TagFile(path).digest(with_v1=False), key))
    con.close()
    u = undo([path], db)
    assert [r.status for r in u.results] == ["restored"], u.format()
    assert path.read_bytes() == before_bytes


# --------------------------------------------------------------------------- odd file names

ODD_NAME = os.fsdecode(b"caf\xe9.mp3")  # Latin-1 bytes: not valid UTF-8


def test_file_name_not_valid_utf8_is_tagged_exported_and_undone(tmp_path):
    lib, db = tmp_path / "lib", tmp_path / "db.sqlite"
    path = make_file(lib, "mp3").rename(lib / ODD_NAME)
    before = path.read_bytes()
    s = tag([lib], FakeModel(genre="jazz"), db, write=True)
    assert [r.status for r in s.results] == ["tagged"], s.format()
    assert tag([lib], FakeModel(genre="jazz"), db, write=True).results[0].status == "done"
    assert export_csv(db, tmp_path / "t.csv") == 1
    row = next(csv.DictReader((tmp_path / "t.csv").open(encoding="utf-8")))
    assert row["path"].endswith("caf\\xe9.mp3") and row["status"] == "tagged"
    assert [r.status for r in undo([lib], db).results] == ["restored"]
    assert path.read_bytes() == before


def _cli_with_fake_model(argv, cwd):
    code = ("import sys, genrekit.prediction as p, tests.test_tagging as t\n"
            "p.load_model = lambda *a, **k: t.FakeModel(genre='hiphop')\n"
            "from genrekit.cli import main\nsys.exit(main(sys.argv[1:]))")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "LC_ALL": "C.UTF-8"}
    env.pop("PYTHONIOENCODING", None)
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, cwd=cwd, env=env, timeout=120)


def test_cli_file_name_not_valid_utf8(tmp_path):
    lib = tmp_path / "lib"
    make_file(lib, "mp3").rename(lib / ODD_NAME)
    make_file(lib, "flac", "other")
    proc = _cli_with_fake_model(["tag", str(lib), "--write", "--export-csv", "t.csv"], tmp_path)
    out, err = proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert "caf\\xe9.mp3: wrote genre 'Hip-Hop'" in out and "exported 2 rows" in out


def test_silent_file_is_not_music_not_a_failure(tmp_path):
    lib, db = tmp_path / "lib", tmp_path / "db.sqlite"
    lib.mkdir()
    sf.write(lib / "silent.flac", np.zeros(33075, np.float32), 22050)
    y = _tone()
    sf.write(lib / "inverted.wav", np.stack([y, -y], axis=1), 22050, subtype="FLOAT")  # exactly -y
    s = tag([lib], FakeModel(), db, write=True)
    by_name = {Path(r.path).name: r for r in s.results}
    assert by_name["silent.flac"].status == "abstained" and by_name["silent.flac"].abstain == "not_music"
    assert "all silent" in by_name["silent.flac"].describe()
    assert by_name["inverted.wav"].status == "failed" and "channels cancel" in by_name["inverted.wav"].reason
    assert "abstained 1 (1 not music)" in s.format()


@pytest.mark.parametrize("size", [b"\xff\xff\xff\xff", bytes(4)])
def test_wav_written_to_a_pipe_fails_alone_and_is_left_as_it_is(size, tmp_path):
    """A WAV written to a pipe has 0xFFFFFFFF as its RIFF and data sizes: mutagen cannot add a
    chunk to it (it appended the chunk, then crashed on the size), so genrekit refuses it. One
    never finished has 0 there, which mutagen cannot parse."""
    piped = make_file(tmp_path / "lib", "wav", name="piped")
    data = bytearray(piped.read_bytes())
    at = data.index(b"data") + 4
    data[4:8] = data[at: at + 4] = size
    piped.write_bytes(bytes(data))
    make_file(tmp_path / "lib", "wav", name="other")
    db = tmp_path / "t.sqlite"
    assert [Path(r.path).name for r in tag([tmp_path / "lib"], FakeModel(), db).failed] == ["piped.wav"]
    summary = tag([tmp_path / "lib"], FakeModel(), db, write=True)
    assert [Path(r.path).name for r in summary.tagged] == ["other.wav"]
    assert [(Path(r.path).name, r.reason) for r in summary.failed] == [
        ("piped.wav", "cannot write tags (the header gives no size, as when written to a pipe or not "
                      "finished; rewrite the file, e.g. with ffmpeg, to tag it)")]
    assert piped.read_bytes() == bytes(data)
    assert not db_rows(db, "undo").get("piped.wav")
    assert [Path(r.path).name for r in undo(None, db).restored] == ["other.wav"]


def test_same_file_by_two_paths_is_tagged_once_and_undone(tmp_path):
    """A symlink to a file in the library is the same file: one write, one undo record."""
    lib = tmp_path / "lib"
    path = make_file(lib / "album", "mp3")
    set_tags(path)
    raw = path.read_bytes()
    (lib / "favourites").mkdir()
    (lib / "favourites" / "song.mp3").symlink_to(path)
    db = tmp_path / "t.sqlite"
    assert len(tag([lib], FakeModel(), db).would_tag) == 1
    summary = tag([lib], FakeModel(), db, write=True, force=True)
    assert len(summary.results) == 1 and len(summary.tagged) == 1
    summary = tag([lib], FakeModel(), db, write=True, force=True)
    assert len(summary.results) == 1 and len(summary.tagged) == 1
    result = undo(None, db)
    assert len(result.restored) == 1 and not result.refused
    assert path.read_bytes() == raw


def test_genre_in_apev2_or_riff_info_is_kept(tmp_path):
    """MP3s tagged by foobar2000 or MP3Gain carry APEv2, WAVs from Windows or ffmpeg a RIFF
    INFO chunk; players show the genre there, so it is kept as any genre is."""
    from mutagen.apev2 import APEv2

    mp3 = make_file(tmp_path / "lib", "mp3")
    ape = APEv2()
    ape["Genre"], ape["Title"] = "Jazz", "A Title"
    ape.save(mp3)
    wav = tmp_path / "lib" / "song.wav"
    with sf.SoundFile(wav, "w", 22050, 1, "PCM_16") as f:
        f.genre, f.title = "Blues", "A Title"
        f.write(_tone())
    before = {p: p.read_bytes() for p in (mp3, wav)}
    assert read_tags(mp3).genres == ["Jazz"] and read_tags(wav).genres == ["Blues"]
    db = tmp_path / "t.sqlite"
    summary = tag([tmp_path / "lib"], FakeModel(genre="rock"), db, write=True)
    assert [(Path(r.path).name, r.old_genres) for r in summary.kept] == [("song.mp3", ["Jazz"]),
                                                                         ("song.wav", ["Blues"])]
    assert all(p.read_bytes() == raw for p, raw in before.items())
    summary = tag([tmp_path / "lib"], FakeModel(genre="rock"), db, write=True, overwrite=True)
    assert len(summary.tagged) == 2 and read_tags(wav).genres == ["Rock"]
    assert len(undo(None, db).restored) == 2
    assert all(p.read_bytes() == raw for p, raw in before.items())


def _with_info_chunk(path: Path, items: list[tuple[bytes, bytes]]) -> None:
    """Append a ``LIST``/``INFO`` chunk holding ``items`` (id, raw text) to a WAV, as Windows writes it."""
    body = b"INFO"
    for key, raw in items:
        text = raw + b"\0"
        body += key + len(text).to_bytes(4, "little") + text + b"\0" * (len(text) & 1)
    data = bytearray(path.read_bytes()) + b"LIST" + len(body).to_bytes(4, "little") + body
    data[4:8] = (len(data) - 8).to_bytes(4, "little")
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("raw, genre", [(b"M\xfasica", "Música"), ("Música".encode(), "Música"),
                                        (b"Electr\xf3nica \x96 Dub", "Electrónica – Dub"),
                                        (b"Jazz\x81", "Jazz\x81")])
def test_riff_info_genre_reads_as_written_in_any_code_page(tmp_path, raw, genre):
    """RIFF INFO has no encoding field: Windows programs wrote their code page, newer ones UTF-8."""
    wav = tmp_path / "song.wav"
    sf.write(wav, _tone(), 22050, subtype="PCM_16")
    _with_info_chunk(wav, [(b"INAM", b"A Title"), (b"IGNR", raw)])
    assert read_tags(wav).genres == [genre]


def test_a_name_with_a_newline_stays_on_one_line(tmp_path):
    path = make_file(tmp_path / "lib", "mp3", "two\nlines")
    s = tag([path], FakeModel(genre="jazz"), tmp_path / "db.sqlite")
    (line,) = s.results[0].describe().splitlines()
    assert line.startswith(f"{tmp_path}/lib/two\\nlines.mp3: would write genre")


def test_reasons_do_not_repeat_the_path():
    import errno

    import mutagen

    from genrekit.tagging import _why

    denied = PermissionError(errno.EACCES, "Permission denied", "/music/a.mp3")
    assert _why(mutagen.MutagenError(denied)) == _why(denied) == "permission denied"
    assert _why(OSError(errno.ELOOP, "Too many levels of symbolic links", "/music/b.mp3")) == "symlink loop"
    assert _why(ValueError("bad frame")) == "bad frame"


def test_a_retrained_model_of_the_same_name_has_another_id():
    """tag reuses a dry run's predictions only under the same model_id: a model retrained under the
    same name and genrekit version must not pass for the old one."""
    from types import SimpleNamespace

    from genrekit.prediction import GenreClassifier

    def model_id(**payload):
        return GenreClassifier.model_id.fget(SimpleNamespace(payload=payload, source="/m/mine.onnx"))

    first = model_id(name="mine", genrekit_version="0.1.0", created="2026-12-02T21:58:43Z")
    again = model_id(name="mine", genrekit_version="0.1.0", created="2026-12-03T07:10:00Z")
    assert first == "mine@0.1.0+20261202T215843Z" and again != first
    assert model_id(genrekit_version="0.1.0") == "mine@0.1.0"  # no training time recorded: as before
