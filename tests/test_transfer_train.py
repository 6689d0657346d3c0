"""A transfer recipe trained end to end on a tiny synthetic set: the genre head, the family detector
and what the model file carries about the detector's training data."""
from __future__ import annotations

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
        name="tiny", out=str(root / "tiny.onnx"), features_cache=str(root / "cache"), folds=2,
        sources=[{"spec": f"folder:{root / 'music'}"}],
        head={"inputs": ["MSD_musicnn/penultimate"], "prior": None, "C": [0.1]},
        detector={"nonmusic": f"manifest:{made.manifest}", "classes": "families", "C": 0.3})
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
