"""The CPU work of one request: duration checks, prediction, the spectrogram for the page.

Everything here is blocking and runs in a worker thread (see :mod:`genrekit.service.app`).

The duration limit is enforced twice: from the header with
:func:`~genrekit.audio.audio_info` before anything is decoded, and while decoding by
reading at most a little more than the limit, so a file whose header does not say (or
lies) is still refused without being decoded to its end.

The spectrogram is the log-mel the model sees (same :class:`~genrekit.config.FeatureConfig`
and segments), averaged down in time to at most ``max_columns`` columns and quantised to
uint8, so the page can draw it on a canvas without any plotting library.
"""
from __future__ import annotations

import base64
import time
from pathlib import Path

import numpy as np

from ..audio import audio_info, stream_audio
from ..errors import NotAudioError, TooLongError
from ..features import iter_segments, n_segments

TOLERANCE_S = 0.5  # headers and decoders disagree by a frame or two
MAX_COLUMNS = 2400


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
        If the file is not audio or cannot be opened.
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
        Add ``spectrogram`` (see :func:`spectrogram_payload`).

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
    prediction = model.predict_file(path, max_duration=decode_cap(max_duration_s))
    check_decoded_duration(path, prediction.duration, max_duration_s)
    prediction.path = name
    result = prediction.to_dict(top_k)
    if spectrogram:
        result["spectrogram"] = spectrogram_payload(path, model.feature_config, max_duration_s, info.duration)
    result["processing_seconds"] = round(time.perf_counter() - start, 4)
    return result


def spectrogram_payload(path: Path, config, max_duration_s: float, duration: float | None = None,
                        max_columns: int = MAX_COLUMNS) -> dict:
    """The file's log-mel segments, downsampled and quantised for the page.

    Parameters
    ----------
    path : Path
    config : FeatureConfig
        The model's feature settings.
    max_duration_s : float
        Decoding stops just past it.
    duration : float, optional
        Expected length (from the header), to choose the columns per segment.
    max_columns : int
        Upper bound on the image width (columns of all segments together).

    Returns
    -------
    dict
        ``data``: base64 of a uint8 matrix, row-major, ``shape`` = ``[n_mels, n_columns]``,
        row 0 the lowest mel band; segment ``i`` is columns
        ``[i * columns_per_segment, (i + 1) * columns_per_segment)``; value ``v`` stands
        for ``vmin + v / 255 * (vmax - vmin)`` in ``unit``. ``freq_ticks``: mel band
        positions with Hz labels for the frequency axis.
    """
    expected = n_segments(int((duration or max_duration_s) * config.sr), config)
    columns = int(np.clip(max_columns // max(expected, 1), 2, config.segment_frames))
    blocks = stream_audio(path, config.sr, 0.0, decode_cap(max_duration_s))
    pooled = [_pool_time(batch, columns) for batch in iter_segments(blocks, config, 32)]
    segments = np.concatenate(pooled) if pooled else np.zeros((0, config.n_mels, columns), np.float32)
    image = np.concatenate(list(segments), axis=1) if len(segments) else np.zeros((config.n_mels, 0), np.float32)
    data, vmin, vmax = _quantise(image, config)
    return {"format": "uint8-base64", "data": base64.b64encode(data.tobytes()).decode("ascii"),
            "shape": list(data.shape), "columns_per_segment": columns, "n_segments": int(len(segments)),
            "vmin": vmin, "vmax": vmax, "unit": config.value_unit,
            "freq_ticks": _freq_ticks(config)}


def _pool_time(batch, columns: int) -> np.ndarray:
    """Average ``(n, n_mels, frames)`` segments down to ``columns`` frames each."""
    import torch

    return torch.nn.functional.adaptive_avg_pool1d(torch.as_tensor(batch).float(), columns).numpy()


def _quantise(image: np.ndarray, config) -> tuple[np.ndarray, float, float]:
    """uint8 levels over ``[vmin, vmax]``: the top ``top_db`` below the peak for dB features."""
    if image.size == 0:
        return image.astype(np.uint8), 0.0, 1.0
    vmax = float(image.max())
    vmin = float(image.min())
    if config.frontend == "logmel_db" and config.top_db is not None:
        vmin = max(vmin, vmax - float(config.top_db))
    span = max(vmax - vmin, 1e-6)
    levels = np.clip(np.round((image - vmin) / span * 255.0), 0, 255).astype(np.uint8)
    return levels, round(vmin, 3), round(vmax, 3)


def _freq_ticks(config) -> list[dict]:
    from ..plots import mel_ticks

    positions, labels = mel_ticks(config)
    return [{"band": round(float(p), 2), "label": label} for p, label in zip(positions, labels, strict=True)]
