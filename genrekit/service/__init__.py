"""An HTTP service for genre prediction: a JSON API and a web page.

:func:`~genrekit.service.app.create_app` builds the FastAPI application (``genrekit
serve`` runs it with uvicorn). The modules:

* :mod:`~genrekit.service.app`: routes, limits, bounded concurrency, JSON errors.
* :mod:`~genrekit.service.upload`: a multipart upload streamed to a temporary file,
  stopped as soon as it passes the size limit.
* :mod:`~genrekit.service.inference`: duration checks, prediction and the
  downsampled log-mel spectrogram the page draws.
* ``static/``: the page (plain HTML, JavaScript and CSS; no build step, no network).

Importing this package imports nothing heavy; ``create_app`` imports FastAPI and torch.
"""


def create_app(*args, **kwargs):
    """Build the FastAPI application; see :func:`genrekit.service.app.create_app`."""
    from .app import create_app as _create_app

    return _create_app(*args, **kwargs)


__all__ = ["create_app"]
