"""Train the GTZAN recipes in configs/ on ../shared/data and tabulate validation accuracy.

Usage: python bench/train_compare.py [CONFIG ...]   (default: the gtzan_*.yaml recipes)

Data: ../shared/data GTZAN, fault-filtered "train" tracks (60), validation carved out
by track (20 %, seed 0). Small and uneven: every figure has a wide interval.
Writes bench/results/train_compare.csv (one row per run, appended).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from results_csv import append_rows

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def ensure_cache(path: Path, features: str = "logmel") -> None:
    from genrekit.cache import prepare
    from genrekit.config import MUSICNN_FEATURES, FeatureConfig
    from genrekit.datasets import open_dataset

    config = MUSICNN_FEATURES if features == "musicnn" else FeatureConfig(fmax=7600)
    ds = open_dataset(f"gtzan:{DATA}", splits=DATA / "gtzan_labels.csv")
    print(prepare(ds, path, config, progress=False).report())


def main(configs):
    import numpy as np

    from genrekit.evaluation import bootstrap_ci
    from genrekit.training import TrainConfig, train

    out_csv = REPO / "bench" / "results" / "train_compare.csv"
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    for cfg_path in configs:
        config = TrainConfig.from_file(cfg_path, progress=False)
        cache = REPO / config.cache
        ensure_cache(cache, "musicnn" if config.backbone.startswith("musicnn") else "logmel")
        config.cache, config.out = str(cache), str(REPO / config.out)
        t0 = time.perf_counter()
        result = train(config)
        minutes = (time.perf_counter() - t0) / 60
        last = result.history[-1]
        best = result.best_metrics
        n = last["valid_tracks"]
        lo, hi = bootstrap_ci(np.r_[np.ones(round(last["valid_track_accuracy"] * n)), np.zeros(n - round(last["valid_track_accuracy"] * n))])
        speed = np.median([h["segments_per_s"] for h in result.history])
        row = {"config": Path(cfg_path).name, "backbone": config.backbone, "pretrained": config.pretrained,
               "epochs": f"{config.frozen_epochs}+{config.unfrozen_epochs}", "valid_tracks": n,
               "last_track_acc": round(last["valid_track_accuracy"], 3), "last_ci95": f"{lo:.2f}-{hi:.2f}",
               "last_segment_acc": round(last["valid_segment_accuracy"], 3),
               "best_track_acc": round(best["valid_track_accuracy"], 3), "best_epoch": f"{best['phase']} {best['epoch']}",
               "train_segments_per_s": speed, "minutes": round(minutes, 1),
               "machine": "2-core CPU (shared)", "date": time.strftime("%Y-%m-%d")}
        print(row)
        append_rows(out_csv, [row])


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main(sys.argv[1:] or sorted(str(p) for p in (REPO / "configs").glob("gtzan_*.yaml")))
