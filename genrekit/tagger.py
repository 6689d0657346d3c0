"""musicnn's tags and embeddings for audio files: the user API over the shipped taggers.

The networks (:mod:`genrekit.models.musicnn`, PyTorch, for training) are shipped as
ONNX graphs (``genrekit/weights/musicnn-msd.onnx`` and ``musicnn-mtt.onnx``), so
this module runs in the light install with onnxruntime alone, as openl3's ``core``
runs over its ``models``.

- :func:`taggram`: tag probabilities of every 3 s patch, with the patches' start times;
- :func:`top_tags`: a file's tags, averaged over its patches, highest first;
- :func:`embeddings`: per-patch embeddings, with their start times.

musicnn cuts a file into patches of 187 frames (3 s at 16 kHz, hop 256) back to back;
the tail shorter than a patch is dropped, and a file shorter than one patch is padded.
Files shorter than :data:`genrekit.audio.MIN_DURATION` or all silent are refused, as
everywhere in genrekit.

Examples
--------
>>> tags = top_tags("song.mp3", k=3)  # doctest: +SKIP
>>> tags  # doctest: +SKIP
[('guitar', 0.61), ('rock', 0.55), ('drums', 0.41)]
>>> emb, times = embeddings("song.mp3")  # doctest: +SKIP
>>> emb.shape, times[:3]  # doctest: +SKIP
((10, 200), array([0.   , 2.992, 5.984]))
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from .config import MUSICNN_FEATURES, PATCH_BATCH, check_musicnn_config
from .errors import ConfigError

WEIGHTS = Path(__file__).resolve().parent / "weights"
TAGGERS = {"msd": "MSD_musicnn", "mtt": "MTT_musicnn"}
ALIASES = {"musicnn-msd": "msd", "musicnn-mtt": "mtt", "msd_musicnn": "msd", "mtt_musicnn": "mtt"}
LAYERS = {"penultimate": 200, "max_pool": 753, "mean_pool": 753, "pool": 1506}


def tagger_name(name: str) -> str:
    """``"msd"``, ``"musicnn-msd"`` or ``"MSD_musicnn"`` → ``"msd"`` (same for mtt)."""
    key = str(name).lower()
    key = ALIASES.get(key, key)
    if key not in TAGGERS:
        raise ConfigError(f"unknown musicnn tagger {name!r}; choose msd (Million Song Dataset) or mtt (MagnaTagATune)")
    return key


@lru_cache(maxsize=4)
def load_tagger(name: str = "mtt", threads: int | None = None):
    """The shipped tagger ``msd`` or ``mtt`` as an :class:`~genrekit.runtime.OnnxNetwork` (cached)."""
    from .runtime import OnnxNetwork

    return OnnxNetwork(WEIGHTS / f"musicnn-{tagger_name(name)}.onnx", threads=threads)


def patch_starts(n_patches: int) -> np.ndarray:
    """Start time in seconds of each musicnn patch."""
    cfg = MUSICNN_FEATURES
    return np.arange(n_patches) * cfg.segment_hop_frames * cfg.hop_length / cfg.sr


def iter_patches(source, sr: int | None = None, batch_size: int = PATCH_BATCH, config=MUSICNN_FEATURES):
    """Batches of musicnn input patches ``(n, 96, 187)`` of an audio file or a mono waveform.

    A file is decoded and resampled to 16 kHz as a stream, so memory stays bounded;
    it must pass genrekit's audio policy (long enough, not silent). A waveform needs
    its sample rate ``sr``. ``config``: :data:`~genrekit.config.MUSICNN_FEATURES`, or the
    same with a segment level (``segment_rms_db``, as a genre model may use).
    """
    from .audio import CheckedStream, stream_audio
    from .features import iter_segments

    check_musicnn_config(config)
    if isinstance(source, (str, os.PathLike)):
        blocks = CheckedStream(stream_audio(source, MUSICNN_FEATURES.sr), MUSICNN_FEATURES.sr, source)
    elif isinstance(source, (bytes, bytearray)) or source is None:
        raise ConfigError(f"source must be a path or a waveform array, not {type(source).__name__}")
    else:
        blocks = [_resampled(source, sr)]
    yield from iter_segments(blocks, config, batch_segments=batch_size)


def _resampled(y, sr: int | None) -> np.ndarray:
    from .audio import check_waveform

    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ConfigError(f"waveform must be mono 1-D, got shape {y.shape}")
    if sr is None or sr <= 0:
        raise ConfigError(f"give the waveform's sample rate (sr=...); musicnn works at {MUSICNN_FEATURES.sr} Hz")
    check_waveform(y, sr, "<waveform>")
    if sr != MUSICNN_FEATURES.sr:
        import soxr

        y = soxr.resample(y, sr, MUSICNN_FEATURES.sr, quality="HQ").astype(np.float32)
    return y


def _outputs(source, tagger: str, kinds: list[str], sr: int | None) -> dict[str, np.ndarray]:
    network = load_tagger(tagger_name(tagger))
    prefix = TAGGERS[tagger_name(tagger)]
    names = [f"{prefix}/{kind}" for kind in kinds]
    parts = [network.run(batch, names) for batch in iter_patches(source, sr)]
    return {kind: np.concatenate([p[name] for p in parts]) for kind, name in zip(kinds, names)}


def tags(tagger: str = "mtt") -> list[str]:
    """The 50 tag names of a tagger, in output order."""
    network = load_tagger(tagger_name(tagger))
    return list(network.metadata["tags"][TAGGERS[tagger_name(tagger)]])


def taggram(source, tagger: str = "mtt", sr: int | None = None):
    """Tag probabilities of every patch (musicnn's taggram).

    Returns
    -------
    taggram : numpy.ndarray, shape (n_patches, 50), float32
    tags : list of str
    timestamps : numpy.ndarray, shape (n_patches,)
        Start of each patch in seconds.
    """
    probs = _outputs(source, tagger, ["tags"], sr)["tags"]
    return probs, tags(tagger), patch_starts(len(probs))


def top_of(probs: np.ndarray, names: list[str], k: int) -> list[tuple[str, float]]:
    """The ``k`` tags of a taggram with the highest probability averaged over its patches.

    Examples
    --------
    >>> top_of(np.array([[0.1, 0.9], [0.3, 0.7]]), ["rock", "jazz"], 1)
    [('jazz', 0.8)]
    """
    if not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a positive integer, not {k!r}")
    mean = probs.mean(axis=0)
    return [(names[i], round(float(mean[i]), 6)) for i in np.argsort(-mean)[:k]]


def top_tags(source, k: int = 5, tagger: str = "mtt", sr: int | None = None) -> list[tuple[str, float]]:
    """The ``k`` tags with the highest probability averaged over the file's patches (musicnn's ``top_tags``)."""
    probs, names, _ = taggram(source, tagger, sr)
    return top_of(probs, names, k)


def embeddings(source, tagger: str = "msd", layer: str = "penultimate", sr: int | None = None):
    """Per-patch embeddings and their start times.

    Parameters
    ----------
    layer : {"penultimate", "max_pool", "mean_pool", "pool"}
        ``penultimate``: the 200-d layer before the tags; ``max_pool`` / ``mean_pool``:
        the 753-d temporal max / mean of the mid-end; ``pool``: both (1506-d).

    Returns
    -------
    embeddings : numpy.ndarray, shape (n_patches, D), float32
    timestamps : numpy.ndarray, shape (n_patches,)
    """
    if layer not in LAYERS:
        raise ConfigError(f"layer must be one of {sorted(LAYERS)}, not {layer!r}")
    kinds = ["max_pool", "mean_pool"] if layer == "pool" else [layer]
    out = _outputs(source, tagger, kinds, sr)
    emb = np.concatenate([out[k] for k in kinds], axis=1)
    return emb, patch_starts(len(emb))
