"""The ``genrekit`` command: a thin layer over the Python API.

Each sub-command is a module of this package with ``HELP``, ``add_arguments(parser)``
and ``run(args) -> int``. They import nothing heavy at module level, so ``genrekit
--help`` starts without torch.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__

COMMANDS = ["prepare", "show", "lr-find", "train", "evaluate", "predict", "card", "export", "tag",
            "musicnn-tags", "embed", "serve"]
DEPRECATED = {"tags": "musicnn-tags"}  # old name -> new name, kept for one release
# What each command needs beyond the core install: (module, pip extra).
NEEDS = {
    "train": [("torch", "train"), ("timm", "train"), ("pandas", "train")],
    "lr-find": [("torch", "train"), ("pandas", "train")],
    "evaluate": [("pandas", "train")],
    "export": [("torch", "train"), ("onnx", "train")],
    "show": [("matplotlib", "train")],
    "serve": [("fastapi", "serve"), ("uvicorn", "serve"), ("python_multipart", "serve")],
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genrekit", description="Music genre classification: prepare data, "
                                     "train, evaluate, predict, tag and serve.")
    parser.add_argument("--version", action="version", version=f"genrekit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f".{name.replace('-', '_')}", __name__)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None) -> int:
    from ..errors import GenrekitError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DEPRECATED:
        print(f"genrekit: '{argv[0]}' is deprecated, use '{DEPRECATED[argv[0]]}'", file=sys.stderr)
        argv[0] = DEPRECATED[argv[0]]
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        from ..extras import require

        for module, extra in NEEDS.get(args.command, []):
            require(module, extra, f"genrekit {args.command}")
        status = int(args._run(args) or 0)
        sys.stdout.flush()  # here, so that a closed pipe is caught below and not at exit
        return status
    except BrokenPipeError:
        return _output_closed()
    except GenrekitError as e:
        print(f"genrekit {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"genrekit {args.command}: interrupted", file=sys.stderr)
        return 130


def _output_closed() -> int:
    """The reader of our output went away (``genrekit predict ... | head``): stop quietly,
    as Unix tools do, with the status of a process killed by SIGPIPE."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())  # what Python still flushes at exit goes nowhere
        except (OSError, ValueError):
            pass
    os.close(devnull)
    return 141  # 128 + SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
