"""Artist-grouped K-fold cross-validation of the segment recipes (the seed's CNN + fastai head) on DEV GTZAN.

Usage: python bench/crossval.py CONFIG [CONFIG ...] [--folds 5] [--out runs/crossval] [--no-csv]

All 87 DEV GTZAN tracks of ../shared/data (fault-filter "train" and "excluded") are dealt
into K folds by artist group (bench/data/gtzan_dev_artists.csv; credits that share a name
are one group) and genre (:func:`genrekit.datasets.base.kfold_assign`). Each fold is
trained with the recipe and scored with its LAST epoch (no epoch is chosen on the fold).
The held-out track predictions of all folds are pooled into balanced accuracy, macro-F1
and accuracy with bootstrap intervals and a per-genre recall table
(:mod:`genrekit.metrics`), printed side by side for the recipes. A finished fold is
reused, so an interrupted run continues where it stopped.

The track-level transfer heads have their own study (bench/transfer_cv.py). The genres
are very uneven (blues 3, classical 2, disco 2 tracks), so read every figure with its
interval. Rows go to bench/results/crossval.csv.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
SPLITS = ["train", "excluded"]


def ensure_cache(path: Path, features: str) -> None:
    """A cache of all DEV GTZAN tracks with their artists (resumes; a finished cache is left as it is)."""
    from genrekit.cache import prepare
    from genrekit.config import MUSICNN_FEATURES, FeatureConfig
    from genrekit.datasets import open_dataset

    config = MUSICNN_FEATURES if features == "musicnn" else FeatureConfig(fmax=7600)
    dataset = open_dataset(f"gtzan:{DATA}", splits=DATA / "gtzan_labels.csv",
                           artists=REPO / "bench" / "data" / "gtzan_dev_artists.csv")
    print(prepare(dataset, path, config, progress=False).report())


def run_fold(config, fold: int, folds: int, out: Path) -> dict:
    """Train one fold (or reuse a finished run); its held-out predictions."""
    from genrekit.checkpoint import read_metadata
    from genrekit.evaluation import evaluate
    from genrekit.training import LAST, train

    config = dataclasses.replace(config, folds=folds, fold=fold, out=str(out), train_split=SPLITS, valid_split=[])
    last = out / LAST
    epochs = config.frozen_epochs + config.unfrozen_epochs
    if not (last.is_file() and len(read_metadata(last)["history"]) == epochs):
        train(config, resume=last.is_file(), overwrite=not last.is_file() and out.exists())
    valid_ids = set(read_metadata(last)["training_data"]["valid_track_ids"])
    return evaluate(last, config.cache, split=SPLITS, track_ids=valid_ids, n_boot=10)


def crossvalidate(config_path: str, folds: int, out_root: Path, epochs=None) -> dict:
    from genrekit.metrics import classification_report, encode
    from genrekit.training import TrainConfig

    config = TrainConfig.from_file(config_path, progress=False)
    features = "musicnn" if config.backbone.startswith("musicnn") else "logmel"
    cache = REPO / "runs" / f"crossval_cache_{features}"
    ensure_cache(cache, features)
    config = dataclasses.replace(config, cache=str(cache))
    if epochs:
        config = dataclasses.replace(config, frozen_epochs=epochs[0], unfrozen_epochs=epochs[1])
    predictions, started = [], time.time()
    for fold in range(folds):
        report = run_fold(config, fold, folds, out_root / Path(config_path).stem / f"fold{fold}")
        predictions += report["predictions"]
        print(f"{Path(config_path).name} fold {fold}: {report['n_tracks']} tracks, balanced accuracy "
              f"{report['balanced_accuracy']:.2f}", flush=True)
    labels = config.labels or sorted({p["label"] for p in predictions})
    y, pred = encode([p["label"] for p in predictions], labels), encode([p["predicted"] for p in predictions], labels)
    name = Path(config_path).name + (f" ({config.frozen_epochs}+{config.unfrozen_epochs} epochs)" if epochs else "")
    return {"config": name, "backbone": config.backbone, "pretrained": config.pretrained,
            "report": classification_report(y, pred, labels), "minutes": (time.time() - started) / 60}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("configs", nargs="+")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--out", type=Path, default=REPO / "runs" / "crossval")
    p.add_argument("--epochs", type=int, nargs=2, metavar=("FROZEN", "UNFROZEN"),
                   help="override the recipes' epochs (e.g. to fit a CPU budget); the row says so")
    p.add_argument("--no-csv", action="store_true")
    args = p.parse_args()
    from results_csv import append_rows, machine

    results = [crossvalidate(c, args.folds, args.out, args.epochs) for c in args.configs]
    labels = results[0]["report"]["labels"]
    print(f"\n{'recipe':36}{'bal. acc [95 % CI]':>22}{'macro-F1':>10}{'acc':>7}  " + " ".join(f"{g[:5]:>5}" for g in labels))
    for r in results:
        rep = r["report"]
        lo, hi = rep["balanced_accuracy_ci"]
        recalls = " ".join("    –" if rep["per_class"][g]["recall"] is None else f"{rep['per_class'][g]['recall']:5.2f}"
                           for g in labels)
        print(f"{r['config']:36}{rep['balanced_accuracy']:8.3f} [{lo:.2f}–{hi:.2f}]{rep['macro_f1']:10.3f}"
              f"{rep['accuracy']:7.3f}  {recalls}")
    print(f"({rep['n_tracks']} DEV GTZAN tracks, {args.folds} artist-grouped folds; small and uneven: read the CIs)")
    if not args.no_csv:
        append_rows(REPO / "bench" / "results" / "crossval.csv", [{
            "date": time.strftime("%Y-%m-%d"), "machine": machine(), "config": r["config"],
            "backbone": r["backbone"], "folds": args.folds, "grouping": "artist",
            "balanced_accuracy": round(r["report"]["balanced_accuracy"], 4),
            "balanced_accuracy_ci": "-".join(f"{v:.2f}" for v in r["report"]["balanced_accuracy_ci"]),
            "macro_f1": round(r["report"]["macro_f1"], 4), "accuracy": round(r["report"]["accuracy"], 4),
            "recall": " ".join(f"{g}:{'' if m['recall'] is None else round(m['recall'], 2)}"
                               for g, m in r["report"]["per_class"].items()),
            "train_minutes": round(r["minutes"], 1)} for r in results])


if __name__ == "__main__":
    main()
