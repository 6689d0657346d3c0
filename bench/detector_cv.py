"""Choose the music / not-music detector by cross-validation (issue 12).

Usage: python bench/detector_cv.py [--config configs/default_model.yaml] [--no-csv]

For each variant (inputs × C × classes: music against all non-music, or against each family of it ×
pooling: per patch, or each track's mean and spread of its patches) the detector is cross-validated
with the recipe's folds (music grouped by artist, generated non-music by recipe group): the threshold is set so
that at most ``max_music_false_alarms`` of the music tracks are called not music, and
the share of non-music detected at that threshold is printed, side by side. Only the
TRAIN non-music set is used; the held-out test set is for bench/not_music.py on the
shipped model. A mean_std detector scores only tracks of at least the recipe's
``detector.min_segments`` patches (shorter files get the per-patch one), so its rows count
those tracks. Rows go to bench/results/detector_cv.csv.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

VARIANTS = [(inputs, C, "binary", "mean") for inputs in (["MSD_musicnn/penultimate", "MSD_musicnn/tags"],
                                                         ["MSD_musicnn/penultimate"], ["MSD_musicnn/tags"])
            for C in (0.01, 0.1, 1.0)]
VARIANTS += [(["MSD_musicnn/penultimate"], C, "families", "mean") for C in (0.1, 0.3, 1.0, 3.0)]
VARIANTS += [(["MSD_musicnn/penultimate"], C, classes, "mean_std") for classes in ("binary", "families")
             for C in (0.03, 0.1, 0.3, 1.0)]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(REPO / "configs" / "default_model.yaml"))
    p.add_argument("--no-csv", action="store_true")
    args = p.parse_args()
    from results_csv import append_rows, machine

    from genrekit.training.transfer import (
        Source,
        TransferConfig,
        detector_cv,
        detector_threshold,
        extract_features,
        gather,
        long_enough,
    )

    config = TransferConfig.from_file(args.config)
    music, _ = gather(config.sources)
    more, _ = gather([Source(**s) if isinstance(s, dict) else s for s in config.detector.music])
    nonmusic, _ = gather([Source(config.detector.nonmusic, role="train")])
    for group in (music, more, nonmusic):
        extract_features(group, ["MSD_musicnn"], config.features_cache, progress=False, config=config.feature_config())
    seen = {t.path for t in music}
    music = [t for t in music + [t for t in more if t.path not in seen] if t.features]
    nonmusic = [t for t in nonmusic if t.features]
    budget = config.detector.max_music_false_alarms
    print(f"{len(music)} music tracks, {len(nonmusic)} generated non-music clips; {config.folds} folds; "
          f"false-alarm budget {budget}")
    print(f"{'inputs':40}{'C':>6}{'threshold':>11}{'detected':>10}{'false alarms':>14}{'cut music':>12}")
    rows = []
    for inputs, C, classes, pooling in VARIANTS:
        scored = [music, nonmusic]
        if pooling == "mean_std":
            scored = [long_enough(ts, inputs, config.detector.min_segments) for ts in scored]
        cv = detector_cv(*scored, inputs, C, config.folds, config.seed, classes, pooling,
                         cut_music_to=config.detector.min_segments)
        th = detector_threshold(cv, budget)
        detected = float((cv["p_not_music"][~cv["is_music"]] >= th).mean())
        alarms = float((cv["p_not_music"][cv["is_music"]] >= th).mean())
        cut_alarms = float((cv["p_cut_music"] >= th).mean())
        name = "+".join(i.split("/")[1] for i in inputs) + ("" if classes == "binary" else f" ({classes})")
        name += "" if pooling == "mean" else f" {pooling}"
        print(f"{name:40}{C:6g}{th:11.3f}{detected:10.3f}{alarms:14.3f}{cut_alarms:12.3f}", flush=True)
        rows.append({"date": time.strftime("%Y-%m-%d"), "machine": machine(),
                     "command": "python bench/detector_cv.py", "inputs": name, "C": C, "threshold": round(th, 4),
                     "cv_not_music_detected": round(detected, 4), "cv_music_false_alarms": round(alarms, 4),
                     "cv_cut_music_false_alarms": round(cut_alarms, 4),
                     "music_tracks": len(scored[0]), "nonmusic_clips": len(scored[1])})
    if not args.no_csv:
        append_rows(REPO / "bench" / "results" / "detector_cv.csv", rows)


if __name__ == "__main__":
    main()
