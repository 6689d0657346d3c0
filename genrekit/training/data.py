"""The data a run trains on: honest track splits, segments in memory, batches, class balance.

Tracks (never segments) are split into training and validation, disjoint by track and
artist. Batches are index tensors; under DDP every rank draws the same order from the
run's generator and takes its own strided share of each global batch.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from ..cache import FeatureCache, tracks_of
from ..datasets.base import assign_splits, check_disjoint, kfold_assign
from ..errors import ConfigError
from .config import UNEVEN_RATIO, TrainConfig


@dataclass
class SegmentSet:
    """Segments of a set of tracks in memory: ``x`` (N, bins, frames) float16, ``y`` labels,
    ``track`` index into ``tracks`` (a DataFrame of the tracks)."""

    x: torch.Tensor
    y: torch.Tensor
    track: np.ndarray
    tracks: object

    def __len__(self):
        return len(self.y)


def split_tracks(cache: FeatureCache, config: TrainConfig):
    """Train and validation track tables, disjoint by track and artist.

    Validation comes from the cache's own split when it has tracks there, otherwise it
    is carved out of the training tracks by artist (or track) with ``config.seed``:
    fold ``config.fold`` of a ``config.folds``-fold split, or ``config.valid_fraction``.
    """
    train = cache.select(config.train_split)
    valid = cache.select(config.valid_split) if config.valid_split else train.iloc[:0]
    if len(train) == 0:
        raise ConfigError(f"no tracks in split(s) {config.train_split} of {cache.root}; "
                          f"splits there: {sorted(cache.tracks['split'].dropna().unique())}")
    if len(valid) == 0:
        valid_ids = _carved_valid_ids(train, config)
        valid = train[train["track_id"].isin(valid_ids)]
        train = train[~train["track_id"].isin(valid_ids)]
    check_disjoint(tracks_of(train), tracks_of(valid), "training and validation tracks")
    if len(valid) == 0:
        raise ConfigError("no validation tracks: give a valid split or a larger valid_fraction")
    return train.reset_index(drop=True), valid.reset_index(drop=True)


def split_notes(cache: FeatureCache, config: TrainConfig, train, valid) -> list[str]:
    """One-line notes on what :func:`split_tracks` decided that a user may not expect.

    Validation carved out of the training tracks (the cache has no tracks in
    ``config.valid_split``), and labels of ``config.labels`` with no training track.
    """
    notes = []
    if not config.valid_split or len(cache.select(config.valid_split)) == 0:
        how = (f"fold {config.fold} of {config.folds}" if config.folds > 1
               else f"{round(100 * config.valid_fraction)} %")
        notes.append(f"{cache.root} has no tracks in split(s) {config.valid_split}: {len(valid)} of "
                     f"{len(train) + len(valid)} training tracks ({how}, by artist or track, seed {config.seed}) "
                     "are held out for validation")
    missing = [label for label in config.labels or [] if label not in set(train["label"])]
    if missing:
        notes.append(f"label(s) {missing} of the recipe have no training tracks in {cache.root}: the model gets "
                     "outputs for them that it never learns")
    return notes


def _carved_valid_ids(train, config: TrainConfig) -> set[str]:
    """Validation track ids carved out of ``train`` by artist/track: a k-fold fold or a fraction."""
    tracks = tracks_of(train)
    if config.folds > 1:
        folds = kfold_assign(tracks, config.folds, config.seed)
        return {track_id for track_id, fold in folds.items() if fold == config.fold}
    carved = assign_splits([dataclasses.replace(t, split=None) for t in tracks],
                           valid_fraction=config.valid_fraction, test_fraction=0.0, seed=config.seed)
    return {t.track_id for t in carved if t.split == "valid"}


def load_segments(cache: FeatureCache, tracks, labels: list[str]) -> SegmentSet:
    """All segments of ``tracks`` in memory, with label and track indices."""
    x, y, track = cache.segments_of(tracks, labels)
    return SegmentSet(torch.from_numpy(x), torch.from_numpy(y).long(), track, tracks)


def batches(n: int, batch_size: int, shuffle: bool, generator: torch.Generator | None = None,
            rank: int = 0, world_size: int = 1, drop_last: bool = False, order: torch.Tensor | None = None):
    """Index batches; with ``world_size > 1`` each rank takes its own share of every global batch.

    ``order`` replaces the epoch's permutation (e.g. a class-balanced draw, which every
    rank must make identically from the shared generator).
    """
    if order is None:
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    global_batch = batch_size * world_size
    for start in range(0, len(order), global_batch):
        chunk = order[start: start + global_batch]
        if drop_last and len(chunk) < global_batch:
            return
        mine = chunk[rank::world_size]
        if len(chunk) >= max(2, world_size) or not shuffle:  # the same decision on every rank
            yield mine


def segments_on_device(data: SegmentSet, device: torch.device, max_share: float = 0.25) -> SegmentSet:
    """Keep the training segments on the GPU when they take at most ``max_share`` of its free memory.

    Batches are then gathered on the GPU instead of copied over PCIe at every step
    (FMA small: 80,000 float16 segments of 128 × 129 = 2.6 GB). On CPU, or when they do
    not fit, ``data`` is returned unchanged.
    """
    if device.type != "cuda":
        return data
    free, _ = torch.cuda.mem_get_info(device)
    if data.x.element_size() * data.x.nelement() > max_share * free:
        return data
    return SegmentSet(data.x.to(device), data.y.to(device), data.track, data.tracks)


# ---------------------------------------------------------------- class balance


def class_counts(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Segments per class."""
    return torch.bincount(y.cpu(), minlength=n_classes)


def resolve_class_balance(setting: str, counts: torch.Tensor) -> str:
    """``"auto"`` → ``"weight"`` when the classes present are uneven, else ``"none"``."""
    if setting != "auto":
        return setting
    present = counts[counts > 0].float()
    uneven = len(present) > 1 and float(present.max() / present.min()) >= UNEVEN_RATIO
    return "weight" if uneven else "none"


def class_weights(counts: torch.Tensor) -> torch.Tensor:
    """Inverse-frequency loss weights ``N / (C × n_c)``, mean 1 over the classes present (0 for absent ones).

    Examples
    --------
    >>> class_weights(torch.tensor([30, 10, 0]))
    tensor([0.6667, 2.0000, 0.0000])
    """
    counts = counts.double()
    present = counts > 0
    weights = torch.zeros_like(counts)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return weights.float()


def balanced_order(y: torch.Tensor, n_classes: int, generator: torch.Generator) -> torch.Tensor:
    """An epoch of segment indices drawn with replacement so that every class is equally likely.

    The epoch keeps its length (one draw per segment). Every DDP rank draws the same
    order from the shared generator.
    """
    counts = class_counts(y, n_classes).double()
    per_segment = (1.0 / counts.clamp(min=1))[y.cpu()]
    return torch.multinomial(per_segment, len(y), replacement=True, generator=generator)
