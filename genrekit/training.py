"""Training: the seed's recipe (fastai head, one-cycle, AdaBound, frozen then unfrozen).

A run reads a feature cache, splits tracks (never segments) into train and validation,
trains in two phases, validates every epoch at segment and track level, keeps the best
checkpoint by track-level validation accuracy and can resume after an interruption.

Examples
--------
>>> from genrekit.training import TrainConfig, train
>>> result = train(TrainConfig(cache="caches/gtzan", backbone="small_cnn", out="runs/demo"))  # doctest: +SKIP
>>> result.best_checkpoint  # doctest: +SKIP
PosixPath('runs/demo/best.pt')
"""
from __future__ import annotations

import csv
import dataclasses
import io
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import __version__
from .cache import FeatureCache
from .datasets.base import Track, assign_splits, check_disjoint, kfold_assign
from .errors import CheckpointError, ConfigError
from .io import atomic_path, write_json, write_text
from .models import GenreNet, HeadConfig, ModelConfig, build_model
from .voting import majority_vote, mean_vote

CHECKPOINT_FORMAT = 1


@dataclass
class TrainConfig:
    """Settings of one training run (a YAML file maps onto these names).

    The defaults are the seed's recipe: AdaBound at lr 1e-3 with a one-cycle schedule,
    10 epochs with the backbone frozen, then 10 unfrozen, batch 64.
    """

    cache: str = ""
    out: str = "runs/genrekit"
    backbone: str = "small_cnn"
    pretrained: bool = False
    weights: str | None = None
    head: dict = field(default_factory=dict)
    labels: list[str] | None = None          # fixed label order; default: labels of the training tracks
    train_split: list[str] = field(default_factory=lambda: ["train"])
    valid_split: list[str] = field(default_factory=lambda: ["valid"])
    valid_fraction: float = 0.2             # carved from train by artist/track when valid_split is empty
    folds: int = 0                          # k > 1: validate on fold `fold` of a k-fold split by artist/track
    fold: int = 0                           #   (instead of valid_fraction, when valid_split is empty)
    optimizer: str = "adabound"             # or "adamw"
    lr: float = 1e-3
    unfrozen_lr: float | None = None        # default: lr
    final_lr: float = 0.1                   # AdaBound's final (SGD) rate
    weight_decay: float = 1e-4
    frozen_epochs: int = 10
    unfrozen_epochs: int = 10
    batch_size: int = 64                    # per process: DDP's global batch is batch_size × world size
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    amp: bool = True                        # bf16 autocast and channels_last, CUDA only
    spec_augment: dict = field(default_factory=dict)  # {freq_masks, freq_width, time_masks, time_width}
    mixup: float = 0.0                      # Beta(alpha, alpha); 0 = off
    progress: bool = True

    @classmethod
    def from_file(cls, path, **overrides) -> "TrainConfig":
        import yaml

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        data = yaml.safe_load(path.read_text()) or {}
        return cls.from_dict({**data, **{k: v for k, v in overrides.items() if v is not None}})

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown training settings: {unknown}; known: {sorted(known)}")
        data = dict(data)
        for key in ("train_split", "valid_split"):
            if isinstance(data.get(key), str):
                data[key] = [data[key]]
        config = cls(**data)
        config.check()
        return config

    def check(self) -> None:
        if self.optimizer not in ("adabound", "adamw"):
            raise ConfigError(f"optimizer must be 'adabound' or 'adamw', not {self.optimizer!r}")
        if self.frozen_epochs < 0 or self.unfrozen_epochs < 0 or self.frozen_epochs + self.unfrozen_epochs == 0:
            raise ConfigError("need frozen_epochs + unfrozen_epochs > 0 (each >= 0)")
        if self.batch_size < 2:
            raise ConfigError("batch_size must be at least 2 (BatchNorm)")
        if not self.lr > 0:
            raise ConfigError("lr must be positive")
        if self.folds == 1 or self.folds < 0 or (self.folds > 1 and not 0 <= self.fold < self.folds):
            raise ConfigError(f"folds must be 0 (off) or >= 2, and fold in 0..folds-1; got folds {self.folds}, "
                              f"fold {self.fold}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- data


@dataclass
class SegmentSet:
    """Segments of a set of tracks in memory: ``x`` (N, n_mels, frames) float16, ``y`` labels,
    ``track`` index into ``tracks`` (a DataFrame of the tracks)."""

    x: torch.Tensor
    y: torch.Tensor
    track: np.ndarray
    tracks: object

    def __len__(self):
        return len(self.y)


def _tracks_of(frame) -> list[Track]:
    return [Track(r.track_id, r.path, r.label, r.split, r.artist if isinstance(r.artist, str) and r.artist else None)
            for r in frame.itertuples()]


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
    check_disjoint(_tracks_of(train), _tracks_of(valid), "training and validation tracks")
    if len(valid) == 0:
        raise ConfigError("no validation tracks: give a valid split or a larger valid_fraction")
    return train.reset_index(drop=True), valid.reset_index(drop=True)


def _carved_valid_ids(train, config: TrainConfig) -> set[str]:
    """Validation track ids carved out of ``train`` by artist/track: a k-fold fold or a fraction."""
    tracks = _tracks_of(train)
    if config.folds > 1:
        folds = kfold_assign(tracks, config.folds, config.seed)
        return {track_id for track_id, fold in folds.items() if fold == config.fold}
    carved = assign_splits([dataclasses.replace(t, split=None) for t in tracks],
                           valid_fraction=config.valid_fraction, test_fraction=0.0, seed=config.seed)
    return {t.track_id for t in carved if t.split == "valid"}


def load_segments(cache: FeatureCache, tracks, labels: list[str]) -> SegmentSet:
    index = {label: i for i, label in enumerate(labels)}
    xs, ys, ts = [], [], []
    for i, row in enumerate(tracks.itertuples()):
        if row.label not in index:
            raise ConfigError(f"track {row.track_id} has label {row.label!r}, not among {labels}")
        seg = np.asarray(cache.track_segments(row))
        xs.append(seg)
        ys.append(np.full(len(seg), index[row.label]))
        ts.append(np.full(len(seg), i))
    return SegmentSet(torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)).long(),
                      np.concatenate(ts), tracks)


def batches(n: int, batch_size: int, shuffle: bool, generator: torch.Generator | None = None,
            rank: int = 0, world_size: int = 1, drop_last: bool = False):
    """Index batches; with ``world_size > 1`` each rank takes its own share of every global batch."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    global_batch = batch_size * world_size
    for start in range(0, n, global_batch):
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


# ---------------------------------------------------------------- augmentation


def spec_augment(x: torch.Tensor, freq_masks=0, freq_width=0, time_masks=0, time_width=0, generator=None):
    """SpecAugment-style masking: zero random bands of frequencies and time frames (in place of
    the standardised input's mean, i.e. 0 after normalisation is applied later by the model,
    so masks are filled with the batch mean here)."""
    if not (freq_masks or time_masks):
        return x
    x = x.clone()
    b, f, t = x.shape
    fill = x.float().mean()
    for count, width, size, dim in ((freq_masks, freq_width, f, 1), (time_masks, time_width, t, 2)):
        for _ in range(count):
            w = torch.randint(0, width + 1, (b,), generator=generator)
            start = (torch.rand(b, generator=generator) * (size - w).clamp(min=1)).long()
            pos = torch.arange(size)
            mask = (pos[None, :] >= start[:, None]) & (pos[None, :] < (start + w)[:, None])
            mask = mask[:, :, None] if dim == 1 else mask[:, None, :]
            x = x.masked_fill(mask.to(x.device), fill.to(x.dtype))
    return x


def mixup(x: torch.Tensor, y: torch.Tensor, n_classes: int, alpha: float, generator=None):
    """Mix pairs of examples; returns inputs and soft targets."""
    target = nn.functional.one_hot(y, n_classes).float()
    if alpha <= 0:
        return x, target
    lam = float(np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=generator))).beta(alpha, alpha))
    perm = torch.randperm(len(x), generator=generator).to(x.device)
    return lam * x.float() + (1 - lam) * x[perm].float(), lam * target + (1 - lam) * target[perm]


# ---------------------------------------------------------------- optimisation


def make_optimizer(params, config: TrainConfig, lr: float):
    params = [p for p in params if p.requires_grad]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay)
    import torch_optimizer

    return torch_optimizer.AdaBound(params, lr=lr, final_lr=config.final_lr, weight_decay=config.weight_decay)


def make_scheduler(optimizer, lr: float, total_steps: int):
    """fastai's one-cycle: warm up over 25 % of the steps to ``lr`` (from lr/25), then cosine down to lr/1e5."""
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(total_steps, 1), pct_start=0.25,
                                               div_factor=25.0, final_div_factor=1e5 / 25, anneal_strategy="cos")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but no CUDA device is available")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- epochs


@dataclass
class Context:
    """What the epoch loops need, built once per run."""

    model: GenreNet
    config: TrainConfig
    device: torch.device
    n_classes: int
    generator: torch.Generator
    rank: int = 0
    world_size: int = 1
    ddp_model: nn.Module | None = None
    aug_generator: torch.Generator | None = None   # per-rank augmentation stream under DDP; default: generator

    @property
    def net(self) -> nn.Module:
        return self.ddp_model or self.model

    def autocast(self):
        enabled = self.config.amp and self.device.type == "cuda"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x


def train_epoch(ctx: Context, data: SegmentSet, optimizer, scheduler, progress=None) -> float:
    """One pass over the training segments; returns the mean loss (over all ranks)."""
    ctx.net.train()
    cfg = ctx.config
    total, count = torch.zeros((), device=ctx.device), torch.zeros((), device=ctx.device)
    aug = ctx.aug_generator if ctx.aug_generator is not None else ctx.generator
    global_batch = cfg.batch_size * ctx.world_size
    for step, idx in enumerate(batches(len(data), cfg.batch_size, True, ctx.generator, ctx.rank, ctx.world_size)):
        idx = idx.to(data.x.device)
        x = spec_augment(data.x[idx], generator=aug, **cfg.spec_augment)
        x, target = mixup(ctx.to_device(x), ctx.to_device(data.y[idx]), ctx.n_classes, cfg.mixup, aug)
        if ctx.device.type == "cuda" and cfg.amp:
            x = x.unsqueeze(1).contiguous(memory_format=torch.channels_last)
        with ctx.autocast():
            logits = ctx.net(x)
            loss = nn.functional.cross_entropy(logits.float(), target)
        optimizer.zero_grad(set_to_none=True)
        if ctx.world_size > 1:  # DDP averages the ranks' gradients: weight by this rank's share of the global batch
            (loss * (len(idx) * ctx.world_size / min(global_batch, len(data) - step * global_batch))).backward()
        else:
            loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.detach() * len(idx)
        count += len(idx)
        if progress is not None:
            progress.update(len(idx) * ctx.world_size)
    if ctx.world_size > 1:
        import torch.distributed as dist

        dist.all_reduce(total)
        dist.all_reduce(count)
    return float(total / count.clamp(min=1))


@torch.no_grad()
def predict_segments(model: nn.Module, x: torch.Tensor, device, batch_size: int = 256, amp: bool = False) -> np.ndarray:
    """Softmax probabilities of segments ``(N, n_mels, frames)`` → ``(N, n_classes)``."""
    model.eval()
    out = []
    for start in range(0, len(x), batch_size):
        xb = x[start: start + batch_size].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            out.append(torch.softmax(model(xb).float(), dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0))


def validate(ctx: Context, data: SegmentSet) -> dict:
    """Segment- and track-level validation metrics (segments voted per track)."""
    if ctx.world_size > 1:
        from .distributed.ddp import predict_sharded

        probs = predict_sharded(ctx.model, data.x, ctx.device, ctx.rank, ctx.world_size, amp=ctx.config.amp)
    else:
        probs = predict_segments(ctx.model, data.x, ctx.device, amp=ctx.config.amp)
    y = data.y.numpy()
    eps = 1e-12
    loss = float(-np.log(probs[np.arange(len(y)), y] + eps).mean())
    n_tracks = len(data.tracks)
    track_y = np.zeros(n_tracks, int)
    track_y[data.track] = y
    mean = mean_vote(probs, data.track, n_tracks).argmax(1)
    major = majority_vote(probs, data.track, n_tracks).argmax(1)
    return {"valid_loss": loss, "valid_segment_accuracy": float((probs.argmax(1) == y).mean()),
            "valid_track_accuracy": float((mean == track_y).mean()),
            "valid_track_accuracy_majority": float((major == track_y).mean()), "valid_tracks": n_tracks}


# ---------------------------------------------------------------- checkpoints


def checkpoint_payload(model: GenreNet, labels, cache: FeatureCache, train_tracks, valid_tracks, config: TrainConfig,
                       metrics: dict, history: list) -> dict:
    """Everything needed to use a model again and to check it against test data."""
    def describe(frame):
        return {"n_tracks": int(len(frame)), "n_segments": int(frame["n_segments"].sum()),
                "per_label": {k: int(v) for k, v in frame["label"].value_counts().sort_index().items()}}

    artists = sorted({a for a in train_tracks["artist"] if isinstance(a, str) and a})
    return {
        "format": CHECKPOINT_FORMAT,
        "genrekit_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "labels": list(labels),
        "feature_config": cache.config.to_dict(),
        "model_config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "train_config": config.to_dict(),
        "training_data": {
            "cache": str(cache.root), "dataset": cache.dataset,
            "train_splits": config.train_split, "valid_splits": config.valid_split,
            "train": describe(train_tracks), "valid": describe(valid_tracks),
            "train_track_ids": sorted(map(str, train_tracks["track_id"])), "train_artists": artists,
            "valid_track_ids": sorted(map(str, valid_tracks["track_id"])),
        },
        "metrics": metrics,
        "history": history,
    }


def save_checkpoint(payload: dict, path) -> Path:
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({e})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a genrekit checkpoint (format {payload.get('format') if isinstance(payload, dict) else '?'})")
    return payload


def model_from_checkpoint(payload: dict) -> GenreNet:
    model = build_model(ModelConfig.from_dict(payload["model_config"]))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model


# ---------------------------------------------------------------- the run


@dataclass
class TrainResult:
    out: Path
    best_checkpoint: Path
    history: list
    best_metrics: dict


def _phases(config: TrainConfig):
    phases = []
    if config.frozen_epochs:
        phases.append(("frozen", config.frozen_epochs, config.lr))
    if config.unfrozen_epochs:
        phases.append(("unfrozen", config.unfrozen_epochs, config.unfrozen_lr or config.lr))
    return phases


def write_history(out: Path, history: list) -> None:
    write_json(out / "metrics.json", history)
    if history:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
        write_text(out / "metrics.csv", buf.getvalue())


def input_stats(backbone: str, x: torch.Tensor) -> tuple[float, float]:
    """Mean and std the model standardises its input with (0 and 1 for backbones that scale their own)."""
    from .models import get_backbone

    if not get_backbone(backbone).standardise_input:
        return 0.0, 1.0
    sample = x[:: max(1, len(x) // 2000)].float()
    return float(sample.mean()), float(sample.std().clamp(min=1e-3))


def train(config: TrainConfig, resume: bool = False, rank: int = 0, world_size: int = 1,
          device: torch.device | None = None) -> TrainResult:
    """Run the two-phase recipe on a feature cache and write checkpoints, metrics and plots.

    Parameters
    ----------
    config : TrainConfig
    resume : bool
        Continue from ``<out>/last.pt`` (after the last finished epoch).
    rank, world_size, device
        Set by the distributed launcher (:mod:`genrekit.distributed.ddp`); leave as is.
    """
    config.check()
    generator = seed_everything(config.seed)
    device = device or resolve_device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels
    elif world_size == 1:
        torch.use_deterministic_algorithms(True, warn_only=True)  # repeatable runs on CPU
    out = Path(config.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    cache = FeatureCache(config.cache)
    _check_backbone_features(config.backbone, cache)
    train_tracks, valid_tracks = split_tracks(cache, config)
    labels = config.labels or sorted(train_tracks["label"].unique())
    train_set = load_segments(cache, train_tracks, labels)
    valid_set = load_segments(cache, valid_tracks, labels)
    mean, std = input_stats(config.backbone, train_set.x)
    train_set = segments_on_device(train_set, device)
    model_config = ModelConfig(config.backbone, len(labels), HeadConfig(**config.head), mean, std)
    model = build_model(model_config, pretrained=config.pretrained, weights=config.weights).to(device)
    if device.type == "cuda" and config.amp:
        model = model.to(memory_format=torch.channels_last)
    if world_size > 1:
        from .distributed.ddp import sync_batchnorm

        model = sync_batchnorm(model, device)  # BatchNorm statistics of the global batch
    ctx = Context(model, config, device, len(labels), generator, rank, world_size)
    history, best, start = [], None, (0, 0)
    if resume:
        history, best, start = _resume_state(out, model, generator)
    if rank == 0:
        write_json(out / "config.json", config.to_dict())
        print(f"train: {len(train_tracks)} tracks / {len(train_set)} segments; valid: {len(valid_tracks)} tracks / "
              f"{len(valid_set)} segments; {len(labels)} labels; backbone {config.backbone} on {device}")
    for phase_i, (phase, epochs, lr) in enumerate(_phases(config)):
        if phase_i < start[0]:
            continue
        model.freeze_backbone(phase == "frozen")
        if world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            ctx.ddp_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        optimizer = make_optimizer(model.parameters(), config, lr)
        steps_per_epoch = math.ceil(len(train_set) / (config.batch_size * world_size))
        scheduler = make_scheduler(optimizer, lr, steps_per_epoch * epochs)
        first_epoch = start[1] if phase_i == start[0] else 0
        if first_epoch:
            _restore_optimizer(out, optimizer, scheduler)
        for epoch in range(first_epoch, epochs):
            if world_size > 1:
                from .distributed.ddp import seed_rank

                seed_rank(ctx, phase_i, epoch)  # per-rank dropout/augmentation streams
            row, best = _run_epoch(ctx, phase, epoch, train_set, valid_set, optimizer, scheduler, cache, labels,
                                   train_tracks, valid_tracks, history, best, out)
    if rank == 0:
        from .plots import plot_training_curves

        plot_training_curves(history, out / "training_curves.png")
    return TrainResult(out, out / "best.pt", history, best or {})


def _check_backbone_features(backbone: str, cache: FeatureCache) -> None:
    from .models import get_backbone

    needed = get_backbone(backbone).feature_config
    if needed is not None and needed != cache.config:
        raise ConfigError(f"backbone {backbone} needs features {needed}, but {cache.root} has {cache.config}; "
                          f"prepare a cache with --features {backbone.split('-')[0]}")


def _run_epoch(ctx, phase, epoch, train_set, valid_set, optimizer, scheduler, cache, labels, train_tracks,
               valid_tracks, history, best, out):
    from tqdm import tqdm

    cfg = ctx.config
    bar = tqdm(total=len(train_set), desc=f"{phase} {epoch + 1}", unit="seg", leave=False,
               disable=not cfg.progress or ctx.rank != 0)
    t0 = time.perf_counter()
    train_loss = train_epoch(ctx, train_set, optimizer, scheduler, bar)
    seconds = time.perf_counter() - t0
    bar.close()
    metrics = validate(ctx, valid_set)
    row = {"phase": phase, "epoch": epoch + 1, "train_loss": train_loss, **metrics,
           "lr": optimizer.param_groups[0]["lr"], "seconds": round(seconds, 2),
           "segments_per_s": round(len(train_set) / max(seconds, 1e-9), 1)}
    history.append(row)
    if ctx.rank != 0:
        return row, best
    improved = best is None or (row["valid_track_accuracy"], -row["valid_loss"]) > (best["valid_track_accuracy"], -best["valid_loss"])
    if improved:
        best = dict(row)
    print(f"{phase} epoch {epoch + 1}: train loss {train_loss:.3f}, valid loss {metrics['valid_loss']:.3f}, "
          f"segment acc {metrics['valid_segment_accuracy']:.3f}, track acc {metrics['valid_track_accuracy']:.3f}"
          f"{' *' if improved else ''} ({row['segments_per_s']:.0f} seg/s)")
    # metrics of THESE weights: best.pt is written only when row is the best, last.pt holds the last epoch
    payload = checkpoint_payload(ctx.model, labels, cache, train_tracks, valid_tracks, cfg, row, history)
    if improved:
        save_checkpoint(payload, out / "best.pt")
    payload["resume"] = {"phase_index": [p[0] for p in _phases(cfg)].index(phase), "epoch": epoch + 1,
                         "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                         "generator": ctx.generator.get_state(), "best": best,
                         "torch_rng": torch.get_rng_state()}
    save_checkpoint(payload, out / "last.pt")
    write_history(out, history)
    return row, best


def _resume_state(out: Path, model: GenreNet, generator: torch.Generator):
    payload = load_checkpoint(out / "last.pt")
    if "resume" not in payload:
        raise CheckpointError(f"{out / 'last.pt'} holds no resume state")
    state = payload["resume"]
    model.load_state_dict(payload["state_dict"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    phase_index, epoch = state["phase_index"], state["epoch"]
    phases = _phases(TrainConfig.from_dict(payload["train_config"]))
    if epoch >= phases[phase_index][1]:
        phase_index, epoch = phase_index + 1, 0
    print(f"resuming from {out / 'last.pt'}: phase {phase_index + 1}, epoch {epoch + 1}")
    return payload["history"], state["best"], (phase_index, epoch)


def _restore_optimizer(out: Path, optimizer, scheduler) -> None:
    state = load_checkpoint(out / "last.pt")["resume"]
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
