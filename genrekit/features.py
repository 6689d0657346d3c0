"""Log-mel spectrograms in PyTorch, cut into fixed-length segments.

The transform matches librosa (``melspectrogram`` with a periodic Hann window, centred
frames, Slaney mel filters; ``power_to_db``), batched and on any torch device.

A segment is ``segment_frames`` consecutive STFT frames of the whole signal, so the
features of a segment are the same whether the clip is processed at once or streamed
in blocks (:func:`iter_segments`). ``top_db`` is applied per segment, which makes a
segment's values independent of the rest of the file.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Iterable, Iterator

import numpy as np

from .config import FeatureConfig

AMIN = 1e-10


def hz_to_mel(freqs):
    """Slaney's mel scale (librosa ``htk=False``): linear below 1 kHz, log above."""
    freqs = np.asanyarray(freqs, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    mels = freqs / f_sp
    log_part = freqs >= min_log_hz
    return np.where(log_part, min_log_mel + np.log(np.maximum(freqs, min_log_hz) / min_log_hz) / logstep, mels)


def mel_to_hz(mels):
    mels = np.asanyarray(mels, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), f_sp * mels)


@lru_cache(maxsize=16)
def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    """Triangular mel filters with Slaney area normalisation, shape ``(n_mels, 1 + n_fft // 2)``.

    Same as ``librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)``.
    """
    fmax = sr / 2 if fmax is None else fmax
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    mel_freqs = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_freqs)
    ramps = mel_freqs[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_freqs[2: n_mels + 2] - mel_freqs[:n_mels]))[:, None]
    return weights.astype(np.float32)


def _torch():
    import torch

    return torch


class LogMel:
    """Frames → log-mel, as a callable holding its window and filters per device.

    Examples
    --------
    >>> import torch
    >>> logmel = LogMel(FeatureConfig())
    >>> logmel.frames_to_logmel(torch.zeros(2, 22050 + 1536)).shape
    torch.Size([2, 128, 43])
    """

    def __init__(self, config: FeatureConfig, device="cpu"):
        torch = _torch()
        self.config = config
        self.device = torch.device(device)
        self.window = torch.hann_window(config.n_fft, periodic=True, device=self.device)
        fb = mel_filterbank(config.sr, config.n_fft, config.n_mels, config.fmin, config.fmax)
        self.filters = torch.from_numpy(fb).to(self.device)

    def frames_to_logmel(self, padded):
        """Uncentred STFT of already padded signals ``(B, n)`` → ``(B, n_mels, frames)``.

        Frame ``k`` covers samples ``[k * hop, k * hop + n_fft)`` of ``padded``; the log
        scaling is the frontend's, without the ``top_db`` floor (see :func:`apply_top_db`).
        """
        torch = _torch()
        cfg = self.config
        spec = torch.stft(padded.to(self.device, torch.float32), cfg.n_fft, cfg.hop_length,
                          window=self.window, center=False, return_complex=True)
        power = spec.real.square() + spec.imag.square()
        mel = torch.matmul(self.filters, power)
        if cfg.frontend == "musicnn":
            return torch.log10(10000.0 * mel + 1.0)
        return 10.0 * torch.log10(torch.clamp(mel, min=AMIN))


def apply_top_db(segments, config: FeatureConfig):
    """Floor each segment at its own maximum minus ``top_db`` (``logmel_db`` only)."""
    if config.frontend != "logmel_db" or config.top_db is None:
        return segments
    peak = segments.amax(dim=(-2, -1), keepdim=True)
    return segments.maximum(peak - config.top_db)


def n_segments(n_samples: int, config: FeatureConfig) -> int:
    """How many segments a signal of ``n_samples`` gives.

    With centred frames a signal has ``T = 1 + n_samples // hop`` frames; segments of
    ``L`` frames start every ``H`` frames while they fit, so a 30 s clip gives 10 of 3 s
    and the tail shorter than a segment is dropped. A signal shorter than one segment
    is padded with silence to one segment.
    """
    total = 1 + n_samples // config.hop_length
    length, hop = config.segment_frames, config.segment_hop_frames
    return 1 if total < length else 1 + (total - length) // hop


def segment_starts(n_samples: int, config: FeatureConfig) -> np.ndarray:
    """Start time in seconds of each segment."""
    starts = np.arange(n_segments(n_samples, config)) * config.segment_hop_frames
    return starts * config.hop_length / config.sr


def iter_segments(blocks: Iterable[np.ndarray], config: FeatureConfig, batch_segments: int = 20,
                  device="cpu", logmel: LogMel | None = None) -> Iterator:
    """Turn a stream of mono waveform blocks into batches of segment features.

    Memory is bounded by ``batch_segments`` segments plus one block, whatever the
    length of the stream. The result is the same as for the whole signal at once.

    Yields
    ------
    torch.Tensor, shape (n, n_mels, segment_frames), float32
    """
    torch = _torch()
    logmel = logmel or LogMel(config, device)
    hop, half = config.hop_length, config.n_fft // 2
    seg_frames, seg_hop = config.segment_frames, config.segment_hop_frames
    # Samples of the padded signal needed for frames [0, seg_frames) of a segment.
    span = (seg_frames - 1) * hop + config.n_fft
    stride = seg_hop * hop  # samples between segment starts in the padded signal
    buffer = np.zeros(0, np.float32)
    consumed = 0  # real samples seen so far
    emitted = 0
    first = True

    def pad_start(y):
        if config.pad_mode == "reflect" and len(y) > half:
            return np.concatenate([y[1: half + 1][::-1], y])
        return np.concatenate([np.zeros(half, np.float32), y])

    def cut(buf, count):
        idx = np.arange(count)[:, None] * stride + np.arange(span)[None, :]
        frames = logmel.frames_to_logmel(torch.from_numpy(buf[idx]))
        return apply_top_db(frames[..., :seg_frames], config)

    pending_first = np.zeros(0, np.float32)
    skip = 0  # samples still to drop: the gap between segments when they hop by more than their span
    for block in blocks:
        block = np.asarray(block, np.float32)
        consumed += len(block)
        if first:  # reflect padding needs the first half-window of real samples
            pending_first = np.concatenate([pending_first, block])
            if len(pending_first) <= half:
                continue
            buffer, first = pad_start(pending_first), False
        else:
            if skip:
                dropped = min(skip, len(block))
                block, skip = block[dropped:], skip - dropped
            buffer = np.concatenate([buffer, block])
        ready = 0 if len(buffer) < span else 1 + (len(buffer) - span) // stride
        while ready >= batch_segments:
            yield cut(buffer, batch_segments)
            advance = batch_segments * stride
            skip += max(0, advance - len(buffer))
            buffer = buffer[advance:]
            emitted += batch_segments
            ready -= batch_segments
    if first:
        if consumed == 0:
            return
        buffer = pad_start(pending_first)
    total = n_segments(consumed, config)
    remaining = total - emitted
    if remaining <= 0:
        return
    # End padding, as centred frames: half a window (zeros or reflection); a signal
    # shorter than one segment is padded with zeros to one.
    tail = buffer[-half - 1: -1][::-1] if config.pad_mode == "reflect" and consumed > half else np.zeros(half, np.float32)
    buffer = np.concatenate([buffer, tail])
    need = (remaining - 1) * stride + span
    if len(buffer) < need:
        buffer = np.concatenate([buffer, np.zeros(need - len(buffer), np.float32)])
    for start in range(0, remaining, batch_segments):
        count = min(batch_segments, remaining - start)
        yield cut(buffer[start * stride:], count)


def waveform_segments(y: np.ndarray, config: FeatureConfig, device="cpu", logmel: LogMel | None = None):
    """All segments of one waveform: ``(n_segments, n_mels, segment_frames)`` float32 tensor.

    Examples
    --------
    >>> y = np.random.default_rng(0).standard_normal(30 * 22050).astype("float32")
    >>> waveform_segments(y, FeatureConfig()).shape
    torch.Size([10, 128, 129])
    """
    torch = _torch()
    parts = list(iter_segments([np.asarray(y, np.float32)], config, batch_segments=10**9,
                               device=device, logmel=logmel))
    return torch.cat(parts) if parts else torch.zeros(0, *config.segment_shape)
