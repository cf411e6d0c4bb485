"""Errors a user can fix. The entry point prints their message as one line and exits with status 1."""


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
