"""Checkpoints that hold everything needed to resume, written atomically, without pickle.

Layout of a save dir::

    runs/small/
      last -> epoch-0007/        symbolic links, each swapped in one rename
      best -> epoch-0005/
      epoch-0007/
        model.params             Block.save_parameters (MXNet's own binary format)
        optimizer.params         the optimizer's per-parameter state tensors (absent for plain SGD)
        config.json              the TrainConfig
        vocab.txt                one word per line, in id order
        state.json               epoch, learning rate, update counts, metrics so far, RNG states

A checkpoint is written whole into a temporary folder, renamed to its final
name, and only then do ``last`` / ``best`` switch to it, so a run killed at any
instant leaves the previous checkpoint whole. Folders no link points to are
then removed.

MXNet cannot export its random generator's state, so runs with a seed reseed
MXNet at every epoch from ``(seed, epoch)``; resuming at an epoch boundary then
replays the same dropout masks as an uninterrupted run.
"""

import json
import os
import random
import shutil
import tempfile

import numpy as np

from ._compat import import_mxnet
from .config import TrainConfig
from .data import Dictionary
from .errors import CheckpointError
from .model import build_model

mx = import_mxnet()

LINKS = ("last", "best")


def _python_rng_state():
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _numpy_rng_state():
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def restore_rng_states(state):
    """Put back the Python and NumPy generator states saved in ``state``."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def _optimizer_state(trainer):
    """The trainer's optimizer counters as JSON, and its state tensors as a name -> NDArray dict."""
    optimizer = trainer._optimizer
    tensors = {}
    for updater in trainer._updaters[:1]:  # every updater holds the same states; keep the first's
        for index, state in updater.states.items():
            if state is None:
                continue
            if not isinstance(state, mx.nd.NDArray):
                raise CheckpointError("optimizer state of type %s cannot be saved" % type(state).__name__)
            tensors["state_%d" % index] = state
    counters = {
        "learning_rate": trainer.learning_rate,
        "num_update": optimizer.num_update,
        "index_update_count": {str(k): v for k, v in optimizer._index_update_count.items()},
    }
    return counters, tensors


def restore_trainer(trainer, folder):
    """Load a checkpoint's optimizer counters and state tensors into ``trainer``."""
    with open(os.path.join(folder, "state.json")) as f:
        counters = json.load(f)["optimizer"]
    optimizer = trainer._optimizer
    trainer.set_learning_rate(counters["learning_rate"])
    optimizer.num_update = counters["num_update"]
    optimizer._index_update_count = {int(k): v for k, v in counters["index_update_count"].items()}
    tensors_file = os.path.join(folder, "optimizer.params")
    if os.path.isfile(tensors_file):
        tensors = mx.nd.load(tensors_file)
        for updater in trainer._updaters:
            for name, value in tensors.items():
                updater.states[int(name.split("_")[1])] = value.copyto(value.context)
            updater.states_synced = {index: False for index in updater.states}


def save_checkpoint(save_dir, model, trainer, config, dictionary, state, best=False):
    """Write a checkpoint of epoch ``state['epoch']``; point ``last`` (and ``best`` if asked) at it.

    ``state`` is a JSON-able dict (epoch, metrics, learning-rate schedule state);
    the optimizer counters and RNG states are added here.
    """
    os.makedirs(save_dir, exist_ok=True)
    name = "epoch-%04d" % state["epoch"]
    staging = tempfile.mkdtemp(prefix=".writing-", dir=save_dir)
    try:
        model.save_parameters(os.path.join(staging, "model.params"))
        counters, tensors = _optimizer_state(trainer)
        if tensors:
            mx.nd.save(os.path.join(staging, "optimizer.params"), tensors)
        with open(os.path.join(staging, "config.json"), "w") as f:
            f.write(config.to_json())
        dictionary.save(os.path.join(staging, "vocab.txt"))
        full_state = dict(state, optimizer=counters, rng={"python": _python_rng_state(), "numpy": _numpy_rng_state()})
        with open(os.path.join(staging, "state.json"), "w") as f:
            json.dump(full_state, f)
        for path in os.listdir(staging):
            with open(os.path.join(staging, path), "rb") as f:
                os.fsync(f.fileno())
        os.chmod(staging, 0o755)  # mkdtemp makes it private; a checkpoint is for everyone who can read the run
        final = os.path.join(save_dir, name)
        if os.path.exists(final):  # the same epoch saved again (e.g. after a resume): move the old one aside
            os.rename(final, tempfile.mkdtemp(prefix=".stale-", dir=save_dir))
        os.rename(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _point(save_dir, "last", name)
    if best:
        _point(save_dir, "best", name)
    _remove_unreferenced(save_dir)
    return os.path.join(save_dir, name)


def _point(save_dir, link, target):
    tmp = os.path.join(save_dir, ".link-%s-%d" % (link, os.getpid()))
    if os.path.lexists(tmp):
        os.remove(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, os.path.join(save_dir, link))  # rename is atomic: the link is old or new, never absent


def _remove_unreferenced(save_dir):
    keep = {os.readlink(os.path.join(save_dir, l)) for l in LINKS if os.path.islink(os.path.join(save_dir, l))}
    for entry in os.listdir(save_dir):
        path = os.path.join(save_dir, entry)
        stale = entry.startswith((".stale-", ".writing-")) or (entry.startswith("epoch-") and entry not in keep)
        if stale and os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)


def checkpoint_folder(path):
    """Accept a save dir (use its ``last``) or a checkpoint folder; return the checkpoint folder."""
    if os.path.isfile(os.path.join(path, "last", "state.json")):
        path = os.path.join(path, "last")
    if not os.path.isfile(os.path.join(path, "state.json")):
        raise CheckpointError("%s is not a checkpoint (no state.json in it or in its last/)" % path)
    return path


def read_checkpoint(path):
    """Return ``(folder, config, dictionary, state)`` of the checkpoint at ``path``."""
    folder = checkpoint_folder(path)
    with open(os.path.join(folder, "config.json")) as f:
        config = TrainConfig.from_dict(json.load(f))
    dictionary = Dictionary.load(os.path.join(folder, "vocab.txt"))
    with open(os.path.join(folder, "state.json")) as f:
        state = json.load(f)
    return folder, config, dictionary, state


def load(path, ctx=None):
    """Return ``(model, vocab, config)`` from a checkpoint folder or a save dir, ready to evaluate."""
    folder, config, dictionary, _ = read_checkpoint(path)
    ctx = ctx or mx.cpu()
    model = build_model(config, len(dictionary))
    model.load_parameters(os.path.join(folder, "model.params"), ctx=ctx)
    return model, dictionary, config
