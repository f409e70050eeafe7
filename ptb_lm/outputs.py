"""What a run writes besides its return value: the locked save dir and its checkpoints, the JSON log,
and curves.png, drawn by a child process.
"""

import importlib.util
import json
import logging
import os
import shutil
import signal
import subprocess
import sys

from .checkpoint import SaveDirLock, refuse_a_held_run, save_checkpoint
from .errors import SaveDirError, arg
from .files import partial_path
from .reporting import JsonlWriter
from .runtime.children import PACKAGE_ROOT, last_line

logger = logging.getLogger(__name__)

# Seconds a child may take to draw curves.png: matplotlib's first import in a new environment builds
# its font cache, which can take tens of seconds.
PLOT_TIMEOUT = 300
# The plotting child: this ptb_lm, whatever the working directory holds.
PLOTTER = "import sys; sys.path.insert(0, %r); from ptb_lm.plotting import main; main()"


def can_plot():
    """Whether curves can be drawn: matplotlib is an optional extra ('.[plot]')."""
    return importlib.util.find_spec("matplotlib") is not None


class RunOutputs(object):
    """What a run writes besides its return value: the save dir (locked) and the JSON log.

    Both are checked when the run starts, so an unwritable folder is found
    before any training, not after an epoch of it.
    """

    def __init__(self, config, resuming):
        self.config = config
        # What checkpoints hold: the paths made absolute, so that a resume from any folder reads the same
        # data and appends to the same log.
        self.saved_config = config.replace(**{name: os.path.abspath(getattr(config, name))
                                              for name in ("data", "log_json") if getattr(config, name)})
        self.resuming = resuming
        self.lock = SaveDirLock(config.save_dir) if config.save_dir else None
        self.log = None
        self._plot_failed = False
        self._created = []  # what this start made, removed again if the start is refused

    def open(self):
        """Lock the save dir and open the log; a new run never replaces an earlier run's checkpoints or log.

        If this fails, what it made is removed again (:meth:`abandon`)."""
        try:
            if self.lock is not None:
                self._note_new(self.config.save_dir)
                self.lock.acquire()
                if not self.resuming:
                    refuse_a_held_run(self.config.save_dir)
            if self.config.log_json:
                if not self.resuming and os.path.isfile(self.config.log_json) and \
                        os.path.getsize(self.config.log_json):
                    raise SaveDirError("%s already holds a run's events: give another file (a resumed run "
                                       "appends to its own)" % arg("log_json", self.config.log_json))
                self._note_new(self.config.log_json)
                self.log = JsonlWriter(self.config.log_json, append=self.resuming)
        except BaseException:
            self.abandon()
            raise
        return self

    def _note_new(self, path):
        """Remember the outermost folder (or the file) that writing ``path`` will create, if any."""
        path = os.path.abspath(path)
        if os.path.lexists(path):
            return
        while not os.path.lexists(os.path.dirname(path)):
            path = os.path.dirname(path)
        self._created.append(path)

    def close(self):
        if self.log is not None:
            self.log.close()
            self.log = None
        if self.lock is not None:
            self.lock.release()

    def abandon(self):
        """Close, and remove what this start created (a new save dir, a branch's copy, a new log): a refused
        start leaves nothing behind, so the corrected command can run. Never touches what was there before."""
        self.close()
        for path in reversed(self._created):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.lexists(path):
                os.remove(path)
        self._created = []

    def save(self, run, state, improved, history):
        """Write the epoch's checkpoint, then redraw the curves (best-effort: a plot never ends a run)."""
        if self.lock is None:
            return
        save_checkpoint(self.config.save_dir, run.model, self.saved_config, run.corpus.dictionary, state,
                        best=improved, optimizer_state=run.updater.optimizer_state())
        self.draw_curves(history)

    def draw_curves(self, history):
        """Redraw curves.png from ``history`` (after each epoch, and once more with the test figure)."""
        if self.lock is not None and not self._plot_failed and can_plot():
            self._draw_curves(history)

    def _draw_curves(self, history):
        """Redraw curves.png in a child process (ptb_lm.plotting), waiting for it; a failure is a warning.

        In this process, matplotlib's figures grew it by a few MB an epoch (a bare process:
        72.6 -> 92.2 MB over 25 plots), and a Ctrl-C inside its renderer could crash it.
        The child stays in this process's group, so whatever ends the group (a closed
        terminal, the launcher's SIGTERM) ends it too; but it starts with SIGINT blocked
        (a blocked signal mask survives exec), so a Ctrl-C at the terminal lets it finish
        the picture. This process's own SIGINT is blocked only while the child starts;
        :class:`CtrlC` then gets it, and the run stops after the plot.
        """
        path = os.path.join(self.config.save_dir, "curves.png")
        job = {"path": path, "events": [e for e in history.events if e["event"] in ("epoch", "test")]}
        try:
            unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # pending, never lost
            try:
                child = subprocess.Popen([sys.executable, "-c", PLOTTER % PACKAGE_ROOT], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
            try:
                _, errors = child.communicate(json.dumps(job), timeout=PLOT_TIMEOUT)
            finally:
                if child.poll() is None:  # a timeout, or a second Ctrl-C
                    child.kill()
                    child.wait()
            failure = None if child.returncode == 0 else last_line(errors, "exit %d" % child.returncode)
        except (OSError, subprocess.TimeoutExpired) as err:
            failure = str(err)
        if failure:
            partial = partial_path(path)  # a child killed while drawing leaves it
            if os.path.exists(partial):
                os.remove(partial)
            self._plot_failed = True
            logger.warning("could not draw %s (%s); training goes on without it", path, failure)
