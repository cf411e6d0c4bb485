"""Errors a user can fix. The entry point prints their message as one line and exits with status 1."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


class QuiltgenError(Exception):
    """Base class; the message names the key, file or class at fault and what to do."""


class ConfigError(QuiltgenError, ValueError):
    """A config value is out of range."""


class InputError(QuiltgenError, ValueError):
    """Bad input data."""


class SampleError(QuiltgenError, RuntimeError):
    """A sample could not be made."""


class ResumeRefused(QuiltgenError, ValueError):
    """A resume that would not give the run's images (changed config, version or inputs): the run's record is
    left as it was."""


@contextlib.contextmanager
def naming(path: str | os.PathLike) -> Iterator[None]:
    """Re-raise an OSError that names no file as one naming ``path``: a failed write() or close() (a full disk)
    says only "No space left on device", and the message the user sees must say which file it was writing."""
    try:
        yield
    except OSError as err:
        if err.filename is not None:
            raise
        reason = err.strerror or (f"a short write ({err}): the disk is likely full" if err.errno is None else str(err))
        raise OSError(err.errno, reason, os.fspath(path)) from None
