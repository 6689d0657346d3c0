"""genrekit tag: genres written into files' own tags, audio untouched, resumable runs.

The classifier here is a small deterministic fake (the real one is tested elsewhere); it
decodes one second with genrekit.audio so that bad files raise the real AudioErrors.
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
import types
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genrekit.audio import load_audio
from genrekit.tagging import (TaggingInterrupted, UnsupportedTagFormatError, _sigint_deferred,
                              export_csv, read_genrekit_tag, tag_library, write_genre_tag)

GENRES = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]
MODEL = "fake-model@1"
FORMATS = ["mp3", "flac", "ogg", "opus", "wav", "aiff", "m4a"]


class FakeClassifier:
    """Deterministic ``classify``: genre from the file name; records every call."""

    def __init__(self, genre=None, confidence=0.8, model_id=MODEL, interrupt_on=None):
        self.genre, self.confidence, self.model_id = genre, confidence, model_id
        self.interrupt_on = interrupt_on
        self.calls: list[str] = []

    def __call__(self, path):
        self.calls.append(Path(path).name)
        if self.interrupt_on == len(self.calls):
            raise KeyboardInterrupt
        load_audio(path, duration=1.0)  # bad audio raises genrekit's AudioError
        genre = self.genre or GENRES[zlib.crc32(Path(path).name.encode()) % len(GENRES)]
        probs = {g: (1 - self.confidence) / (len(GENRES) - 1) for g in GENRES}
        probs[genre] = self.confidence
        return genre, self.confidence, probs, self.model_id


# --------------------------------------------------------------------------- test files

def _write_m4a(path: Path, y: np.ndarray, sr: int) -> None:
    av = pytest.importorskip("av")
    try:
        out = av.open(str(path), "w")
        stream = out.add_stream("aac", rate=sr)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(y.astype(np.float32)[None, :], format="fltp", layout="mono")
        frame.sample_rate = sr
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
        out.close()
    except (av.FFmpegError, ValueError) as e:
        pytest.skip(f"PyAV cannot encode AAC here: {e}")


def make_file(folder: Path, fmt: str, shared_data: Path, name: str = "song") -> Path:
    """A real clip in ``fmt``: a copy of an FMA MP3, or 3 s of GTZAN re-encoded."""
    path = folder / f"{name}.{fmt}"
    if fmt == "mp3":
        shutil.copyfile(shared_data / "fma_small" / "000" / "000002.mp3", path)
        return path
    y, sr = sf.read(shared_data / "gtzan" / "rock" / "rock.00001.wav", frames=3 * 22050,
                    start=5 * 22050, dtype="float32")
    if fmt == "m4a":
        _write_m4a(path, y, sr)
    elif fmt == "opus":
        sf.write(path, y, 48000, format="OGG", subtype="OPUS")
    else:
        sf.write(path, y, sr, subtype={"ogg": "VORBIS", "au": "PCM_16"}.get(fmt, "PCM_16"))
    return path


@pytest.fixture
def library(tmp_path, shared_data):
    """A folder with one good file per format (plus a sub-folder), and a DB path beside it."""
    lib = tmp_path / "lib"
    (lib / "sub").mkdir(parents=True)
    for fmt in ["mp3", "flac", "ogg", "wav"]:
        make_file(lib, fmt, shared_data)
    make_file(lib / "sub", "flac", shared_data, name="other")
    return lib


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


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


def decoded(path: Path) -> np.ndarray:
    if path.suffix == ".m4a":
        import av

        with av.open(str(path)) as c:
            return np.concatenate([f.to_ndarray().ravel() for f in c.decode(audio=0)])
    return sf.read(path, dtype="int16" if path.suffix != ".opus" else "float32")[0]


def tags_with_mutagen(path: Path) -> tuple[str, dict]:
    """(genre, parsed GENREKIT marker) read with mutagen directly, not through genrekit."""
    import mutagen

    f = mutagen.File(path)
    if path.suffix in (".mp3", ".wav", ".aiff"):
        return f.tags["TCON"].text[0], json.loads(f.tags["TXXX:GENREKIT"].text[0])
    if path.suffix == ".m4a":
        return f.tags["\xa9gen"][0], json.loads(bytes(f.tags["----:com.genrekit:genrekit"][0]))
    return f.tags["GENRE"][0], json.loads(f.tags["GENREKIT"][0])


def db_rows(db: Path) -> dict:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return {Path(r["path"]).name: dict(r) for r in con.execute("SELECT * FROM files")}
    finally:
        con.close()


# --------------------------------------------------------------------------- tests

def test_dry_run_changes_no_file(library, tmp_path):
    before = snapshot(library)
    summary = tag_library([library], FakeClassifier(), db_path=tmp_path / "t.sqlite", progress=False)
    assert snapshot(library) == before  # bytes and mtimes
    assert len(summary.would_tag) == 5 and not summary.tagged and not summary.failed
    rows = db_rows(tmp_path / "t.sqlite")
    assert {r["status"] for r in rows.values()} == {"would-tag"}
    assert not any(r["written"] for r in rows.values())


@pytest.mark.parametrize("fmt", FORMATS)
def test_write_round_trip_keeps_audio(fmt, tmp_path, shared_data):
    path = make_file(tmp_path, fmt, shared_data)
    payload, samples, raw = audio_payload(path), decoded(path), path.read_bytes()
    classify = FakeClassifier(genre="jazz", confidence=0.75)

    summary = tag_library([path], classify, write=True, db_path=tmp_path / "t.sqlite", progress=False)

    assert [r.status for r in summary.results] == ["tagged"]
    assert path.read_bytes() != raw  # the tag block did change...
    assert audio_payload(path) == payload  # ...and the audio bytes did not
    np.testing.assert_array_equal(decoded(path), samples)
    genre, marker = tags_with_mutagen(path)
    assert genre == "jazz"
    assert marker == {"genre": "jazz", "confidence": 0.75, "model": MODEL}
    tag = read_genrekit_tag(path)
    assert (tag.genre, tag.confidence, tag.model_id) == ("jazz", 0.75, MODEL)


def test_flac_md5_and_other_tags_kept(tmp_path, shared_data):
    import mutagen

    flac, mp3 = make_file(tmp_path, "flac", shared_data), make_file(tmp_path, "mp3", shared_data)
    md5 = mutagen.File(flac).info.md5_signature
    title = mutagen.File(mp3).tags["TIT2"].text
    tag_library([tmp_path], FakeClassifier(), write=True, db_path=tmp_path / "t.sqlite", progress=False)
    assert md5 != 0 and mutagen.File(flac).info.md5_signature == md5
    tags = mutagen.File(mp3).tags
    assert tags["TIT2"].text == title and tags.getall("TPE1")  # title and artist untouched
    assert tags.version[:2] == (2, 4)


def test_id3v23_file_stays_v23(tmp_path, shared_data):
    from mutagen.id3 import ID3

    path = make_file(tmp_path, "mp3", shared_data)
    ID3(path).save(v2_version=3)
    write_genre_tag(path, "blues", 0.6, MODEL)
    tags = ID3(path)
    assert tags.version[:2] == (2, 3)
    assert tags["TCON"].text == ["blues"] and read_genrekit_tag(path).genre == "blues"


def test_skip_already_tagged_unless_force(library, tmp_path):
    tag_library([library], FakeClassifier(genre="rock"), write=True, db_path=tmp_path / "a.sqlite",
                progress=False)
    before = snapshot(library)
    # A fresh database: only the GENREKIT marker in the files tells genrekit they are done.
    again = FakeClassifier(genre="metal")
    summary = tag_library([library], again, write=True, db_path=tmp_path / "b.sqlite", progress=False)
    assert {r.status for r in summary.results} == {"already-tagged"} and again.calls == []
    assert snapshot(library) == before
    assert {r["genre"] for r in db_rows(tmp_path / "b.sqlite").values()} == {"rock"}

    forced = tag_library([library], again, write=True, force=True, db_path=tmp_path / "b.sqlite",
                         progress=False)
    assert len(forced.tagged) == 5 and len(again.calls) == 5
    assert {tags_with_mutagen(p)[0] for p in library.rglob("*.*")} == {"metal"}


def test_resume_after_interrupt(library, tmp_path):
    db = tmp_path / "t.sqlite"
    files = sorted(p.name for p in library.rglob("*.*"))
    with pytest.raises(TaggingInterrupted) as stop:
        tag_library([library], FakeClassifier(interrupt_on=3), write=True, db_path=db, progress=False)
    assert len(stop.value.summary.results) == 2 and "interrupted" in stop.value.summary.format()
    assert isinstance(stop.value, KeyboardInterrupt)
    done = [Path(p).name for p in db_rows(db)]
    assert len(done) == 2

    resumed = FakeClassifier()
    summary = tag_library([library], resumed, write=True, db_path=db, progress=False)
    assert not set(resumed.calls) & set(done) and len(resumed.calls) == 3
    assert sorted(r.status for r in summary.results) == ["done"] * 2 + ["tagged"] * 3
    rows = db_rows(db)
    assert sorted(rows) == files and all(r["status"] == "tagged" and r["written"] for r in rows.values())
    assert all(read_genrekit_tag(p) is not None for p in library.rglob("*.*"))


def test_dry_run_predictions_reused_unless_file_or_model_changed(library, tmp_path):
    db = tmp_path / "t.sqlite"
    tag_library([library], FakeClassifier(), db_path=db, progress=False, model_id=MODEL)
    later = FakeClassifier()
    touched = library / "song.wav"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    summary = tag_library([library], later, write=True, db_path=db, progress=False, model_id=MODEL)
    assert later.calls == ["song.wav"] and len(summary.tagged) == 5
    other_model = FakeClassifier(model_id="fake-model@2")
    tag_library([library], other_model, db_path=db, progress=False, model_id="fake-model@2", force=True)
    assert len(other_model.calls) == 5


def test_bad_files_reported_and_others_tagged(library, tmp_path):
    (library / "empty.mp3").write_bytes(b"")
    (library / "notes.mp3").write_text("not audio at all\n" * 20)
    (library / "broken.flac").write_bytes(b"fLaC" + bytes(range(256)) * 8)
    (library / "cut.ogg").write_bytes((library / "song.ogg").read_bytes()[:200])
    db = tmp_path / "t.sqlite"
    summary = tag_library([library], FakeClassifier(), write=True, db_path=db, progress=False)
    failed = {Path(r.path).name: r.reason for r in summary.failed}
    assert set(failed) == {"empty.mp3", "notes.mp3", "broken.flac", "cut.ogg"}
    assert "empty" in failed["empty.mp3"] and "not an audio file" in failed["notes.mp3"]
    assert len(summary.tagged) == 5
    rows = db_rows(db)
    assert all(rows[n]["status"] == "failed" and rows[n]["error"] and not rows[n]["written"] for n in failed)
    report = summary.format()
    assert "failed 4" in report and all(n in report for n in failed)


def test_unexpected_classifier_error_fails_one_file_only(library, tmp_path):
    good = FakeClassifier()

    def classify(path):
        if Path(path).name == "song.ogg":
            raise RuntimeError("boom")
        return good(path)

    summary = tag_library([library], classify, write=True, db_path=tmp_path / "t.sqlite", progress=False)
    assert [(Path(r.path).name, r.reason) for r in summary.failed] == [
        ("song.ogg", "unexpected error: RuntimeError: boom")]
    assert len(summary.tagged) == 4


def test_unsupported_tag_format_is_skipped_not_failed(tmp_path, shared_data):
    path = make_file(tmp_path, "au", shared_data)
    raw = path.read_bytes()
    summary = tag_library([path], FakeClassifier(), write=True, db_path=tmp_path / "t.sqlite",
                          progress=False)
    assert [r.status for r in summary.results] == ["unsupported"] and not summary.failed
    assert "tag format not supported" in summary.results[0].reason
    assert path.read_bytes() == raw
    with pytest.raises(UnsupportedTagFormatError, match="song.au"):
        write_genre_tag(path, "rock", 0.5, MODEL)


def test_min_confidence_records_but_does_not_write(library, tmp_path):
    before = snapshot(library)
    summary = tag_library([library], FakeClassifier(confidence=0.3), write=True, min_confidence=0.5,
                          db_path=tmp_path / "t.sqlite", progress=False)
    assert {r.status for r in summary.results} == {"low-confidence"} and snapshot(library) == before


def test_export_csv(library, tmp_path):
    db, out = tmp_path / "t.sqlite", tmp_path / "out" / "tags.csv"
    tag_library([library], FakeClassifier(), db_path=db, progress=False)
    assert export_csv(db, out) == 5
    rows = list(csv.DictReader(out.open()))
    assert sorted(Path(r["path"]).name for r in rows) == sorted(p.name for p in library.rglob("*.*"))
    for r in rows:
        probs = json.loads(r["probabilities"])
        assert r["genre"] in GENRES and probs[r["genre"]] == pytest.approx(float(r["confidence"]))
        assert r["status"] == "would-tag" and r["model"] == MODEL and int(r["size"]) > 0
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
def fake_prediction(monkeypatch):
    """Stand-in for genrekit.prediction (its contract: load_model -> model.predict_file)."""
    loaded = []

    class Model:
        model_id = MODEL

        def predict_file(self, path):
            genre, _, probs, _ = FakeClassifier()(path)
            return types.SimpleNamespace(genre=genre, probabilities=probs, path=str(path))

    module = types.ModuleType("genrekit.prediction")
    module.load_model = lambda name=None: loaded.append(name) or Model()
    monkeypatch.setitem(sys.modules, "genrekit.prediction", module)
    return loaded


def test_cli_dry_run(library, tmp_path, monkeypatch, capsys, fake_prediction):
    from genrekit.cli import main

    monkeypatch.chdir(tmp_path)
    before = snapshot(library)
    assert main(["tag", str(library), "--model", "m1"]) == 0
    out = capsys.readouterr().out
    assert out.count(f"would tag {library}") == 5 and "nothing was written" in out
    assert snapshot(library) == before and fake_prediction == ["m1"]
    assert (tmp_path / "genrekit-tags.sqlite").is_file()


def test_cli_write_with_bad_file_and_export(library, tmp_path, capsys, fake_prediction):
    from genrekit.cli import main

    (library / "notes.mp3").write_text("not audio\n" * 20)
    db, out = tmp_path / "t.sqlite", tmp_path / "tags.csv"
    rc = main(["tag", str(library), "--write", "--quiet", "--db", str(db), "--export-csv", str(out)])
    text = capsys.readouterr().out
    assert rc == 1
    assert "tagged 5" in text and "failed 1" in text and "notes.mp3" in text
    assert f"tagged {library}" not in text  # --quiet: no line per file
    assert len(list(csv.DictReader(out.open()))) == 6
    assert tags_with_mutagen(library / "song.mp3")[1]["model"] == MODEL


def test_cli_ctrl_c_saves_and_reports(library, tmp_path, capsys, fake_prediction):
    from genrekit.cli import main

    model = sys.modules["genrekit.prediction"].load_model()
    calls = []

    def predict_file(path):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return type(model).predict_file(model, path)

    model.predict_file = predict_file
    sys.modules["genrekit.prediction"].load_model = lambda name=None: model
    db = tmp_path / "t.sqlite"
    assert main(["tag", str(library), "--write", "--quiet", "--db", str(db)]) == 130
    assert "interrupted after 2 of 5 files" in capsys.readouterr().out
    assert len(db_rows(db)) == 2


def test_cli_needs_paths_or_export(capsys):
    from genrekit.cli import main

    assert main(["tag"]) == 1
    assert "give audio files" in capsys.readouterr().err


def test_cli_module_is_light():
    code = ("import sys, genrekit.cli.tag as t, argparse; t.add_arguments(argparse.ArgumentParser()); "
            "print(sorted(m for m in ('torch', 'mutagen', 'genrekit.tagging', 'genrekit.prediction') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert out.strip() == "[]"
