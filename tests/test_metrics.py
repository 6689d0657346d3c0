"""genrekit.metrics against scikit-learn, and temperature scaling on synthetic predictions."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from contextlib import contextmanager

import numpy as np
import pytest
from sklearn import metrics as skm

from genrekit import metrics

K = 5
# class 3 is never true (absent), class 4 is true but never predicted, class 2 is predicted but never right
FIXTURES = {
    "absent_and_never_predicted": (np.array([0, 0, 0, 1, 1, 2, 4, 4, 4]), np.array([0, 1, 0, 1, 3, 0, 0, 1, 2])),
    "perfect": (np.array([0, 1, 2, 3, 4, 0]), np.array([0, 1, 2, 3, 4, 0])),
    "all_wrong": (np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0])),
    "one_track": (np.array([2]), np.array([3])),
}


def random_fixture(seed: int, n: int = 60):
    rng = np.random.default_rng(seed)
    y_true = rng.choice(K, n, p=[0.5, 0.3, 0.15, 0.0, 0.05])
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.choice([0, 1, 2], n))
    return y_true, y_pred


@contextmanager
def quiet():
    """scikit-learn warns about absent classes; the fixtures have them on purpose."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


CASES = list(FIXTURES.values()) + [random_fixture(s) for s in range(5)]


@pytest.mark.parametrize("y_true,y_pred", CASES)
def test_scores_match_sklearn(y_true, y_pred):
    assert np.array_equal(metrics.confusion_matrix(y_true, y_pred, K),
                          skm.confusion_matrix(y_true, y_pred, labels=range(K)))
    assert metrics.accuracy(y_true, y_pred, K) == pytest.approx(skm.accuracy_score(y_true, y_pred))
    with quiet():
        expected_bal = skm.balanced_accuracy_score(y_true, y_pred)
        expected_f1 = skm.f1_score(y_true, y_pred, average="macro", zero_division=0)
    assert metrics.balanced_accuracy(y_true, y_pred, K) == pytest.approx(expected_bal)
    assert metrics.macro_f1(y_true, y_pred, K) == pytest.approx(expected_f1)
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=range(K), zero_division=0)
    mine = metrics.per_class_scores(y_true, y_pred, K)
    for key, ref in (("precision", p), ("recall", r), ("f1", f), ("support", s)):
        assert np.allclose(mine[key], ref), key


def test_balanced_accuracy_ignores_absent_classes():
    y_true, y_pred = FIXTURES["absent_and_never_predicted"]
    # recalls: class0 2/3, class1 1/2, class2 0/1, class4 0/3 (class 3 absent)
    assert metrics.balanced_accuracy(y_true, y_pred, K) == pytest.approx((2 / 3 + 1 / 2) / 4)


def test_bootstrap_ci_matches_a_plain_loop():
    y_true, y_pred = random_fixture(7)
    lo, hi = metrics.bootstrap_ci("balanced_accuracy", y_true, y_pred, K, n_boot=300, seed=3)
    rng = np.random.default_rng(3)
    idx = rng.integers(0, len(y_true), size=(300, len(y_true)))
    with quiet():
        values = [skm.balanced_accuracy_score(y_true[i], y_pred[i]) for i in idx]
    assert (lo, hi) == pytest.approx((np.quantile(values, 0.025), np.quantile(values, 0.975)))
    point = metrics.balanced_accuracy(y_true, y_pred, K)
    assert lo <= point <= hi and lo < hi


def test_paired_difference_matches_a_plain_loop_and_is_narrower_than_separate_intervals():
    y_true, pred_a = random_fixture(7)
    pred_b = pred_a.copy()
    pred_b[:6] = (pred_b[:6] + 1) % 3  # B differs from A on 6 of 60 tracks
    d = metrics.bootstrap_difference("balanced_accuracy", y_true, pred_a, pred_b, K, n_boot=300, seed=3)
    idx = np.random.default_rng(3).integers(0, len(y_true), size=(300, len(y_true)))
    with quiet():
        values = [skm.balanced_accuracy_score(y_true[i], pred_a[i]) - skm.balanced_accuracy_score(y_true[i], pred_b[i])
                  for i in idx]
        point = skm.balanced_accuracy_score(y_true, pred_a) - skm.balanced_accuracy_score(y_true, pred_b)
    assert d["difference"] == pytest.approx(point)
    assert d["ci"] == pytest.approx([np.quantile(values, 0.025), np.quantile(values, 0.975)])
    assert d["p_not_better"] == pytest.approx(np.mean(np.array(values) <= 0))
    lo_a, hi_a = metrics.bootstrap_ci("balanced_accuracy", y_true, pred_a, K, n_boot=300, seed=3)
    assert d["ci"][1] - d["ci"][0] < hi_a - lo_a
    same = metrics.bootstrap_difference("macro_f1", y_true, pred_a, pred_a, K, n_boot=100)
    assert same["difference"] == 0 and same["ci"] == [0, 0] and same["p_not_better"] == 1


def test_bootstrap_is_seeded():
    y_true, y_pred = random_fixture(1)
    a = metrics.bootstrap_ci("macro_f1", y_true, y_pred, K, n_boot=200, seed=5)
    assert a == metrics.bootstrap_ci("macro_f1", y_true, y_pred, K, n_boot=200, seed=5)
    assert a != metrics.bootstrap_ci("macro_f1", y_true, y_pred, K, n_boot=200, seed=6)


def test_report_is_json_and_markdown_lists_every_class():
    y_true, y_pred = FIXTURES["absent_and_never_predicted"]
    names = ["blues", "classical", "country", "disco", "hiphop"]
    report = json.loads(json.dumps(metrics.classification_report(y_true, y_pred, names, n_boot=100)))
    assert report["per_class"]["disco"]["recall"] is None and report["per_class"]["disco"]["support"] == 0
    assert report["per_class"]["hiphop"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 3, "predicted": 0}
    assert report["balanced_accuracy"] == pytest.approx(metrics.balanced_accuracy(y_true, y_pred, K))
    assert report["confusion_matrix"] == skm.confusion_matrix(y_true, y_pred, labels=range(K)).tolist()
    table = metrics.per_class_markdown(report)
    assert all(f"| {n} |" in table for n in names)
    assert "| disco | 0 | 1 | 0.00 | – | 0.00 |" in table


def test_bad_labels_raise():
    with pytest.raises(ValueError, match="class indices"):
        metrics.accuracy([0, 5], [0, 1], K)
    with pytest.raises(ValueError, match="one length"):
        metrics.accuracy([0, 1], [0], K)
    with pytest.raises(ValueError, match="not in"):
        metrics.encode(["rock", "polka"], ["rock", "pop"])


def overconfident(seed: int = 0, n: int = 2000, k: int = 4):
    """Logits whose softmax is far too sure: true accuracy ~60 %, confidence ~95 %+."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = 6.0 * (1.2 * np.eye(k)[y] + rng.normal(0, 1.0, (n, k)))
    return logits, y


def test_temperature_scaling_lowers_nll_and_ece():
    logits, y = overconfident(0)
    t = metrics.fit_temperature(logits[:1000], y[:1000])
    assert t > 2
    test_logits, test_y = logits[1000:], y[1000:]
    before, after = metrics.calibration_report(test_logits, test_y), metrics.calibration_report(test_logits, test_y, t)
    assert after["nll"] < before["nll"] - 0.2
    assert after["ece"] < before["ece"] / 3 and after["ece"] < 0.05
    # the fitted T is the NLL minimum: nearby temperatures are no better
    fit_nll = metrics.nll_logits(logits[:1000], y[:1000], t)
    for other in (t * 0.9, t * 1.1):
        assert metrics.nll_logits(logits[:1000], y[:1000], other) >= fit_nll


def test_temperature_matches_scipy_minimiser():
    from scipy.optimize import minimize_scalar

    logits, y = overconfident(1, n=300)
    res = minimize_scalar(lambda u: metrics.nll_logits(logits, y, np.exp(u)), bounds=(-3, 4), method="bounded",
                          options={"xatol": 1e-8})
    assert metrics.fit_temperature(logits, y) == pytest.approx(np.exp(res.x), rel=1e-3)


def test_temperature_of_separable_predictions_hits_the_lower_bound():
    y = np.array([0, 1, 2, 0])
    logits = np.eye(3)[y] * 5.0
    assert metrics.fit_temperature(logits, y, bounds=(0.05, 20)) == pytest.approx(0.05)


def test_temperature_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        metrics.fit_temperature(np.array([[np.nan, 0.0]]), np.array([0]))
    with pytest.raises(ValueError, match="no predictions"):
        metrics.fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int))


def test_ece_and_reliability_by_hand():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.45, 0.55]])
    y = np.array([0, 1, 0, 1])
    rel = metrics.reliability(probs, y, n_bins=5)  # bins (0,.2] (.2,.4] (.4,.6] (.6,.8] (.8,1]
    assert rel["count"] == [0, 0, 2, 1, 1]
    assert rel["confidence"][2] == pytest.approx(0.575) and rel["accuracy"][2] == 1.0
    assert rel["accuracy"][3] == 0.0 and rel["confidence"][0] is None
    expected = 2 / 4 * abs(1 - 0.575) + 1 / 4 * abs(0 - 0.8) + 1 / 4 * abs(1 - 0.9)
    assert metrics.ece(probs, y, n_bins=5) == pytest.approx(expected)


def test_ece_is_zero_when_confidence_equals_accuracy():
    # 10 tracks at confidence 0.7, 7 right
    probs = np.tile([0.7, 0.3], (10, 1))
    y = np.array([0] * 7 + [1] * 3)
    assert metrics.ece(probs, y) == pytest.approx(0.0, abs=1e-12)


def test_softmax_and_nll_agree():
    logits, y = overconfident(2, n=50)
    assert metrics.nll(metrics.softmax(logits, 3.0), y) == pytest.approx(metrics.nll_logits(logits, y, 3.0))


def test_import_needs_no_sklearn_scipy_or_torch():
    code = ("import sys, genrekit.metrics as m; import numpy as np;"
            "m.fit_temperature(np.eye(3) * 2, np.array([0, 1, 2]));"
            "bad = [x for x in ('sklearn', 'scipy', 'torch') if x in sys.modules]; print(bad); sys.exit(bool(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
