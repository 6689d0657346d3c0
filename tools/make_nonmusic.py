"""Make a set of generated non-music clips (label ``not_music``) and its manifest.

Usage::

    python tools/make_nonmusic.py OUT --split train|test --per-kind N [--seed S]
        [--kinds noise,tone,...] [--sr 16000] [--overwrite] [--quiet]

The seed defaults to 0 for train and 1 for test; the two sets also draw their held-out
varieties (frequencies, tempi, voices, words, SNRs …) from disjoint shares, see
docs/nonmusic.md. Files already in OUT are kept, so an interrupted run resumes.
Speech kinds need the Debian package espeak-ng.

Exit status: 0 done, 1 an error or some clips failed (listed), 130 interrupted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from genrekit.datasets.nonmusic import KINDS, SETS, generate_nonmusic  # noqa: E402
from genrekit.errors import GenrekitError  # noqa: E402

DEFAULT_SEEDS = {"train": 0, "test": 1}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="make_nonmusic", description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="folder to write KIND/*.wav, manifest.csv and nonmusic.json into")
    p.add_argument("--split", choices=SETS, required=True, help="which set: train or test (held-out varieties)")
    p.add_argument("--per-kind", type=int, required=True, help="clips of each kind")
    p.add_argument("--seed", type=int, default=None, help="default: 0 for train, 1 for test")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated subset of: {','.join(KINDS)}")
    p.add_argument("--sr", type=int, default=16000, help="sample rate of the WAV files (>= 16000)")
    p.add_argument("--overwrite", action="store_true", help="remake clips that exist, and allow other settings")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    seed = DEFAULT_SEEDS[args.split] if args.seed is None else args.seed
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    try:
        summary = generate_nonmusic(args.out, args.per_kind, seed=seed, split=args.split, kinds=kinds, sr=args.sr,
                                    overwrite=args.overwrite, progress=not args.quiet)
    except GenrekitError as e:
        print(f"make_nonmusic: error: {e}", file=sys.stderr)
        return 1
    print(summary.report())
    if summary.interrupted:
        return 130
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
