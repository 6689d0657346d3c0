"""Argument groups shared by several commands."""
from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def add_dataset_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metadata", help="FMA tracks.csv (two-row header) or a track_id,genre_top,split CSV")
    p.add_argument("--subset", default="small", choices=["small", "medium", "large"], help="FMA subset (default small)")
    p.add_argument("--splits", help="GTZAN split CSV: track_id and split (or filtered_split) columns")
    p.add_argument("--split-column", help="column of --splits holding the split")
    p.add_argument("--artists", metavar="CSV",
                   help="artist list (track_id,artist columns), e.g. for GTZAN: tracks whose credits share "
                        "a name stay in one split")
    p.add_argument("--seed", type=int, default=0, help="seed for splitting tracks that have no split (default 0)")


def dataset_options_from_args(args) -> dict:
    """The keyword arguments of :func:`~genrekit.datasets.open_dataset` that :func:`add_dataset_arguments` adds."""
    return {"metadata": args.metadata, "subset": args.subset, "splits": args.splits,
            "split_column": args.split_column, "seed": args.seed, "artists": getattr(args, "artists", None)}


def dataset_from_args(args):
    from ..datasets import open_dataset

    return open_dataset(args.data, **dataset_options_from_args(args))


def add_feature_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("features (defaults: log-mel, 22.05 kHz, 128 bands, 10 x 3 s)")
    g.add_argument("--features", choices=["logmel", "musicnn", "seed"], default="logmel",
                   help="preset: logmel (default), musicnn (16 kHz, 96 bands, musicnn's log) or seed "
                        "(44.1 kHz linear STFT in dB re each 30 s clip's max, 10 equal parts of 1025 x 258)")
    g.add_argument("--sr", type=positive_int)
    g.add_argument("--n-fft", type=positive_int)
    g.add_argument("--hop-length", type=positive_int)
    g.add_argument("--n-mels", type=positive_int)
    g.add_argument("--fmin", type=float)
    g.add_argument("--fmax", type=float)
    g.add_argument("--top-db", type=float)
    g.add_argument("--segment-seconds", type=positive_float)
    g.add_argument("--segment-hop", type=positive_float, dest="segment_hop_seconds")
    g.add_argument("--segment-count", type=positive_int,
                   help="cut each clip into this many equal parts instead of fixed-length segments")
    g.add_argument("--clip-seconds", type=positive_float,
                   help="with --segment-count: clip length a file is processed in (default 30)")
    g.add_argument("--image-size", type=positive_int, nargs=2, metavar=("H", "W"),
                   help="resize each segment to H x W (bilinear), e.g. 224 224 for ImageNet backbones")
    g.add_argument("--segment-rms-db", type=float, metavar="DBFS",
                   help="bring each segment to this RMS level in dBFS before the features (default: as decoded)")
    g.add_argument("--max-gain-db", type=float, metavar="DB",
                   help="with --segment-rms-db: the largest boost in dB (default 30)")


def feature_config_from_args(args):
    """The :class:`~genrekit.config.FeatureConfig` of a preset and the options given.

    Raises :class:`~genrekit.errors.ConfigError` for settings that do not fit together.
    """
    import dataclasses

    from ..config import PREPARE_FLAGS, feature_preset

    changes = {n: getattr(args, n) for n in PREPARE_FLAGS if getattr(args, n, None) is not None}
    if "image_size" in changes:
        changes["image_size"] = tuple(changes["image_size"])
    return dataclasses.replace(feature_preset(args.features), **changes)


def prior_line(genre_tags: dict, scale: float = 1.0, hint: bool = True) -> str:
    """Which musicnn tags a zero-shot tag prior reads for each label, which labels it cannot read
    (``hint``: and how a recipe maps them), and its scale."""
    from ..heads import describe_tags

    untagged = any(not per for per in genre_tags.values())
    return (f"tag prior: {describe_tags(genre_tags)}" + (" (head.prior_tags can map one)" if untagged and hint else "")
            + (f"; log-odds times {scale:g}" if scale != 1 else ""))


def zero_shot_line(labels: list[str]) -> str:
    """What a label without training tracks means for a track head."""
    return (f"no tracks for {', '.join(labels)}: the prior alone decides them, CV cannot score them, and where "
            f"their tags run high they take other labels' tracks")
