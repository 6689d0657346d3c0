"""The FastAPI application: routes, limits, bounded concurrency and JSON errors.

Endpoints
---------
``POST /v1/predict``
    multipart field ``file`` → the JSON of ``genrekit predict --format json`` for that
    file (one object) plus ``processing_seconds``; ``?spectrogram=1`` adds the log-mel
    for the page, ``?top_k=3`` keeps only the top probabilities.
``GET /v1/model``
    The model card (labels, features, backbone, training data, metrics), its abstention
    settings and the service's limits.
``GET /health``
    ``{"status": "ok", ...}`` with the numbers of uploading, waiting and running requests.
``GET /``
    The web page (static files under ``/static``). ``/docs`` and ``/openapi.json`` as
    FastAPI makes them. Every GET route also answers HEAD.

Limits and concurrency
----------------------
The model is loaded once, in :func:`create_app`. Each upload passes the
:class:`~genrekit.service.limits.Gate`: uploads in flight, the queue (uploads plus
requests waiting for a worker), the disk space of uploads and the time an upload may
take are all bounded (see :class:`~genrekit.service.limits.ServiceLimits`); decoding and
the model run in at most ``concurrency`` worker threads. Every request has its own
temporary folder, removed when it ends; folders left by a killed server are removed at
the next start (:mod:`~genrekit.service.tempfiles`).

Every answer, errors included, is JSON: ``{"error": code, "detail": sentence}`` for
errors, also when the server is stopping (503 ``shutting_down``).

This module imports FastAPI; ``genrekit.service`` itself imports it only on use. Nothing
here imports torch: with an ONNX model the service runs on the light install.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
from functools import partial
from pathlib import Path

import anyio
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from .errors import ServiceError, from_audio_error
from .limits import Gate, ServiceLimits, default_concurrency, shutting_down
from .tempfiles import clean_stale, request_dir
from .upload import FIELD, check_request, receive_upload

STATIC = Path(__file__).parent / "static"
TMP_ENV = "GENREKIT_SERVE_TMPDIR"
log = logging.getLogger("genrekit.service")

ERROR_SCHEMA = {"type": "object", "required": ["error", "detail"],
                "properties": {"error": {"type": "string"}, "detail": {"type": "string"}}}
ERROR_RESPONSES = {code: {"description": text, "content": {"application/json": {"schema": ERROR_SCHEMA}}}
                   for code, text in [(400, "malformed multipart body"),
                                      (408, "the upload stalled or took too long"),
                                      (413, "upload or audio longer than the limits"),
                                      (415, "not an audio file, or an audio format out of range"),
                                      (422, "missing file field, empty, corrupt, too short or silent audio"),
                                      (503, "too many requests, no room for the upload, or shutting down")]}
UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": [FIELD],
    "properties": {FIELD: {"type": "string", "format": "binary", "description": "an audio file"}}}}}}}

__all__ = ["create_app", "default_concurrency", "ServiceLimits"]


class Settings:
    """The service's model, limits and resources, kept on ``app.state.settings``.

    Parameters
    ----------
    model : GenreClassifier
    limits : ServiceLimits
    tmp_dir : Path
        Where the per-request temporary folders go.
    """

    def __init__(self, model, limits: ServiceLimits, tmp_dir: Path):
        self.model = model
        self.limits = limits
        self.tmp_dir = Path(tmp_dir)
        self.gate = Gate(limits)


def create_app(model=None, limits: ServiceLimits | None = None, *, tmp_dir=None, device: str = "cpu",
               runtime: str = "auto", min_confidence: float | None = None, threads: int | None = None):
    """Build the service.

    Parameters
    ----------
    model : GenreClassifier, str, Path or None
        A loaded model, a checkpoint / ``.onnx`` path, or None for the shipped model.
        It is loaded here, once.
    limits : ServiceLimits, optional
        Upload size, audio length, workers, queue, uploads in flight, disk space for
        uploads and upload timeouts (defaults: :class:`ServiceLimits`).
    tmp_dir : str or Path, optional
        Folder for the per-request temporary folders (default ``$GENREKIT_SERVE_TMPDIR``
        or the system's temporary folder). Folders there left by a killed server are
        removed now.
    device, runtime : str
        Where and with what the model runs when it is loaded here (see
        :func:`genrekit.prediction.load_model`). ``runtime="onnx"`` with an ``.onnx``
        model needs no torch.
    min_confidence : float, optional
        When the model is loaded here: below this top probability the answer is
        ``"uncertain"`` (default: the model's own threshold).
    threads : int, optional
        Intra-op threads of each model run, when the model is loaded here (``genrekit
        serve`` gives each worker its share of the cores).

    Returns
    -------
    fastapi.FastAPI

    Examples
    --------
    >>> import uvicorn  # doctest: +SKIP
    >>> uvicorn.run(create_app(limits=ServiceLimits(max_upload_mb=20)), port=8000)  # doctest: +SKIP
    """
    from .. import __version__

    classifier = _load(model, device, runtime, min_confidence, threads)
    tmp_root = Path(tmp_dir or os.environ.get(TMP_ENV) or tempfile.gettempdir())
    tmp_root.mkdir(parents=True, exist_ok=True)
    clean_stale(tmp_root)
    app = FastAPI(title="genrekit", version=__version__,
                  description="Music genre classification: upload an audio file, get its genre (or why the "
                              "model abstains), the probabilities of every genre and each segment's vote.")
    app.state.settings = Settings(classifier, limits or ServiceLimits(), tmp_root)
    app.add_middleware(AnswerWhenCancelled)
    _add_error_handlers(app)
    _add_routes(app)
    return app


def _load(model, device: str, runtime: str, min_confidence: float | None, threads: int | None):
    """A loaded model as given, else :func:`~genrekit.prediction.load_model` of a path (None: shipped)."""
    if model is not None and not isinstance(model, (str, os.PathLike)):
        return model
    from ..prediction import load_model

    return load_model(model, device=device, runtime=runtime, min_confidence=min_confidence, threads=threads)


def _get(app: FastAPI, path: str, **kwargs):
    """Register a GET route that also answers HEAD (the headers of GET, no body)."""
    def register(func):
        app.get(path, **kwargs)(func)
        app.head(path, include_in_schema=False)(func)
        return func

    return register


def _add_routes(app: FastAPI) -> None:
    @_get(app, "/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @_get(app, "/health", summary="Liveness and load")
    async def health(request: Request) -> dict:
        s = request.app.state.settings
        status = "shutting_down" if s.gate.closing else "ok"
        return {"status": status, "model_id": s.model.model_id, **s.gate.load()}

    @_get(app, "/v1/model", summary="The model card, its abstention settings and the service's limits")
    async def model_card(request: Request) -> dict:
        s = request.app.state.settings
        card = dict(s.model.card)
        card["source"] = Path(card.get("source") or "").name  # not the server's folder
        card["abstention"] = getattr(s.model, "abstention", None) or {}  # when it says "not music" or "uncertain"
        return {**_jsonable(card), "limits": s.limits.to_dict()}

    @app.post("/v1/predict", summary="Predict the genre of an uploaded audio file",
              responses=ERROR_RESPONSES, openapi_extra=UPLOAD_BODY)
    async def predict(request: Request,
                      spectrogram: bool = Query(False, description="add the log-mel spectrogram for the page"),
                      top_k: int | None = Query(None, ge=1, description="keep the k most probable genres")) -> dict:
        return await _predict(request, spectrogram, top_k)


async def _predict(request: Request, spectrogram: bool, top_k: int | None) -> dict:
    """Admit, receive the upload, wait for a worker, classify; the temp folder goes in any case."""
    from ..errors import AudioError
    from .inference import predict_upload

    s = request.app.state.settings
    lim = s.limits
    check_request(request.headers, lim.max_upload_bytes)  # 413 / 422 before anything is reserved
    async with s.gate.enter(_declared_length(request.headers)) as ticket:
        with request_dir(s.tmp_dir) as folder:
            with s.gate.cancellable():
                upload = await receive_upload(request.headers, request.stream(), folder, lim.max_upload_bytes,
                                              idle_timeout_s=lim.upload_idle_s, total_timeout_s=lim.upload_timeout_s,
                                              on_file_bytes=ticket.disk.grow_to)
            job = partial(predict_upload, s.model, upload.path, upload.filename, lim.max_duration_s, top_k,
                          spectrogram)
            async with ticket.worker():
                try:
                    return await anyio.to_thread.run_sync(job)
                except AudioError as e:
                    raise from_audio_error(e, upload.filename, [str(upload.path), str(folder)]) from None


def _declared_length(headers) -> int | None:
    value = headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


class AnswerWhenCancelled:
    """ASGI middleware: a request cancelled before it answered gets the JSON 503 ``shutting_down``.

    uvicorn cancels the requests still running when its graceful-shutdown time is over,
    and would otherwise answer them with a text/plain 500.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except asyncio.CancelledError:
            if not started:
                await _send_error(send, shutting_down())
            raise


async def _send_error(send, error: ServiceError) -> None:
    body = json.dumps(error.to_dict()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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
