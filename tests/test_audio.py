"""Audio decoding on real files (../shared/data) and on every kind of bad input.

Truncated files: a decode that ends far short of the length the header gives (more than
max(1 s, 2 %) short; MP3s with a Xing/Info header, WAV, FLAC, OGG, MP4) is
:class:`CorruptAudioError`. A file whose header does not give an exact length (an MP3
without Xing header, ADTS AAC) cannot be told from a short one and decodes to what is there.
"""
from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genrekit.audio import (
    BLOCK_BYTES,
    MAX_CHANNELS,
    MAX_SAMPLERATE,
    MIN_DURATION,
    MIN_SAMPLERATE,
    CheckedStream,
    audio_info,
    block_frames,
    check_waveform,
    find_audio_files,
    is_audio_path,
    load_audio,
    stream_audio,
)
from genrekit.errors import (
    AudioError,
    AudioMissingError,
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
from tests.conftest import shift_ogg_page, tone

REPO = Path(__file__).resolve().parents[1]
SR = 22050


def assert_names(error: AudioError, path, *words: str) -> None:
    """The message names the file and says why."""
    text = str(error)
    assert str(path) in text, text
    assert error.path == str(path)
    for word in words:
        assert word in text.lower(), text


# --- real audio ------------------------------------------------------------------------

def test_real_wav_length_and_rate(gtzan_wav):
    info = sf.info(str(gtzan_wav))
    y = load_audio(gtzan_wav, sr=info.samplerate)
    assert y.dtype == np.float32 and y.ndim == 1
    assert len(y) == info.frames
    expected, _ = sf.read(str(gtzan_wav), dtype="float32")
    np.testing.assert_array_equal(y, expected)
    meta = audio_info(gtzan_wav)
    assert (meta.samplerate, meta.channels) == (info.samplerate, 1)
    assert meta.duration == pytest.approx(info.frames / info.samplerate)


def test_real_mp3_stereo_downmix_is_channel_mean(fma_mp3):
    stereo, native = sf.read(str(fma_mp3), dtype="float32", always_2d=True)
    assert stereo.shape[1] == 2 and native == 44100
    y = load_audio(fma_mp3, sr=native)
    assert len(y) == len(stereo)
    np.testing.assert_array_equal(y, stereo.mean(axis=1, dtype=np.float32))
    # at 22.05 kHz: half as many samples, about 30 s
    y22 = load_audio(fma_mp3, sr=SR)
    assert abs(len(y22) - len(stereo) / 2) <= 1
    assert 29.5 < len(y22) / SR < 30.5


@pytest.mark.parametrize("relpath", ["fma_small/000/000002.mp3", "fma_small/000/000140.mp3",
                                     "gtzan_16k/blues/blues.00040.wav", "gtzan/rock/rock.00001.wav"])
def test_resampling_matches_librosa(shared_data, relpath):
    """Same decoder and soxr 'HQ' as librosa.load(sr=22050): streamed in 30 s blocks, the
    result matches librosa's one-shot resampling to 1e-5 (in practice bit for bit)."""
    librosa = pytest.importorskip("librosa")
    path = shared_data / relpath
    if not path.exists():
        pytest.skip(f"{relpath} not in the data set")
    ours = load_audio(path, sr=SR)
    theirs, _ = librosa.load(str(path), sr=SR)
    assert len(ours) == len(theirs)
    assert np.abs(ours - theirs).max() <= 1e-5


@pytest.mark.parametrize("sr", [SR, 44100, 16000])
@pytest.mark.parametrize("offset, duration", [(10.0, 3.0), (0.0, 2.5), (27.3, 1.7), (29.0, 5.0)])
def test_window_equals_slice_of_full_decode(fma_mp3, sr, offset, duration):
    full = load_audio(fma_mp3, sr=sr)
    window = load_audio(fma_mp3, sr=sr, offset=offset, duration=duration, min_duration=0.1)
    start = int(round(offset * sr))
    expected = full[start: start + int(round(duration * sr))]
    assert len(window) == len(expected)
    np.testing.assert_allclose(window, expected, atol=1e-5)


def test_window_beyond_the_end_says_so(fma_mp3):
    """Today's reason was "empty file (decoded to 0 samples)"; the header gives the end."""
    with pytest.raises(OffsetPastEndError) as e:
        load_audio(fma_mp3, offset=40.0, duration=3.0)
    assert_names(e.value, fma_mp3, "offset past the end", "offset 40 s, audio 29.98 s")


class FrameCounter:
    """Counts the frames libsndfile hands out, to show what a call decodes."""

    def __init__(self, monkeypatch):
        self.frames = 0
        original = sf.SoundFile.read

        def read(sf_self, *args, **kwargs):
            out = original(sf_self, *args, **kwargs)
            self.frames += len(out)
            return out

        monkeypatch.setattr(sf.SoundFile, "read", read)


def test_window_of_mp3_decodes_only_the_window(fma_mp3, monkeypatch):
    counter = FrameCounter(monkeypatch)
    y = load_audio(fma_mp3, sr=SR, offset=20.0, duration=3.0)
    assert len(y) == 3 * SR
    assert counter.frames <= 3.2 * 44100  # the window plus the resampler's margins, not 23 s
    counter.frames = 0
    load_audio(fma_mp3, sr=SR)
    assert counter.frames > 29 * 44100


# --- other formats ---------------------------------------------------------------------

def _real_clip(gtzan_wav, seconds=6.0):
    y, sr = sf.read(str(gtzan_wav), dtype="float32")
    return y[int(5 * sr): int((5 + seconds) * sr)], sr


def encode_m4a(path: Path, y: np.ndarray, sr: int) -> None:
    """AAC in MP4 with PyAV's FFmpeg (native 'aac' encoder)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=sr, layout="mono")
        for i in range(0, len(y), 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(y[None, i: i + 1024]), format="flt",
                                               layout="mono")
            frame.sample_rate, frame.pts = sr, i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_m4a_aac_via_pyav(gtzan_wav, tmp_path):
    av = pytest.importorskip("av")
    if "aac" not in av.codecs_available:
        pytest.skip("FFmpeg in PyAV has no AAC encoder")
    y, sr = _real_clip(gtzan_wav)
    path = tmp_path / "clip.m4a"
    encode_m4a(path, y, sr)
    with pytest.raises(sf.LibsndfileError):
        sf.info(str(path))  # so this really goes through PyAV
    info = audio_info(path)
    assert (info.samplerate, info.channels) == (sr, 1)
    assert info.duration == pytest.approx(len(y) / sr, abs=0.05)
    z = load_audio(path, sr=sr)
    assert abs(len(z) - len(y)) < 0.05 * sr  # the last AAC frame may be padded
    n = min(len(z), len(y))
    assert np.corrcoef(z[:n], y[:n])[0, 1] > 0.99  # lossy, but aligned (no priming offset)
    # A window seeks (with decoder warm-up) and matches the full decode; AAC's noise
    # substitution makes a few frames differ slightly after a seek.
    window = load_audio(path, sr=sr, offset=2.0, duration=1.5)
    part = z[2 * sr: 2 * sr + len(window)]
    assert len(window) == int(1.5 * sr)
    assert np.corrcoef(window, part)[0, 1] > 0.999
    assert np.abs(window - part).max() < 0.05


def test_m4a_resampled(gtzan_wav, tmp_path):
    av = pytest.importorskip("av")
    if "aac" not in av.codecs_available:
        pytest.skip("FFmpeg in PyAV has no AAC encoder")
    y, sr = _real_clip(gtzan_wav, 3.0)
    path = tmp_path / "clip.m4a"
    encode_m4a(path, y, sr)
    z = load_audio(path, sr=16000)
    assert abs(len(z) / 16000 - 3.0) < 0.06


def test_flac_is_lossless(gtzan_wav, tmp_path):
    y, sr = _real_clip(gtzan_wav)
    path = tmp_path / "clip.flac"
    sf.write(path, y, sr, subtype="PCM_16")
    z = load_audio(path, sr=sr)
    assert len(z) == len(y)
    np.testing.assert_allclose(z, y, atol=1 / 32768)
    window = load_audio(path, sr=sr, offset=1.0, duration=2.0)
    np.testing.assert_array_equal(window, z[sr: 3 * sr])


def test_ogg_vorbis(gtzan_wav, tmp_path):
    y, sr = _real_clip(gtzan_wav)
    path = tmp_path / "clip.ogg"
    sf.write(path, y, sr, format="OGG", subtype="VORBIS")
    assert audio_info(path).duration == pytest.approx(len(y) / sr, abs=0.01)
    z = load_audio(path, sr=sr)
    assert abs(len(z) - len(y)) <= 0.01 * sr
    n = min(len(z), len(y))
    assert np.corrcoef(z[:n], y[:n])[0, 1] > 0.99
    window = load_audio(path, sr=SR // 2, offset=2.0, duration=1.0)
    assert len(window) == SR // 2


# --- bad input: one test each ----------------------------------------------------------

def test_corrupt_mp3_garbage_after_2kb(fma_mp3, tmp_path):
    data = fma_mp3.read_bytes()
    path = tmp_path / "garbage.mp3"
    path.write_bytes(data[:2048] + np.random.default_rng(0).bytes(len(data) - 2048))
    with pytest.raises(CorruptAudioError) as e:
        load_audio(path)
    assert_names(e.value, path, "corrupt")


@pytest.mark.parametrize("name, data", [
    ("no data chunk.wav", b"RIFF\x24\x00\x00\x00WAVEfmt "),
    ("cut before its moov atom.m4a", b"\x00\x00\x00\x1cftypM4A \x00\x00\x02\x00M4A isomiso2" + bytes(64)),
])
def test_a_file_no_decoder_can_open_says_each_ones_reason_and_its_path_once(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(CorruptAudioError) as e:
        load_audio(path)
    text = str(e.value)
    assert_names(e.value, path, "libsndfile: ", "; ffmpeg: ")
    assert text.count(str(path)) == 1 and "Errno" not in text and "b'" not in text, text


def test_truncated_mp3(fma_mp3, tmp_path):
    """Cut in the middle: libsndfile returns the first half without complaint, the
    Xing header says 30 s, so load_audio calls it truncated."""
    data = fma_mp3.read_bytes()
    path = tmp_path / "truncated.mp3"
    path.write_bytes(data[: len(data) // 2])
    assert sf.info(str(path)).duration > 29  # header still promises the whole clip
    with pytest.raises(CorruptAudioError) as e:
        load_audio(path)
    assert_names(e.value, path, "truncated", "29.98 s")
    # the part before the cut is still readable as a window
    assert len(load_audio(path, offset=2.0, duration=3.0)) == 3 * SR


def test_mp3_cut_after_its_header(fma_mp3, tmp_path):
    path = tmp_path / "stub.mp3"
    path.write_bytes(fma_mp3.read_bytes()[:2048])
    with pytest.raises(CorruptAudioError) as e:
        load_audio(path)
    assert_names(e.value, path, "truncated")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.mp3"
    path.write_bytes(b"")
    with pytest.raises(EmptyAudioError) as e:
        load_audio(path)
    assert_names(e.value, path, "0 bytes")


def test_text_file_named_mp3(tmp_path):
    path = tmp_path / "notes.mp3"
    path.write_text("this is a shopping list, not a song\n" * 50)
    with pytest.raises(NotAudioError) as e:
        load_audio(path)
    assert_names(e.value, path, "not an audio file")
    with pytest.raises(NotAudioError):
        audio_info(path)


MIDI = (b"MThd" + struct.pack(">IHHH", 6, 0, 1, 96) + b"MTrk" + struct.pack(">I", 12)
        + bytes([0x00, 0x90, 60, 100, 0x60, 0x80, 60, 0, 0x00, 0xFF, 0x2F, 0x00]))


@pytest.mark.parametrize("name, data, words", [
    ("theme.mid", MIDI, ["a midi file", "render it to audio first", "timidity"]),
    ("theme.rmi", b"RIFF" + struct.pack("<I", 4 + 8 + len(MIDI)) + b"RMIDdata" + struct.pack("<I", len(MIDI)) + MIDI,
     ["a midi file"]),
    ("march.it", b"IMPM" + b"march".ljust(26, b"\0") + bytes(400), ["impulse tracker module", "ffmpeg -i song.it"]),
    ("intro.xm", b"Extended Module: intro".ljust(60, b"\0") + bytes(300), ["an xm module"]),
    ("level.s3m", bytes(44) + b"SCRM" + bytes(200), ["scream tracker 3 module"]),
    ("title.mod", bytes(1080) + b"M.K." + bytes(1024), ["a mod module", "song.mod"]),
])
def test_midi_and_tracker_files_say_what_they_are(tmp_path, name, data, words):
    """Game packages (Debian's openttd-openmsx, pingus-data) hold music as MIDI or tracker modules:
    one line saying that it is notes, not sound, and how to render it, not just "no decoder"."""
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(NotAudioError) as e:
        load_audio(path)
    assert_names(e.value, path, "not an audio file", *words)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_named_mp3(tmp_path, seed):
    # FFmpeg's probe can take random bytes for some codec with no sample rate: still not audio
    path = tmp_path / "noise.mp3"
    path.write_bytes(np.random.default_rng(seed).bytes(4096))
    with pytest.raises((NotAudioError, CorruptAudioError)) as e:
        load_audio(path)
    assert str(path) in str(e.value)


def test_too_short_clip(write_wav):
    path = write_wav("short.wav", tone(0.5))
    with pytest.raises(TooShortError) as e:
        load_audio(path)
    assert_names(e.value, path, "0.50 s < 1.00 s")
    assert len(load_audio(path, min_duration=0.5)) == SR // 2
    # the default minimum is MIN_DURATION: a clip of exactly 1 s passes
    assert MIN_DURATION == 1.0
    assert len(load_audio(write_wav("one.wav", tone(1.0)))) == SR


def test_all_zero_clip(write_wav):
    path = write_wav("silence.wav", np.zeros(3 * SR, np.float32))
    with pytest.raises(SilentAudioError) as e:
        load_audio(path)
    assert_names(e.value, path, "silent")
    assert not load_audio(path, allow_silent=True).any()


def test_nan_samples(write_wav):
    y = tone(2.0)
    y[SR] = np.nan
    path = write_wav("nan.wav", y, subtype="FLOAT")
    with pytest.raises(NonFiniteAudioError) as e:
        load_audio(path)
    assert_names(e.value, path, "nan")
    with pytest.raises(NonFiniteAudioError):
        list(stream_audio(path, sr=16000))


def test_max_duration(write_wav):
    path = write_wav("long.wav", tone(5.0))
    with pytest.raises(TooLongError) as e:
        load_audio(path, max_duration=2.0)
    assert_names(e.value, path, "5.0 s > 2.0 s")
    assert len(load_audio(path, max_duration=10.0)) == 5 * SR


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.wav"
    with pytest.raises(AudioMissingError) as e:
        load_audio(path)
    assert_names(e.value, path, "no such file")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(write_wav):
    path = write_wav("locked.wav", tone(1.0))
    path.chmod(0)
    try:
        with pytest.raises(AudioMissingError) as e:
            load_audio(path)
        assert_names(e.value, path, "permission denied")
    finally:
        path.chmod(0o644)


def test_folder_passed_as_file(tmp_path):
    folder = tmp_path / "album.mp3"
    folder.mkdir()
    with pytest.raises(NotAudioError) as e:
        load_audio(folder)
    assert_names(e.value, folder, "folder")


def test_bad_window_arguments(write_wav):
    path = write_wav("a.wav", tone(1.0))
    with pytest.raises(ValueError):
        load_audio(path, offset=-1.0)
    with pytest.raises(ValueError):
        load_audio(path, duration=0.0)
    with pytest.raises(ValueError):
        load_audio(path, mono=False)


# --- a 1-hour file ---------------------------------------------------------------------

HOUR_SR = 8000


@pytest.fixture(scope="module")
def hour_wav(tmp_path_factory):
    """1 h of 8 kHz mono 16-bit PCM (55 MB), written a minute at a time."""
    path = tmp_path_factory.mktemp("long") / "hour.wav"
    minute = np.arange(60 * HOUR_SR)
    with sf.SoundFile(str(path), "w", HOUR_SR, 1, subtype="PCM_16") as f:
        for m in range(60):
            # a 440 Hz tone whose level encodes the minute, so a window can be checked
            f.write((0.01 * (m + 1) * np.sin(2 * np.pi * 440 * minute / HOUR_SR)).astype(np.float32))
    return path


def test_hour_window_is_fast_and_right(hour_wav, monkeypatch):
    counter = FrameCounter(monkeypatch)
    y = load_audio(hour_wav, sr=HOUR_SR, offset=3000, duration=3)
    assert len(y) == 3 * HOUR_SR
    assert np.abs(y).max() == pytest.approx(0.01 * 51, abs=2e-3)  # minute 50
    assert counter.frames == 3 * HOUR_SR  # it seeks: fast by design, not checked by the clock here
    counter.frames = 0
    y22 = load_audio(hour_wav, sr=SR, offset=3000, duration=3)  # resampled: a few ms around it
    assert len(y22) == 3 * SR
    assert counter.frames < 3.2 * HOUR_SR


def test_hour_stream_memory_is_bounded(hour_wav):
    """Streaming the whole hour holds one block at a time: numpy's peak stays at a few
    blocks (BLOCK_BYTES of float32 each, 4 MiB), far below the 115 MB of the whole waveform."""
    import tracemalloc

    tracemalloc.start()
    try:
        total, peak_block = 0, 0
        for block in stream_audio(hour_wav, sr=HOUR_SR):
            total += len(block)
            peak_block = max(peak_block, len(block))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"numpy peak while streaming 1 h: {peak / 1e6:.1f} MB")
    assert total == 3600 * HOUR_SR
    assert peak_block <= BLOCK_BYTES // 4
    whole = 3600 * HOUR_SR * 4
    assert peak < 4 * BLOCK_BYTES < whole / 5, f"peak {peak / 1e6:.1f} MB"


MEMORY_BOUND_MB = 8 * BLOCK_BYTES / 2**20  # a few blocks and the resampler, whatever the file


def stream_growth_mb(path: Path, sr: int) -> tuple[int, float]:
    """Samples streamed from ``path`` at ``sr`` in a fresh process, and how much its
    ru_maxrss grew meanwhile (MB), after a warm-up on a short window of the same file."""
    code = (
        "import resource, sys\n"
        "from genrekit.audio import stream_audio\n"
        "sr = int(sys.argv[2])\n"
        "list(stream_audio(sys.argv[1], sr=sr, duration=0.1))\n"  # warm up imports, decoder and soxr
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "n = sum(len(b) for b in stream_audio(sys.argv[1], sr=sr))\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(n, (after - before) / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path), str(sr)], capture_output=True, text=True,
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert out.returncode == 0, out.stderr
    n, grown_mb = out.stdout.split()
    return int(n), float(grown_mb)


def test_hour_stream_resampled_memory_subprocess(hour_wav):
    """Streaming 1 h resampled to 22.05 kHz: ru_maxrss grows by a few blocks, not by
    the 317 MB the hour takes at 22.05 kHz float32."""
    n, grown_mb = stream_growth_mb(hour_wav, SR)
    assert abs(n - 3600 * SR) <= 1
    print(f"ru_maxrss grew by {grown_mb:.1f} MB streaming 1 h at 22.05 kHz")
    assert grown_mb < MEMORY_BOUND_MB, f"ru_maxrss grew by {grown_mb} MB"


# --- memory whatever the format --------------------------------------------------------

def test_block_frames_are_bounded_in_bytes():
    assert block_frames(8, 384_000, SR) * 8 * 4 == BLOCK_BYTES
    assert block_frames(1, SR, SR) * 4 == BLOCK_BYTES
    assert block_frames(MAX_CHANNELS, MAX_SAMPLERATE, SR) * MAX_CHANNELS * 4 <= BLOCK_BYTES
    # upsampling 1 kHz to 48 kHz: the resampled block is bounded too
    assert block_frames(1, MIN_SAMPLERATE, 48000) * 48 * 4 <= BLOCK_BYTES


@pytest.fixture(scope="module")
def hires_flac(tmp_path_factory):
    """6 s of 384 kHz, 8-channel 16-bit FLAC (4 MB): 74 MB as float32, decoded."""
    path = tmp_path_factory.mktemp("hires") / "hires.flac"
    t = np.arange(384_000) / 384_000
    with sf.SoundFile(str(path), "w", 384_000, 8, subtype="PCM_16") as f:
        for second in range(6):
            x = (0.1 * np.sin(2 * np.pi * 440 * (t + second))).astype(np.float32)
            f.write(np.repeat(x[:, None], 8, axis=1))
    return path


def test_hires_multichannel_memory_subprocess(hires_flac):
    """Before, a block was 30 s of frames whatever the format, so this file was decoded
    in one 74 MB piece (ru_maxrss grew by 89 MB); now a block is BLOCK_BYTES (0.34 s)."""
    n, grown_mb = stream_growth_mb(hires_flac, SR)
    assert n == 6 * SR
    print(f"ru_maxrss grew by {grown_mb:.1f} MB streaming 6 s of 384 kHz x 8 channels")
    assert grown_mb < MEMORY_BOUND_MB, f"ru_maxrss grew by {grown_mb} MB"


def test_hires_multichannel_is_decoded_right(hires_flac):
    y = load_audio(hires_flac, sr=SR, offset=2.0, duration=1.0)
    assert len(y) == SR
    t = np.arange(SR) / SR + 2.0
    np.testing.assert_allclose(y, 0.1 * np.sin(2 * np.pi * 440 * t), atol=1e-3)


@pytest.mark.parametrize("channels, rate, words", [
    (MAX_CHANNELS + 8, 22050, f"{MAX_CHANNELS + 8} channels"),
    (1, MAX_SAMPLERATE + 32_000, f"sample rate {MAX_SAMPLERATE + 32_000} hz"),
    (2, 1_000_000, "sample rate 1000000 hz"),
    (1, MIN_SAMPLERATE // 2, f"sample rate {MIN_SAMPLERATE // 2} hz"),
])
def test_absurd_headers_are_refused_before_decoding(tmp_path, monkeypatch, channels, rate, words):
    path = tmp_path / "odd.wav"
    sf.write(path, np.full((rate // 20, channels), 0.1, np.float32), rate, subtype="PCM_16")
    counter = FrameCounter(monkeypatch)
    for call in (audio_info, load_audio, lambda p: list(stream_audio(p))):
        with pytest.raises(UnsupportedAudioError) as e:
            call(path)
        assert_names(e.value, path, "unsupported audio format", words)
    assert counter.frames == 0
    ok = tmp_path / "ok.wav"
    sf.write(ok, np.full((MAX_SAMPLERATE // 10, 2), 0.1, np.float32), MAX_SAMPLERATE, subtype="PCM_16")
    assert audio_info(ok).samplerate == MAX_SAMPLERATE


def test_target_rate_out_of_range(write_wav):
    path = write_wav("a.wav", tone(1.0))
    with pytest.raises(ValueError):
        load_audio(path, sr=MAX_SAMPLERATE * 2)


# --- truncated files -------------------------------------------------------------------

def noisy_tone(seconds: float, sr: int) -> np.ndarray:
    """A tone with noise, so that lossy encoders spread bytes evenly over time."""
    noise = 0.05 * np.random.default_rng(0).standard_normal(int(seconds * sr))
    return (tone(seconds, sr) + noise).astype(np.float32)


def cut(path: Path, keep: float) -> Path:
    """A copy of ``path`` with only the first ``keep`` fraction of its bytes."""
    data = path.read_bytes()
    out = path.with_name("cut_" + path.name)
    out.write_bytes(data[: int(len(data) * keep)])
    return out


@pytest.mark.parametrize("fmt, subtype, ext", [("WAV", "PCM_16", "wav"), ("WAV", "FLOAT", "wav"),
                                               ("AIFF", "PCM_16", "aiff"), ("AU", "PCM_16", "au")])
def test_truncated_pcm_is_corrupt(tmp_path, fmt, subtype, ext):
    """libsndfile reports what a cut WAV/AIFF/AU holds; the header gives what it should."""
    full = tmp_path / f"full.{ext}"
    sf.write(full, noisy_tone(4.0, SR), SR, format=fmt, subtype=subtype)
    path = cut(full, 0.5)
    assert sf.info(str(path)).duration < 2.1  # libsndfile alone would call it a 2 s clip
    with pytest.raises(CorruptAudioError) as e:
        load_audio(path)
    assert_names(e.value, path, "truncated: decoded 2.0", "of the 4.00 s the header gives")
    assert audio_info(path).duration == pytest.approx(4.0)
    assert len(load_audio(path, offset=0.5, duration=1.0)) == SR  # before the cut: fine
    with pytest.raises(CorruptAudioError, match="truncated"):
        load_audio(path, offset=3.0, duration=0.9)  # after it
    assert len(load_audio(full)) == 4 * SR


def test_wav_short_by_a_tenth_of_a_second_is_truncated(write_wav):
    full = write_wav("full.wav", noisy_tone(4.0, SR))
    path = full.with_name("short.wav")
    path.write_bytes(full.read_bytes()[: -int(0.1 * SR) * 2])
    with pytest.raises(CorruptAudioError, match=r"decoded 3\.90 s of the 4\.00 s"):
        load_audio(path)


def test_wav_with_streamed_header_is_not_truncated(write_wav):
    """A WAV written to a pipe has 0xFFFFFFFF as its data size: no length to compare with."""
    path = write_wav("piped.wav", noisy_tone(3.0, SR))
    data = bytearray(path.read_bytes())
    at = data.index(b"data") + 4
    data[at: at + 4] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    assert len(load_audio(path)) == 3 * SR


def test_wav_with_zero_data_size_decodes_what_it_holds(write_wav):
    """A recorder that stopped before closing the file leaves 0 as the data size (and the
    RIFF size): libsndfile sees no samples, FFmpeg reads the data to the end of the file."""
    path = write_wav("unfinished.wav", noisy_tone(3.0, SR))
    data = bytearray(path.read_bytes())
    at = data.index(b"data") + 4
    data[at: at + 4] = data[4:8] = bytes(4)
    path.write_bytes(bytes(data))
    assert len(load_audio(path)) == 3 * SR
    header_only = path.with_name("header_only.wav")
    header_only.write_bytes(bytes(data[: at + 4]))
    with pytest.raises(EmptyAudioError) as e:
        load_audio(header_only)
    assert_names(e.value, header_only, "no audio samples")


def test_flac_with_unknown_length_decodes_to_its_end(tmp_path):
    """A FLAC encoded to a pipe (``ffmpeg ... -f flac - | ...``) has 0, "unknown", as its
    STREAMINFO sample count; libsndfile failed 6 s into it ("Internal psf_fseek() failed")."""
    path = tmp_path / "piped.flac"
    sf.write(path, noisy_tone(9.0, SR), SR, format="FLAC")
    data = bytearray(path.read_bytes())
    data[21] &= 0xF0  # STREAMINFO's 36-bit sample count: bytes 21 (low half) to 25
    data[22:26] = bytes(4)
    path.write_bytes(bytes(data))
    assert len(load_audio(path)) == 9 * SR
    full = load_audio(path)
    window = load_audio(path, offset=7.0, duration=1.5)
    np.testing.assert_allclose(window, full[7 * SR: 7 * SR + len(window)], atol=1e-4)


@pytest.mark.parametrize("subtype, sr", [("VORBIS", SR), ("OPUS", 48000)])
@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_ogg_is_corrupt(tmp_path, subtype, sr, keep):
    """An Ogg stream ends with a page flagged end-of-stream; a cut one does not."""
    full = tmp_path / "full.ogg"
    sf.write(full, noisy_tone(6.0, sr), sr, format="OGG", subtype=subtype)
    assert abs(len(load_audio(full, sr=sr)) - 6 * sr) <= 0.01 * sr
    path = cut(full, keep)
    with pytest.raises(CorruptAudioError) as e:
        load_audio(path, sr=sr)
    assert_names(e.value, path, "truncated: decoded", "the ogg stream ends without its last page")
    assert len(load_audio(path, sr=sr, offset=0.5, duration=1.0)) == sr  # before the cut: fine


def test_an_ogg_whose_last_page_counts_more_than_it_holds_decodes(tmp_path):
    """Such files play everywhere (one of 71 Ogg files in Debian's wesnoth and warzone2100 music
    packages); libsndfile stops 0.1 s before the count the last page gives. Only a missing
    end-of-stream page makes an Ogg file truncated."""
    from mutagen.ogg import OggPage

    full = tmp_path / "full.ogg"
    sf.write(full, noisy_tone(6.0, SR), SR, format="OGG", subtype="VORBIS")
    path = shift_ogg_page(full, tmp_path / "overcounted.ogg", -1, 3000)  # the last page
    with open(path, "rb") as f:
        assert OggPage.find_last(f, OggPage(f).serial).last  # still ends with its end-of-stream page
    assert sf.info(str(path)).frames > len(sf.read(str(path))[0]) + 2000  # libsndfile falls short
    whole, y = load_audio(full, sr=SR), load_audio(path, sr=SR)
    assert len(y) >= len(whole)  # the last page is no longer trimmed to the count: a few samples more
    np.testing.assert_allclose(y[: len(whole)], whole, atol=1e-6)


@pytest.mark.parametrize("shift", [488, -488])
def test_an_opus_file_whose_page_positions_jump_decodes_to_its_end(tmp_path, shift):
    """``ffmpeg -i race1-jt.ogg race1-jt.opus`` (a Vorbis file from Debian's extremetuxracer-data)
    writes a page whose granule position is 488 samples off the samples its packets hold, where
    the source's timestamps have a gap. libsndfile fails there ("file is malformed", 5.5 s into a
    60 s file, which genrekit called corrupt); FFmpeg and players decode it. genrekit goes on with
    FFmpeg from where libsndfile stopped."""
    sr = 48000
    full = tmp_path / "full.opus"
    sf.write(full, noisy_tone(6.0, sr), sr, format="OGG", subtype="OPUS")
    path = shift_ogg_page(full, tmp_path / "jump.opus", None, shift)
    with pytest.raises(RuntimeError, match="malformed"):
        sf.read(str(path))  # libsndfile gives up in the middle
    whole, y = load_audio(full, sr=sr), load_audio(path, sr=sr)
    assert len(y) == len(whole)
    np.testing.assert_allclose(y, whole, atol=0.05)  # FFmpeg's Opus decoder after the jump
    # A window after the jump is read from libsndfile's seek, which goes by the positions: it
    # may land up to the jump away (10 ms), so only its length is held here.
    for offset in (1.0, 4.0):
        assert len(load_audio(path, sr=sr, offset=offset, duration=1.5)) == int(1.5 * sr)


def test_a_corrupt_ogg_that_ffmpeg_cannot_decode_either_is_corrupt(tmp_path, monkeypatch):
    """The FFmpeg fallback after a libsndfile failure is for Ogg only, once: when FFmpeg fails
    too, the file is corrupt, with libsndfile's reason."""
    from genrekit import audio

    sr = 48000
    path = tmp_path / "a.opus"
    sf.write(path, noisy_tone(3.0, sr), sr, format="OGG", subtype="OPUS")

    def failing(self, *args, **kwargs):
        yield np.zeros((sr, 1), np.float32)
        raise RuntimeError("bad packet")

    reads = []

    def read_then_fail(self, *args, **kwargs):  # libsndfile: one good block, then an error mid-file
        reads.append(1)
        if len(reads) > 1:
            raise RuntimeError("bad packet")
        return np.zeros((sr, 1), np.float32)

    monkeypatch.setattr(sf.SoundFile, "read", read_then_fail)
    monkeypatch.setattr(audio._PyAVReader, "blocks", failing)
    with pytest.raises(CorruptAudioError) as e:
        load_audio(path, sr=sr)
    assert_names(e.value, path, "decoding failed: bad packet")


@pytest.mark.parametrize("subtype, sr", [("VORBIS", SR), ("OPUS", 48000)])
def test_ogg_streams_joined_end_to_end_decode_to_the_end_of_the_last(tmp_path, subtype, sr):
    """``cat a.ogg b.ogg`` plays both; libsndfile stopped at the end of the first, silently."""
    first, second = tmp_path / "a.ogg", tmp_path / "b.ogg"
    sf.write(first, noisy_tone(3.0, sr), sr, format="OGG", subtype=subtype)
    sf.write(second, 0.5 * noisy_tone(2.0, sr), sr, format="OGG", subtype=subtype)
    joined = tmp_path / "joined.ogg"
    joined.write_bytes(first.read_bytes() + second.read_bytes())
    y, alone = load_audio(joined, sr=sr), load_audio(first, sr=sr)
    assert abs(len(y) - 5 * sr) <= 0.05 * sr
    np.testing.assert_allclose(y[: len(alone) - sr // 10], alone[: len(alone) - sr // 10], atol=2e-3)


def test_offset_past_a_cut_ogg_says_truncated(tmp_path):
    full = tmp_path / "full.ogg"
    sf.write(full, noisy_tone(6.0, SR), SR, format="OGG", subtype="VORBIS")
    path = cut(full, 0.5)
    with pytest.raises(CorruptAudioError, match="truncated.*offset 5.5 s is past"):
        load_audio(path, offset=5.5, duration=0.4, min_duration=0.1)


# --- one policy for short and silent audio ---------------------------------------------

def test_checked_stream_passes_blocks_through(write_wav):
    path = write_wav("a.wav", tone(2.5))
    stream = CheckedStream(stream_audio(path, sr=16000), 16000, path)
    blocks = list(stream)
    np.testing.assert_array_equal(np.concatenate(blocks), load_audio(path, sr=16000))
    assert stream.samples == 40000 and stream.seconds == 2.5
    assert stream.peak == pytest.approx(0.3, abs=1e-3)


@pytest.mark.parametrize("blocks, error, words", [
    ([tone(0.3, 16000)], TooShortError, "0.30 s < 1.00 s"),
    ([tone(0.6, 16000), tone(0.3, 16000)], TooShortError, "0.90 s < 1.00 s"),
    ([np.zeros(32000, np.float32)], SilentAudioError, "silent"),
    ([np.full(32000, 1e-7, np.float32)], SilentAudioError, "silent"),
    ([], EmptyAudioError, "0 samples"),
    ([np.zeros(0, np.float32)], EmptyAudioError, "0 samples"),
    ([np.array([0.1, np.nan] * 16000, np.float32)], NonFiniteAudioError, "nan"),
])
def test_checked_stream_refuses_unusable_audio(blocks, error, words):
    with pytest.raises(error) as e:
        list(CheckedStream(blocks, 16000, "<waveform>"))
    assert_names(e.value, "<waveform>", words)
    y = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    with pytest.raises(error):
        check_waveform(y, 16000, "<waveform>")


def test_checked_stream_options():
    assert len(list(CheckedStream([tone(0.3, 16000)], 16000, "x", min_duration=0.25))) == 1
    assert len(list(CheckedStream([np.zeros(32000, np.float32)], 16000, "x", allow_silent=True))) == 1
    check_waveform(tone(1.0, 16000), 16000, "x")  # exactly MIN_DURATION passes


def test_short_and_silent_files_are_refused_by_default(write_wav):
    for name, y, error in [("short.wav", tone(0.3), TooShortError),
                           ("silent.wav", np.zeros(3 * SR, np.float32), SilentAudioError)]:
        path = write_wav(name, y)
        with pytest.raises(error):
            load_audio(path)
        with pytest.raises(error):
            list(CheckedStream(stream_audio(path, sr=16000), 16000, path))


# --- what a bad path is ----------------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_is_not_a_regular_file(tmp_path):
    """Before, a FIFO was reported as an empty file (stat says 0 bytes); opening it would block."""
    path = tmp_path / "pipe.wav"
    os.mkfifo(path)
    for call in (load_audio, audio_info):
        with pytest.raises(NotAudioError) as e:
            call(path)
        assert_names(e.value, path, "not a regular file: a named pipe (fifo)")


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_dev_zero_is_not_a_regular_file():
    with pytest.raises(NotAudioError) as e:
        load_audio("/dev/zero")
    assert_names(e.value, "/dev/zero", "not a regular file: a character device")


def test_symlink_loop_says_so(tmp_path):
    a, b = tmp_path / "a.mp3", tmp_path / "b.mp3"
    os.symlink(b, a)
    os.symlink(a, b)
    with pytest.raises(AudioMissingError) as e:
        load_audio(a)
    assert_names(e.value, a, "symlink loop")


def test_broken_symlink_says_where_it_points(tmp_path):
    link = tmp_path / "song.mp3"
    os.symlink(tmp_path / "gone.mp3", link)
    with pytest.raises(AudioMissingError) as e:
        load_audio(link)
    assert_names(e.value, link, "broken symlink to", "gone.mp3")


def test_offset_past_the_end(write_wav):
    path = write_wav("a.wav", tone(3.0))
    for offset in (3.0, 40.0):
        with pytest.raises(OffsetPastEndError) as e:
            load_audio(path, offset=offset, duration=3.0)
        assert_names(e.value, path, "offset past the end", f"offset {offset:g} s, audio 3.00 s")
    with pytest.raises(OffsetPastEndError):
        list(stream_audio(path, sr=16000, offset=40.0))  # resampled window: the same
    assert len(load_audio(path, offset=2.0, duration=3.0)) == SR  # partly past the end: what is there


def test_offset_past_the_end_without_a_length_in_the_header(tmp_path):
    """ADTS AAC gives no length: the error comes after nothing decoded."""
    av = pytest.importorskip("av")
    if "aac" not in av.codecs_available:
        pytest.skip("FFmpeg in PyAV has no AAC encoder")
    path = tmp_path / "clip.aac"
    with av.open(str(path), "w", format="adts") as container:
        stream = container.add_stream("aac", rate=SR, layout="mono")
        y = noisy_tone(3.0, SR)
        for i in range(0, len(y), 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(y[None, i: i + 1024]), format="flt",
                                               layout="mono")
            frame.sample_rate, frame.pts = SR, i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with pytest.raises(OffsetPastEndError, match="offset 40 s"):
        load_audio(path, offset=40.0, duration=3.0)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_cli_reports_bad_paths_in_one_line(tmp_path, write_wav, capsys):
    """`genrekit show` on a FIFO, a symlink loop and past the end: one line each, no traceback."""
    pytest.importorskip("matplotlib")
    from genrekit.cli import main

    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.wav"
    os.symlink(loop, loop)
    wav = write_wav("a.wav", tone(3.0))
    cases = [([str(fifo)], "not a regular file"), ([str(loop)], "symlink loop"),
             ([str(wav), "--offset", "40"], "offset 40 s, audio 3.00 s")]
    for args, words in cases:
        assert main(["show", *args, "--out", str(tmp_path / "x.png")]) != 0
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


# --- libmpg123's notes on standard error -----------------------------------------------

def mp3_with_junk(path: Path) -> Path:
    """An MP3 (LAME through libsndfile) with 700 random bytes in the middle of its frames:
    libmpg123 resyncs past them and prints notes about it."""
    clean = path.with_name("clean.mp3")
    sf.write(clean, noisy_tone(4.0, 44100), 44100, format="MP3", subtype="MPEG_LAYER_III")
    data = clean.read_bytes()
    half = len(data) // 2
    path.write_bytes(data[:half] + np.random.default_rng(0).bytes(700) + data[half:])
    return path


DECODE_IN_THREADS = """
import os, sys, threading
from genrekit.audio import load_audio
results = []
def work():
    for _ in range(3):
        results.append(len(load_audio(sys.argv[1])))
threads = [threading.Thread(target=work) for _ in range(4)]
print("python line before", file=sys.stderr, flush=True)
os.write(2, b"C-level line\\n")
for t in threads: t.start()
os.write(2, b"progress 50%\\r")
for t in threads: t.join()
os.write(2, b"C-level line after\\n")
print("python line after", file=sys.stderr, flush=True)
print(len(results), len(set(results)), results[0])
raise RuntimeError("uncaught at the end")
"""


def run_decoder(path: Path, **env) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-c", DECODE_IN_THREADS, str(path)], capture_output=True,
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **env}, timeout=120)
    return subprocess.CompletedProcess(out.args, out.returncode, out.stdout.decode(), out.stderr.decode())


def test_mpg123_notes_do_not_leak_and_nothing_else_is_lost(tmp_path):
    path = mp3_with_junk(tmp_path / "junk.mp3")
    shown = run_decoder(path, GENREKIT_DECODER_MESSAGES="show")
    assert "Note: Illegal Audio-MPEG-Header" in shown.stderr  # the file does make libmpg123 talk
    out = run_decoder(path)
    assert out.returncode == 1
    assert "Illegal Audio-MPEG-Header" not in out.stderr and "Note:" not in out.stderr, out.stderr
    for line in ("python line before", "C-level line\n", "progress 50%\r", "C-level line after\n", "python line after",
                 "RuntimeError: uncaught at the end"):
        assert line in out.stderr, out.stderr
    assert out.stderr.index("Traceback") > out.stderr.index("python line after")
    n, distinct, samples = map(int, out.stdout.split())
    assert (n, distinct) == (12, 1) and abs(samples - 4 * SR) < 0.05 * SR
    assert out.stdout == shown.stdout


@pytest.mark.parametrize("ending, words", [
    ("os.write(2, b'last words\\n'); os._exit(3)", "last words"),  # no atexit
    ("import ctypes, faulthandler; faulthandler.enable(); ctypes.string_at(0)", "Segmentation fault"),
])
def test_filtered_stderr_survives_a_hard_exit(tmp_path, ending, words):
    """The filter is a helper process: what this process wrote last still comes out."""
    path = mp3_with_junk(tmp_path / "junk.mp3")
    code = f"import os, sys\nfrom genrekit.audio import load_audio\nload_audio(sys.argv[1])\n{ending}\n"
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    err = out.stderr.decode()
    assert out.returncode != 0 and words in err and "Note:" not in err, err


def test_decoder_chatter_filter():
    from genrekit.audio import _without_chatter

    data = (b"keep me\nNote: Illegal Audio-MPEG-Header 0x00000000 at offset 1.\nNote: Trying to resync...\n"
            b"[src/libmpg123/layer3.c:INT123_do_layer3():1801] error: dequantization failed!\n"
            b"Warning: Xing stream size off by more than 1%, fuzzy seeking may be even more fuzzy than by design!\n"
            b"Note: this is someone else's note\nWarning: disk almost full\n12%|##  |\r")
    out, held = _without_chatter(data)
    assert out == b"keep me\nNote: this is someone else's note\nWarning: disk almost full\n12%|##  |\r"
    assert held == b""
    assert _without_chatter(b"a\nNote: Ill") == (b"a\n", b"Note: Ill")  # may still become a note
    assert _without_chatter(b"No") == (b"", b"No")
    assert _without_chatter(b"Nope") == (b"Nope", b"")


FFMPEG_LOG_LINE = r"(?m)^\[[\w,:.-]+ @ 0x[0-9a-f]+\]"  # FFmpeg's own log format: "[ogg @ 0x55d0c1a2b3c0] ..."


@pytest.mark.parametrize("kind", ["chained", "truncated"])
def test_ffmpeg_log_lines_do_not_reach_the_terminal(tmp_path, kind):
    """``genrekit predict`` says one line per file; FFmpeg's own log lines ("[ogg @ 0x...] failed to
    create or replace stream" for Ogg streams joined end to end, "[mov,mp4,... @ 0x...] moov atom not
    found" for a cut M4A, which PyAV decodes) stay off standard error: genrekit's error says why."""
    import re
    import shutil

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")

    def encode(name, *args):
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine=440:d=3", *args,
                        str(tmp_path / name)], check=True)
        return (tmp_path / name).read_bytes()

    if kind == "chained":  # two Opus streams joined end to end (cat a.opus b.opus)
        path, data = tmp_path / "chained.opus", encode("a.opus") + encode("b.opus")
    else:  # an M4A cut before its moov atom: only PyAV (FFmpeg) tries it
        path, data = tmp_path / "cut.m4a", encode("whole.m4a", "-c:a", "aac")[:20000]
    path.write_bytes(data)
    out = subprocess.run([sys.executable, "-m", "genrekit", "predict", str(path)], capture_output=True, text=True,
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert not re.search(FFMPEG_LOG_LINE, out.stderr), out.stderr
    assert out.stdout.count("\n") == 1 and out.stdout.startswith(f"{path}\t"), out.stdout
    if kind == "chained":
        assert out.returncode == 0, out.stderr
    else:  # the failure names the file and the reason, once on stdout and in the summary
        assert out.returncode == 1 and "FAILED: corrupt or truncated audio" in out.stdout
        assert f"{path}: corrupt or truncated audio" in out.stderr


# --- file discovery --------------------------------------------------------------------

def test_find_audio_files(tmp_path, write_wav):
    (tmp_path / "a" / "b").mkdir(parents=True)
    write_wav("a/b/one.wav", tone(0.1))
    write_wav("a/two.WAV", tone(0.1))
    (tmp_path / "a" / "cover.jpg").write_bytes(b"\xff\xd8")
    (tmp_path / "a" / "notes.txt").write_text("x")
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"x")
    found = find_audio_files([tmp_path / "a", odd])
    assert found == [tmp_path / "a" / "b" / "one.wav", tmp_path / "a" / "two.WAV", odd]
    assert is_audio_path("x.M4A") and not is_audio_path("x.txt")
    assert find_audio_files(str(odd)) == [odd]


def test_folder_that_cannot_be_read_is_reported_not_skipped(tmp_path, write_wav, monkeypatch):
    """A sub-folder without read permission is listed itself, so that the batch reports it
    (one line: path and reason) instead of silently leaving out the music in it."""
    (tmp_path / "lib" / "locked").mkdir(parents=True)
    write_wav("lib/locked/in.wav", tone(2.0))
    wav = write_wav("lib/out.wav", tone(2.0))
    locked = tmp_path / "lib" / "locked"
    scandir = os.scandir

    def refuse(path="."):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse)
    assert find_audio_files([tmp_path / "lib"]) == [locked, wav]
    with pytest.raises(AudioMissingError) as e:
        load_audio(locked)
    assert_names(e.value, locked, "folder cannot be read: permission denied")


# --------------------------------------------------------------------------- lengths that are estimates

def _ffmpeg(tmp_path, name, *args, silence_first=0.0, seconds=12.0):
    """A stereo 44.1 kHz tone (quiet, then loud: VBR frame sizes vary) encoded by ffmpeg."""
    import shutil

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    sr, t = 44100, np.arange(int(seconds * 44100)) / 44100
    y = (0.3 * np.sin(2 * np.pi * 440 * t) * (t > seconds / 2) + 0.01 * np.sin(2 * np.pi * 220 * t))
    y = np.concatenate([np.zeros(int(silence_first * sr)), y]).astype(np.float32)
    wav = tmp_path / "src.wav"
    sf.write(wav, np.stack([y, y], axis=1), sr)
    out = tmp_path / name
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), *args, str(out)], check=True)
    return out, len(y) / sr


@pytest.mark.parametrize("silence_first", [0.0, 2.0])
def test_vbr_mp3_without_xing_header_decodes_to_its_end(silence_first, tmp_path):
    path, seconds = _ffmpeg(tmp_path, "vbr.mp3", "-q:a", "2", "-write_xing", "0", silence_first=silence_first)
    y = load_audio(path, sr=22050)
    assert abs(len(y) / 22050 - seconds) < 0.1
    window = load_audio(path, sr=22050, offset=7.0, duration=2.0)
    start = round(7.0 * 22050)
    np.testing.assert_allclose(window, y[start:start + len(window)], atol=1e-3)
    assert len(window) == 2 * 22050


def test_raw_adts_aac_decodes_to_its_end(tmp_path):
    path, seconds = _ffmpeg(tmp_path, "raw.aac", "-c:a", "aac", "-b:a", "96k")
    y = load_audio(path, sr=22050)
    assert abs(len(y) / 22050 - seconds) < 0.1
    assert audio_info(path).duration is None  # the bit rate's guess is no length


def test_cut_vbr_mp3_without_xing_is_read_as_far_as_it_goes(tmp_path):
    path, seconds = _ffmpeg(tmp_path, "vbr.mp3", "-q:a", "2", "-write_xing", "0")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 4])
    y = load_audio(path, sr=22050)  # a cut file cannot be told from a short one: no error
    assert 1.0 < len(y) / 22050 < seconds


def test_mp3s_joined_end_to_end_decode_to_the_end_of_the_last(tmp_path):
    """``cat a.mp3 b.mp3``: the first file's Xing header counts only its own bytes and an ID3v2
    tag sits in the middle; both are decoded (libsndfile would stop after the first)."""
    first, seconds_a = _ffmpeg(tmp_path, "a.mp3", "-b:a", "128k", seconds=6.0)
    second, seconds_b = _ffmpeg(tmp_path, "b.mp3", "-b:a", "128k", seconds=9.0)
    assert first.read_bytes()[:3] == b"ID3"
    joined = tmp_path / "ab.mp3"
    joined.write_bytes(first.read_bytes() + second.read_bytes())
    single = load_audio(first, sr=22050)
    y = load_audio(joined, sr=22050)
    assert abs(len(y) / 22050 - (seconds_a + seconds_b)) < 0.2
    np.testing.assert_allclose(y[: len(single) - 2205], single[:-2205], atol=1e-3)
    loud = np.abs(y[-int(2 * 22050):]).max()  # the end of b is its loud tone
    assert loud > 0.2
    assert audio_info(first).duration == pytest.approx(seconds_a, abs=0.1)  # a single file keeps its length


def test_channels_that_cancel_are_named_as_such(tmp_path):
    y = tone(2.0)
    sf.write(tmp_path / "inverted.wav", np.stack([y, -y], axis=1), 22050, subtype="FLOAT")  # exactly -y
    with pytest.raises(SilentAudioError, match="silent after the downmix to mono.*channels cancel"):
        load_audio(tmp_path / "inverted.wav")
    sf.write(tmp_path / "silent.wav", np.zeros((44100, 2), np.float32), 22050)
    with pytest.raises(SilentAudioError) as caught:
        load_audio(tmp_path / "silent.wav")
    assert str(caught.value).endswith("audio is all silent")
    assert len(load_audio(tmp_path / "inverted.wav", allow_silent=True)) == 2 * 22050


def test_folder_scan_reports_broken_links_and_finds_every_decodable_extension(tmp_path):
    for name in ("a.wv", "b.mka", "c.m4b", "d.mp3", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "gone.flac").symlink_to(tmp_path / "missing.flac")
    found = [p.name for p in find_audio_files([tmp_path])]
    assert found == ["a.wv", "b.mka", "c.m4b", "d.mp3", "gone.flac"]
    with pytest.raises(AudioMissingError, match="broken symlink"):
        load_audio(tmp_path / "gone.flac")
