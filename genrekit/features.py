"""Spectrogram features in numpy, cut into segments; no torch, no scipy.

The transform matches librosa: a periodic Hann window, centred frames (the signal padded
by ``n_fft // 2`` at both ends as ``pad_mode``), power spectrum, then per front end:

- ``logmel_db``: Slaney mel filters, ``power_to_db(ref=1, amin=1e-10)``, and each
  segment floored at its own maximum minus ``top_db``;
- ``musicnn``: Slaney mel filters, ``log10(1 + 10000 mel)``;
- ``stft_db``: the 1025-bin linear spectrum as ``amplitude_to_db(abs(S), ref=np.max)``
  over each clip (see :class:`~genrekit.config.FeatureConfig`).

Two ways of cutting a signal into segments, both streamed (:func:`iter_segments`) and
both independent of how the signal is cut into blocks:

- fixed-length segments (default): ``segment_frames`` consecutive STFT frames of the
  whole signal every ``segment_hop_frames``;
- equal parts (``segment_count``): each clip of ``clip_seconds`` is transformed on its
  own, as a separate file would be, and cut into ``segment_count`` adjacent parts.

:class:`FeatureExtractor` holds the window and filters; :mod:`genrekit.features_torch`
has the same transform in torch for GPUs.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .config import FeatureConfig
from .errors import ConfigError

AMIN = 1e-10
FFT_CHUNK_SAMPLES = 1 << 15  # frames are transformed this many samples at a time (stays in cache)
MATMUL_FRAMES = 4096  # frames per product with the mel filters (bounds the power buffer: 17 MB at n_fft 2048)


# --- BLAS threads ------------------------------------------------------------------

_blas = {"users": 0, "limit": None, "controller": None}
_blas_lock = threading.Lock()


@contextmanager
def one_blas_thread():
    """numpy's BLAS on one thread inside the block (re-entrant and thread-safe: the first
    block in sets it, the last one out restores it).

    The spectrogram's product with the mel filters, the only BLAS call of the features, runs
    inside it (:meth:`FeatureExtractor.frames_to_features`), so features do not depend on the
    thread count: OpenBLAS sums in another order with more threads (on a 2-core AMD EPYC, 2 of
    165,120 float16 values of a clip's cache differed between ``prepare`` in-process and on
    Ray, whose workers run with one thread). It is also faster at prediction: with more
    threads, OpenBLAS's threads kept spinning after the product and slowed the network that
    follows (a 30 s clip: 0.326 s against 0.266 s on a 2-core Xeon, bench/predict.py,
    2026-12-02). Entering and leaving costs about 25 µs.
    """
    with _blas_lock:
        if _blas["users"] == 0:
            _blas["limit"] = _limit_blas()
        _blas["users"] += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas["users"] -= 1
            if _blas["users"] == 0 and _blas["limit"] is not None:
                _blas["limit"].restore_original_limits()
                _blas["limit"] = None
                _release_blas_control()


def _limit_blas():
    """A threadpoolctl limit of BLAS to one thread (None where threadpoolctl is missing)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    if _blas["controller"] is None:
        _blas["controller"] = ThreadpoolController()  # inspects the loaded libraries once: 10 ms
    _release_blas_control()
    return _blas["controller"].limit(limits=1, user_api="blas")


def _release_blas_control():
    """Let the next thread set OpenBLAS's threads: threadpoolctl (>= 3.6) lets only the first thread
    that set them set them again, until released; otherwise a limit set in a worker thread is a no-op."""
    try:
        from threadpoolctl import OpenBLASController

        OpenBLASController.clear_controlling_thread(force=True)
    except (ImportError, AttributeError):
        pass


def hz_to_mel(freqs):
    """Slaney's mel scale (librosa ``htk=False``): linear below 1 kHz, log above."""
    freqs = np.asanyarray(freqs, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    mels = freqs / f_sp
    log_part = freqs >= min_log_hz
    return np.where(log_part, min_log_mel + np.log(np.maximum(freqs, min_log_hz) / min_log_hz) / logstep, mels)


def mel_to_hz(mels):
    """Inverse of :func:`hz_to_mel`."""
    mels = np.asanyarray(mels, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), f_sp * mels)


@lru_cache(maxsize=16)
def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    """Triangular mel filters with Slaney area normalisation, shape ``(n_mels, 1 + n_fft // 2)``.

    Same as ``librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)``.
    The result is cached and read-only.
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
    weights = weights.astype(np.float32)
    weights.flags.writeable = False
    return weights


def hann_window(n_fft: int) -> np.ndarray:
    """Periodic Hann window (``scipy.signal.get_window("hann", n_fft)``, ``torch.hann_window``), float32."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


@lru_cache(maxsize=16)
def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Bilinear resampling of one axis as a ``(n_out, n_in)`` float32 matrix.

    Half-pixel centres; when shrinking, the triangle filter widens by the scale
    (antialiasing), as PIL's ``BILINEAR`` and ``torch.nn.functional.interpolate(mode=
    "bilinear", align_corners=False, antialias=True)``. Each row sums to 1.
    """
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = scale * (np.arange(n_out) + 0.5)
    # input pixel j's centre is j + 0.5; the filter reaches +- support around a centre
    first = np.maximum((centres - support + 0.5).astype(int), 0)
    last = np.minimum((centres + support + 0.5).astype(int), n_in)
    j = np.arange(n_in)
    weights = np.maximum(0.0, 1.0 - np.abs(j[None, :] + 0.5 - centres[:, None]) / support)
    weights[(j[None, :] < first[:, None]) | (j[None, :] >= last[:, None])] = 0.0
    weights /= weights.sum(axis=1, keepdims=True)
    weights = weights.astype(np.float32)
    weights.flags.writeable = False
    return weights


def resize_images(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``(B, H, W)`` float32 images to ``(B, *size)`` (see :func:`resize_matrix`).

    Examples
    --------
    >>> resize_images(np.ones((2, 1025, 258), np.float32), (224, 224)).shape
    (2, 224, 224)
    """
    rows = resize_matrix(images.shape[-2], size[0])
    cols = resize_matrix(images.shape[-1], size[1])
    return np.matmul(np.matmul(rows, images), cols.T)


def scale_to_level(spans, config: FeatureConfig) -> np.ndarray:
    """Each row of ``spans`` ``(B, n)`` scaled to an RMS of ``config.segment_rms_db`` dBFS,
    boosted by at most ``config.max_gain_db``; ``spans`` as float32 when no level is set.

    Examples
    --------
    >>> cfg = FeatureConfig(segment_rms_db=-20.0)
    >>> loud, soft = np.full((1, 100), 0.5, np.float32), np.full((1, 100), 0.005, np.float32)
    >>> np.allclose(scale_to_level(loud, cfg), scale_to_level(soft, cfg))
    True
    >>> float(scale_to_level(np.full((1, 100), 1e-6, np.float32), cfg).max()) < 1e-4  # 30 dB at most
    True
    """
    x = np.asarray(spans, dtype=np.float32)
    if config.segment_rms_db is None:
        return x
    rms = np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=-1, keepdims=True))
    gain = np.minimum(10.0 ** (config.segment_rms_db / 20.0) / np.maximum(rms, 1e-12),
                      10.0 ** (config.max_gain_db / 20.0))
    return (x * gain).astype(np.float32)


def apply_top_db(segments: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Floor each segment ``(n, bins, frames)`` at its own maximum minus ``top_db``.

    Only for ``logmel_db``; other front ends (and ``top_db=None``) return ``segments``
    itself. ``stft_db`` is floored per clip instead (:meth:`FeatureExtractor.clip_parts`).
    """
    if config.frontend != "logmel_db" or config.top_db is None:
        return segments
    return _floor_segments(np.array(segments, np.float32), config.top_db)


def _floor_segments(segments: np.ndarray, top_db: float) -> np.ndarray:
    """In place: ``max(x, max(segment) - top_db)`` per segment."""
    peaks = segments.max(axis=(-2, -1), keepdims=True)
    return np.maximum(segments, peaks - np.float32(top_db), out=segments)


class FeatureExtractor:
    """Padded signals → features, holding the window, filters and resize matrices.

    The numpy counterpart of :class:`genrekit.features_torch.TorchFeatureExtractor`;
    :func:`iter_segments` takes either.

    Parameters
    ----------
    config : FeatureConfig

    Examples
    --------
    >>> extractor = FeatureExtractor(FeatureConfig())
    >>> extractor.frames_to_features(np.zeros((2, 22050 + 1536), np.float32)).shape
    (2, 128, 43)
    """

    def __init__(self, config: FeatureConfig):
        self.config = config
        self.window = hann_window(config.n_fft)
        if config.frontend == "stft_db":
            self.filters_t = None
        else:
            fb = mel_filterbank(config.sr, config.n_fft, config.n_mels, config.fmin, config.fmax)
            self.filters_t = np.ascontiguousarray(fb.T)  # (bins, n_mels): power @ filters_t is fastest
        self.chunk_frames = max(1, FFT_CHUNK_SAMPLES // config.n_fft)

    def frames_to_features(self, padded) -> np.ndarray:
        """Uncentred STFT of already padded signals ``(B, n)`` → ``(B, n_bins, frames)`` float32.

        Frame ``k`` covers samples ``[k * hop, k * hop + n_fft)`` of ``padded``. The values
        are the front end's log scale without any floor or reference (``10 log10(max(x,
        1e-10))`` of the mel or linear power, or musicnn's ``log10(1 + 10000 mel)``).
        """
        cfg = self.config
        padded = np.asarray(padded, dtype=np.float32)
        if padded.ndim != 2 or padded.shape[1] < cfg.n_fft:
            raise ConfigError(f"need (batch, samples >= n_fft={cfg.n_fft}) padded signals, got {padded.shape}")
        frames = sliding_window_view(padded, cfg.n_fft, axis=-1)[:, :: cfg.hop_length]  # a view, no copy
        count, n_frames = frames.shape[:2]
        out = np.empty((count, cfg.n_bins, n_frames), np.float32)
        group = max(1, MATMUL_FRAMES // n_frames)  # signals whose frames go through one matmul
        with one_blas_thread():  # the same numbers on any core count (see one_blas_thread)
            for first in range(0, count, group):
                power = self._power(frames[first: first + group])
                if self.filters_t is not None:
                    flat = np.matmul(power.reshape(-1, power.shape[-1]), self.filters_t)  # one large product
                    power = flat.reshape(*power.shape[:2], -1)
                out[first: first + group] = power.transpose(0, 2, 1)
        return self._log_scale(out)

    def _power(self, frames: np.ndarray) -> np.ndarray:
        """``|rfft(window * frame)|^2`` of ``(B, T, n_fft)`` frames → ``(B, T, bins)``, in cache-sized chunks."""
        power = np.empty((*frames.shape[:2], self.config.n_fft // 2 + 1), np.float32)
        for signal, out in zip(frames, power):
            for start in range(0, len(signal), self.chunk_frames):
                stop = start + self.chunk_frames
                spectrum = np.fft.rfft(signal[start:stop] * self.window, axis=-1)  # complex64 with numpy >= 2
                np.square(spectrum.real, out=out[start:stop], casting="same_kind")
                out[start:stop] += np.square(spectrum.imag)
        return power

    def _log_scale(self, x: np.ndarray) -> np.ndarray:
        if self.config.frontend == "musicnn":
            x *= np.float32(10000.0)
            x += np.float32(1.0)
            return np.log10(x, out=x)
        np.maximum(x, np.float32(AMIN), out=x)
        np.log10(x, out=x)
        x *= np.float32(10.0)
        return x

    def segment_features(self, padded) -> np.ndarray:
        """Fixed-length segments: padded spans ``(B, (segment_frames - 1) * hop + n_fft)``
        → ``(B, *segment_shape)``, each brought to ``segment_rms_db`` if set
        (:func:`scale_to_level`), floored at its own ``max - top_db`` (``logmel_db``)
        and resized to ``image_size`` if set."""
        cfg = self.config
        segments = self.frames_to_features(scale_to_level(padded, cfg))[..., : cfg.segment_frames]
        return self._finish(segments)

    def clip_parts(self, padded_clip, count: int) -> np.ndarray:
        """Equal parts: one padded clip ``(n,)`` → its first ``count`` parts ``(count, *segment_shape)``.

        ``stft_db`` takes the clip's loudest bin as 0 dB and floors at ``-top_db``
        (``amplitude_to_db(abs(S), ref=np.max, top_db=top_db)`` over the clip's frames).
        """
        cfg = self.config
        spec = self.frames_to_features(np.asarray(padded_clip, np.float32)[None])[0]  # (bins, frames)
        if cfg.frontend == "stft_db":
            spec -= spec.max()
            if cfg.top_db is not None:
                np.maximum(spec, np.float32(-cfg.top_db), out=spec)
        length = cfg.segment_frames
        parts = spec[:, : count * length].reshape(spec.shape[0], count, length).transpose(1, 0, 2)
        return self._finish(np.ascontiguousarray(parts))

    def _finish(self, segments: np.ndarray) -> np.ndarray:
        cfg = self.config
        if cfg.frontend == "logmel_db" and cfg.top_db is not None:
            _floor_segments(segments, cfg.top_db)
        if cfg.image_size is not None:
            segments = resize_images(segments, cfg.image_size)
        return segments

    @staticmethod
    def concatenate(parts: list) -> np.ndarray:
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def empty(self) -> np.ndarray:
        """No segments: ``(0, *segment_shape)``."""
        return np.zeros((0, *self.config.segment_shape), np.float32)


def n_segments(n_samples: int, config: FeatureConfig) -> int:
    """How many segments a signal of ``n_samples`` gives.

    Fixed-length segments: with centred frames a signal has ``T = 1 + n_samples // hop``
    frames; segments of ``L`` frames start every ``H`` frames while they fit, so a 30 s
    clip gives 10 of 3 s and the tail shorter than a segment is dropped.

    Equal parts: ``segment_count`` per whole clip of ``clip_seconds``, plus the whole
    parts (of the same ``segment_frames``) that the shorter last clip holds.

    Either way a signal shorter than one segment is padded with silence to one segment.

    Examples
    --------
    >>> from genrekit.config import SEED_FEATURES
    >>> n_segments(30 * 44100, SEED_FEATURES), n_segments(65 * 44100, SEED_FEATURES)
    (10, 21)
    """
    length = config.segment_frames
    if config.segment_count is not None:
        full, rest = divmod(n_samples, config.clip_samples)
        tail = min(config.segment_count, (1 + rest // config.hop_length) // length) if rest else 0
        return max(1, full * config.segment_count + tail)
    total = 1 + n_samples // config.hop_length
    return 1 if total < length else 1 + (total - length) // config.segment_hop_frames


def segment_starts(n_samples: int, config: FeatureConfig) -> np.ndarray:
    """Start time in seconds of each segment."""
    index = np.arange(n_segments(n_samples, config))
    if config.segment_count is not None:
        clip, part = np.divmod(index, config.segment_count)
        return (clip * config.clip_samples + part * config.segment_frames * config.hop_length) / config.sr
    return index * config.segment_hop_frames * config.hop_length / config.sr


def iter_segments(blocks: Iterable[np.ndarray], config: FeatureConfig, batch_segments: int = 20,
                  extractor=None) -> Iterator[np.ndarray]:
    """Turn a stream of mono waveform blocks into batches of segment features.

    Memory is bounded by ``batch_segments`` segments plus one block (plus one clip in
    equal-parts mode), whatever the length of the stream. The result is the same as for
    the whole signal at once, however the signal is cut into blocks.

    Parameters
    ----------
    blocks : iterable of 1-D float arrays
    config : FeatureConfig
    batch_segments : int
        Segments per batch; the last batch may be shorter.
    extractor : FeatureExtractor or TorchFeatureExtractor, optional
        Reused across calls to save building the filters; its config must be ``config``.

    Yields
    ------
    numpy.ndarray, shape (n, *config.segment_shape), float32
        (a torch tensor on the extractor's device for a ``TorchFeatureExtractor``)

    Examples
    --------
    >>> y = np.zeros(30 * 22050, np.float32)
    >>> [len(b) for b in iter_segments([y[:1000], y[1000:]], FeatureConfig(), batch_segments=4)]
    [4, 4, 2]
    """
    if batch_segments < 1:
        raise ConfigError(f"batch_segments must be positive, not {batch_segments}")
    extractor = extractor or FeatureExtractor(config)
    if extractor.config != config:
        raise ConfigError("the extractor was built for other feature settings than config")
    kind = _Segmenter if config.segment_count is None else _ClipSegmenter
    segmenter = kind(config, extractor, batch_segments)
    for block in blocks:
        yield from segmenter.feed(block)
    yield from segmenter.finish()


def waveform_segments(y: np.ndarray, config: FeatureConfig, extractor=None) -> np.ndarray:
    """All segments of one waveform: ``(n_segments, *segment_shape)`` float32 array.

    Examples
    --------
    >>> y = np.random.default_rng(0).standard_normal(30 * 22050).astype("float32")
    >>> waveform_segments(y, FeatureConfig()).shape
    (10, 128, 129)
    """
    extractor = extractor or FeatureExtractor(config)
    parts = list(iter_segments([y], config, batch_segments=10**9, extractor=extractor))
    return extractor.concatenate(parts) if parts else extractor.empty()


def _mono(block) -> np.ndarray:
    block = np.asarray(block, np.float32)
    if block.ndim != 1:
        raise ConfigError(f"waveform blocks must be mono 1-D arrays, got shape {block.shape}")
    return block


class _Segmenter:
    """Fixed-length segments: cuts the centred (padded) signal as its blocks arrive.

    The padded signal is the real one with ``n_fft // 2`` samples before and after
    (zeros, or its reflection as ``numpy.pad(mode="reflect")``). ``buffer`` holds it from
    the next segment's first sample; segments that hop by more than their span leave
    gaps, which are dropped from the blocks as they arrive (``skip``).
    """

    def __init__(self, config: FeatureConfig, extractor, batch_segments: int):
        self.config, self.extractor, self.batch = config, extractor, batch_segments
        self.half = config.n_fft // 2
        self.reflect = config.pad_mode == "reflect"
        self.span = (config.segment_frames - 1) * config.hop_length + config.n_fft  # padded samples per segment
        self.stride = config.segment_hop_frames * config.hop_length  # between segment starts
        self.head = np.zeros(0, np.float32)  # real samples until the start padding can be made
        self.buffer: np.ndarray | None = None
        self.recent = np.zeros(0, np.float32)  # the last half + 1 real samples, to reflect at the end
        self.consumed = self.emitted = self.skip = 0

    def feed(self, block) -> Iterator:
        block = _mono(block)
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
        spans = sliding_window_view(buf[: (count - 1) * self.stride + self.span], self.span)[:: self.stride]
        return self.extractor.segment_features(spans)


class _ClipSegmenter:
    """Equal parts: collects each clip of ``clip_samples``, transforms it on its own and
    cuts it into ``segment_count`` parts; batches may span clips."""

    def __init__(self, config: FeatureConfig, extractor, batch_segments: int):
        self.config, self.extractor, self.batch = config, extractor, batch_segments
        self.blocks: list[np.ndarray] = []  # samples of the clip being collected
        self.held = 0
        self.parts: list = []  # segments not yet yielded
        self.pending = self.emitted = 0

    def feed(self, block) -> Iterator:
        block = _mono(block)
        if len(block):
            self.blocks.append(block)
            self.held += len(block)
        clip_samples = self.config.clip_samples
        while self.held >= clip_samples:
            samples = self.blocks[0] if len(self.blocks) == 1 else np.concatenate(self.blocks)
            rest = samples[clip_samples:]
            self.blocks, self.held = ([rest] if len(rest) else []), len(rest)
            self._add(self._parts(samples[:clip_samples], self.config.segment_count))
            yield from self._full_batches()

    def finish(self) -> Iterator:
        """The last, shorter clip's whole parts (silence up to one part if there is nothing else)."""
        if self.held:
            tail = np.concatenate(self.blocks)
            frames = 1 + len(tail) // self.config.hop_length
            count = min(self.config.segment_count, frames // self.config.segment_frames)
            if count == 0 and self.emitted + self.pending == 0:
                count = 1
            if count:
                self._add(self._parts(tail, count))
        yield from self._full_batches()
        if self.pending:
            yield self._take(self.pending)

    def _parts(self, clip: np.ndarray, count: int):
        cfg = self.config
        padded = np.pad(clip, cfg.n_fft // 2, mode="reflect" if cfg.pad_mode == "reflect" else "constant")
        need = (cfg.segment_frames - 1) * cfg.hop_length + cfg.n_fft  # one part: silence after a short file
        if len(padded) < need:
            padded = np.concatenate([padded, np.zeros(need - len(padded), np.float32)])
        return self.extractor.clip_parts(padded, count)

    def _add(self, parts) -> None:
        self.parts.append(parts)
        self.pending += len(parts)

    def _full_batches(self) -> Iterator:
        while self.pending >= self.batch:
            yield self._take(self.batch)

    def _take(self, count: int):
        joined = self.extractor.concatenate(self.parts)
        batch, rest = joined[:count], joined[count:]
        self.parts = [rest] if len(rest) else []
        self.pending -= count
        self.emitted += count
        return batch
