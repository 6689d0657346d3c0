"""Training: the seed's recipe (fastai head, one-cycle, AdaBound, frozen then unfrozen), on one
process or several (DDP), and track-level transfer heads on pretrained musicnn features.

The modules form one-way layers: :mod:`~.config` ← :mod:`~.data` / :mod:`~.augment` ←
:mod:`~.loop` ← :mod:`~.dist` (collective operations) ← :mod:`~.run` (one run) ←
:mod:`~.launcher` (processes, torchrun, SLURM). Checkpoints are written through
:mod:`genrekit.checkpoint`.

Needs the ``train`` extra (``pip install 'genrekit[train]'``).

Examples
--------
>>> from genrekit.training import TrainConfig, train
>>> result = train(TrainConfig(cache="caches/gtzan", backbone="small_cnn", out="runs/demo"))  # doctest: +SKIP
>>> result.best_checkpoint  # doctest: +SKIP
PosixPath('runs/demo/best.safetensors')
"""
from __future__ import annotations

from .config import SpecAugmentConfig, TrainConfig
from .launcher import launch, launcher_env
from .run import BEST, LAST, TrainResult


def train(config: TrainConfig, devices: int = 1, nodes: int = 1, resume: bool = False,
          overwrite: bool = False) -> TrainResult:
    """Train ``config`` on ``devices`` processes per node and ``nodes`` nodes (DDP when more than one).

    Parameters
    ----------
    config : TrainConfig
        The recipe; ``batch_size`` is per process.
    devices, nodes : int
        Processes (GPUs) per node and nodes; under ``torchrun``/``srun`` they must
        match what the launcher started.
    resume : bool
        Continue the run in ``config.out`` with the same settings.
    overwrite : bool
        Start again in a folder that already holds a run.

    Returns
    -------
    TrainResult
        The run folder, the best checkpoint, the history and the best epoch's metrics.
    """
    return launch(config, devices=devices, nodes=nodes, resume=resume, overwrite=overwrite)


__all__ = ["train", "TrainConfig", "SpecAugmentConfig", "TrainResult", "launch", "launcher_env", "BEST", "LAST"]
