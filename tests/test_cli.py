"""The command line: fast help without heavy imports, every command listed, clear errors."""
from __future__ import annotations

import subprocess
import sys

from genrekit.cli import COMMANDS, main


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
