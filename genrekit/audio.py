"""Audio decoding: any common format to a mono float32 waveform at a chosen rate.

libsndfile (through soundfile) reads WAV, FLAC, OGG, MP3 and AU and can seek, so a
window of a long file is read without decoding the rest. PyAV (FFmpeg) reads what
libsndfile cannot (M4A/AAC, WMA, ...). soxr resamples as a stream, so memory stays
bounded by the block size plus the output.

Every failure is an :class:`~genrekit.errors.AudioError` naming the path and the reason.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import (AudioError, AudioMissingError, CorruptAudioError, EmptyAudioError,
                     NonFiniteAudioError, NotAudioError, SilentAudioError, TooLongError,
                     TooShortError)

AUDIO_EXTENSIONS = frozenset({
    ".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".au", ".aiff", ".aif", ".m4a",
    ".aac", ".mp4", ".wma", ".webm",
})
BLOCK_SECONDS = 30.0
SILENCE_PEAK = 1e-6  # peak below this (about -120 dBFS) counts as digital silence

# Leading bytes of audio containers; a file that starts with one but fails to decode is
# corrupt, anything else that fails is "not audio".
_AUDIO_MAGIC = (b"RIFF", b"ID3", b"fLaC", b"OggS", b".snd", b"FORM", b"\xff\xfb", b"\xff\xf3",
                b"\xff\xf2", b"\xff\xfa", b"\xff\xe3", b"\xff\xf1", b"\xff\xf9", b"0&\xb2u")


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header without decoding."""

    path: str
    samplerate: int
    channels: int
    duration: float | None  # seconds; None where the container does not say


def is_audio_path(path) -> bool:
    """True if ``path`` has a known audio file extension."""
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


def find_audio_files(paths) -> list[Path]:
    """Expand files and folders (recursively, by audio extension) into a sorted file list.

    A path given directly is kept whatever its extension, so that a wrongly named file
    is reported rather than silently skipped.
    """
    found: list[Path] = []
    for p in map(Path, [paths] if isinstance(paths, (str, os.PathLike)) else paths):
        if p.is_dir():
            found.extend(sorted(f for f in p.rglob("*") if f.is_file() and is_audio_path(f)))
        else:
            found.append(p)
    return found


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioMissingError(path, "no such file")
    if path.is_dir():
        raise NotAudioError(path, "is a folder")
    if not os.access(path, os.R_OK):
        raise AudioMissingError(path, "permission denied")
    if path.stat().st_size == 0:
        raise EmptyAudioError(path, "0 bytes")


def _looks_like_audio(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(12)
    return head.startswith(_AUDIO_MAGIC) or head[4:8] == b"ftyp"


class _SoundfileReader:
    def __init__(self, path: Path):
        import soundfile as sf

        self._sf = sf.SoundFile(str(path))
        self.samplerate = self._sf.samplerate
        self.channels = self._sf.channels
        frames = self._sf.frames
        self.duration = frames / self.samplerate if 0 < frames < 2**62 else None

    def blocks(self, offset: float, duration: float | None, block_seconds: float):
        start = int(round(offset * self.samplerate))
        if start:
            self._sf.seek(min(start, max(self._sf.frames - 1, 0)) if self._sf.seekable() else 0)
        remaining = None if duration is None else int(round(duration * self.samplerate))
        blocksize = int(block_seconds * self.samplerate)
        while remaining is None or remaining > 0:
            n = blocksize if remaining is None else min(blocksize, remaining)
            block = self._sf.read(n, dtype="float32", always_2d=True)
            if len(block) == 0:
                return
            if remaining is not None:
                remaining -= len(block)
            yield block

    def close(self):
        self._sf.close()


class _PyAVReader:
    def __init__(self, path: Path):
        import av

        self._container = av.open(str(path))
        if not self._container.streams.audio:
            self._container.close()
            raise NotAudioError(path, "container has no audio stream")
        self._stream = self._container.streams.audio[0]
        self.samplerate = self._stream.codec_context.sample_rate or self._stream.rate
        self.channels = self._stream.codec_context.channels or 1
        dur = self._stream.duration
        if dur is not None and self._stream.time_base is not None:
            self.duration = float(dur * self._stream.time_base)
        elif self._container.duration:
            self.duration = self._container.duration / 1_000_000
        else:
            self.duration = None

    def blocks(self, offset: float, duration: float | None, block_seconds: float):
        import av

        skip = 0
        if offset > 0:
            # Seek lands on a packet at or before the target; the rest is skipped by count.
            self._container.seek(int(offset * 1_000_000), any_frame=False)
        resampler = av.AudioResampler(format="flt", layout=None, rate=None)
        want = None if duration is None else int(round(duration * self.samplerate))
        pending, got = [], 0
        for frame in self._container.decode(self._stream):
            if offset > 0 and skip == 0 and frame.time is not None:
                skip = max(0, int(round((offset - frame.time) * self.samplerate)))
                offset = -1.0  # computed once
            for out in resampler.resample(frame):
                data = out.to_ndarray().reshape(-1, out.layout.nb_channels if hasattr(out.layout, "nb_channels") else len(out.layout.channels))
                if skip:
                    cut = min(skip, len(data))
                    data, skip = data[cut:], skip - cut
                if want is not None:
                    data = data[: max(0, want - got)]
                got += len(data)
                pending.append(data)
            if sum(len(p) for p in pending) >= block_seconds * self.samplerate:
                yield np.concatenate(pending)
                pending = []
            if want is not None and got >= want:
                break
        if pending:
            yield np.concatenate(pending)

    def close(self):
        self._container.close()


def _open(path: Path):
    """Open with libsndfile, falling back to PyAV; classify failures."""
    _check_file(path)
    try:
        return _SoundfileReader(path)
    except Exception as sf_error:  # libsndfile refused: try FFmpeg
        try:
            return _PyAVReader(path)
        except AudioError:
            raise
        except Exception as av_error:
            if _looks_like_audio(path):
                raise CorruptAudioError(path, f"{sf_error}; {av_error}".strip()) from None
            raise NotAudioError(path, "no decoder recognises it") from None


def audio_info(path) -> AudioInfo:
    """Sample rate, channels and duration from the file header.

    Examples
    --------
    >>> audio_info("song.mp3").duration  # doctest: +SKIP
    30.01
    """
    path = Path(path)
    reader = _open(path)
    try:
        return AudioInfo(str(path), reader.samplerate, reader.channels, reader.duration)
    finally:
        reader.close()


def stream_audio(path, sr: int = 22050, offset: float = 0.0, duration: float | None = None,
                 block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Yield a file's audio as mono float32 blocks at ``sr``, with bounded memory.

    Decoding errors become :class:`~genrekit.errors.CorruptAudioError`; NaN/Inf samples
    raise :class:`~genrekit.errors.NonFiniteAudioError`.
    """
    import soxr

    path = Path(path)
    if offset < 0 or (duration is not None and duration <= 0):
        raise ValueError("offset must be >= 0 and duration > 0")
    reader = _open(path)
    try:
        resampler = None
        if reader.samplerate != sr:
            resampler = soxr.ResampleStream(reader.samplerate, sr, 1, dtype="float32", quality="HQ")
        blocks = reader.blocks(offset, duration, block_seconds)
        while True:
            try:
                block = next(blocks)
            except StopIteration:
                block = None
            except AudioError:
                raise
            except Exception as e:
                raise CorruptAudioError(path, str(e)) from None
            last = block is None
            if not last:
                if not np.isfinite(block).all():
                    raise NonFiniteAudioError(path)
                mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
            else:
                mono = np.zeros(0, np.float32)
            if resampler is not None:
                mono = resampler.resample_chunk(mono, last=last)
            if len(mono):
                yield np.ascontiguousarray(mono, dtype=np.float32)
            if last:
                return
    finally:
        reader.close()


def load_audio(path, sr: int = 22050, mono: bool = True, offset: float = 0.0,
               duration: float | None = None, min_duration: float = 0.5,
               max_duration: float | None = None, allow_silent: bool = False) -> np.ndarray:
    """Decode an audio file to a mono float32 waveform at ``sr``.

    Parameters
    ----------
    path : str or Path
    sr : int
        Target sample rate (soxr, high quality).
    mono : bool
        Only mono output is supported: channels are averaged.
    offset, duration : float
        Window to read, in seconds. Only that window is decoded.
    min_duration : float
        Shorter audio raises :class:`~genrekit.errors.TooShortError`.
    max_duration : float or None
        Longer audio raises :class:`~genrekit.errors.TooLongError` (checked from the
        header before decoding where the header says).
    allow_silent : bool
        If False, all-silent audio raises :class:`~genrekit.errors.SilentAudioError`.

    Returns
    -------
    numpy.ndarray, shape (n_samples,), float32

    Examples
    --------
    >>> y = load_audio("blues.00000.wav", sr=22050, offset=10, duration=3)  # doctest: +SKIP
    >>> y.shape  # doctest: +SKIP
    (66150,)
    """
    if not mono:
        raise ValueError("genrekit works on mono audio; use mono=True")
    path = Path(path)
    if max_duration is not None and duration is None:
        info = audio_info(path)
        if info.duration is not None and info.duration - offset > max_duration + 0.5:
            raise TooLongError(path, f"{info.duration:.1f} s > {max_duration:.1f} s")
    parts, total = [], 0
    limit = None if max_duration is None else int((max_duration + 0.5) * sr)
    for block in stream_audio(path, sr, offset, duration):
        parts.append(block)
        total += len(block)
        if limit is not None and duration is None and total > limit:
            raise TooLongError(path, f"more than {max_duration:.1f} s")
    y = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    check_waveform(y, sr, path, min_duration=min_duration, allow_silent=allow_silent)
    return y


def check_waveform(y: np.ndarray, sr: int, path, min_duration: float = 0.5,
                   allow_silent: bool = False) -> None:
    """Raise the matching AudioError if ``y`` is empty, too short, silent or not finite."""
    if len(y) == 0:
        raise EmptyAudioError(path, "decoded to 0 samples")
    if not np.isfinite(y).all():
        raise NonFiniteAudioError(path)
    if len(y) < min_duration * sr:
        raise TooShortError(path, f"{len(y) / sr:.2f} s < {min_duration:.2f} s")
    if not allow_silent and float(np.abs(y).max()) < SILENCE_PEAK:
        raise SilentAudioError(path)
