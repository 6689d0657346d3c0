"""The command line: fast help without heavy imports, every command listed, clear errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genrekit.cli import COMMANDS, main

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
