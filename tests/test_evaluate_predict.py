"""Evaluation metrics, voting, the leakage guard, prediction on real files, ONNX export."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from genrekit.errors import LeakageError
from genrekit.evaluation import bootstrap_ci, classification_metrics, evaluate, write_report
from genrekit.voting import majority_vote, mean_vote

# ---------------------------------------------------------------- metrics and voting


def test_metrics_against_hand_computed_example_with_a_class_never_predicted():
    labels = ["a", "b", "c"]
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 1, 1]  # class c is never predicted
    m = classification_metrics(y_true, y_pred, labels)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # a: P=2/2, R=2/3; b: P=2/4, R=2/2; c: P=0 (never predicted), R=0
    assert m["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert m["per_class"]["b"]["precision"] == pytest.approx(0.5) and m["per_class"]["b"]["f1"] == pytest.approx(2 / 3)
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["macro_precision"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert m["macro_recall"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 0) / 3)
    assert m["weighted_f1"] == pytest.approx((3 * 0.8 + 2 * 2 / 3 + 0) / 6)
    assert m["confusion"] == [[2, 1, 0], [0, 2, 0], [0, 1, 0]]


def test_mean_and_majority_vote_on_crafted_segments():
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.45, 0.55],   # track 0: mean says a, majority says b
                      [0.2, 0.8], [0.3, 0.7]])                   # track 1: b either way
    track = np.array([0, 0, 0, 1, 1])
    assert mean_vote(probs, track, 2).argmax(1).tolist() == [0, 1]
    assert majority_vote(probs, track, 2).argmax(1).tolist() == [1, 1]
    assert mean_vote(probs, track, 2)[0] == pytest.approx([1.75 / 3, 1.25 / 3])
    # a 1-1 tie is broken by the mean probability
    tie = majority_vote(np.array([[0.9, 0.1], [0.4, 0.6]]), np.array([0, 0]), 1)
    assert tie.argmax(1).tolist() == [0]


def test_bootstrap_ci_brackets_the_accuracy_and_narrows_with_more_tracks():
    small = bootstrap_ci(np.r_[np.ones(6), np.zeros(4)])
    large = bootstrap_ci(np.r_[np.ones(600), np.zeros(400)])
    assert small[0] < 0.6 < small[1] and large[0] < 0.6 < large[1]
    assert (large[1] - large[0]) < (small[1] - small[0]) / 5


# ---------------------------------------------------------------- evaluate


def test_leakage_guard_refuses_training_tracks(tiny_checkpoint, tiny_cache):
    with pytest.raises(LeakageError, match="training data"):
        evaluate(tiny_checkpoint, str(tiny_cache), split="train", n_boot=50)
    report = evaluate(tiny_checkpoint, str(tiny_cache), split="train", allow_leak=True, n_boot=50)
    assert report["leaky"] and report["leakage_problems"]


def test_leakage_guard_refuses_shared_artists(tiny_checkpoint, tiny_cache, monkeypatch):
    import genrekit.prediction as prediction

    real = prediction.load_model

    def with_artist(*args, **kwargs):
        model = real(*args, **kwargs)
        model.payload["training_data"]["train_artists"] = ["Artist X"]
        return model

    monkeypatch.setattr("genrekit.prediction.load_model", with_artist)
    import genrekit.cache as cache_module

    original = cache_module.FeatureCache._read_shards

    def artist_tracks(self):
        tracks, failures = original(self)
        tracks["artist"] = "Artist X"
        return tracks, failures

    monkeypatch.setattr(cache_module.FeatureCache, "_read_shards", artist_tracks)
    with pytest.raises(LeakageError, match="artist"):
        evaluate(tiny_checkpoint, str(tiny_cache), split="valid", n_boot=50)


def test_evaluate_report_keys_files_and_consistency(tiny_checkpoint, tiny_cache, tmp_path):
    report = evaluate(tiny_checkpoint, str(tiny_cache), split="valid", n_boot=200)
    for key in ("track_accuracy", "track_accuracy_ci", "segment_accuracy", "macro_f1", "weighted_f1", "per_class", "n_tracks"):
        assert key in report
    assert report["n_tracks"] == 4 and report["n_segments"] == 40 and not report["leaky"]
    assert report["model_selection_overlap"] == 4  # the valid split chose the epoch: the report says so
    correct = [p["label"] == p["predicted"] for p in report["predictions"]]
    assert report["track_accuracy"] == pytest.approx(np.mean(correct))
    lo, hi = report["track_accuracy_ci"]
    assert lo <= report["track_accuracy"] <= hi
    files = write_report(report, tmp_path)
    for key in ("json", "markdown", "confusion_counts", "confusion_normalised"):
        assert (tmp_path / files[key].split("/")[-1]).stat().st_size > 0
    assert json.loads((tmp_path / "report.json").read_text())["n_tracks"] == 4


def test_cli_evaluate_json(tiny_checkpoint, tiny_cache, capsys):
    from genrekit.cli import main

    assert main(["evaluate", str(tiny_checkpoint), str(tiny_cache), "--split", "valid", "--format", "json",
                 "--bootstrap", "100"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_tracks"] == 4 and 0 <= report["track_accuracy"] <= 1
    assert main(["evaluate", str(tiny_checkpoint), str(tiny_cache), "--split", "train"]) == 1  # leakage refused


# ---------------------------------------------------------------- predict


@pytest.fixture(scope="module")
def classifier(tiny_checkpoint):
    from genrekit.prediction import load_model

    return load_model(tiny_checkpoint)


def test_predict_real_files_in_each_format(classifier, fma_mp3, gtzan_wav, tmp_path):
    y, sr = sf.read(gtzan_wav, dtype="float32")
    flac, ogg = tmp_path / "clip.flac", tmp_path / "clip.ogg"
    sf.write(flac, y, sr)
    sf.write(ogg, y, sr, format="OGG", subtype="VORBIS")
    wav_result = classifier.predict_file(gtzan_wav)
    for path in (fma_mp3, gtzan_wav, flac, ogg):
        result = classifier.predict_file(path)
        assert result.genre in classifier.labels
        assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert len(result.segments) == 10 and sum(result.votes().values()) == 10
    # lossless FLAC gives the WAV's answer
    assert classifier.predict_file(flac).probabilities == pytest.approx(wav_result.probabilities, abs=1e-5)


def test_predict_long_file_windows_over_all_of_it(classifier, write_wav):
    from tests.conftest import tone

    rng = np.random.default_rng(0)
    y = np.concatenate([tone(60, freq=f) + 0.05 * rng.standard_normal(60 * 22050).astype(np.float32) for f in (220, 440, 880, 330, 660, 550, 990, 110, 770, 1100)])
    path = write_wav("ten_minutes.wav", y)
    result = classifier.predict_file(path)
    assert len(result.segments) == 200 and result.duration == pytest.approx(600, abs=0.1)
    assert 597 < result.segments[-1]["end"] <= 600  # segments of 129 frames = 2.995 s; the short tail is dropped
    capped = classifier.predict_file(path, max_duration=60)
    assert len(capped.segments) == 20


def test_predict_folder_with_a_corrupt_file_goes_on_and_fails(tiny_checkpoint, fma_mp3, gtzan_wav, tmp_path, capsys):
    import shutil

    from genrekit.cli import main

    folder = tmp_path / "library"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(fma_mp3, folder / "good.mp3")
    shutil.copy(gtzan_wav, folder / "sub" / "good.wav")
    (folder / "broken.mp3").write_bytes(fma_mp3.read_bytes()[:1500] + b"\x00garbage" * 200)
    (folder / "notes.txt").write_text("not audio, and not an audio extension: ignored")
    status = main(["predict", str(folder), "--model", str(tiny_checkpoint), "--format", "json", "--quiet"])
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    assert status == 1
    assert len(results) == 3
    by_name = {r["path"].split("/")[-1]: r for r in results}
    assert "error" in by_name["broken.mp3"] and "genre" not in by_name["broken.mp3"]
    for name in ("good.mp3", "good.wav"):
        r = by_name[name]
        assert set(r) >= {"path", "genre", "probabilities", "segments"} and r["genre"] in r["probabilities"]
    assert "broken.mp3" in captured.err and "1 of 3" in captured.err


def test_predict_bad_inputs_are_reported(classifier, write_wav, tmp_path):
    from genrekit.errors import AudioError, SilentAudioError, TooShortError

    with pytest.raises(SilentAudioError):
        classifier.predict_file(write_wav("silence.wav", np.zeros(22050 * 5, np.float32)))
    with pytest.raises(TooShortError):
        classifier.predict_file(write_wav("short.wav", np.full(5000, 0.1, np.float32)))
    text = tmp_path / "text.mp3"
    text.write_text("hello")
    with pytest.raises(AudioError, match="text.mp3"):
        classifier.predict_file(text)


def test_python_api_predict_and_reuse(tiny_checkpoint, fma_mp3, gtzan_wav):
    import genrekit

    model = genrekit.load_model(tiny_checkpoint)
    one = genrekit.predict(str(fma_mp3), model=model)
    many = genrekit.predict([fma_mp3, gtzan_wav], model=model)
    assert one.genre == many[0].genre and len(many) == 2
    assert one.to_dict()["probabilities"][one.genre] == pytest.approx(one.confidence, abs=1e-6)


def test_onnx_export_agrees_with_torch(tiny_checkpoint, fma_mp3, tmp_path):
    from genrekit.cli import main
    from genrekit.prediction import load_model

    onnx_path = tmp_path / "model.onnx"
    assert main(["export", str(tiny_checkpoint), "--format", "onnx", "--out", str(onnx_path)]) == 0
    torch_model, onnx_model = load_model(tiny_checkpoint, runtime="torch"), load_model(onnx_path)
    assert onnx_model.labels == torch_model.labels and onnx_model.runtime == "onnx"
    assert torch_model.runtime == "torch"
    a, _ = torch_model.segment_probabilities(fma_mp3)
    b, _ = onnx_model.segment_probabilities(fma_mp3)
    assert np.abs(a - b).max() <= 1e-4
    c, _ = load_model(tiny_checkpoint, runtime="onnx").segment_probabilities(fma_mp3)
    assert np.abs(a - c).max() <= 1e-4


def test_auto_runtime_is_onnx_on_cpu_and_agrees_with_torch_for_the_shipped_model(fma_mp3):
    from genrekit.prediction import load_model

    auto, eager = load_model(), load_model(runtime="torch")
    assert auto.runtime == "onnx" and eager.runtime == "torch"
    a, _ = auto.segment_probabilities(fma_mp3)
    b, _ = eager.segment_probabilities(fma_mp3)
    assert a.shape == b.shape and np.abs(a - b).max() <= 1e-4
    with pytest.raises(ValueError, match="runtime"):
        load_model(runtime="tensorflow")


def test_shipped_model_predicts_offline(fma_mp3, capsys):
    from genrekit.cli import main
    from genrekit.datasets import GTZAN_GENRES
    from genrekit.prediction import load_model

    model = load_model()
    assert model.labels == list(GTZAN_GENRES)
    card = model.card
    assert card["training_data"]["train"]["n_tracks"] > 0 and card["feature_config"]["sr"] > 0
    assert main(["predict", str(fma_mp3), "--format", "json"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert result["genre"] in GTZAN_GENRES
