"""Checkpoints that hold everything needed to resume: written atomically, verified on load, no pickle.

Layout of a save dir::

    runs/small/
      .lock                      the process id of the run writing here (one run at a time)
      last -> epoch-0007/        symbolic links, each swapped in one rename
      best -> epoch-0005/
      epoch-0007/
        model.params             Block.save_parameters (MXNet's own binary format)
        config.json              the TrainConfig
        vocab.txt                one word per line, in id order
        state.json               format_version, epoch, best validation loss, plateau factor, every event so far,
                                 Python's and NumPy's RNG states, and the sha256 of model.params
        optimizer.params         momentum's, Adam's or AdamW's state, one array per parameter and state
                                 (MXNet's format, mx.nd.save), with its sha256 and step count in state.json;
                                 absent for the chapter's plain SGD, which keeps none

Only the folders that ``last`` and ``best`` point to are kept. A checkpoint is
written whole into a temporary folder, renamed to its final name, and only then
do the links switch to it, so a run killed at any instant leaves the previous
checkpoint whole. Every load checks model.params against the sha256 in
state.json, so a damaged file is refused instead of evaluated.

The rate is set from the schedule at every epoch, so a checkpoint needs no rate;
an optimizer that keeps state (ptb_lm.optimizers) has it saved, with no pickle
(MXNet's own Trainer.save_states pickles it).
"""

import json
import logging
import os
import random
import shutil
import socket

import numpy as np

from .config import TrainConfig
from .data import Dictionary
from .errors import CheckpointError, ConfigError, SaveDirError, WriteFailed, arg
from .files import sha256_of, staged_folder
from .model import build_model
from .runtime import error_summary, import_mxnet
from .runtime.internals import saved_parameter_names

mx = import_mxnet()
logger = logging.getLogger(__name__)

LINKS = ("last", "best")
FILES = ("model.params", "config.json", "vocab.txt", "state.json")
LOCK = ".lock"
# state.json's format_version: a reader refuses a newer one, in one line, rather than misread it
FORMAT_VERSION = 1


# --- writing ------------------------------------------------------------------------------------

def rng_states():
    """Python's and NumPy's generator states as JSON-able lists."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(internal), gauss],
            "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]}


def restore_rng_states(state):
    """Put back the Python and NumPy generator states saved by :func:`rng_states`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


OPTIMIZER_FILE = "optimizer.params"


def save_checkpoint(save_dir, model, config, dictionary, state, best=False, optimizer_state=None):
    """Write a checkpoint of epoch ``state['epoch']``; point ``last`` (and ``best`` if asked) at it.

    ``state`` is a JSON-able dict (epoch, metrics, schedule state); the RNG
    states and the sha256 of model.params are added here. ``optimizer_state`` is
    ``({"<parameter>:<state>": NDArray}, steps)``, as the updaters give it. A failure to write
    (a full disk, say) raises :class:`~ptb_lm.errors.WriteFailed` and leaves the
    previous checkpoint and the links as they were.
    """
    name = "epoch-%04d" % state["epoch"]
    try:
        # the same epoch written again replaces the old folder; one a kill leaves aside is removed below
        with staged_folder(os.path.join(save_dir, name), aside=".stale-") as staging:
            params = os.path.join(staging, "model.params")
            model.save_parameters(params)
            _check_readable(params, model)
            _write_text(os.path.join(staging, "config.json"), config.to_json())
            dictionary.save(os.path.join(staging, "vocab.txt"))
            full_state = dict(state, format_version=FORMAT_VERSION, rng=rng_states(),
                              model_params_sha256=sha256_of(params))
            arrays, steps = optimizer_state or ({}, 0)
            if arrays:
                optimizer_path = os.path.join(staging, OPTIMIZER_FILE)
                mx.nd.save(optimizer_path, dict(arrays))
                full_state["optimizer"] = {"name": config.optimizer, "steps": steps,
                                           "params_sha256": sha256_of(optimizer_path)}
            _write_text(os.path.join(staging, "state.json"), json.dumps(full_state))
        if best:  # best first: if switching last then fails, best already holds the epoch state.json calls best
            _point(save_dir, "best", name)
        _point(save_dir, "last", name)
    except (OSError, mx.base.MXNetError) as err:
        kept = _describe_last(save_dir)
        raise WriteFailed("cannot write the checkpoint of epoch %d in %s (%s); %s. Free space or fix the "
                          "folder, then continue with %s"
                          % (state["epoch"], save_dir, _reason(err), kept, arg("resume", save_dir))) from None
    try:
        _remove_unreferenced(save_dir)
    except OSError as err:  # the checkpoint is whole and linked; an old folder left behind loses nothing
        logger.warning("could not remove old checkpoints from %s (%s)", save_dir, _reason(err))
    return os.path.join(save_dir, name)


def _check_readable(params, model):
    """Read model.params back: a write that failed without an error (a full disk under a buffered write) is
    caught here, before its sha256 is recorded and the links switch to it."""
    try:
        arrays = mx.nd.load(params)
    except mx.base.MXNetError as err:
        raise OSError("model.params could not be read back: %s" % error_summary(err)) from None
    if len(arrays) != len(saved_parameter_names(model)):
        raise OSError("model.params could not be read back whole")


def _write_text(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _reason(err):
    if isinstance(err, OSError):
        return err.strerror or str(err)
    if "fwrite" in str(err) or "fopen" in str(err):  # MXNet's own C++ file writes say only "Check failed"
        return "MXNet could not write the file: the disk is full, or a file-size limit was reached"
    return error_summary(err)


def _describe_last(save_dir):
    target = _link_target(save_dir, "last")
    return "%s/last still holds %s" % (save_dir, target) if target else "no earlier checkpoint was there"


def _link_target(save_dir, link):
    path = os.path.join(save_dir, link)
    return os.readlink(path) if os.path.islink(path) else None


def _point(save_dir, link, target):
    tmp = os.path.join(save_dir, ".link-%s-%d" % (link, os.getpid()))
    if os.path.lexists(tmp):
        os.remove(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, os.path.join(save_dir, link))  # rename is atomic: the link is old or new, never absent


def _remove_unreferenced(save_dir):
    keep = {os.path.realpath(os.path.join(save_dir, link)) for link in LINKS if _link_target(save_dir, link)}
    for entry in os.listdir(save_dir):
        path = os.path.join(save_dir, entry)
        stale = entry.startswith((".stale-", ".writing-")) or (entry.startswith("epoch-") and
                                                                os.path.realpath(path) not in keep)
        if stale and os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)


# --- the save dir: created, writable, and held by one run at a time -------------------------------

class SaveDirLock(object):
    """``save_dir/.lock`` holds the id of the process that writes checkpoints there.

    The file is also ``flock``-ed for the whole run, so the kernel frees it when
    the process dies however it dies; a lock left by a process that is gone is
    taken over, and the log says so. A second run on the same save dir is
    refused with one line that names the holder.
    """

    def __init__(self, save_dir):
        self.save_dir = save_dir
        self.path = os.path.join(save_dir, LOCK)
        self._file = None

    def acquire(self):
        import fcntl

        prepare_save_dir(self.save_dir)
        try:
            handle = open(self.path, "a+")
        except OSError as err:
            raise SaveDirError("cannot write in %s (%s): choose a folder you can write to"
                               % (arg("save_dir", self.save_dir), _reason(err))) from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise SaveDirError("%s is in use by %s: wait for that run to end, or choose another %s"
                               % (arg("save_dir", self.save_dir), holder, arg("save_dir"))) from None
        handle.seek(0)
        previous = handle.read().strip()
        if previous:
            logger.warning("taking over the lock of %s, left by %s: no process holds it now (that run is no "
                           "longer running)", self.save_dir, previous)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write("process %d on %s" % (os.getpid(), socket.gethostname()))
            handle.flush()
        except OSError as err:
            handle.close()
            raise SaveDirError("cannot write in %s (%s): free space or choose another folder"
                               % (arg("save_dir", self.save_dir), _reason(err))) from None
        self._file = handle
        return self

    def holder(self):
        """Who holds the lock now, as its file says ("process PID on HOST"); empty if nobody does."""
        try:
            with open(self.path) as f:
                return f.read().strip()
        except OSError:
            return ""

    def release(self):
        if self._file is not None:
            handle, self._file = self._file, None
            try:
                handle.truncate(0)  # an empty lock file is a free one: nobody to report as stale
            except OSError:
                pass
            finally:
                handle.close()  # closing drops the flock


def prepare_save_dir(save_dir):
    """Create ``save_dir`` if needed; raise SaveDirError, naming it, if it cannot be used."""
    try:
        os.makedirs(save_dir, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise SaveDirError("%s: a file is in the way (the path or one of its parents is a file, "
                           "not a folder); choose another %s" % (arg("save_dir", save_dir), arg("save_dir"))) from None
    except OSError as err:
        raise SaveDirError("cannot create %s (%s): choose a folder you can write to"
                           % (arg("save_dir", save_dir), _reason(err))) from None
    if not os.access(save_dir, os.W_OK | os.X_OK):
        raise SaveDirError("cannot write in %s (permission denied): choose a folder you can write to"
                           % arg("save_dir", save_dir))


def refuse_a_held_run(save_dir):
    """Raise SaveDirError, saying what to do instead, if ``save_dir`` already holds a run (a new run never
    replaces one). Only its state.json and config.json are read: what is said needs no verified weights."""
    if not os.path.lexists(os.path.join(save_dir, "last")):
        return
    done = newest_epoch(save_dir)
    try:
        with open(os.path.join(save_dir, "last", "config.json"), encoding="utf-8") as f:
            planned = json.load(f)["epochs"]
    except (OSError, ValueError, KeyError, TypeError):  # a damaged checkpoint: the plain advice
        planned = None
    if isinstance(done, int) and isinstance(planned, int) and done >= planned:
        raise SaveDirError("%s already holds a complete run (%d of %d epochs): give a new %s, or train it further "
                           "with %s and %s (nothing was changed)"
                           % (arg("save_dir", save_dir), done, planned, arg("save_dir"), arg("resume", save_dir),
                              arg("epochs", done + 1)))
    raise SaveDirError("%s already holds a run: continue it with %s, or give a new %s (nothing was changed)"
                       % (arg("save_dir", save_dir), arg("resume", save_dir), arg("save_dir")))


# --- reading ------------------------------------------------------------------------------------

class Checkpoint(object):
    """One checkpoint, read once and verified: ``folder``, ``config``, ``dictionary``, ``state``.

    ``path`` is a save dir (its ``last`` is used) or a checkpoint folder such as
    ``runs/x/best``. ``save_dir`` is the folder that holds the checkpoint.
    """

    def __init__(self, path):
        self.folder = checkpoint_folder(path)
        self.real_folder = os.path.realpath(self.folder)
        self.save_dir = os.path.dirname(self.real_folder)
        # Everything is read from the folder the link pointed to when we looked, so that a run switching its
        # links meanwhile cannot mix two epochs.
        self.params_path = os.path.join(self.real_folder, "model.params")
        missing = [f for f in FILES if not os.path.isfile(os.path.join(self.real_folder, f))]
        if missing:
            raise CheckpointError("%s is incomplete: it lacks %s. Use another checkpoint of the run (its best/ "
                                  "or last/)" % (self.folder, ", ".join(missing)))
        self.state = self._read_json("state.json")
        if not isinstance(self.state, dict):
            raise CheckpointError("%s/state.json is damaged (not a JSON object): use another checkpoint of the run"
                                  % self.folder)
        version = self.state.get("format_version", 1)  # checkpoints before the field are version 1
        if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
            raise CheckpointError("%s was written by a newer ptb_lm (checkpoint format %s; this one reads up to %d): "
                                  "upgrade ptb-lm to use it" % (self.folder, version, FORMAT_VERSION))
        try:
            self.config = TrainConfig.from_dict(self._read_json("config.json"))
        except (ConfigError, TypeError) as err:
            raise CheckpointError("%s/config.json is not a ptb_lm config (%s)" % (self.folder, err)) from None
        try:
            self.dictionary = Dictionary.load(os.path.join(self.real_folder, "vocab.txt"))
        except (OSError, UnicodeDecodeError) as err:
            raise CheckpointError("cannot read %s/vocab.txt (%s)" % (self.folder, err)) from None
        for key in ("epoch", "best_val_loss", "plateau_factor", "events", "rng"):
            if key not in self.state:
                raise CheckpointError("%s/state.json lacks %r: it was not written by this version of ptb_lm"
                                      % (self.folder, key))
        self.epoch = self.state["epoch"]
        self.verify()

    def _read_json(self, name):
        path = os.path.join(self.real_folder, name)
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError) as err:
            raise CheckpointError("%s is damaged (%s): use another checkpoint of the run (its best/ or last/)"
                                  % (os.path.join(self.folder, name), err)) from None

    def verify(self):
        """Raise CheckpointError unless model.params has the sha256 recorded in state.json."""
        expected = self.state.get("model_params_sha256")
        if expected is None:
            raise CheckpointError("%s/state.json records no sha256 of model.params, so it cannot be verified: "
                                  "it was written by an older ptb_lm" % self.folder)
        try:
            found = sha256_of(self.params_path)
        except OSError as err:
            raise CheckpointError("cannot read %s (%s)" % (self.params_path, _reason(err))) from None
        if found != expected:
            raise CheckpointError("%s is damaged: its sha256 is %s, not the %s recorded when it was written. "
                                  "Use another checkpoint of the run (its best/ or last/)"
                                  % (os.path.join(self.folder, "model.params"), found[:12], expected[:12]))
        optimizer = self.state.get("optimizer")
        if optimizer is not None:
            path = os.path.join(self.real_folder, OPTIMIZER_FILE)
            try:
                found = sha256_of(path)
            except OSError as err:
                raise CheckpointError("%s is incomplete: it records %s's state but %s cannot be read (%s). Use "
                                      "another checkpoint of the run" % (self.folder, optimizer.get("name"),
                                                                         OPTIMIZER_FILE, _reason(err))) from None
            if found != optimizer.get("params_sha256"):
                raise CheckpointError("%s is damaged: its sha256 is %s, not the %s recorded when it was written. "
                                      "Use another checkpoint of the run (its best/ or last/)"
                                      % (os.path.join(self.folder, OPTIMIZER_FILE), found[:12],
                                         str(optimizer.get("params_sha256"))[:12]))

    def load_optimizer(self, updater):
        """Put the optimizer's saved state into ``updater`` (nothing to do for plain SGD)."""
        optimizer = self.state.get("optimizer")
        if optimizer is None:
            return
        try:
            arrays = mx.nd.load(os.path.join(self.real_folder, OPTIMIZER_FILE))
            updater.load_optimizer_state(arrays, optimizer["steps"])
        except (mx.base.MXNetError, KeyError, ValueError) as err:
            raise CheckpointError("%s does not fit the model (%s)" % (os.path.join(self.folder, OPTIMIZER_FILE),
                                                                      _reason(err) if not isinstance(err, KeyError)
                                                                      else "it lacks %s" % err)) from None

    def load_parameters(self, model, ctx):
        """Load the verified weights into ``model`` on ``ctx`` (a context or a list)."""
        try:
            model.load_parameters(self.params_path, ctx=ctx)
        except (mx.base.MXNetError, AssertionError, OSError) as err:
            raise CheckpointError("%s does not fit its config.json (%s)"
                                  % (os.path.join(self.folder, "model.params"), _reason(err))) from None

    def build_model(self, ctx):
        """The model of this checkpoint, with its weights, on ``ctx``."""
        model = build_model(self.config, len(self.dictionary))
        self.load_parameters(model, ctx)
        return model


def checkpoint_folder(path):
    """Accept a save dir (use its ``last``) or a checkpoint folder; return the checkpoint folder."""
    path = os.fspath(path)
    if not os.path.lexists(path):
        raise CheckpointError("%s does not exist: give a save dir (with last/ in it) or a checkpoint folder such as "
                              "runs/x/best" % path)
    if os.path.isdir(os.path.join(path, "last")):
        return os.path.join(path, "last")
    if os.path.isfile(os.path.join(path, "model.params")) or os.path.isfile(os.path.join(path, "state.json")):
        return path
    raise CheckpointError("%s is not a checkpoint: give a save dir (with last/ in it) or a checkpoint folder "
                          "such as runs/x/best" % path)


def load(path, ctx=None):
    """Return ``(model, vocab, config)`` from a checkpoint folder or a save dir, verified, ready to evaluate."""
    point = Checkpoint(path)
    return point.build_model(ctx or mx.cpu()), point.dictionary, point.config


def newest_epoch(save_dir):
    """The epoch that ``save_dir/last`` holds, or None where there is no readable one."""
    try:
        with open(os.path.join(save_dir, "last", "state.json"), encoding="utf-8") as f:
            return json.load(f)["epoch"]
    except (OSError, ValueError, KeyError):
        return None


def copy_checkpoint(point, save_dir, best):
    """Start a new save dir from ``point``: copy its folder in as epoch-NNNN, point ``last`` (and ``best``) at it."""
    name = "epoch-%04d" % point.epoch
    try:
        with staged_folder(os.path.join(save_dir, name), aside=".stale-") as staging:
            for entry in FILES + ((OPTIMIZER_FILE,) if "optimizer" in point.state else ()):
                shutil.copy2(os.path.join(point.real_folder, entry), os.path.join(staging, entry))
            if sha256_of(os.path.join(staging, "model.params")) != point.state.get("model_params_sha256"):
                raise OSError("the copy of model.params differs from the verified original")
        if best:
            _point(save_dir, "best", name)
        _point(save_dir, "last", name)
    except OSError as err:
        raise SaveDirError("cannot copy %s into %s (%s)" % (point.folder, arg("save_dir", save_dir), _reason(err))) \
            from None


__all__ = ["Checkpoint", "SaveDirLock", "checkpoint_folder", "copy_checkpoint", "load", "newest_epoch",
           "prepare_save_dir", "restore_rng_states", "save_checkpoint"]
