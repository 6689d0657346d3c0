"""The FastAPI application: routes, limits, bounded concurrency and JSON errors.

Endpoints
---------
``POST /v1/predict``
    multipart field ``file`` → the JSON of ``genrekit predict --format json`` for that
    file (one object) plus ``processing_seconds``; ``?spectrogram=1`` adds the log-mel
    for the page, ``?top_k=3`` keeps only the top probabilities.
``GET /v1/model``
    The model card (labels, features, backbone, training data, metrics) and the limits.
``GET /health``
    ``{"status": "ok", ...}`` with the number of running and waiting jobs.
``GET /``
    The web page (static files under ``/static``). ``/docs`` and ``/openapi.json`` as
    FastAPI makes them.

Concurrency
-----------
The model is loaded once, in :func:`create_app`. Decoding and the model run in worker
threads (``anyio.to_thread``) through a :class:`anyio.CapacityLimiter` of
``concurrency`` tokens: at most that many files are processed at once, the other
requests wait their turn. When ``max_queue`` requests are already waiting, a new one
is refused at once with 503 ``busy`` and ``Retry-After``.

Limits
------
``max_upload_mb``: the upload is streamed to a temporary file and refused with 413
``upload_too_large`` as soon as it passes the limit. ``max_duration_s``: checked from
the header before decoding and again while decoding (413 ``audio_too_long``). Every
request has its own temporary folder under ``tmp_dir``, removed when it ends.

This module imports FastAPI; ``genrekit.service`` itself imports it only on use.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import anyio
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from .errors import ServiceError, from_audio_error
from .upload import FIELD, receive_upload

STATIC = Path(__file__).parent / "static"
TMP_ENV = "GENREKIT_SERVE_TMPDIR"
log = logging.getLogger("genrekit.service")

ERROR_SCHEMA = {"type": "object", "required": ["error", "detail"],
                "properties": {"error": {"type": "string"}, "detail": {"type": "string"}}}
ERROR_RESPONSES = {code: {"description": text, "content": {"application/json": {"schema": ERROR_SCHEMA}}}
                   for code, text in [(400, "malformed multipart body"),
                                      (413, "upload or audio longer than the limits"),
                                      (415, "not an audio file"),
                                      (422, "missing file field, empty, corrupt, too short or silent audio"),
                                      (503, "too many requests waiting")]}
UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": [FIELD],
    "properties": {FIELD: {"type": "string", "format": "binary", "description": "an audio file"}}}}}}}


class Settings:
    """The service's limits and resources, kept on ``app.state.settings``.

    Parameters
    ----------
    model : GenreClassifier
    max_upload_mb, max_duration_s : float
    concurrency : int
        Files processed at once (worker threads).
    max_queue : int
        Requests allowed to wait for a worker; beyond that, 503.
    tmp_dir : Path
        Where the per-request temporary folders go.
    """

    def __init__(self, model, max_upload_mb: float, max_duration_s: float, concurrency: int,
                 max_queue: int, tmp_dir: Path):
        for name, value in [("max_upload_mb", max_upload_mb), ("max_duration_s", max_duration_s),
                            ("concurrency", concurrency)]:
            if value is None or value <= 0:
                raise ValueError(f"{name} must be positive, not {value!r}")
        if max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, not {max_queue!r}")
        self.model = model
        self.max_upload_mb = float(max_upload_mb)
        self.max_upload_bytes = int(max_upload_mb * 2**20)
        self.max_duration_s = float(max_duration_s)
        self.concurrency = int(concurrency)
        self.max_queue = int(max_queue)
        self.tmp_dir = Path(tmp_dir)
        self.limiter = anyio.CapacityLimiter(self.concurrency)

    def limits(self) -> dict:
        return {"max_upload_mb": self.max_upload_mb, "max_duration_s": self.max_duration_s,
                "concurrency": self.concurrency, "max_queue": self.max_queue}

    def load(self) -> dict:
        stats = self.limiter.statistics()
        return {"running": stats.borrowed_tokens, "waiting": stats.tasks_waiting}


def default_concurrency() -> int:
    """Files processed at once by default: 2, or 1 on a single-core machine."""
    return max(1, min(2, os.cpu_count() or 1))


def create_app(model=None, max_upload_mb: float = 50.0, max_duration_s: float = 600.0,
               concurrency: int | None = None, max_queue: int = 32, tmp_dir=None, device: str = "cpu"):
    """Build the service.

    Parameters
    ----------
    model : GenreClassifier, str, Path or None
        A loaded model, a checkpoint / ``.onnx`` path, or None for the shipped model.
        It is loaded here, once.
    max_upload_mb : float
        Largest accepted upload in MiB (413 beyond).
    max_duration_s : float
        Longest accepted audio in seconds (413 beyond).
    concurrency : int, optional
        Files processed at once (default :func:`default_concurrency`).
    max_queue : int
        Requests that may wait for a worker; more get 503 ``busy``.
    tmp_dir : str or Path, optional
        Folder for the per-request temporary folders (default ``$GENREKIT_SERVE_TMPDIR``
        or the system's temporary folder).
    device : str
        Torch device when ``model`` is loaded here.

    Returns
    -------
    fastapi.FastAPI

    Examples
    --------
    >>> import uvicorn  # doctest: +SKIP
    >>> uvicorn.run(create_app(max_upload_mb=20), port=8000)  # doctest: +SKIP
    """
    from .. import __version__
    from ..prediction import GenreClassifier, load_model

    classifier = model if isinstance(model, GenreClassifier) else load_model(model, device=device)
    tmp_root = Path(tmp_dir or os.environ.get(TMP_ENV) or tempfile.gettempdir())
    tmp_root.mkdir(parents=True, exist_ok=True)
    settings = Settings(classifier, max_upload_mb, max_duration_s, concurrency or default_concurrency(),
                        max_queue, tmp_root)
    app = FastAPI(title="genrekit", version=__version__,
                  description="Music genre classification: upload an audio file, get its genre, the "
                              "probabilities of every genre and each segment's vote.")
    app.state.settings = settings
    _add_error_handlers(app)
    _add_routes(app)
    return app


def _add_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/health", summary="Liveness and load")
    async def health(request: Request) -> dict:
        s = request.app.state.settings
        return {"status": "ok", "model_id": s.model.model_id, **s.load()}

    @app.get("/v1/model", summary="The model card and the service's limits")
    async def model_card(request: Request) -> dict:
        s = request.app.state.settings
        card = dict(s.model.card)
        card["source"] = Path(card.get("source") or "").name  # not the server's folder
        return {**_jsonable(card), "limits": s.limits()}

    @app.post("/v1/predict", summary="Predict the genre of an uploaded audio file",
              responses=ERROR_RESPONSES, openapi_extra=UPLOAD_BODY)
    async def predict(request: Request,
                      spectrogram: bool = Query(False, description="add the log-mel spectrogram for the page"),
                      top_k: int | None = Query(None, ge=1, description="keep the k most probable genres")) -> dict:
        return await _predict(request, spectrogram, top_k)


async def _predict(request, spectrogram: bool, top_k: int | None) -> dict:
    """Receive the upload, wait for a worker, classify; the temp folder goes in any case."""
    from ..errors import AudioError
    from .inference import predict_upload

    s = request.app.state.settings
    _refuse_if_busy(s)
    with _request_dir(s.tmp_dir) as folder:
        upload = await receive_upload(request.headers, request.stream(), folder, s.max_upload_bytes)
        _refuse_if_busy(s)
        job = partial(predict_upload, s.model, upload.path, upload.filename, s.max_duration_s, top_k, spectrogram)
        try:
            return await anyio.to_thread.run_sync(job, limiter=s.limiter)
        except AudioError as e:
            raise from_audio_error(e, upload.filename, [str(upload.path), str(folder)]) from None


def _refuse_if_busy(settings: Settings) -> None:
    waiting = settings.limiter.statistics().tasks_waiting
    if waiting >= settings.max_queue:
        raise ServiceError(503, "busy", f"{waiting} requests are already waiting for a worker "
                           f"(limit {settings.max_queue}); retry later", headers={"Retry-After": "5"})


@contextmanager
def _request_dir(root: Path):
    """A temporary folder for one request, removed with its contents when the request ends."""
    folder = Path(tempfile.mkdtemp(prefix="genrekit-serve-", dir=root))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _add_error_handlers(app: FastAPI) -> None:
    def reply(status: int, error: str, detail: str, headers=None):
        return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)

    @app.exception_handler(ServiceError)
    async def service_error(request, exc: ServiceError):
        log.info("%s %s -> %d %s: %s", request.method, request.url.path, exc.status, exc.error, exc.detail)
        return reply(exc.status, exc.error, exc.detail, exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        from http import HTTPStatus

        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
        return reply(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        parts = [f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
        return reply(422, "invalid_request", "; ".join(parts) or "invalid request")

    @app.exception_handler(Exception)
    async def unexpected(request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return reply(500, "internal_error", f"unexpected {type(exc).__name__}; see the server log")


def _jsonable(value):
    """Plain JSON types for a model card (numpy scalars and arrays, paths, tuples)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
