"""An HTTP service for genre prediction: a JSON API and a web page.

:func:`~genrekit.service.app.create_app` builds the FastAPI application;
:func:`~genrekit.service.server.run_server` runs it with uvicorn (``genrekit serve``).
The modules:

* :mod:`~genrekit.service.app`: routes, JSON errors.
* :mod:`~genrekit.service.limits`: :class:`ServiceLimits` and the gate every upload
  passes (uploads in flight, queue, workers, shutdown).
* :mod:`~genrekit.service.upload`: a multipart upload streamed to a temporary file,
  stopped as soon as it passes the size limit or stalls.
* :mod:`~genrekit.service.tempfiles`: per-request folders, their disk budget, and the
  cleanup of folders left by a killed server.
* :mod:`~genrekit.service.inference`: duration checks, prediction and the downsampled
  spectrogram the page draws.
* :mod:`~genrekit.service.server`: uvicorn, with a clean stop on SIGTERM.
* ``static/``: the page (plain HTML, JavaScript and CSS; no build step, no network).

Importing this package imports nothing heavy; ``create_app`` imports FastAPI. With an
ONNX model, nothing on the service's path imports torch.
"""


def create_app(*args, **kwargs):
    """Build the FastAPI application; see :func:`genrekit.service.app.create_app`."""
    from .app import create_app as _create_app

    return _create_app(*args, **kwargs)


def __getattr__(name):
    if name == "ServiceLimits":
        from .limits import ServiceLimits

        return ServiceLimits
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["create_app", "ServiceLimits"]
