"""One track → its segments and content hashes: the step every ``prepare`` engine runs.

The hashes identify training audio by content, so the leakage guard recognises a
training file whatever it is called: ``sha256`` of the file's bytes, and
``audio_sha256`` of the decoded waveform at the feature sample rate (the same audio
with other tags or in another lossless container gives the same value).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import MIN_DURATION
from ..config import FeatureConfig
from ..datasets.base import Track
from ..errors import AudioError, TooLongError

HASH_CHUNK = 1 << 20


@dataclass
class PrepareOptions:
    """How tracks are read for a cache.

    ``excerpt``: seconds of a centred excerpt per track (None = windows over the whole
    file); ``max_duration``: longer files fail (after ``excerpt``), ``min_duration``:
    shorter ones fail.
    """

    excerpt: float | None = None
    max_duration: float | None = 1200.0
    min_duration: float = MIN_DURATION


def file_sha256(path) -> str:
    """SHA-256 of a file's bytes.

    Examples
    --------
    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile(delete=False) as f:
    ...     _ = f.write(b"abc")
    >>> file_sha256(f.name)[:12]
    'ba7816bf8f01'
    >>> os.unlink(f.name)
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def audio_sha256(y: np.ndarray) -> str:
    """SHA-256 of a decoded float32 waveform."""
    return hashlib.sha256(np.ascontiguousarray(y, dtype=np.float32).tobytes()).hexdigest()


def decoded_sha256(path, sr: int) -> str:
    """:func:`audio_sha256` of a whole file decoded at ``sr``, read block by block (memory does not
    grow with the file): the same audio in another lossless container or with other tags gives the
    same value, as the leakage guard needs."""
    from ..audio import stream_audio

    digest = hashlib.sha256()
    for block in stream_audio(path, sr, 0.0, None):
        digest.update(np.ascontiguousarray(block, dtype=np.float32).tobytes())
    return digest.hexdigest()


def _window(track: Track, options: PrepareOptions) -> tuple[float, float | None]:
    from ..audio import audio_info

    if options.excerpt is None and options.max_duration is None:
        return 0.0, None
    info = audio_info(track.path)
    if options.excerpt is not None:
        if info.duration is not None and info.duration > options.excerpt:
            return (info.duration - options.excerpt) / 2, options.excerpt
        return 0.0, None
    if info.duration is not None and info.duration > options.max_duration + 0.5:
        raise TooLongError(track.path, f"{info.duration:.0f} s > {options.max_duration:.0f} s; use an excerpt")
    return 0.0, None


def featurize_track(track: Track, config: FeatureConfig, options: PrepareOptions):
    """Decode one track and compute its segments: ``(record, float16 array)``.

    Raises :class:`~genrekit.errors.AudioError` for unusable audio.
    """
    from ..audio import check_waveform, stream_audio
    from ..features import iter_segments

    offset, duration = _window(track, options)
    # The waveform is checked as a whole, so it is read into memory (bounded by max_duration).
    blocks = list(stream_audio(track.path, config.sr, offset, duration))
    y = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    check_waveform(y, config.sr, track.path, min_duration=options.min_duration)
    segments = np.concatenate([np.asarray(b) for b in iter_segments([y], config, batch_segments=256)])
    record = track.to_dict() | {"duration": round(len(y) / config.sr, 3), "n_segments": len(segments),
                                "sha256": file_sha256(track.path), "audio_sha256": audio_sha256(y)}
    return record, segments.astype(np.float16)


def failure_reason(error: Exception) -> str:
    """The reason recorded for a track that failed (the same in every engine)."""
    if isinstance(error, AudioError):
        return f"{error.reason}" + (f" ({error.detail})" if error.detail else "")
    return f"unexpected error: {type(error).__name__}: {error}"


def featurize_or_reason(track: Track, config: FeatureConfig, options: PrepareOptions):
    """``(record, segments, None)``, or ``(None, None, reason)`` when the track cannot be used.

    A decoder bug must not stop a batch, so every exception becomes a reason.
    """
    try:
        record, segments = featurize_track(track, config, options)
        return record, segments, None
    except Exception as e:
        return None, None, failure_reason(e)


def failure_record(track: Track, reason: str) -> dict:
    return {"track_id": track.track_id, "path": str(Path(track.path)), "reason": reason}
