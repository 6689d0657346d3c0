"""Typed errors. Every error genrekit raises on purpose derives from :class:`GenrekitError`.

Bad parameters raise :class:`ConfigError`, which is also a :class:`ValueError` (the
pattern of librosa's ``ParameterError``), so ``except ValueError`` keeps working.
"""
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
    no_sound = True  # an answer (there is no music in it), not a fault of the file


class CancelledChannelsError(SilentAudioError):
    """The channels are not silent but their mean is: one is another inverted (L = -R)."""

    reason = "audio is silent after the downmix to mono (the channels cancel out)"
    no_sound = False  # music that genrekit cannot read


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


class ConfigError(GenrekitError, ValueError):
    """A parameter or configuration value is invalid."""


class MissingExtraError(GenrekitError, ImportError):
    """A command needs an optional part of genrekit that is not installed (``pip install genrekit[EXTRA]``)."""


class MissingProgramError(GenrekitError):
    """An external program genrekit runs (e.g. ``espeak-ng``) is not installed; the message names its package."""


class UnsupportedAudioError(AudioError):
    """Audio outside what genrekit decodes: too many channels, or a sample rate too high or too low
    (limits in :mod:`genrekit.audio`). Refused from the header, before anything is allocated."""

    reason = "unsupported audio format"


class OffsetPastEndError(AudioError):
    """A window that starts at or after the end of the audio."""

    reason = "offset past the end of the audio"
