"""genrekit train: the two-phase recipe on a feature cache."""
from ._common import positive_float, positive_int

HELP = "train a model on a feature cache (frozen then unfrozen, one-cycle, AdaBound)"


def add_arguments(p):
    p.add_argument("--config", help="YAML recipe (see configs/); options below override it")
    add_training_overrides(p)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from OUT/last.safetensors "
                   "(same settings)")
    p.add_argument("--overwrite", action="store_true", help="start again in an --out folder that holds a run "
                   "(deletes only that run's files); for a transfer recipe, replace its model file")
    p.add_argument("--list-backbones", action="store_true", help="list the backbones, their input features and "
                   "where their pretrained weights come from, then exit")
    p.add_argument("--devices", type=positive_int, help="processes (GPUs) per node for DDP training "
                   "(default 1, or what torchrun/srun started)")
    p.add_argument("--nodes", type=positive_int, help="nodes for DDP training (with torchrun/SLURM)")


def add_training_overrides(p):
    p.add_argument("--cache", help="feature cache from genrekit prepare")
    p.add_argument("--backbone", help="backbone name (densenet121, tf_efficientnet_lite0, small_cnn, musicnn-msd, ...)")
    p.add_argument("--pretrained", action="store_true", default=None, help="start from pretrained backbone weights")
    p.add_argument("--weights", help="local backbone weights file (timm state dict)")
    p.add_argument("--epochs", type=int, nargs=2, metavar=("FROZEN", "UNFROZEN"), help="epochs per phase, e.g. 10 10")
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--lr", type=positive_float)
    p.add_argument("--optimizer", choices=["adabound", "adamw"])
    p.add_argument("--class-balance", choices=["auto", "weight", "sample", "none"],
                   help="class-weighted loss, class-balanced sampling or none; auto (default): weight when the "
                        "training split is uneven")
    p.add_argument("--seed", type=int)
    p.add_argument("--folds", type=int, metavar="K", help="validate on one fold of a K-fold split by artist/track "
                   "(when the cache has no validation split)")
    p.add_argument("--fold", type=int, metavar="I", help="which fold validates, 0..K-1 (with --folds)")
    p.add_argument("--out", help="run folder (checkpoints, metrics, plots)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 or auto (default)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def config_from_args(args):
    from ..errors import ConfigError
    from ..training import TrainConfig

    overrides = {"cache": args.cache, "backbone": args.backbone, "pretrained": args.pretrained, "weights": args.weights,
                 "batch_size": args.batch_size, "lr": args.lr, "optimizer": args.optimizer, "seed": args.seed,
                 "class_balance": args.class_balance,
                 "folds": args.folds, "fold": args.fold,
                 "out": args.out, "device": args.device, "progress": False if args.quiet else None}
    if args.epochs:
        overrides["frozen_epochs"], overrides["unfrozen_epochs"] = args.epochs
    if args.config:
        config = TrainConfig.from_file(args.config, **overrides)
    else:
        config = TrainConfig.from_dict({k: v for k, v in overrides.items() if v is not None})
    if not config.cache:
        raise ConfigError("no feature cache: give --cache or set cache: in the --config file")
    return config


def run(args) -> int:
    from ..extras import require

    require("torch", "train", "genrekit train")
    if args.list_backbones:
        from ..models import describe_backbones

        print(describe_backbones())
        return 0
    if args.config and _is_transfer_recipe(args.config):
        return _run_transfer(args)
    from ..training import launcher_env, train

    config = config_from_args(args)
    launcher = launcher_env()
    devices, nodes = args.devices, args.nodes
    if launcher is not None and devices is None and nodes is None:
        devices, nodes = launcher.world_size, 1  # torchrun/srun decided how many processes
    result = train(config, devices=devices or 1, nodes=nodes or 1, resume=args.resume, overwrite=args.overwrite)
    if launcher is not None and launcher.rank != 0:
        return 0
    best = result.best_metrics
    print(f"best: {best.get('phase')} epoch {best.get('epoch')}, valid track balanced accuracy "
          f"{best.get('valid_track_balanced_accuracy', float('nan')):.3f}, accuracy "
          f"{best.get('valid_track_accuracy', float('nan')):.3f}, segment accuracy "
          f"{best.get('valid_segment_accuracy', float('nan')):.3f}")
    print(f"checkpoint: {result.best_checkpoint}\nmetrics: {result.out / 'metrics.csv'}\n"
          f"curves: {result.out / 'training_curves.png'}")
    return 0


def _is_transfer_recipe(path) -> bool:
    """A recipe with ``kind: transfer`` trains a track head on musicnn features (genrekit.training.transfer)."""
    import yaml

    try:
        data = yaml.safe_load(open(path, encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return False  # TrainConfig.from_file reports the problem
    return isinstance(data, dict) and data.get("kind") == "transfer"


def _C_line(grid: list, cv: dict, head_C: float) -> str:
    """The recipe's fixed C, or what the inner CV chose in each fold and the C of the model's head."""
    if len(grid) == 1:
        return f"C fixed by the recipe: {grid[0]:g}"
    if "repeated" in cv:
        counts = cv["repeated"]["C_chosen"]
        chosen = (f"in the {sum(counts.values())} folds of {cv['repeated']['splits']} splits: "
                  + ", ".join(f"{c} ×{n}" for c, n in counts.items()))
    else:
        chosen = "in each fold: " + ", ".join(f"{c:g}" for c in cv["C_per_fold"])
    return f"C chosen by inner CV {chosen}; the model's head: C {head_C:g} (from {list(grid)})"


def _run_transfer(args) -> int:
    from pathlib import Path

    from ..errors import ConfigError
    from ..training.transfer import TransferConfig, train_transfer
    from ._common import prior_line, zero_shot_line

    ignored = [name for name in ("cache", "backbone", "epochs", "batch_size", "lr", "optimizer", "folds", "fold",
                                 "device", "resume") if getattr(args, name, None)]
    if ignored:
        raise ConfigError(f"{args.config} is a transfer recipe: --{ignored[0].replace('_', '-')} does not apply")
    config = TransferConfig.from_file(args.config)
    if args.out:
        config.out = args.out
    if Path(config.out).exists() and not args.overwrite:
        raise ConfigError(f"{config.out} exists: give --overwrite to replace that model file, or another --out")
    result = train_transfer(config, progress=not args.quiet)
    cv = result.cv
    first = f", first of {cv['repeated']['splits']} fold splits" if "repeated" in cv else ""
    print(f"CV ({result.metadata['cv_metrics']['cv_tracks']} tracks, {config.folds} artist-grouped folds{first}): "
          f"balanced accuracy {cv['balanced_accuracy']:.3f} [{cv['balanced_accuracy_ci'][0]:.2f}-"
          f"{cv['balanced_accuracy_ci'][1]:.2f}], macro-F1 {cv['macro_f1']:.3f}, accuracy {cv['accuracy']:.3f}")
    print("per-genre recall: " + ", ".join(f"{g} {m['recall']:.2f}" for g, m in cv["per_class"].items()
                                          if m["recall"] is not None))
    if "repeated" in cv:
        r = cv["repeated"]
        print(f"over {r['splits']} fold splits: balanced accuracy {r['balanced_accuracy_mean']:.3f} "
              f"(SD {r['balanced_accuracy_sd']:.3f}; {' '.join(f'{v:.3f}' for v in r['balanced_accuracy_per_split'])}), "
              f"macro-F1 {r['macro_f1_mean']:.3f}; per-genre recall pooled: "
              + ", ".join(f"{g} {m['recall']:.2f}" for g, m in r["per_class"].items() if m["recall"] is not None))
    print(f"calibration: ECE {cv['calibration']['ece_before']:.3f} before, {cv['calibration']['ece_after']:.3f} after")
    print(_C_line(config.head.C, cv, result.metadata["head"]["meta"]["C"]))
    if result.metadata["head"].get("prior"):
        prior = result.metadata["head"]["prior"]
        print(prior_line(prior["genre_tags"], prior["scale"]))
    if result.metadata["head"]["meta"].get("genres_without_tracks"):
        print(zero_shot_line(result.metadata["head"]["meta"]["genres_without_tracks"]))
    if result.detector:
        d = result.detector
        print(f"not music: CV detects {d['not_music_detected']:.3f} of {d['n_not_music']} generated clips, "
              f"false alarms on {d['music_false_alarms']:.3f} of {d['n_music']} music tracks "
              f"(threshold {d['threshold']:.3f})")
        if d.get("short"):
            s = d["short"]
            print(f"not music, files under {d['min_segments']} patches (per-patch detector): CV detects "
                  f"{s['not_music_detected']:.3f}, false alarms {s['music_false_alarms']:.3f} "
                  f"(threshold {s['threshold']:.3f})")
    print(f"model: {result.model}")
    return 0
