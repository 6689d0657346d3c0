"""The service's errors: every failure is an HTTP status and ``{"error": ..., "detail": ...}``.

``error`` is a stable machine-readable code; ``detail`` is a sentence for people. Audio
errors from :mod:`genrekit.audio` map to codes by their class; their message never
names a path on the server.
"""
from __future__ import annotations

from ..errors import (
    AudioError,
    AudioMissingError,
    CorruptAudioError,
    EmptyAudioError,
    NonFiniteAudioError,
    NotAudioError,
    SilentAudioError,
    TooLongError,
    TooShortError,
    UnsupportedAudioError,
)

# Most specific class first: (status, error code) for each AudioError subclass.
AUDIO_ERRORS: list[tuple[type, int, str]] = [
    (TooLongError, 413, "audio_too_long"),
    (NotAudioError, 415, "not_audio"),
    (UnsupportedAudioError, 415, "unsupported_audio"),
    (CorruptAudioError, 422, "corrupt_audio"),
    (EmptyAudioError, 422, "empty_audio"),
    (TooShortError, 422, "audio_too_short"),
    (SilentAudioError, 422, "silent_audio"),
    (NonFiniteAudioError, 422, "non_finite_audio"),
    (AudioMissingError, 500, "upload_lost"),
    (AudioError, 422, "unusable_audio"),
]


class ServiceError(Exception):
    """A request the service refuses or cannot complete.

    Parameters
    ----------
    status : int
        HTTP status code.
    error : str
        Stable code, e.g. ``"upload_too_large"``.
    detail : str
        A sentence saying what was wrong and, where possible, what to do.
    headers : dict, optional
        Extra response headers (e.g. ``Retry-After``).
    """

    def __init__(self, status: int, error: str, detail: str, headers: dict | None = None):
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}

    def to_dict(self) -> dict:
        return {"error": self.error, "detail": self.detail}


def from_audio_error(exc: AudioError, name: str, hidden: list[str]) -> ServiceError:
    """Turn an :class:`~genrekit.errors.AudioError` into a :class:`ServiceError`.

    Parameters
    ----------
    exc : AudioError
    name : str
        The client's (sanitised) file name, shown instead of the server path.
    hidden : list of str
        Server paths to replace by ``name`` wherever they appear in the message.
    """
    status, code = next((s, c) for cls, s, c in AUDIO_ERRORS if isinstance(exc, cls))
    detail = f"{name}: {exc.reason}"
    if exc.detail:
        detail += f" ({scrub(exc.detail, name, hidden)})"
    return ServiceError(status, code, detail)


def scrub(text: str, name: str, hidden: list[str]) -> str:
    """Replace each of ``hidden`` (longest first) in ``text`` by ``name``."""
    for path in sorted(hidden, key=len, reverse=True):
        text = text.replace(path, name)
    return text
