"""Training settings, checked when read: one strict ``from_dict`` for every section.

A YAML recipe maps onto :class:`TrainConfig`; its nested sections ``head`` and
``spec_augment`` map onto :class:`~genrekit.models.head.HeadConfig` and
:class:`SpecAugmentConfig`. Unknown keys and bad values raise
:class:`~genrekit.errors.ConfigError` naming the key.

Examples
--------
>>> config = TrainConfig.from_dict({"cache": "caches/gtzan", "head": {"hidden": 256}})
>>> config.head.hidden
256
>>> TrainConfig.from_dict({"cache": "c", "epochs": 3})
Traceback (most recent call last):
...
genrekit.errors.ConfigError: unknown training settings: ['epochs']; known: ...
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..models.head import HeadConfig

CLASS_BALANCE = ("auto", "weight", "sample", "none")
UNEVEN_RATIO = 1.5  # "auto" balances classes when the largest has this many times the segments of the smallest


def strict_from_dict(cls, data, section: str):
    """``cls(**data)`` for a dataclass, refusing unknown keys and values of the wrong kind."""
    if data is None:
        return cls()
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{section} must be a mapping of settings, not {type(data).__name__}")
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown {section} settings: {unknown}; known: {known}")
    try:
        return cls(**data)
    except TypeError as e:
        raise ConfigError(f"{section}: {e}") from None


@dataclass(frozen=True)
class SpecAugmentConfig:
    """SpecAugment masking: ``freq_masks`` bands of up to ``freq_width`` mel bins and
    ``time_masks`` stretches of up to ``time_width`` frames per segment (0: off)."""

    freq_masks: int = 0
    freq_width: int = 0
    time_masks: int = 0
    time_width: int = 0

    def __post_init__(self):
        for name, value in dataclasses.asdict(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"spec_augment.{name} must be an integer >= 0, not {value!r}")

    @property
    def enabled(self) -> bool:
        return bool(self.freq_masks or self.time_masks)


@dataclass
class TrainConfig:
    """Settings of one training run (a YAML file maps onto these names).

    The defaults are the seed's recipe: AdaBound at lr 1e-3 with a one-cycle schedule,
    10 epochs with the backbone frozen, then 10 unfrozen, batch 64.

    ``class_balance``: ``"weight"`` weights the loss by inverse class frequency,
    ``"sample"`` draws each epoch's segments with class-balanced probabilities,
    ``"none"`` trains on the data as it is, ``"auto"`` (default) weights the loss when
    the training split is uneven (largest class ≥ 1.5× the smallest, in segments).
    """

    cache: str = ""
    out: str = "runs/genrekit"
    backbone: str = "small_cnn"
    pretrained: bool = False
    weights: str | None = None
    head: HeadConfig = field(default_factory=HeadConfig)
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
    class_balance: str = "auto"
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    amp: bool = True                        # bf16 autocast and channels_last, CUDA only
    spec_augment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    mixup: float = 0.0                      # Beta(alpha, alpha); 0 = off
    progress: bool = True

    # Settings that may differ between a run and its resumption.
    RESUMABLE_CHANGES = ("out", "device", "workers", "progress")

    def __post_init__(self):
        self.head = strict_from_dict(HeadConfig, self.head, "head")
        self.spec_augment = strict_from_dict(SpecAugmentConfig, self.spec_augment, "spec_augment")
        for key in ("train_split", "valid_split"):
            if isinstance(getattr(self, key), str):
                setattr(self, key, [getattr(self, key)])
        self.check()

    @classmethod
    def from_file(cls, path, **overrides) -> TrainConfig:
        """Read a YAML recipe; ``overrides`` that are not None replace its values."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"{path}: not a readable YAML file ({first})") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a training config must be a YAML mapping of settings, "
                              f"not a {type(data).__name__}")
        try:
            return cls.from_dict({**data, **{k: v for k, v in overrides.items() if v is not None}})
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        return strict_from_dict(cls, data, "training")

    def check(self) -> None:
        """Raise :class:`~genrekit.errors.ConfigError` for values no run can use."""
        if self.optimizer not in ("adabound", "adamw"):
            raise ConfigError(f"optimizer must be 'adabound' or 'adamw', not {self.optimizer!r}")
        if self.class_balance not in CLASS_BALANCE:
            raise ConfigError(f"class_balance must be one of {CLASS_BALANCE}, not {self.class_balance!r}")
        for name in ("frozen_epochs", "unfrozen_epochs", "batch_size", "folds", "fold", "seed", "workers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{name} must be an integer, not {value!r}")
        if self.frozen_epochs < 0 or self.unfrozen_epochs < 0 or self.frozen_epochs + self.unfrozen_epochs == 0:
            raise ConfigError("need frozen_epochs + unfrozen_epochs > 0 (each >= 0)")
        if self.batch_size < 2:
            raise ConfigError("batch_size must be at least 2 (BatchNorm)")
        for name in ("lr", "final_lr"):
            if not isinstance(getattr(self, name), (int, float)) or not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be a positive number, not {getattr(self, name)!r}")
        if self.unfrozen_lr is not None and not self.unfrozen_lr > 0:
            raise ConfigError(f"unfrozen_lr must be positive, not {self.unfrozen_lr!r}")
        if not 0 < self.valid_fraction < 1:
            raise ConfigError(f"valid_fraction must be between 0 and 1, not {self.valid_fraction!r}")
        if not self.mixup >= 0:
            raise ConfigError(f"mixup must be >= 0, not {self.mixup!r}")
        if self.folds == 1 or self.folds < 0 or (self.folds > 1 and not 0 <= self.fold < self.folds):
            raise ConfigError(f"folds must be 0 (off) or >= 2, and fold in 0..folds-1; got folds {self.folds}, "
                              f"fold {self.fold}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def differences(self, other: TrainConfig) -> list[str]:
        """Settings that differ from ``other``, leaving out those a resumed run may change."""
        mine, theirs = self.to_dict(), other.to_dict()
        return sorted(k for k in mine if k not in self.RESUMABLE_CHANGES and mine[k] != theirs.get(k))
