"""A multipart upload streamed to a file on disk, with a size limit.

The request body is read chunk by chunk and fed to ``python_multipart``'s streaming
parser; the bytes of the ``file`` field go straight to a file in the request's own
temporary folder. As soon as the file passes ``max_bytes`` (or a declared
``Content-Length`` says it will) reading stops and a 413 is raised: an oversized
upload is never held in memory nor read to its end by the application.

Reading is timed: a body that pauses longer than ``idle_timeout_s`` or takes longer than
``total_timeout_s`` in all is refused with 408 ``upload_timeout``, so a stalled client
does not hold its socket, file and folder indefinitely. Each chunk written is reported
to ``on_file_bytes`` (the disk budget), which may refuse it.

The client's file name is only ever *reported* (sanitised); the file on disk is named
``upload`` plus a known audio extension, so no client text reaches a server path.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path

import anyio

from ..audio import AUDIO_EXTENSIONS
from .errors import ServiceError

FIELD = "file"
OVERHEAD_BYTES = 64 * 1024  # multipart boundaries, part headers and small form fields
MAX_NAME_CHARS = 120
MAX_PARTS = 16


@dataclass
class Upload:
    """The uploaded file: where it lies, the client's sanitised name, its size in bytes."""

    path: Path
    filename: str
    size: int


def sanitize_filename(name: str | None, default: str = "upload") -> str:
    """The base name of a client-supplied file name, safe to show and to log.

    Directories (``/`` or ``\\``), NUL and other control characters, leading dots and
    surrounding blanks are removed; a long name is shortened keeping its extension.

    Examples
    --------
    >>> sanitize_filename("../../etc/passwd.mp3")
    'passwd.mp3'
    >>> sanitize_filename("C:\\\\music\\\\song.wav")
    'song.wav'
    >>> sanitize_filename("evil\\x00.mp3")
    'evil.mp3'
    >>> sanitize_filename("..")
    'upload'
    """
    text = "".join(ch for ch in (name or "") if unicodedata.category(ch)[0] != "C")
    text = re.split(r"[\\/]", text)[-1].strip().lstrip(".").strip()
    if len(text) > MAX_NAME_CHARS:
        stem, dot, ext = text.rpartition(".")
        ext = ext[:10] if dot and stem else ""
        tail = f".{ext}" if ext else ""
        text = text[: MAX_NAME_CHARS - len(tail) - 1] + "…" + tail
    return text or default


def storage_name(filename: str) -> str:
    """The on-disk name for an upload: ``upload`` plus its extension if it is a known audio one."""
    suffix = Path(filename).suffix.lower()
    return "upload" + (suffix if suffix in AUDIO_EXTENSIONS else "")


def too_large(max_bytes: int) -> ServiceError:
    detail = (f"the upload is larger than the limit of {max_bytes / 2**20:g} MB ({max_bytes} bytes); "
              "send a smaller file")
    return ServiceError(413, "upload_too_large", detail, headers={"Connection": "close"})


def check_request(headers, max_bytes: int) -> bytes:
    """Check the request's Content-Type and Content-Length before reading the body.

    Returns
    -------
    bytes
        The multipart boundary.

    Raises
    ------
    ServiceError
        422 ``missing_file`` if the body is not multipart/form-data, 400
        ``bad_multipart`` without a boundary, 413 ``upload_too_large`` if the declared
        length already passes the limit.
    """
    from python_multipart.multipart import parse_options_header

    ctype, params = parse_options_header(headers.get("content-type"))
    if ctype != b"multipart/form-data":
        raise ServiceError(422, "missing_file", f"send the audio as a multipart/form-data field named "
                           f"'{FIELD}' (got Content-Type {ctype.decode('latin-1') or 'none'!r})")
    if not params.get(b"boundary"):
        raise ServiceError(400, "bad_multipart", "multipart/form-data without a boundary")
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes + OVERHEAD_BYTES:
        raise too_large(max_bytes)
    return params[b"boundary"]


class _Receiver:
    """python_multipart callbacks: the ``file`` part to disk, other parts discarded."""

    def __init__(self, dest_dir: Path, max_bytes: int):
        self.dest_dir = dest_dir
        self.max_bytes = max_bytes
        self.header_name = b""
        self.header_value = b""
        self.disposition = b""
        self.in_file = False
        self.parts = 0
        self.upload: Upload | None = None
        self.file = None
        self.finished = False
        self.pending: list[bytes] = []

    def on_part_begin(self):
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise ServiceError(400, "bad_multipart", f"more than {MAX_PARTS} form parts")
        self.disposition, self.in_file = b"", False

    def on_header_field(self, data, start, end):
        self.header_name += data[start:end]

    def on_header_value(self, data, start, end):
        self.header_value += data[start:end]

    def on_header_end(self):
        if self.header_name.strip().lower() == b"content-disposition":
            self.disposition = self.header_value
        self.header_name, self.header_value = b"", b""

    def on_headers_finished(self):
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self.disposition)
        if options.get(b"name") != FIELD.encode() or self.upload is not None:
            return  # another field, or a second file: ignored
        raw_name = options.get(b"filename", b"").decode("utf-8", errors="replace")
        filename = sanitize_filename(raw_name)
        self.upload = Upload(self.dest_dir / storage_name(filename), filename, 0)
        self.file = open(self.upload.path, "wb")
        self.in_file = True

    def on_part_data(self, data, start, end):
        if not self.in_file:
            return
        self.upload.size += end - start
        if self.upload.size > self.max_bytes:
            raise too_large(self.max_bytes)
        self.pending.append(bytes(data[start:end]))

    def on_part_end(self):
        if self.in_file:
            self.flush()
            self.finished = True
            self.in_file = False

    def flush(self):
        if self.pending and self.file is not None:
            self.file.write(b"".join(self.pending))
        self.pending.clear()

    def close(self):
        if self.file is not None:
            self.file.close()
            self.file = None


def _callbacks(receiver: _Receiver) -> dict:
    names = ["on_part_begin", "on_part_data", "on_part_end", "on_header_field", "on_header_value",
             "on_header_end", "on_headers_finished"]
    return {name: getattr(receiver, name) for name in names}


async def receive_upload(headers, stream: AsyncIterator[bytes], dest_dir: Path, max_bytes: int, *,
                         idle_timeout_s: float = 20.0, total_timeout_s: float = 120.0,
                         on_file_bytes: Callable[[int], None] | None = None) -> Upload:
    """Stream a multipart body's ``file`` field into ``dest_dir``.

    Parameters
    ----------
    headers : Mapping
        The request headers (Content-Type with the boundary, maybe Content-Length).
    stream : async iterator of bytes
        The request body (``request.stream()``).
    dest_dir : Path
        The request's own temporary folder; the caller removes it.
    max_bytes : int
        Largest accepted file. Reading stops as soon as it is passed.
    idle_timeout_s, total_timeout_s : float
        Longest pause between two chunks, and longest time for the whole body.
    on_file_bytes : callable, optional
        Called with the file's size on disk after each chunk is written; raising
        :class:`ServiceError` stops the upload.

    Returns
    -------
    Upload

    Raises
    ------
    ServiceError
        413 ``upload_too_large``, 408 ``upload_timeout``, 422 ``missing_file``, 422
        ``empty_file``, 400 ``bad_multipart`` or 400 ``client_disconnected``; whatever
        ``on_file_bytes`` raises.
    """
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser
    from starlette.requests import ClientDisconnect

    boundary = check_request(headers, max_bytes)
    receiver = _Receiver(dest_dir, max_bytes)
    parser = MultipartParser(boundary, _callbacks(receiver))
    total = 0
    try:
        async with aclosing(_timed(stream, idle_timeout_s, total_timeout_s)) as chunks:
            async for chunk in chunks:
                total += len(chunk)
                if total > max_bytes + OVERHEAD_BYTES:
                    raise too_large(max_bytes)
                parser.write(chunk)
                receiver.flush()
                if on_file_bytes is not None and receiver.upload is not None:
                    on_file_bytes(receiver.upload.size)
        parser.finalize()
    except FormParserError as e:
        raise ServiceError(400, "bad_multipart", f"malformed multipart/form-data body ({e})") from None
    except ClientDisconnect:
        raise ServiceError(400, "client_disconnected", "the client went away during the upload") from None
    finally:
        receiver.close()
    return _finished_upload(receiver)


async def _timed(stream: AsyncIterator[bytes], idle_s: float, total_s: float) -> AsyncIterator[bytes]:
    """The chunks of ``stream``; 408 if one takes longer than ``idle_s`` or all of them longer than ``total_s``."""
    deadline = anyio.current_time() + total_s
    chunks = stream.__aiter__()
    while True:
        left = deadline - anyio.current_time()
        wait = min(idle_s, left)
        try:
            with anyio.fail_after(max(wait, 0.0)):
                chunk = await chunks.__anext__()
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise upload_timeout(idle_s if wait < left else total_s, whole=wait >= left) from None
        yield chunk


def upload_timeout(seconds: float, whole: bool) -> ServiceError:
    what = (f"the upload did not arrive within {seconds:g} s" if whole
            else f"the upload stalled: no data for {seconds:g} s")
    return ServiceError(408, "upload_timeout", f"{what}; send the file again on a faster connection",
                        headers={"Connection": "close"})


def _finished_upload(receiver: _Receiver) -> Upload:
    upload = receiver.upload
    if upload is None:
        raise ServiceError(422, "missing_file", f"the form has no '{FIELD}' field: send the audio file as "
                           f"multipart/form-data field '{FIELD}'")
    if not receiver.finished:
        raise ServiceError(400, "bad_multipart", "the multipart body ended inside the file (truncated request)")
    if upload.size == 0:
        raise ServiceError(422, "empty_file", f"{upload.filename}: the uploaded file is empty (0 bytes)")
    return upload
