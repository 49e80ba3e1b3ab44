"""Error types raised for user mistakes and bad input.

Every error a user can cause derives from :class:`ConvpressError`; the CLI prints its message
as one line and exits non-zero instead of showing a traceback.
"""

from __future__ import annotations

__all__ = ["ConvpressError", "ConfigError", "FileFormatError", "InputError", "ConvpressWarning"]


class ConvpressError(Exception):
    """Base class of every error convpress raises for bad input or impossible settings."""


class ConfigError(ConvpressError, ValueError):
    """An impossible or inconsistent setting (bits <= 0, unknown layer name, ...)."""


class FileFormatError(ConvpressError, ValueError):
    """A file that is missing, truncated, corrupted, foreign, or of an unsupported version."""


class InputError(ConvpressError, ValueError):
    """Input data that cannot be used as given (wrong image format, wrong shape, NaNs, ...)."""


class ConvpressWarning(UserWarning):
    """A setting that works but probably hurts (e.g. pruning a small layer to a few weights per output)."""
