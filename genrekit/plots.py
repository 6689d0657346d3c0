"""Figures people would rather look at than read: spectrograms, curves, confusion matrices.

All functions write an image file (PNG, SVG or PDF by extension) with matplotlib's
Agg backend and return the path.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import FeatureConfig


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out) -> Path:
    from .io import atomic_path

    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format=out.suffix.lstrip(".") or "png")
    _pyplot().close(fig)
    return out


def mel_ticks(config: FeatureConfig, n_ticks: int = 7):
    """Positions (mel band index) and labels (Hz) for a spectrogram's frequency axis."""
    from .features import hz_to_mel, mel_to_hz

    fmax = config.fmax or config.sr / 2
    mels = np.linspace(hz_to_mel(config.fmin), hz_to_mel(fmax), config.n_mels)
    positions = np.linspace(0, config.n_mels - 1, n_ticks)
    hz = mel_to_hz(np.interp(positions, np.arange(config.n_mels), mels))
    return positions, [f"{h / 1000:.1f}k" if h >= 1000 else f"{h:.0f}" for h in hz]


def plot_segments(segments: np.ndarray, config: FeatureConfig, out, title: str = "", start: float = 0.0) -> Path:
    """Draw segments ``(n, n_mels, frames)`` side by side, boundaries marked."""
    plt = _pyplot()
    segments = np.asarray(segments, dtype=np.float32)
    n, n_mels, frames = segments.shape
    seg_seconds = frames * config.hop_length / config.sr
    hop_seconds = config.segment_hop_frames * config.hop_length / config.sr
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * n + 2), 3.6))
    image = None
    for i, seg in enumerate(segments):
        left = start + i * hop_seconds
        image = ax.imshow(seg, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
                          extent=(left, left + seg_seconds, -0.5, n_mels - 0.5))
        ax.axvline(left, color="cyan", lw=0.8, alpha=0.8)
    ax.axvline(start + (n - 1) * hop_seconds + seg_seconds, color="cyan", lw=0.8, alpha=0.8)
    ax.set_xlim(start, start + (n - 1) * hop_seconds + seg_seconds)
    positions, labels = mel_ticks(config)
    ax.set_yticks(positions, labels)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz, mel scale)")
    ax.set_title(title or f"log-mel spectrogram, {n} segments of {seg_seconds:.2f} s")
    fig.colorbar(image, ax=ax, label=config.value_unit, pad=0.01)
    return _save(fig, out)


def plot_spectrogram(audio_path, out, config: FeatureConfig | None = None, offset: float = 0.0,
                     duration: float | None = 30.0) -> Path:
    """The log-mel of an audio file with time/frequency axes and segment boundaries.

    Examples
    --------
    >>> plot_spectrogram("blues.00000.wav", "spec.png")  # doctest: +SKIP
    """
    from .audio import load_audio
    from .features import waveform_segments

    config = config or FeatureConfig()
    y = load_audio(audio_path, sr=config.sr, offset=offset, duration=duration)
    segments = np.asarray(waveform_segments(y, config))
    return plot_segments(segments, config, out, title=f"{Path(audio_path).name}: {len(segments)} segments", start=offset)


def plot_training_curves(history: list[dict], out) -> Path:
    """Loss and accuracy per epoch, one column per phase (frozen / unfrozen), as the seed's two plots."""
    plt = _pyplot()
    phases = list(dict.fromkeys(h["phase"] for h in history)) or ["train"]
    fig, axes = plt.subplots(2, len(phases), figsize=(5 * len(phases), 6), squeeze=False, sharey="row")
    for col, phase in enumerate(phases):
        rows = [h for h in history if h["phase"] == phase]
        epochs = [h["epoch"] for h in rows]
        ax = axes[0][col]
        ax.plot(epochs, [h["train_loss"] for h in rows], "o-", label="train")
        ax.plot(epochs, [h["valid_loss"] for h in rows], "o-", label="valid")
        ax.set_title(f"{phase}: loss")
        ax.legend()
        ax = axes[1][col]
        ax.plot(epochs, [h["valid_segment_accuracy"] for h in rows], "o-", label="valid, segments")
        ax.plot(epochs, [h["valid_track_accuracy"] for h in rows], "o-", label="valid, tracks (vote)")
        ax.set_title(f"{phase}: accuracy")
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 1)
        ax.legend()
    fig.tight_layout()
    return _save(fig, out)


def plot_lr_finder(lrs, losses, out, suggestion: float | None = None) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(lrs, losses)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss (smoothed)")
    if suggestion:
        ax.axvline(suggestion, color="red", ls="--", label=f"suggested {suggestion:.2e}")
        ax.legend()
    ax.set_title("LR range test")
    return _save(fig, out)


def plot_confusion(matrix: np.ndarray, labels: list[str], out, normalise: bool = False, title: str = "") -> Path:
    """Confusion matrix, rows = true label, columns = predicted; counts or row-normalised."""
    plt = _pyplot()
    matrix = np.asarray(matrix, dtype=float)
    shown = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1) if normalise else matrix
    size = max(4.0, 0.55 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalise else max(shown.max(), 1))
    for i in range(len(labels)):
        for j in range(len(labels)):
            text = f"{shown[i, j]:.2f}" if normalise else f"{int(matrix[i, j])}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if shown[i, j] > (0.5 if normalise else shown.max() / 2) else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or ("confusion matrix (row-normalised)" if normalise else "confusion matrix (counts)"))
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return _save(fig, out)


def plot_reliability(reliability: dict, out, title: str = "") -> Path:
    """Reliability diagram: per-bin accuracy against confidence of the top label, with the bin counts."""
    plt = _pyplot()
    edges = np.asarray(reliability["edges"])
    centres = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    acc = np.array([np.nan if a is None else a for a in reliability["accuracy"]])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(4.5, 5.5), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    top.bar(centres, np.nan_to_num(acc), width=width * 0.9, color="#4c72b0", label="accuracy")
    top.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1)
    top.legend(loc="upper left", fontsize=8)
    top.set_title(title or "reliability (top label)")
    bottom.bar(centres, reliability["count"], width=width * 0.9, color="#888888")
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("tracks")
    bottom.set_xlim(0, 1)
    return _save(fig, out)
