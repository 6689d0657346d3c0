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
    p.add_argument("--seed", type=int, default=0, help="seed for splitting tracks that have no split (default 0)")


def dataset_from_args(args):
    from ..datasets import open_dataset

    return open_dataset(args.data, metadata=args.metadata, subset=args.subset, splits=args.splits,
                        split_column=args.split_column, seed=args.seed)


def add_feature_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("features (defaults: the seed's log-mel, 22.05 kHz, 128 bands, 10 x 3 s)")
    g.add_argument("--features", choices=["logmel", "musicnn"], default="logmel",
                   help="preset: logmel (default) or musicnn (16 kHz, 96 bands, musicnn's log)")
    g.add_argument("--sr", type=positive_int)
    g.add_argument("--n-fft", type=positive_int)
    g.add_argument("--hop-length", type=positive_int)
    g.add_argument("--n-mels", type=positive_int)
    g.add_argument("--fmin", type=float)
    g.add_argument("--fmax", type=float)
    g.add_argument("--top-db", type=float)
    g.add_argument("--segment-seconds", type=positive_float)
    g.add_argument("--segment-hop", type=positive_float, dest="segment_hop_seconds")


def feature_config_from_args(args):
    import dataclasses

    from ..config import MUSICNN_FEATURES, FeatureConfig

    base = MUSICNN_FEATURES if args.features == "musicnn" else FeatureConfig()
    names = ["sr", "n_fft", "hop_length", "n_mels", "fmin", "fmax", "top_db", "segment_seconds", "segment_hop_seconds"]
    changes = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    return dataclasses.replace(base, **changes)
