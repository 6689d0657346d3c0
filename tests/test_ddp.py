"""DDP training (genrekit.training.launcher and .dist): two CPU processes (gloo) train like one with the same global batch."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from genrekit.cache import FeatureCache
from genrekit.checkpoint import load_checkpoint, model_from_checkpoint
from genrekit.errors import CheckpointError, ConfigError
from genrekit.models import HeadConfig, ModelConfig, build_model
from genrekit.models.backbones import SmallCNN
from genrekit.models.head import fastai_head
from genrekit.training import TrainConfig, train
from genrekit.training import dist as ddp_ops
from genrekit.training import launcher as ddp_launch
from genrekit.training.data import batches
from genrekit.training.loop import predict_segments

REPO = Path(__file__).resolve().parents[1]
LAUNCHER_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID", "SLURM_NTASKS",
                 "SLURM_LOCALID", "SLURM_NODELIST")
NO_DROPOUT = {"dropout_hidden": 0, "dropout_out": 0}


def _config(cache, out, **kw):
    settings = dict(backbone="small_cnn", frozen_epochs=1, unfrozen_epochs=1, head=NO_DROPOUT, device="cpu",
                    progress=False)
    return TrainConfig(cache=str(cache), out=str(out), **{**settings, **kw})


@pytest.fixture
def no_launcher(monkeypatch):
    for key in LAUNCHER_KEYS:
        monkeypatch.delenv(key, raising=False)


# ---------------------------------------------------------------- no processes


@pytest.mark.parametrize("n, batch_size, world_size", [(80, 7, 2), (15, 3, 2), (14, 2, 3), (16, 4, 4)])
def test_ranks_split_every_global_batch_of_one_process(n, batch_size, world_size):
    one = list(batches(n, batch_size * world_size, True, torch.Generator().manual_seed(3)))
    ranks = [list(batches(n, batch_size, True, torch.Generator().manual_seed(3), r, world_size))
             for r in range(world_size)]
    # A last global batch smaller than the world is skipped (every rank needs a sample); 2 ranks never skip more.
    kept = [b for b in one if len(b) >= world_size]
    assert len(kept) == len(one) or world_size > 2
    assert [len(r) for r in ranks] == [len(kept)] * world_size  # every rank takes every step
    for step, batch in enumerate(kept):
        shares = [r[step] for r in ranks]
        assert sorted(torch.cat(shares).tolist()) == sorted(batch.tolist())
        assert max(map(len, shares)) - min(map(len, shares)) <= 1 and min(map(len, shares)) >= 1


def test_launcher_detection_torchrun_slurm_and_none():
    assert ddp_launch.launcher_env({}) is None
    tr = ddp_launch.launcher_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "n0", "MASTER_PORT": "1"})
    assert (tr.rank, tr.world_size, tr.local_rank, tr.init_method, tr.launcher) == (3, 8, 1, "env://", "torchrun")
    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_NODELIST": "gpu[07-08]",
             "SLURM_JOB_ID": "1234"}
    s = ddp_launch.launcher_env(slurm)
    assert (s.rank, s.world_size, s.local_rank, s.launcher, s.init_method) == (5, 8, 1, "slurm", "tcp://gpu07:21234")
    assert ddp_launch.launcher_env({**slurm, "MASTER_ADDR": "head", "MASTER_PORT": "29400"}).init_method == "tcp://head:29400"
    assert ddp_launch.launcher_env({**slurm, "SLURM_NTASKS": "1"}) is None  # one sbatch task: genrekit spawns itself
    with pytest.raises(ConfigError, match="MASTER_ADDR"):
        ddp_launch.launcher_env({k: v for k, v in slurm.items() if k != "SLURM_NODELIST"})
    assert ddp_launch.first_host("node[003-004,9]-ib,login1") == "node003-ib" and ddp_launch.first_host("a1,b2") == "a1"


def test_nodes_without_launcher_and_a_wrong_world_size_are_clear_errors(tmp_path, monkeypatch, no_launcher):
    config = TrainConfig(cache=str(tmp_path), out=str(tmp_path / "run"))
    monkeypatch.setattr(sys, "argv", ["genrekit", "train", "--config", "r.yaml", "--devices", "4", "--nodes", "2"])
    with pytest.raises(ConfigError) as e:
        ddp_launch.launch(config, devices=4, nodes=2)
    assert ("torchrun --nnodes 2 --nproc_per_node 4 --rdzv_backend c10d --rdzv_endpoint FIRST_NODE_HOST:29500 "
            "--rdzv_id JOB_ID -m genrekit train --config r.yaml --devices 4 --nodes 2") in str(e.value)
    assert "srun --nodes 2 --ntasks-per-node 4" in str(e.value)
    monkeypatch.setenv("RANK", "0"), monkeypatch.setenv("WORLD_SIZE", "4"), monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    with pytest.raises(ConfigError, match="torchrun started 4 processes, but devices 2 × nodes 1 = 2"):
        ddp_launch.launch(config, devices=2)


def test_global_batchnorm_conversion_keeps_the_checkpoint_format():
    torch.manual_seed(0)
    model = build_model(ModelConfig("small_cnn", 3, HeadConfig(**NO_DROPOUT)))
    plain = {k: v.clone() for k, v in model.state_dict().items()}
    converted = ddp_ops.sync_batchnorm(model, torch.device("cpu"))
    assert sum(isinstance(m, ddp_ops.GlobalBatchNorm) for m in converted.modules()) == 6  # 4 in the CNN, 2 in the head
    assert not any(type(m) in (nn.BatchNorm1d, nn.BatchNorm2d) for m in converted.modules())
    assert converted.state_dict().keys() == plain.keys()
    x = torch.randn(4, 32, 24)
    converted.train()
    out = converted(x)  # no process group: plain BatchNorm
    reference = build_model(ModelConfig("small_cnn", 3, HeadConfig(**NO_DROPOUT)))
    reference.load_state_dict(plain)
    reference.train()
    assert torch.equal(out, reference(x))
    assert all(torch.equal(a, b) for a, b in zip(converted.state_dict().values(), reference.state_dict().values()))


# ---------------------------------------------------------------- two processes


def _collectives_worker(rank: int, port: int, out: str):
    """One float64 step per rank vs one process on the same global batch; sharded prediction; resume check."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        g = torch.Generator().manual_seed(1)
        n, batch_size = 15, 3  # global batches of 6, 6, 3: the last one splits 2 + 1
        x, y = torch.randn(n, 1, 32, 24, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)

        def model():
            torch.manual_seed(0)
            return nn.Sequential(SmallCNN(), fastai_head(128, 3, HeadConfig(**NO_DROPOUT))).double().train()

        net = DistributedDataParallel(ddp_ops.sync_batchnorm(model(), torch.device("cpu")))
        steps = list(batches(n, batch_size, True, torch.Generator().manual_seed(5), rank, 2))
        for step, idx in enumerate(steps):  # the weighting train_epoch uses
            net.zero_grad()
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            (loss * (len(idx) * 2 / min(6, n - step * 6))).backward()
        one = model()
        for idx in batches(n, 2 * batch_size, True, torch.Generator().manual_seed(5)):
            one.zero_grad()
            nn.functional.cross_entropy(one(x[idx]), y[idx]).backward()
        grad_diff = max(((a.grad - b.grad).abs().max() / a.grad.abs().max()).item()
                        for a, b in zip(one.parameters(), net.module.parameters()))
        buffer_diff = max((a - b).abs().max().item() for a, b in zip(one.buffers(), net.module.buffers()))

        torch.manual_seed(0)
        genre_net = build_model(ModelConfig("small_cnn", 3)).eval()
        segments = torch.randn(15, 32, 24)
        sharded = ddp_ops.predict_sharded(genre_net, segments, torch.device("cpu"), rank, 2)
        alone = predict_segments(genre_net, segments, torch.device("cpu"))

        folder = Path(out) / f"run{rank}"  # only rank 0's folder holds last.safetensors
        folder.mkdir()
        if rank == 0:
            (folder / "last.safetensors").write_bytes(b"x")
        try:
            ddp_launch._check_resume_visible(folder)
            resume_error = None
        except CheckpointError as e:
            resume_error = str(e)
        (Path(out) / f"rank{rank}.json").write_text(json.dumps({
            "last_share": len(steps[-1]), "grad_diff": grad_diff, "buffer_diff": buffer_diff,
            "sharded": np.asarray(sharded).tolist(), "alone": np.asarray(alone).tolist(), "resume_error": resume_error}))
        dist.barrier()  # no rank tears gloo down while the other still talks to it (SIGABRT in CI otherwise)
    finally:
        dist.destroy_process_group()


def test_global_batchnorm_and_uneven_last_batch_give_one_process_gradients(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_collectives_worker, args=(ddp_launch.free_port(), str(tmp_path)), nprocs=2)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert (r0["last_share"], r1["last_share"]) == (2, 1)
    # In float64 the maths is exact: BatchNorm over the global batch, DDP's mean of weighted rank losses.
    assert r0["grad_diff"] < 1e-9 and r0["buffer_diff"] < 1e-12, (r0["grad_diff"], r0["buffer_diff"])
    np.testing.assert_allclose(r0["sharded"], r0["alone"], atol=1e-6)
    assert np.array_equal(r0["sharded"], r1["sharded"])  # the same validation numbers on every rank
    for r in (r0, r1):  # rank 1 cannot see last.safetensors: both ranks stop with the same clear error
        assert f"last.safetensors is not readable on {socket.gethostname()};" in r["resume_error"]


def _audited_worker(local_rank: int, port: int, world_size: int, config, resume: bool, overwrite: bool):
    """launch()'s worker, logging every write inside the run folder to AUDIT/rank<N>.log."""
    out = os.path.realpath(config.out)
    log = open(os.path.join(os.environ["GENREKIT_TEST_AUDIT"], f"rank{local_rank}.log"), "a")
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def hook(event, args):
        if event == "open":
            mode, flags = args[1], args[2] or 0
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(flags & write_flags)
            paths = [args[0]] if writes else []
        elif event in ("os.rename", "os.mkdir", "os.remove", "os.rmdir", "os.symlink"):
            paths = args[:2] if event in ("os.rename", "os.symlink") else args[:1]
        else:
            return
        for path in paths:
            if isinstance(path, (str, bytes, os.PathLike)) and os.path.realpath(os.fsdecode(path)).startswith(out):
                log.write(f"{event} {os.fsdecode(path)}\n")
                log.flush()

    sys.addaudithook(hook)
    ddp_launch._spawned_worker(local_rank, port, world_size, config, resume, overwrite)


def test_two_processes_train_like_one_with_the_same_global_batch(tiny_cache, tmp_path, monkeypatch, no_launcher):
    # 80 training segments: 5 global batches of 14 and one of 10 (5 + 5 on two ranks) per epoch
    one = train(_config(tiny_cache, tmp_path / "one", batch_size=14))
    monkeypatch.setenv("GENREKIT_TEST_AUDIT", str(tmp_path))
    monkeypatch.setattr(ddp_launch, "_spawned_worker", _audited_worker)
    two = ddp_launch.launch(_config(tiny_cache, tmp_path / "two", batch_size=7), devices=2)

    assert two.best_checkpoint == tmp_path / "two" / "best.safetensors"
    assert two.best_metrics == load_checkpoint(two.best_checkpoint)["metrics"]
    assert [h["phase"] for h in two.history] == ["frozen", "unfrozen"]
    rank0 = (tmp_path / "rank0.log").read_text()
    assert "best.safetensors" in rank0 and "last.safetensors" in rank0 and "metrics.json" in rank0
    assert (tmp_path / "rank1.log").read_text() == ""  # rank 1 wrote nothing in the run folder

    a = load_checkpoint(tmp_path / "one" / "last.safetensors")["state_dict"]
    b = load_checkpoint(tmp_path / "two" / "last.safetensors")["state_dict"]
    assert a.keys() == b.keys()
    steps = {k: (int(a[k]), int(b[k])) for k in a if k.endswith("num_batches_tracked")}
    assert all(x == y for x, y in steps.values()), steps  # the same optimiser steps (unfrozen phase: 6)
    weight_diff = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
    # measured 3.5e-3 (a BatchNorm running variance; parameters 8e-4): float32 noise through AdaBound.
    # Per-process BatchNorm gives 0.28, dropping the last global batch 2.0.
    assert weight_diff < 1e-2, weight_diff

    for h1, h2 in zip(one.history, two.history):
        assert h1["valid_track_accuracy"] == h2["valid_track_accuracy"]
        assert h1["valid_segment_accuracy"] == h2["valid_segment_accuracy"]
        assert h1["lr"] == pytest.approx(h2["lr"], rel=1e-9)
    frozen1, frozen2 = one.history[0], two.history[0]
    assert frozen2["train_loss"] == pytest.approx(frozen1["train_loss"], rel=1e-4)
    assert frozen2["valid_loss"] == pytest.approx(frozen1["valid_loss"], rel=1e-4)
    assert two.history[1]["train_loss"] == pytest.approx(one.history[1]["train_loss"], rel=2e-2)

    x, _, _ = FeatureCache(tiny_cache).segments("valid", ["hiphop", "rock"])
    x = torch.from_numpy(np.asarray(x))
    for name in ("best.safetensors", "last.safetensors"):
        p1, p2 = (predict_segments(model_from_checkpoint(load_checkpoint(tmp_path / run / name)), x,
                                   torch.device("cpu")) for run in ("one", "two"))
        assert np.array_equal(p1.argmax(1), p2.argmax(1)), name
        np.testing.assert_allclose(p1, p2, atol=2e-2, err_msg=name)


def _sleeping_worker(local_rank: int, port: int, world_size: int, config, resume: bool, overwrite: bool):
    """launch()'s worker, standing in for a long training: says it is up, then waits."""
    Path(os.environ["GENREKIT_TEST_PIDS"], f"rank{local_rank}.pid").write_text(str(os.getpid()))
    time.sleep(60)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_an_interrupt_of_the_launching_process_alone_stops_the_workers(tiny_cache, tmp_path, monkeypatch,
                                                                       no_launcher):
    # A terminal's Ctrl-C reaches every process of the group; `kill -INT PID` or a job supervisor only the
    # launching one. Its workers must not train on after the command said "interrupted".
    monkeypatch.setenv("GENREKIT_TEST_PIDS", str(tmp_path))
    monkeypatch.setattr(ddp_launch, "_spawned_worker", _sleeping_worker)
    main_thread = threading.main_thread().ident

    def interrupt_when_up():
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("rank*.pid"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        signal.pthread_kill(main_thread, signal.SIGINT)

    threading.Thread(target=interrupt_when_up, daemon=True).start()
    pids = []
    try:
        with pytest.raises(KeyboardInterrupt):
            ddp_launch._spawn(_config(tiny_cache, tmp_path / "run"), 2, False, False)
        pids = [int(p.read_text()) for p in tmp_path.glob("rank*.pid")]
        assert len(pids) == 2
        assert not [pid for pid in pids if _alive(pid)]  # stopped and reaped before the interrupt goes on
    finally:
        for pid in pids or [int(p.read_text()) for p in tmp_path.glob("rank*.pid")]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("devices", [["--devices", "2"], []], ids=["devices-2", "launcher-decides"])
def test_torchrun_runs_the_cli_on_two_processes(tiny_cache, tmp_path, devices):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed beside python")
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_KEYS}
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "genrekit", "train",
           "--cache", str(tiny_cache), "--backbone", "small_cnn", "--epochs", "1", "0", "--batch-size", "8",
           "--device", "cpu", "--quiet", "--out", str(out), *devices]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=150, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.count("frozen epoch 1: train loss") == 1  # epochs are reported by rank 0 only
    assert proc.stdout.count("checkpoint: ") == 1  # and so is the summary
    assert "train: 8 tracks" in proc.stdout  # one DDP run over the cache, not two separate runs
    payload = load_checkpoint(out / "best.safetensors")
    assert payload["train_config"]["batch_size"] == 8 and len(payload["history"]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["best.safetensors", "config.json", "last.safetensors", "metrics.csv",
                                                     "metrics.json", "training_curves.png"]
