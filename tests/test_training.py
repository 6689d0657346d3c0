"""Training: the recipe's parts (head, freezing, one-cycle, AdaBound), checkpoints, resume, LR finder."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genrekit.cache import FeatureCache
from genrekit.checkpoint import load_checkpoint, model_from_checkpoint
from genrekit.cli import main
from genrekit.errors import ConfigError, LeakageError
from genrekit.models import ModelConfig, build_model, list_backbones
from genrekit.models.head import AdaptiveConcatPool2d, fastai_head
from genrekit.training import TrainConfig, train
from genrekit.training.data import load_segments, split_tracks
from genrekit.training.loop import make_optimizer, make_scheduler, predict_segments


def test_registry_has_the_seed_backbones():
    names = set(list_backbones())
    assert {"densenet121", "densenet161", "densenet201", "efficientnet_b0", "efficientnet_b3",
            "tf_efficientnet_lite0", "small_cnn"} <= names


def test_fastai_head_layers_and_concat_pool():
    head = fastai_head(8, 3)
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["AdaptiveConcatPool2d", "BatchNorm1d", "Dropout", "Linear", "ReLU", "BatchNorm1d", "Dropout", "Linear"]
    x = torch.randn(2, 8, 3, 5)
    pooled = AdaptiveConcatPool2d()(x)
    assert torch.allclose(pooled[:, :8], x.amax(dim=(2, 3))) and torch.allclose(pooled[:, 8:], x.mean(dim=(2, 3)))


def test_pretrained_lite0_loads_real_imagenet_weights():
    random_model = build_model(ModelConfig("tf_efficientnet_lite0", 4))
    pretrained = build_model(ModelConfig("tf_efficientnet_lite0", 4), pretrained=True)
    stem = pretrained.backbone.model.conv_stem.weight
    assert stem.shape[1] == 1  # RGB stem summed to one channel
    assert not torch.allclose(stem, random_model.backbone.model.conv_stem.weight)
    # ImageNet BatchNorm statistics are far from their initial values (0 / 1)
    assert pretrained.backbone.model.bn1.running_var.std() > 0.1


def test_pretrained_offline_without_file_fails_at_once():
    import time

    start = time.perf_counter()
    with pytest.raises(ConfigError, match="offline"):
        build_model(ModelConfig("densenet121", 4), pretrained=True)
    assert time.perf_counter() - start < 5


def test_freezing_freezes_and_unfreezing_trains_all():
    torch.manual_seed(0)
    model = build_model(ModelConfig("small_cnn", 3))
    x, y = torch.randn(8, 64, 64), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = {k: v.clone() for k, v in model.head.state_dict().items()}
    model.freeze_backbone(True)
    model.train()
    opt = make_optimizer(model.parameters(), TrainConfig(), 1e-2)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    opt.step()
    for k, v in model.backbone.state_dict().items():  # weights and BatchNorm statistics
        assert torch.equal(v, before[k]), k
    assert any(not torch.equal(v, head_before[k]) for k, v in model.head.state_dict().items())
    model.freeze_backbone(False)
    model.train()
    opt = make_optimizer(model.parameters(), TrainConfig(), 1e-2)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    assert all(p.grad is not None for p in model.parameters())
    opt.step()
    changed = [k for k, v in model.backbone.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) == len([k for k in before if not k.endswith("num_batches_tracked")]) + \
        len([k for k in before if k.endswith("num_batches_tracked")])


def test_one_cycle_schedule_shape():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = make_optimizer([param], TrainConfig(optimizer="adamw"), 1e-3)
    sched = make_scheduler(opt, 1e-3, 100)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1e-3 / 25)
    assert max(lrs) == pytest.approx(1e-3, rel=1e-3) and 20 <= int(np.argmax(lrs)) <= 26
    assert lrs[-1] < 1e-6 and lrs[-1] == pytest.approx(1e-3 / 1e5, rel=0.5)
    peak = int(np.argmax(lrs))
    assert all(a < b for a, b in zip(lrs[:peak], lrs[1:peak + 1]))  # warm-up rises
    assert all(a > b for a, b in zip(lrs[peak:-1], lrs[peak + 1:]))  # annealing falls


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5, 8])
def test_one_cycle_schedule_runs_for_a_few_steps(steps):
    # A tiny run (a few batches in one epoch) once ended in PyTorch's ZeroDivisionError at 4 steps.
    param = torch.nn.Parameter(torch.zeros(1))
    opt = make_optimizer([param], TrainConfig(optimizer="adamw"), 1e-3)
    sched = make_scheduler(opt, 1e-3, steps)
    for _ in range(steps):
        opt.step()
        sched.step()


def test_adabound_step_is_clipped_to_its_bounds():
    # A tiny constant gradient makes Adam's step lr/sqrt(v) huge: AdaBound clips it to the upper bound.
    config = TrainConfig(final_lr=0.1, weight_decay=0.0)
    param = torch.nn.Parameter(torch.zeros(1))
    opt = make_optimizer([param], config, 1e-3)
    gamma, g = 1e-3, 1e-8
    for t in range(1, 4):
        before = param.item()
        param.grad = torch.full((1,), g)
        opt.step()
        m_hat_free = g * (1 - 0.9 ** t)  # exp_avg (not bias-corrected) after t steps of constant g
        upper = 0.1 * (1 + 1 / (gamma * t))
        assert before - param.item() == pytest.approx(upper * m_hat_free, rel=1e-4)
    # A huge gradient makes Adam's step tiny: clipped to the lower bound.
    param2 = torch.nn.Parameter(torch.zeros(1))
    opt2 = make_optimizer([param2], config, 1e-3)
    param2.grad = torch.full((1,), 1e6)
    opt2.step()
    lower = 0.1 * (1 - 1 / (gamma * 1 + 1))
    assert -param2.item() == pytest.approx(lower * 1e6 * 0.1, rel=1e-4)


def test_loss_goes_down_on_real_segments(tiny_cache):
    cache = FeatureCache(tiny_cache)
    config = TrainConfig(cache=str(tiny_cache))
    train_tracks, _ = split_tracks(cache, config)
    data = load_segments(cache, train_tracks, cache.labels)
    torch.manual_seed(0)
    model = build_model(ModelConfig("small_cnn", 2, norm_mean=float(data.x.float().mean()), norm_std=float(data.x.float().std())))
    opt = make_optimizer(model.parameters(), config, 3e-3)
    model.train()
    x, y = data.x[::2], data.y[::2]  # both labels
    assert len(set(y.tolist())) == 2
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])


def test_split_with_shared_track_is_refused(tiny_cache):
    config = TrainConfig(cache=str(tiny_cache), train_split=["train", "valid"], valid_split=["valid"])
    with pytest.raises(LeakageError, match="share"):
        split_tracks(FeatureCache(tiny_cache), config)


def test_validation_is_carved_by_track_when_missing(tiny_cache):
    config = TrainConfig(cache=str(tiny_cache), valid_split=[], valid_fraction=0.3)
    train_tracks, valid_tracks = split_tracks(FeatureCache(tiny_cache), config)
    assert len(valid_tracks) >= 2 and not set(train_tracks.track_id) & set(valid_tracks.track_id)
    assert set(train_tracks.split) == {"train"}  # carved out of the training split only


def test_training_notes_say_validation_was_carved_and_labels_lack_tracks(tiny_cache):
    from genrekit.training.data import split_notes

    cache = FeatureCache(tiny_cache)
    config = TrainConfig(cache=str(tiny_cache), valid_split=["holdout"], labels=["hiphop", "jazz", "rock", "soul"])
    train_tracks, valid_tracks = split_tracks(cache, config)
    notes = split_notes(cache, config, train_tracks, valid_tracks)
    assert len(notes) == 2 and all("\n" not in n for n in notes)
    assert "no tracks in split(s) ['holdout']" in notes[0] and f"{len(valid_tracks)} of " in notes[0]
    assert "20 %" in notes[0]
    assert "['jazz', 'soul']" in notes[1] and "no training tracks" in notes[1]
    plain = TrainConfig(cache=str(tiny_cache))
    assert split_notes(cache, plain, *split_tracks(cache, plain)) == []


def test_train_prints_its_notes(tiny_cache, tmp_path, capsys):
    config = _config(tiny_cache, tmp_path, valid_split=[], labels=["hiphop", "jazz", "rock"], frozen_epochs=1,
                     unfrozen_epochs=1, batch_size=8)
    train(config)
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note: ")]
    assert len(notes) == 2 and "held out for validation" in notes[0] and "['jazz']" in notes[1]


def _config(cache, out, **kw):
    settings = dict(backbone="small_cnn", frozen_epochs=1, unfrozen_epochs=2, batch_size=16, progress=False)
    return TrainConfig(cache=str(cache), out=str(out), **{**settings, **kw})


def test_train_writes_checkpoint_metrics_and_plots(tiny_cache, tmp_path):
    result = train(_config(tiny_cache, tmp_path))
    assert [h["phase"] for h in result.history] == ["frozen", "unfrozen", "unfrozen"]
    for name in ("best.safetensors", "last.safetensors", "metrics.csv", "metrics.json", "training_curves.png", "config.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    payload = load_checkpoint(result.best_checkpoint)
    assert payload["labels"] == ["hiphop", "rock"]
    assert payload["feature_config"]["n_mels"] == 128 and payload["model_config"]["backbone"] == "small_cnn"
    assert payload["training_data"]["train"]["n_tracks"] == 8 and payload["training_data"]["valid"]["n_tracks"] == 4
    assert payload["metrics"]["valid_track_accuracy"] == max(h["valid_track_accuracy"] for h in result.history)
    assert len(payload["training_data"]["train_track_ids"]) == 8
    assert load_checkpoint(tmp_path / "last.safetensors")["metrics"] == result.history[-1]  # last: its own epoch


def test_checkpoint_round_trip_gives_same_predictions(tiny_checkpoint, tiny_cache):
    payload = load_checkpoint(tiny_checkpoint)
    cache = FeatureCache(tiny_cache)
    x, _, _ = cache.segments("valid", payload["labels"])
    x = torch.from_numpy(np.asarray(x))
    a = predict_segments(model_from_checkpoint(payload), x, torch.device("cpu"))
    b = predict_segments(model_from_checkpoint(load_checkpoint(tiny_checkpoint)), x, torch.device("cpu"))
    assert a.shape == (len(x), 2) and np.array_equal(a, b)


def test_training_is_deterministic_and_resume_continues(tiny_cache, tmp_path, monkeypatch):
    full = train(_config(tiny_cache, tmp_path / "full"))
    # Interrupt a second run after its second epoch, then resume it.
    import genrekit.training.run as training

    real_run_epoch, calls = training._run_epoch, {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_run_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "_run_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(_config(tiny_cache, tmp_path / "resumed"))
    assert len(load_checkpoint(tmp_path / "resumed" / "last.safetensors")["history"]) == 2
    monkeypatch.setattr(training, "_run_epoch", real_run_epoch)
    resumed = train(_config(tiny_cache, tmp_path / "resumed"), resume=True)
    assert len(resumed.history) == 3
    a = load_checkpoint(tmp_path / "full" / "last.safetensors")["state_dict"]
    b = load_checkpoint(tmp_path / "resumed" / "last.safetensors")["state_dict"]
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-5), key
    assert full.history[-1]["train_loss"] == pytest.approx(resumed.history[-1]["train_loss"], rel=1e-4)


def _range_test_curve(noisy_start: bool, seed: int = 0):
    """A range test's smoothed loss over 1e-7..10: flat at 2.3, falling to 0.4 around 1e-3, diverging past 1e-1;
    with ``noisy_start`` the first points fall sharply (the bias-corrected average of a few noisy batches)."""
    lrs = np.logspace(-7, 1, 100)
    x = np.log10(lrs)
    losses = 0.4 + 1.9 / (1 + np.exp(3 * (x + 3))) + np.where(x > -1, 2 * (x + 1) ** 2, 0)
    losses = losses + 0.01 * np.random.default_rng(seed).standard_normal(len(x))
    if noisy_start:
        losses[:4] = [3.6, 3.0, 2.6, 2.4]
    return lrs, losses


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("noisy_start", [True, False])
def test_lr_suggestion_is_on_the_descent_not_the_noisy_start(noisy_start, seed):
    from genrekit.training.lr_find import suggest_lr

    lrs, losses = _range_test_curve(noisy_start, seed)
    suggestion = suggest_lr(lrs, losses)
    assert 1e-4 <= suggestion <= 1e-2, suggestion  # on the descent, below the minimum's rate (~1e-1)
    assert suggestion in lrs


def test_lr_suggestion_of_a_short_or_flat_curve():
    from genrekit.training.lr_find import suggest_lr

    assert suggest_lr([1e-3, 1e-2], [1.0, 5.0]) == 1e-3
    lrs = np.logspace(-7, 1, 50)
    assert suggest_lr(lrs, np.full(50, 2.3)) in lrs


def test_lr_finder_plot_and_suggestion(tiny_cache, tmp_path):
    from genrekit.training.lr_find import lr_find

    png = tmp_path / "lr.png"
    result = lr_find(_config(tiny_cache, tmp_path, batch_size=8), png, num_iter=25, start_lr=1e-5, end_lr=1.0)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 1e-5 <= result.suggestion <= 1.0 and result.suggestion in result.lrs
    assert len(result.lrs) == len(result.losses) > 3


def test_config_file_and_overrides(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("cache: c\nbackbone: densenet121\nfrozen_epochs: 10\nunfrozen_epochs: 10\nlr: 0.001\n")
    config = TrainConfig.from_file(path, lr=0.01, backbone=None)
    assert config.backbone == "densenet121" and config.lr == 0.01 and config.optimizer == "adabound"
    path.write_text("cache: c\nlearning_rate: 1\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        TrainConfig.from_file(path)


def test_cli_train_and_lr_find(tiny_cache, tmp_path, capsys):
    from genrekit.cli import main

    assert main(["train", "--cache", str(tiny_cache), "--backbone", "small_cnn", "--epochs", "0", "1",
                 "--batch-size", "16", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert "valid track balanced accuracy" in capsys.readouterr().out
    assert main(["lr-find", "--cache", str(tiny_cache), "--backbone", "small_cnn", "--num-iter", "10",
                 "--plot", str(tmp_path / "lr.png")]) == 0
    assert "suggested lr" in capsys.readouterr().out
    assert main(["train", "--backbone", "small_cnn"]) == 1  # no cache: a clear error, not a traceback


def test_k_fold_validation_covers_every_track_once(tiny_cache):
    cache = FeatureCache(tiny_cache)
    seen = []
    for fold in range(3):
        config = TrainConfig(cache=str(tiny_cache), train_split=["train", "valid"], valid_split=[], folds=3, fold=fold)
        train_tracks, valid_tracks = split_tracks(cache, config)
        assert not set(train_tracks["track_id"]) & set(valid_tracks["track_id"])
        assert len(train_tracks) + len(valid_tracks) == 12
        seen += list(valid_tracks["track_id"])
    assert sorted(seen) == sorted(cache.tracks["track_id"])  # each track validated exactly once
    with pytest.raises(ConfigError):
        TrainConfig(cache=str(tiny_cache), folds=3, fold=3).check()


# ---------------------------------------------------------------- run folders and resume


def test_a_second_run_into_the_same_folder_is_refused_unless_asked(tiny_checkpoint, tiny_cache, capsys):
    out = tiny_checkpoint.parent
    before = (out / "best.safetensors").read_bytes()
    code = main(["train", "--cache", str(tiny_cache), "--out", str(out), "--backbone", "small_cnn", "--epochs", "1",
                 "0", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "already holds a training run" in err and "--resume" in err and "--overwrite" in err
    assert (out / "best.safetensors").read_bytes() == before


def test_overwrite_starts_again_and_keeps_other_files(tiny_cache, tmp_path):
    out = tmp_path / "run"
    train(_config(tiny_cache, out, unfrozen_epochs=0))
    (out / "my_notes.txt").write_text("keep")
    result = train(_config(tiny_cache, out, unfrozen_epochs=0, seed=1), overwrite=True)
    assert len(result.history) == 1 and load_checkpoint(out / "last.safetensors")["train_config"]["seed"] == 1
    assert (out / "my_notes.txt").read_text() == "keep"


def test_resume_with_other_settings_or_nothing_left_is_refused(tiny_checkpoint, tiny_cache, tmp_path, capsys):
    out = tiny_checkpoint.parent
    config_before = (out / "config.json").read_text()
    code = main(["train", "--cache", str(tiny_cache), "--out", str(out), "--backbone", "small_cnn", "--epochs", "3",
                 "3", "--batch-size", "16", "--resume", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "settings differ" in err and "frozen_epochs" in err
    code = main(["train", "--cache", str(tiny_cache), "--out", str(out), "--backbone", "small_cnn", "--epochs", "1",
                 "1", "--batch-size", "16", "--resume", "--quiet"])
    assert code == 1 and "already finished all 2 epochs" in capsys.readouterr().err
    assert (out / "config.json").read_text() == config_before  # nothing rewritten
    assert main(["train", "--cache", str(tiny_cache), "--out", str(tmp_path / "none"), "--resume", "--quiet"]) == 1
    assert "nothing to resume" in capsys.readouterr().err


# ---------------------------------------------------------------- class balance


def test_class_balance_weights_and_sampler():
    from genrekit.training.data import balanced_order, class_weights, resolve_class_balance

    y = torch.tensor([0] * 90 + [1] * 10)
    counts = torch.bincount(y, minlength=3)
    assert resolve_class_balance("auto", counts) == "weight"
    assert resolve_class_balance("auto", torch.tensor([50, 50, 0])) == "none"
    assert resolve_class_balance("sample", counts) == "sample"
    weights = class_weights(counts)
    assert weights[2] == 0 and float(weights[0] * 90) == pytest.approx(float(weights[1] * 10))
    order = balanced_order(y, 3, torch.Generator().manual_seed(0))
    drawn = torch.bincount(y[order], minlength=3)
    assert len(order) == 100 and abs(int(drawn[0]) - int(drawn[1])) < 25  # ~50/50 instead of 90/10
    assert torch.equal(order, balanced_order(y, 3, torch.Generator().manual_seed(0)))  # the same on every rank


@pytest.mark.parametrize("balance", ["weight", "sample"])
def test_class_balance_reaches_the_loss_and_the_checkpoint(tiny_cache, tmp_path, monkeypatch, balance):
    import genrekit.training.loop as loop

    seen = {}
    real = torch.nn.functional.cross_entropy

    def spy(logits, target, weight=None, **kw):
        seen["weight"] = weight
        return real(logits, target, weight=weight, **kw)

    monkeypatch.setattr(loop.nn.functional, "cross_entropy", spy)
    result = train(_config(tiny_cache, tmp_path / balance, unfrozen_epochs=0, class_balance=balance))
    assert (seen["weight"] is not None) == (balance == "weight")
    assert load_checkpoint(result.best_checkpoint)["training_data"]["class_balance"] == balance


def test_unknown_or_mistyped_settings_are_refused_when_read(tmp_path):
    bad = tmp_path / "bad.yaml"
    for text, match in [("head: {hiden: 3}", "unknown head settings"), ("spec_augment: {freq_masks: -1}", "freq_masks"),
                        ("class_balance: maybe", "class_balance"), ("lr: fast", "lr must be"),
                        ("- a\n- b", "YAML mapping"), ("a: [", "not a readable YAML"), ("cache: x\nepochs: 3", "epochs")]:
        bad.write_text(text)
        with pytest.raises(ConfigError, match=match):
            TrainConfig.from_file(bad)
    bad.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ConfigError, match="not a readable YAML"):
        TrainConfig.from_file(bad)
    assert issubclass(ConfigError, ValueError)
