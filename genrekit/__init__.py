"""genrekit: music genre classification, from audio files to a trained, shipped model.

The pipeline, one module each: :mod:`~genrekit.audio` → :mod:`~genrekit.features` →
:mod:`~genrekit.datasets` / :mod:`~genrekit.cache` → :mod:`~genrekit.models` →
:mod:`~genrekit.training` → :mod:`~genrekit.evaluation` → :mod:`~genrekit.prediction`
→ :mod:`~genrekit.service`. Heavy modules are imported on first use.
"""
__version__ = "0.1.0"

_LAZY = {
    "load_audio": "audio", "audio_info": "audio", "FeatureConfig": "config",
    "open_dataset": "datasets", "prepare": "cache", "FeatureCache": "cache",
    "predict": "prediction", "load_model": "prediction", "GenreClassifier": "prediction",
    "train": "training", "evaluate": "evaluation",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'genrekit' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
