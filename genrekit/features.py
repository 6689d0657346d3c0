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
    length of the stream. The result is the same as for the whole signal at once,
    however the signal is cut into blocks.

    Yields
    ------
    torch.Tensor, shape (n, n_mels, segment_frames), float32
    """
    segmenter = _Segmenter(config, logmel or LogMel(config, device), batch_segments)
    for block in blocks:
        yield from segmenter.feed(block)
    yield from segmenter.finish()


class _Segmenter:
    """Cuts the centred (padded) signal into segments as its blocks arrive.

    The padded signal is the real one with ``n_fft // 2`` samples before and after
    (zeros, or its reflection as ``numpy.pad(mode="reflect")``). ``buffer`` holds it from
    the next segment's first sample; segments that hop by more than their span leave
    gaps, which are dropped from the blocks as they arrive (``skip``).
    """

    def __init__(self, config: FeatureConfig, logmel: LogMel, batch_segments: int):
        self.config, self.logmel, self.batch = config, logmel, batch_segments
        self.half = config.n_fft // 2
        self.reflect = config.pad_mode == "reflect"
        self.span = (config.segment_frames - 1) * config.hop_length + config.n_fft  # padded samples per segment
        self.stride = config.segment_hop_frames * config.hop_length  # between segment starts
        self.head = np.zeros(0, np.float32)  # real samples until the start padding can be made
        self.buffer: np.ndarray | None = None
        self.recent = np.zeros(0, np.float32)  # the last half + 1 real samples, to reflect at the end
        self.consumed = self.emitted = self.skip = 0

    def feed(self, block) -> Iterator:
        block = np.asarray(block, np.float32)
        self.consumed += len(block)
        if self.reflect:
            self.recent = np.concatenate([self.recent, block[-(self.half + 1):]])[-(self.half + 1):]
        if self.buffer is None:
            self.head = np.concatenate([self.head, block])
            if len(self.head) <= self.half:  # reflecting the start needs half + 1 samples
                return
            self.buffer = self._pad_start(self.head)
        else:
            dropped = min(self.skip, len(block))
            self.skip -= dropped
            self.buffer = np.concatenate([self.buffer, block[dropped:]])
        yield from self._ready()

    def finish(self) -> Iterator:
        """The segments left at the end: end padding, and silence up to one segment."""
        remaining = n_segments(self.consumed, self.config) - self.emitted if self.consumed else 0
        if remaining <= 0:
            return
        if self.buffer is None:  # the whole signal is at most half a window long
            buffer = np.pad(self.head, self.half, mode="reflect" if self.reflect else "constant")
        else:
            tail = self.recent[-self.half - 1: -1][::-1] if self.reflect else np.zeros(self.half, np.float32)
            buffer = np.concatenate([self.buffer, tail])
        need = (remaining - 1) * self.stride + self.span
        buffer = np.concatenate([buffer, np.zeros(max(0, need - len(buffer)), np.float32)])
        for start in range(0, remaining, self.batch):
            yield self._cut(buffer[start * self.stride:], min(self.batch, remaining - start))

    def _pad_start(self, y: np.ndarray) -> np.ndarray:
        pad = y[1: self.half + 1][::-1] if self.reflect else np.zeros(self.half, np.float32)
        return np.concatenate([pad, y])

    def _ready(self) -> Iterator:
        """Whole batches of the segments the buffer holds completely."""
        ready = 0 if len(self.buffer) < self.span else 1 + (len(self.buffer) - self.span) // self.stride
        while ready >= self.batch:
            yield self._cut(self.buffer, self.batch)
            advance = self.batch * self.stride
            self.skip += max(0, advance - len(self.buffer))
            self.buffer = self.buffer[advance:]
            self.emitted += self.batch
            ready -= self.batch

    def _cut(self, buf: np.ndarray, count: int):
        torch = _torch()
        idx = np.arange(count)[:, None] * self.stride + np.arange(self.span)[None, :]
        frames = self.logmel.frames_to_logmel(torch.from_numpy(buf[idx]))
        return apply_top_db(frames[..., : self.config.segment_frames], self.config)


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
