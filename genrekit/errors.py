"""Typed errors. Every error genrekit raises on purpose derives from :class:`GenrekitError`."""
from __future__ import annotations


class GenrekitError(Exception):
    """Base class of all genrekit errors."""


class AudioError(GenrekitError):
    """An audio file could not be used. ``path`` and ``reason`` say which and why."""

    reason = "unusable audio"

    def __init__(self, path, detail: str = ""):
        self.path = str(path)
        self.detail = detail
        message = f"{self.path}: {self.reason}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)


class AudioMissingError(AudioError):
    reason = "file not found or not readable"


class NotAudioError(AudioError):
    reason = "not an audio file"


class CorruptAudioError(AudioError):
    reason = "corrupt or truncated audio"


class EmptyAudioError(AudioError):
    reason = "empty file (no audio samples)"


class TooShortError(AudioError):
    reason = "audio shorter than the minimum duration"


class SilentAudioError(AudioError):
    reason = "audio is all silent"


class NonFiniteAudioError(AudioError):
    reason = "audio contains NaN or Inf samples"


class TooLongError(AudioError):
    reason = "audio longer than the maximum duration"


class DatasetError(GenrekitError):
    """A data set specification or its metadata is wrong."""


class CacheError(GenrekitError):
    """A feature cache is missing, incomplete or was built with other settings."""


class CheckpointError(GenrekitError):
    """A model checkpoint is missing or unusable."""


class LeakageError(GenrekitError):
    """Evaluation or training data overlap where they must not."""


class ConfigError(GenrekitError):
    """A configuration value is invalid."""
