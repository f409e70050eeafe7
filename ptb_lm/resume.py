"""Starting a run, fresh or resumed: the one place that decides where a resumed run goes, in what order
it is checked, set up and restored.

``ptb-lm-train --resume PATH`` and ``fit(config, resume=PATH)`` both come here
(:func:`begin`, called once by the runner), so they follow the same rules:

* The checkpoint is read once and verified (:class:`~ptb_lm.checkpoint.Checkpoint`).
* The run continues in the save dir that holds the checkpoint, whatever folder
  the first run was started from, unless another save dir is asked for.
* A checkpoint older than its save dir's ``last`` (``DIR/best``, say) is not
  resumed in place, since that would replace the newer epochs: give a new save
  dir to branch from it. The branch starts with a copy of the checkpoint.
* A loose checkpoint folder (no ``last`` beside it) needs a save dir too.
* A run that has already done ``epochs`` epochs is complete: raise ``epochs``.
* The settings that fix the parameters' shapes and the optimizer's state
  (:data:`ARCHITECTURE`) and the vocabulary cannot change.

Restoring puts back the weights, the optimizer's state (momentum, Adam's moments),
the epoch, the best validation loss, the plateau factor of ``lr_decay``, every event
so far and Python's and NumPy's RNG states. MXNet's own RNG cannot be exported; seeded runs reseed it from
``(seed, epoch)`` at every epoch, so a resumed run takes exactly the steps an
uninterrupted one takes.

A resumed run appends to its --log-json file. The interrupted epoch's batch events
are already there, and the resumed run logs that epoch again; so it first writes
``{"event": "resume", "after_epoch": N}``, which tells every reader
(:func:`ptb_lm.reporting.read_events`) that the events of later epochs before it
were replaced.

The order of a start (:func:`begin`): read and verify the checkpoint; derive the
config the run continues with; assemble the run; lock the save dir and open the
log; check again under the lock (the save dir cannot have moved on since); copy
the checkpoint into a branch's new save dir; restore the weights and the RNG states.
"""

import logging
import math
import os
from dataclasses import dataclass, field

from .checkpoint import (Checkpoint, SaveDirLock, copy_checkpoint, newest_epoch, prepare_save_dir,
                         refuse_a_held_run, restore_rng_states)
from .errors import CheckpointError, ConfigError, arg

logger = logging.getLogger(__name__)

# The settings that fix the shapes of the parameters and of the optimizer's state: a checkpoint only resumes
# under the same ones.
ARCHITECTURE = ("mode", "embed_dim", "hidden_dim", "num_layers", "hidden_sizes", "tied", "heads", "ffn_dim", "optimizer")


@dataclass
class RunState:
    """Where the epoch loop starts: the next epoch, the best validation loss, the plateau factor, the events."""

    next_epoch: int = 1
    best_val_loss: float = math.inf
    plateau_factor: float = 1.0
    events: list = field(default_factory=list)


def begin(config, resume, assemble, open_outputs):
    """Start the run ``config`` describes, resumed from ``resume`` (a path, a ResumePoint or None).

    ``assemble(config, vocabulary)`` builds the run (``vocabulary``: the resumed checkpoint's, or None);
    ``open_outputs(run, resuming)`` locks the save dir and opens the log (None on workers that write nothing). Returns
    ``(run, outputs, RunState)``; ``outputs`` is open; if the start fails after
    opening it, it is closed here and what it created is removed.
    """
    if resume is None:
        if config.finetune:
            raise ConfigError("finetune continues a trained run: give %s (AWD-LSTM fine-tunes its best weights: "
                              "--resume RUN/best --save-dir NEW --finetune)" % arg("resume"), setting="finetune")
        if config.save_dir and not SaveDirLock(config.save_dir).holder():  # a live run's lock says "in use"
            refuse_a_held_run(config.save_dir)  # before any work; open_outputs checks again, under the lock
        run = assemble(config)
        return run, open_outputs(run, False), RunState()
    resume_point = open_resume(resume)
    config = resume_point.continue_config(config)
    run = assemble(config, resume_point.checkpoint.dictionary)
    outputs = open_outputs(run, True)
    try:
        resume_point.check_vocabulary(run)  # before a branch copies anything
        if outputs is not None:
            resume_point.continue_config(config)  # again, under the lock
            resume_point.start(config)
        state = resume_point.restore(run)
        if outputs is not None and outputs.log is not None:
            outputs.log({"event": "resume", "after_epoch": resume_point.checkpoint.epoch})
    except BaseException:
        if outputs is not None:
            outputs.abandon()  # a refused resume or branch leaves nothing behind
        raise
    return run, outputs, state


class ResumePoint(object):
    """Where a resumed run starts: a verified checkpoint, and the save dir the run continues in."""

    def __init__(self, path):
        self.checkpoint = Checkpoint(path)
        self.path = os.fspath(path)

    @property
    def config(self):
        """The config the checkpoint was trained with."""
        return self.checkpoint.config

    def config_with(self, overrides):
        """The saved config with ``overrides`` (the flags given with --resume) on top.

        The architecture cannot change: flags that would change it are refused,
        not silently ignored. ``save_dir`` is not inherited: the run continues
        where the checkpoint is (see :meth:`continue_config`).
        """
        changed = sorted(k for k in ARCHITECTURE if k in overrides and overrides[k] != getattr(self.config, k))
        if changed:
            raise ConfigError("--resume continues the run saved in %s, whose %s cannot change: drop %s, or start "
                              "a new run without --resume" % (self.checkpoint.folder, ", ".join(changed),
                                                              ", ".join("--" + k.replace("_", "-") for k in changed)))
        values = dict(overrides)
        values.setdefault("save_dir", None)
        return self.config.replace(**values)

    def continue_config(self, config):
        """Check that ``config`` can continue from here; return it with the save dir it will use.

        ``config.save_dir`` None or the checkpoint's own save dir: continue there
        (refused if the checkpoint is not that dir's newest). Another folder:
        branch into it (refused if it already holds a run).
        """
        checkpoint = self.checkpoint
        changed = [k for k in ARCHITECTURE if getattr(config, k) != getattr(checkpoint.config, k)]
        if changed:
            raise CheckpointError("cannot resume %s with a different %s" % (checkpoint.folder, ", ".join(changed)))
        if checkpoint.epoch >= config.epochs:
            raise CheckpointError("the run in %s is complete: it has done %d of %d epochs. Give %s or more "
                                  "to train further" % (checkpoint.folder, checkpoint.epoch, config.epochs,
                                                        arg("epochs", checkpoint.epoch + 1)))
        target = config.save_dir
        in_place = target is None or os.path.realpath(target) == checkpoint.save_dir
        if in_place:
            if not os.path.islink(os.path.join(checkpoint.save_dir, "last")):
                raise CheckpointError("%s is not inside a save dir (no last/ beside it): give %s to "
                                      "continue from it into a new folder" % (checkpoint.folder, arg("save_dir")))
            newest = newest_epoch(checkpoint.save_dir)
            if os.path.realpath(os.path.join(checkpoint.save_dir, "last")) != checkpoint.real_folder:
                raise CheckpointError(
                    "%s holds epoch %d, but its save dir's last/ holds epoch %s: resuming it there would replace "
                    "newer checkpoints. Resume %s to continue the run, or give a new %s to branch from "
                    "epoch %d" % (checkpoint.folder, checkpoint.epoch, newest,
                                  _shown(checkpoint.save_dir, self.path), arg("save_dir"), checkpoint.epoch))
            return config.replace(save_dir=_shown(checkpoint.save_dir, self.path))
        if os.path.lexists(os.path.join(target, "last")):
            raise CheckpointError("%s already holds a run: to branch from %s, give a new folder"
                                  % (arg("save_dir", target), checkpoint.folder))
        if config.log_json is not None and checkpoint.config.log_json is not None and \
                os.path.abspath(config.log_json) == os.path.abspath(checkpoint.config.log_json):
            logger.warning("the branch does not write into %s, the log of the run it branches from: give "
                           "it a log of its own to log it", config.log_json)
            config = config.replace(log_json=None)
        return config

    def start(self, config):
        """Prepare ``config.save_dir`` for the resumed run (a branch starts with a copy of the checkpoint)."""
        if os.path.realpath(config.save_dir) != self.checkpoint.save_dir:
            prepare_save_dir(config.save_dir)
            was_best = self.checkpoint.state["best_val_loss"] == _own_val_loss(self.checkpoint)
            copy_checkpoint(self.checkpoint, config.save_dir, best=was_best)
            logger.info("branching from %s (epoch %d) into %s", self.checkpoint.folder, self.checkpoint.epoch,
                        config.save_dir)

    def check_vocabulary(self, run):
        """Raise CheckpointError unless ``run``'s data has the checkpoint's vocabulary."""
        if self.checkpoint.dictionary.idx_to_word != run.corpus.dictionary.idx_to_word:
            raise CheckpointError("cannot resume %s: its vocabulary differs from that of the data read (%s): give "
                                  "the data it was trained on with %s" % (self.checkpoint.folder, run.config.data or
                                                                          "PTB", arg("data")))

    def restore(self, run):
        """Load the weights into ``run`` and put back the RNG states; return the :class:`RunState` to go on from."""
        checkpoint = self.checkpoint
        self.check_vocabulary(run)
        checkpoint.load_parameters(run.model, run.ctxs)
        checkpoint.load_optimizer(run.updater)
        average = run.updater.average
        if run.config.finetune and average is not None and not average.finetuning:
            average.begin_finetune(checkpoint.epoch)  # from the weights it evaluated, averaging from step one
            logger.info("fine-tuning from the weights of epoch %d (NT-ASGD's average from the first step, until "
                        "its trigger fires)", checkpoint.epoch)
        restore_rng_states(checkpoint.state["rng"])
        logger.info("resuming from %s after epoch %d", checkpoint.folder, checkpoint.epoch)
        return RunState(checkpoint.epoch + 1, checkpoint.state["best_val_loss"], checkpoint.state["plateau_factor"],
                        list(checkpoint.state["events"]))


def _own_val_loss(checkpoint):
    epochs = [e for e in checkpoint.state["events"]
              if e.get("event") == "epoch" and e.get("epoch") == checkpoint.epoch]
    return epochs[-1]["val_loss"] if epochs else None


def _shown(save_dir, given):
    """``save_dir`` as the user would write it: relative to the working directory when it is below it."""
    relative = os.path.relpath(save_dir)
    return save_dir if relative.startswith("..") or os.path.isabs(given) else relative


def open_resume(resume):
    """A :class:`ResumePoint` from a path, or ``resume`` itself if it already is one."""
    return resume if isinstance(resume, ResumePoint) else ResumePoint(resume)
