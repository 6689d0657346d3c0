"""`embed` and `export` when their output cannot be written, or would replace their input: one line, no traceback."""
from __future__ import annotations

import numpy as np
import pytest

from genrekit.cli import main

from .test_tagger import chord


def test_embed_reports_outputs_it_cannot_write_and_goes_on(write_wav, tmp_path, capsys):
    (tmp_path / "music" / "sub").mkdir(parents=True)
    write_wav("music/sub/a.wav", chord(4.0), sr=16000)
    write_wav("music/b.wav", chord(4.0, amplitude=0.2), sr=16000)
    out = tmp_path / "emb"
    out.mkdir()
    (out / "sub").write_text("a file where the folder for sub/a.npz would go")
    assert main(["embed", str(tmp_path / "music"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "a.wav: cannot write" in err and str(out / "sub") in err
    assert "1 written" in err and "1 failed" in err
    with np.load(out / "b.npz") as b:  # the other file was written
        assert b["embedding"].shape == (1, 200)

    assert main(["embed", str(tmp_path / "music" / "b.wav"), "--out", str(out / "sub" / "deeper")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "cannot write to --out" in err and "Not a directory" in err


def test_export_never_replaces_its_checkpoint_and_says_why_it_cannot_write(tiny_checkpoint, tmp_path, capsys):
    pytest.importorskip("onnx")
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(tiny_checkpoint.read_bytes())
    before = checkpoint.read_bytes()
    assert main(["export", str(checkpoint), "--out", str(tmp_path / ".." / tmp_path.name / "model.safetensors")]) == 1
    assert "is the checkpoint itself" in capsys.readouterr().err and checkpoint.read_bytes() == before

    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["export", str(checkpoint), "--out", str(blocker / "model.onnx")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "cannot write the ONNX file" in err and str(blocker / "model.onnx") in err

    assert main(["export", str(checkpoint)]) == 0
    onnx_file = tmp_path / "model.onnx"
    exported = onnx_file.read_bytes()
    assert main(["export", str(onnx_file)]) == 1  # its default --out is itself
    assert "already an ONNX model file" in capsys.readouterr().err and onnx_file.read_bytes() == exported


def test_embed_of_the_same_file_given_twice_is_no_clash(write_wav, tmp_path, capsys):
    (tmp_path / "music").mkdir()
    song = write_wav("music/a.wav", chord(4.0), sr=16000)
    out = tmp_path / "emb"
    assert main(["embed", str(song), str(tmp_path / "music" / ".." / "music" / "a.wav"), "--out", str(out)]) == 0
    assert main(["embed", str(tmp_path / "music"), str(tmp_path / "music"), "--out", str(out / "folder")]) == 0
    err = capsys.readouterr().err
    assert "clashes" not in err and "0 failed" in err and (out / "a.npz").is_file() and (out / "folder" / "a.npz").is_file()


def test_embed_does_not_skip_an_output_made_from_another_file_of_that_name(write_wav, tmp_path, capsys):
    for folder in ("one", "two", "moved"):
        (tmp_path / folder).mkdir()
    first = write_wav("one/a.wav", chord(4.0), sr=16000)
    other = write_wav("two/a.wav", chord(6.0), sr=16000)
    moved = tmp_path / "moved" / "a.wav"
    moved.write_bytes(first.read_bytes())
    out = tmp_path / "emb"
    assert main(["embed", str(first), "--out", str(out)]) == 0
    made = (out / "a.npz").read_bytes()
    assert main(["embed", str(moved), "--out", str(out)]) == 0  # the same audio, moved: skipped
    assert main(["embed", str(other), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{out / 'a.npz'} exists, made from another file ({first.resolve()})" in err
    assert (out / "a.npz").read_bytes() == made
    assert main(["embed", str(other), "--out", str(out), "--overwrite"]) == 0
    with np.load(out / "a.npz") as saved:
        assert str(saved["source"]) == str(other.resolve()) and len(saved["embedding"]) == 2
