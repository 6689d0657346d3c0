"""A transfer recipe trained end to end on a tiny synthetic set: the genre head, the family detector
with the spread of the patches (and its per-patch fallback for short files), and what the model
file carries about the detector's training data."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf

from genrekit.datasets import nonmusic
from genrekit.training.transfer import TransferConfig, train_transfer
from tests.conftest import synthetic_track

SR = 16000


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    for genre in ("rock", "hiphop"):
        (root / "music" / genre).mkdir(parents=True)
        for i in range(10):
            sf.write(root / "music" / genre / f"{genre}{i}.wav", synthetic_track(genre, i, 6.0, SR), SR)
    made = nonmusic.generate_nonmusic(root / "nonmusic", 4, kinds=["noise", "tone", "click"], progress=False)
    config = TransferConfig(
        name="tiny", out=str(root / "tiny.onnx"), features_cache=str(root / "cache"), folds=2, cv_repeats=3,
        sources=[{"spec": f"folder:{root / 'music'}"}],
        head={"inputs": ["MSD_musicnn/penultimate"], "prior": None, "C": [0.1]},
        detector={"nonmusic": f"manifest:{made.manifest}", "classes": "families", "C": 0.3,
                  "pooling": "mean_std", "min_segments": 2})
    return root, train_transfer(config, progress=False)


def test_family_detector_is_written_with_its_training_data(trained):
    from genrekit.prediction import load_model

    root, result = trained
    model = load_model(result.model)
    assert model.detector.labels == ["music", "impulses", "steady", "tonal"]
    data = result.metadata["detector_metrics"]["training_data"]
    assert len(data["music_hashes"]) == 20 and len(data["nonmusic_hashes"]) == 12
    assert data["nonmusic_set"]["recipes"] == nonmusic.RECIPES_VERSION and len(data["fingerprint"]) == 16
    assert result.metadata["detector_metrics"]["classes"] == "families"
    json.dumps(result.metadata)  # all of it goes into the model file

    music = model.predict_file(root / "music" / "rock" / "rock0.wav").music_probability
    noise = model.predict_file(root / "nonmusic" / "noise" / "noise_0000.wav").music_probability
    assert 0.0 <= noise < music <= 1.0 and np.isfinite(model.not_music_threshold)


def test_cv_repeats_report_every_split_and_the_first_keeps_its_cis(trained):
    _, result = trained
    cv = result.metadata["cv_metrics"]
    rep = cv["repeated"]
    assert cv["cv_repeats"] == rep["splits"] == 3 and rep["seeds"] == [0, 1, 2]
    assert len(rep["balanced_accuracy_per_split"]) == len(rep["macro_f1_per_split"]) == 3
    assert rep["balanced_accuracy_per_split"][0] == pytest.approx(cv["balanced_accuracy"], abs=1e-4)
    assert rep["balanced_accuracy_mean"] == pytest.approx(np.mean(rep["balanced_accuracy_per_split"]), abs=1e-4)
    assert rep["balanced_accuracy_sd"] == pytest.approx(np.std(rep["balanced_accuracy_per_split"]), abs=1e-4)
    assert sum(rep["C_chosen"].values()) == 3 * 2  # every fold of every split
    assert set(rep["per_class"]) == {"hiphop", "rock"} and rep["per_class"]["rock"]["support"] == 10
    recall = np.mean([m["recall"] for m in rep["per_class"].values()])
    assert recall == pytest.approx(rep["balanced_accuracy_mean"], abs=1e-4)  # same tracks in every split


def test_short_files_get_the_per_patch_detector(trained):
    from genrekit.metrics import softmax
    from genrekit.prediction import load_model

    _, result = trained
    model = load_model(result.model)
    short = model.short_detector
    assert model.detector.pooling == "mean_std" and short.head.pooling == "mean" and short.below_segments == 2
    assert model.abstention["short_files"] == {"below_segments": 2, "not_music_threshold": short.threshold}
    metrics = result.metadata["detector_metrics"]
    assert metrics["min_segments"] == 2 and {"short", "all_lengths"} <= set(metrics)

    rng = np.random.default_rng(0)
    key = "MSD_musicnn/penultimate"
    one, two = ({key: rng.normal(size=(n, 200))} for n in (1, 2))
    for outputs, head in ((one, short.head), (two, model.detector)):
        expected = softmax(head.logits(outputs))[head.labels.index("music")]
        assert model.music_probability(outputs) == pytest.approx(expected)
    assert model.music_probability(one) != pytest.approx(softmax(model.detector.logits(one))[0])

    model.short_detector = dataclasses.replace(short, threshold=0.0)  # each length is read with its own threshold
    model.not_music_threshold = 1.01
    assert model.decide("one", one, 3.0, 0.0).abstain == "not_music"
    assert model.decide("two", two, 6.0, 0.0).abstain != "not_music"


def test_a_model_with_a_bad_short_detector_is_refused(trained, tmp_path):
    from genrekit.errors import CheckpointError
    from genrekit.prediction import ShortDetector

    _, result = trained
    good = result.metadata["short_detector"]
    assert ShortDetector.from_dict(good, "m.onnx").below_segments == 2
    for bad in ({**good, "below_segments": 1}, {**good, "head": result.metadata["detector"]},
                {k: v for k, v in good.items() if k != "threshold"}):
        with pytest.raises(CheckpointError, match="m.onnx: .*short_detector"):
            ShortDetector.from_dict(bad, "m.onnx")


def test_file_hash_is_read_once_and_again_when_the_file_changes(tmp_path, monkeypatch):
    import os

    from genrekit.cache import featurize
    from genrekit.training import transfer

    path = tmp_path / "a.wav"
    path.write_bytes(b"abc")
    reads = []
    real = featurize.file_sha256
    monkeypatch.setattr(featurize, "file_sha256", lambda p: reads.append(p) or real(p))
    first = transfer.file_sha256(path)
    assert transfer.file_sha256(str(path)) == first == real(path) and len(reads) == 1
    path.write_bytes(b"abd")
    os.utime(path, ns=(1, 10**9))  # an edit moves the modification time
    assert transfer.file_sha256(path) == real(path) != first and len(reads) == 2


def test_a_lossless_copy_of_a_training_track_is_refused_as_test_data(trained, tmp_path):
    # Another name, another container, the same samples: the file's hash differs, its decoded audio's does not.
    from genrekit.errors import LeakageError
    from genrekit.evaluation import evaluate

    root, result = trained
    assert len(result.metadata["training_data"]["train_audio_hashes"]) == 20
    for genre in ("rock", "hiphop"):
        (tmp_path / genre).mkdir()
        y, sr = sf.read(root / "music" / genre / f"{genre}3.wav", dtype="int16")
        sf.write(tmp_path / genre / f"copy of {genre}.flac", y, sr)
    with pytest.raises(LeakageError, match="2 test file.*same content hash"):
        evaluate(result.model, f"folder:{tmp_path}", split="all", n_boot=10)
