"""`genrekit prepare` and `genrekit show` on real audio from ../shared/data."""
from __future__ import annotations

import csv
import dataclasses
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genrekit.audio import load_audio
from genrekit.cache import FeatureCache, PrepareOptions, prepare
from genrekit.cli import main
from genrekit.config import MUSICNN_FEATURES, SEED_FEATURES, FeatureConfig
from genrekit.datasets import Dataset, open_dataset, read_gtzan
from genrekit.errors import CacheError
from genrekit.features import n_segments, waveform_segments
from tests.conftest import SHARED_DATA, TINY_LABELS, has_shared_data, synthetic_track, tone

REPO = Path(__file__).resolve().parents[1]
INDEX_COLUMNS = ["track_id", "path", "label", "split", "artist", "duration", "n_segments", "row", "shard", "sha256",
                 "audio_sha256"]


@pytest.fixture(scope="module")
def standin_gtzan(tmp_path_factory) -> list[dict]:
    """Where ../shared/data is absent: 60 synthetic 30 s WAVs in GTZAN's formats (the last 2 at 16 kHz),
    as rows of gtzan_labels.csv. These tests are about the cache, not about the music."""
    folder = tmp_path_factory.mktemp("standin_gtzan")
    import soundfile as sf

    rows = []
    for i in range(60):
        sr, label = (16000 if i >= 58 else 22050), TINY_LABELS[i % 2]
        path = folder / f"{label}.{i:05d}.wav"
        sf.write(path, synthetic_track(label, i, 30.0, sr), sr, subtype="PCM_16")
        rows.append({"track_id": path.stem, "path": str(path), "genre": label, "sample_rate": str(sr),
                     "filtered_split": "train" if i % 3 else "test"})
    return rows


@pytest.fixture
def gtzan_rows(request) -> list[dict]:
    """Rows of gtzan_labels.csv (paths absolute): the real GTZAN tracks, or the stand-ins."""
    if not has_shared_data():
        return request.getfixturevalue("standin_gtzan")
    with open(SHARED_DATA / "gtzan_labels.csv", newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["track_id"])
    return [{**r, "path": str(SHARED_DATA / r["path"])} for r in rows]


def six_rows(rows: list[dict], n_22k=4, n_16k=2) -> list[dict]:
    """A few tracks from both sources (22.05 kHz and 16 kHz files)."""
    by_rate = {rate: [r for r in rows if r["sample_rate"] == rate] for rate in ("22050", "16000")}
    return by_rate["22050"][:n_22k] + by_rate["16000"][:n_16k]


@pytest.fixture
def gtzan_manifest(gtzan_rows, tmp_path):
    """manifest.csv of 6 GTZAN tracks, paths relative to the manifest, split kept."""
    path = tmp_path / "gtzan6.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "split", "track_id"])
        for r in six_rows(gtzan_rows):
            split = "train" if r["filtered_split"] == "train" else "test"
            writer.writerow([os.path.relpath(r["path"], tmp_path), r["genre"], split, r["track_id"]])
    return path


def check_cache(out, config=FeatureConfig()):
    """Open a cache and check every track's segments against a direct computation."""
    cache = FeatureCache(out, config)
    assert list(cache.tracks.columns) == INDEX_COLUMNS
    assert cache.tracks["track_id"].is_unique
    for row in cache.tracks.itertuples():
        seg = cache.track_segments(row)
        assert seg.dtype == np.float16 and seg.shape == (row.n_segments, *config.segment_shape)
        y = load_audio(row.path, sr=config.sr)
        assert row.duration == pytest.approx(len(y) / config.sr, abs=1e-3)
        assert row.n_segments == n_segments(len(y), config)
        np.testing.assert_array_equal(seg, np.asarray(waveform_segments(y, config)).astype(np.float16))
    return cache


def run_cli(*args) -> int:
    return main(["prepare", *map(str, args), "--quiet"])


# --- building caches from the real data ------------------------------------------------

def test_prepare_gtzan_manifest_cli(gtzan_manifest, gtzan_rows, tmp_path, capsys):
    out = tmp_path / "cache"
    assert run_cli(f"manifest:{gtzan_manifest}", "--out", out, "--workers", "2") == 0
    text = capsys.readouterr().out
    assert "tracks done: 6, skipped (already cached): 0, failed: 0" in text
    cache = check_cache(out)
    rows = {r["track_id"]: r for r in six_rows(gtzan_rows)}
    assert sorted(cache.tracks["track_id"]) == sorted(rows)
    for row in cache.tracks.itertuples():
        assert row.label == rows[row.track_id]["genre"]
        assert row.split == ("train" if rows[row.track_id]["filtered_split"] == "train" else "test")
    x, y, t = cache.segments(split="train")
    train = cache.select("train")
    assert x.dtype == np.float16 and x.shape == (train["n_segments"].sum(), 128, 129)
    assert len(y) == len(t) == len(x) and set(t) == set(range(len(train)))
    assert [cache.labels[i] for i in y[np.r_[0, np.cumsum(train["n_segments"])[:-1]]]] == list(train["label"])
    assert not (out / "failures.csv").read_text().strip().splitlines()[1:]
    manifest = (out / "manifest.json").read_text()
    assert '"n_mels": 128' in manifest and '"format": 2' in manifest
    # resumable: a second run skips every track
    assert run_cli(f"manifest:{gtzan_manifest}", "--out", out) == 0
    assert "tracks done: 0, skipped (already cached): 6, failed: 0" in capsys.readouterr().out
    assert len(FeatureCache(out)) == 6


def test_prepare_fma_labels_csv_cli(shared_data, tmp_path, capsys):
    audio = tmp_path / "fma_small"
    chosen = sorted((shared_data / "fma_small" / "000").glob("*.mp3"))[:5]
    (audio / "000").mkdir(parents=True)
    for mp3 in chosen:
        (audio / "000" / mp3.name).symlink_to(mp3)
    labels = shared_data / "fma_metadata" / "labels.csv"
    out = tmp_path / "cache"
    assert run_cli(f"fma:{audio}", "--metadata", labels, "--out", out) == 0
    text = capsys.readouterr().out
    n_labels = len(labels.read_text().strip().splitlines()) - 1
    assert f"note: {n_labels - 5} tracks in the metadata have no audio file" in text
    cache = check_cache(out)
    with open(labels, newline="") as f:
        genre = {r["track_id"]: r["genre_top"] for r in csv.DictReader(f)}
    assert sorted(cache.tracks["track_id"]) == sorted(str(int(p.stem)) for p in chosen)
    assert all(row.label == genre[row.track_id] for row in cache.tracks.itertuples())
    assert set(cache.tracks["split"]) == {"train"}
    assert cache.dataset["name"] == "fma_small" and cache.dataset["n_tracks"] == 5


def make_folder_tree(shared_data, root: Path, bad: bool = False) -> dict[str, str]:
    """jazz/ and rock/ with real GTZAN WAVs (symlinks) and a real FMA MP3 (copy);
    with ``bad``, five unusable files beside them. Returns {bad track id: expected reason}."""
    for genre, n in (("jazz", 2), ("rock", 2)):
        (root / genre).mkdir(parents=True, exist_ok=True)
        for wav in sorted((shared_data / "gtzan" / genre).glob("*.wav"))[:n]:
            (root / genre / wav.name).symlink_to(wav)
    mp3 = (shared_data / "fma_small" / "000" / "000002.mp3").read_bytes()
    (root / "rock" / "album").mkdir()
    (root / "rock" / "album" / "000002.mp3").write_bytes(mp3)
    if not bad:
        return {}
    import soundfile as sf

    (root / "rock" / "broken.mp3").write_bytes(mp3[: len(mp3) // 2])
    (root / "rock" / "empty.wav").write_bytes(b"")
    (root / "jazz" / "notes.mp3").write_text("not a song\n" * 40)
    sf.write(root / "jazz" / "silent.wav", np.zeros(3 * 22050, np.float32), 22050)
    sf.write(root / "jazz" / "short.wav", tone(0.5), 22050)
    return {"rock/broken.mp3": "corrupt or truncated audio (truncated: decoded 14.96 s of the 29.98 s",
            "rock/empty.wav": "empty file (no audio samples) (0 bytes)",
            "jazz/notes.mp3": "not an audio file (no decoder recognises it)",
            "jazz/silent.wav": "audio is all silent",
            "jazz/short.wav": "audio shorter than the minimum duration (0.50 s < 1.00 s)"}


def test_prepare_folder_tree_api(shared_data, tmp_path):
    root = tmp_path / "music"
    make_folder_tree(shared_data, root)
    from genrekit.datasets import open_dataset

    dataset = open_dataset(f"folder:{root}")
    out = tmp_path / "cache"
    summary = prepare(dataset, out, workers=2, progress=False)
    assert (summary.done, summary.skipped, summary.failed, summary.interrupted) == (5, 0, [], False)
    assert summary.audio_seconds == pytest.approx(FeatureCache(out).tracks["duration"].sum())
    cache = check_cache(out)
    assert sorted(cache.tracks["track_id"]) == sorted(t.track_id for t in dataset.tracks)
    assert cache.labels == ["jazz", "rock"]
    assert dict(zip(cache.tracks["track_id"], cache.tracks["split"])) == {t.track_id: t.split for t in dataset.tracks}
    again = prepare(dataset, out, workers=2, progress=False)
    assert (again.done, again.skipped) == (0, 5)


def test_an_out_that_cannot_be_written_is_one_line(tmp_path, capsys):
    import soundfile as sf

    (tmp_path / "music" / "jazz").mkdir(parents=True)
    sf.write(tmp_path / "music" / "jazz" / "a.wav", 0.1 * np.sin(np.arange(22050 * 4) / 5.0), 22050)
    (tmp_path / "a file").write_text("not a folder")
    out = tmp_path / "a file" / "cache"
    assert run_cli(f"folder:{tmp_path / 'music'}", "--out", out) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"genrekit prepare: error: {out}: cannot write the cache there (Not a directory)"]


def test_bad_files_are_reported_and_the_rest_cached(shared_data, tmp_path, capsys):
    root = tmp_path / "music"
    expected = make_folder_tree(shared_data, root, bad=True)
    out = tmp_path / "cache"
    assert run_cli(f"folder:{root}", "--out", out, "--workers", "2") == 1
    text = capsys.readouterr().out
    assert "tracks done: 5, skipped (already cached): 0, failed: 5" in text
    for track_id, reason in expected.items():
        assert f"FAILED {root / track_id}: {reason}" in text
    with open(out / "failures.csv", newline="") as f:
        rows = {r["track_id"]: r for r in csv.DictReader(f)}
    assert set(rows) == set(expected)
    for track_id, reason in expected.items():
        assert rows[track_id]["path"] == str(root / track_id)
        assert rows[track_id]["reason"].startswith(reason)
    cache = check_cache(out)
    assert len(cache) == 5 and {f["track_id"] for f in cache.failures} == set(expected)
    # a re-run skips the good tracks and tries the bad ones again
    assert run_cli(f"folder:{root}", "--out", out) == 1
    assert "tracks done: 0, skipped (already cached): 5, failed: 5" in capsys.readouterr().out
    # once fixed, a bad file is cached and drops out of the failures
    (root / "rock" / "broken.mp3").write_bytes((shared_data / "fma_small" / "000" / "000005.mp3").read_bytes())
    assert run_cli(f"folder:{root}", "--out", out) == 1
    cache = FeatureCache(out)
    assert "rock/broken.mp3" in set(cache.tracks["track_id"]) and len(cache.failures) == 4
    assert "rock/broken.mp3" not in (out / "failures.csv").read_text()


def test_excerpt_option(gtzan_manifest, tmp_path, capsys):
    out = tmp_path / "cache"
    assert run_cli(f"manifest:{gtzan_manifest}", "--out", out, "--excerpt", "10") == 0
    cache = FeatureCache(out)
    assert set(cache.tracks["n_segments"]) == {3} and set(cache.tracks["duration"]) == {10.0}
    from genrekit.audio import audio_info

    for row in cache.tracks.itertuples():  # the centred 10 s (window reads are checked in test_audio)
        offset = (audio_info(row.path).duration - 10) / 2
        excerpt = load_audio(row.path, offset=offset, duration=10)
        np.testing.assert_array_equal(cache.track_segments(row),
                                      np.asarray(waveform_segments(excerpt, FeatureConfig())).astype(np.float16))


def test_max_duration_fails_long_tracks(shared_data, tmp_path):
    tracks = read_gtzan(shared_data / "gtzan").tracks[:2]
    summary = prepare(Dataset("two", "", tracks), tmp_path / "c", workers=1, progress=False,
                      options=PrepareOptions(max_duration=20.0))
    assert summary.done == 0 and len(summary.failed) == 2
    assert "audio longer than the maximum duration" in summary.failed[0]["reason"]
    assert "use an excerpt" in summary.failed[0]["reason"]


# --- interruption ----------------------------------------------------------------------

def test_interrupted_run_resumes(shared_data, tmp_path, monkeypatch):
    """Ctrl-C after 4 of 6 tracks (shards of 2): the cache opens with the 4, a re-run does 2."""
    import genrekit.cache.local as cache_module

    tracks = read_gtzan(shared_data / "gtzan").tracks[:6]
    dataset = Dataset("six", str(shared_data), tracks)
    out = tmp_path / "cache"
    original, calls = cache_module.featurize_or_reason, []

    def interrupting(track, config, options):
        calls.append(track.track_id)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return original(track, config, options)

    monkeypatch.setattr(cache_module, "SHARD_TRACKS", 2)
    monkeypatch.setattr(cache_module, "featurize_or_reason", interrupting)
    summary = prepare(dataset, out, workers=1, progress=False)
    assert summary.interrupted and summary.done == 4
    assert "interrupted: run the same command again to resume" in summary.report()
    assert len(list((out / "shards").glob("*.json"))) == 2
    assert sorted(FeatureCache(out).tracks["track_id"]) == sorted(calls[:4])
    monkeypatch.setattr(cache_module, "featurize_or_reason", original)
    resumed = prepare(dataset, out, workers=1, progress=False)
    assert (resumed.done, resumed.skipped, resumed.interrupted) == (2, 4, False)
    check_cache(out)
    assert sorted(FeatureCache(out).tracks["track_id"]) == sorted(t.track_id for t in tracks)


def _as_from_a_terminal():
    """In the child before exec: Ctrl-C and SIGTERM delivered and handled by default, as for a command
    typed in a terminal, whatever this test process inherited (a run started in the background
    by a shell without job control ignores SIGINT, and children inherit ignored and blocked signals)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _start_prepare_subprocess(manifest, out):
    """`python -m genrekit prepare` in its own process group, one track per shard, each track taking
    at least 0.25 s: the whole run takes 1.3 s on a 2-core machine otherwise, and a test process left
    without CPU for that long (as on a loaded CI machine) then signalled a finished run."""
    code = ("import sys, time, genrekit.cache.local as c; c.SHARD_TRACKS = 1\n"
            "featurize = c.featurize_or_reason\n"
            "def slow_featurize(*args):\n"
            "    time.sleep(0.25)\n"
            "    return featurize(*args)\n"
            "c.featurize_or_reason = slow_featurize\n"
            "from genrekit.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    return subprocess.Popen([sys.executable, "-c", code, "prepare", f"manifest:{manifest}", "--out", str(out),
                             "--workers", "2", "--quiet"], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_as_from_a_terminal)


def _wait_for_first_shard(proc, out, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not list((out / "shards").glob("*.json")):
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"no shard appeared (exit {proc.poll()}): {proc.communicate()[1][-2000:]}")
        time.sleep(0.005)


@pytest.fixture
def long_manifest(gtzan_rows, tmp_path):
    """60 GTZAN tracks (or their stand-ins), so a run can be stopped well before the end."""
    path = tmp_path / "gtzan60.csv"
    rows = gtzan_rows[:60]
    path.write_text("path,label,track_id\n" + "".join(f"{r['path']},{r['genre']},{r['track_id']}\n" for r in rows))
    return path, open_dataset(f"manifest:{path}").tracks


def _processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (the decoder processes inherit the parent's)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            pass
    return found


def _wait_until_gone(text: str, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while _processes_mentioning(text) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _processes_mentioning(text)


@pytest.mark.parametrize("sig, group", [(signal.SIGKILL, True), (signal.SIGINT, True), (signal.SIGKILL, False),
                                        (signal.SIGTERM, False)],
                         ids=["kill-group", "ctrl-c", "kill-parent", "term-parent"])
def test_killed_run_leaves_an_openable_cache_and_no_workers(long_manifest, tmp_path, sig, group):
    """Whatever stops prepare, the cache opens, its decoder processes die with it, and a re-run finishes."""
    manifest, tracks = long_manifest
    out = tmp_path / "cache"
    proc = _start_prepare_subprocess(manifest, out)
    _wait_for_first_shard(proc, out)
    if group:
        os.killpg(proc.pid, sig)  # the whole group, as a terminal's Ctrl-C
    else:
        os.kill(proc.pid, sig)  # the parent only, as `kill PID` or an OOM killer
    try:
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    if sig in (signal.SIGINT, signal.SIGTERM):
        assert proc.returncode == 130, (stdout[-1000:], stderr[-2000:], signal.getsignal(signal.SIGINT),
                                        signal.pthread_sigmask(signal.SIG_BLOCK, []))
        assert "interrupted: run the same command again to resume" in stdout
    else:
        assert proc.returncode == -signal.SIGKILL
    assert _wait_until_gone(str(out)) == [], "decoder processes outlived prepare"
    cache = FeatureCache(out, FeatureConfig())
    cached = set(cache.tracks["track_id"])
    print(f"{len(cached)} of {len(tracks)} tracks cached before {signal.Signals(sig).name}")
    assert 1 <= len(cached) < len(tracks)
    for row in cache.tracks.itertuples():  # every cached track is whole
        assert cache.track_segments(row).shape == (row.n_segments, 128, 129)
    # the re-run completes exactly the missing tracks
    dataset = Dataset("m", str(manifest), tracks)
    resumed = prepare(dataset, out, workers=2, progress=False)
    assert (resumed.done, resumed.skipped, resumed.failed) == (len(tracks) - len(cached), len(cached), [])
    assert sorted(FeatureCache(out).tracks["track_id"]) == sorted(t.track_id for t in tracks)


# --- settings --------------------------------------------------------------------------

def test_other_feature_settings_are_refused(gtzan_manifest, tmp_path, capsys):
    out = tmp_path / "cache"
    assert run_cli(f"manifest:{gtzan_manifest}", "--out", out) == 0
    other = dataclasses.replace(FeatureConfig(), n_mels=64)
    with pytest.raises(CacheError) as e:
        FeatureCache(out, other)
    assert "other feature settings" in str(e.value) and str(out) in str(e.value)
    assert "n_mels=64" in str(e.value) and "n_mels=128" in str(e.value)
    capsys.readouterr()
    assert run_cli(f"manifest:{gtzan_manifest}", "--out", out, "--n-mels", "64") == 1
    assert "other feature settings" in capsys.readouterr().err
    # --overwrite starts again with the new settings
    assert run_cli(f"manifest:{gtzan_manifest}", "--out", out, "--n-mels", "64", "--overwrite") == 0
    assert "tracks done: 6, skipped (already cached): 0" in capsys.readouterr().out
    cache = FeatureCache(out, other)
    assert cache.array(cache.tracks["shard"][0]).shape[1:] == (64, 129)
    with pytest.raises(CacheError, match="not a feature cache"):
        FeatureCache(tmp_path)


@pytest.mark.parametrize("config", [
    dataclasses.replace(FeatureConfig(), n_mels=64, fmax=8000.0, segment_hop_seconds=1.5),
    dataclasses.replace(FeatureConfig(), image_size=(224, 224), top_db=60.0),
    dataclasses.replace(MUSICNN_FEATURES, segment_rms_db=-15, max_gain_db=15),
    SEED_FEATURES,
], ids=["logmel", "image", "musicnn-level", "seed"])
def test_prepare_flags_build_the_same_settings(config):
    from genrekit.cli import build_parser
    from genrekit.cli._common import feature_config_from_args
    from genrekit.config import prepare_flags

    flags = prepare_flags(config)
    args = build_parser().parse_args(["prepare", "folder:x", "--out", "y", *flags.split()])
    assert feature_config_from_args(args) == config


def test_a_cache_with_other_settings_is_refused_in_one_line_that_says_what_to_run(tmp_path, capsys):
    """The shipped model's musicnn input sets a segment level; a plain ``--features musicnn`` cache has none."""
    from genrekit.prediction import load_model

    wanted = load_model().feature_config
    folder = tmp_path / "music" / "rock"
    folder.mkdir(parents=True)
    sf.write(folder / "a.wav", synthetic_track("rock", 1, 4.0, 16000), 16000)
    plain = tmp_path / "plain"
    assert main(["prepare", f"folder:{folder.parent}", "--out", str(plain), "--quiet", "--features", "musicnn"]) == 0
    with pytest.raises(CacheError) as e:
        FeatureCache(plain, wanted)
    message = str(e.value)
    assert "\n" not in message and "segment_rms_db=None" in message and "segment_rms_db=-15" in message
    command = message.split("genrekit prepare DATA --out NEW ")[1]
    assert command == "--features musicnn --segment-rms-db -15 --max-gain-db 15"
    assert main(["prepare", f"folder:{folder.parent}", "--out", str(tmp_path / "new"), "--quiet",
                 *command.split()]) == 0
    assert FeatureCache(tmp_path / "new", wanted).config == wanted


def test_overwrite_rebuilds(gtzan_manifest, tmp_path, capsys):
    out = tmp_path / "cache"
    assert run_cli(f"manifest:{gtzan_manifest}", "--out", out) == 0
    stale = out / "shards" / "20240101T000000-00c0ffee.json"  # an old genrekit shard: its name and its keys
    stale.write_text('{"tracks": [], "failures": []}')
    (out / "shards" / "stale.json").write_text('{"tracks": [], "failures": []}')  # not a name genrekit gives
    assert run_cli(f"manifest:{gtzan_manifest}", "--out", out, "--overwrite") == 0
    printed = capsys.readouterr().out
    assert "tracks done: 6, skipped (already cached): 0" in printed and "kept" in printed and "stale.json" in printed
    assert not stale.exists() and (out / "shards" / "stale.json").exists()


# --- genrekit show ---------------------------------------------------------------------

def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and data.endswith(b"IEND\xaeB`\x82")
    return struct.unpack(">II", data[16:24])


def test_show_writes_a_png(gtzan_wav, tmp_path, capsys):
    out = tmp_path / "spec.png"
    assert main(["show", str(gtzan_wav), "--out", str(out), "--offset", "3", "--duration", "9"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    width, height = png_size(out)
    assert 400 <= width <= 4000 and 200 <= height <= 2000
    assert out.stat().st_size > 20_000
    import matplotlib.image

    pixels = matplotlib.image.imread(out)
    assert pixels.shape[:2] == (height, width) and pixels[..., :3].std() > 0.1  # not blank


def test_show_bad_file(tmp_path, capsys):
    bad = tmp_path / "bad.mp3"
    bad.write_text("nope")
    assert main(["show", str(bad), "--out", str(tmp_path / "x.png")]) == 1
    assert f"{bad}: not an audio file" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
