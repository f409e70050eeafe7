"""Find PTB on disk, or download it, verify it and unpack it safely. Pure Python.

Where the data comes from, in order (:func:`locate_ptb`)::

    --data PATH            a folder or a zip, used as given
    data/ptb/              the three text files, already unpacked
    data/ptb.zip           checked against PTB_SHA1
    download PTB_URL       to data/ptb.zip (verified, atomic), unpacked to data/ptb/

Nothing half-written is ever left where a later run would trust it: the
download goes to a temporary file that is renamed into place only once its
sha1 matches, and the zip is unpacked into a temporary folder that is renamed
into place only once every member is out.
"""

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile

from .data import SPLITS
from .errors import ChecksumMismatch, DataError
from .files import sha1_of

PTB_URL = "https://d2l-data.s3-accelerate.amazonaws.com/ptb.zip"
PTB_SHA1 = "319d85e578af0cdc590547f26231e4e31cdf1e42"
DEFAULT_DATA_DIR = "data"

logger = logging.getLogger(__name__)


def download(url, dest, sha1, timeout=60.0):
    """Download ``url`` to ``dest`` if and only if its content has the given sha1.

    The bytes go to a temporary file beside ``dest``, which is renamed onto
    ``dest`` after the check, so ``dest`` is either absent or whole and verified.
    A folder made for ``dest`` is removed again if the download fails.
    """
    folder = os.path.dirname(os.path.abspath(dest))
    created = _make_folder(folder)
    digest = hashlib.sha1()
    try:
        fd, tmp = tempfile.mkstemp(prefix=".download-", dir=folder)
    except OSError as err:
        raise DataError("cannot write in %s (%s): make it writable, or pass --data" % (folder, err.strerror)) \
            from None
    ok = False
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    for chunk in iter(lambda: response.read(1 << 20), b""):
                        digest.update(chunk)
                        out.write(chunk)
            except (urllib.error.URLError, OSError) as err:
                raise DataError(
                    "could not download %s (%s): fetch it by hand into %s, or pass --data"
                    % (url, err, os.path.abspath(dest))
                ) from None
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha1:
            raise ChecksumMismatch(
                "the file downloaded from %s has sha1 %s, not %s: it is damaged or not PTB; "
                "nothing was kept, try again later" % (url, digest.hexdigest(), sha1)
            )
        os.replace(tmp, dest)
        ok = True
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
        if created and not ok:
            shutil.rmtree(folder, ignore_errors=True)
    return dest


def _make_folder(folder):
    """Create ``folder`` if needed; return whether it was created here."""
    if os.path.isdir(folder):
        return False
    try:
        os.makedirs(folder)
    except OSError as err:
        raise DataError("cannot create %s (%s): make its parent writable, or pass --data"
                        % (folder, err.strerror or err)) from None
    return True


def safe_extract(zip_path, dest):
    """Unpack ``zip_path`` into the folder ``dest``, refusing members that escape it.

    Members named with ``..`` or an absolute path would land outside ``dest``
    (the "zip slip"); the whole archive is refused before anything is written.
    """
    root = os.path.realpath(dest)
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile:
        raise DataError("%s is not a zip file: delete it and run again to download it" % zip_path) from None
    with archive:
        for name in archive.namelist():
            target = os.path.realpath(os.path.join(root, name))
            if os.path.commonpath([root, target]) != root:
                raise DataError("%s holds %r, which would be written outside %s: refused" % (zip_path, name, dest))
        os.makedirs(root, exist_ok=True)
        archive.extractall(root)


def _has_splits(folder):
    return all(os.path.isfile(os.path.join(folder, "ptb.%s.txt" % s)) for s in SPLITS)


def unpack_ptb(zip_path, folder):
    """Unpack the PTB zip so that ``folder`` holds the three text files, atomically."""
    parent = os.path.dirname(os.path.abspath(folder))
    staging = None
    try:
        staging = tempfile.mkdtemp(prefix=".unpack-", dir=parent)
        safe_extract(zip_path, staging)
        inner = os.path.join(staging, "ptb")
        source = inner if _has_splits(inner) else staging
        if not _has_splits(source):
            raise DataError("%s does not hold ptb.{train,valid,test}.txt" % zip_path)
        os.replace(source, folder)
    except OSError as err:
        raise DataError("cannot unpack %s into %s (%s): free space or fix the folder, or pass --data %s"
                        % (zip_path, os.path.abspath(folder), err.strerror or err, zip_path)) from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def find_ptb(data_dir=DEFAULT_DATA_DIR):
    """``(path, kind)`` of PTB already in ``data_dir``: ``kind`` is "folder" (data/ptb/ with its three
    files) or "zip" (data/ptb.zip, not yet checked); ``(None, None)`` where neither is there."""
    folder = os.path.join(data_dir, "ptb")
    if _has_splits(folder):
        return folder, "folder"
    zip_path = os.path.join(data_dir, "ptb.zip")
    if os.path.isfile(zip_path):
        return zip_path, "zip"
    return None, None


def locate_ptb(data=None, data_dir=DEFAULT_DATA_DIR, url=PTB_URL, sha1=PTB_SHA1):
    """Return a path that :class:`~ptb_lm.data.Corpus` can read, downloading PTB if needed.

    ``data_dir`` is relative to the working directory; messages name it in full.
    """
    if data is not None:
        return os.fspath(data)  # Corpus says what is wrong with it, if anything
    found_path, kind = find_ptb(data_dir)
    if kind == "folder":
        return found_path
    folder = os.path.join(data_dir, "ptb")
    zip_path = os.path.join(data_dir, "ptb.zip")
    if kind == "zip":
        found = sha1_of(zip_path)
        if found != sha1:
            raise ChecksumMismatch(
                "%s has sha1 %s, not PTB's %s: delete it to download it again, or pass --data"
                % (os.path.abspath(zip_path), found, sha1)
            )
        return zip_path
    if os.path.lexists(folder):
        missing = [name for name in ("ptb.%s.txt" % s for s in SPLITS)
                   if not os.path.isfile(os.path.join(folder, name))]
        raise DataError("%s is incomplete (it lacks %s): delete it to download PTB again, or pass --data"
                        % (os.path.abspath(folder), ", ".join(missing)))
    logger.info("PTB not found in %s; downloading %s (about 2 MB)", os.path.abspath(data_dir), url)
    download(url, zip_path, sha1)
    unpack_ptb(zip_path, folder)
    logger.info("PTB verified (sha1 %s) and unpacked to %s", sha1, os.path.abspath(folder))
    return folder


def locate_run_data(given, trained_on, fetch=True, data_dir=DEFAULT_DATA_DIR):
    """The data a trained model's tools read: ``given`` (their ``--data``) if any, else what the run was trained
    on (its config's ``data``), else PTB, found as training finds it and downloaded only if ``fetch``.

    A model trained on a corpus of the user's never reads PTB unless told to. Raises DataError, naming the
    path and what to do, where the data is not there.
    """
    if given is not None:
        return os.fspath(given)
    if trained_on is not None:
        if not os.path.exists(trained_on):
            raise DataError("the run was trained on %s, which is not there any more: give the data with --data"
                            % trained_on)
        return trained_on
    if fetch:
        return locate_ptb(None, data_dir)
    found, _ = find_ptb(data_dir)
    if found is None:
        raise DataError("the run was trained on PTB, which is not in %s: give it with --data"
                        % os.path.abspath(data_dir))
    return found
