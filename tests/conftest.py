"""Shared test fixtures. Real audio comes from ../shared/data beside the repository."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GENREKIT_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GENREKIT_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "gtzan_labels.csv").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def fma_mp3(shared_data) -> Path:
    return shared_data / "fma_small" / "000" / "000002.mp3"


@pytest.fixture(scope="session")
def gtzan_wav(shared_data) -> Path:
    return shared_data / "gtzan" / "rock" / "rock.00001.wav"


@pytest.fixture
def write_wav(tmp_path):
    """Write a float waveform to a WAV file in tmp_path and return its path."""
    import soundfile as sf

    def write(name: str, y, sr: int = 22050, subtype: str = "PCM_16"):
        path = tmp_path / name
        sf.write(path, np.asarray(y), sr, subtype=subtype)
        return path

    return write


def tone(seconds: float, sr: int = 22050, freq: float = 440.0, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


TINY_LABELS = ["hiphop", "rock"]


@pytest.fixture(scope="session")
def tiny_cache(shared_data, tmp_path_factory):
    """A feature cache of 12 real GTZAN tracks (6 hiphop, 6 rock; 4 of them in the valid split)."""
    from genrekit.cache import prepare
    from genrekit.config import FeatureConfig
    from genrekit.datasets import Dataset, read_gtzan

    tracks = [t for t in read_gtzan(shared_data / "gtzan").tracks if t.label in TINY_LABELS]
    chosen = []
    for label in TINY_LABELS:
        mine = [t for t in tracks if t.label == label][:6]
        chosen += [t.__class__(**{**t.to_dict(), "split": "valid" if i < 2 else "train"}) for i, t in enumerate(mine)]
    out = tmp_path_factory.mktemp("cache") / "tiny"
    summary = prepare(Dataset("tiny-gtzan", str(shared_data), chosen), out, FeatureConfig(), workers=2, progress=False)
    assert summary.done == 12 and not summary.failed
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_cache, tmp_path_factory):
    """A small_cnn trained 1 + 1 epochs on the tiny cache (weights are barely trained; shapes are real)."""
    from genrekit.training import TrainConfig, train

    out = tmp_path_factory.mktemp("run")
    config = TrainConfig(cache=str(tiny_cache), out=str(out), backbone="small_cnn", frozen_epochs=1,
                         unfrozen_epochs=1, batch_size=16, progress=False)
    return train(config).best_checkpoint
