"""Audio decoding: any common format to a mono float32 waveform at a chosen rate.

libsndfile (through soundfile) reads WAV, FLAC, OGG, MP3 and AU and can seek, so a
window of a long file is read without decoding the rest. PyAV (FFmpeg) reads what
libsndfile cannot (M4A/AAC, WMA, ...). soxr resamples as a stream, so memory stays
bounded by the block size plus the output.

A window (``offset``, ``duration``) equals the same stretch of the whole file decoded:
exactly without resampling, to float rounding with it (a few ms of context are decoded
around the window for the resampler). Channels are averaged.

Truncated files: where the header gives the exact length (WAV, FLAC, OGG, MP4, and MP3
with a Xing/Info header, as encoders write for every VBR and most CBR files), a decode
that ends more than ``max(1 s, 2 %)`` short of it raises
:class:`~genrekit.errors.CorruptAudioError`; libsndfile itself just returns fewer
samples. Without an exact length (MP3 without Xing header, ADTS AAC) a cut file cannot
be told from a short one and decodes to what is there.

Every failure is an :class:`~genrekit.errors.AudioError` naming the path and the reason.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
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
# Resampler context read beyond a window's edges, so that a window equals the same
# stretch of the whole file resampled (soxr's filter spans a few milliseconds).
RESAMPLE_MARGIN_SECONDS = 0.05
# A decode this much shorter than the header's length means a truncated file.
TRUNCATION_SECONDS, TRUNCATION_FRACTION = 1.0, 0.02

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
    """libsndfile: sample-accurate seeks; ``frames`` is exact for WAV, FLAC, OGG and
    for MP3 with a Xing/Info header (else estimated from the file size)."""

    def __init__(self, path: Path):
        import soundfile as sf

        self._sf = sf.SoundFile(str(path))
        self.samplerate = self._sf.samplerate
        self.channels = self._sf.channels
        frames = self._sf.frames
        self.frames = frames if 0 < frames < 2**62 else None
        self.duration = None if self.frames is None else self.frames / self.samplerate

    def blocks(self, start: int, count: int | None, block_frames: int):
        """Yield ``(n, channels)`` float32 blocks of frames ``[start, start + count)``."""
        if start:
            if self.frames is not None and start >= self.frames:
                return
            if not self._sf.seekable():
                raise OSError("file is not seekable")
            self._sf.seek(start)
        remaining = count
        while remaining is None or remaining > 0:
            n = block_frames if remaining is None else min(block_frames, remaining)
            block = self._sf.read(n, dtype="float32", always_2d=True)
            if len(block) == 0:
                return
            if remaining is not None:
                remaining -= len(block)
            yield block

    def close(self):
        self._sf.close()


class _PyAVReader:
    """FFmpeg through PyAV, for what libsndfile cannot read (M4A/AAC, WMA, ...)."""

    PREROLL_SECONDS = 0.5  # decode this much before a seek target: codecs (AAC's MDCT) need warm-up

    def __init__(self, path: Path):
        import av

        self._container = av.open(str(path))
        if not self._container.streams.audio:
            self._container.close()
            raise NotAudioError(path, "container has no audio stream")
        self._stream = self._container.streams.audio[0]
        self.samplerate = self._stream.codec_context.sample_rate or self._stream.rate
        if not self.samplerate:  # FFmpeg's probe guessed a codec for random bytes
            self._container.close()
            raise NotAudioError(path, "no sample rate in the audio stream")
        self.channels = self._stream.codec_context.channels or 1
        dur = self._stream.duration
        self.frames = None  # exact only where the container stores the stream's length
        if dur is not None and self._stream.time_base is not None:
            self.duration = float(dur * self._stream.time_base)
            self.frames = int(round(self.duration * self.samplerate))
        elif self._container.duration:
            self.duration = self._container.duration / 1_000_000  # estimated (e.g. from the bit rate)
        else:
            self.duration = None

    def blocks(self, start: int, count: int | None, block_frames: int):
        """Yield ``(n, channels)`` float32 blocks of frames ``[start, start + count)``."""
        import av

        offset = start / self.samplerate
        skip = None if start else 0
        if start:
            # Seek lands on a packet at or before the target; the rest is skipped by count.
            target = max(0.0, offset - self.PREROLL_SECONDS)
            self._container.seek(int(target * 1_000_000), any_frame=False)
        resampler = av.AudioResampler(format="flt", layout=None, rate=None)
        pending, pending_frames, got = [], 0, 0
        for frame in self._container.decode(self._stream):
            if skip is None:  # first frame after a seek: where did it land?
                t = frame.time if frame.time is not None else 0.0
                skip = max(0, int(round((offset - t) * self.samplerate)))
            for out in resampler.resample(frame):
                data = out.to_ndarray().reshape(-1, len(out.layout.channels))
                if skip:
                    cut = min(skip, len(data))
                    data, skip = data[cut:], skip - cut
                if count is not None:
                    data = data[: max(0, count - got)]
                got += len(data)
                pending.append(data)
                pending_frames += len(data)
            if pending_frames >= block_frames:
                yield np.concatenate(pending)
                pending, pending_frames = [], 0
            if count is not None and got >= count:
                break
        if pending_frames:
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


@dataclass(frozen=True)
class _Plan:
    """Input frames to decode and the output samples to keep for a window."""

    start: int              # first input frame to decode
    count: int | None       # input frames to decode (None: to the end)
    drop: int               # output samples to drop first (resampler context)
    keep: int | None        # output samples to keep after that (None: all)


def _plan_window(sr_in: int, sr: int, offset: float, duration: float | None) -> _Plan:
    """Plan a window so it matches the slice ``[round(offset * sr), + round(duration * sr))``
    of the whole file decoded and resampled.

    Without resampling the window is read exactly. With resampling, decoding starts a
    little early at an input frame that maps to a whole output sample (a multiple of
    the reduced ratio's denominator) and ends a little late; the extra output is cut.
    """
    keep = None if duration is None else int(round(duration * sr))
    if sr_in == sr:
        return _Plan(int(round(offset * sr)), keep, 0, None)
    out_start = int(round(offset * sr))
    if out_start == 0 and keep is None:
        return _Plan(0, None, 0, None)
    ratio = Fraction(sr, sr_in)
    step = ratio.denominator  # input frames per ratio.numerator output samples
    margin = int(RESAMPLE_MARGIN_SECONDS * sr_in)
    start = max(0, (out_start * step // ratio.numerator - margin) // step * step)
    drop = out_start - start // step * ratio.numerator
    count = None
    if keep is not None:
        end = -(-(out_start + keep) * step // ratio.numerator)  # ceil
        count = end + margin - start
    return _Plan(start, count, drop, keep)


def _check_complete(path: Path, reader, plan: _Plan, got: int) -> None:
    """Raise CorruptAudioError if far fewer frames decoded than the header promised."""
    if reader.frames is None:
        return
    expected = max(0, reader.frames - plan.start)
    if plan.count is not None:
        expected = min(expected, plan.count)
    shortfall = expected - got
    if shortfall > max(TRUNCATION_SECONDS * reader.samplerate, TRUNCATION_FRACTION * expected):
        sr = reader.samplerate
        raise CorruptAudioError(path, f"truncated: decoded {got / sr:.2f} s of the {expected / sr:.2f} s "
                                      "the header gives")


def _decoded_blocks(path: Path, reader, plan: _Plan, block_frames: int) -> Iterator[np.ndarray]:
    """The reader's blocks as mono float32, with decoder failures as CorruptAudioError."""
    blocks = reader.blocks(plan.start, plan.count, block_frames)
    got = 0
    while True:
        try:
            block = next(blocks)
        except StopIteration:
            break
        except AudioError:
            raise
        except Exception as e:
            raise CorruptAudioError(path, f"decoding failed: {e}") from None
        got += len(block)
        if not np.isfinite(block).all():
            raise NonFiniteAudioError(path)
        yield _downmix(block)
    _check_complete(path, reader, plan, got)


def _downmix(block: np.ndarray) -> np.ndarray:
    """Mean of the channels of ``(n, channels)`` float32, as ``block.mean(axis=1)``
    computes it for a few channels, but ten times faster (no strided reduction)."""
    if block.shape[1] == 1:
        return block[:, 0]
    mono = block[:, 0] + block[:, 1]
    for c in range(2, block.shape[1]):
        mono += block[:, c]
    mono /= np.float32(block.shape[1])
    return mono


def _trimmed(blocks: Iterator[np.ndarray], drop: int, keep: int | None) -> Iterator[np.ndarray]:
    """Drop the first ``drop`` samples of a block stream and stop after ``keep`` more."""
    for block in blocks:
        if drop:
            cut = min(drop, len(block))
            block, drop = block[cut:], drop - cut
        if keep is not None:
            block, keep = block[:keep], keep - min(keep, len(block))
        if len(block):
            yield block
        if keep == 0:
            return


def _resampled(blocks: Iterator[np.ndarray], sr_in: int, sr: int) -> Iterator[np.ndarray]:
    """Resample a block stream with soxr (high quality), as one continuous signal."""
    import soxr

    resampler = soxr.ResampleStream(sr_in, sr, 1, dtype="float32", quality="HQ")
    for block in blocks:
        out = resampler.resample_chunk(block, last=False)
        if len(out):
            yield out
    out = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
    if len(out):
        yield out


def stream_audio(path, sr: int = 22050, offset: float = 0.0, duration: float | None = None,
                 block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Yield a file's audio as mono float32 blocks at ``sr``, with bounded memory.

    Only the window ``[offset, offset + duration)`` is decoded (plus a few ms around
    it for the resampler), and it equals the same stretch of the whole file decoded.
    Decoding errors, and a file that decodes to far less than its header says
    (truncated), become :class:`~genrekit.errors.CorruptAudioError` (raised after the
    blocks decoded so far); NaN/Inf samples raise
    :class:`~genrekit.errors.NonFiniteAudioError`.
    """
    path = Path(path)
    if offset < 0 or (duration is not None and duration <= 0):
        raise ValueError("offset must be >= 0 and duration > 0")
    reader = _open(path)
    try:
        plan = _plan_window(reader.samplerate, sr, offset, duration)
        blocks = _decoded_blocks(path, reader, plan, max(1, int(block_seconds * reader.samplerate)))
        if reader.samplerate != sr:
            blocks = _resampled(blocks, reader.samplerate, sr)
        for block in _trimmed(blocks, plan.drop, plan.keep):
            yield np.ascontiguousarray(block, dtype=np.float32)
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
