"""K-fold cross-validation of the GTZAN recipes: every track of the training split is scored once.

Usage: python bench/crossval.py CONFIG [CONFIG ...] [--folds 5] [--out runs/crossval]

Ten held-out tracks give a 95 % interval 60 points wide. Here the fault-filtered "train"
tracks of ../shared/data GTZAN (60) are dealt into K folds by track, per genre (seed 0).
Each fold is trained with the recipe and scored with its LAST epoch (no epoch is chosen
on the fold). The track predictions of all folds are then pooled into one accuracy with a
bootstrap interval. A fold whose run already finished is reused, so an interrupted
run continues where it stopped.

Rows go to bench/results/crossval.csv, one per recipe, with the per-fold accuracies.
The genres are very uneven: disco has 1 track, classical and country 2 and blues 3, so
some folds validate a genre that has no training track at all.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from results_csv import append_rows
from train_compare import ensure_cache

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]


def run_fold(config, fold: int, folds: int, out: Path):
    """Train one fold (or reuse a finished run) and return its validation predictions."""
    from dataclasses import replace

    from genrekit.evaluation import evaluate
    from genrekit.training import load_checkpoint, train

    config = replace(config, folds=folds, fold=fold, out=str(out))
    last = out / "last.pt"
    epochs = config.frozen_epochs + config.unfrozen_epochs
    if not (last.is_file() and len(load_checkpoint(last)["history"]) == epochs):
        train(config, resume=last.is_file())
    payload = load_checkpoint(last)
    valid_ids = set(payload["training_data"]["valid_track_ids"])
    report = evaluate(last, config.cache, split=config.train_split, track_ids=valid_ids, n_boot=10)
    return report, sum(h["seconds"] for h in payload["history"])


def crossvalidate(config_path: str, folds: int, out_root: Path) -> dict:
    import numpy as np

    from genrekit.evaluation import bootstrap_ci
    from genrekit.training import TrainConfig

    config = TrainConfig.from_file(config_path, progress=False)
    cache = REPO / config.cache
    ensure_cache(cache, "musicnn" if config.backbone.startswith("musicnn") else "logmel")
    config.cache = str(cache)
    predictions, fold_acc, seconds, seg_correct, seg_total = [], [], 0.0, 0.0, 0
    for fold in range(folds):
        report, train_s = run_fold(config, fold, folds, out_root / Path(config_path).stem / f"fold{fold}")
        predictions += report["predictions"]
        fold_acc.append(report["track_accuracy"])
        seg_correct += report["segment_accuracy"] * report["n_segments"]
        seg_total += report["n_segments"]
        seconds += train_s
        print(f"{Path(config_path).name} fold {fold}: {report['n_tracks']} tracks, "
              f"track accuracy {report['track_accuracy']:.2f}", flush=True)
    correct = np.array([p["predicted"] == p["label"] for p in predictions])
    lo, hi = bootstrap_ci(correct)
    per_genre = {}
    for p in predictions:
        hit, n = per_genre.get(p["label"], (0, 0))
        per_genre[p["label"]] = (hit + (p["predicted"] == p["label"]), n + 1)
    return {"config": Path(config_path).name, "backbone": config.backbone, "pretrained": config.pretrained,
            "epochs": f"{config.frozen_epochs}+{config.unfrozen_epochs}", "folds": folds,
            "tracks": len(correct), "track_acc": round(float(correct.mean()), 3), "ci95": f"{lo:.2f}-{hi:.2f}",
            "segment_acc": round(seg_correct / seg_total, 3),
            "fold_track_acc": " ".join(f"{a:.2f}" for a in fold_acc),
            "per_genre_correct": " ".join(f"{g}:{h}/{n}" for g, (h, n) in sorted(per_genre.items())),
            "train_minutes": round(seconds / 60, 1), "machine": f"{os.cpu_count()}-core CPU",
            "date": time.strftime("%Y-%m-%d")}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("configs", nargs="+")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--out", type=Path, default=REPO / "runs" / "crossval")
    p.add_argument("--no-csv", action="store_true")
    args = p.parse_args()
    sys.path.insert(0, str(REPO))
    for config_path in args.configs:
        row = crossvalidate(config_path, args.folds, args.out)
        print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        if not args.no_csv:
            append_rows(REPO / "bench" / "results" / "crossval.csv", [row])


if __name__ == "__main__":
    main()
