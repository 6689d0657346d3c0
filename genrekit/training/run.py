"""One training run (one process, or one rank of a DDP job): two phases, checkpoints, resume.

A run reads a feature cache, splits tracks (never segments) into train and validation,
trains frozen then unfrozen, validates every epoch at segment and track level, keeps
the best checkpoint by track-level balanced accuracy (then accuracy, then loss) and can
resume after an interruption.

Files in the run folder (``out``)::

    best.safetensors, last.safetensors   checkpoints (last also holds the resume state)
    metrics.csv, metrics.json            one row per epoch
    config.json                          the TrainConfig
    training_curves.png

A folder that already holds a run is refused unless ``resume`` (continue it, with the
same settings) or ``overwrite`` (delete only the files above, then start again).
"""
from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import __version__
from ..cache import FeatureCache, artists_of, content_hashes
from ..checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from ..errors import CheckpointError, ConfigError
from ..io import write_json, write_text
from ..models import ModelConfig, build_model, get_backbone
from .config import TrainConfig
from .data import (
    class_counts,
    class_weights,
    load_segments,
    resolve_class_balance,
    segments_on_device,
    split_notes,
    split_tracks,
)
from .loop import (
    RunState,
    make_optimizer,
    make_scheduler,
    predict_segments,
    resolve_device,
    seed_everything,
    train_epoch,
    validation_metrics,
)

BEST, LAST = "best.safetensors", "last.safetensors"
RUN_FILES = (BEST, LAST, "metrics.csv", "metrics.json", "config.json", "training_curves.png")


@dataclass
class TrainResult:
    out: Path
    best_checkpoint: Path
    history: list
    best_metrics: dict


def run_training(config: TrainConfig, resume: bool = False, overwrite: bool = False, rank: int = 0,
                 world_size: int = 1, device: torch.device | None = None) -> TrainResult:
    """Run the two-phase recipe on a feature cache and write checkpoints, metrics and plots.

    Parameters
    ----------
    config : TrainConfig
    resume : bool
        Continue from ``<out>/last.safetensors`` (after the last finished epoch); the
        settings must be those of the run being continued.
    overwrite : bool
        Start again in a folder that holds a run (its run files are deleted first).
    rank, world_size, device
        Set by the distributed launcher (:mod:`genrekit.training.launcher`); leave as is.
    """
    config.check()
    out = Path(config.out)
    check_run_folder(out, config, resume, overwrite)  # on every rank, before any collective
    if rank == 0:
        clear_run_folder(out, overwrite)
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()
    generator = seed_everything(config.seed)
    device = device or resolve_device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels
    elif world_size == 1:
        torch.use_deterministic_algorithms(True, warn_only=True)  # repeatable runs on CPU
    state = _build_state(config, out, generator, device, rank, world_size)
    start = _resume_state(state) if resume else (0, 0)
    if rank == 0:
        write_json(out / "config.json", config.to_dict())
        _print_start(state)
    for phase_index, (phase, epochs, lr) in enumerate(phases(config)):
        if phase_index >= start[0]:
            _run_phase(state, phase_index, phase, epochs, lr, start[1] if phase_index == start[0] else 0)
    if rank == 0:
        from ..plots import plot_training_curves

        plot_training_curves(state.history, out / "training_curves.png")
    return TrainResult(out, out / BEST, state.history, state.best or {})


def check_run_folder(out: Path, config: TrainConfig, resume: bool, overwrite: bool) -> None:
    """Refuse to mix two runs in one folder, and a resume with other settings."""
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: --out must be a folder, and this is a file")
    if resume:
        _check_resumable(out, config)
        return
    existing = [name for name in RUN_FILES if (out / name).exists()]
    if existing and not overwrite:
        raise ConfigError(f"{out} already holds a training run ({', '.join(existing)}): continue it with --resume, "
                          "start again with --overwrite, or choose another --out")


def clear_run_folder(out: Path, overwrite: bool) -> None:
    """Create the run folder; with ``overwrite`` delete the run files genrekit wrote there, nothing else."""
    if overwrite:
        for name in RUN_FILES:
            if (out / name).is_file():
                (out / name).unlink()
    out.mkdir(parents=True, exist_ok=True)


def _check_resumable(out: Path, config: TrainConfig) -> None:
    last = out / LAST
    if not last.is_file():
        raise CheckpointError(f"--resume: {last} not found (nothing to resume in {out})")
    saved = load_checkpoint(last)
    if "resume" not in saved:
        raise CheckpointError(f"{last} holds no resume state")
    differences = config.differences(TrainConfig.from_dict(saved["train_config"]))
    if differences:
        raise ConfigError(f"--resume: settings differ from the run in {out}: {', '.join(differences)}; "
                          "resume with the same settings, or start a new run (--overwrite or another --out)")
    done = len(saved["history"])
    if done >= config.frozen_epochs + config.unfrozen_epochs:
        raise ConfigError(f"--resume: the run in {out} already finished all {done} epochs; nothing to do")


def phases(config: TrainConfig) -> list[tuple[str, int, float]]:
    """``(name, epochs, lr)`` of the frozen and unfrozen phases that have epochs."""
    result = []
    if config.frozen_epochs:
        result.append(("frozen", config.frozen_epochs, config.lr))
    if config.unfrozen_epochs:
        result.append(("unfrozen", config.unfrozen_epochs, config.unfrozen_lr or config.lr))
    return result


def input_stats(backbone: str, x: torch.Tensor) -> tuple[float, float]:
    """Mean and std the model standardises its input with (0 and 1 for backbones that scale their own)."""
    if not get_backbone(backbone).standardise_input:
        return 0.0, 1.0
    sample = x[:: max(1, len(x) // 2000)].float()
    return float(sample.mean()), float(sample.std().clamp(min=1e-3))


def check_backbone_features(backbone: str, cache: FeatureCache) -> None:
    needed = get_backbone(backbone).feature_config
    if needed is not None and needed != cache.config:
        raise ConfigError(f"backbone {backbone} needs features {needed}, but {cache.root} has {cache.config}; "
                          f"prepare a cache with --features {backbone.split('-')[0]}")


def _build_state(config: TrainConfig, out: Path, generator, device, rank: int, world_size: int) -> RunState:
    cache = FeatureCache(config.cache, verify="checksum")
    check_backbone_features(config.backbone, cache)
    train_tracks, valid_tracks = split_tracks(cache, config)
    labels = config.labels or sorted(train_tracks["label"].unique())
    train_set = load_segments(cache, train_tracks, labels)
    valid_set = load_segments(cache, valid_tracks, labels)
    mean, std = input_stats(config.backbone, train_set.x)
    counts = class_counts(train_set.y, len(labels))
    balance = resolve_class_balance(config.class_balance, counts)
    train_set = segments_on_device(train_set, device)
    model_config = ModelConfig(config.backbone, len(labels), config.head, mean, std)
    model = build_model(model_config, pretrained=config.pretrained, weights=config.weights).to(device)
    if device.type == "cuda" and config.amp:
        model = model.to(memory_format=torch.channels_last)
    if world_size > 1:
        from .dist import sync_batchnorm

        model = sync_batchnorm(model, device)  # BatchNorm statistics of the global batch
    state = RunState(model, config, device, labels, generator, train_set, valid_set, out, balance,
                     class_weights(counts) if balance == "weight" else None, rank, world_size)
    state.cache = cache
    state.notes = split_notes(cache, config, train_tracks, valid_tracks)
    return state


def _print_start(state: RunState) -> None:
    train, valid = state.train_set, state.valid_set
    print(f"train: {len(train.tracks)} tracks / {len(train)} segments; valid: {len(valid.tracks)} tracks / "
          f"{len(valid)} segments; {state.n_classes} labels; backbone {state.config.backbone} on {state.device}; "
          f"class balance: {state.class_balance}")
    for note in state.notes:
        print(f"note: {note}")


def _run_phase(state: RunState, phase_index: int, phase: str, epochs: int, lr: float, first_epoch: int) -> None:
    config, model = state.config, state.model
    model.freeze_backbone(phase == "frozen")
    if state.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [state.device.index] if state.device.type == "cuda" else None
        state.ddp_model = DistributedDataParallel(model, device_ids=device_ids)
    optimizer = make_optimizer(model.parameters(), config, lr)
    steps_per_epoch = math.ceil(len(state.train_set) / (config.batch_size * state.world_size))
    scheduler = make_scheduler(optimizer, lr, steps_per_epoch * epochs)
    if first_epoch:
        resume = load_checkpoint(state.out / LAST)["resume"]
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
    for epoch in range(first_epoch, epochs):
        if state.world_size > 1:
            from .dist import seed_rank

            seed_rank(state, phase_index, epoch)  # per-rank dropout/augmentation streams
        _run_epoch(state, phase_index, phase, epoch, optimizer, scheduler)


def _validate(state: RunState) -> dict:
    if state.world_size > 1:
        from .dist import predict_sharded

        probs = predict_sharded(state.model, state.valid_set.x, state.device, state.rank, state.world_size,
                                amp=state.config.amp)
    else:
        probs = predict_segments(state.model, state.valid_set.x, state.device, amp=state.config.amp)
    return validation_metrics(probs, state.valid_set)


def _run_epoch(state: RunState, phase_index: int, phase: str, epoch: int, optimizer, scheduler) -> None:
    from tqdm import tqdm

    bar = tqdm(total=len(state.train_set), desc=f"{phase} {epoch + 1}", unit="seg", leave=False,
               disable=not state.config.progress or state.rank != 0)
    t0 = time.perf_counter()
    train_loss = train_epoch(state, optimizer, scheduler, bar)
    seconds = time.perf_counter() - t0
    bar.close()
    metrics = _validate(state)
    row = {"phase": phase, "epoch": epoch + 1, "train_loss": train_loss, **metrics,
           "lr": optimizer.param_groups[0]["lr"], "seconds": round(seconds, 2),
           "segments_per_s": round(len(state.train_set) / max(seconds, 1e-9), 1)}
    state.history.append(row)
    if state.rank != 0:
        return
    improved = state.best is None or _rank_key(row) > _rank_key(state.best)
    if improved:
        state.best = dict(row)
    print(f"{phase} epoch {epoch + 1}: train loss {train_loss:.3f}, valid loss {metrics['valid_loss']:.3f}, "
          f"segment acc {metrics['valid_segment_accuracy']:.3f}, track acc {metrics['valid_track_accuracy']:.3f}, "
          f"balanced {metrics['valid_track_balanced_accuracy']:.3f}{' *' if improved else ''} "
          f"({row['segments_per_s']:.0f} seg/s)")
    # metrics of THESE weights: best is written only when row is the best, last holds the last epoch
    payload = checkpoint_payload(state, row)
    if improved:
        save_checkpoint(payload, state.out / BEST)
    payload["resume"] = {"phase_index": phase_index, "epoch": epoch + 1, "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "generator": state.generator.get_state(),
                         "best": state.best, "torch_rng": torch.get_rng_state()}
    save_checkpoint(payload, state.out / LAST)
    write_history(state.out, state.history)


def _rank_key(row: dict) -> tuple:
    return (row["valid_track_balanced_accuracy"], row["valid_track_accuracy"], -row["valid_loss"])


def checkpoint_payload(state: RunState, metrics: dict) -> dict:
    """Everything needed to use a model again and to check it against test data."""
    cache, train, valid = state.cache, state.train_set.tracks, state.valid_set.tracks

    def describe(frame):
        return {"n_tracks": int(len(frame)), "n_segments": int(frame["n_segments"].sum()),
                "per_label": {k: int(v) for k, v in frame["label"].value_counts().sort_index().items()}}

    return {
        "format": CHECKPOINT_FORMAT,
        "genrekit_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "labels": list(state.labels),
        "feature_config": cache.config.to_dict(),
        "model_config": state.model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in state.model.state_dict().items()},
        "train_config": state.config.to_dict(),
        "training_data": {
            "cache": str(cache.root), "dataset": cache.dataset,
            "train_splits": state.config.train_split, "valid_splits": state.config.valid_split,
            "train": describe(train), "valid": describe(valid), "class_balance": state.class_balance,
            "train_track_ids": sorted(map(str, train["track_id"])),
            "train_artists": artists_of(train),
            "train_hashes": content_hashes(train),
            "valid_track_ids": sorted(map(str, valid["track_id"])),
        },
        "metrics": metrics,
        "history": state.history,
    }


def write_history(out: Path, history: list) -> None:
    write_json(out / "metrics.json", history)
    if history:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
        write_text(out / "metrics.csv", buf.getvalue())


def _resume_state(state: RunState) -> tuple[int, int]:
    """Load weights, history and random states from ``last``; the (phase, epoch) to continue at."""
    payload = load_checkpoint(state.out / LAST)
    resume = payload["resume"]
    state.model.load_state_dict(payload["state_dict"])
    state.generator.set_state(resume["generator"])
    torch.set_rng_state(resume["torch_rng"])
    state.history, state.best = list(payload["history"]), resume["best"]
    phase_index, epoch = resume["phase_index"], resume["epoch"]
    if epoch >= phases(state.config)[phase_index][1]:
        phase_index, epoch = phase_index + 1, 0
    if state.rank == 0:
        print(f"resuming from {state.out / LAST}: phase {phase_index + 1}, epoch {epoch + 1}")
    return phase_index, epoch


__all__ = ["run_training", "TrainResult", "checkpoint_payload", "check_run_folder", "phases", "input_stats", "BEST",
           "LAST", "RUN_FILES"]
