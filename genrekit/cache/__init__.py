"""Feature caches: ``genrekit prepare`` writes them, training and evaluation read them.

- :mod:`~genrekit.cache.format`: the on-disk format and the only code that writes or
  deletes cache files (local folders and fsspec URLs alike);
- :mod:`~genrekit.cache.featurize`: one track → segments and content hashes;
- :mod:`~genrekit.cache.local`: all local cores, resumable, repairing, locked;
- :mod:`~genrekit.cache.ray`: the same cache built on a Ray cluster (``genrekit[ray]``),
  and :func:`fetch_cache` to copy a cache from a URL to a local folder;
- :mod:`~genrekit.cache.reader`: :class:`FeatureCache`, read access to a local cache.

Examples
--------
>>> from genrekit.cache import FeatureCache, prepare  # doctest: +SKIP
>>> prepare(dataset, "caches/gtzan")  # doctest: +SKIP
>>> FeatureCache("caches/gtzan").segments("train")  # doctest: +SKIP
"""
from __future__ import annotations

from .featurize import PrepareOptions, featurize_track
from .format import CACHE_FORMAT, CacheStore
from .local import PrepareSummary, prepare
from .reader import FeatureCache, artists_of, content_hashes, tracks_of

_LAZY = {"prepare_ray": "ray", "RayPrepareSummary": "ray", "fetch_cache": "ray", "FetchSummary": "ray"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'genrekit.cache' has no attribute {name!r}")


__all__ = ["FeatureCache", "prepare", "PrepareOptions", "PrepareSummary", "featurize_track", "CacheStore",
           "CACHE_FORMAT", "tracks_of", "artists_of", "content_hashes", *_LAZY]
