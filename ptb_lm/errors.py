"""Every error a run reports to its user as one line (no traceback), in one hierarchy. Pure Python.

    PtbLmError                      exit_code   what it means
    ├── UserError (a ValueError)        2       bad input: a setting, path, file or device as given
    │   ├── ConfigError                         a setting is out of range or does not combine
    │   ├── DataError                           the data cannot be found or read
    │   │   └── ChecksumMismatch                a file's sha1 is not PTB's
    │   ├── ContextError                        a --ctx value, or a device that cannot compute
    │   ├── CheckpointError                     a checkpoint is missing, incomplete or damaged
    │   ├── SaveDirError                        a save dir or log file cannot be used (or is in use)
    │   └── LaunchError                         worker processes cannot be started as asked
    ├── RunFailure (a RuntimeError)     1       the run started and could not go on
    │   ├── TrainingDiverged                    a loss or gradient norm became NaN or infinite
    │   └── WriteFailed                         a file could not be written (a full disk, say)
    └── Interrupted                   130       Ctrl-C; the message says what was kept

Each message names the thing and what to do. Anything else that escapes is a
bug of ours, and keeps its traceback.

A message names the settings it asks for with :func:`arg`, so that it speaks to whoever
reads it: ``str(err)`` (a notebook) says ``save_dir='runs/nb'``, and a command line
(:meth:`PtbLmError.for_command_line`) says ``--save-dir runs/nb``.
"""

import re

# A mark: NUL, the name, then SOH and a string value or STX and a number's, then NUL.
_ARG = re.compile("\x00([a-z_]+)([\x01\x02])([^\x00]*)\x00")


def arg(name, value=None):
    """The setting ``name`` (a TrainConfig field or an argument such as ``resume``), with ``value`` if given,
    as a message names it: see the module's docstring."""
    kind = "\x01" if value is None or isinstance(value, str) else "\x02"
    return "\x00%s%s%s\x00" % (name, kind, "" if value is None else value)


def for_python(text):
    """``text`` with its :func:`arg` marks as Python names them: ``name='value'``, ``name=2``, or ``name``."""
    def python(match):
        name, kind, value = match.groups()
        return name if not value else "%s=%s" % (name, repr(value) if kind == "\x01" else value)
    return _ARG.sub(python, text)


def for_command_line(text):
    """``text`` with its :func:`arg` marks as a command line names them: ``--name value``, or ``--name``."""
    return _ARG.sub(lambda m: "--" + m.group(1).replace("_", "-") + (" " + m.group(3) if m.group(3) else ""), text)


class PtbLmError(Exception):
    """Base of the errors a user is shown as one line ``ptb-lm: error: ...``."""

    exit_code = 1

    def __str__(self):
        return for_python(super(PtbLmError, self).__str__())

    def for_command_line(self):
        """The message as a command line shows it (flags, not Python names)."""
        return for_command_line(super(PtbLmError, self).__str__())


class UserError(PtbLmError, ValueError):
    """Bad input: a setting, a path, a file or a device that cannot be used as given."""

    exit_code = 2


class ConfigError(UserError):
    """A setting is out of range; the message names it and what is allowed.

    ``setting`` is the TrainConfig field the message names, if any: a command line
    names the flag instead (``--batch-size``, not ``batch_size``).
    """

    def __init__(self, message, setting=None):
        super(ConfigError, self).__init__(message)
        self.setting = setting


class DataError(UserError):
    """The data cannot be read; the message says what is wrong and what to do."""


class ChecksumMismatch(DataError):
    """A file's sha1 is not the one expected."""


class ContextError(UserError):
    """A --ctx value is malformed, or names a device that cannot compute."""


class CheckpointError(UserError):
    """A checkpoint folder is missing, incomplete or damaged, or cannot be resumed as asked."""


class SaveDirError(UserError):
    """A save dir or log file cannot be created or written, or another run holds the save dir."""


class LaunchError(UserError):
    """The processes cannot be started as asked (port in use, host unreachable, bad host name)."""


class RunFailure(PtbLmError, RuntimeError):
    """The run started and could not go on; what was saved before stays whole."""

    exit_code = 1


class TrainingDiverged(RunFailure):
    """The loss, the validation loss or the gradient norm became NaN or infinite."""


class WriteFailed(RunFailure):
    """A checkpoint or log could not be written while training (a full disk, a revoked permission)."""


class Interrupted(PtbLmError):
    """Training was stopped by Ctrl-C; the message says what was kept and how to resume."""

    exit_code = 130
