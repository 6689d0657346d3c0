"""The feature cache's safety: it deletes only what it wrote, finds damage, repairs it, takes one writer.

Synthetic audio only, so these run in any clone.
"""
from __future__ import annotations

import fcntl
import json

import numpy as np
import pytest
import soundfile as sf

from genrekit.cache import CacheStore, FeatureCache, prepare
from genrekit.cli import main
from genrekit.config import FeatureConfig
from genrekit.datasets import open_dataset
from genrekit.errors import CacheError

SMALL = FeatureConfig(sr=8000, n_fft=256, hop_length=128, n_mels=16, segment_seconds=1.0, segment_hop_seconds=1.0)


@pytest.fixture
def audio_tree(tmp_path):
    """folder:ROOT with jazz/ and rock/, three 3-second WAVs each (noise and tones)."""
    root = tmp_path / "music"
    rng = np.random.default_rng(0)
    for label in ("jazz", "rock"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            t = np.arange(3 * 8000) / 8000
            y = 0.3 * np.sin(2 * np.pi * (220 + 110 * i) * t) + 0.05 * rng.standard_normal(len(t))
            sf.write(root / label / f"{label}{i}.wav", y.astype(np.float32), 8000)
    return root


def snapshot(root) -> dict:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run_prepare(spec, out, *extra) -> int:
    return main(["prepare", spec, "--out", str(out), "--quiet", "--workers", "1", "--sr", "8000", "--n-fft", "256",
                 "--hop-length", "128", "--n-mels", "16", "--segment-seconds", "1", "--segment-hop", "1", *extra])


# ---------------------------------------------------------------- never delete what is not ours


def test_overwrite_onto_the_input_folder_deletes_nothing(audio_tree, capsys):
    before = snapshot(audio_tree)
    assert run_prepare(f"folder:{audio_tree}", audio_tree, "--overwrite") == 1
    err = capsys.readouterr().err
    assert "contains the data set's audio" in err and len(err.strip().splitlines()) == 1
    assert snapshot(audio_tree) == before


@pytest.mark.parametrize("where", ["root", "parent"])
def test_a_cache_folder_holding_the_input_is_refused(audio_tree, capsys, where):
    before = snapshot(audio_tree)
    assert run_prepare(f"folder:{audio_tree}", audio_tree if where == "root" else audio_tree.parent) == 1
    assert "contains the data set's audio" in capsys.readouterr().err
    assert snapshot(audio_tree) == before


def test_overwrite_of_a_folder_that_is_not_a_cache_deletes_nothing(audio_tree, tmp_path, capsys):
    other = tmp_path / "documents"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    for extra in ([], ["--overwrite"]):
        assert run_prepare(f"folder:{audio_tree}", other, *extra) == 1
        assert "not a genrekit cache" in capsys.readouterr().err
    assert (other / "thesis.tex").read_text() == "precious" and sorted(other.iterdir()) == [other / "thesis.tex"]


def test_overwrite_deletes_only_the_caches_own_files(audio_tree, tmp_path):
    out = tmp_path / "cache"
    assert run_prepare(f"folder:{audio_tree}", out) == 0
    (out / "notes.txt").write_text("mine")
    (out / "shards" / "keep.npy").write_bytes(b"not a shard genrekit wrote")
    old_shards = {p.name for p in (out / "shards").glob("2*")}
    assert run_prepare(f"folder:{audio_tree}", out, "--overwrite") == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "shards" / "keep.npy").exists()
    assert not old_shards & {p.name for p in (out / "shards").iterdir()}  # the old shards are gone
    assert len(FeatureCache(out)) == 6


def test_remove_refuses_a_folder_without_a_genrekit_manifest(tmp_path):
    folder = tmp_path / "x"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"format": 2, "writer": "someone-else"}))
    with pytest.raises(CacheError, match="not a genrekit cache"):
        CacheStore(folder).remove()
    assert (folder / "manifest.json").exists()


# ---------------------------------------------------------------- damage is found and repaired


def _prepared(audio_tree, out):
    dataset = open_dataset(f"folder:{audio_tree}")
    summary = prepare(dataset, out, SMALL, workers=1, progress=False)
    assert summary.done == 6
    return dataset


@pytest.mark.parametrize("damage", ["truncated array", "missing array", "truncated index", "flipped byte"])
def test_damaged_shard_is_reported_then_repaired(audio_tree, tmp_path, damage):
    out = tmp_path / "cache"
    dataset = _prepared(audio_tree, out)
    npy = sorted((out / "shards").glob("*.npy"))[0]
    index = npy.with_suffix(".json")
    n_tracks = len(json.loads(index.read_text())["tracks"])
    if damage == "truncated array":
        npy.write_bytes(npy.read_bytes()[:-100])
    elif damage == "missing array":
        npy.unlink()
    elif damage == "truncated index":
        index.write_text(index.read_text()[:40])
    else:
        data = bytearray(npy.read_bytes())
        data[-1] ^= 0xFF
        npy.write_bytes(bytes(data))
    if damage == "flipped byte":  # same size: only the checksum tells
        assert len(FeatureCache(out)) == 6
        with pytest.raises(CacheError, match="checksum"):
            FeatureCache(out, verify="checksum")
    else:
        with pytest.raises(CacheError, match=f"damaged cache.*{npy.stem}.*prepare.*again"):
            FeatureCache(out)
    summary = prepare(dataset, out, SMALL, workers=1, progress=False)
    assert summary.repaired == 1 and summary.done == n_tracks and summary.skipped == 6 - n_tracks
    assert len(FeatureCache(out, verify="checksum")) == 6


def test_train_and_evaluate_report_damage_in_one_line(audio_tree, tmp_path, capsys):
    out = tmp_path / "cache"
    _prepared(audio_tree, out)
    npy = sorted((out / "shards").glob("*.npy"))[0]
    npy.write_bytes(npy.read_bytes()[:-10])
    pytest.importorskip("torch")
    assert main(["train", "--cache", str(out), "--out", str(tmp_path / "run"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "damaged cache" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- one writer at a time


def test_second_prepare_on_the_same_cache_is_refused(audio_tree, tmp_path):
    out = tmp_path / "cache"
    dataset = _prepared(audio_tree, out)
    with open(out / ".prepare.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write("4242")
        f.flush()
        with pytest.raises(CacheError, match="another genrekit prepare .* is writing"):
            prepare(dataset, out, SMALL, workers=1, progress=False)
    assert prepare(dataset, out, SMALL, workers=1, progress=False).skipped == 6  # free again
    assert len(list((out / "shards").glob("*.npy"))) == 1  # nothing was written twice


def test_cache_records_content_hashes(audio_tree, tmp_path):
    out = tmp_path / "cache"
    _prepared(audio_tree, out)
    import hashlib

    cache = FeatureCache(out)
    for row in cache.tracks.itertuples():
        assert row.sha256 == hashlib.sha256(open(row.path, "rb").read()).hexdigest()
        assert len(row.audio_sha256) == 64
    assert cache.tracks["audio_sha256"].is_unique


def test_segments_do_not_depend_on_blas_threads(tmp_path):
    """OpenBLAS sums in another order with more threads; a cache must hold the same numbers
    whichever engine and core count wrote it (Ray's workers run with one BLAS thread)."""
    from threadpoolctl import threadpool_limits

    from genrekit.cache.featurize import PrepareOptions, featurize_track
    from genrekit.datasets.base import Track
    from tests.conftest import synthetic_track

    wav = tmp_path / "rock.wav"
    sf.write(wav, synthetic_track("rock", 3, 30.0), 22050)
    track = Track("rock.00000", str(wav), "rock", "train")
    results = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            results.append(featurize_track(track, FeatureConfig(), PrepareOptions())[1])
    assert np.array_equal(results[0], results[1])


# ---------------------------------------------------------------- files in shards/ that genrekit did not write

FOREIGN = {"notes.json": "my notes, not JSON", "readme.json": '{"about": "my cache"}',
           "20240101T000000-0badf00d.json": "shard-like name, but genrekit never wrote it"}


def _add_foreign_files(out) -> None:
    for name, text in FOREIGN.items():
        (out / "shards" / name).write_text(text)


def test_resume_keeps_json_files_genrekit_did_not_write(audio_tree, tmp_path, capsys):
    out = tmp_path / "cache"
    dataset = _prepared(audio_tree, out)
    _add_foreign_files(out)
    capsys.readouterr()
    summary = prepare(dataset, out, SMALL, workers=1, progress=False)
    assert summary.repaired == 0 and summary.skipped == 6
    printed = capsys.readouterr().out
    for name, text in FOREIGN.items():
        assert (out / "shards" / name).read_text() == text
        assert sum(name in line for line in printed.splitlines()) == 1, printed
    assert "deleted" not in printed


def test_foreign_json_files_do_not_make_the_cache_unreadable(audio_tree, tmp_path):
    out = tmp_path / "cache"
    _prepared(audio_tree, out)
    for name in ("notes.json", "readme.json"):
        (out / "shards" / name).write_text(FOREIGN[name])
    assert len(FeatureCache(out)) == 6


def test_overwrite_keeps_json_files_genrekit_did_not_write(audio_tree, tmp_path, capsys):
    out = tmp_path / "cache"
    assert run_prepare(f"folder:{audio_tree}", out) == 0
    _add_foreign_files(out)
    capsys.readouterr()
    assert run_prepare(f"folder:{audio_tree}", out, "--overwrite") == 0
    printed = capsys.readouterr().out
    for name, text in FOREIGN.items():
        assert (out / "shards" / name).read_text() == text
        assert sum(name in line for line in printed.splitlines()) >= 1, printed


def test_a_damaged_shard_genrekit_wrote_carries_its_marker(audio_tree, tmp_path):
    out = tmp_path / "cache"
    _prepared(audio_tree, out)
    index = sorted((out / "shards").glob("*.json"))[0]
    assert json.loads(index.read_text())["writer"] == "genrekit"
    index.write_text(index.read_text()[:30])  # truncated, but still genrekit's
    store = CacheStore(out)
    assert store.index().proven >= {index.stem}
    store.remove()
    assert not index.exists()


def test_an_unproven_damaged_shard_is_named_with_what_to_do(audio_tree, tmp_path):
    out = tmp_path / "cache"
    _prepared(audio_tree, out)
    (out / "shards" / "20240101T000000-0badf00d.json").write_text("not genrekit's")
    with pytest.raises(CacheError, match="20240101T000000-0badf00d.*cannot prove.*delete it yourself"):
        FeatureCache(out)
