"""A music library as users have one: files that other programs made, through predict and tag.

The cases come from running genrekit over Debian's game music packages (wesnoth-1.16-music,
warzone2100-music, extremetuxracer-data, pingus-data, openttd-openmsx; see
bench/outside_music.py). No audio from them is used here: each test makes the smallest file
that shows the same thing.
"""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import soundfile as sf

from genrekit.cli import main
from tests.conftest import shift_ogg_page

SR = 48000


def jumping_opus(path, seconds: float = 8.0):
    """An Opus file with one page's granule position 488 samples ahead of its packets, as
    ``ffmpeg -i race1-jt.ogg race1-jt.opus`` writes it: libsndfile stops there ("malformed")."""
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(0)
    y = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 2 * t)) / 2 + 0.02 * rng.standard_normal(len(t))
    sf.write(path, y.astype(np.float32), SR, format="OGG", subtype="OPUS")
    return shift_ogg_page(path, path, None, 488)


MIDI = (b"MThd" + struct.pack(">IHHH", 6, 0, 1, 96) + b"MTrk" + struct.pack(">I", 12)
        + bytes([0x00, 0x90, 60, 100, 0x60, 0x80, 60, 0, 0x00, 0xFF, 0x2F, 0x00]))


def test_predict_a_library_with_an_ffmpeg_opus_a_midi_file_and_a_tracker_module(tmp_path, capsys):
    library = tmp_path / "Music"
    library.mkdir()
    opus = jumping_opus(library / "race.opus")
    midi = library / "theme.mid"
    midi.write_bytes(MIDI)
    module = library / "level.it"
    module.write_bytes(b"IMPM" + bytes(400))
    assert main(["predict", str(library), str(midi), str(module), "--format", "json", "--quiet"]) == 1
    out, err = capsys.readouterr()
    results = {r["path"]: r for r in json.loads(out)}
    assert results[str(opus)]["genre"] or results[str(opus)]["abstain"]  # an answer, not an error
    assert "error" not in results[str(opus)]
    assert results[str(opus)]["duration"] == pytest.approx(8.0, abs=0.05)
    assert "a MIDI file: notes, not recorded sound" in results[str(midi)]["error"]
    assert "an Impulse Tracker module" in results[str(module)]["error"]
    assert "Traceback" not in err
    failed = [line for line in err.splitlines() if line.startswith("  ")]
    assert len(failed) == 2 and all(str(library) in line for line in failed)


def test_tag_write_and_undo_an_ffmpeg_opus(tmp_path, capsys):
    from mutagen.oggopus import OggOpus

    from genrekit.audio import load_audio

    opus = jumping_opus(tmp_path / "race.opus")
    audio = load_audio(opus, sr=SR)
    db = tmp_path / "tags.sqlite"
    assert main(["tag", str(opus), "--db", str(db), "--write", "--min-confidence", "0", "--quiet"]) == 0
    assert "tagged 1" in capsys.readouterr().out
    assert OggOpus(opus).get("genre")
    assert main(["tag", "--undo", str(opus), "--db", str(db), "--quiet"]) == 0
    assert "restored 1" in capsys.readouterr().out
    assert OggOpus(opus).get("genre") is None
    np.testing.assert_array_equal(load_audio(opus, sr=SR), audio)
