"""Train the model shipped in genrekit/weights/ — the exact, reproducible recipe.

Usage: python tools/train_default_model.py [--config configs/default_model.yaml]

1. prepares the GTZAN cache from ../shared/data (fault-filtered "train" tracks; the
   validation tracks are carved out by track, 20 %, seed 0, and never trained on);
2. trains with the config (fixed number of epochs; the LAST epoch is shipped, so the
   held-out figure is not inflated by choosing an epoch on it);
3. scores the held-out GTZAN tracks and, as an out-of-domain check, the FMA tracks of
   ../shared/data whose genre_top maps onto a GTZAN genre (Hip-Hop, Pop, Rock);
4. writes the checkpoint, without optimiser state, with those test figures inside, to
   genrekit/weights/genrekit-gtzan.pt, and the reports to bench/results/default_model/.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
FMA_TO_GTZAN = {"Hip-Hop": "hiphop", "Pop": "pop", "Rock": "rock"}


def fma_manifest(path: Path) -> Path:
    """A manifest of the FMA tracks whose genre_top is also a GTZAN genre (all artist-disjoint from GTZAN)."""
    rows = []
    with open(DATA / "fma_metadata" / "labels.csv") as f:
        for row in csv.DictReader(f):
            audio = DATA / "fma_small" / f"{int(row['track_id']):06d}"[:3] / f"{int(row['track_id']):06d}.mp3"
            if row["genre_top"] in FMA_TO_GTZAN and audio.exists():
                rows.append({"path": str(audio), "label": FMA_TO_GTZAN[row["genre_top"]], "split": "test",
                             "track_id": f"fma-{row['track_id']}"})
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "split", "track_id"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def finalize(payload: dict) -> dict:
    """The shipped form of a run's last.pt: no optimiser state, paths relative to the repository."""
    payload.pop("resume", None)
    payload["name"] = "genrekit-gtzan"
    payload["metrics"] = dict(payload["history"][-1])  # the weights are the last epoch's

    def relative(path):
        return os.path.relpath(path, REPO) if path else path

    for section, keys in (("train_config", ("cache", "out")), ("training_data", ("cache",))):
        for key in keys:
            payload[section][key] = relative(payload[section][key])
    dataset = payload["training_data"].get("dataset") or {}
    if "root" in dataset:
        dataset["root"] = relative(dataset["root"])
    return payload


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=str(REPO / "configs" / "default_model.yaml"))
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    import torch

    from genrekit.cache import prepare
    from genrekit.config import FeatureConfig
    from genrekit.datasets import open_dataset
    from genrekit.evaluation import evaluate, format_table, write_report
    from genrekit.models import get_backbone
    from genrekit.training import TrainConfig, load_checkpoint, train

    config = TrainConfig.from_file(args.config, progress=False)
    features = get_backbone(config.backbone).feature_config or FeatureConfig(fmax=7600)
    cache = REPO / config.cache
    dataset = open_dataset(f"gtzan:{DATA}", splits=DATA / "gtzan_labels.csv")
    print(prepare(dataset, cache, features, progress=False).report())
    config.cache, config.out = str(cache), str(REPO / config.out)
    result = train(config)

    payload = finalize(load_checkpoint(result.out / "last.pt"))
    shipped_tmp = result.out / "shipped.pt"
    torch.save(payload, shipped_tmp)

    reports = REPO / "bench" / "results" / "default_model"
    # Held-out GTZAN tracks: the validation tracks of this run (never trained on, no epoch chosen on them).
    valid_ids = set(payload["training_data"]["valid_track_ids"])
    gtzan_report = evaluate(shipped_tmp, str(cache), split="train", track_ids=valid_ids)
    write_report(gtzan_report, reports / "gtzan_heldout")
    fma_report = evaluate(shipped_tmp, f"manifest:{fma_manifest(reports.parent / 'fma_gtzan_genres.csv')}", split="test")
    write_report(fma_report, reports / "fma_out_of_domain")
    for name, report in (("GTZAN held-out", gtzan_report), ("FMA out-of-domain", fma_report)):
        print(f"\n== {name} ==\n{format_table(report)}")
    keys = ("n_tracks", "track_accuracy", "track_accuracy_ci", "track_accuracy_majority", "segment_accuracy",
            "macro_f1", "weighted_f1")
    payload["test_metrics"] = {"gtzan_heldout": {k: gtzan_report[k] for k in keys},
                               "fma_hiphop_pop_rock": {k: fma_report[k] for k in keys}}
    target = REPO / "genrekit" / "weights" / "genrekit-gtzan.pt"
    torch.save(payload, shipped_tmp)
    shutil.copy(shipped_tmp, target)
    os.chmod(target, 0o644)
    print(f"\nshipped {target} ({target.stat().st_size / 1e6:.1f} MB)")
    print(json.dumps(payload["test_metrics"], indent=2))


if __name__ == "__main__":
    main()
