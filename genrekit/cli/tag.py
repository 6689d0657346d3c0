"""genrekit tag: write predicted genres into a music library's own tags.

A dry run unless ``--write``. Results go to a SQLite file (``--db``) as each file is
done, so a stopped run resumes where it left off. Heavy imports (the model, mutagen)
happen inside :func:`run` only.

Examples
--------
``genrekit tag ~/Music`` shows what would be written; ``genrekit tag ~/Music --write
--export-csv tags.csv`` writes the tags and exports every result.
"""
from __future__ import annotations

import argparse
import sys

HELP = "write predicted genres into audio files' own tags (dry run unless --write)"
DEFAULT_DB = "genrekit-tags.sqlite"  # same as genrekit.tagging.DEFAULT_DB, without importing it


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def add_arguments(p):
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="audio files, or folders searched recursively for audio files")
    p.add_argument("--model", help="model name or checkpoint (default: the shipped model)")
    p.add_argument("--write", action="store_true", help="write the tags (default: only show what would be written)")
    p.add_argument("--force", action="store_true",
                   help="re-classify and rewrite files already tagged by genrekit")
    p.add_argument("--db", default=DEFAULT_DB,
                   help=f"SQLite file keeping each file's result, for resuming (default ./{DEFAULT_DB})")
    p.add_argument("--export-csv", metavar="FILE", help="export the results database to FILE as CSV")
    p.add_argument("--min-confidence", type=_probability, default=0.0, metavar="P",
                   help="do not write predictions whose probability is below P (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no line per file; summary only")


def _classifier(model):
    def classify(path):
        prediction = model.predict_file(path)
        probabilities = dict(prediction.probabilities)
        return prediction.genre, probabilities[prediction.genre], probabilities, model.model_id

    return classify


def _printer(quiet: bool):
    if quiet:
        return None
    from tqdm import tqdm

    return lambda result: tqdm.write(result.describe())


def run(args) -> int:
    from ..errors import GenrekitError
    from ..tagging import TaggingInterrupted, export_csv, tag_library

    if not args.paths and not args.export_csv:
        raise GenrekitError("give audio files or folders to tag (or --export-csv to export the results)")
    status = 0
    if args.paths:
        from ..prediction import load_model

        model = load_model(args.model)
        try:
            summary = tag_library(args.paths, _classifier(model), write=args.write, force=args.force,
                                  db_path=args.db, min_confidence=args.min_confidence,
                                  progress=not args.quiet, model_id=model.model_id,
                                  on_result=_printer(args.quiet))
        except TaggingInterrupted as stop:
            summary, status = stop.summary, 130
        if summary.total == 0:
            print(f"no audio files found in {' '.join(args.paths)}", file=sys.stderr)
        print(summary.format())
        if not args.write and summary.would_tag:
            print("dry run: nothing was written; add --write to write the tags")
        status = status or (1 if summary.failed else 0)
    if args.export_csv:
        n = export_csv(args.db, args.export_csv)
        print(f"exported {n} rows from {args.db} to {args.export_csv}")
    return status
