"""How the genre head's L2 strength C is chosen: the grids the inner CV picks from, and fixed values.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python bench/c_grid.py [--fold-splits 10] [--scarce-repeats 3]

The shipped recipe (``configs/default_model.yaml``) chooses C per outer fold by an inner
artist-grouped CV on that fold's training tracks (nested: the outer fold never sees it). Each
row keeps the recipe and changes only what C may be:

- ``grid <values>``: the inner CV picks from these values (nested, an honest estimate);
- ``fixed <C>``: one value for every fold. Chosen by looking at these rows, a fixed C would be
  tuned on the very folds it is scored on; these rows show the landscape, not a design.

Printed side by side, over ``--fold-splits`` different artist-grouped 5-fold splits of DEV
GTZAN (87 tracks; blues 3, classical 2, disco 2: small and uneven): balanced accuracy per split,
its mean, SD, and the paired difference from the first row (wins/losses over the splits);
macro-F1; per-genre recall pooled over the splits; those recalls weighted by the private
held-out set's genre counts (an estimate, arithmetic, not a measurement); the C values the inner
CV chose; and the scarce-genre simulation of ``bench/fewshot_cv.py`` (each genre with at least
6 tracks keeps 2 in training, FMA's tracks of it dropped; its recall and precision on the
held-out folds, ``--scarce-repeats`` fold splits). Rows go to ``bench/results/c_grid.csv`` and
the table to ``bench/results/c_grid.md``.
"""
from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fewshot_cv import scarce_subset  # noqa: E402
from scarce_ideas import bench_parser, bench_setup, held_out_estimate, transfer  # noqa: E402

OLD_GRID = (0.003, 0.01, 0.03, 0.1, 0.3)  # shipped until 2026-12-03
FINE_GRID = (0.005, 0.01, 0.015, 0.02, 0.03, 0.05)
FIXED = (0.003, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05)


def rows_to_try() -> list[tuple[str, tuple]]:
    return ([(f"grid {' '.join(map(str, OLD_GRID))}", OLD_GRID), (f"grid {' '.join(map(str, FINE_GRID))}", FINE_GRID)]
            + [(f"fixed {c:g}", (c,)) for c in FIXED])


def plain_cv(spec, cv_tracks: list, extra: list, labels: list[str], splits: int, folds: int) -> dict:
    from genrekit.metrics import balanced_accuracy, macro_f1

    scores, f1s, ys, preds, chosen = [], [], [], [], Counter()
    for seed in range(splits):
        cv = transfer.cross_validate(spec, cv_tracks, extra, labels, folds, seed)
        pred = cv["logits"].argmax(1)
        scores.append(balanced_accuracy(cv["y"], pred, len(labels)))
        f1s.append(macro_f1(cv["y"], pred, len(labels)))
        ys.append(cv["y"])
        preds.append(pred)
        chosen.update(cv["C"])
    y, p = np.concatenate(ys), np.concatenate(preds)
    return {"scores": np.array(scores), "macro_f1": float(np.mean(f1s)), "chosen": chosen,
            "recall": {g: float((p[y == k] == k).mean()) for k, g in enumerate(labels)}}


def scarce(spec, cv_tracks: list, extra: list, labels: list[str], repeats: int, folds: int) -> dict:
    """Recall and precision of a genre kept to 2 training tracks, averaged over the probe genres."""
    recalls, precisions = [], []
    for genre in [g for g in labels if sum(t.label == g for t in cv_tracks) >= 6]:
        g, rng, y, p = labels.index(genre), np.random.default_rng(0), [], []
        others = [t for t in extra if t.label != genre]
        for seed in range(repeats):
            fold = transfer.group_folds([t.label for t in cv_tracks], [transfer.group_of(t) for t in cv_tracks],
                                        folds, seed)
            for k in range(folds):
                test = [t for t, f in zip(cv_tracks, fold) if f == k]
                train = scarce_subset([t for t, f in zip(cv_tracks, fold) if f != k], genre, 2, rng)
                C, _, _ = transfer.choose_C(spec, train, others, labels, seed)
                head = transfer.fit_head(spec, train + transfer.extra_for(others, test), labels, C)
                p += list(transfer.logits_of(head, test).argmax(1))
                y += [labels.index(t.label) for t in test]
        y, p = np.array(y), np.array(p)
        recalls.append((p[y == g] == g).mean())
        precisions.append((y[p == g] == g).mean() if (p == g).any() else np.nan)
    return {"recall": float(np.mean(recalls)), "precision": float(np.nanmean(precisions))}


def markdown(rows: list[dict], labels: list[str], command: str, splits: int, machine: str) -> str:
    head = (["C", f"bal. acc. mean (SD), {splits} splits", "paired diff. (wins/losses)", "macro-F1"] + labels
            + ["held-out mix estimate", "scarce recall", "scarce precision", "C chosen (folds)"])
    lines = [f"# How C is chosen ({time.strftime('%Y-%m-%d')})", "",
             f"Command: `{command}` on a {machine}. 87 DEV GTZAN tracks (blues 3, classical 2, disco 2; small and "
             "uneven), artist-grouped 5-fold CV; per-genre recall pooled over the splits. `fixed` rows are scored on "
             "the folds they would be chosen on: a landscape, not a design.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        chosen = ", ".join(f"{c:g}: {n}" for c, n in sorted(r["chosen"].items()))
        lines.append("| " + " | ".join([r["name"], f"{r['mean']:.3f} ({r['sd']:.3f})", r["paired"],
                                        f"{r['macro_f1']:.3f}"] + [f"{r['recall'][g]:.2f}" for g in labels]
                                       + [f"{r['held_out']:.3f}", f"{r['scarce_recall']:.3f}",
                                          f"{r['scarce_precision']:.3f}", chosen]) + " |")
    return "\n".join(lines) + "\n"


def main():
    p = bench_parser(__doc__.split("\n\n")[0])
    p.add_argument("--scarce-repeats", type=int, default=3)
    p.set_defaults(fold_splits=10)
    args = p.parse_args()
    from results_csv import append_rows, machine

    command, config, tracks, _ = bench_setup(args, "c_grid.py")
    cv_tracks = [t for t in tracks if t.role == "cv"]
    extra = [t for t in tracks if t.role == "train"]
    rows, first = [], None
    for name, grid in rows_to_try():
        spec = replace(config.head, C=list(grid))
        r = plain_cv(spec, cv_tracks, extra, config.labels, args.fold_splits, config.folds)
        first = r["scores"] if first is None else first
        diff = r["scores"] - first
        s = scarce(spec, cv_tracks, extra, config.labels, args.scarce_repeats, config.folds)
        row = {"name": name, "mean": float(r["scores"].mean()), "sd": float(r["scores"].std()),
               "paired": f"{diff.mean():+.3f} ({int((diff > 0).sum())}/{int((diff < 0).sum())})",
               "macro_f1": r["macro_f1"], "recall": r["recall"], "held_out": held_out_estimate(r["recall"]),
               "scarce_recall": s["recall"], "scarce_precision": s["precision"], "chosen": r["chosen"]}
        rows.append(row)
        print(f"{name:40s} {row['mean']:.3f} ({row['sd']:.3f}) {row['paired']:>16s}  F1 {row['macro_f1']:.3f}  "
              f"held-out mix {row['held_out']:.3f}  scarce {s['recall']:.3f}/{s['precision']:.3f}  "
              f"splits {' '.join(f'{v:.3f}' for v in r['scores'])}", flush=True)
    table = markdown(rows, config.labels, command, args.fold_splits, machine())
    print("\n" + table)
    (args.results / "c_grid.md").write_text(table, encoding="utf-8")
    append_rows(args.results / "c_grid.csv", [
        {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "command": command, "C": r["name"],
         "fold_splits": args.fold_splits, "balanced_accuracy_mean": round(r["mean"], 4), "sd": round(r["sd"], 4),
         "paired_vs_first": r["paired"], "macro_f1": round(r["macro_f1"], 4), "held_out_mix": round(r["held_out"], 4),
         "scarce_recall": round(r["scarce_recall"], 4), "scarce_precision": round(r["scarce_precision"], 4),
         **{f"recall_{g}": round(v, 4) for g, v in r["recall"].items()}} for r in rows])


if __name__ == "__main__":
    sys.exit(main())
