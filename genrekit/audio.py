"""Audio decoding: any common format to a mono float32 waveform at a chosen rate.

libsndfile (through soundfile) reads WAV, FLAC, OGG, MP3, AU and AIFF and can seek, so
a window of a long file is read without decoding the rest. PyAV (FFmpeg) reads what
libsndfile cannot (M4A/AAC, WMA, ...). soxr resamples as a stream.

A window (``offset``, ``duration``) equals the same stretch of the whole file decoded:
exactly without resampling, to float rounding with it (a few ms of context are decoded
around the window for the resampler). Channels are averaged.

Memory is bounded by design, whatever the file's length, rate or channel count:

- the header is checked before anything is decoded: at most :data:`MAX_CHANNELS`
  channels and a sample rate within [:data:`MIN_SAMPLERATE`, :data:`MAX_SAMPLERATE`];
  anything else raises :class:`~genrekit.errors.UnsupportedAudioError`;
- a decoded block holds at most :data:`BLOCK_BYTES` (frames × channels × 4 bytes), and
  its resampled output at most as much again, so a 384 kHz 8-channel file streams in
  blocks of 0.34 s and a 22.05 kHz mono one in blocks of 48 s;
- a window is decoded from a seek to its start (plus the resampler's margin) and no
  further than its end.

Truncated files raise :class:`~genrekit.errors.CorruptAudioError` ("truncated: decoded
X s of the Y s the header gives") when the decode ends short of the header's length:

- WAV, AIFF and AU: the length the header announces (the data chunk's size, read with
  mutagen for WAV and AIFF), not the length libsndfile reports (which is what the file
  holds); FLAC: STREAMINFO's sample count. These are exact: more than 10 ms short is
  truncated. A WAV written to a pipe (size 0xFFFFFFFF) or left unfinished (size 0) and a
  FLAC encoded to a pipe (sample count 0) give no length: they decode to what is there
  (by FFmpeg, except the piped WAV);
- OGG (Vorbis, Opus, FLAC): a complete stream ends with a page flagged end-of-stream,
  and the length of a cut one cannot be known, so a decode that reaches the end of an
  Ogg file without that page is truncated. The length its last page gives is held to the
  loose rule below: libsndfile may stop a fraction of a second before it (0.13 s of a
  Vorbis file from Debian's wesnoth-1.16-music, whose last page counts more samples
  than its packets hold; FFmpeg decodes them), and players play such files. Where libsndfile
  fails in the middle of an Ogg stream (an Opus page whose granule position is off the samples
  its packets hold, as ``ffmpeg`` writes where its source's timestamps jump), FFmpeg goes on
  from the frame libsndfile reached. Ogg streams joined end to end (``cat a.ogg b.ogg``),
  which libsndfile stops at the end of the first, are decoded by FFmpeg;
- MP3 with a Xing/Info header (as encoders write for every VBR and most CBR file) and
  MP4: lengths that decoders may miss by a frame or two, so more than ``max(1 s, 2 %)``
  short is truncated. An MP3 without a Xing header or ADTS AAC give no length (what
  libsndfile and FFmpeg report is a guess from the bit rate, seconds off for VBR): they
  are decoded by FFmpeg to the real end, a window by decoding from the start, and a cut
  file cannot be told from a short one, so it decodes to what is there. So are MP3s
  joined end to end (``cat a.mp3 b.mp3``), whose first Xing header counts far fewer bytes
  than the file holds; FFmpeg skips the ID3v2 tag between them, as the ``ffmpeg`` command does.

A window that only covers the part before the cut decodes without error.

One policy for audio too short or silent to use, shared by every caller: at least
:data:`MIN_DURATION` seconds, and not all silent (peak below :data:`SILENCE_PEAK`).
:func:`load_audio` applies it; a caller that streams wraps its blocks in
:class:`CheckedStream`; one that holds a whole waveform calls :func:`check_waveform`.

libmpg123 (inside libsndfile) prints notes such as "Note: Illegal Audio-MPEG-Header"
on standard error and offers libsndfile's users no way to quiet them; see
:func:`filter_decoder_messages`.

Every failure is an :class:`~genrekit.errors.AudioError` naming the path and the reason.
"""
from __future__ import annotations

import atexit
import errno
import os
import re
import stat
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import (
    AudioError,
    AudioMissingError,
    CancelledChannelsError,
    ConfigError,
    CorruptAudioError,
    EmptyAudioError,
    NonFiniteAudioError,
    NotAudioError,
    OffsetPastEndError,
    SilentAudioError,
    TooLongError,
    TooShortError,
    UnsupportedAudioError,
)

AUDIO_EXTENSIONS = frozenset({  # what libsndfile or FFmpeg (PyAV) decode
    ".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".au", ".aiff", ".aif", ".aifc", ".m4a",
    ".m4b", ".aac", ".mp4", ".wma", ".webm", ".wv", ".mka", ".caf", ".w64", ".mp2", ".ac3", ".ape",
})
BLOCK_BYTES = 4 << 20  # one decoded block: frames × channels × 4 bytes (float32)
# Header limits, checked before decoding. 32 channels is more than any music format
# uses (22.2 sound has 24); 768 kHz is the highest rate sold as audio (DXD × 2); below
# 1 kHz a file is not music, and upsampling it would multiply its size.
MAX_CHANNELS = 32
MAX_SAMPLERATE = 768_000
MIN_SAMPLERATE = 1_000
MIN_DURATION = 1.0  # seconds: shorter audio is refused (TooShortError) everywhere
SILENCE_PEAK = 1e-6  # peak below this (about -120 dBFS) counts as digital silence
# Resampler context read beyond a window's edges, so that a window equals the same
# stretch of the whole file resampled (soxr's filter spans a few milliseconds).
RESAMPLE_MARGIN_SECONDS = 0.05
# A decode this much shorter than an estimated length (MP3 Xing header, MP4) means a
# truncated file (and an Ogg file's last page); for exact lengths (WAV, AIFF, AU, FLAC) a few ms is enough.
TRUNCATION_SECONDS, TRUNCATION_FRACTION = 1.0, 0.02
EXACT_TRUNCATION_SECONDS = 0.01
# Undecodable packets FFmpeg may skip in a file, after good ones (see _PyAVReader._frames).
MAX_SKIPPED_PACKETS = 8
# Bytes after an MP3's MPEG data that are not audio: ID3v1, APEv2, Lyrics3 tags.
TRAILING_TAG_BYTES = 128 * 1024

# Leading bytes of audio containers; a file that starts with one but fails to decode is
# corrupt, anything else that fails is "not audio".
_AUDIO_MAGIC = (b"RIFF", b"ID3", b"fLaC", b"OggS", b".snd", b"FORM", b"\xff\xfb", b"\xff\xf3",
                b"\xff\xf2", b"\xff\xfa", b"\xff\xe3", b"\xff\xf1", b"\xff\xf9", b"0&\xb2u")
# Containers libsndfile never hands to libmpg123.
_NOT_MPEG_MAGIC = (b"RIFF", b"fLaC", b"OggS", b".snd", b"FORM", b"RF64", b"caff")
# Formats whose header gives the exact length (libsndfile's format names).
_EXACT_FORMATS = frozenset({"WAV", "WAVEX", "W64", "RF64", "AIFF", "AU", "FLAC", "CAF"})
_PCM_SUBTYPES = frozenset({"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE",
                           "ULAW", "ALAW"})
_AU_SAMPLE_BYTES = {1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 4, 7: 8, 27: 1}  # AU encoding -> bytes
_FILE_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header without decoding."""

    path: str
    samplerate: int
    channels: int
    duration: float | None  # seconds the header announces; None where the container does not say


def is_audio_path(path) -> bool:
    """True if ``path`` has a known audio file extension."""
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


def shown_path(path, one_line: bool = False) -> str:
    """A path as text that prints, and goes into JSON, CSV or SQLite text, anywhere: bytes of
    a file name that are not valid UTF-8 are written as ``\\xNN`` (``café`` saved in Latin-1
    shows as ``caf\\xe9``); other names are unchanged. ``one_line`` also escapes control
    characters (``\\t``, ``\\n``), for output read line by line and column by column.

    Examples
    --------
    >>> shown_path(os.fsdecode(b"caf\\xe9.mp3"))
    'caf\\\\xe9.mp3'
    >>> print(shown_path("a\\tb.mp3", one_line=True))
    a\\tb.mp3
    """
    if isinstance(path, bytes):
        text = path.decode("utf-8", "backslashreplace")
    else:
        try:
            text = str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # a surrogate that is no escaped byte
            text = str(path).encode("utf-8", "backslashreplace").decode("utf-8")
    return text.translate(_CONTROL_ESCAPES) if one_line else text


_CONTROL_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(32), 127]} | {9: "\\t", 10: "\\n", 13: "\\r"}


def find_audio_files(paths) -> list[Path]:
    """Expand files and folders (recursively, by audio extension) into a sorted file list.

    A path given directly is kept whatever its extension, so that a wrongly named file
    is reported rather than silently skipped. So are a broken link and a folder that
    cannot be read. Symlinked folders are not followed.
    """
    found: list[Path] = []
    for p in map(Path, [paths] if isinstance(paths, (str, os.PathLike)) else paths):
        found.extend(sorted(_walk(p)) if p.is_dir() else [p])
    return found


def _walk(folder: Path) -> Iterator[Path]:
    unreadable: list[OSError] = []
    for root, _, names in os.walk(folder, onerror=unreadable.append):
        for f in (Path(root, name) for name in names):
            if (f.is_file() or f.is_symlink() and not f.exists()) and is_audio_path(f):
                yield f
    yield from (Path(e.filename) for e in unreadable if e.filename is not None)


# --- what the path is ------------------------------------------------------------------

def _check_file(path: Path) -> None:
    """Refuse anything but a readable, non-empty regular file, saying what it is instead.

    ``os.stat`` comes first: opening a FIFO would block, and ``Path.exists`` reports a
    symlink loop as a missing file.
    """
    try:
        st = os.stat(path)
    except OSError as e:
        raise _stat_error(path, e) from None
    if stat.S_ISDIR(st.st_mode):
        raise _folder_error(path)
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _FILE_KINDS if test(st.st_mode)), "a special file")
        raise NotAudioError(path, f"not a regular file: {kind}")
    if not os.access(path, os.R_OK):
        raise AudioMissingError(path, "permission denied")
    if st.st_size == 0:
        raise EmptyAudioError(path, "0 bytes")


def _folder_error(path: Path) -> AudioError:
    try:
        with os.scandir(path):
            pass
    except OSError as e:
        return AudioMissingError(path, f"folder cannot be read: {(e.strerror or str(e)).lower()}")
    return NotAudioError(path, "is a folder")


def _stat_error(path: Path, e: OSError) -> AudioError:
    if e.errno == errno.ELOOP:
        return AudioMissingError(path, "symlink loop")
    if e.errno == errno.ENOENT and os.path.islink(path):
        return AudioMissingError(path, f"broken symlink to {os.readlink(path)}")
    if e.errno in (errno.ENOENT, errno.ENOTDIR):
        return AudioMissingError(path, "no such file")
    if e.errno == errno.EACCES:
        return AudioMissingError(path, "permission denied")
    return AudioMissingError(path, e.strerror or str(e))


def _head(path: Path, n: int = 12) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _looks_like_audio(path: Path) -> bool:
    head = _head(path)
    return head.startswith(_AUDIO_MAGIC) or head[4:8] == b"ftyp"


# --- what the header announces ---------------------------------------------------------

def _announced_frames(path: Path, fmt: str, subtype: str) -> int | None:
    """Frames the header of a PCM WAV, AIFF or AU file announces (libsndfile reports
    only the frames the file holds, so a cut file looks like a short one). None where
    the header does not say (a streamed WAV writes 0 or 0xFFFFFFFF)."""
    if subtype not in _PCM_SUBTYPES:
        return None
    if fmt == "AU":
        return _au_frames(path)
    try:
        if fmt in ("WAV", "WAVEX"):
            from mutagen.wave import WAVE as reader
        elif fmt == "AIFF":
            from mutagen.aiff import AIFF as reader
        else:
            return None
        info = reader(str(path)).info
    except Exception:  # mutagen cannot parse what libsndfile did: no claim
        return None
    frames = round(info.length * info.sample_rate)
    frame_bytes = max(1, info.channels * info.bits_per_sample // 8)
    if frames <= 0 or (frames + 1) * frame_bytes >= 0xFFFFFFFF:
        return None
    return frames


def _au_frames(path: Path) -> int | None:
    head = _head(path, 24)
    if len(head) < 24 or not head.startswith(b".snd"):
        return None
    _, _, size, encoding, _, channels = struct.unpack(">4sIIIII", head)
    width = _AU_SAMPLE_BYTES.get(encoding)
    if size == 0xFFFFFFFF or not width or not channels:
        return None
    return size // (width * channels)


def _mp3_length_in_header(path: Path) -> bool:
    """True if an MP3's first frame holds a Xing/Info or VBRI header giving its length, and
    the file holds no more MPEG data than that header counts.

    Without such a header, libsndfile estimates the length from the file size and the first
    frame's bit rate, and stops decoding there (a VBR file: seconds too soon, or "truncated").
    It also stops where the header says, so MP3s joined end to end (``cat a.mp3 b.mp3``) would
    end with the first one's header count.
    """
    from mutagen.mp3 import MPEGFrame, MPEGInfo

    try:
        with open(path, "rb") as f:
            offset = MPEGInfo(f).frame_offset
            f.seek(offset)
            frame = MPEGFrame(f)
            if "length" not in vars(frame):  # set only from a Xing or VBRI header
                return False
            counted = _vbr_header_bytes(f, frame, offset)
            size = os.fstat(f.fileno()).st_size
    except Exception:  # mutagen cannot parse it: no length known
        return False
    return counted is None or size - offset <= counted * (1 + TRUNCATION_FRACTION) + TRAILING_TAG_BYTES


def _vbr_header_bytes(f, frame, offset: int) -> int | None:
    """The MPEG bytes a Xing or VBRI header counts (None where it does not say)."""
    from mutagen.mp3 import VBRIHeader, VBRIHeaderError, XingHeader, XingHeaderError

    for header, error in ((XingHeader, XingHeaderError), (VBRIHeader, VBRIHeaderError)):
        f.seek(offset + header.get_offset(frame))
        try:
            counted = header(f).bytes
        except error:
            continue
        return counted if counted > 0 else None
    return None


def _ogg_ends_cleanly(path: Path) -> bool:
    """True if the first logical stream of an Ogg file ends with its end-of-stream page."""
    from mutagen.ogg import OggPage

    try:
        with open(path, "rb") as f:
            first = OggPage(f)
            last = OggPage.find_last(f, first.serial)
    except Exception:  # mutagen cannot parse what libsndfile did: no claim
        return True
    return last is not None and last.last


def _ogg_is_chained(path: Path) -> bool:
    """True if another Ogg stream follows the first one's end-of-stream page (files joined end to
    end, ``cat a.ogg b.ogg``, which libsndfile stops at the end of the first)."""
    from mutagen.ogg import OggPage

    try:
        with open(path, "rb") as f:
            first = OggPage(f)
            page = first
            while not (page.last and page.serial == first.serial):
                page = OggPage(f)
            return f.read(4) == b"OggS"
    except Exception:  # mutagen cannot parse what libsndfile did, or the stream is cut: no claim
        return False


# --- readers ---------------------------------------------------------------------------

class _SoundfileReader:
    """libsndfile: sample-accurate seeks.

    ``frames`` is what the header announces: exact for WAV, AIFF, AU and FLAC, the last
    page's count for OGG, and for MP3 with a Xing/Info header (else estimated from the file size). ``cut`` says
    why the file is known to end early (an Ogg stream without its last page).
    """

    def __init__(self, path: Path):
        import soundfile as sf

        # Bytes: soundfile encodes a str strictly, failing on names that are not valid UTF-8.
        self._sf = sf.SoundFile(os.fsencode(path) if os.name == "posix" else str(path))
        self._path = path
        self.samplerate = self._sf.samplerate
        self.channels = self._sf.channels
        held = self._sf.frames
        self._held = held if 0 <= held < 2**62 else None  # what libsndfile can decode
        self.frames = self._held or None
        announced = _announced_frames(path, self._sf.format, self._sf.subtype)
        if announced is not None and announced > (self.frames or 0):
            self.frames = announced
        self.exact = self._sf.format in _EXACT_FORMATS
        self.cut = None
        if self._sf.format == "OGG" and not _ogg_ends_cleanly(path):
            self.cut = "the Ogg stream ends without its last page"
        self.duration = None if self.frames is None else self.frames / self.samplerate
        self.estimated = self._sf.format == "MP3" and not _mp3_length_in_header(path)
        self.chained = self._sf.format == "OGG" and _ogg_is_chained(path)
        # No length in the header: a WAV left unfinished (size 0) holds data libsndfile does not
        # see; a FLAC encoded to a pipe (sample count 0, "unknown") makes libsndfile fail mid-way.
        self.unsized = held == 0 or self._held is None

    def blocks(self, start: int, count: int | None, block_frames: int):
        """Yield ``(n, channels)`` float32 blocks of frames ``[start, start + count)``; in an Ogg
        file, FFmpeg goes on where libsndfile fails (:meth:`_ffmpeg_from`)."""
        got = 0
        try:
            for block in self._libsndfile_blocks(start, count, block_frames):
                got += len(block)
                yield block
        except RuntimeError as e:  # libsndfile's errors
            if self._sf.format != "OGG":
                raise
            yield from self._ffmpeg_from(start + got, None if count is None else count - got, block_frames, e)

    def _libsndfile_blocks(self, start: int, count: int | None, block_frames: int):
        if start:
            if self._held is not None and start >= self._held:
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

    def _ffmpeg_from(self, start: int, count: int | None, block_frames: int, error: Exception):
        """FFmpeg's blocks from frame ``start`` on, where libsndfile failed in an Ogg file (``error``
        again if FFmpeg cannot open it).

        libsndfile refuses, mid-file, an Opus stream whose page granule positions do not match the
        samples its packets hold ("file is malformed"): ``ffmpeg -i track.ogg track.opus`` writes
        such pages where the source's timestamps have a gap (a Vorbis file from Debian's
        extremetuxracer-data, 5.5 s in). FFmpeg and players decode the packets and ignore the
        positions. FFmpeg decodes from the start and counts frames, so that the audio goes on
        exactly where libsndfile stopped (a seek would land by the same positions).
        """
        try:
            rest = _PyAVReader(self._path)
        except Exception:
            raise error from None
        try:
            yield from rest.blocks(start, count, block_frames, seek=False)
        finally:
            rest.close()

    def close(self):
        self._sf.close()


class _PyAVReader:
    """FFmpeg through PyAV, for what libsndfile cannot read (M4A/AAC, WMA, ...)."""

    PREROLL_SECONDS = 0.5  # decode this much before a seek target: codecs (AAC's MDCT) need warm-up
    # Raw streams whose length and timestamps FFmpeg guesses from the bit rate: no length
    # is claimed, and a window is read by decoding from the start (a seek would land
    # where the guess says).
    GUESSED_FORMATS = frozenset({"aac", "mp3", "ac3", "eac3", "dts"})
    exact = False
    cut = None
    estimated = False

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
        self._guessed = bool(self.GUESSED_FORMATS & set(self._container.format.name.split(",")))
        if self._guessed:
            self.duration = None
        elif dur is not None and self._stream.time_base is not None:
            self.duration = float(dur * self._stream.time_base)
            self.frames = int(round(self.duration * self.samplerate))
        elif self._container.duration:
            self.duration = self._container.duration / 1_000_000  # estimated (e.g. from the bit rate)
        else:
            self.duration = None

    def blocks(self, start: int, count: int | None, block_frames: int, seek: bool = True):
        """Yield ``(n, channels)`` float32 blocks of frames ``[start, start + count)``;
        ``seek=False`` decodes from the start and counts frames (no timestamps needed)."""
        import av

        offset = start / self.samplerate
        skip = None if start and seek and not self._guessed else start
        if skip is None:
            # Seek lands on a packet at or before the target; the rest is skipped by count.
            target = max(0.0, offset - self.PREROLL_SECONDS)
            self._container.seek(int(target * 1_000_000), any_frame=False)
        resampler = av.AudioResampler(format="flt", layout=None, rate=None)
        pending, pending_frames, got = [], 0, 0
        for frame in self._frames():
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

    def _frames(self):
        """Decoded frames; as the ``ffmpeg`` command does, a few undecodable packets after good
        ones are skipped (the ID3v2 tag in the middle of MP3s joined end to end)."""
        import av

        decoded, skipped = False, 0
        for packet in self._container.demux(self._stream):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                skipped += 1
                if not decoded or skipped > MAX_SKIPPED_PACKETS:
                    raise
                continue
            decoded = decoded or bool(frames)
            yield from frames

    def close(self):
        self._container.close()


def _open(path: Path):
    """Open with libsndfile, falling back to PyAV; classify failures; check the header's limits."""
    _check_file(path)
    head = _head(path)
    if not (head.startswith(_NOT_MPEG_MAGIC) or head[4:8] == b"ftyp"):
        filter_decoder_messages()  # libsndfile may hand it to libmpg123
    try:
        reader = _SoundfileReader(path)
        if reader.estimated or reader.unsized or reader.chained:
            reader = _whole_file_reader(path, reader)
    except Exception as sf_error:  # libsndfile refused: try FFmpeg
        try:
            reader = _PyAVReader(path)
        except Exception as av_error:
            if (kind := _score_kind(path)) is not None:
                raise NotAudioError(path, kind) from None
            if isinstance(av_error, AudioError):
                raise
            if _looks_like_audio(path):
                raise CorruptAudioError(path, f"libsndfile: {_decoder_reason(sf_error, path)}; "
                                              f"FFmpeg: {_decoder_reason(av_error, path)}") from None
            raise NotAudioError(path, "no decoder recognises it") from None
    try:
        _check_limits(path, reader.samplerate, reader.channels)
    except AudioError:
        reader.close()
        raise
    return reader


def _decoder_reason(error: Exception, path: Path) -> str:
    """A decoder's message without the path it repeats or FFmpeg's error number.

    >>> _decoder_reason(OSError("Error opening b'a.wav': Format not recognised."), Path("a.wav"))
    'format not recognised'
    >>> _decoder_reason(OSError("[Errno 1094995529] Invalid data found when processing input: 'a.wav'"), Path("a.wav"))
    'invalid data found when processing input'
    """
    text = str(error).strip()
    for prefix in (f"Error opening {os.fsencode(path)!r}: ", f"Error opening {str(path)!r}: "):
        text = text.removeprefix(prefix)
    text = re.sub(r"^\[Errno -?\d+\] ", "", text).removesuffix(f": {str(path)!r}").strip().rstrip(".")
    return (text[:1].lower() + text[1:]) or type(error).__name__


# Music stored as notes (MIDI) or as a tracker module (samples and patterns, as in Debian's
# pingus-data and openttd-openmsx): no recorded sound to classify until a player renders it.
_TRACKER_MAGIC = ((0, b"IMPM", "an Impulse Tracker module", "it"), (0, b"Extended Module: ", "an XM module", "xm"),
                  (44, b"SCRM", "a Scream Tracker 3 module", "s3m"), (1080, b"M.K.", "a MOD module", "mod"),
                  (1080, b"M!K!", "a MOD module", "mod"), (0, b"MTM", "a MultiTracker module", "mtm"))


def _score_kind(path: Path) -> str | None:
    """Why a MIDI file or a tracker module is no audio, with what renders it; None for other files."""
    head = _head(path, 1084)
    if head.startswith(b"MThd") or (head.startswith(b"RIFF") and head[8:12] == b"RMID"):
        return "a MIDI file: notes, not recorded sound; render it to audio first, e.g. timidity song.mid -Ow"
    for offset, magic, kind, ext in _TRACKER_MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return (f"{kind}: patterns and samples, not recorded sound; render it to audio first, "
                    f"e.g. ffmpeg -i song.{ext} song.flac")
    return None


def _whole_file_reader(path: Path, reader: _SoundfileReader):
    """FFmpeg for an MP3 whose header gives no length (libsndfile stops at its estimate), for a
    file whose header gives 0 frames, and for Ogg streams joined end to end (libsndfile stops at
    the end of the first; FFmpeg reads them all)."""
    try:
        whole = _PyAVReader(path)
    except Exception:  # FFmpeg cannot: libsndfile, with no claim about the length
        reader.frames = reader.duration = None
        return reader
    reader.close()
    return whole


def _check_limits(path: Path, samplerate: int, channels: int) -> None:
    if channels > MAX_CHANNELS:
        raise UnsupportedAudioError(path, f"{channels} channels; genrekit reads at most {MAX_CHANNELS}")
    if not MIN_SAMPLERATE <= samplerate <= MAX_SAMPLERATE:
        raise UnsupportedAudioError(path, f"sample rate {samplerate} Hz; genrekit reads "
                                          f"{MIN_SAMPLERATE}-{MAX_SAMPLERATE} Hz")


def audio_info(path) -> AudioInfo:
    """Sample rate, channels and duration from the file header.

    Raises the same errors as decoding would for a file that is missing, not a
    regular file, not audio, or outside the channel and sample-rate limits.

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


# --- windows, blocks and resampling ----------------------------------------------------

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


def block_frames(channels: int, sr_in: int, sr: int) -> int:
    """Input frames per decoded block: :data:`BLOCK_BYTES` of float32 frames, fewer when
    upsampling so that the resampled block fits in as much.

    Examples
    --------
    >>> block_frames(8, 384_000, 22050), block_frames(1, 22050, 22050)
    (131072, 1048576)
    """
    frames = BLOCK_BYTES // (4 * channels)
    if sr > sr_in:
        frames = frames * sr_in // sr
    return max(1, frames)


def _truncated(path: Path, got: int, expected: int, sr: int) -> CorruptAudioError:
    return CorruptAudioError(path, f"truncated: decoded {got / sr:.2f} s of the {expected / sr:.2f} s "
                                   "the header gives")


def _check_complete(path: Path, reader, plan: _Plan, got: int) -> None:
    """Raise CorruptAudioError if the decode ended short of what the header promised."""
    sr = reader.samplerate
    reached_end = plan.count is None or got < plan.count
    if reader.cut and reached_end:
        raise CorruptAudioError(path, f"truncated: decoded {got / sr:.2f} s, and {reader.cut}")
    if reader.frames is None:
        return
    expected = max(0, reader.frames - plan.start)
    if plan.count is not None:
        expected = min(expected, plan.count)
    if reader.exact:
        tolerance = EXACT_TRUNCATION_SECONDS * sr
    else:
        tolerance = max(TRUNCATION_SECONDS * sr, TRUNCATION_FRACTION * expected)
    if expected - got > tolerance:
        raise _truncated(path, got, expected, sr)


def _decoded_blocks(path: Path, reader, plan: _Plan, frames_per_block: int, meter) -> Iterator[np.ndarray]:
    """The reader's blocks as mono float32, with decoder failures as CorruptAudioError;
    ``meter.channel_peak`` follows the peak before the downmix."""
    blocks = reader.blocks(plan.start, plan.count, frames_per_block)
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
        if block.shape[1] > 1 and meter.channel_peak < SILENCE_PEAK:
            meter.channel_peak = float(np.abs(block).max(initial=0.0))
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


def _check_offset(path: Path, reader, offset: float) -> None:
    """Refuse a window that starts at or past the end the header gives."""
    if offset <= 0 or reader.frames is None or offset * reader.samplerate < reader.frames:
        return
    end = reader.frames / reader.samplerate
    if reader.cut:
        raise CorruptAudioError(path, f"truncated: {reader.cut}, and offset {offset:g} s is past the "
                                      f"{end:.2f} s that remain")
    raise OffsetPastEndError(path, f"offset {offset:g} s, audio {end:.2f} s")


def stream_audio(path, sr: int = 22050, offset: float = 0.0, duration: float | None = None) -> Iterator[np.ndarray]:
    """Yield a file's audio as mono float32 blocks at ``sr``, with bounded memory.

    Only the window ``[offset, offset + duration)`` is decoded (plus a few ms around
    it for the resampler), and it equals the same stretch of the whole file decoded.
    A block holds at most :data:`BLOCK_BYTES` of decoded input (see :func:`block_frames`).

    The blocks are what the file holds: a stream that must be long enough and not
    silent goes through :class:`CheckedStream`.

    Raises
    ------
    UnsupportedAudioError
        Too many channels or a sample rate out of range (from the header, before decoding).
    OffsetPastEndError
        ``offset`` is at or past the end of the audio.
    CorruptAudioError
        Decoding failed, or the file is truncated (raised after the blocks decoded so far).
    NonFiniteAudioError
        NaN or Inf samples.
    """
    return _AudioBlocks(lambda meter: _stream_audio(Path(path), sr, offset, duration, meter))


class _AudioBlocks:
    """The blocks of :func:`stream_audio`, and ``channel_peak``: the peak of the channels
    before the downmix, as far as needed to tell silence from channels that cancel."""

    def __init__(self, make: Callable):
        self.channel_peak = 0.0
        self._blocks = make(self)

    def __iter__(self):
        return self

    def __next__(self) -> np.ndarray:
        return next(self._blocks)

    def close(self) -> None:
        self._blocks.close()


def _stream_audio(path: Path, sr: int, offset: float, duration: float | None, meter) -> Iterator[np.ndarray]:
    if offset < 0 or (duration is not None and duration <= 0):
        raise ConfigError("offset must be >= 0 and duration > 0")
    if not MIN_SAMPLERATE <= sr <= MAX_SAMPLERATE:
        raise ConfigError(f"sr must be within {MIN_SAMPLERATE}-{MAX_SAMPLERATE} Hz, not {sr}")
    reader = _open(path)
    try:
        _check_offset(path, reader, offset)
        plan = _plan_window(reader.samplerate, sr, offset, duration)
        blocks = _decoded_blocks(path, reader, plan, block_frames(reader.channels, reader.samplerate, sr), meter)
        if reader.samplerate != sr:
            blocks = _resampled(blocks, reader.samplerate, sr)
        empty = True
        for block in _trimmed(blocks, plan.drop, plan.keep):
            empty = False
            yield np.ascontiguousarray(block, dtype=np.float32)
        if empty and offset > 0:  # the header did not say where the audio ends
            raise OffsetPastEndError(path, f"offset {offset:g} s, nothing decodes after it")
    finally:
        reader.close()


# --- the policy: long enough, not silent ------------------------------------------------

def _refuse_unusable(path, samples: int, peak: float, sr: int, min_duration: float, allow_silent: bool,
                     channel_peak: float = 0.0) -> None:
    if samples == 0:
        raise EmptyAudioError(path, "decoded to 0 samples")
    if samples < min_duration * sr:
        raise TooShortError(path, f"{samples / sr:.2f} s < {min_duration:.2f} s")
    if not allow_silent and peak < SILENCE_PEAK:
        raise CancelledChannelsError(path) if channel_peak >= SILENCE_PEAK else SilentAudioError(path)


class CheckedStream:
    """A stream of mono blocks passed through unchanged, then refused if unusable.

    When the blocks run out, raises :class:`~genrekit.errors.EmptyAudioError`,
    :class:`~genrekit.errors.TooShortError` (shorter than ``min_duration``) or
    :class:`~genrekit.errors.SilentAudioError` (peak below :data:`SILENCE_PEAK`), so
    whatever was computed from the blocks must be dropped. NaN/Inf samples raise
    :class:`~genrekit.errors.NonFiniteAudioError` at once. ``samples``, ``peak`` and
    ``seconds`` describe what went through.

    Parameters
    ----------
    blocks : iterable of 1-D float32 arrays
        E.g. :func:`stream_audio`, or ``[waveform]``.
    sr : int
        Their sample rate.
    path : str or Path
        Named in the errors (``"<waveform>"`` for an array).
    min_duration : float
        Seconds below which the audio is refused (default :data:`MIN_DURATION`).
    allow_silent : bool
        Let all-silent audio through.

    Examples
    --------
    >>> stream = CheckedStream(stream_audio("song.mp3", sr=16000), 16000, "song.mp3")  # doctest: +SKIP
    >>> n = sum(len(b) for b in stream); stream.seconds  # doctest: +SKIP
    29.98
    >>> list(CheckedStream([np.zeros(16000, np.float32)], 16000, "<waveform>"))
    Traceback (most recent call last):
    ...
    genrekit.errors.SilentAudioError: <waveform>: audio is all silent
    """

    def __init__(self, blocks: Iterable[np.ndarray], sr: int, path, min_duration: float = MIN_DURATION,
                 allow_silent: bool = False):
        self._blocks = blocks
        self.sr, self.path = sr, path
        self.min_duration, self.allow_silent = min_duration, allow_silent
        self.samples, self.peak = 0, 0.0

    @property
    def seconds(self) -> float:
        return self.samples / self.sr

    def __iter__(self) -> Iterator[np.ndarray]:
        for block in self._blocks:
            if not np.isfinite(block).all():
                raise NonFiniteAudioError(self.path)
            self.samples += len(block)
            self.peak = max(self.peak, float(np.abs(block).max(initial=0.0)))
            yield block
        _refuse_unusable(self.path, self.samples, self.peak, self.sr, self.min_duration, self.allow_silent,
                         getattr(self._blocks, "channel_peak", 0.0))


def check_waveform(y: np.ndarray, sr: int, path, min_duration: float = MIN_DURATION,
                   allow_silent: bool = False) -> None:
    """Raise the matching AudioError if ``y`` is empty, too short, silent or not finite
    (the policy of :class:`CheckedStream`, for a waveform held whole)."""
    for _ in CheckedStream([y], sr, path, min_duration, allow_silent):
        pass


def load_audio(path, sr: int = 22050, mono: bool = True, offset: float = 0.0,
               duration: float | None = None, min_duration: float = MIN_DURATION,
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
        Shorter audio raises :class:`~genrekit.errors.TooShortError` (default
        :data:`MIN_DURATION`).
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
        raise ConfigError("genrekit works on mono audio; use mono=True")
    path = Path(path)
    if max_duration is not None and duration is None:
        info = audio_info(path)
        if info.duration is not None and info.duration - offset > max_duration + 0.5:
            raise TooLongError(path, f"{info.duration:.1f} s > {max_duration:.1f} s")
    parts, total = [], 0
    limit = None if max_duration is None else int((max_duration + 0.5) * sr)
    for block in CheckedStream(stream_audio(path, sr, offset, duration), sr, path, min_duration, allow_silent):
        parts.append(block)
        total += len(block)
        if limit is not None and duration is None and total > limit:
            raise TooLongError(path, f"more than {max_duration:.1f} s")
    return np.concatenate(parts)


# --- libmpg123's notes on standard error -----------------------------------------------

# The filter that runs in the helper process (and, through exec, here for tests). It
# must not import genrekit (numpy): the helper starts in a few ms with -I -S.
# What libmpg123 prints (from the strings of the libsndfile that soundfile bundles):
# "[src/libmpg123/<file>:<function>():<line>] error: ...", and "Note: ..." / "Warning: ..."
# lines with these beginnings.
_FILTER_SOURCE = r"""
import os, re

CHATTER = re.compile(
    rb"^(?:\[src/libmpg123/[^\]]*\] (?:error|warning): "
    rb"|Note: (?:Illegal Audio-MPEG-Header|Trying to resync|Skipped |Skipping ID3v2|Hit end of|Junk at|"
    rb"Looks like a RIFF|Could be a BMP|Xing|Info|Encoder delay|Cut frame|broken frame|free format|"
    rb"Input data end|ID3|RVA|doing RVA|Storing |faulty ID3|non-update tag|skipped tag|missing |"
    rb"frame of group|Ignoring Xing|Want to enable|Disabling all|Enabling all)"
    rb"|Warning: (?:Xing stream size|Big change|Encountered more data|Real sample count|"
    rb"FLAC stream changed))")
STARTS = (b"[src/libmpg123/", b"Note: ", b"Warning: ")


def without_chatter(data):
    # (output, held): complete lines less libmpg123's, and a partial last line held back
    # only while it may still become one of libmpg123's (a progress bar passes at once).
    lines = data.split(b"\n")
    tail = lines.pop()
    out = b"".join(line + b"\n" for line in lines if not CHATTER.match(line))
    may_be_chatter = len(tail) < 4096 and any(s.startswith(tail[:len(s)]) for s in STARTS)
    if tail and not may_be_chatter:
        return out + tail, b""
    return out, tail


def forward(read_fd=0, out_fd=1):
    # Copy until EOF (every writer gone). Never stop reading, so that writers never block,
    # even when the output fails (what follows is then dropped).
    pending, writable = b"", True
    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except InterruptedError:
            continue
        except OSError:
            break
        if not chunk:
            break
        out, pending = without_chatter(pending + chunk)
        writable = writable and write_all(out_fd, out)
    if writable:
        write_all(out_fd, pending)


def write_all(fd, data):
    try:
        while data:
            data = data[os.write(fd, data):]
        return True
    except OSError:
        return False
"""
_filter_code: dict = {}
exec(_FILTER_SOURCE, _filter_code)
_without_chatter = _filter_code["without_chatter"]
_FILTER_ENV = "GENREKIT_STDERR_FILTERED"  # "device:inode" of the pipe fd 2 was pointed at
_KEEP_ENV = "GENREKIT_DECODER_MESSAGES"  # "show": leave standard error alone
_CODE_ENV = "GENREKIT_STDERR_FILTER_CODE"  # the helper's code
_filter_lock = threading.Lock()
_HELPER_COMMAND = f"import os, signal; signal.signal(signal.SIGINT, signal.SIG_IGN); exec(os.environ[{_CODE_ENV!r}])"


def filter_decoder_messages() -> bool:
    """Drop libmpg123's notes from this process's standard error; idempotent, thread-safe.

    libsndfile decodes MP3 with libmpg123, which prints notes such as "Note: Illegal
    Audio-MPEG-Header 0x... at offset ..." straight to file descriptor 2, and libsndfile
    gives no way to set libmpg123's quiet flag. So, once per process, fd 2 is pointed at
    a pipe read by a small helper process (``python -I -S``, standard library only),
    which copies everything to the original standard error at once, partial lines
    (progress bars) included, less the lines libmpg123 writes. Decoding threads are not
    serialised: the filter sits on the file descriptor, not around the decoder. Being a
    separate process, it needs no GIL and drains the pipe even after this process
    crashed, so nothing else written to standard error is lost. At exit fd 2 is restored
    and the helper drained. Child processes inherit the filtered fd 2.

    Called by the decoder before the first file that may be MP3 is opened. Does nothing
    (and returns False) on Windows, without an fd 2, where ``sys.executable`` is not a
    Python, or with ``GENREKIT_DECODER_MESSAGES=show``.

    Returns
    -------
    bool
        Whether standard error is filtered.
    """
    if os.name != "posix" or os.environ.get(_KEEP_ENV) == "show":
        return False
    with _filter_lock:
        try:
            if os.environ.get(_FILTER_ENV) == _identity(2):
                return True
        except OSError:  # no fd 2
            return False
        return _install_filter()


def _install_filter() -> bool:
    import subprocess
    import sys

    if not os.path.basename(sys.executable or "").startswith("python"):
        return False  # embedded (uWSGI, ...): no interpreter to start
    read_fd, write_fd = os.pipe()
    original = os.dup(2)
    try:
        # The code goes in the environment, so that ps shows a short command line. Ctrl-C
        # reaches the whole process group: the helper ignores it, so that it passes on what
        # this process writes as it stops, and ends when the pipe closes.
        helper = subprocess.Popen([sys.executable, "-I", "-S", "-c", _HELPER_COMMAND],
                                  stdin=read_fd, stdout=original, stderr=original, close_fds=True,
                                  env={**os.environ, _CODE_ENV: _FILTER_SOURCE + "\nforward()\n"})
    except OSError:
        for fd in (read_fd, write_fd, original):
            os.close(fd)
        return False
    os.close(read_fd)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    pipe = _identity(2)
    os.environ[_FILTER_ENV] = pipe
    atexit.register(_restore_stderr, original, pipe, helper)
    return True


def _identity(fd: int) -> str:
    st = os.fstat(fd)
    return f"{st.st_dev}:{st.st_ino}"


def _restore_stderr(original: int, pipe: str, helper) -> None:
    """At exit: point fd 2 back at the original standard error and let the helper drain
    the pipe, so the last lines (a traceback) come before the shell's prompt."""
    try:
        if _identity(2) != pipe:
            return  # someone else (pytest's capture) owns fd 2 now
        os.dup2(original, 2)
        helper.wait(timeout=2.0)  # ends at EOF, unless forked children still hold the pipe
    except Exception:
        pass
