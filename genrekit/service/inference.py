"""The CPU work of one request: duration checks, prediction, the spectrogram for the page.

Everything here is blocking and runs in a worker thread (see :mod:`genrekit.service.app`).
It uses numpy only (no torch), and what one request allocates is bounded:

* the file is decoded as a stream of blocks (:func:`genrekit.audio.stream_audio`) and
  at most a little more than ``max_duration_s`` is read;
* the model runs its segments in fixed-size chunks (:mod:`genrekit.runtime`), so its
  activations, not the file's length, set the peak;
* the page's spectrogram is computed :data:`BATCH_SEGMENTS` segments at a time and
  pooled into one buffer of at most :data:`MAX_COLUMNS` columns
  (:class:`SpectrogramBuilder`); no whole spectrogram is held.

The duration limit is enforced twice: from the header with
:func:`~genrekit.audio.audio_info` before anything is decoded, and while decoding by
reading at most a little more than the limit, so a file whose header does not say (or
lies) is still refused without being decoded to its end.
"""
from __future__ import annotations

import base64
import time
from pathlib import Path

import numpy as np

from ..audio import audio_info
from ..errors import ConfigError, NotAudioError, SilentAudioError, TooLongError
from ..features import hz_to_mel, mel_to_hz, n_segments
from ..prediction import silent_answer

TOLERANCE_S = 0.5  # headers and decoders disagree by a frame or two
MAX_COLUMNS = 2400
MIN_COLUMNS = 2  # per segment, while the image has room
BATCH_SEGMENTS = 8  # segments of the spectrogram's features computed at once


def check_header_duration(path: Path, max_duration_s: float):
    """Refuse a file whose header says it is longer than ``max_duration_s``.

    Returns
    -------
    AudioInfo
        What the header says (``duration`` may be None).

    Raises
    ------
    TooLongError
        If the header's duration passes the limit.
    NotAudioError
        If the header gives no sample rate (random bytes named ``.mp3``).
    AudioError
        If the file is not audio, cannot be opened, or is out of what genrekit decodes.
    """
    info = audio_info(path)
    if info.samplerate <= 0 or info.channels <= 0:  # FFmpeg trusted the extension and found nothing
        raise NotAudioError(path, f"no audio stream found, sample rate {info.samplerate}")
    if info.duration is not None and info.duration > max_duration_s + TOLERANCE_S:
        raise TooLongError(path, f"{info.duration:.1f} s > limit of {max_duration_s:g} s")
    return info


def decode_cap(max_duration_s: float) -> float:
    """Seconds to decode at most: just past the limit, so "longer" can be told from "equal"."""
    return max_duration_s + TOLERANCE_S + 1.0


def check_decoded_duration(path: Path, duration: float, max_duration_s: float) -> None:
    """Refuse audio whose decoded length passes the limit (the header did not say, or lied)."""
    if duration > max_duration_s + TOLERANCE_S:
        raise TooLongError(path, f"more than {max_duration_s:g} s (limit)")


def predict_upload(model, path: Path, name: str, max_duration_s: float, top_k: int | None = None,
                   spectrogram: bool = False) -> dict:
    """Classify an uploaded file; the JSON of ``genrekit predict --format json`` for it.

    Parameters
    ----------
    model : GenreClassifier
    path : Path
        The uploaded file on the server.
    name : str
        The client's sanitised file name, reported as ``path``.
    max_duration_s : float
        Longest accepted audio.
    top_k : int, optional
        Probabilities to report (all labels by default).
    spectrogram : bool
        Add ``spectrogram`` (see :meth:`SpectrogramBuilder.payload`).

    Returns
    -------
    dict
        ``Prediction.to_dict()`` plus ``processing_seconds`` (decode, features, model:
        not the upload nor the wait for a worker).

    Raises
    ------
    AudioError
        Bad audio, including :class:`~genrekit.errors.TooLongError`.
    """
    start = time.perf_counter()
    info = check_header_duration(path, max_duration_s)
    builder = SpectrogramBuilder.for_file(model.feature_config, info.duration, max_duration_s) if spectrogram else None
    try:
        prediction = model.predict_file(path, max_duration=decode_cap(max_duration_s),
                                        on_batch=builder.add if builder is not None else None)
    except SilentAudioError as e:
        if not e.no_sound:
            raise
        result = silent_answer(name, e.reason)  # an answer, as `genrekit predict` gives it
    else:
        check_decoded_duration(path, prediction.duration, max_duration_s)
        prediction.path = name
        result = prediction.to_dict(top_k)
        if builder is not None:
            result["spectrogram"] = builder.payload(model.feature_config)
    result["processing_seconds"] = round(time.perf_counter() - start, 4)
    return result


def pool_time(x: np.ndarray, columns: int) -> np.ndarray:
    """Average the last axis of ``x`` down to ``columns`` bins (adaptive average pooling).

    Bin ``i`` is the mean of ``x[..., floor(i L / c) : ceil((i + 1) L / c)]`` for ``L``
    frames and ``c`` columns, as ``torch.nn.functional.adaptive_avg_pool1d``.

    Examples
    --------
    >>> pool_time(np.arange(6, dtype=np.float32), 3)
    array([0.5, 2.5, 4.5], dtype=float32)
    >>> pool_time(np.arange(5, dtype=np.float32), 2)
    array([1., 3.], dtype=float32)
    """
    length = x.shape[-1]
    if not 1 <= columns <= length:
        raise ConfigError(f"columns must be within 1-{length}, not {columns}")
    i = np.arange(columns)
    starts = (i * length) // columns
    ends = -((-(i + 1) * length) // columns)
    csum = np.zeros((*x.shape[:-1], length + 1), np.float64)
    np.cumsum(x, axis=-1, dtype=np.float64, out=csum[..., 1:])
    return ((csum[..., ends] - csum[..., starts]) / (ends - starts)).astype(np.float32)


class SpectrogramBuilder:
    """The page's spectrogram, built as the segment batches arrive.

    Each segment ``(rows, frames)`` is averaged down in time to ``columns`` columns and
    written into one float32 buffer ``(rows, capacity)``. If a file gives more segments
    than expected (its header under-stated its length), the columns already written are
    averaged down by half, so the buffer never grows.

    Parameters
    ----------
    expected_segments : int
        Segments the file should give; sets the columns per segment.
    capacity : int
        Columns of the buffer, at least the most segments the file can give.
    """

    def __init__(self, expected_segments: int, capacity: int = MAX_COLUMNS):
        self.expected = max(1, int(expected_segments))
        self.capacity = int(capacity)
        self.columns = 0
        self.n_segments = 0
        self.image: np.ndarray | None = None

    @classmethod
    def for_file(cls, config, header_duration: float | None, max_duration_s: float) -> SpectrogramBuilder:
        """A builder for a file whose header says ``header_duration`` seconds (None: unknown)."""
        most = n_segments(int(decode_cap(max_duration_s) * config.sr), config)
        expected = n_segments(int((header_duration or max_duration_s) * config.sr), config)
        return cls(min(expected, most), max(MAX_COLUMNS, most))

    def add(self, batch) -> None:
        """Append a batch of segments ``(n, rows, frames)`` (numpy, or anything ``np.asarray`` takes)."""
        batch = np.asarray(batch, dtype=np.float32)
        count, rows, frames = batch.shape
        if self.image is None:
            self.columns = int(np.clip(self.capacity // self.expected, min(MIN_COLUMNS, frames), frames))
            self.image = np.empty((rows, self.capacity), np.float32)
        while (self.n_segments + count) * self.columns > self.capacity and self.columns > 1:
            self._halve_columns()
        room = self.capacity // self.columns - self.n_segments
        count = min(count, room)  # cannot happen when capacity >= the most segments
        pooled = pool_time(batch[:count], self.columns)  # (count, rows, columns)
        first = self.n_segments * self.columns
        self.image[:, first: first + count * self.columns] = pooled.transpose(1, 0, 2).reshape(rows, -1)
        self.n_segments += count

    def _halve_columns(self) -> None:
        rows, used = self.image.shape[0], self.n_segments * self.columns
        new = max(1, self.columns // 2)
        written = self.image[:, :used].reshape(rows, self.n_segments, self.columns)
        self.image[:, : self.n_segments * new] = pool_time(written, new).reshape(rows, -1)
        self.columns = new

    def payload(self, config) -> dict:
        """The JSON for the page.

        Returns
        -------
        dict
            ``data``: base64 of a uint8 matrix, row-major, ``shape`` = ``[rows,
            n_columns]``, row 0 the lowest band; segment ``i`` is columns ``[i *
            columns_per_segment, (i + 1) * columns_per_segment)``; value ``v`` stands for
            ``vmin + v / 255 * (vmax - vmin)`` in ``unit``. ``freq_ticks``: band positions
            with Hz labels for the frequency axis.
        """
        rows = self.image.shape[0] if self.image is not None else config.segment_shape[0]
        used = self.image[:, : self.n_segments * self.columns] if self.image is not None else np.zeros((rows, 0))
        data, vmin, vmax = _quantise(used, config)
        return {"format": "uint8-base64", "data": base64.b64encode(data.tobytes()).decode("ascii"),
                "shape": list(data.shape), "columns_per_segment": self.columns, "n_segments": self.n_segments,
                "vmin": vmin, "vmax": vmax, "unit": config.value_unit, "freq_ticks": freq_ticks(config, rows)}


def _quantise(image: np.ndarray, config) -> tuple[np.ndarray, float, float]:
    """uint8 levels over ``[vmin, vmax]``: the top ``top_db`` below the peak for dB features."""
    if image.size == 0:
        return image.astype(np.uint8), 0.0, 1.0
    vmax = float(image.max())
    vmin = float(image.min())
    if config.value_unit == "dB" and config.top_db is not None:
        vmin = max(vmin, vmax - float(config.top_db))
    span = max(vmax - vmin, 1e-6)
    levels = np.clip(np.round((image - vmin) / span * 255.0), 0, 255).astype(np.uint8)
    return levels, round(vmin, 3), round(vmax, 3)


def freq_ticks(config, rows: int, n_ticks: int = 7) -> list[dict]:
    """Row positions with Hz labels for the frequency axis of ``rows`` rows.

    The rows span the model's bands (mel, or linear STFT bins), resized to ``rows`` if
    the model resizes its input.
    """
    fmax = config.fmax or config.sr / 2
    if config.frontend == "stft_db":
        band_hz = np.linspace(0.0, config.sr / 2, config.n_bins)
    else:
        band_hz = mel_to_hz(np.linspace(hz_to_mel(config.fmin), hz_to_mel(fmax), config.n_mels))
    positions = np.linspace(0, rows - 1, n_ticks)
    bands = positions * (len(band_hz) - 1) / max(rows - 1, 1)
    hz = np.interp(bands, np.arange(len(band_hz)), band_hz)
    labels = [f"{h / 1000:.1f}k" if h >= 1000 else f"{h:.0f}" for h in hz]
    return [{"band": round(float(p), 2), "label": label} for p, label in zip(positions, labels, strict=True)]
