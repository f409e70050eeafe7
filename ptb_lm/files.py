"""Small file helpers several layers share: digests, and writing a file or a folder so that a kill at any
instant leaves the old one or the whole new one. No mxnet; the digest is ptb_lm_onnx's, which ptb_lm ships."""

import contextlib
import os
import shutil
import tempfile

from ptb_lm_onnx import file_digest


def sha1_of(path):
    """The hex sha1 of the file at ``path`` (PTB's zip is known by it)."""
    return file_digest(path, "sha1")


def sha256_of(path):
    """The hex sha256 of the file at ``path`` (checkpoints and exports record it)."""
    return file_digest(path, "sha256")


def partial_path(path):
    """Where a file is written before it is renamed over ``path``, so that a kill leaves the old one whole."""
    return "%s.partial%s" % os.path.splitext(path)


@contextlib.contextmanager
def staged_folder(final, prefix=".writing-", aside=".replaced-"):
    """Write the folder ``final`` in one step: yields a new, empty folder beside it to fill.

    On a clean exit its files are flushed to disk, it is made readable by all (0755; ``mkdtemp``
    makes it private) and renamed to ``final``; a folder already there is first moved aside
    (into a folder named ``aside...``), then removed, and moved back if the rename fails. On any
    error the new folder is removed and ``final`` is as it was. A reader sees the old folder or
    the whole new one, whatever kills the writer: checkpoints, branches and exports are written so.
    """
    parent = os.path.dirname(os.path.abspath(final))
    staging = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        yield staging
        for entry in os.listdir(staging):
            with open(os.path.join(staging, entry), "rb") as f:
                os.fsync(f.fileno())
        os.chmod(staging, 0o755)
        old = None
        if os.path.lexists(final):
            old = tempfile.mkdtemp(prefix=aside, dir=parent)
            os.rename(final, os.path.join(old, "old"))
        try:
            os.rename(staging, final)
        except OSError:
            if old is not None:
                os.rename(os.path.join(old, "old"), final)
                os.rmdir(old)
            raise
        staging = None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
