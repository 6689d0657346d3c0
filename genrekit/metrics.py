"""Classification and calibration metrics, numpy only (usable in the light install).

Labels are integer class indices ``0 .. n_classes - 1`` (use :func:`encode` for names).
The definitions follow scikit-learn, and ``tests/test_metrics.py`` checks them against it:

* **balanced accuracy**: mean per-class recall over the classes present in ``y_true``
  (``sklearn.metrics.balanced_accuracy_score``).
* **per-class precision / recall / F1**: a 0/0 ratio counts as 0
  (``precision_recall_fscore_support(..., zero_division=0)``).
* **macro-F1**: mean F1 over the classes present in ``y_true`` or ``y_pred``
  (``f1_score(average="macro")`` without ``labels``); a class neither true nor predicted
  anywhere is left out, a class predicted but never true counts with F1 = 0.

Intervals are percentile bootstraps over tracks (resampled with replacement, seeded).
Every metric is computed from confusion matrices, so the bootstrap builds all resampled
confusion matrices with one ``bincount``.

Calibration works on the top label: confidence = the largest probability, correct =
whether its class is the true one. ECE uses 15 equal-width bins ``(i/15, (i+1)/15]``
(the first one closed at 0); :func:`fit_temperature` fits one temperature ``T > 0`` for
``softmax(logits / T)`` by minimising the NLL (convex in ``1 / T``, so a golden-section
search over ``log T`` finds the global minimum).

Examples
--------
>>> y_true = np.array([0, 0, 1, 2]); y_pred = np.array([0, 1, 1, 1])
>>> round(balanced_accuracy(y_true, y_pred, 3), 3)
0.5
>>> report = classification_report(y_true, y_pred, ["blues", "jazz", "rock"], n_boot=200)
>>> report["per_class"]["jazz"]["recall"]
1.0
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from .errors import ConfigError

ECE_BINS = 15
CI_LEVEL = 0.95
N_BOOT = 2000


# --- labels and confusion matrices --------------------------------------------------

def encode(values: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Names → class indices in ``labels``.

    Raises
    ------
    ValueError
        A value is not one of ``labels``.
    """
    index = {name: i for i, name in enumerate(labels)}
    unknown = sorted({v for v in values if v not in index})
    if unknown:
        raise ConfigError(f"labels not in {list(labels)}: {unknown[:5]}")
    return np.array([index[v] for v in values], dtype=np.int64)


def _check_pair(y_true, y_pred, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim != 1 or y_true.shape != y_pred.shape:
        raise ConfigError(f"y_true and y_pred must be 1-D of one length, got {y_true.shape} and {y_pred.shape}")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_classes):
            raise ConfigError(f"{name} must hold class indices in [0, {n_classes}), got {y.dtype} "
                             f"from {y.min()} to {y.max()}")
    return y_true.astype(np.int64), y_pred.astype(np.int64)


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """``C[i, j]`` = number of tracks of true class ``i`` predicted as ``j``, shape ``(K, K)``."""
    y_true, y_pred = _check_pair(y_true, y_pred, n_classes)
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0/0 → 0 (scikit-learn's ``zero_division=0``)."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


# Metrics of confusion matrices ``cm`` of shape (..., K, K); leading axes are bootstrap draws.

def _accuracy_cm(cm: np.ndarray) -> np.ndarray:
    return _ratio(np.trace(cm, axis1=-2, axis2=-1), cm.sum(axis=(-2, -1)))


def _per_class_cm(cm: np.ndarray) -> dict[str, np.ndarray]:
    tp = np.diagonal(cm, axis1=-2, axis2=-1).astype(float)
    support, predicted = cm.sum(axis=-1), cm.sum(axis=-2)
    precision, recall = _ratio(tp, predicted), _ratio(tp, support)
    return {"precision": precision, "recall": recall, "f1": _ratio(2 * tp, support + predicted),
            "support": support, "predicted": predicted}


def _balanced_cm(cm: np.ndarray) -> np.ndarray:
    scores = _per_class_cm(cm)
    present = scores["support"] > 0
    return _ratio((scores["recall"] * present).sum(axis=-1), present.sum(axis=-1))


def _macro_f1_cm(cm: np.ndarray) -> np.ndarray:
    scores = _per_class_cm(cm)
    seen = (scores["support"] + scores["predicted"]) > 0
    return _ratio((scores["f1"] * seen).sum(axis=-1), seen.sum(axis=-1))


METRICS_CM: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "accuracy": _accuracy_cm, "balanced_accuracy": _balanced_cm, "macro_f1": _macro_f1_cm}


def accuracy(y_true, y_pred, n_classes: int) -> float:
    """Fraction of tracks whose predicted class is the true one."""
    return float(_accuracy_cm(confusion_matrix(y_true, y_pred, n_classes)))


def balanced_accuracy(y_true, y_pred, n_classes: int) -> float:
    """Mean recall over the classes present in ``y_true``."""
    return float(_balanced_cm(confusion_matrix(y_true, y_pred, n_classes)))


def macro_f1(y_true, y_pred, n_classes: int) -> float:
    """Mean F1 over the classes present in ``y_true`` or ``y_pred``."""
    return float(_macro_f1_cm(confusion_matrix(y_true, y_pred, n_classes)))


def per_class_scores(y_true, y_pred, n_classes: int) -> dict[str, np.ndarray]:
    """Per-class ``precision``, ``recall``, ``f1`` (0/0 → 0), ``support`` and ``predicted`` counts."""
    return _per_class_cm(confusion_matrix(y_true, y_pred, n_classes))


# --- bootstrap ------------------------------------------------------------------------

def bootstrap_confusions(y_true, y_pred, n_classes: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """Confusion matrices of ``n_boot`` resamples of the tracks (with replacement): ``(n_boot, K, K)``.

    Memory is ``n_boot × n_tracks`` indices at once; fine for thousands of tracks.
    """
    y_true, y_pred = _check_pair(y_true, y_pred, n_classes)
    n, k = len(y_true), n_classes
    if n == 0:
        raise ConfigError("no tracks to resample")
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    cells = (np.arange(n_boot)[:, None] * k * k + y_true[idx] * k + y_pred[idx]).ravel()
    return np.bincount(cells, minlength=n_boot * k * k).reshape(n_boot, k, k)


def bootstrap_ci(metric: str | Callable, y_true, y_pred, n_classes: int, n_boot: int = N_BOOT,
                 level: float = CI_LEVEL, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric`` over tracks.

    Parameters
    ----------
    metric : {"accuracy", "balanced_accuracy", "macro_f1"} or callable
        A name, or a function of a stack of confusion matrices ``(n_boot, K, K)``
        returning ``(n_boot,)`` values.
    """
    fn = METRICS_CM[metric] if isinstance(metric, str) else metric
    values = fn(bootstrap_confusions(y_true, y_pred, n_classes, n_boot, seed))
    alpha = (1 - level) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))


def bootstrap_difference(metric: str | Callable, y_true, pred_a, pred_b, n_classes: int, n_boot: int = N_BOOT,
                         level: float = CI_LEVEL, seed: int = 0) -> dict:
    """``metric(pred_a) - metric(pred_b)`` on the same tracks, with a *paired* bootstrap interval.

    Both predictions are scored on the same resamples, so what the two share (the tracks that
    are easy or hard for both) cancels: the interval is that of the difference, much narrower
    than comparing two separate intervals when the predictions agree on most tracks.

    Returns ``{"difference", "ci", "p_not_better"}``; ``p_not_better`` is the share of
    resamples where A does not beat B (a rough one-sided bootstrap p-value).

    >>> y = np.array([0, 0, 1, 1, 2, 2]); a = np.array([0, 0, 1, 1, 2, 1]); b = np.array([0, 1, 1, 1, 2, 1])
    >>> round(bootstrap_difference("accuracy", y, a, b, 3, n_boot=500)["difference"], 3)
    0.167
    """
    fn = METRICS_CM[metric] if isinstance(metric, str) else metric
    y_true, pred_a = _check_pair(y_true, pred_a, n_classes)
    _, pred_b = _check_pair(y_true, pred_b, n_classes)
    # the same seed draws the same track indices for both (bootstrap_confusions)
    diff = fn(bootstrap_confusions(y_true, pred_a, n_classes, n_boot, seed)) - fn(
        bootstrap_confusions(y_true, pred_b, n_classes, n_boot, seed))
    alpha = (1 - level) / 2
    point = fn(confusion_matrix(y_true, pred_a, n_classes)) - fn(confusion_matrix(y_true, pred_b, n_classes))
    return {"difference": float(point), "ci": [float(np.quantile(diff, alpha)), float(np.quantile(diff, 1 - alpha))],
            "p_not_better": float(np.mean(diff <= 0))}


# --- reports --------------------------------------------------------------------------

def classification_report(y_true, y_pred, labels: Sequence[str], n_boot: int = N_BOOT,
                          level: float = CI_LEVEL, seed: int = 0) -> dict:
    """Accuracy, balanced accuracy and macro-F1 with bootstrap intervals, per-class scores,
    and the confusion matrix, as a JSON-able dict.

    ``per_class[name]`` holds ``precision``, ``recall``, ``f1``, ``support`` and
    ``predicted``; ``recall`` is ``None`` for a class with no true track (it is not part of
    the balanced accuracy).
    """
    labels, k = list(labels), len(labels)
    cm = confusion_matrix(y_true, y_pred, k)
    boot = bootstrap_confusions(y_true, y_pred, k, n_boot, seed)
    alpha = (1 - level) / 2
    report: dict = {"n_tracks": int(cm.sum()), "labels": labels, "ci_level": level, "n_boot": n_boot}
    for name, fn in METRICS_CM.items():
        values = fn(boot)
        report[name] = float(fn(cm))
        report[f"{name}_ci"] = [float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))]
    scores = _per_class_cm(cm)
    report["per_class"] = {
        name: {"precision": float(scores["precision"][i]),
               "recall": float(scores["recall"][i]) if scores["support"][i] else None,
               "f1": float(scores["f1"][i]), "support": int(scores["support"][i]),
               "predicted": int(scores["predicted"][i])}
        for i, name in enumerate(labels)}
    report["confusion_matrix"] = cm.tolist()
    return report


def _cell(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def per_class_markdown(report: dict) -> str:
    """The per-class table of :func:`classification_report` as Markdown, with a summary line."""
    lines = ["| genre | support | predicted | precision | recall | F1 |", "|---|---:|---:|---:|---:|---:|"]
    for name, s in report["per_class"].items():
        lines.append(f"| {name} | {s['support']} | {s['predicted']} | {_cell(s['precision'])} "
                     f"| {_cell(s['recall'])} | {_cell(s['f1'])} |")
    pct = round(100 * report["ci_level"])
    summary = ", ".join(f"{name.replace('_', ' ')} {report[name]:.3f} ({pct} % CI "
                        f"{report[f'{name}_ci'][0]:.2f}–{report[f'{name}_ci'][1]:.2f})"
                        for name in METRICS_CM)
    return "\n".join(lines) + f"\n\n{report['n_tracks']} tracks: {summary}"


# --- probabilities and calibration ----------------------------------------------------

def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` (numerically stable)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(logits, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _check_scores(scores, y_true, what: str) -> tuple[np.ndarray, np.ndarray]:
    scores, y_true = np.asarray(scores, dtype=np.float64), np.asarray(y_true)
    if scores.ndim != 2 or y_true.shape != (scores.shape[0],):
        raise ConfigError(f"{what} must be (n, K) with y_true (n,), got {scores.shape} and {y_true.shape}")
    if not np.isfinite(scores).all():
        raise ConfigError(f"{what} contain NaN or Inf")
    if y_true.size and (not np.issubdtype(y_true.dtype, np.integer) or y_true.min() < 0
                        or y_true.max() >= scores.shape[1]):
        raise ConfigError(f"y_true must hold class indices in [0, {scores.shape[1]})")
    return scores, y_true.astype(np.int64)


def nll(probs, y_true, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood of the true class (probabilities clipped at ``eps``)."""
    probs, y_true = _check_scores(probs, y_true, "probabilities")
    return float(-np.log(np.clip(probs[np.arange(len(y_true)), y_true], eps, 1.0)).mean())


def nll_logits(logits, y_true, temperature: float = 1.0) -> float:
    """Mean NLL of ``softmax(logits / temperature)`` computed in log space (no clipping)."""
    logits, y_true = _check_scores(logits, y_true, "logits")
    return float(-log_softmax(logits, temperature)[np.arange(len(y_true)), y_true].mean())


def reliability(probs, y_true, n_bins: int = ECE_BINS) -> dict:
    """Reliability-diagram data of the top label, as a JSON-able dict.

    Returns
    -------
    dict
        ``edges`` (n_bins + 1), and per bin ``confidence`` (mean top probability),
        ``accuracy`` (fraction correct) — both ``None`` for an empty bin — and ``count``.
    """
    probs, y_true = _check_scores(probs, y_true, "probabilities")
    conf, correct = probs.max(axis=1), probs.argmax(axis=1) == y_true
    # (i/n, (i+1)/n] per bin; confidence 0 goes to the first bin
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=conf, minlength=n_bins)
    hit_sum = np.bincount(bins, weights=correct.astype(float), minlength=n_bins)
    mean = lambda s: [float(v / c) if c else None for v, c in zip(s, count)]  # noqa: E731
    return {"edges": np.linspace(0, 1, n_bins + 1).tolist(), "confidence": mean(conf_sum),
            "accuracy": mean(hit_sum), "count": count.tolist()}


def ece(probs, y_true, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error: ``Σ_b n_b / N · |accuracy_b − confidence_b|`` over equal-width bins."""
    rel = reliability(probs, y_true, n_bins)
    n = sum(rel["count"])
    return float(sum(c / n * abs(a - p) for c, a, p in zip(rel["count"], rel["accuracy"], rel["confidence"]) if c))


def ece_noise_floor(probs, n_sim: int = 500, seed: int = 0, n_bins: int = ECE_BINS) -> float:
    """Median ECE of a *perfectly calibrated* model with these confidences on this many tracks.

    Each track's top label is drawn right with probability equal to its confidence, so
    the ECE of the draws is sampling noise alone: an ECE near this value cannot be told
    from perfect calibration at this sample size.

    Examples
    --------
    >>> probs = np.tile([0.7, 0.2, 0.1], (87, 1))
    >>> 0.03 < ece_noise_floor(probs) < 0.1
    True
    """
    probs = np.asarray(probs, dtype=np.float64)
    rng = np.random.default_rng(seed)
    conf, top = probs.max(axis=1), probs.argmax(axis=1)
    values = []
    for _ in range(n_sim):
        right = rng.random(len(conf)) < conf
        values.append(ece(probs, np.where(right, top, (top + 1) % probs.shape[1]), n_bins))
    return float(np.median(values))


def fit_temperature(logits, y_true, bounds: tuple[float, float] = (0.01, 100.0), tol: float = 1e-6) -> float:
    """The temperature ``T`` minimising the NLL of ``softmax(logits / T)`` on held-out predictions.

    The NLL is convex in ``1 / T``, hence unimodal in ``log T``: a golden-section search
    over ``log T`` within ``bounds`` finds its minimum. Where the NLL keeps falling up to a
    bound (e.g. every prediction already right and sharpening only helps) the bound is
    returned. Fit on predictions the model was not trained on, never on training data.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, 500)
    >>> logits = 4 * (np.eye(3)[y] + rng.normal(0, 1.2, (500, 3)))  # over-confident
    >>> fit_temperature(logits, y) > 1
    True
    """
    logits, y_true = _check_scores(logits, y_true, "logits")
    lo, hi = bounds
    if not 0 < lo < hi:
        raise ConfigError(f"bounds must satisfy 0 < low < high, got {bounds}")
    if len(y_true) == 0:
        raise ConfigError("no predictions to fit a temperature on")
    f = lambda u: nll_logits(logits, y_true, math.exp(u))  # noqa: E731
    a, b = math.log(lo), math.log(hi)
    invphi = (math.sqrt(5) - 1) / 2
    c, d = b - invphi * (b - a), a + invphi * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - invphi * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + invphi * (b - a)
            fd = f(d)
    u = (a + b) / 2
    # the interior optimum, or the better bound when the minimum lies at an edge
    candidates = [(f(u), u), (f(math.log(lo)), math.log(lo)), (f(math.log(hi)), math.log(hi))]
    return float(math.exp(min(candidates)[1]))


def calibration_report(logits, y_true, temperature: float = 1.0, n_bins: int = ECE_BINS) -> dict:
    """ECE, NLL, accuracy and reliability data of ``softmax(logits / temperature)``."""
    probs = softmax(logits, temperature)
    return {"temperature": float(temperature), "ece": ece(probs, y_true, n_bins),
            "nll": nll_logits(logits, y_true, temperature), "reliability": reliability(probs, y_true, n_bins)}
