"""Errors a user can cause and fix.

Every problem that comes from the user's input (a missing or corrupt data file, a bad
config value, an unknown preset, a non-writable output directory, NaNs appearing during
training) is raised as a :class:`UserError` subclass.  The CLI prints ``str(error)`` as a
single line and exits with :attr:`UserError.exit_code`; it never shows a traceback for these.
Anything else is a bug in analogtrain and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input.  The message names the problem and the fix."""

    exit_code = 2


class ConfigError(UserError, ValueError):
    """An invalid configuration value, unknown key or unknown preset."""


class DataError(UserError):
    """A dataset file that is missing, truncated, malformed or fails its checksum."""

    exit_code = 3


class CheckpointError(UserError):
    """A checkpoint that is missing, truncated, tampered with or of another version."""

    exit_code = 4


class TrainingDivergedError(UserError):
    """NaN or infinite values appeared in the simulator state during training."""

    exit_code = 5


class OutputError(UserError):
    """The output directory cannot be created or written (permissions, full disk)."""

    exit_code = 6
