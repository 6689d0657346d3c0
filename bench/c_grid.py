"""How the genre head's L2 strength C and its prior's scale are chosen: grids and fixed values.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python bench/c_grid.py [--fold-splits 10] [--scarce-repeats 3] [--first-seed 0]

The shipped recipe (``configs/default_model.yaml``) fixes C at 0.01 (since 2026-12-03; before, an
inner artist-grouped CV on each outer fold's training tracks chose it, nested: the outer fold never
sees it) and multiplies the tag prior's logits by a fixed ``prior_scale``. Each row keeps the recipe and
changes only what C and the scale may be:

- ``C from <values>``: the inner CV picks C from these values (nested, an honest estimate);
- ``prior scale from <values>``: the inner CV picks the scale too, jointly with C (nested);
- ``average of every head``: nothing is chosen; the logits of the heads at every C and scale
  are averaged (the average of linear heads on the same inputs is one linear head);
- ``fixed``: one value for every fold. Chosen by looking at these rows, a fixed value would be
  tuned on the very folds it is scored on; these rows show the landscape, not a design.

Printed side by side, over ``--fold-splits`` different artist-grouped 5-fold splits of DEV
GTZAN (87 tracks; blues 3, classical 2, disco 2: small and uneven): balanced accuracy per split,
its mean, SD, and the paired difference from the first row (wins/losses over the splits);
macro-F1; per-genre recall pooled over the splits; those recalls weighted by the private
held-out set's genre counts (an estimate, arithmetic, not a measurement); the values the inner
CV chose; and the scarce-genre simulation of ``bench/fewshot_cv.py`` (each genre with at least
6 tracks keeps 2 in training, FMA's tracks of it dropped; its recall and precision on the
held-out folds, ``--scarce-repeats`` fold splits). Rows go to ``bench/results/c_grid.csv`` and
the table to ``bench/results/c_grid.md``. ``--first-seed 10`` scores the rows on fold splits 10-19,
which no choice here looked at (the table then goes to ``c_grid_seeds10-19.md``).
"""
from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fewshot_cv import scarce_subset  # noqa: E402
from scarce_ideas import bench_parser, bench_setup, held_out_estimate, transfer  # noqa: E402
from transfer_cv import outer_folds  # noqa: E402

OLD_GRID = (0.003, 0.01, 0.03, 0.1, 0.3)  # shipped until 2026-12-03
FINE_GRID = (0.005, 0.01, 0.015, 0.02, 0.03, 0.05)
SHIPPED_SCALE = 0.7  # since 2026-12-03 (second change that day); 1 before
SHIPPED_C = 0.01  # fixed since 2026-12-03 (third change that day); chosen per fold from FINE_GRID before


@dataclass(frozen=True)
class Row:
    name: str
    C: tuple
    scales: tuple = (1.0,)
    average: bool = False  # average the logits of every (C, scale) head instead of choosing one


def rows_to_try() -> list[Row]:
    fine = "C from " + " ".join(map(str, FINE_GRID))
    return ([Row(f"{fine}, prior scale 1 (shipped until 2026-12-03)", FINE_GRID),
             Row(f"{fine}, prior scale {SHIPPED_SCALE} (shipped 2026-12-03 until the fixed C)", FINE_GRID,
                 (SHIPPED_SCALE,)),
             Row(f"{fine}, prior scale from 0.5 0.7 0.85 1", FINE_GRID, (0.5, 0.7, 0.85, 1.0)),
             Row("C from " + " ".join(map(str, OLD_GRID)) + ", prior scale 1", OLD_GRID)]
            + [Row(f"{fine}, fixed prior scale {s:g}", FINE_GRID, (s,)) for s in (0.5, 0.6, 0.85, 1.5)]
            + [Row(f"fixed C 0.015, fixed prior scale {s:g}", (0.015,), (s,)) for s in (1.0, SHIPPED_SCALE)]
            + [Row(f"fixed C {SHIPPED_C:g}, fixed prior scale 1", (SHIPPED_C,)),
               Row(f"fixed C {SHIPPED_C:g}, fixed prior scale {SHIPPED_SCALE} (shipped)", (SHIPPED_C,), (SHIPPED_SCALE,))]
            + [Row(f"average of every head: {fine}, prior scale 1", FINE_GRID, (1.0,), average=True),
               Row(f"average of every head: {fine}, prior scale 0.5 0.7 0.85 1", FINE_GRID, (0.5, 0.7, 0.85, 1.0),
                   average=True)])


def specs_of(head, row: Row) -> list:
    return [replace(head, C=list(row.C), prior_scale=s) for s in row.scales]


def choose(specs: list, train: list, extra: list, labels: list[str], seed: int):
    """The spec (prior scale) and C whose inner CV scores best, as :func:`transfer.choose_C` does for C alone."""
    best = None
    for spec in specs:
        C, inner, y = transfer.choose_C(spec, train, extra, labels, seed)
        rank = transfer.inner_cv_rank(inner, y)
        if best is None or rank > best[0]:
            best = (rank, spec, C)
    return best[1], best[2]


def fold_predictions(specs: list, cv_tracks: list, extra: list, labels: list[str], fold: np.ndarray,
                     seed: int, subset=lambda train: train, average: bool = False):
    """Held-out genre of every CV track, and the (C, scale) each fold chose (none when ``average``:
    the logits of every spec's head at every C of its grid are averaged)."""
    pred, chosen = np.zeros(len(cv_tracks), dtype=int), []
    for k in range(fold.max() + 1):
        test = [t for t, f in zip(cv_tracks, fold) if f == k]
        train = subset([t for t, f in zip(cv_tracks, fold) if f != k])
        fit_on = train + transfer.extra_for(extra, test)
        if average:
            heads = [transfer.fit_head(spec, fit_on, labels, C) for spec in specs for C in spec.C]
        else:
            spec, C = choose(specs, train, extra, labels, seed)
            chosen.append((C, spec.prior_scale))
            heads = [transfer.fit_head(spec, fit_on, labels, C)]
        pred[fold == k] = np.mean([transfer.logits_of(head, test) for head in heads], axis=0).argmax(1)
    return pred, chosen


def plain_cv(specs: list, cv_tracks: list, extra: list, labels: list[str], splits: int, folds: int,
             average: bool = False, first_seed: int = 0) -> dict:
    from genrekit.metrics import balanced_accuracy, macro_f1

    y = np.array([labels.index(t.label) for t in cv_tracks])
    scores, f1s, preds, chosen = [], [], [], Counter()
    for seed in range(first_seed, first_seed + splits):
        pred, picked = fold_predictions(specs, cv_tracks, extra, labels, outer_folds(cv_tracks, folds, seed), seed,
                                        average=average)
        scores.append(balanced_accuracy(y, pred, len(labels)))
        f1s.append(macro_f1(y, pred, len(labels)))
        preds.append(pred)
        chosen.update(picked)
    ys, p = np.tile(y, splits), np.concatenate(preds)
    return {"scores": np.array(scores), "macro_f1": float(np.mean(f1s)), "chosen": chosen,
            "recall": {g: float((p[ys == k] == k).mean()) for k, g in enumerate(labels)}}


def scarce(specs: list, cv_tracks: list, extra: list, labels: list[str], repeats: int, folds: int,
           average: bool = False, first_seed: int = 0) -> dict:
    """Recall and precision of a genre kept to 2 training tracks, averaged over the probe genres."""
    y = np.array([labels.index(t.label) for t in cv_tracks])
    recalls, precisions = [], []
    for genre in [g for g in labels if sum(t.label == g for t in cv_tracks) >= 6]:
        g, rng = labels.index(genre), np.random.default_rng(0)
        others = [t for t in extra if t.label != genre]
        keep_two = partial(scarce_subset, genre=genre, shots=2, rng=rng)
        preds = [fold_predictions(specs, cv_tracks, others, labels, outer_folds(cv_tracks, folds, seed), seed,
                                  keep_two, average)[0] for seed in range(first_seed, first_seed + repeats)]
        ys, p = np.tile(y, repeats), np.concatenate(preds)
        recalls.append((p[ys == g] == g).mean())
        precisions.append((ys[p == g] == g).mean() if (p == g).any() else np.nan)
    return {"recall": float(np.mean(recalls)), "precision": float(np.nanmean(precisions))}


CHOSEN_ON = range(0, 10)  # the fold-split seeds the shipped scale and C were fixed on


def caveat(seeds: range) -> str:
    """What the ``fixed`` rows of these fold splits can be read as."""
    if set(seeds) & set(CHOSEN_ON):
        return ("`fixed` rows are scored on the folds they would be chosen on: a landscape, not a design. The "
                "shipped scale, 0.7, and C, 0.01, were fixed after seeing them; the honest figure for choosing a "
                "scale is the row where the inner CV picks it, and splits 10-19 (`--first-seed 10`) score the "
                "shipped row without that choice.")
    return (f"Fold splits {seeds.start}-{seeds.stop - 1}: none of them was looked at when the shipped scale, 0.7, and C, "
            f"0.01, were fixed (on splits {CHOSEN_ON.start}-{CHOSEN_ON.stop - 1}), so the shipped row here is not "
            "flattered by that choice. The tracks are the same 87, so it is not a new test set.")


def results_name(seeds: range) -> str:
    return "c_grid" if seeds.start == 0 else f"c_grid_seeds{seeds.start}-{seeds.stop - 1}"


def markdown(rows: list[dict], labels: list[str], command: str, seeds: range, machine: str) -> str:
    splits = len(seeds)
    head = (["C and prior scale", f"bal. acc. mean (SD), {splits} splits", "paired diff. (wins/losses)", "macro-F1"] + labels
            + ["held-out mix estimate", "scarce recall", "scarce precision", "C, scale chosen (folds)"])
    lines = [f"# How C and the prior's scale are chosen ({time.strftime('%Y-%m-%d')})", "",
             f"Command: `{command}` on a {machine}. 87 DEV GTZAN tracks (blues 3, classical 2, disco 2; small and "
             "uneven), artist-grouped 5-fold CV; per-genre recall pooled over the splits. " + caveat(seeds), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        chosen = ", ".join(f"{c:g}, {s:g}: {n}" for (c, s), n in sorted(r["chosen"].items())) or "none (averaged)"
        lines.append("| " + " | ".join([r["name"], f"{r['mean']:.3f} ({r['sd']:.3f})", r["paired"],
                                        f"{r['macro_f1']:.3f}"] + [f"{r['recall'][g]:.2f}" for g in labels]
                                       + [f"{r['held_out']:.3f}", f"{r['scarce_recall']:.3f}",
                                          f"{r['scarce_precision']:.3f}", chosen]) + " |")
    return "\n".join(lines) + "\n"


def main():
    p = bench_parser(__doc__.split("\n\n")[0])
    p.add_argument("--scarce-repeats", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0,
                   help="seed of the first fold split (10: splits the shipped scale was not chosen on)")
    p.set_defaults(fold_splits=10)
    args = p.parse_args()
    from results_csv import append_rows, machine

    command, config, tracks, _ = bench_setup(args, "c_grid.py")
    cv_tracks = [t for t in tracks if t.role == "cv"]
    extra = [t for t in tracks if t.role == "train"]
    rows, first = [], None
    for row in rows_to_try():
        specs, name = specs_of(config.head, row), row.name
        r = plain_cv(specs, cv_tracks, extra, config.labels, args.fold_splits, config.folds, row.average,
                     args.first_seed)
        first = r["scores"] if first is None else first
        diff = r["scores"] - first
        s = scarce(specs, cv_tracks, extra, config.labels, args.scarce_repeats, config.folds, row.average,
                   args.first_seed)
        row = {"name": name, "mean": float(r["scores"].mean()), "sd": float(r["scores"].std()),
               "paired": f"{diff.mean():+.3f} ({int((diff > 0).sum())}/{int((diff < 0).sum())})",
               "macro_f1": r["macro_f1"], "recall": r["recall"], "held_out": held_out_estimate(r["recall"]),
               "scarce_recall": s["recall"], "scarce_precision": s["precision"], "chosen": r["chosen"]}
        rows.append(row)
        print(f"{name:60s} {row['mean']:.3f} ({row['sd']:.3f}) {row['paired']:>16s}  F1 {row['macro_f1']:.3f}  "
              f"held-out mix {row['held_out']:.3f}  scarce {s['recall']:.3f}/{s['precision']:.3f}  "
              f"splits {' '.join(f'{v:.3f}' for v in r['scores'])}", flush=True)
    seeds = range(args.first_seed, args.first_seed + args.fold_splits)
    table = markdown(rows, config.labels, command, seeds, machine())
    print("\n" + table)
    (args.results / f"{results_name(seeds)}.md").write_text(table, encoding="utf-8")
    append_rows(args.results / "c_grid.csv", [
        {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "command": command, "C": r["name"],
         "fold_splits": args.fold_splits, "balanced_accuracy_mean": round(r["mean"], 4), "sd": round(r["sd"], 4),
         "paired_vs_first": r["paired"], "macro_f1": round(r["macro_f1"], 4), "held_out_mix": round(r["held_out"], 4),
         "scarce_recall": round(r["scarce_recall"], 4), "scarce_precision": round(r["scarce_precision"], 4),
         **{f"recall_{g}": round(v, 4) for g, v in r["recall"].items()}} for r in rows])


if __name__ == "__main__":
    sys.exit(main())
