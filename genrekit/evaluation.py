"""Honest evaluation: metrics that show a failing genre, confidence intervals, calibration, a leakage guard.

Classes are usually uneven, so the headline figures are **balanced accuracy** (mean
per-genre recall) and **macro-F1**, each with a bootstrap interval over tracks, next to
plain accuracy, with a per-genre precision/recall table (:mod:`genrekit.metrics`).
Calibration: ECE (15 bins) of the track probabilities, before and after the model's
temperature, and a reliability diagram.

The guard refuses test tracks the model was trained on, by track id, by artist, and by
content: the SHA-256 of the file and of its decoded audio, recorded in the model when
it was trained, so a training file under another name or path is still recognised.

Tracks that cannot be decoded are named in the report and the table; the command
exits non-zero unless ``--allow-failures``.

Examples
--------
>>> report = evaluate("runs/demo/best.safetensors", "caches/gtzan", split="test")  # doctest: +SKIP
>>> report["balanced_accuracy"], report["balanced_accuracy_ci"]  # doctest: +SKIP
(0.62, [0.48, 0.76])
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import metrics
from .errors import ConfigError, DatasetError, LeakageError


def leakage_check(payload: dict, tracks) -> list[str]:
    """Problems with evaluating ``payload``'s model on ``tracks`` (a DataFrame): shared tracks, artists or audio."""
    data = payload.get("training_data", {})
    problems = []
    hashes = set(data.get("train_hashes", [])) | set(data.get("train_audio_hashes", []))
    trained = set(map(str, tracks["track_id"])) & set(data.get("train_track_ids", []))
    if hashes:  # a folder data set's ids are relative paths: another folder's rock/01.mp3 is another
        trained = {i for i in trained if "/" not in i}  # recording, unless its content hash says otherwise
    if trained:
        problems.append(f"{len(trained)} test track(s) were in the training data, e.g. {sorted(trained)[:3]}")
    artists = {a for a in tracks["artist"] if isinstance(a, str) and a} & set(data.get("train_artists", []))
    if artists:
        problems.append(f"{len(artists)} test artist(s) also appear in the training data, e.g. {sorted(artists)[:3]}")
    if hashes:
        same = [row.path for row in tracks.itertuples()
                if {getattr(row, "sha256", None), getattr(row, "audio_sha256", None)} & hashes]
        if same:
            problems.append(f"{len(same)} test file(s) hold audio the model was trained on (same content hash), "
                            f"e.g. {same[:2]}")
    return problems


def _load_tracks(classifier, data, split, track_ids=None, dataset_options=None):
    """``(track table, segments per track, failures)`` from a cache folder or a data set spec."""
    from .cache import FeatureCache
    from .datasets import KINDS

    kind, sep, _ = str(data).partition(":")
    if sep and kind in KINDS and not Path(data).exists():
        return _tracks_from_spec(classifier, data, split, dataset_options or {})
    if not Path(data).exists():
        raise DatasetError(f"{data}: no such file or folder (give a feature cache folder or a data set spec "
                           f"such as gtzan:ROOT)")
    cache = FeatureCache(data, classifier.feature_config)
    tracks = cache.select(split)
    if track_ids is not None:
        tracks = tracks[tracks["track_id"].isin(set(map(str, track_ids)))]
    tracks = tracks.reset_index(drop=True)
    if len(tracks) == 0:
        raise ConfigError(f"no tracks in split {split!r} of {data}; splits there: "
                          f"{sorted(cache.tracks['split'].dropna().unique())}")
    segments = [np.asarray(cache.track_segments(row), dtype=np.float32) for row in tracks.itertuples()]
    return tracks, segments, cache.failures


def _tracks_from_spec(classifier, spec, split, dataset_options: dict):
    import pandas as pd

    from .cache.featurize import PrepareOptions, failure_record, featurize_or_reason
    from .datasets import open_dataset

    dataset = open_dataset(spec, **dataset_options)
    tracks = [t for t in dataset.tracks if split is None or t.split in split]
    if not tracks:
        raise ConfigError(f"no tracks in split {split} of {spec}; splits there: "
                          f"{sorted({t.split for t in dataset.tracks if t.split})} (or --split all)")
    rows, segments, failures = [], [], []
    for track in tracks:
        record, seg, reason = featurize_or_reason(track, classifier.feature_config, PrepareOptions())
        if reason is not None:
            failures.append(failure_record(track, reason))
            continue
        rows.append(record)
        segments.append(seg.astype(np.float32))
    columns = ["track_id", "path", "label", "split", "artist", "sha256", "audio_sha256"]
    return (pd.DataFrame(rows) if rows else pd.DataFrame(columns=columns)), segments, failures


def evaluate(model, data, split="test", allow_leak: bool = False, n_boot: int = 2000, seed: int = 0,
             device: str = "cpu", track_ids=None, dataset_options: dict | None = None,
             only_model_labels: bool = False) -> dict:
    """Score a model (an ``.onnx`` file or a checkpoint) on the tracks of ``split``.

    Parameters
    ----------
    model : path
    data : path or str
        A feature cache folder, or a ``KIND:PATH`` data set spec (decoded here).
    split : str or list of str, or None for all tracks
    allow_leak : bool
        Run even when test tracks were trained on (the report is then marked ``leaky``).
    track_ids : iterable, optional
        Restrict a cache's split to these tracks (e.g. a run's carved-out validation).
    dataset_options : dict, optional
        Keyword arguments of :func:`genrekit.datasets.open_dataset` for a data set spec
        (``metadata`` for ``fma:``, ``splits`` for ``gtzan:``, ...).
    only_model_labels : bool
        Leave out, with a note, tracks whose label the model does not have (a label
        written as the model's display name, such as FMA's ``Hip-Hop``, counts as the model's).

    Raises
    ------
    LeakageError
        A test track, artist or audio content was in the training data (unless ``allow_leak``).
    """
    from .prediction import load_model

    classifier = load_model(model, device=device)
    splits = None if split in (None, "all") else ([split] if isinstance(split, str) else list(split))
    tracks, segments, failures = _load_tracks(classifier, data, splits, track_ids, dataset_options)
    tracks, segments, notes = _model_labels(classifier, tracks, segments, only_model_labels)
    if len(tracks) == 0:
        raise DatasetError(f"{data}: none of the {len(failures)} track(s) of split {split!r} could be decoded"
                           + (f", e.g. {failures[0]['path']}: {failures[0]['reason']}" if failures else ""))
    problems = leakage_check(classifier.payload, tracks)
    if problems and not allow_leak:
        raise LeakageError(f"refusing to evaluate {model} on {data}: the model was trained on these tracks, so "
                           "the scores would not measure how it does on new music (" + "; ".join(problems)
                           + "); --allow-leak runs anyway and marks the report leaky")
    labels = classifier.labels
    scored = _score_tracks(classifier, segments, metrics.encode(tracks["label"], labels))
    report = _report(scored, labels, n_boot, seed)
    valid_ids = set(classifier.payload.get("training_data", {}).get("valid_track_ids", []))
    return {"model": str(model), "data": str(data), "split": split, "leaky": bool(problems),
            "leakage_problems": problems, "model_selection_overlap": len(set(map(str, tracks["track_id"])) & valid_ids),
            **report, "failures": failures, "notes": notes,
            "predictions": [{"track_id": str(t), "path": p, "label": labels[y], "predicted": labels[m],
                             "majority": labels[v], "abstain": a}
                            for t, p, y, m, v, a in zip(tracks["track_id"], tracks["path"], scored["y"],
                                                        scored["mean"], scored["majority"], scored["abstain"])]}


def _model_labels(classifier, tracks, segments, only_model_labels: bool):
    """Tracks with the model's labels (display names such as ``Hip-Hop`` renamed), and a note on those left out.

    Raises :class:`~genrekit.errors.ConfigError` for labels the model does not have, unless
    ``only_model_labels``.
    """
    by_name = {name.casefold(): label for label, name in classifier.display_names.items()}
    by_name.update({label.casefold(): label for label in classifier.labels})
    tracks = tracks.assign(label=[by_name.get(str(x).casefold(), x) for x in tracks["label"]])
    unknown = tracks["label"].map(lambda x: x not in classifier.labels).to_numpy(dtype=bool)
    if not unknown.any():
        return tracks, segments, []
    counts = tracks.loc[unknown, "label"].value_counts().sort_index()
    found = ", ".join(f"{label} ({n})" for label, n in counts.items())
    if not only_model_labels:
        raise ConfigError(f"test labels the model does not have: {found}; the model's labels are "
                          f"{classifier.labels} (--only-model-labels leaves those tracks out)")
    keep = np.flatnonzero(~unknown)
    if not len(keep):
        raise ConfigError(f"no test track has a label the model has ({classifier.labels}); found: {found}")
    note = f"{int(unknown.sum())} track(s) left out, their labels are not the model's: {found}"
    return tracks.iloc[keep].reset_index(drop=True), [segments[i] for i in keep], [note]


def _score_tracks(classifier, segments: list[np.ndarray], y: np.ndarray) -> dict:
    """Track and segment predictions, the track probabilities (calibrated and not) and abstentions."""
    track_probs, raw_probs, seg_pred, seg_true, majority, abstain = [], [], [], [], [], []
    for x, label in zip(segments, y):
        outputs = classifier.network.run(x)
        probs, seg_probs = classifier.score(outputs)
        track_probs.append(probs)
        raw_probs.append(_uncalibrated(classifier, outputs, probs))
        seg_pred.append(seg_probs.argmax(1))
        seg_true.append(np.full(len(seg_probs), label))
        majority.append(np.bincount(seg_probs.argmax(1), minlength=len(probs)).argmax())
        abstain.append(classifier.decide("", outputs, 0.0, 0.0).abstain)
    track_probs, raw_probs = np.array(track_probs), np.array(raw_probs)
    return {"y": y, "probs": track_probs, "raw_probs": raw_probs, "mean": track_probs.argmax(1),
            "majority": np.array(majority), "seg_true": np.concatenate(seg_true),
            "seg_pred": np.concatenate(seg_pred), "abstain": abstain}


def _uncalibrated(classifier, outputs, probs: np.ndarray) -> np.ndarray:
    """The track probabilities without the model's temperature (ECE "before")."""
    head = classifier.head
    if head is None or head.temperature == 1.0:
        return probs
    return metrics.softmax(head.logits(outputs) * head.temperature)


def _report(scored: dict, labels: list[str], n_boot: int, seed: int) -> dict:
    k, y = len(labels), scored["y"]
    track = metrics.classification_report(y, scored["mean"], labels, n_boot=n_boot, seed=seed)
    major = metrics.classification_report(y, scored["majority"], labels, n_boot=n_boot, seed=seed)
    segment = metrics.classification_report(scored["seg_true"], scored["seg_pred"], labels, n_boot=n_boot, seed=seed)
    headline = {key: track[key] for key in ("balanced_accuracy", "balanced_accuracy_ci", "macro_f1", "macro_f1_ci",
                                            "accuracy", "accuracy_ci")}
    calibration = {"ece_before": metrics.ece(scored["raw_probs"], y), "ece_after": metrics.ece(scored["probs"], y),
                   "reliability": metrics.reliability(scored["probs"], y)}
    abstentions = {reason: sum(a == reason for a in scored["abstain"]) for reason in ("not_music", "uncertain")}
    return {"n_tracks": int(len(y)), "n_segments": int(len(scored["seg_true"])), "labels": labels, **headline,
            "track_accuracy": track["accuracy"], "track_accuracy_ci": track["accuracy_ci"],
            "per_class": _undefined_as_none(track["per_class"]), "track": _summary(track), "track_majority": _summary(major),
            "segment": _summary(segment), "segment_accuracy": segment["accuracy"], "calibration": calibration,
            "abstentions": abstentions, "confusion": track["confusion_matrix"], "n_classes": k}


def _undefined_as_none(per_class: dict) -> dict:
    """Per-genre scores with ``None`` for a 0/0: precision of a genre never predicted, F1 of one neither
    true nor predicted (left out of macro-F1), as recall already is for a genre with no true track."""
    def fix(m):
        return dict(m, precision=m["precision"] if m["predicted"] else None,
                    f1=m["f1"] if m["predicted"] or m["support"] else None)

    return {label: fix(m) for label, m in per_class.items()}


def _summary(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in ("per_class", "labels")}


def format_table(report: dict) -> str:
    """A plain-text summary: headline figures with CIs, the per-genre table, calibration, failures."""
    leaky = "LEAKY (test tracks/artists/audio seen in training) — " if report["leaky"] else ""
    lines = [f"{leaky}{report['n_tracks']} tracks, {report['n_segments']} segments ({report['split']})",
             f"{'':22}{'bal. acc':>9}{'macro F1':>9}{'accuracy':>9}"]
    for name, key in (("tracks (model)", "track"), ("tracks (majority)", "track_majority"), ("segments", "segment")):
        m = report[key]
        lines.append(f"{name:22}{m['balanced_accuracy']:9.3f}{m['macro_f1']:9.3f}{m['accuracy']:9.3f}")
    for key in ("balanced_accuracy", "macro_f1", "accuracy"):
        lo, hi = report[f"{key}_ci"]
        lines.append(f"track {key.replace('_', ' ')} 95% CI (bootstrap over tracks): [{lo:.3f}, {hi:.3f}]")
    lines.append(f"\n{'genre':14}{'precision':>10}{'recall':>8}{'f1':>7}{'support':>9}{'predicted':>10}")
    for label, m in report["per_class"].items():
        precision, recall, f1 = (_table_cell(m[key], width) for key, width in (("precision", 10), ("recall", 8),
                                                                                ("f1", 7)))
        lines.append(f"{label:14}{precision}{recall}{f1}{m['support']:9d}{m['predicted']:10d}")
    cal = report["calibration"]
    lines.append(f"\ncalibration: ECE (15 bins) {cal['ece_before']:.3f} before, {cal['ece_after']:.3f} after the "
                 "model's temperature")
    ab = report["abstentions"]
    if ab["not_music"] or ab["uncertain"]:
        lines.append(f"the model would abstain on {ab['not_music']} track(s) as not music and {ab['uncertain']} as "
                     "uncertain (scored above by their most probable genre)")
    lines += [f"note: {note}" for note in report.get("notes", [])]
    if report["model_selection_overlap"]:
        lines.append(f"note: {report['model_selection_overlap']} of these tracks were its training run's "
                     "validation set (the best checkpoint is chosen on them)")
    if report["failures"]:
        lines.append(f"\nFAILED: {len(report['failures'])} track(s) could not be decoded and are not scored:")
        lines += [f"  {f['path']}: {f['reason']}" for f in report["failures"]]
    return "\n".join(lines)


def _table_cell(value, width: int) -> str:
    """A score right-aligned in ``width`` characters, ``–`` where it is undefined (``None``)."""
    return f"{'–':>{width}}" if value is None else f"{value:{width}.3f}"


def write_report(report: dict, out_dir) -> dict:
    """Write report.json, report.md, the confusion matrices and the reliability diagram; returns their paths."""
    from .io import write_json, write_text
    from .plots import plot_confusion, plot_reliability

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    matrix = np.array(report["confusion"])
    paths = {"json": out / "report.json", "markdown": out / "report.md",
             "confusion_counts": out / "confusion_counts.png", "confusion_normalised": out / "confusion_normalised.png",
             "reliability": out / "reliability.png"}
    plot_confusion(matrix, report["labels"], paths["confusion_counts"], normalise=False)
    plot_confusion(matrix, report["labels"], paths["confusion_normalised"], normalise=True)
    plot_reliability(report["calibration"]["reliability"], paths["reliability"])
    write_json(paths["json"], report)
    write_text(paths["markdown"], markdown_report(report, paths))
    return {k: str(v) for k, v in paths.items()}


def markdown_report(report: dict, paths: dict) -> str:
    warning = "\n> **LEAKY**: " + "; ".join(report["leakage_problems"]) + "\n" if report["leaky"] else ""
    track = dict(report["track"], per_class=report["per_class"], ci_level=0.95)
    return (f"# Evaluation of `{report['model']}`\n{warning}\n"
            f"Data: `{report['data']}`, split `{report['split']}`: {report['n_tracks']} tracks, "
            f"{report['n_segments']} segments. Classes are uneven: read balanced accuracy and macro-F1, "
            f"with their intervals.\n\n{metrics.per_class_markdown(track)}\n\n```\n{format_table(report)}\n```\n\n"
            f"![confusion (counts)]({Path(paths['confusion_counts']).name}) "
            f"![confusion (normalised)]({Path(paths['confusion_normalised']).name}) "
            f"![reliability]({Path(paths['reliability']).name})\n")


def to_json(report: dict) -> str:
    return json.dumps(report, indent=2)
