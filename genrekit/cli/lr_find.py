"""genrekit lr-find: learning-rate range test."""
from ._common import positive_float, positive_int
from .train import add_training_overrides, config_from_args

HELP = "learning-rate range test on a feature cache: plot and suggested lr"


def add_arguments(p):
    p.add_argument("--config", help="YAML recipe; options below override it")
    add_training_overrides(p)
    p.add_argument("--plot", default="lr_find.png", help="image to write (default lr_find.png)")
    p.add_argument("--num-iter", type=positive_int, default=100)
    p.add_argument("--start-lr", type=positive_float, default=1e-7)
    p.add_argument("--end-lr", type=positive_float, default=10.0)


def run(args) -> int:
    from ..extras import require

    require("torch", "train", "genrekit lr-find")
    from ..training.lr_find import lr_find

    result = lr_find(config_from_args(args), args.plot, args.num_iter, args.start_lr, args.end_lr)
    print(f"tested {len(result.lrs)} rates from {result.lrs[0]:.1e} to {result.lrs[-1]:.1e}")
    print(f"suggested lr: {result.suggestion:.2e}")
    print(f"plot: {args.plot}")
    return 0
