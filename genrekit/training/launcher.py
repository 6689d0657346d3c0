"""Training on several processes, GPUs and nodes with PyTorch DDP.

:func:`launch` runs :func:`genrekit.training.run.run_training` once per process, each process
joined to one ``torch.distributed`` process group and its model wrapped in
:class:`~torch.nn.parallel.DistributedDataParallel`:

- under ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR`` set) or
  ``srun`` (``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID``, more than one task),
  this process joins the group the launcher describes;
- otherwise, on one node with ``devices > 1``, it starts ``devices`` local processes
  itself (:func:`torch.multiprocessing.spawn`, rendezvous on a free port of 127.0.0.1)
  and returns rank 0's result;
- ``nodes > 1`` without a launcher is an error that prints the torchrun/srun command.

Backend: NCCL on CUDA (process ``i`` of a node uses ``cuda:LOCAL_RANK``), Gloo on CPU.

Batch size
----------
``TrainConfig.batch_size`` is **per process**. One optimiser step sees the *global
batch* ``batch_size × world_size`` (``world_size = devices × nodes``): 64 on 8 GPUs is
a global batch of 512. Use the same global batch to reproduce a one-process run
(``batch_size 8`` on 2 processes ≈ ``batch_size 16`` on one).

What is the same as one process with the same global batch
------------------------------------------------------------
- Data order: every rank draws the same permutation from the run's seed and takes
  the ranks' strided shares of each global batch
  (:func:`genrekit.training.data.batches`); the last, smaller global batch of an epoch is
  trained on too, as in one process.
- Loss and gradients: each rank weights its mean loss by its share of the global
  batch, so DDP's gradient average is the mean over the global batch even when the
  last batch splits unevenly. The reported training loss is reduced over ranks.
- BatchNorm: converted so that training statistics come from the *global* batch —
  :class:`torch.nn.SyncBatchNorm` on CUDA; on CPU, where this torch's SyncBatchNorm
  refuses to run (it checks for a GPU, and its ``batch_norm_stats`` kernels have no
  CPU implementation), :class:`GlobalBatchNorm`, which all-reduces the per-channel
  sums (differentiably) over Gloo. Running statistics and ``state_dict`` keys are
  those of plain BatchNorm, so checkpoints load into an ordinary model.
- Validation: each rank predicts a slice of the validation segments, the
  probabilities are all-gathered, and every rank computes the same metrics from them.
- Checkpoints, metrics and plots are written by rank 0 only.

What differs: floating-point summation order (all-reduce, per-rank convolution
batches), so weights agree to about 1e-6 rather than bit for bit; and randomness.
Dropout and augmentation (SpecAugment, mixup) draw from a per-rank stream seeded from
``(seed, rank, phase, epoch)``, so ranks do not repeat each other's masks and a
resumed run draws what the uninterrupted one drew; one process draws them from the
run's single stream instead. Mixup mixes within a rank's share, with one ``lambda``
per rank. With augmentation on, the data order after the first epoch differs from
one process too (there, augmentation and shuffling share a stream).

Why plain ``torch.distributed`` and not Lightning Fabric
---------------------------------------------------------
Fabric would add a dependency (``lightning`` and its own pins on torch) for what is
a few dozen lines here: genrekit's own loop already handles the two phases
(re-wrapping the model when the backbone unfreezes), checkpoints, resume and the
best-model rule; the "sampler" is the strided slice of each global batch in
:func:`genrekit.training.data.batches`; and launcher detection (torchrun, SLURM) is
:func:`launcher_env`. Fabric's extra strategies (FSDP, DeepSpeed) are not needed for
models of 0.1–30 M parameters, and it would not remove the work that matters for
equivalence (global-batch BatchNorm on CPU, loss weighting of an uneven last batch,
sharded validation). Plain DDP keeps the run identical to one process and easy to
debug.

Examples
--------
>>> from genrekit.training import train
>>> result = train(config, devices=4)  # doctest: +SKIP
>>> # or, on each of 2 nodes:  torchrun --nnodes 2 --nproc_per_node 8 ... -m genrekit train ... --devices 8 --nodes 2
"""
from __future__ import annotations

import gc
import os
import re
import shlex
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from ..errors import CheckpointError, ConfigError, GenrekitError
from .run import BEST, LAST, TrainResult, check_run_folder, run_training

DOCS = "docs/distributed-training.md"


class DistributedTrainingError(GenrekitError):
    """A training process failed or could not join the process group."""


@dataclass(frozen=True)
class Rendezvous:
    """Where this process sits in the job and how it finds the others."""

    rank: int
    world_size: int
    local_rank: int
    init_method: str
    launcher: str  # "torchrun", "slurm" or "spawn"




def launch(config, devices: int = 1, nodes: int = 1, resume: bool = False, overwrite: bool = False):
    """Train with DDP on ``devices`` processes per node and ``nodes`` nodes.

    Parameters
    ----------
    config : genrekit.training.TrainConfig
        The run; ``config.batch_size`` is per process (global batch =
        ``batch_size × devices × nodes``).
    devices : int
        Processes (GPUs) per node.
    nodes : int
        Nodes; more than one needs ``torchrun`` or ``srun`` to start the processes.
    resume : bool
        Continue from ``<out>/last.safetensors``, which every node must be able to read.
    overwrite : bool
        Start again in a folder that holds a run.

    Returns
    -------
    genrekit.training.run.TrainResult
        Rank 0's result (on every rank under a launcher, in the calling process when
        this function spawned the processes).

    Raises
    ------
    ConfigError
        ``nodes > 1`` without a launcher, or ``devices × nodes`` not the launcher's
        world size, or no device for a process.
    DistributedTrainingError
        A training process failed.
    """
    if devices < 1 or nodes < 1:
        raise ConfigError(f"devices and nodes must be at least 1, not {devices} and {nodes}")
    env = launcher_env()
    if env is not None:
        if env.world_size != devices * nodes:
            raise ConfigError(f"{env.launcher} started {env.world_size} processes, but devices {devices} × nodes "
                              f"{nodes} = {devices * nodes}; pass --devices/--nodes matching the launcher (see {DOCS})")
        return _run_rank(config, resume, overwrite, env)
    if nodes > 1:
        raise ConfigError(_needs_launcher_message(devices, nodes))
    if devices == 1:
        return run_training(config, resume=resume, overwrite=overwrite)
    return _spawn(config, devices, resume, overwrite)


def launcher_env(environ=None) -> Rendezvous | None:
    """The rendezvous torchrun or SLURM set up for this process, or None without a launcher.

    ``torchrun`` wins over SLURM (torchrun inside an allocation). A SLURM job step with
    one task is not a launcher (``genrekit train --devices N`` inside ``sbatch`` spawns).
    """
    env = os.environ if environ is None else environ
    if all(k in env for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")):
        return Rendezvous(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"]), "env://", "torchrun")
    if all(k in env for k in ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")) and int(env["SLURM_NTASKS"]) > 1:
        addr = env.get("MASTER_ADDR") or (first_host(env["SLURM_NODELIST"]) if env.get("SLURM_NODELIST") else None)
        if not addr:
            raise ConfigError("under srun, set MASTER_ADDR (or SLURM_NODELIST) to the first node's host name")
        port = int(env.get("MASTER_PORT") or 20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000)
        return Rendezvous(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env["SLURM_LOCALID"]),
                          f"tcp://{addr}:{port}", "slurm")
    return None


def first_host(nodelist: str) -> str:
    """First host of a SLURM node list: ``"gpu[07-09,12],cpu1"`` → ``"gpu07"``.

    Examples
    --------
    >>> first_host("node[003-004,9]-ib,login1")
    'node003-ib'
    """
    first = re.split(r",(?![^\[]*\])", nodelist.strip())[0]
    return re.sub(r"\[([^\]]*)\]", lambda m: re.split(r"[,-]", m.group(1))[0], first)


def _needs_launcher_message(devices: int, nodes: int) -> str:
    from_cli = Path(sys.argv[0]).name in ("genrekit", "__main__.py") and sys.argv[1:2] == ["train"]
    args = sys.argv[1:] if from_cli else ["train", "--config", "CONFIG.yaml", "--devices", str(devices),
                                          "--nodes", str(nodes)]
    args = " ".join(shlex.quote(a) for a in args)
    return (f"--nodes {nodes}: processes on other nodes must be started by a launcher. Run on every node:\n"
            f"  torchrun --nnodes {nodes} --nproc_per_node {devices} --rdzv_backend c10d "
            f"--rdzv_endpoint FIRST_NODE_HOST:29500 --rdzv_id JOB_ID -m genrekit {args}\n"
            f"or under SLURM (one task per device):\n"
            f"  srun --nodes {nodes} --ntasks-per-node {devices} --kill-on-bad-exit=1 python -m genrekit {args}\n"
            f"(see {DOCS})")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(config, devices: int, resume: bool, overwrite: bool):
    import torch.multiprocessing as mp

    from ..cache import FeatureCache

    config.check()
    FeatureCache(config.cache)  # a missing cache, a bad device or run folder fails here, not in every process
    check_run_folder(Path(config.out), config, resume, overwrite)
    rank_device(config.device, 0)
    if _wants_cuda(config.device) and torch.cuda.device_count() < devices:
        raise ConfigError(f"--devices {devices}, but {torch.cuda.device_count()} CUDA device(s) visible; "
                          f"use --devices {torch.cuda.device_count()} or device: cpu")
    context = mp.spawn(_spawned_worker, args=(free_port(), devices, config, resume, overwrite), nprocs=devices,
                       join=False)
    try:
        while not context.join():
            pass
    except KeyboardInterrupt:
        _stop_workers(context.processes)
        raise
    except mp.ProcessRaisedException as e:
        last = e.msg.strip().splitlines()[-1] if e.msg.strip() else "unknown error"
        raise DistributedTrainingError(f"training process {e.error_index} of {devices} failed: {last}") from e
    except mp.ProcessExitedException as e:
        how = (f"was killed by {e.signal_name} (SIGKILL: out of memory?)" if e.signal_name else
               f"exited with code {e.exit_code} (see its output above; a script that calls launch() "
               f"needs an `if __name__ == '__main__':` guard)")
        raise DistributedTrainingError(f"training process {e.error_index} of {devices} {how}") from e
    return _result_from_folder(Path(config.out))


def _stop_workers(processes, grace: float = 10.0) -> None:
    """Stop the spawned processes after this one was interrupted. A terminal's Ctrl-C reached them
    too and they are leaving; a SIGINT sent to this process alone (``kill -INT PID``, a job
    supervisor) did not, and they would train on to the end while the command says "interrupted".
    SIGINT first (a worker leaves the DDP group cleanly; checkpoints are written atomically), then SIGTERM,
    then SIGKILL."""
    import signal
    import time

    def wait(seconds: float) -> list:
        deadline = time.monotonic() + seconds
        for p in processes:
            p.join(max(0.0, deadline - time.monotonic()))
        return [p for p in processes if p.is_alive()]

    alive = wait(2.0)
    for p in alive:
        os.kill(p.pid, signal.SIGINT)
    alive = wait(grace)
    for p in alive:
        p.terminate()
    for p in wait(grace):
        p.kill()
        p.join()


def _spawned_worker(local_rank: int, port: int, world_size: int, config, resume: bool, overwrite: bool):
    """One process started by :func:`_spawn` (module level so that it pickles)."""
    os.environ.update(RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(world_size))
    if not _wants_cuda(config.device) and "OMP_NUM_THREADS" not in os.environ:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        torch.set_num_threads(max(1, cores // world_size))
    _run_rank(config, resume, overwrite,
              Rendezvous(local_rank, world_size, local_rank, f"tcp://127.0.0.1:{port}", "spawn"))


def _result_from_folder(out: Path):
    from ..checkpoint import read_metadata
    from ..io import read_json

    history = read_json(out / "metrics.json") if (out / "metrics.json").is_file() else []
    best = read_metadata(out / BEST)["metrics"] if (out / BEST).is_file() else {}
    return TrainResult(out, out / BEST, history, best)


# ---------------------------------------------------------------- one rank


def _run_rank(config, resume: bool, overwrite: bool, rdzv: Rendezvous):
    """Join the group, train, hand every rank rank 0's result, leave the group (also on error)."""
    device = rank_device(config.device, rdzv.local_rank)
    owns_group = not dist.is_initialized()
    if owns_group:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method=rdzv.init_method, rank=rdzv.rank, world_size=rdzv.world_size,
                                **({"device_id": device} if device.type == "cuda" else {}))
    try:
        rank, world_size = dist.get_rank(), dist.get_world_size()
        if resume:
            _check_resume_visible(Path(config.out))
        dist.barrier()
        result = run_training(config, resume, overwrite, rank, world_size, device)
        shared = [(result.history, result.best_metrics) if rank == 0 else None]
        dist.broadcast_object_list(shared, src=0)
        # A rank that tears gloo down while another still reads from it can abort the other
        # ("terminate called without an active exception"): leave together.
        dist.barrier()
        return TrainResult(result.out, result.best_checkpoint, *shared[0])
    finally:
        if owns_group and dist.is_initialized():
            # The DDP wrapper can outlive training in a reference cycle (seen on rank 0); freed later,
            # after the group is gone, its reducer's teardown could abort the process at exit
            # ("terminate called without an active exception", 3 of 80 two-rank runs on a busy CPU).
            gc.collect()
            dist.destroy_process_group()


def _wants_cuda(name: str) -> bool:
    return name.startswith("cuda") or (name == "auto" and torch.cuda.is_available())


def rank_device(name: str, local_rank: int) -> torch.device:
    """The device of the process with ``local_rank`` on its node: ``cuda:LOCAL_RANK`` or the CPU.

    With a single visible GPU (SLURM ``--gpus-per-task=1``) every process uses ``cuda:0``.
    """
    if not _wants_cuda(name):
        if name not in ("cpu", "auto"):
            raise ConfigError(f"distributed training runs on cpu (gloo) or cuda (nccl), not device {name!r}")
        return torch.device("cpu")
    if name not in ("cuda", "auto"):
        raise ConfigError(f"with --devices/--nodes each process uses cuda:LOCAL_RANK; set device to cuda or auto, "
                          f"not {name!r}")
    if not torch.cuda.is_available():
        raise ConfigError("device cuda asked for, but no CUDA device is available")
    count = torch.cuda.device_count()
    index = 0 if count == 1 else local_rank
    if index >= count:
        raise ConfigError(f"process with local rank {local_rank} has no GPU: {count} visible on {socket.gethostname()}")
    return torch.device("cuda", index)


def _check_resume_visible(out: Path) -> None:
    """Every rank reads ``last.safetensors`` on resume: stop on all ranks if some node cannot see it."""
    seen = [None] * dist.get_world_size()
    dist.all_gather_object(seen, ((out / LAST).is_file(), socket.gethostname()))
    missing = sorted({host for ok, host in seen if not ok})
    if missing:
        raise CheckpointError(f"--resume: {out / LAST} is not readable on {', '.join(missing)}; "
                              f"put the run folder (out) on storage that every node mounts at the same path")


__all__ = ["launch", "launcher_env", "first_host", "free_port", "rank_device", "Rendezvous",
           "DistributedTrainingError"]
