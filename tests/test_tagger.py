"""The shipped musicnn taggers in ONNX: parity with the PyTorch port, the user API, `musicnn-tags` and `embed`.

Synthetic audio only, so these run in any clone.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genrekit import tagger
from genrekit.cli import main
from genrekit.config import MUSICNN_FEATURES
from genrekit.errors import ConfigError, SilentAudioError, TooShortError

REPO = Path(__file__).resolve().parents[1]


def chord(seconds: float, sr: int = 16000, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    y = sum(np.sign(np.sin(2 * np.pi * f * t)) for f in (220, 277, 330)) / 3
    noise = np.random.default_rng(0).standard_normal(len(t)) * 0.02
    return (amplitude * y + noise).astype(np.float32)


@pytest.mark.parametrize("name", ["msd", "mtt"])
def test_onnx_tagger_matches_the_pytorch_port(name):
    torch = pytest.importorskip("torch")
    from genrekit.features import waveform_segments
    from genrekit.models.musicnn import load_musicnn

    patches = waveform_segments(chord(7.0), MUSICNN_FEATURES)
    model = load_musicnn(name)
    with torch.no_grad():
        x = torch.as_tensor(patches)
        feats = model.features(x)
        expected = {"tags": model.predict(x), "penultimate": model.embed(x),
                    "max_pool": model.backend.pool(feats)[0], "mean_pool": model.backend.pool(feats)[1]}
    network = tagger.load_tagger(name)
    got = network.run(patches)
    for kind, value in expected.items():
        # float32 kernels differ by CPU (AVX-512 / AVX2): 1e-4 absolute plus 1e-5 relative
        np.testing.assert_allclose(got[f"{tagger.TAGGERS[name]}/{kind}"], value.numpy(), rtol=1e-5, atol=1e-4,
                                   err_msg=kind)
    assert tagger.tags(name) == model.tags


def test_taggram_embeddings_and_timestamps(write_wav):
    y = chord(7.0)
    path = write_wav("chord.wav", y, sr=16000, subtype="FLOAT")
    probs, names, times = tagger.taggram(path, "mtt")
    assert probs.shape == (2, 50) and names[0] == "guitar" and ((probs >= 0) & (probs <= 1)).all()
    np.testing.assert_allclose(times, [0.0, 187 * 256 / 16000])
    from_wave, _, _ = tagger.taggram(y, "mtt", sr=16000)
    np.testing.assert_allclose(probs, from_wave, atol=1e-6)  # a file and its waveform agree
    emb, times = tagger.embeddings(path, "msd", "pool")
    assert emb.shape == (2, 1506) and emb.dtype == np.float32 and len(times) == 2
    top = tagger.top_tags(path, k=3)
    assert len(top) == 3 and [p for _, p in top] == sorted((p for _, p in top), reverse=True)


def test_one_audio_policy_for_tags_and_embeddings(write_wav):
    with pytest.raises(TooShortError):
        tagger.taggram(write_wav("short.wav", chord(0.3), sr=16000), "mtt")
    with pytest.raises(SilentAudioError):
        tagger.embeddings(write_wav("silent.wav", np.zeros(48000, np.float32), sr=16000))
    with pytest.raises(ConfigError, match="sample rate"):
        tagger.taggram(chord(4.0))
    with pytest.raises(ConfigError, match="unknown musicnn tagger"):
        tagger.taggram(chord(4.0), "imagenet", sr=16000)
    with pytest.raises(ConfigError, match="layer"):
        tagger.embeddings(chord(4.0), layer="head", sr=16000)


def test_the_tagger_api_imports_no_torch():
    code = ("import sys, numpy as np, genrekit.tagger as t, genrekit.cli.musicnn_tags, genrekit.cli.embed\n"
            "y = np.sin(np.arange(48000) / 16000 * 2 * np.pi * 440).astype('float32') * 0.3\n"
            "t.taggram(y, 'msd', sr=16000)\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


def test_cli_musicnn_tags_and_the_old_name(write_wav, tmp_path, capsys):
    good = write_wav("tone.wav", chord(4.0), sr=16000)
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"not audio at all")
    assert main(["musicnn-tags", str(good), "--top", "3", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["tagger"] == "MTT_musicnn" and len(doc["files"][0]["tags"]) == 3
    probs = [t["probability"] for t in doc["files"][0]["tags"]]
    assert probs == sorted(probs, reverse=True)
    assert main(["tags", str(bad), str(good), "--model", "musicnn-msd"]) == 1  # deprecated spellings still work
    captured = capsys.readouterr()
    assert "deprecated" in captured.err and str(bad) in captured.err and "not an audio file" in captured.err
    assert str(good) in captured.out and "(1 x 3 s)" in captured.out


def test_cli_embed_writes_timestamps_and_never_mixes_settings(write_wav, tmp_path, capsys):
    folder = tmp_path / "music"
    (folder / "sub").mkdir(parents=True)
    write_wav("music/sub/a.wav", chord(7.0, amplitude=0.2), sr=16000)
    write_wav("music/b.wav", chord(3.5, amplitude=0.5), sr=16000)
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    out = tmp_path / "emb"
    assert main(["embed", str(folder), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "broken.wav" in err and "1 failed" in err
    with np.load(out / "sub" / "a.npz") as a:
        assert a["embedding"].shape == (2, 200) and a["embedding"].dtype == np.float32
        assert len(a["timestamps"]) == 2 and str(a["tagger"]) == "MSD_musicnn"
    stale = (out / "b.npz").read_bytes()
    assert main(["embed", str(folder / "b.wav"), "--out", str(out)]) == 0
    assert (out / "b.npz").read_bytes() == stale and "1 skipped" in capsys.readouterr().err
    assert main(["embed", str(folder / "b.wav"), "--out", str(out), "--layer", "pool"]) == 1
    assert "other settings" in capsys.readouterr().err and (out / "b.npz").read_bytes() == stale
    assert main(["embed", str(folder / "b.wav"), "--out", str(out), "--overwrite", "--layer", "pool"]) == 0
    with np.load(out / "b.npz") as b:
        assert b["embedding"].shape == (1, 1506) and str(b["layer"]) == "pool"
    file_out = tmp_path / "file.txt"
    file_out.write_text("x")
    assert main(["embed", str(folder / "b.wav"), "--out", str(file_out)]) == 1
    err = capsys.readouterr().err
    assert "must be a folder" in err and "Traceback" not in err
