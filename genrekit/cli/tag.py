"""genrekit tag: write predicted genres into a music library's own tags, and undo it.

A dry run unless ``--write``. A file's existing genre is kept unless ``--overwrite``.
Genres are written as display names (``Hip-Hop``), which ``--genre-map`` can change.
Results and the original genre fields go to a SQLite file (``--db``) as each file is
done, so a stopped run resumes and ``--undo`` puts the old genres back. Heavy imports
(the model, mutagen) happen inside :func:`run` only.

Examples
--------
``genrekit tag ~/Music`` shows what would be written; ``genrekit tag ~/Music --write
--export-csv tags.csv`` writes the tags and exports every result; ``genrekit tag --undo
~/Music/Album`` restores that album's genres.
"""
from __future__ import annotations

import argparse
import sys

HELP = "write predicted genres into audio files' own tags (dry run unless --write), or --undo it"
DEFAULT_DB = "genrekit-tags.sqlite"  # same as genrekit.tagging.DEFAULT_DB, without importing it
NOT_WITH_UNDO = ("overwrite", "force", "genre_map", "model", "min_confidence")


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, not {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def add_arguments(p):
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="audio files, or folders searched recursively for audio files "
                        "(with --undo: limit the undo to these; default all files in --db)")
    p.add_argument("--write", action="store_true", help="write the tags (default: only show what would be written)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a genre the file already has (default: keep it)")
    p.add_argument("--undo", action="store_true",
                   help="restore the genres genrekit replaced, exactly as they were, from --db; "
                        "files changed since genrekit wrote them are left alone")
    p.add_argument("--genre-map", metavar="FILE",
                   help="genre text to write per label: CSV 'label,display' or a JSON object "
                        "(default: the model's display names, e.g. hiphop -> Hip-Hop)")
    p.add_argument("--model", help="model name or checkpoint (default: the shipped model)")
    p.add_argument("--min-confidence", type=_probability, metavar="P",
                   help="the model abstains ('uncertain') below probability P; nothing is written "
                        "(default: the model's own threshold)")
    p.add_argument("--force", action="store_true",
                   help="re-classify and re-tag files genrekit tagged before, ignoring earlier runs")
    p.add_argument("--db", default=DEFAULT_DB,
                   help=f"SQLite file keeping each file's result and its old genres (default ./{DEFAULT_DB})")
    p.add_argument("--export-csv", metavar="FILE", help="export the results database to FILE as CSV")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no line per file; summary only")


def _printer(quiet: bool):
    if quiet:
        return None
    from tqdm import tqdm

    return lambda result: tqdm.write(result.describe())


def _run_tag(args):
    from ..prediction import load_model
    from ..tagging import TaggingInterrupted, read_genre_map, tag_library

    if args.genre_map:
        read_genre_map(args.genre_map)  # a bad map fails now, before the model loads
    model = load_model(args.model, min_confidence=args.min_confidence)
    try:
        summary = tag_library(args.paths, model, write=args.write, overwrite=args.overwrite, force=args.force,
                              db_path=args.db, genre_map=args.genre_map, progress=not args.quiet,
                              on_result=_printer(args.quiet))
        status = 0
    except TaggingInterrupted as stop:
        summary, status = stop.summary, 130
    if summary.total == 0:
        print(f"no audio files found in {' '.join(args.paths)}", file=sys.stderr)
    print(summary.format())
    if not args.write and summary.would_tag:
        print("dry run: nothing was written; add --write to write the tags")
    if not args.overwrite and any("--overwrite" in r.reason for r in summary.kept):
        print("files with a genre kept it; add --overwrite to replace it")
    return status or (1 if summary.failed else 0)


def _run_undo(args):
    from ..errors import ConfigError
    from ..tagging import TaggingInterrupted, undo_library

    clashing = [f"--{name.replace('_', '-')}" for name in NOT_WITH_UNDO if getattr(args, name)]
    if clashing:
        raise ConfigError(f"--undo cannot be combined with {', '.join(clashing)}")
    try:
        summary = undo_library(args.paths or None, db_path=args.db, progress=not args.quiet,
                               on_result=_printer(args.quiet))
        status = 0
    except TaggingInterrupted as stop:
        summary, status = stop.summary, 130
    print(summary.format())
    return status or (1 if summary.failed or summary.refused else 0)


def _check_export_path(path: str) -> None:
    """Refuse an --export-csv that cannot be written, before anything runs."""
    import os

    from ..errors import ConfigError

    if os.path.isdir(path):
        raise ConfigError(f"--export-csv {path}: is a folder; give a file name such as {os.path.join(path, 'tags.csv')}")
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        raise ConfigError(f"--export-csv {path}: no such folder {parent}")


def run(args) -> int:
    from ..errors import GenrekitError

    if not args.paths and not args.export_csv and not args.undo:
        raise GenrekitError("give audio files or folders to tag (or --undo, or --export-csv to export the results)")
    if args.export_csv:
        _check_export_path(args.export_csv)
    status = 0
    if args.undo:
        status = _run_undo(args)
    elif args.paths:
        status = _run_tag(args)
    if args.export_csv:
        from ..tagging import export_csv

        n = export_csv(args.db, args.export_csv)
        print(f"exported {n} rows from {args.db} to {args.export_csv}")
    return status
