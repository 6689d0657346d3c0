"""The command line: fast help without heavy imports, every command listed, clear errors."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genrekit.cli import COMMANDS, main

from .conftest import tone

REPO = Path(__file__).resolve().parents[1]


def test_help_lists_every_command_and_imports_nothing_heavy():
    code = ("import sys, io, contextlib\nfrom genrekit.cli import main\nbuf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
            "heavy = [m for m in ('torch', 'numpy', 'pandas', 'fastapi', 'mutagen', 'ray', 'soundfile', 'matplotlib')\n"
            "         if m in sys.modules]\n"
            "print(buf.getvalue()); print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
    for command in COMMANDS:
        assert command in out


def test_each_command_has_help(capsys):
    for command in COMMANDS:
        try:
            main([command, "--help"])
        except SystemExit as e:
            assert e.code == 0
        assert "usage: genrekit " + command in capsys.readouterr().out


def test_errors_are_one_line_messages_not_tracebacks(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing.pt"), str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "missing.pt" in err and "Traceback" not in err
    assert main(["prepare", "nonsense:" + str(tmp_path), "--out", str(tmp_path / "c")]) == 1
    assert "KIND:PATH" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["show", "{wav}", "--out", "{tmp}/x.txt"], "--out must end in one of"),
    (["show", "{wav}", "--out", "{tmp}"], "--out is a folder"),
    (["show", "{wav}", "--out", "{tmp}/y.png", "--offset", "-5"], "must be >= 0"),
    (["serve", "--port", "70000"], "must be a TCP port"),
    (["embed", "{wav}", "--out", "{wav}"], "--out must be a folder"),
    (["export", "{tmp}/missing.safetensors", "--out", "{tmp}"], "--out is a folder"),
    (["export", "{tmp}/missing.safetensors", "--out", "{tmp}/m.onnx"], "missing.safetensors: checkpoint not found"),
])
def test_bad_arguments_get_one_line_and_no_traceback(args, message, tmp_path, write_wav):
    wav = write_wav("a.wav", np.sin(np.arange(22050 * 2) / 20).astype(np.float32) * 0.3)
    args = [a.format(wav=wav, tmp=tmp_path) for a in args]
    proc = subprocess.run([sys.executable, "-m", "genrekit", *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- predict with a fake model
# A subprocess (real standard streams, signals, exit codes) whose load_model returns a fake that
# decodes a second of each file with genrekit.audio, so bad files fail as they do for real.

FAKE_PREDICT = """
import os, sys, time
import genrekit.prediction as p
from genrekit.audio import load_audio
from genrekit.errors import AudioError

class Fake:
    model_id, display_names = "fake@1", {"rock": "Rock", "pop": "Pop"}

    def predict_file(self, path, max_duration=None):
        load_audio(path, duration=1.0)
        return p.Prediction(str(path), "rock", {"rock": 0.9, "pop": 0.1})

    def predict_files(self, paths, max_duration=None, workers=1):
        for path in paths:
            time.sleep(float(os.environ.get("FAKE_DELAY", "0")))
            try:
                load_audio(path, duration=1.0)
            except AudioError as e:
                yield p.Failure(str(path), e.reason + (f" ({e.detail})" if e.detail else ""),
                                abstain="not_music" if getattr(e, "no_sound", False) else None)
                continue
            yield p.Prediction(str(path), "rock", {"rock": 0.9, "pop": 0.1})

p.load_model = lambda *a, **k: Fake()
from genrekit.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_fake(argv, cwd=REPO, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(REPO), "LC_ALL": "C.UTF-8", **kwargs.pop("env", {})}
    env.pop("PYTHONIOENCODING", None)
    return subprocess.run([sys.executable, "-c", FAKE_PREDICT, *map(str, argv)], capture_output=True, cwd=cwd,
                          env=env, timeout=120, **kwargs)


ODD_NAME = os.fsdecode(b"caf\xe9.wav")  # Latin-1 bytes: not valid UTF-8


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_predict_file_name_not_valid_utf8(fmt, tmp_path, write_wav):
    write_wav("a.wav", tone(2.0)).rename(tmp_path / ODD_NAME)
    proc = run_fake(["predict", tmp_path, "--format", fmt])
    out = proc.stdout.decode("utf-8")  # strict: valid UTF-8
    assert proc.returncode == 0 and b"Traceback" not in proc.stderr, proc.stderr
    assert "caf\\xe9.wav" in out.replace("\\\\", "\\")
    if fmt == "json":
        assert json.loads(out)[0]["path"].endswith("caf\\xe9.wav")
        out.encode("utf-8")  # no lone surrogate


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] in ("Z", "X")
    except OSError:
        return True


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_ctrl_c_reports_and_leaves_no_helper(tmp_path):
    import signal
    import time

    import soundfile as sf

    for i in range(6):  # MP3: decoding it starts the helper that filters libmpg123's notes
        sf.write(tmp_path / f"{i}.mp3", tone(2.0), 22050)
    (tmp_path / "0.mp3").write_bytes(b"not audio at all")
    env = {**os.environ, "PYTHONPATH": str(REPO), "FAKE_DELAY": "0.7"}
    env.pop("GENREKIT_DECODER_MESSAGES", None)
    proc = subprocess.Popen([sys.executable, "-c", FAKE_PREDICT, "predict", str(tmp_path), "--quiet"], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while not _children(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    helpers = _children(proc.pid)
    assert helpers, "the stderr filter did not start"
    time.sleep(2.0)  # a few files done, one failed
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C does: the whole foreground process group
    out, err = proc.communicate(timeout=60)
    err = err.decode()
    assert proc.returncode == 130, err
    assert "genrekit predict: interrupted" in err and "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "0.mp3: not an audio file" in err, err  # the failures so far are still reported
    deadline = time.monotonic() + 10
    while not all(map(_gone, helpers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(map(_gone, helpers)), "the helper outlived the command"


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_output_closed_early_exits_quietly(fmt, tmp_path, write_wav):
    for i in range(4):
        write_wav(f"{i}.wav", tone(1.5))
    env = {**os.environ, "PYTHONPATH": str(REPO), "FAKE_DELAY": "0.3"}
    proc = subprocess.Popen([sys.executable, "-c", FAKE_PREDICT, "predict", str(tmp_path), "--quiet", "--format", fmt],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if fmt == "table":  # printed as each file is done
        proc.stdout.readline()  # as `| head -1` does
    # JSON comes whole at the end, in writes that a pipe holds: a reader that took the first line
    # and left could be gone after them (exit 0) or between them (141). This reader leaves first.
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipe" not in err and err == "", err
    assert proc.returncode == 141  # as a Unix tool killed by SIGPIPE (128 + 13)


def test_predict_silent_file_is_not_music_not_a_failure(tmp_path):
    import soundfile as sf

    sf.write(tmp_path / "silent.wav", np.zeros(44100, np.float32), 22050)
    proc = run_fake(["predict", tmp_path / "silent.wav"])
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "not music (audio is all silent)" in out and "FAILED" not in out and "failed" not in err
    proc = run_fake(["predict", tmp_path / "silent.wav", "--format", "json"])
    assert json.loads(proc.stdout)[0]["abstain"] == "not_music" and proc.returncode == 0


def test_predict_table_keeps_one_line_and_four_columns_for_a_name_with_tab_or_newline(tmp_path, write_wav):
    write_wav("a\tb.wav", tone(1.5))
    write_wav("c\nd.wav", tone(1.5))
    (tmp_path / "e\tf.wav").write_bytes(b"not audio")
    proc = run_fake(["predict", tmp_path, "--quiet"])
    lines = proc.stdout.decode().splitlines()
    assert len(lines) == 3 and all(len(line.split("\t")) in (2, 4) for line in lines), lines
    assert {line.split("\t")[0] for line in lines} == {str(tmp_path / name) for name in
                                                      ("a\\tb.wav", "c\\nd.wav", "e\\tf.wav")}
    assert f"  {tmp_path}/e\\tf.wav: " in proc.stderr.decode()
    assert proc.returncode == 1


def test_predict_small_usage_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run_fake(["predict", tmp_path / "empty"])
    assert proc.returncode == 1 and f"no audio files found in {tmp_path / 'empty'}" in proc.stderr.decode()
    for bad in ("nan", "inf", "-1"):
        proc = run_fake(["predict", tmp_path, "--max-duration", bad])
        assert proc.returncode == 2 and "--max-duration: must be" in proc.stderr.decode(), proc.stderr


def test_empty_file_message_is_the_same_in_predict_and_tag(tmp_path):
    (tmp_path / "e.mp3").write_bytes(b"")
    predict = run_fake(["predict", tmp_path / "e.mp3"]).stderr.decode()
    tag = run_fake(["tag", tmp_path / "e.mp3", "--db", tmp_path / "db.sqlite"], cwd=tmp_path).stdout.decode()
    message = "e.mp3: empty file (no audio samples) (0 bytes)"
    assert message in predict and message in tag, (predict, tag)


def test_card_shows_the_shipped_model_and_a_checkpoint(tiny_checkpoint, capsys):
    from genrekit.prediction import load_model

    card = load_model().card
    assert main(["card"]) == 0
    text = capsys.readouterr().out
    cv = card["cv_metrics"]
    assert text.startswith(f"model {card['model_id']} ")
    assert f"balanced accuracy {cv['balanced_accuracy']:.3f}" in text and "hiphop (Hip-Hop)" in text
    assert f"reggae {cv['per_class']['reggae']['recall']:.2f} ({cv['per_class']['reggae']['support']})" in text
    assert "not music, CV: detects" in text
    assert "tag prior: blues ← blues, classical ← classical/classic," in text and "; no tag for reggae; log-odds " \
        f"times {card['tag_prior']['scale']:g}" in text and card["labels_without_tracks"] == []
    assert card["tag_prior"]["genre_tags"]["disco"] == {"MSD_musicnn": ["dance", "funk"]}
    assert main(["card", "--format", "json"]) == 0
    shown = capsys.readouterr().out
    assert json.loads(shown) == json.loads(json.dumps(card, default=str))
    assert card["detector_metrics"]["not_music_detected"] > 0.9
    assert not re.search(r"[0-9a-f]{64}", shown)  # no content hash of a training file
    assert main(["card", str(tiny_checkpoint)]) == 0  # a checkpoint without CV figures or detector
    out = capsys.readouterr().out
    assert "no not-music detector" in out and "CV (" not in out and "tag prior" not in out
