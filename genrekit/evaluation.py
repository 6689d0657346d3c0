"""Honest evaluation: segment and track metrics, confidence intervals, a leakage guard.

Examples
--------
>>> report = evaluate("runs/demo/best.pt", "caches/gtzan", split="test")  # doctest: +SKIP
>>> report["track_accuracy"], report["track_accuracy_ci"]  # doctest: +SKIP
(0.62, [0.48, 0.76])
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import ConfigError, LeakageError
from .voting import majority_vote, mean_vote


def classification_metrics(y_true, y_pred, labels: list[str]) -> dict:
    """Accuracy, macro and weighted precision/recall/F1 and a per-class report.

    A class that is never predicted gets precision 0 (not NaN); classes absent from
    ``y_true`` are left out of the averages, as scikit-learn does with ``labels`` given.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    present = sorted(set(y_true.tolist()))
    result = {"accuracy": float((y_true == y_pred).mean()) if len(y_true) else float("nan")}
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=present, average=average, zero_division=0)
        result |= {f"{average}_precision": float(p), f"{average}_recall": float(r), f"{average}_f1": float(f)}
    p, r, f, support = precision_recall_fscore_support(y_true, y_pred, labels=list(range(len(labels))), zero_division=0)
    result["per_class"] = {label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                   "support": int(support[i])} for i, label in enumerate(labels)}
    result["confusion"] = confusion_matrix(y_true, y_pred, labels=list(range(len(labels)))).tolist()
    return result


def bootstrap_ci(correct: np.ndarray, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> list[float]:
    """Percentile bootstrap interval of the mean of 0/1 outcomes (tracks resampled with replacement)."""
    correct = np.asarray(correct, dtype=float)
    if len(correct) == 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(0, len(correct), (n_boot, len(correct)))].mean(axis=1)
    alpha = (1 - level) / 2
    return [float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))]


def leakage_check(payload: dict, tracks) -> list[str]:
    """Problems with evaluating ``payload``'s model on ``tracks`` (a DataFrame): shared tracks or artists."""
    data = payload.get("training_data", {})
    problems = []
    ids = set(map(str, tracks["track_id"]))
    trained = ids & set(data.get("train_track_ids", []))
    if trained:
        problems.append(f"{len(trained)} test track(s) were in the training data, e.g. {sorted(trained)[:3]}")
    artists = {a for a in tracks["artist"] if isinstance(a, str) and a} & set(data.get("train_artists", []))
    if artists:
        problems.append(f"{len(artists)} test artist(s) also appear in the training data, e.g. {sorted(artists)[:3]}")
    return problems


def _load_tracks(classifier, data, split, track_ids=None):
    """Segments of the tracks to test, from a cache folder or a data set spec."""
    from .cache import FeatureCache
    from .datasets import KINDS

    if isinstance(data, str) and data.split(":", 1)[0] in KINDS and not Path(data).exists():
        return _tracks_from_spec(classifier, data, split)
    cache = FeatureCache(data, classifier.feature_config)
    tracks = cache.select(split)
    if track_ids is not None:
        tracks = tracks[tracks["track_id"].isin(set(map(str, track_ids)))]
    tracks = tracks.reset_index(drop=True)
    if len(tracks) == 0:
        raise ConfigError(f"no tracks in split {split!r} of {data}; splits there: "
                          f"{sorted(cache.tracks['split'].dropna().unique())}")
    segments = [np.asarray(cache.track_segments(row), dtype=np.float32) for row in tracks.itertuples()]
    return tracks, segments, []


def _tracks_from_spec(classifier, spec, split):
    import pandas as pd

    from .cache import PrepareOptions, featurize_track
    from .datasets import open_dataset
    from .errors import AudioError

    tracks = [t for t in open_dataset(spec).tracks if split is None or t.split in split]
    rows, segments, failures = [], [], []
    for track in tracks:
        try:
            record, seg = featurize_track(track, classifier.feature_config, PrepareOptions())
        except AudioError as e:
            failures.append({"path": track.path, "reason": str(e)})
            continue
        rows.append(record)
        segments.append(seg.astype(np.float32))
    return pd.DataFrame(rows), segments, failures


def evaluate(checkpoint, data, split="test", allow_leak: bool = False, n_boot: int = 2000, seed: int = 0,
             device: str = "cpu", track_ids=None) -> dict:
    """Score a checkpoint on the tracks of ``split`` in a cache (or a ``KIND:PATH`` data set spec).

    ``track_ids`` restricts a cache's split to those tracks (e.g. the validation tracks a
    run carved out of its training split). Track-level predictions average the segment probabilities ("mean"); majority-vote
    figures are reported too. Raises :class:`~genrekit.errors.LeakageError` when a test
    track or artist was in the training data, unless ``allow_leak`` (then the report
    says ``leaky: true``).
    """
    from .prediction import load_model

    classifier = load_model(checkpoint, device=device)
    splits = [split] if isinstance(split, str) else split
    tracks, segments, failures = _load_tracks(classifier, data, splits, track_ids)
    problems = leakage_check(classifier.payload, tracks)
    if problems and not allow_leak:
        raise LeakageError("refusing to evaluate on training data: " + "; ".join(problems)
                           + " (use --allow-leak to run anyway; the report is then marked leaky)")
    labels = classifier.labels
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted(set(tracks["label"]) - set(labels))
    if unknown:
        raise ConfigError(f"test labels {unknown} are not among the model's labels {labels}")
    probs = np.concatenate([classifier.runner(s) for s in segments])
    track_of = np.concatenate([np.full(len(s), i) for i, s in enumerate(segments)])
    y_track = np.array([index[label] for label in tracks["label"]])
    y_seg = y_track[track_of]
    mean_pred = mean_vote(probs, track_of, len(tracks)).argmax(1)
    major_pred = majority_vote(probs, track_of, len(tracks)).argmax(1)
    seg = classification_metrics(y_seg, probs.argmax(1), labels)
    track = classification_metrics(y_track, mean_pred, labels)
    major = classification_metrics(y_track, major_pred, labels)
    valid_overlap = set(map(str, tracks["track_id"])) & set(classifier.payload.get("training_data", {}).get("valid_track_ids", []))
    return {
        "checkpoint": str(checkpoint), "data": str(data), "split": split, "leaky": bool(problems),
        "leakage_problems": problems,
        "model_selection_overlap": len(valid_overlap),
        "n_tracks": int(len(tracks)), "n_segments": int(len(y_seg)), "labels": labels,
        "track_accuracy": track["accuracy"], "track_accuracy_ci": bootstrap_ci(mean_pred == y_track, n_boot, seed=seed),
        "track_accuracy_majority": major["accuracy"],
        "track_accuracy_majority_ci": bootstrap_ci(major_pred == y_track, n_boot, seed=seed),
        "segment_accuracy": seg["accuracy"],
        "macro_f1": track["macro_f1"], "weighted_f1": track["weighted_f1"],
        "per_class": track["per_class"],
        "track": {k: v for k, v in track.items() if k != "per_class"},
        "track_majority": {k: v for k, v in major.items() if k != "per_class"},
        "segment": {k: v for k, v in seg.items() if k != "per_class"},
        "failures": failures,
        "predictions": [{"track_id": str(t), "label": labels[y], "predicted": labels[p], "majority": labels[m]}
                        for t, y, p, m in zip(tracks["track_id"], y_track, mean_pred, major_pred)],
    }


def format_table(report: dict) -> str:
    """A plain-text summary of an evaluation report."""
    lo, hi = report["track_accuracy_ci"]
    lines = [f"{'LEAKY (test tracks/artists seen in training) — ' if report['leaky'] else ''}"
             f"{report['n_tracks']} tracks, {report['n_segments']} segments ({report['split']})",
             f"{'':24}{'accuracy':>10}{'macro P':>9}{'macro R':>9}{'macro F1':>9}{'wtd F1':>8}"]
    for name, key in (("segments", "segment"), ("tracks (mean prob)", "track"), ("tracks (majority)", "track_majority")):
        m = report[key]
        lines.append(f"{name:24}{m['accuracy']:10.3f}{m['macro_precision']:9.3f}{m['macro_recall']:9.3f}"
                     f"{m['macro_f1']:9.3f}{m['weighted_f1']:8.3f}")
    lines.append(f"track accuracy 95% CI (bootstrap over tracks): [{lo:.3f}, {hi:.3f}]")
    lines.append(f"\n{'class':14}{'precision':>10}{'recall':>8}{'f1':>7}{'support':>9}")
    for label, m in report["per_class"].items():
        lines.append(f"{label:14}{m['precision']:10.3f}{m['recall']:8.3f}{m['f1']:7.3f}{m['support']:9d}")
    if report["model_selection_overlap"]:
        lines.append(f"note: {report['model_selection_overlap']} of these tracks were its training run's "
                     "validation set (best.pt is chosen on them)")
    return "\n".join(lines)


def write_report(report: dict, out_dir) -> dict:
    """Write report.json, report.md and the two confusion matrices; returns their paths."""
    from .io import write_json, write_text
    from .plots import plot_confusion

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    matrix = np.array(report["track"]["confusion"])
    paths = {"json": out / "report.json", "markdown": out / "report.md",
             "confusion_counts": out / "confusion_counts.png", "confusion_normalised": out / "confusion_normalised.png"}
    plot_confusion(matrix, report["labels"], paths["confusion_counts"], normalise=False)
    plot_confusion(matrix, report["labels"], paths["confusion_normalised"], normalise=True)
    write_json(paths["json"], report)
    write_text(paths["markdown"], markdown_report(report, paths))
    return {k: str(v) for k, v in paths.items()}


def markdown_report(report: dict, paths: dict) -> str:
    lo, hi = report["track_accuracy_ci"]
    warning = "\n> **LEAKY**: " + "; ".join(report["leakage_problems"]) + "\n" if report["leaky"] else ""
    return (f"# Evaluation of `{report['checkpoint']}`\n{warning}\n"
            f"Data: `{report['data']}`, split `{report['split']}`: {report['n_tracks']} tracks, "
            f"{report['n_segments']} segments.\n\n"
            f"Track accuracy (mean of segment probabilities): **{report['track_accuracy']:.3f}** "
            f"(95% bootstrap CI {lo:.3f}–{hi:.3f}); majority vote {report['track_accuracy_majority']:.3f}; "
            f"segment accuracy {report['segment_accuracy']:.3f}; macro F1 {report['macro_f1']:.3f}; "
            f"weighted F1 {report['weighted_f1']:.3f}.\n\n```\n{format_table(report)}\n```\n\n"
            f"![confusion (counts)]({Path(paths['confusion_counts']).name}) "
            f"![confusion (normalised)]({Path(paths['confusion_normalised']).name})\n")


def to_json(report: dict) -> str:
    return json.dumps(report, indent=2)
