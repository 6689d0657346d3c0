"""FMA's genres with a zero-shot prior read from the tags their names name, against no prior.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python bench/fma_prior.py [--config configs/fma_small_transfer.yaml]
        [--fold-splits 10]

A transfer recipe's tag prior reads, for each label, the musicnn tags named like it
(:func:`genrekit.heads.named_tags`: FMA's "Folk" → MSD's "folk", "Hip-Hop" → "Hip-Hop", ...).
This bench keeps the recipe (its sources, features, C grid, folds) and scores it twice on the
same ``--fold-splits`` artist-grouped fold splits, with its prior and with ``prior: null``,
by the library's nested CV (:func:`genrekit.training.transfer.cross_validate`). Printed side by
side: balanced accuracy per split, mean (SD), the paired difference (wins/losses over the
splits), macro-F1, and per-genre recall pooled over the splits. Only labels with tracks in the
sources are scored (a label without tracks would be zero-shot, and CV cannot score it). The
table goes to ``bench/results/fma_prior.md`` and the rows to ``bench/results/fma_prior.csv``.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from genrekit.heads import describe_tags  # noqa: E402
from genrekit.training import transfer  # noqa: E402


def scored(spec, cv_tracks: list, extra: list, labels: list[str], folds: int, seeds: range) -> dict:
    """The recipe's report over the fold splits of ``seeds`` (:func:`transfer.repeated_report`)."""
    cvs = [transfer.cross_validate(spec, cv_tracks, extra, labels, folds, s) for s in seeds]
    return transfer.repeated_report(cvs, labels, seeds.start)


def compare(config, tracks: list, splits: int) -> tuple[list[str], dict]:
    """``(labels scored, {row name: report})`` for the recipe's prior and for none."""
    labels = [g for g in config.labels or sorted({t.label for t in tracks}) if any(t.label == g for t in tracks)]
    cv_tracks = [t for t in tracks if t.role == "cv"]
    extra = [t for t in tracks if t.role == "train"]
    seeds = range(config.seed, config.seed + splits)
    named = transfer.make_prior(config.head.prior, labels, tags=config.head.prior_tags)
    rows = {f"prior {config.head.prior} ({describe_tags(named.genre_tags)})": config.head,
            "no prior": replace(config.head, prior=None, prior_scale=1.0, prior_tags={})}
    return labels, {name: scored(spec, cv_tracks, extra, labels, config.folds, seeds) for name, spec in rows.items()}


def markdown(labels: list[str], reports: dict, command: str, machine: str, counts: dict) -> str:
    first = next(iter(reports.values()))["balanced_accuracy_per_split"]
    head = ["prior", f"bal. acc. mean (SD), {len(first)} splits", "paired diff. vs first (wins/losses)",
            "macro-F1"] + labels
    lines = [f"# FMA genres: the tags their names name as a prior, against none ({time.strftime('%Y-%m-%d')})", "",
             f"Command: `{command}` on a {machine}. Tracks per genre: "
             + ", ".join(f"{g} {counts[g]}" for g in labels) + " (small and uneven); artist-grouped folds, C chosen "
             "inside each fold; per-genre recall pooled over the splits. Chance is "
             f"{1 / len(labels):.3f}.", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in reports.items():
        diff = np.array(r["balanced_accuracy_per_split"]) - np.array(first)
        lines.append("| " + " | ".join(
            [name, f"{r['balanced_accuracy_mean']:.3f} ({r['balanced_accuracy_sd']:.3f})",
             f"{diff.mean():+.3f} ({int((diff > 0).sum())}/{int((diff < 0).sum())})", f"{r['macro_f1_mean']:.3f}"]
            + [f"{r['per_class'][g]['recall']:.2f}" for g in labels]) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=REPO / "configs" / "fma_small_transfer.yaml")
    p.add_argument("--fold-splits", type=int, default=10)
    p.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    args = p.parse_args()
    from results_csv import append_rows, machine

    command = " ".join(["python bench/fma_prior.py", *map(shlex.quote, sys.argv[1:])])
    args.config, args.results = args.config.resolve(), args.results.resolve()
    os.chdir(REPO)  # the recipe's paths are relative to the repository
    config = transfer.TransferConfig.from_file(args.config)
    tracks, _ = transfer.gather(config.sources)
    transfer.extract_features(tracks, config.head.networks, config.features_cache, progress=False,
                              config=config.feature_config())
    tracks = [t for t in tracks if t.features]
    labels, reports = compare(config, tracks, args.fold_splits)
    counts = {g: sum(t.label == g for t in tracks) for g in labels}
    table = markdown(labels, reports, command, machine(), counts)
    print(table)
    (args.results / "fma_prior.md").write_text(table, encoding="utf-8")
    append_rows(args.results / "fma_prior.csv", [
        {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "command": command, "prior": name,
         "fold_splits": args.fold_splits, "balanced_accuracy_mean": round(r["balanced_accuracy_mean"], 4),
         "sd": round(r["balanced_accuracy_sd"], 4), "macro_f1": round(r["macro_f1_mean"], 4),
         **{f"recall_{g}": round(r["per_class"][g]["recall"], 4) for g in labels}} for name, r in reports.items()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
