"""The errors a run reports to its user as one line (no traceback). Pure Python.

Bad input is a :class:`UserError` (and a ValueError): the message names the
problem and what to do. The command line exits 2 on these, 1 on
:class:`TrainingDiverged` and 130 on :class:`Interrupted`.
"""


class UserError(ValueError):
    """Bad input: a setting, a path, a file or a device that cannot be used as given."""


class ConfigError(UserError):
    """A setting is out of range; the message names it and what is allowed."""


class DataError(UserError):
    """The data cannot be read; the message says what is wrong and what to do."""


class ChecksumMismatch(DataError):
    """A file's sha1 is not the one expected."""


class ContextError(UserError):
    """A --ctx value is malformed, or names a device that cannot compute."""


class CheckpointError(UserError):
    """A checkpoint folder is missing or incomplete."""


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN or infinite."""


class Interrupted(RuntimeError):
    """Training was stopped by Ctrl-C; the message says what was kept and how to resume."""
