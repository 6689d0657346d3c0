"""The seed, exactly: its recipes in configs/, the cache they name, and the benches of issue 16."""
from __future__ import annotations

import csv
import dataclasses
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genrekit.config import SEED_FEATURES
from genrekit.training import TrainConfig

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
SEED_BACKBONES = ["densenet121", "densenet161", "densenet201", "efficientnet_b3"]
SEED_CACHE_FEATURES = dataclasses.replace(SEED_FEATURES, image_size=(224, 224))


def prepare_command(path: Path) -> list[str]:
    """The ``genrekit prepare …`` command a config's comment gives, as arguments after ``genrekit``."""
    lines = [line.lstrip("#").strip() for line in path.read_text().splitlines() if line.startswith("#")]
    commands = [line for line in lines if line.startswith("genrekit prepare ")]
    assert len(commands) == 1, f"{path.name}: expected one `genrekit prepare` line in its comment, got {commands}"
    return shlex.split(commands[0])[1:]


def parse_cli(argv: list[str]):
    from genrekit.cli import build_parser

    return build_parser().parse_args(argv)


def bench_module(name: str):
    sys.path.insert(0, str(REPO / "bench"))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(REPO / "bench"))


# --- configs ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_config_loads(path):
    """Each recipe loads strictly, as ``genrekit train --config`` reads it (``kind: transfer``: a
    track-head recipe, :class:`~genrekit.training.transfer.TransferConfig`; else a TrainConfig)."""
    import yaml

    if (yaml.safe_load(path.read_text()) or {}).get("kind") == "transfer":
        from genrekit.training.transfer import TransferConfig

        assert TransferConfig.from_file(path).labels
    else:
        config = TrainConfig.from_file(path)
        assert config.cache and config.backbone


def test_the_four_seed_configs_exist():
    assert sorted(p.name for p in CONFIGS if p.name.startswith("seed_")) == \
        sorted(f"seed_{name}.yaml" for name in SEED_BACKBONES)


@pytest.mark.parametrize("backbone", SEED_BACKBONES)
def test_seed_config_is_the_seed_recipe(backbone):
    from genrekit.models.head import HeadConfig

    config = TrainConfig.from_file(REPO / "configs" / f"seed_{backbone}.yaml")
    assert config.backbone == backbone and config.pretrained and config.weights is None
    assert (config.optimizer, config.lr, config.unfrozen_lr or config.lr) == ("adabound", 1e-3, 1e-3)
    assert (config.frozen_epochs, config.unfrozen_epochs, config.batch_size) == (10, 10, 64)
    assert config.head == HeadConfig()  # fastai's create_head sizes
    assert (config.train_split, config.valid_split) == (["train"], ["valid"])  # FMA's official split
    assert not config.spec_augment.enabled and config.mixup == 0 and config.class_balance == "none"
    assert len(config.labels) == 8  # FMA small's eight genre_top


@pytest.mark.parametrize("backbone", SEED_BACKBONES)
def test_seed_config_names_a_cache_of_the_seed_features(backbone):
    from genrekit.cli._common import feature_config_from_args

    path = REPO / "configs" / f"seed_{backbone}.yaml"
    args = parse_cli(prepare_command(path))
    assert args.command == "prepare" and args.data.startswith("fma:")
    assert args.metadata.endswith("tracks.csv") and args.subset == "small"
    assert feature_config_from_args(args) == SEED_CACHE_FEATURES
    assert args.out == TrainConfig.from_file(path).cache


def test_seed_prepare_command_writes_the_seed_features(tmp_path, write_wav):
    """The comment's feature options, run on synthetic audio, give the seed's cache: 10 parts of 224 x 224."""
    from genrekit.cache import FeatureCache
    from genrekit.cli import prepare as prepare_cli

    rng = np.random.default_rng(0)
    for label in ("jazz", "rock"):
        (tmp_path / "audio" / label).mkdir(parents=True)
        write_wav(f"audio/{label}/{label}.wav", 0.1 * rng.standard_normal(30 * 44100), sr=44100)
    args = parse_cli(prepare_command(REPO / "configs" / "seed_densenet121.yaml"))
    args.data, args.metadata, args.out = f"folder:{tmp_path / 'audio'}", None, str(tmp_path / "cache")
    args.workers, args.quiet = 1, True
    assert prepare_cli.run(args) == 0
    cache = FeatureCache(tmp_path / "cache")
    assert cache.config == SEED_CACHE_FEATURES
    row = cache.tracks.iloc[0]
    parts = np.asarray(cache.track_segments(row), np.float32)
    assert parts.shape == (10, 224, 224)
    assert parts.max() <= 0 and parts.min() >= -80.5  # dB re the clip's maximum, floored at -80 (resized)


# --- bench/seed_ablation.py ------------------------------------------------------------

def test_cluster_bootstrap_equals_the_track_bootstrap_with_one_segment_per_track():
    from genrekit.metrics import classification_report

    ablation = bench_module("seed_ablation")
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 60)
    pred = np.where(rng.random(60) < 0.6, y, rng.integers(0, 4, 60))
    ids = np.array([f"t{i:03d}" for i in range(60)])  # sorted: the same draws as over rows
    ours = ablation.cluster_bootstrap_ci(y, pred, ids, 4, n_boot=300)
    ref = classification_report(y, pred, ["a", "b", "c", "d"], n_boot=300)
    for name in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert ours[f"{name}_ci"] == pytest.approx(ref[f"{name}_ci"])


def test_cluster_bootstrap_is_wider_than_a_segment_bootstrap_when_segments_agree():
    from genrekit.metrics import classification_report

    ablation = bench_module("seed_ablation")
    rng = np.random.default_rng(2)
    track_y = rng.integers(0, 3, 30)
    track_pred = np.where(rng.random(30) < 0.5, track_y, (track_y + 1) % 3)
    y, pred = np.repeat(track_y, 10), np.repeat(track_pred, 10)  # a track's 10 parts agree
    ours = ablation.cluster_bootstrap_ci(y, pred, np.repeat(np.arange(30), 10), 3, n_boot=500)
    naive = classification_report(y, pred, ["a", "b", "c"], n_boot=500)
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(ours["accuracy_ci"]) > 2 * width(naive["accuracy_ci"])


def synthetic_cache(root: Path, tracks: list[tuple[str, str, str]], parts: int = 4):
    """A cache of random parts: ``tracks`` are ``(track_id, label, artist)``."""
    from genrekit.cache import CacheStore
    from genrekit.config import FeatureConfig

    store = CacheStore(root)
    config = dataclasses.replace(SEED_FEATURES, image_size=(8, 8))
    store.write_manifest(config, {"name": "synthetic"})
    records = [{"track_id": t, "path": f"/audio/{t}.wav", "label": label, "split": "train", "artist": artist,
                "duration": 30.0, "n_segments": parts, "sha256": None, "audio_sha256": None}
               for t, label, artist in tracks]
    arrays = [np.full((parts, 8, 8), i, np.float16) for i in range(len(tracks))]
    store.write_shard("s0", records, arrays, [])
    assert FeatureConfig.from_dict(config.to_dict()) == config


def test_part_cache_puts_parts_of_one_clip_on_both_sides_and_artist_folds_do_not(tmp_path):
    from genrekit.cache import FeatureCache, tracks_of
    from genrekit.datasets.base import kfold_assign

    ablation = bench_module("seed_ablation")
    tracks = [(f"{g}.{i:05d}", g, f"{g}-artist{i // 2}") for g in ("jazz", "rock") for i in range(6)]
    synthetic_cache(tmp_path / "whole", tracks)
    ablation.part_cache(tmp_path / "whole", tmp_path / "parts")
    parts = FeatureCache(tmp_path / "parts")
    assert len(parts) == 12 * 4 and set(parts.tracks["n_segments"]) == {1}
    assert parts.tracks["artist"].isna().all() and parts.tracks["path"].is_unique
    # each part holds its own track's values, in order
    row = parts.tracks[parts.tracks["track_id"] == "rock.00003#part2"].iloc[0]
    assert float(np.asarray(parts.track_segments(row)).max()) == 6 + 3
    part_folds = kfold_assign(tracks_of(parts.tracks), 3)
    spread = {}
    for part, fold in part_folds.items():
        spread.setdefault(ablation.source_track(part), set()).add(fold)
    assert max(len(f) for f in spread.values()) > 1  # the leak: one clip on both sides
    whole = FeatureCache(tmp_path / "whole")
    artist_folds = kfold_assign(tracks_of(whole.tracks), 3)
    by_artist = {}
    for t in tracks_of(whole.tracks):
        by_artist.setdefault(t.artist, set()).add(artist_folds[t.track_id])
    assert all(len(f) == 1 for f in by_artist.values())
    ablation.part_cache(tmp_path / "whole", tmp_path / "parts")  # a finished parts cache is kept
    assert len(FeatureCache(tmp_path / "parts")) == 48


@pytest.mark.slow
def test_seed_ablation_runs_end_to_end(shared_data, tmp_path):
    cmd = [sys.executable, "bench/seed_ablation.py", "--data", str(shared_data), "--folds", "2", "--epochs", "1",
           "--n-boot", "50", "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "leak gap" in done.stdout and "small and uneven" in done.stdout
    with open(tmp_path / "results" / "seed_ablation.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and {r["scoring"] for r in rows} == {"segment", "track (mean vote)"}
    assert sum("LEAK" in r["split"] for r in rows) == 2
    track_rows = [r for r in rows if r["unit"] == "tracks"]
    assert all(r["n"] == "87" for r in track_rows)
    assert (tmp_path / "results" / "seed_ablation" / "artist_folds.csv").is_file()


# --- bench/gpu_train_throughput.py -----------------------------------------------------

@pytest.mark.slow  # 10-30 s, nearly all of it importing torch._dynamo and matplotlib inside train()
def test_gpu_throughput_tiny_mode_runs_on_cpu(tmp_path):
    out = tmp_path / "gpu.csv"
    cmd = [sys.executable, "bench/gpu_train_throughput.py", "--tiny", "--csv", str(out)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    for label in ("bare forward+backward (same batches)", "genrekit training loop (cache)", "loop / bare:",
                  "frozen epoch (mean)", "whole train() call"):
        assert label in done.stdout
    with open(out) as f:
        (row,) = list(csv.DictReader(f))
    assert row["epochs"] == "1+1" and row["backbone"] == "small_cnn" and row["image"] == "32x32"
    assert float(row["ratio"]) > 0 and float(row["train_call_s"]) >= float(row["epochs_s"]) > 0
    assert float(row["bare_segments_per_s"]) > 0 and float(row["bare_optimizer_segments_per_s"]) > 0
