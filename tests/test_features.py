"""Features: parity with librosa and with the torch transform on real audio, segments,
equal parts (the seed's ``stft_db``), streaming, resizing, settings.

The reference is what the features.py docstring describes: ``librosa.feature.melspectrogram``
(periodic Hann, centred frames padded as ``pad_mode``, Slaney mel, power 2) of the whole
signal, ``power_to_db(ref=1, amin=1e-10, top_db=None)`` (or musicnn's
``log10(1 + 10000 S)``), cut into segments of ``segment_frames`` frames every
``segment_hop_frames``, and each segment floored at its own max - ``top_db``. For the
seed: ``librosa.stft`` + ``amplitude_to_db(abs(S), ref=np.max)`` cut into 10 equal parts.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genrekit.audio import load_audio
from genrekit.config import MUSICNN_FEATURES, SEED_FEATURES, FeatureConfig
from genrekit.errors import ConfigError
from genrekit.features import (
    FeatureExtractor,
    apply_top_db,
    hz_to_mel,
    iter_segments,
    mel_filterbank,
    mel_to_hz,
    n_segments,
    resize_images,
    scale_to_level,
    segment_starts,
    waveform_segments,
)

librosa = pytest.importorskip("librosa")

REPO = Path(__file__).resolve().parents[1]
PARITY_DB = 0.05  # issue target; reached with numpy: about 8e-5 dB (logmel_db), 1.3e-6 (musicnn log units)

# Settings that differ in every field a segment depends on; the last two cut segments
# with gaps between them and with overlap.
CONFIGS = [
    FeatureConfig(),
    MUSICNN_FEATURES,
    FeatureConfig(pad_mode="reflect", fmin=30.0, fmax=8000.0, n_mels=64),
    FeatureConfig(sr=8000, n_fft=300, hop_length=128, n_mels=20, segment_seconds=0.5,
                  segment_hop_seconds=0.7, pad_mode="reflect"),
    FeatureConfig(sr=8000, n_fft=256, hop_length=100, n_mels=16, segment_seconds=0.3,
                  segment_hop_seconds=0.1, frontend="musicnn", top_db=None),
    FeatureConfig(sr=8000, n_fft=512, hop_length=128, n_mels=16, segment_seconds=0.016,
                  segment_hop_seconds=0.05, pad_mode="reflect", frontend="musicnn", top_db=None),
]
IDS = ["logmel", "musicnn", "reflect-64", "gaps", "overlap", "one-frame"]


def librosa_segments(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """The reference: librosa on the whole signal, then cut and floored per segment."""
    power = librosa.feature.melspectrogram(y=y, sr=cfg.sr, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                                           n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax, center=True,
                                           pad_mode=cfg.pad_mode, power=2.0)
    return librosa_segments_from(power, cfg)


def librosa_segments_from(power: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Mel power ``(n_mels, frames)`` → log scale, cut into segments, floored per segment."""
    if cfg.frontend == "musicnn":
        logs = np.log10(10000.0 * power + 1.0)
    else:
        logs = librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=None)
    length, hop = cfg.segment_frames, cfg.segment_hop_frames
    count = 1 + (logs.shape[1] - length) // hop
    segments = np.stack([logs[:, k * hop: k * hop + length] for k in range(count)])
    if cfg.frontend == "logmel_db" and cfg.top_db is not None:
        segments = np.maximum(segments, segments.max(axis=(1, 2), keepdims=True) - cfg.top_db)
    return segments


# --- mel filters -----------------------------------------------------------------------

@pytest.mark.parametrize("sr, n_fft, n_mels, fmin, fmax", [
    (22050, 2048, 128, 0.0, None), (16000, 512, 96, 0.0, None), (22050, 2048, 64, 30.0, 8000.0),
    (44100, 4096, 40, 100.0, 16000.0), (8000, 256, 20, 0.0, 3000.0)])
def test_mel_filterbank_equals_librosa(sr, n_fft, n_mels, fmin, fmax):
    ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    theirs = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    assert ours.shape == theirs.shape == (n_mels, 1 + n_fft // 2)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-9)


def test_mel_scale_equals_librosa():
    hz = np.array([0.0, 20.0, 440.0, 999.9, 1000.0, 1000.1, 4000.0, 11025.0])
    np.testing.assert_allclose(hz_to_mel(hz), librosa.hz_to_mel(hz), rtol=1e-12)
    mels = np.linspace(0, 45, 17)
    np.testing.assert_allclose(mel_to_hz(mels), librosa.mel_to_hz(mels), rtol=1e-12)
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(hz)), hz, rtol=1e-12, atol=1e-9)


# --- parity on real audio --------------------------------------------------------------

PARITY_FILES = ["gtzan/rock/rock.00001.wav", "gtzan/jazz/jazz.00002.wav", "fma_small/000/000002.mp3",
                "fma_small/000/000140.mp3", "gtzan_16k/blues/blues.00040.wav"]


@pytest.fixture(scope="module")
def real_waveforms(shared_data):
    """Decoded once per rate: {(relpath, sr): waveform}."""
    out = {}
    for rel in PARITY_FILES:
        path = shared_data / rel
        if path.exists():
            for sr in (22050, 16000):
                out[rel, sr] = load_audio(path, sr=sr)
    if len(out) < 6:
        pytest.skip("parity files missing from the data set")
    return out


@pytest.mark.parametrize("cfg", CONFIGS[:3], ids=["logmel", "musicnn", "reflect-64-bands"])
def test_parity_with_librosa_on_real_audio(real_waveforms, cfg):
    worst = 0.0
    for (rel, sr), y in real_waveforms.items():
        if sr != cfg.sr:
            continue
        ours = waveform_segments(y, cfg)
        theirs = librosa_segments(y, cfg)
        assert ours.shape == theirs.shape == (n_segments(len(y), cfg), *cfg.segment_shape), rel
        worst = max(worst, float(np.abs(ours - theirs).max()))
    print(f"max |delta| vs librosa ({cfg.frontend}, {cfg.pad_mode}): {worst:.2e}")
    assert worst <= PARITY_DB


def test_parity_is_not_trivial(real_waveforms):
    """The comparison can fail: other mel settings or a shifted signal give large errors."""
    y = real_waveforms["gtzan/rock/rock.00001.wav", 22050]
    ours = waveform_segments(y, FeatureConfig())
    assert np.abs(ours - librosa_segments(y, FeatureConfig(fmin=20.0))).max() > 1.0
    assert np.abs(ours - librosa_segments(np.roll(y, 1), FeatureConfig())).max() > 1.0
    assert np.abs(ours - librosa_segments(y, FeatureConfig(pad_mode="reflect"))).max() > 1.0


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_parity_with_librosa_on_noise(cfg):
    rng = np.random.default_rng(7)
    y = (0.1 * rng.standard_normal(int(7.3 * cfg.sr))).astype(np.float32)
    ours = waveform_segments(y, cfg)
    theirs = librosa_segments(y, cfg)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= 1e-3


def test_top_db_is_per_segment():
    cfg = FeatureConfig()
    loud, quiet = int(2.5 * cfg.sr), int(3.5 * cfg.sr)  # the 2nd segment's frames see only the quiet part
    y = np.concatenate([0.5 * np.sin(np.arange(loud) * 0.1), 1e-2 * np.sin(np.arange(quiet) * 0.1)])
    segments = waveform_segments(y.astype(np.float32), cfg)
    assert len(segments) == 2
    for seg in segments:  # each floored at its own peak - 80 dB
        assert seg.min() == pytest.approx(seg.max() - 80.0, abs=1e-3)
    assert segments[0].max() - segments[1].max() > 20
    no_floor = dataclasses.replace(cfg, top_db=None)
    assert waveform_segments(y.astype(np.float32), no_floor).min() < segments.min() - 1


# --- segments --------------------------------------------------------------------------

@pytest.mark.parametrize("seconds, expected", [(30.0, 10), (29.5, 9), (2.0, 1), (3.0, 1), (6.0, 2),
                                               (30.4, 10), (0.01, 1)])
def test_segment_counts(seconds, expected):
    cfg = FeatureConfig()
    n = int(seconds * cfg.sr)
    assert n_segments(n, cfg) == expected
    # definition: T = 1 + n // hop centred frames; segments of L frames every H while they fit
    frames = 1 + n // cfg.hop_length
    assert expected == max(1, 1 + (frames - cfg.segment_frames) // cfg.segment_hop_frames)
    y = np.random.default_rng(0).standard_normal(n).astype(np.float32) * 0.1
    assert waveform_segments(y, cfg).shape == (expected, 128, 129)


def test_segment_boundary_is_exact():
    """The 2nd segment needs frame 257, i.e. 256 * 512 samples: one sample fewer gives one segment."""
    cfg = FeatureConfig()
    needed = (2 * cfg.segment_frames - 1) * cfg.hop_length
    assert n_segments(needed, cfg) == 2 and n_segments(needed - 1, cfg) == 1


def test_segment_counts_with_other_hops():
    overlap = FeatureConfig(segment_hop_seconds=1.5)
    gaps = FeatureConfig(segment_hop_seconds=6.0)
    n = 30 * 22050
    assert overlap.segment_hop_frames == 64
    assert n_segments(n, overlap) == 1 + (1292 - 129) // 64
    assert n_segments(n, gaps) == 1 + (1292 - 129) // 258
    np.testing.assert_allclose(segment_starts(n, FeatureConfig()), np.arange(10) * 129 * 512 / 22050)


def test_short_clip_is_padded_with_silence_to_one_segment():
    cfg = FeatureConfig()
    y = (0.3 * np.sin(np.arange(2 * cfg.sr) * 0.05)).astype(np.float32)
    seg = waveform_segments(y, cfg)[0]
    last = (len(y) - 1 + cfg.n_fft // 2) // cfg.hop_length  # the last frame that sees the clip
    reference = librosa_segments(np.concatenate([y, np.zeros(cfg.segment_frames * cfg.hop_length, np.float32)]),
                                 cfg)[0]
    np.testing.assert_allclose(seg, reference, atol=1e-3)  # the same as the clip followed by silence
    assert np.all(seg[:, last + 1:] == seg.min())  # silence: floored at max - top_db
    assert np.all(seg[:, : last - 1].max(axis=0) > seg.min() + 20)


# --- streaming -------------------------------------------------------------------------

def _random_blocks(y, rng, max_cuts=30):
    cuts = np.sort(rng.integers(0, len(y), size=int(rng.integers(0, max_cuts))))
    return np.split(y, cuts)


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_streaming_in_blocks_equals_whole(cfg):
    """Any cut into blocks (including empty and 1-sample blocks, and blocks shorter than
    the half window that reflect padding needs) and any batch size give the same segments."""
    rng = np.random.default_rng(3)
    for trial in range(6):
        n = int(rng.integers(cfg.n_fft, 4 * cfg.sr))
        y = (0.1 * rng.standard_normal(n)).astype(np.float32)
        whole = waveform_segments(y, cfg)
        blocks = _random_blocks(y, rng)
        if trial == 0:  # tiny blocks at the start and end, where reflect padding reads
            blocks = [y[:1], y[1:3], y[3:100], y[100:-5], y[-5:-1], y[-1:], y[:0]]
        parts = list(iter_segments(blocks, cfg, batch_segments=int(rng.integers(1, 5))))
        streamed = np.concatenate(parts)
        assert streamed.shape == whole.shape, (trial, n, [len(b) for b in blocks])
        # the same frames; only BLAS's summation order can change with the batch's shape
        np.testing.assert_allclose(streamed, whole, atol=1e-4, rtol=0)


@pytest.mark.parametrize("cfg", [FeatureConfig(), MUSICNN_FEATURES], ids=["logmel", "musicnn"])
def test_streaming_real_audio_matches_librosa(real_waveforms, cfg):
    """Real audio streamed in odd-sized blocks still matches librosa (reflect at both ends)."""
    y = real_waveforms["fma_small/000/000002.mp3", cfg.sr]
    blocks = [y[i: i + 12345] for i in range(0, len(y), 12345)]
    streamed = np.concatenate(list(iter_segments(blocks, cfg, batch_segments=4)))
    assert np.abs(streamed - librosa_segments(y, cfg)).max() <= PARITY_DB


@pytest.mark.filterwarnings("ignore:n_fft=.* is too large")
@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
@pytest.mark.parametrize("n", [1, 2, 100, 256, 257, 600])
def test_signals_shorter_than_a_window_match_librosa(pad_mode, n):
    """Down to one sample, the frames that exist in librosa's output are the same
    (reflection of a signal shorter than half a window repeats, as numpy.pad does)."""
    cfg = FeatureConfig(sr=8000, n_fft=512, hop_length=128, n_mels=16, segment_seconds=0.1,
                        pad_mode=pad_mode, frontend="musicnn", top_db=None)
    y = (0.1 * np.random.default_rng(n).standard_normal(n)).astype(np.float32)
    power = librosa.feature.melspectrogram(y=y, sr=cfg.sr, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                                           n_mels=cfg.n_mels, center=True, pad_mode=pad_mode)
    theirs = np.log10(10000.0 * power + 1.0)
    for blocks in ([y], [y[:1], y[1:]], [y[i: i + 7] for i in range(0, n, 7)]):
        ours = np.concatenate(list(iter_segments(blocks, cfg)))
        assert ours.shape == (1, 16, cfg.segment_frames)
        np.testing.assert_allclose(ours[0, :, : theirs.shape[1]], theirs, atol=1e-4)
        assert np.all(ours[0, :, theirs.shape[1] + 4:] == 0.0)  # then silence: log10(1 + 0)


def test_streaming_empty_input():
    cfg = FeatureConfig()
    assert list(iter_segments([], cfg)) == []
    assert list(iter_segments([np.zeros(0, np.float32)], cfg)) == []
    assert waveform_segments(np.zeros(0, np.float32), cfg).shape == (0, 128, 129)


def test_streaming_memory_is_bounded():
    """A long stream (here 4 min at 8 kHz) comes out in batches as it goes in: the
    generator never holds more than a batch's worth of segments plus one block."""
    cfg = FeatureConfig(sr=8000, n_fft=256, hop_length=128, n_mels=16)
    block = np.random.default_rng(0).standard_normal(30 * cfg.sr).astype(np.float32) * 0.1
    fed = []

    def blocks():
        for _ in range(8):
            fed.append(len(block))
            yield block

    sizes = []
    for batch in iter_segments(blocks(), cfg, batch_segments=10):
        sizes.append(len(batch))
        # segments out so far never lag the input by more than a batch plus a block
        assert sum(fed) - sum(sizes) * 3 * cfg.sr <= 10 * 3 * cfg.sr + len(block) + cfg.n_fft
    assert sum(sizes) == n_segments(8 * len(block), cfg)
    assert max(sizes) == 10


# --- the numpy extractor ---------------------------------------------------------------

def test_extractor_batch_equals_items():
    cfg = FeatureConfig()
    extractor = FeatureExtractor(cfg)
    x = np.random.default_rng(1).standard_normal((4, 22050 + 1536)).astype(np.float32)
    batch = extractor.frames_to_features(x)
    assert batch.shape == (4, 128, 1 + (x.shape[1] - 2048) // 512) and batch.dtype == np.float32
    for i in range(4):
        np.testing.assert_allclose(batch[i], extractor.frames_to_features(x[i: i + 1])[0], atol=1e-4, rtol=0)


def test_extractor_refuses_unpadded_or_1d_input():
    extractor = FeatureExtractor(FeatureConfig())
    with pytest.raises(ValueError, match="n_fft"):
        extractor.frames_to_features(np.zeros((1, 100), np.float32))
    with pytest.raises(ValueError, match="batch"):
        extractor.frames_to_features(np.zeros(4096, np.float32))


def test_extractor_of_other_settings_is_refused():
    with pytest.raises(ConfigError, match="other feature settings"):
        list(iter_segments([np.zeros(30000, np.float32)], FeatureConfig(),
                           extractor=FeatureExtractor(MUSICNN_FEATURES)))


def test_blocks_must_be_mono():
    with pytest.raises(ValueError, match="mono"):
        list(iter_segments([np.zeros((2, 30000), np.float32)], FeatureConfig()))


def test_batches_of_segments():
    cfg = FeatureConfig()
    y = np.random.default_rng(2).standard_normal(30 * cfg.sr).astype(np.float32) * 0.1
    batches = list(iter_segments([y], cfg, batch_segments=4))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert all(isinstance(b, np.ndarray) and b.dtype == np.float32 for b in batches)
    np.testing.assert_allclose(np.concatenate(batches), waveform_segments(y, cfg), atol=1e-4, rtol=0)


def test_apply_top_db_only_for_logmel_db():
    x = np.array([[[0.0, -100.0], [-50.0, -10.0]]], np.float32)
    floored = apply_top_db(x, FeatureConfig(top_db=60.0))
    np.testing.assert_allclose(floored, [[[0.0, -60.0], [-50.0, -10.0]]])
    assert floored.dtype == np.float32 and x[0, 0, 1] == -100.0  # the input is left as it was
    assert apply_top_db(x, FeatureConfig(top_db=None)) is x
    assert apply_top_db(x, MUSICNN_FEATURES) is x
    assert apply_top_db(x, SEED_FEATURES) is x  # floored per clip, not per segment


def test_import_needs_no_torch_or_scipy():
    """The inference path (light install) computes features without torch or scipy."""
    code = ("import sys, numpy as np, genrekit.features as f; "
            "from genrekit.config import SEED_FEATURES, FeatureConfig; "
            "f.waveform_segments(np.ones(50000, np.float32), FeatureConfig()); "
            "f.waveform_segments(np.ones(50000, np.float32), SEED_FEATURES); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'scipy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# --- numpy against torch ---------------------------------------------------------------

TORCH_PARITY = 1e-4  # in the feature's units (dB, or musicnn's log10 units)


def torch_extractor(cfg):
    pytest.importorskip("torch")
    from genrekit.features_torch import TorchFeatureExtractor

    return TorchFeatureExtractor(cfg, "cpu")


@pytest.mark.parametrize("cfg", [FeatureConfig(), MUSICNN_FEATURES], ids=["logmel_db", "musicnn"])
def test_numpy_equals_torch_on_real_audio(real_waveforms, cfg):
    """The numpy and torch transforms agree to 1e-4 in the feature's units.

    ``logmel_db`` holds 1e-4 where a value is within 60 dB of its segment's peak; down
    to the 80 dB floor float32 FFT rounding (relative to the frame's loudest bin) grows
    to a few 1e-4 dB (measured <= 5.7e-4 on 12 GTZAN/FMA files, of which the numpy side
    is <= 1.2e-4 from a float64 reference: see the next test).
    """
    extractor = torch_extractor(cfg)
    worst = worst_near_peak = 0.0
    for (_, sr), y in real_waveforms.items():
        if sr != cfg.sr:
            continue
        ours = waveform_segments(y, cfg)
        theirs = np.concatenate([b.numpy() for b in iter_segments([y], cfg, 10**9, extractor)])
        assert ours.shape == theirs.shape
        delta = np.abs(ours - theirs)
        worst = max(worst, float(delta.max()))
        near_peak = ours > ours.max(axis=(1, 2), keepdims=True) - 60.0
        worst_near_peak = max(worst_near_peak, float(delta[near_peak].max()))
    print(f"max |numpy - torch| ({cfg.frontend}): {worst:.2e}, within 60 dB of the peak {worst_near_peak:.2e}")
    if cfg.frontend == "musicnn":
        assert worst <= TORCH_PARITY
    else:
        assert worst_near_peak <= TORCH_PARITY and worst <= 1e-3


@pytest.mark.parametrize("cfg", [FeatureConfig(), MUSICNN_FEATURES], ids=["logmel_db", "musicnn"])
def test_numpy_equals_float64_reference(real_waveforms, cfg):
    """The float32 numpy transform is within 2.5e-4 dB (musicnn: 1e-5) of the same maths in float64."""
    for (rel, sr), y in real_waveforms.items():
        if sr != cfg.sr:
            continue
        ours = waveform_segments(y, cfg)
        padded = np.pad(y.astype(np.float64), cfg.n_fft // 2, mode=cfg.pad_mode)
        frames = np.lib.stride_tricks.sliding_window_view(padded, cfg.n_fft)[:: cfg.hop_length]
        window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(cfg.n_fft) / cfg.n_fft)
        mel = mel_filterbank(cfg.sr, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax).astype(np.float64) \
            @ (np.abs(np.fft.rfft(frames * window)) ** 2).T
        theirs = librosa_segments_from(mel, cfg)
        assert np.abs(ours - theirs).max() <= (2.5e-4 if cfg.frontend == "logmel_db" else 1e-5), rel


@pytest.mark.parametrize("cfg", CONFIGS + [dataclasses.replace(SEED_FEATURES, sr=8000, clip_seconds=1.0),
                                           FeatureConfig(image_size=(64, 48))],
                         ids=IDS + ["seed-small", "resized"])
def test_torch_extractor_through_iter_segments(cfg):
    """The torch extractor plugs into the same segmenters (streamed, batched) and agrees."""
    extractor = torch_extractor(cfg)
    rng = np.random.default_rng(11)
    y = (0.1 * rng.standard_normal(int(3.3 * cfg.sr))).astype(np.float32)
    blocks = np.split(y, np.sort(rng.integers(0, len(y), 7)))
    batches = list(iter_segments(blocks, cfg, 3, extractor))
    assert all(b.device.type == "cpu" and b.dtype.is_floating_point and len(b) <= 3 for b in batches)
    theirs = np.concatenate([b.numpy() for b in batches])
    ours = waveform_segments(y, cfg)
    assert theirs.shape == ours.shape
    # random noise has single STFT bins far below the peak (stft_db has no mel averaging)
    near_peak = ours > ours.max(axis=(1, 2), keepdims=True) - 40.0
    if cfg.frontend == "musicnn":
        near_peak[:] = True
    assert np.abs(theirs - ours)[near_peak].max() <= 1e-3


def test_torch_waveform_segments_and_empty():
    torch = pytest.importorskip("torch")
    from genrekit.features_torch import waveform_segments as torch_segments

    y = np.random.default_rng(4).standard_normal(4 * 22050).astype(np.float32) * 0.1
    out = torch_segments(y, FeatureConfig())
    assert isinstance(out, torch.Tensor) and out.shape == (1, 128, 129)
    assert torch_segments(np.zeros(0, np.float32), FeatureConfig()).shape == (0, 128, 129)


# --- FeatureConfig ---------------------------------------------------------------------

@pytest.mark.parametrize("changes, words", [
    ({"sr": 0}, "positive"), ({"n_fft": -1}, "positive"), ({"hop_length": 0}, "positive"),
    ({"n_mels": 0}, "positive"), ({"frontend": "mfcc"}, "frontend"), ({"pad_mode": "edge"}, "pad_mode"),
    ({"fmin": 9000.0, "fmax": 8000.0}, "fmin < fmax"), ({"fmax": 20000.0}, "sr/2"),
    ({"fmin": -1.0}, "fmin"), ({"segment_seconds": 0.0}, "segment_seconds"),
    ({"segment_hop_seconds": -3.0}, "segment_hop_seconds"), ({"segment_seconds": 0.01}, "one stft hop"),
    # equal parts, the seed's front end, resizing
    ({"frontend": "stft_db"}, "needs segment_count"),
    ({"frontend": "stft_db", "segment_count": 10, "n_mels": 64}, "no mel filterbank"),
    ({"frontend": "stft_db", "segment_count": 10, "fmax": 8000.0}, "no mel filterbank"),
    ({"segment_count": 0}, "positive integer"), ({"segment_count": 2.5}, "positive integer"),
    ({"segment_count": True}, "positive integer"),
    ({"segment_count": 10, "segment_seconds": 2.0}, "do not apply with segment_count"),
    ({"segment_count": 10, "segment_hop_seconds": 1.5}, "do not apply with segment_count"),
    ({"segment_count": 10, "clip_seconds": 0.0}, "clip_seconds must be positive"),
    ({"segment_count": 100, "clip_seconds": 1.0}, "fewer than segment_count"),
    ({"clip_seconds": 10.0}, "only with segment_count"),
    ({"image_size": (224,)}, "image_size"), ({"image_size": (224, 0)}, "positive"),
    ({"image_size": (224.5, 224)}, "image_size"), ({"image_size": "224x224"}, "image_size")])
def test_config_validation(changes, words):
    with pytest.raises(ConfigError) as e:
        FeatureConfig(**changes)
    assert words.lower() in str(e.value).lower()


def test_config_properties():
    cfg = FeatureConfig()
    assert cfg.segment_frames == int(3.0 * 22050 // 512) == 129
    assert cfg.segment_shape == (128, 129)
    assert MUSICNN_FEATURES.segment_frames == int(3.0 * 16000 // 256)


def test_config_round_trip_and_hash():
    cfg = FeatureConfig(fmin=30.0, fmax=8000.0, top_db=None, segment_hop_seconds=1.5)
    again = FeatureConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and hash(again) == hash(cfg)
    assert again.fingerprint() == cfg.fingerprint()
    assert len(cfg.fingerprint()) == 16 and int(cfg.fingerprint(), 16) >= 0
    assert len({cfg, again, FeatureConfig()}) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.sr = 16000  # type: ignore[misc]
    with pytest.raises(ConfigError, match="unknown"):
        FeatureConfig.from_dict({**cfg.to_dict(), "colour": "blue"})


def test_fingerprint_changes_with_every_field():
    base = FeatureConfig()
    changed = dict(sr=16000, n_fft=1024, hop_length=256, n_mels=64, fmin=20.0, fmax=8000.0, top_db=60.0,
                   frontend="musicnn", pad_mode="reflect", segment_seconds=2.0, segment_hop_seconds=1.0,
                   segment_count=5, image_size=(224, 224), segment_rms_db=-15.0)
    assert set(changed) | {"clip_seconds", "max_gain_db"} == {f.name for f in dataclasses.fields(FeatureConfig)}
    prints = {base.fingerprint()}
    for name, value in changed.items():
        prints.add(dataclasses.replace(base, **{name: value}).fingerprint())
    parts = FeatureConfig(segment_count=5)  # clip_seconds applies only with segment_count
    prints |= {parts.fingerprint(), dataclasses.replace(parts, clip_seconds=20.0).fingerprint()}
    levelled = FeatureConfig(segment_rms_db=-15.0)  # max_gain_db applies only with a level
    prints.add(dataclasses.replace(levelled, max_gain_db=20.0).fingerprint())
    assert len(prints) == len(changed) + 3


def test_fingerprints_of_older_settings_did_not_change():
    """Fields added later do not enter the hash at their defaults: the values from before them."""
    assert FeatureConfig().fingerprint() == "712ef4c882d3a3cf"
    assert MUSICNN_FEATURES.fingerprint() == "e5c84248f8ede2a6"


LEVELLED = dataclasses.replace(MUSICNN_FEATURES, segment_rms_db=-15.0)


def _chords(seconds=9.0, sr=16000) -> np.ndarray:
    """Chords with a changing loudness and some noise, as music would have."""
    t = np.arange(int(seconds * sr)) / sr
    notes = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6, 440.0))
    envelope = 0.3 + 0.25 * np.sin(2 * np.pi * 0.4 * t)
    return (0.1 * envelope * notes + 0.01 * np.random.default_rng(0).normal(size=t.size)).astype(np.float32)


def test_segment_level_makes_features_independent_of_gain():
    """With segment_rms_db the same audio 10 dB softer gives the same features (not so without)."""
    y = _chords()  # about -28 dBFS: 10 dB softer still needs less than max_gain_db to reach -15
    soft = (y * 10 ** (-10 / 20)).astype(np.float32)
    levelled = [waveform_segments(x, LEVELLED) for x in (y, soft)]
    assert np.abs(levelled[0] - levelled[1]).max() < 1e-3
    raw = [waveform_segments(x, MUSICNN_FEATURES) for x in (y, soft)]
    assert np.abs(raw[0] - raw[1]).max() > 0.5
    # a segment brought up to the level, one of near-silence boosted by max_gain_db only
    spans = np.stack([y[:48000], np.full(48000, 1e-6, np.float32)])
    scaled = scale_to_level(spans, LEVELLED)
    assert 20 * np.log10(np.sqrt(np.mean(scaled[0].astype(np.float64) ** 2))) == pytest.approx(-15.0, abs=1e-3)
    assert np.allclose(scaled[1], 1e-6 * 10 ** (30 / 20))


def test_segment_level_settings_are_checked():
    for bad in (5.0, -90.0, True, "loud"):
        with pytest.raises(ConfigError, match="segment_rms_db"):
            dataclasses.replace(MUSICNN_FEATURES, segment_rms_db=bad)
    with pytest.raises(ConfigError, match="max_gain_db"):
        dataclasses.replace(LEVELLED, max_gain_db=-3.0)
    with pytest.raises(ConfigError, match="not with segment_count"):
        dataclasses.replace(SEED_FEATURES, segment_rms_db=-15.0)
    again = FeatureConfig.from_dict(json.loads(json.dumps(LEVELLED.to_dict())))
    assert again == LEVELLED and again.fingerprint() != MUSICNN_FEATURES.fingerprint()
    from genrekit.config import check_musicnn_config

    check_musicnn_config(dataclasses.replace(LEVELLED, max_gain_db=15.0))  # musicnn's input, levelled: fine
    with pytest.raises(ConfigError, match="only segment_rms_db and max_gain_db may differ"):
        check_musicnn_config(dataclasses.replace(LEVELLED, n_mels=64))


def test_segment_level_numpy_equals_torch():
    extractor = torch_extractor(LEVELLED)
    y = _chords() * 0.05
    ours = waveform_segments(y, LEVELLED)
    theirs = np.concatenate([b.numpy() for b in iter_segments([y], LEVELLED, 10**9, extractor)])
    assert np.abs(ours - theirs).max() <= TORCH_PARITY


def test_image_size_from_json_is_a_tuple():
    cfg = dataclasses.replace(SEED_FEATURES, image_size=[224, 224])
    assert cfg.image_size == (224, 224) and cfg.segment_shape == (224, 224)
    again = FeatureConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and hash(again) == hash(cfg)


def test_fingerprint_is_stable_across_processes():
    """Not Python's salted hash(): another interpreter with another hash seed agrees."""
    code = "from genrekit.config import FeatureConfig; print(FeatureConfig(n_mels=64).fingerprint())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "123"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == FeatureConfig(n_mels=64).fingerprint()


def test_value_unit_names_the_front_end():
    from genrekit.config import MUSICNN_FEATURES, FeatureConfig

    assert FeatureConfig().value_unit == "dB"
    assert MUSICNN_FEATURES.value_unit == "log10(1 + 10^4 mel)"
    assert SEED_FEATURES.value_unit == "dB re clip max"


# --- the seed's features: stft_db in equal parts ---------------------------------------

def librosa_seed_parts(y: np.ndarray, count: int = 10) -> np.ndarray:
    """The seed's recipe: ``librosa.stft`` → ``amplitude_to_db(ref=np.max)`` → ``count`` equal parts."""
    image = librosa.amplitude_to_db(np.abs(librosa.stft(y, n_fft=2048, hop_length=512)), ref=np.max)
    length = image.shape[1] // count
    return np.stack([image[:, k * length: (k + 1) * length] for k in range(count)])


def test_seed_preset_shapes():
    cfg = SEED_FEATURES
    assert (cfg.sr, cfg.n_fft, cfg.hop_length, cfg.frontend, cfg.segment_count) == (44100, 2048, 512, "stft_db", 10)
    assert cfg.clip_frames == 1 + 30 * 44100 // 512 == 2584
    assert cfg.segment_frames == 258 and cfg.segment_shape == (1025, 258) and cfg.n_bins == 1025


@pytest.mark.parametrize("name", ["000002.mp3", "000005.mp3"])  # 29.98 s and 30.003 s
def test_seed_parity_with_librosa_on_real_clip(shared_data, name):
    y = load_audio(shared_data / "fma_small" / "000" / name, sr=44100)
    ours = waveform_segments(y, SEED_FEATURES)
    theirs = librosa_seed_parts(y)
    assert ours.shape == theirs.shape == (10, 1025, 258) and ours.dtype == np.float32
    print(f"{name}: max |delta| vs librosa stft_db: {np.abs(ours - theirs).max():.2e} dB")
    assert np.abs(ours - theirs).max() <= 1e-3
    assert ours.max() == 0.0 and ours.min() == -80.0  # dB re the clip's max, floored at top_db
    # not trivially equal: another reference or a shifted signal is far off
    assert np.abs(ours - librosa_seed_parts(0.5 * y[::-1].copy())).max() > 1.0
    assert np.abs(ours - librosa_seed_parts(np.roll(y, 1))).max() > 0.1


@pytest.mark.parametrize("seconds, expected", [(30.0, 10), (29.98, 10), (30.003, 10), (65.0, 21), (60.0, 20),
                                               (2.0, 1), (25.0, 8), (0.01, 1)])
def test_seed_number_of_parts(seconds, expected):
    """Per 30 s clip 10 parts of 258 frames; the last, shorter clip gives the whole parts it
    holds (65 s: 10 + 10 + 1); a file shorter than one part is padded to one."""
    n = int(round(seconds * SEED_FEATURES.sr))
    assert n_segments(n, SEED_FEATURES) == expected


def test_seed_65_s_file_is_clips_of_30_s_each_with_its_own_reference():
    cfg = SEED_FEATURES
    rng = np.random.default_rng(5)
    clip = cfg.clip_samples
    gains = [0.5, 0.01, 0.2]  # the second clip is 34 dB quieter than the first
    y = np.concatenate([g * rng.standard_normal(n) for g, n in zip(gains, [clip, clip, 65 * cfg.sr - 2 * clip])])
    y = y.astype(np.float32)
    parts = waveform_segments(y, cfg)
    assert parts.shape == (21, 1025, 258)
    for k, first in enumerate([0, 10]):  # each clip is as if it were its own file
        alone = waveform_segments(y[k * clip: (k + 1) * clip], cfg)
        np.testing.assert_allclose(parts[first: first + 10], alone, atol=1e-4, rtol=0)
        assert parts[first: first + 10].max() == 0.0
    np.testing.assert_allclose(parts[20], waveform_segments(y[2 * clip:], cfg)[0], atol=1e-4, rtol=0)
    np.testing.assert_allclose(segment_starts(len(y), cfg)[[0, 1, 10, 20]],
                               [0.0, 258 * 512 / 44100, 30.0, 60.0])


def equal_parts_configs():
    small = dict(sr=8000, n_fft=256, hop_length=64, clip_seconds=1.5)
    return [dataclasses.replace(SEED_FEATURES, **small, segment_count=4),
            dataclasses.replace(SEED_FEATURES, **small, segment_count=3, pad_mode="reflect", top_db=None),
            FeatureConfig(**small, n_mels=20, segment_count=5),
            FeatureConfig(**small, n_mels=20, segment_count=2, frontend="musicnn", top_db=None, image_size=(16, 12))]


@pytest.mark.parametrize("cfg", equal_parts_configs(), ids=["stft_db", "stft_db-reflect", "logmel", "musicnn-resized"])
def test_equal_parts_streaming_equals_whole(cfg):
    """Clips are fixed sample ranges, so any cut into blocks and any batch size gives the same parts."""
    rng = np.random.default_rng(8)
    for _ in range(5):
        n = int(rng.integers(1, 5 * cfg.clip_samples))
        y = (0.1 * rng.standard_normal(n)).astype(np.float32)
        whole = waveform_segments(y, cfg)
        assert whole.shape == (n_segments(n, cfg), *cfg.segment_shape)
        batch = int(rng.integers(1, 7))
        batches = list(iter_segments(_random_blocks(y, rng), cfg, batch_segments=batch))
        assert all(len(b) == batch for b in batches[:-1]) and 0 < len(batches[-1]) <= batch
        np.testing.assert_allclose(np.concatenate(batches), whole, atol=1e-4, rtol=0)


def test_equal_parts_in_one_batch_through_iter_segments():
    """prepare takes the first batch of ``batch_segments=10**9``: it must hold every clip's parts."""
    cfg = dataclasses.replace(SEED_FEATURES, sr=8000, clip_seconds=1.0)
    y = np.random.default_rng(0).standard_normal(int(3.5 * cfg.sr)).astype(np.float32)
    batches = list(iter_segments([y[:5000], y[5000:]], cfg, batch_segments=10**9))
    # 16 frames a clip -> 10 parts of 1 frame; 3 clips, and the 0.5 s tail's 1 + 4000 // 512 = 8 frames
    assert len(batches) == 1 and len(batches[0]) == n_segments(len(y), cfg) == 38


def test_equal_parts_memory_is_bounded():
    """A long stream gives its parts clip by clip, not at the end."""
    cfg = dataclasses.replace(SEED_FEATURES, sr=8000, clip_seconds=1.0)
    block = np.random.default_rng(0).standard_normal(cfg.clip_samples // 2).astype(np.float32)
    fed = []

    def blocks():
        for _ in range(20):
            fed.append(len(block))
            yield block

    out = 0
    for batch in iter_segments(blocks(), cfg, batch_segments=10):
        out += len(batch)
        assert sum(fed) - out / 10 * cfg.clip_samples <= cfg.clip_samples + len(block)
    assert out == 100


def test_equal_parts_short_file_is_padded_with_silence():
    cfg = SEED_FEATURES
    y = (0.3 * np.sin(np.arange(int(1.0 * cfg.sr)) * 0.05)).astype(np.float32)
    parts = waveform_segments(y, cfg)
    assert parts.shape == (1, 1025, 258)
    padded = np.concatenate([y, np.zeros(257 * 512 - len(y), np.float32)])  # silence up to one part
    np.testing.assert_allclose(parts[0], librosa_seed_parts(padded, count=1)[0], atol=1e-3)
    assert np.all(parts[0][:, 100:] == -80.0)  # after the sound: the floor


def test_equal_parts_of_logmel_floor_per_part():
    cfg = FeatureConfig(segment_count=10)
    assert cfg.segment_shape == (128, 129)  # 1 + 661500 // 512 = 1292 frames -> 10 x 129
    loud = 0.5 * np.sin(np.arange(15 * cfg.sr) * 0.1)
    y = np.concatenate([loud, 1e-2 * loud]).astype(np.float32)
    parts = waveform_segments(y, cfg)
    assert len(parts) == 10
    for part in parts:  # each floored at its own peak - 80 dB
        assert part.min() == pytest.approx(part.max() - 80.0, abs=1e-3)
    assert parts[2].max() - parts[8].max() > 30


# --- resizing --------------------------------------------------------------------------

def test_resize_shape_and_values():
    cfg = dataclasses.replace(SEED_FEATURES, image_size=(224, 224))
    y = np.random.default_rng(3).standard_normal(30 * cfg.sr).astype(np.float32) * 0.1
    resized = waveform_segments(y, cfg)
    assert resized.shape == (10, 224, 224) and resized.dtype == np.float32
    full = waveform_segments(y, SEED_FEATURES)
    np.testing.assert_allclose(resized, resize_images(full, (224, 224)), atol=1e-4)
    assert resized.min() >= -80.0 - 1e-4 and resized.max() <= 1e-4  # an average of the parts' values


@pytest.mark.parametrize("size", [(224, 224), (50, 258), (2000, 300), (1, 1)])
def test_resize_equals_torch_bilinear_antialias(size):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(6).standard_normal((2, 1025, 258)).astype(np.float32)
    theirs = torch.nn.functional.interpolate(torch.from_numpy(x)[:, None], size=size, mode="bilinear",
                                             align_corners=False, antialias=True)[:, 0].numpy()
    # torch places its upsampling taps in float32: ~1e-4 off for large factors
    np.testing.assert_allclose(resize_images(x, size), theirs, atol=1e-3 if size[0] > 1025 else 1e-4)


def test_resize_keeps_a_constant_and_a_ramp():
    ramp = np.tile(np.arange(258, dtype=np.float32), (1025, 1))[None]
    out = resize_images(ramp, (224, 224))
    np.testing.assert_allclose(out[0, 0], out[0, -1], atol=1e-4)  # every row the same ramp
    assert np.all(np.diff(out[0, 0]) > 0)
    np.testing.assert_allclose(resize_images(np.full((1, 30, 40), 7.0, np.float32), (13, 90)), 7.0, rtol=1e-6)


# --- CLI feature options ---------------------------------------------------------------

def cli_features(*argv):
    import argparse

    from genrekit.cli._common import add_feature_arguments, feature_config_from_args

    parser = argparse.ArgumentParser()
    add_feature_arguments(parser)
    return feature_config_from_args(parser.parse_args(list(argv)))


def test_cli_feature_presets():
    assert cli_features() == FeatureConfig()
    assert cli_features("--features", "musicnn") == MUSICNN_FEATURES
    assert cli_features("--features", "seed") == SEED_FEATURES
    resized = cli_features("--features", "seed", "--image-size", "224", "224")
    assert resized == dataclasses.replace(SEED_FEATURES, image_size=(224, 224)) and resized.segment_shape == (224, 224)
    parts = cli_features("--segment-count", "5", "--clip-seconds", "10")
    assert (parts.segment_count, parts.clip_seconds, parts.frontend) == (5, 10.0, "logmel_db")


def test_cli_rejects_options_that_do_not_fit():
    with pytest.raises(ConfigError, match="no mel filterbank"):
        cli_features("--features", "seed", "--n-mels", "64")
    with pytest.raises(ConfigError, match="do not apply"):
        cli_features("--features", "seed", "--segment-seconds", "2")
    with pytest.raises(SystemExit):
        cli_features("--image-size", "224")
