"""genrekit prepare: data set → feature cache."""
from ._common import (
    add_dataset_arguments,
    add_feature_arguments,
    dataset_from_args,
    feature_config_from_args,
    positive_float,
    positive_int,
)

HELP = "decode a data set and write a feature cache (resumable)"


def add_arguments(p):
    p.add_argument("data", help="data set spec: gtzan:ROOT, fma:AUDIO_DIR, folder:ROOT or manifest:CSV")
    p.add_argument("--out", required=True, help="cache folder to create or resume")
    p.add_argument("--workers", type=positive_int, help="decoding processes (default: all cores)")
    p.add_argument("--excerpt", type=positive_float, help="use a centred excerpt of this many seconds per track")
    p.add_argument("--max-duration", type=positive_float, default=1200.0,
                   help="fail tracks longer than this many seconds (default 1200; see --excerpt)")
    p.add_argument("--overwrite", action="store_true", help="delete what genrekit wrote at --out first "
                   "(only a genrekit cache's own files, never anything else)")
    p.add_argument("--engine", choices=["local", "ray"], default="local", help="local processes (default) or a Ray cluster")
    p.add_argument("--address", help="Ray cluster address (with --engine ray; default: start a local Ray)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_dataset_arguments(p)
    add_feature_arguments(p)


def run(args) -> int:
    from ..cache import PrepareOptions, prepare

    dataset = dataset_from_args(args)
    config = feature_config_from_args(args)
    options = PrepareOptions(excerpt=args.excerpt, max_duration=args.max_duration)
    print(f"{dataset.name}: {len(dataset.tracks)} tracks, {len(dataset.labels)} labels, splits {dataset.describe()['splits']}")
    for note in dataset.notes:
        print(f"note: {note}")
    if args.engine == "ray":
        from ..cache.ray import prepare_ray

        summary = prepare_ray(dataset, args.out, config, options=options, address=args.address,
                              overwrite=args.overwrite, progress=not args.quiet)
    else:
        summary = prepare(dataset, args.out, config, workers=args.workers, options=options,
                          overwrite=args.overwrite, progress=not args.quiet)
    print(summary.report())
    print(f"cache: {args.out}")
    return 130 if summary.interrupted else (1 if summary.failed else 0)
