"""Small file helpers several layers share: digests, and where a file is written before it is renamed. Pure Python."""

import hashlib
import os


def file_digest(path, algorithm="sha1", chunk_size=1 << 20):
    """The hex digest (``hashlib`` name ``algorithm``) of the file at ``path``."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha1_of(path):
    """The hex sha1 of the file at ``path`` (PTB's zip is known by it)."""
    return file_digest(path, "sha1")


def sha256_of(path):
    """The hex sha256 of the file at ``path`` (checkpoints and exports record it)."""
    return file_digest(path, "sha256")


def partial_path(path):
    """Where a file is written before it is renamed over ``path``, so that a kill leaves the old one whole."""
    return "%s.partial%s" % os.path.splitext(path)
