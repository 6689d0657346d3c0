"""Audio decoding on real files (../shared/data) and on every kind of bad input.

Truncated files: a decode that ends far short of the length the header gives (more than
max(1 s, 2 %) short; MP3s with a Xing/Info header, WAV, FLAC, OGG, MP4) is
:class:`CorruptAudioError`. A file whose header does not give an exact length (an MP3
without Xing header, ADTS AAC) cannot be told from a short one and decodes to what is there.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genrekit.audio import (BLOCK_SECONDS, audio_info, find_audio_files, is_audio_path, load_audio,
                            stream_audio)
from genrekit.errors import (AudioError, AudioMissingError, CorruptAudioError, EmptyAudioError,
                             NonFiniteAudioError, NotAudioError, SilentAudioError, TooLongError,
                             TooShortError)
from tests.conftest import tone

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


def test_window_beyond_the_end_is_empty(fma_mp3):
    with pytest.raises(EmptyAudioError) as e:
        load_audio(fma_mp3, offset=40.0, duration=3.0)
    assert_names(e.value, fma_mp3, "0 samples")


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


def test_window_is_faster_than_full_decode(fma_mp3):
    def best(**kw):
        times = []
        for _ in range(3):
            t = time.perf_counter()
            load_audio(fma_mp3, sr=SR, **kw)
            times.append(time.perf_counter() - t)
        return min(times)

    assert best(offset=20.0, duration=2.0) < best() / 3


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
        load_audio(path, min_duration=1.0)
    assert_names(e.value, path, "0.50 s < 1.00 s")
    # default minimum is 0.5 s: a 0.5 s clip passes, a 0.4 s one does not
    assert len(load_audio(path)) == SR // 2
    shorter = write_wav("shorter.wav", tone(0.4))
    with pytest.raises(TooShortError):
        load_audio(shorter)


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
    t = time.perf_counter()
    y = load_audio(hour_wav, sr=HOUR_SR, offset=3000, duration=3)
    elapsed = time.perf_counter() - t
    assert len(y) == 3 * HOUR_SR
    assert np.abs(y).max() == pytest.approx(0.01 * 51, abs=2e-3)  # minute 50
    assert counter.frames == 3 * HOUR_SR
    assert elapsed < 1.0
    counter.frames = 0
    y22 = load_audio(hour_wav, sr=SR, offset=3000, duration=3)  # resampled: a few ms around it
    assert len(y22) == 3 * SR
    assert counter.frames < 3.2 * HOUR_SR


def test_hour_stream_memory_is_bounded(hour_wav):
    """Streaming the whole hour holds one block at a time: numpy's peak stays at a few
    blocks (one block is 30 s = 1 MB here), far below the 115 MB of the whole waveform."""
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
    assert peak_block <= BLOCK_SECONDS * HOUR_SR
    whole = 3600 * HOUR_SR * 4
    assert peak < 8 * BLOCK_SECONDS * HOUR_SR * 4 < whole / 10, f"peak {peak / 1e6:.1f} MB"


def test_hour_stream_resampled_memory_subprocess(hour_wav):
    """The same in a fresh process, resampling to 22.05 kHz: ru_maxrss grows by far
    less than the 317 MB the hour would take at 22.05 kHz float32."""
    code = (
        "import resource, sys\n"
        "from genrekit.audio import stream_audio\n"
        "import numpy as np\n"
        "list(stream_audio(sys.argv[1], sr=22050, duration=1))\n"  # warm up imports and soxr
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "n = sum(len(b) for b in stream_audio(sys.argv[1], sr=22050))\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(n, (after - before) / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(hour_wav)], capture_output=True, text=True,
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert out.returncode == 0, out.stderr
    n, grown_mb = out.stdout.split()
    assert abs(int(n) - 3600 * SR) <= 1
    print(f"ru_maxrss grew by {float(grown_mb):.1f} MB streaming 1 h at 22.05 kHz")
    assert float(grown_mb) < 60, f"ru_maxrss grew by {grown_mb} MB"


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
