"""Segment outputs → track predictions: mean probability or majority vote.

Examples
--------
>>> import numpy as np
>>> probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.45, 0.55], [0.2, 0.8]])
>>> track = np.array([0, 0, 0, 1])
>>> mean_vote(probs, track, 2).argmax(1)   # track 0: mean (0.58, 0.42)
array([0, 1])
>>> majority_vote(probs, track, 2).argmax(1)  # track 0: votes 1 vs 2
array([1, 1])
"""
from __future__ import annotations

import numpy as np

from .errors import ConfigError


def mean_vote(probs: np.ndarray, track_index: np.ndarray, n_tracks: int) -> np.ndarray:
    """Average the segment probabilities of each track: ``(n_tracks, n_classes)``."""
    probs = np.asarray(probs, dtype=np.float64)
    sums = np.zeros((n_tracks, probs.shape[1]))
    np.add.at(sums, track_index, probs)
    counts = np.bincount(track_index, minlength=n_tracks)[:, None]
    return sums / np.maximum(counts, 1)


def majority_vote(probs: np.ndarray, track_index: np.ndarray, n_tracks: int) -> np.ndarray:
    """Share of each track's segments voting for each class: ``(n_tracks, n_classes)``.

    Ties are broken by the mean probability (added at a weight too small to change a
    majority), so the winner is always well defined.
    """
    probs = np.asarray(probs, dtype=np.float64)
    votes = np.zeros((n_tracks, probs.shape[1]))
    np.add.at(votes, (track_index, probs.argmax(1)), 1.0)
    counts = np.bincount(track_index, minlength=n_tracks)[:, None]
    return votes / np.maximum(counts, 1) + 1e-6 * mean_vote(probs, track_index, n_tracks)


def vote(probs, track_index, n_tracks, method: str = "mean") -> np.ndarray:
    if method == "mean":
        return mean_vote(probs, track_index, n_tracks)
    if method == "majority":
        return majority_vote(probs, track_index, n_tracks)
    raise ConfigError(f"vote method must be 'mean' or 'majority', not {method!r}")
