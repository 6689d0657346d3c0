"""Running ``prepare`` on more than one machine.

:func:`~genrekit.distributed.ray_prepare.prepare_ray` runs the decode → features →
cache work as Ray tasks and writes the shards straight to shared storage (a local or
network folder, or any fsspec URL such as ``s3://bucket/cache``);
:func:`~genrekit.distributed.storage.fetch_cache` copies such a cache to a local
folder so :class:`~genrekit.cache.FeatureCache` can memory-map it for training.

Ray and fsspec are optional (``pip install genrekit[ray]``): nothing here imports
them before it is called, so ``import genrekit.distributed`` always works.

Examples
--------
>>> from genrekit.distributed import prepare_ray, fetch_cache  # doctest: +SKIP
>>> prepare_ray(dataset, "s3://bucket/caches/fma_large", address="auto")  # doctest: +SKIP
>>> fetch_cache("s3://bucket/caches/fma_large", "caches/fma_large")  # doctest: +SKIP
"""
from __future__ import annotations

_LAZY = {
    "prepare_ray": "ray_prepare", "RayPrepareSummary": "ray_prepare",
    "fetch_cache": "storage", "FetchSummary": "storage", "MissingDependencyError": "storage",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'genrekit.distributed' has no attribute {name!r}")


__all__ = list(_LAZY)
