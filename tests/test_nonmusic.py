"""Generated non-music: determinism, the property each kind claims, disjoint train/test sets, manifest."""
from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genrekit.audio import load_audio
from genrekit.datasets import check_disjoint, open_dataset, read_manifest
from genrekit.datasets import nonmusic as nm
from genrekit.errors import DatasetError, MissingProgramError

SR = 16000
REPO = Path(__file__).resolve().parents[1]
HAVE_ESPEAK = shutil.which(nm.ESPEAK) is not None
needs_espeak = pytest.mark.skipif(not HAVE_ESPEAK, reason="espeak-ng not installed (apt-get install espeak-ng)")
QUICK_KINDS = tuple(k for k in nm.KINDS if k not in nm.SPEECH_KINDS)
AVAILABLE_KINDS = nm.KINDS if HAVE_ESPEAK else QUICK_KINDS


def find_recipe(kind, split="train", seconds=6.0, **wanted):
    """The first drawn recipe of ``kind`` whose fields match ``wanted``, shortened and at a plain level."""
    for index in range(500):
        recipe = nm.draw_recipe(kind, nm.clip_rng(0, split, kind, index), split)
        if all(recipe.get(k) == v for k, v in wanted.items()):
            return {**recipe, "duration": seconds, "level": {"mode": "peak", "dbfs": -3.0}}
    raise AssertionError(f"no {kind} recipe with {wanted} in 500 draws")


def power_spectrum(y, sr=SR, size=4096):
    """Mean periodogram over Hann-windowed frames (Welch)."""
    frames = np.lib.stride_tricks.sliding_window_view(y, size)[::size // 2]
    spectra = np.abs(np.fft.rfft(frames * np.hanning(size), axis=1)) ** 2
    return np.fft.rfftfreq(size, 1 / sr), spectra.mean(axis=0)


def db(x):
    return 10 * np.log10(x)


def frame_rms_db(y, sr=SR, ms=20):
    size = sr * ms // 1000
    frames = y[: len(y) // size * size].reshape(-1, size)
    return 20 * np.log10(np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1)) + 1e-12)


# ---------------------------------------------------------------- determinism

@pytest.mark.parametrize("kind", AVAILABLE_KINDS)
def test_same_seed_same_samples_and_recipe_rebuilds_clip(kind):
    first = nm.draw_recipe(kind, nm.clip_rng(7, "train", kind, 3), "train")
    again = nm.draw_recipe(kind, nm.clip_rng(7, "train", kind, 3), "train")
    assert first == again
    other = nm.draw_recipe(kind, nm.clip_rng(8, "train", kind, 3), "train")
    assert other != first
    short = {**first, "duration": 3.0}
    y = nm.render(short, SR)
    rebuilt = nm.render(json.loads(json.dumps(short)), SR)  # from the manifest's JSON
    assert y.dtype == np.float32 and len(y) == 3 * SR and np.abs(y).max() <= 1.0
    np.testing.assert_array_equal(y, rebuilt)
    assert not np.array_equal(y, nm.render({**other, "duration": 3.0}, SR))


def test_generate_clip_matches_draw_then_render():
    y, params = nm.generate_clip("sweep", nm.clip_rng(0, "test", "sweep", 0), SR, "test")
    np.testing.assert_array_equal(y, nm.render(params, SR))
    assert len(y) == round(params["duration"] * SR) and 3.0 <= params["duration"] <= 30.0


def test_clips_of_a_kind_are_independent_of_other_kinds_and_indices():
    a = nm.draw_recipe("tone", nm.clip_rng(0, "train", "tone", 5), "train")
    assert a == nm.draw_recipe("tone", nm.clip_rng(0, "train", "tone", 5), "train")
    assert a != nm.draw_recipe("tone", nm.clip_rng(0, "train", "tone", 6), "train")
    assert a != nm.draw_recipe("tone", nm.clip_rng(0, "test", "tone", 5), "test")


# ---------------------------------------------------------------- each kind has the property it claims

@pytest.mark.parametrize("colour, slope", [("white", 0.0), ("pink", -3.0), ("brown", -6.0), ("blue", 3.0),
                                           ("violet", 6.0)])
def test_noise_colour_has_its_spectral_slope(colour, slope):
    recipe = find_recipe("noise", colour=colour, eq=None, rolloff_hz=None)
    freqs, power = power_spectrum(nm.render(recipe, SR))
    band = (freqs >= 300) & (freqs <= 3000)
    fitted = np.polyfit(np.log2(freqs[band]), db(power[band]), 1)[0]  # dB per octave
    assert fitted == pytest.approx(slope, abs=0.5)


def test_band_limited_noise_stays_in_its_band():
    recipe = find_recipe("noise", colour="band")
    freqs, power = power_spectrum(nm.render(recipe, SR))
    inside = (freqs > recipe["low_hz"] * 1.1) & (freqs < recipe["high_hz"] / 1.1)
    outside = (freqs < recipe["low_hz"] / 1.5) | (freqs > recipe["high_hz"] * 1.5)
    assert db(power[inside].mean() / power[outside].mean()) > 40


@pytest.mark.parametrize("split", nm.SETS)
def test_some_noise_reaches_the_nyquist_frequency(split):
    highs = [nm.draw_recipe("noise", nm.clip_rng(0, split, "noise", i), split)["high_hz"] for i in range(200)]
    full = sum(h is None for h in highs)
    assert 0.45 * 200 < full < 0.7 * 200  # a sixth are bands (always capped), 70 % of the others uncut
    recipe = find_recipe("noise", split, colour="white", high_hz=None, source_sr=44100, rolloff_hz=None, eq=None)
    assert {r["source_sr"] for r in (nm.draw_recipe("noise", nm.clip_rng(0, split, "noise", i), split)
                                      for i in range(200)) if "source_sr" in r} == set(nm.SOURCE_RATES)
    for sr in (SR, 48000):  # rendered at 44.1 kHz, then resampled to sr as the loader would
        freqs, power = power_spectrum(nm.render(recipe, sr), sr)
        nyquist = min(sr, 44100) / 2
        top, middle = (freqs > 0.75 * nyquist) & (freqs < 0.88 * nyquist), (freqs > 1000) & (freqs < 3000)
        assert abs(db(power[top].mean() / power[middle].mean())) < 1.0  # white up to the band edge
        if sr > 44100:  # nothing above the source's Nyquist frequency
            assert db(power[freqs > 1.02 * nyquist].mean() / power[middle].mean()) < -40


def test_noise_filters_have_their_response():
    recipe = {**find_recipe("noise", colour="white", rolloff_order=2), "eq": []}
    freqs, power = power_spectrum(nm.render(recipe, SR))
    ref = power[(freqs > 200) & (freqs < 400)].mean()
    at = power[np.abs(freqs - recipe["rolloff_hz"]) < 100].mean()
    assert db(at / ref) == pytest.approx(-3.0, abs=1.0)  # -3 dB at the cut frequency
    flat = {**recipe, "rolloff_hz": None, "eq": [[1000.0, 9.0, 1.0]]}
    freqs, power = power_spectrum(nm.render(flat, SR))
    assert db(power[np.abs(freqs - 1000) < 30].mean() / power[(freqs > 4000) & (freqs < 6000)].mean()) == \
        pytest.approx(9.0, abs=1.0)
    edge = power[np.abs(freqs - 1000 * 2 ** 0.5) < 30].mean() / power[(freqs > 4000) & (freqs < 6000)].mean()
    assert db(edge) == pytest.approx(4.5, abs=1.0)  # half the gain half a width away


@pytest.mark.parametrize("split", nm.SETS)
def test_sine_tone_frequency_is_the_fft_peak(split):
    recipe = find_recipe("tone", split, seconds=4.0, wave="sine", harmonics=0)
    recipe = {**recipe, "freqs": recipe["freqs"][:1], "amps": [1.0]}
    y = nm.render(recipe, SR)
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    peak = np.fft.rfftfreq(len(y), 1 / SR)[np.argmax(spectrum)]
    assert peak == pytest.approx(recipe["freqs"][0], abs=0.5)


def test_square_tone_has_odd_harmonics_only():
    recipe = {**find_recipe("tone", wave="square"), "freqs": [200.0], "amps": [1.0]}
    freqs, power = power_spectrum(nm.render(recipe, SR), size=8192)
    level = {k: power[np.argmin(np.abs(freqs - 200.0 * k))] for k in (1, 2, 3)}
    assert db(level[1] / level[3]) == pytest.approx(20 * np.log10(3), abs=1.0)  # 1/k amplitudes
    assert db(level[1] / level[2]) > 60


def peak_frequencies(y, size=1024):
    frames = np.lib.stride_tricks.sliding_window_view(y, size)[::size]
    spectra = np.abs(np.fft.rfft(frames * np.hanning(size), axis=1))
    return np.fft.rfftfreq(size, 1 / SR)[spectra.argmax(axis=1)]


@pytest.mark.parametrize("method", ["linear", "log"])
@pytest.mark.parametrize("direction", ["up", "down"])
def test_chirp_frequency_moves_the_way_it_claims(method, direction):
    recipe = {**find_recipe("sweep", method=method, direction=direction), "sweeps": 1, "gap_s": 0.0}
    track = peak_frequencies(nm.render(recipe, SR))[1:-1]
    steps = np.diff(track) if direction == "up" else -np.diff(track)
    assert (steps >= -20).all()  # one FFT bin of slack
    assert abs(track[-1] - track[0]) > 0.7 * (recipe["high_hz"] - recipe["low_hz"])
    if method == "log":  # equal time, equal ratio: the middle frame is near the geometric mean
        middle = track[len(track) // 2]
        assert middle == pytest.approx(np.sqrt(recipe["low_hz"] * recipe["high_hz"]), rel=0.15)


def tempo_from_autocorrelation(y, frame_rate=1000):
    hop = SR // frame_rate
    envelope = np.abs(y[: len(y) // hop * hop]).reshape(-1, hop).max(axis=1)
    envelope = envelope - envelope.mean()
    acf = np.correlate(envelope, envelope, "full")[len(envelope) - 1:]
    lags = np.arange(len(acf))
    candidates = (lags > frame_rate * 60 / 300) & (lags < frame_rate * 60 / 30)
    strong = np.flatnonzero(candidates & (acf > 0.5 * acf[candidates].max()))
    first = strong[0]
    while first + 1 < len(acf) and acf[first + 1] > acf[first]:  # climb to the top of that peak
        first += 1
    return 60 * frame_rate / first


@pytest.mark.parametrize("split", nm.SETS)
def test_click_track_tempo_from_autocorrelation(split):
    for accent in (True, False):
        recipe = {**find_recipe("click", split, seconds=12.0, variant="metronome"), "accent": accent}
        assert tempo_from_autocorrelation(nm.render(recipe, SR)) == pytest.approx(recipe["bpm"], rel=0.02)


def test_impulse_train_rate():
    recipe = find_recipe("click", variant="impulses", seconds=10.0)
    y = nm.render(recipe, SR)
    count = int(np.sum(np.abs(y) > 0.5 * np.abs(y).max()))
    assert count == pytest.approx(recipe["rate_hz"] * 10.0, abs=1.5)


@needs_espeak
@pytest.mark.parametrize("split", nm.SETS)
def test_speech_is_not_silent_and_has_pauses(split):
    recipe = find_recipe("speech", split, seconds=8.0)
    frames = frame_rms_db(nm.render(recipe, SR))
    loud = frames > frames.max() - 30
    quiet = frames < frames.max() - 45
    assert loud.mean() > 0.3, "speech should be voiced most of the time"
    assert quiet.mean() > 0.05, "speech should pause between words and sentences"
    assert frames.min() > -120, "pauses hold a noise floor, not digital silence"


@pytest.mark.parametrize("variant", ["floor", "dc", "hum"])
def test_near_silence_is_quiet_but_not_silent(variant):
    for index in range(40):
        recipe = nm.draw_recipe("near_silence", nm.clip_rng(1, "train", "near_silence", index), "train")
        if recipe["variant"] != variant:
            continue
        y = nm.render({**recipe, "duration": 3.0}, SR).astype(np.float64)
        ac_rms = 20 * np.log10(np.sqrt(np.mean((y - y.mean()) ** 2)))
        assert -90 < ac_rms < -45
        assert ac_rms == pytest.approx(recipe["level"]["dbfs"], abs=0.1)
        assert y.mean() == pytest.approx(recipe.get("dc", 0.0), abs=1e-3)


def test_levels_reach_the_clipping_edge_and_stay_in_range():
    modes = []
    for index in range(80):
        recipe = nm.draw_recipe("alarm", nm.clip_rng(0, "train", "alarm", index), "train")
        modes.append(recipe["level"]["mode"])
        if recipe["level"]["mode"] == "clipped":
            y = nm.render({**recipe, "duration": 3.0}, SR)
            assert np.abs(y).max() == 1.0 and np.mean(np.abs(y) == 1.0) > 0.001  # hard-clipped samples
    assert {"peak", "clipped"} <= set(modes)


def test_mix_at_snr_gives_the_asked_snr():
    rng = np.random.default_rng(0)
    signal, noise = np.sin(np.arange(SR) / 5.0), rng.standard_normal(SR) * 7
    for snr in (0.0, 7.5, 20.0):
        mixed = nm.mix_at_snr(signal, noise, snr)
        assert db(np.mean(signal**2) / np.mean((mixed - signal) ** 2)) == pytest.approx(snr, abs=1e-9)


@needs_espeak
@pytest.mark.parametrize("split", nm.SETS)
def test_speech_over_noise_has_the_snr_of_its_recipe(split):
    recipe = find_recipe("speech_noise", split, seconds=5.0)
    mixed = nm.render(recipe, SR).astype(np.float64)
    clean = nm.render({**recipe["speech"], "kind": "speech", "duration": 5.0,
                       "level": {"mode": "peak", "dbfs": -1.0}}, SR).astype(np.float64)
    gain = mixed @ clean / (clean @ clean)  # the noise is independent of the speech
    residual = mixed - gain * clean
    measured = db(np.sum((gain * clean) ** 2) / np.sum(residual ** 2))
    assert measured == pytest.approx(recipe["snr_db"], abs=0.5)
    assert nm.band_of("snr_db", recipe["snr_db"]) % 2 == nm.SETS.index(split)


def test_telephone_dtmf_digit_has_its_two_tones():
    recipe = {**find_recipe("telephone", variant="dtmf", seconds=3.0), "digits": "5", "tone_ms": 150.0,
              "gap_ms": 100.0, "twist_db": 0.0}
    y = nm.render(recipe, SR)
    tone = y[: int(0.15 * SR)]
    freqs = np.fft.rfftfreq(8192, 1 / SR)
    spectrum = np.abs(np.fft.rfft(tone * np.hanning(len(tone)), 8192))
    top_two = sorted(freqs[np.argsort(spectrum)[-40:]])
    assert any(abs(f - 770) < 10 for f in top_two) and any(abs(f - 1336) < 10 for f in top_two)


# ---------------------------------------------------------------- train and test are disjoint

def draw_many(kind, split, n=60):
    return [nm.draw_recipe(kind, nm.clip_rng(0 if split == "train" else 1, split, kind, i), split) for i in range(n)]


@pytest.mark.parametrize("kind", nm.KINDS)
def test_train_and_test_recipes_share_no_held_out_variety(kind):
    train, test = draw_many(kind, "train"), draw_many(kind, "test")
    for recipe in train + test:
        assert recipe["held_out"], f"{kind} recipe names no held-out variety"
    tokens = {split: {(name, token) for r in recipes for name, token in r["held_out"].items()}
              for split, recipes in (("train", train), ("test", test))}
    assert not tokens["train"] & tokens["test"]
    assert not {r["group"] for r in train} & {r["group"] for r in test}


@pytest.mark.parametrize("kind, key, band", [("tone", "freqs", "tone_freq"), ("click", "bpm", "tempo_bpm"),
                                             ("speech_noise", "snr_db", "snr_db"), ("hiss", None, "hiss_dbfs"),
                                             ("sweep", "low_hz", "sweep_low")])
def test_held_out_values_lie_in_their_sets_bands(kind, key, band):
    for split in nm.SETS:
        for recipe in draw_many(kind, split):
            values = recipe["level"]["dbfs"] if key is None else recipe.get(key)
            for value in np.atleast_1d(values if values is not None else []):
                assert nm.band_of(band, value) % 2 == nm.SETS.index(split), (kind, split, value)


def words_of(recipes):
    return {w.lower() for r in recipes for s in r["sentences"] for w in re.findall(r"[^\W\d_]+", s)}


def test_speech_voices_and_words_differ_between_train_and_test():
    train, test = draw_many("speech", "train", 120), draw_many("speech", "test", 120)
    assert not {r["voice"] for r in train} & {r["voice"] for r in test}
    assert len({r["voice"] for r in test}) >= 20
    vocabulary = {split: {w.lower() for words in [*nm.WORDS.values()] for w in nm._held_out(words.split(), split)}
                  | {w.lower() for lst in (nm.EN_NOUNS, nm.EN_VERBS, nm.EN_ADJECTIVES, nm.EN_PLACES, nm.EN_NAMES)
                     for item in nm._held_out(lst, split) for w in item.split()}
                  for split in nm.SETS}
    train_only = vocabulary["train"] - vocabulary["test"]
    assert train_only & words_of(train), "training text uses the training words"
    assert not train_only & words_of(test), "test text never uses a training-only word"
    assert not {s for r in train for s in r["sentences"]} & {s for r in test for s in r["sentences"]}


# ---------------------------------------------------------------- the set on disk

@pytest.fixture(scope="module")
def small_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("nonmusic")
    train = nm.generate_nonmusic(root / "train", 1, seed=0, split="train", kinds=AVAILABLE_KINDS, progress=False)
    test = nm.generate_nonmusic(root / "test", 1, seed=1, split="test", kinds=AVAILABLE_KINDS, progress=False)
    return root, train, test


def test_manifest_opens_with_the_manifest_reader_and_clips_decode(small_sets):
    root, train, _ = small_sets
    assert not train.failed and train.written == len(AVAILABLE_KINDS) and not train.interrupted
    dataset = read_manifest(train.manifest)
    assert dataset.labels == [nm.LABEL] and len(dataset.tracks) == len(AVAILABLE_KINDS)
    assert {t.split for t in dataset.tracks} == {"train"}
    assert open_dataset(f"manifest:{train.manifest}").labels == [nm.LABEL]
    rows = list(csv.DictReader(open(train.manifest)))
    for track, row in zip(dataset.tracks, rows):
        recipe = json.loads(row["params"])
        y = load_audio(track.path, sr=SR)
        assert len(y) == round(recipe["duration"] * SR)
        assert track.artist == recipe["group"] == row["group"] and row["kind"] == recipe["kind"]
        np.testing.assert_allclose(y, nm.render(recipe, SR), atol=1.5 / 32768)  # PCM_16 rounding


def test_train_and_test_sets_are_disjoint_by_track_file_and_group(small_sets):
    _, train, test = small_sets
    check_disjoint(read_manifest(train.manifest).tracks, read_manifest(test.manifest).tracks, "train and test")


def test_existing_clips_are_skipped_and_the_manifest_stays_the_same(small_sets):
    root, train, _ = small_sets
    before = Path(train.manifest).read_text()
    wav = root / "train" / "tone" / "tone_0000.wav"
    stamp = wav.stat().st_mtime_ns
    again = nm.generate_nonmusic(root / "train", 1, seed=0, split="train", kinds=AVAILABLE_KINDS, progress=False)
    assert again.written == 0 and again.skipped == len(AVAILABLE_KINDS)
    assert Path(again.manifest).read_text() == before and wav.stat().st_mtime_ns == stamp
    with pytest.raises(DatasetError, match="seed 0 \\(asked 5\\)"):
        nm.generate_nonmusic(root / "train", 1, seed=5, split="train", kinds=["tone"], progress=False)


def test_same_seed_writes_identical_files(tmp_path):
    kinds = ["noise", "click"]
    a = nm.generate_nonmusic(tmp_path / "a", 2, seed=3, kinds=kinds, progress=False)
    b = nm.generate_nonmusic(tmp_path / "b", 2, seed=3, kinds=kinds, progress=False)
    for kind in kinds:
        for i in range(2):
            name = f"{kind}/{kind}_{i:04d}.wav"
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert Path(a.manifest).read_text() == Path(b.manifest).read_text()


def test_ctrl_c_stops_cleanly_and_a_rerun_finishes(tmp_path, monkeypatch):
    real_write, calls = nm._write_wav, []

    def interrupted_third(path, y, sr):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real_write(path, y, sr)

    monkeypatch.setattr(nm, "_write_wav", interrupted_third)
    summary = nm.generate_nonmusic(tmp_path, 4, kinds=["sweep"], progress=False)
    assert summary.interrupted and summary.written == 2 and "interrupted" in summary.report()
    assert len(read_manifest(summary.manifest).tracks) == 2
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == ["sweep_0000.wav", "sweep_0001.wav"]
    monkeypatch.setattr(nm, "_write_wav", real_write)
    done = nm.generate_nonmusic(tmp_path, 4, kinds=["sweep"], progress=False)
    assert (done.written, done.skipped, done.interrupted) == (2, 2, False)


def test_a_failing_clip_is_reported_and_the_others_are_made(tmp_path, monkeypatch):
    real_render = nm.render

    def broken_hum(recipe, sr=SR):
        if recipe["kind"] == "hum":
            raise DatasetError("synthetic failure")
        return real_render(recipe, sr)

    monkeypatch.setattr(nm, "render", broken_hum)
    summary = nm.generate_nonmusic(tmp_path, 2, kinds=["hum", "alarm"], progress=False)
    assert summary.written == 2 and len(summary.failed) == 2 and summary.counts == {"alarm": 2}
    assert "synthetic failure" in summary.report() and (tmp_path / "failures.csv").is_file()
    assert [t.track_id for t in read_manifest(summary.manifest).tracks] == [
        "nonmusic-train-alarm-0000", "nonmusic-train-alarm-0001"]


def test_missing_espeak_is_a_one_line_error_naming_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(nm, "_ESPEAK_VERSION", [])
    monkeypatch.setattr(nm.shutil, "which", lambda name: None)
    with pytest.raises(MissingProgramError) as error:
        nm.generate_nonmusic(tmp_path, 1, kinds=["tone", "speech"], progress=False)
    assert "espeak-ng" in str(error.value) and "\n" not in str(error.value)
    assert not list(tmp_path.rglob("*.wav")), "refused before making anything"
    nm.generate_nonmusic(tmp_path / "ok", 1, kinds=["tone"], progress=False)  # other kinds need no espeak


def test_a_set_made_by_older_recipes_is_not_extended(tmp_path):
    nm.generate_nonmusic(tmp_path, 1, kinds=["tone"], progress=False)
    info = json.loads((tmp_path / "nonmusic.json").read_text())
    assert info["recipes"] == nm.RECIPES_VERSION
    del info["recipes"]  # as the first version wrote it
    (tmp_path / "nonmusic.json").write_text(json.dumps(info))
    with pytest.raises(DatasetError, match=f"{tmp_path}: .*recipes 1 \\(asked {nm.RECIPES_VERSION}\\)"):
        nm.generate_nonmusic(tmp_path, 2, kinds=["tone"], progress=False)
    assert not (tmp_path / "tone" / "tone_0001.wav").exists()
    nm.generate_nonmusic(tmp_path, 2, kinds=["tone"], progress=False, overwrite=True)
    assert (tmp_path / "tone" / "tone_0001.wav").exists()


@pytest.mark.parametrize("args, message", [({"kinds": ["dubstep"]}, "unknown kind"), ({"sr": 8000}, "16000 Hz"),
                                           ({"split": "valid"}, "'train' or 'test'"), ({"n_per_kind": 0}, "at least 1")])
def test_bad_requests_are_refused(tmp_path, args, message):
    with pytest.raises(DatasetError, match=message):
        nm.generate_nonmusic(tmp_path, **{"n_per_kind": 1, **args})


def test_import_needs_no_torch_scipy_or_sklearn():
    code = ("import sys, genrekit.datasets.nonmusic; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'scipy', 'sklearn', 'soundfile'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_command_line_tool(tmp_path):
    tool = [sys.executable, str(REPO / "tools" / "make_nonmusic.py"), str(tmp_path / "out")]
    done = subprocess.run([*tool, "--split", "test", "--per-kind", "2", "--kinds", "tone,alarm", "--quiet"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "4 clips" in done.stdout and "4 written" in done.stdout
    rows = list(csv.DictReader(open(tmp_path / "out" / "manifest.csv")))
    assert [r["split"] for r in rows] == ["test"] * 4
    assert json.loads((tmp_path / "out" / "nonmusic.json").read_text())["seed"] == 1  # test's default seed
    bad = subprocess.run([*tool, "--split", "train", "--per-kind", "1", "--kinds", "tone"], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("make_nonmusic: error:") and "split test" in bad.stderr
