"""Ctrl-C, everywhere it can come: a run stops at the next safe point, keeps what was whole, says how to
resume, and never loses the request; the launcher ends every process it started."""
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from ptb_lm import TrainConfig, fit
from ptb_lm.errors import Interrupted

from helpers import (
    ROOT,
    TINY,
    lstm_config,
    processes_marked,
    start_long_launch,
)


def test_ctrl_c_keeps_the_last_checkpoint_and_says_how_to_resume(tiny_corpus, tmp_path):
    save = str(tmp_path / "run")

    def interrupt_in_epoch_2(event):
        if event["event"] == "batch" and event["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as err:
        fit(lstm_config(tiny_corpus, epochs=3, save_dir=save), on_event=interrupt_in_epoch_2)
    # a notebook's words: the argument to give fit, not a command-line flag
    assert "resume=%r" % save in str(err.value) and "--" not in str(err.value)
    assert json.loads(open(os.path.join(save, "last", "state.json")).read())["epoch"] == 1
    resumed = fit(lstm_config(tiny_corpus, epochs=3, save_dir=save), resume=save)
    assert [e["epoch"] for e in resumed.of("epoch")] == [1, 2, 3]


def test_ctrl_c_exits_cleanly_and_says_how_to_resume(tiny_corpus, tmp_path):
    save = str(tmp_path / "run")
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "scripts", "train.py"), "--data", tiny_corpus,
                             "--save-dir", save] + TINY + ["--epochs", "100000"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not os.path.islink(os.path.join(save, "last")) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume %s" % save in err and "Traceback" not in err
    state = json.load(open(os.path.join(save, "last", "state.json")))
    assert state["epoch"] >= 1


def test_ctrl_c_before_the_first_checkpoint_says_nothing_was_saved_yet(tiny_corpus, tmp_path):
    save = str(tmp_path / "run")

    def interrupt(event):
        if event["event"] == "batch":
            raise KeyboardInterrupt

    config = TrainConfig(embed_dim=8, hidden_dim=8, batch_size=4, num_steps=5, epochs=2, eval_period=5,
                         data=tiny_corpus, ctx="cpu", progress="none", save_dir=save)
    with pytest.raises(Interrupted) as err:
        fit(config, on_event=interrupt)
    assert "before the first checkpoint" in str(err.value) and "give --save-dir" not in str(err.value)


def test_ctrl_c_during_a_checkpoint_write_is_held_until_the_checkpoint_is_whole(tiny_corpus, tmp_path, monkeypatch):
    """A Ctrl-C inside the save (or inside matplotlib's drawing, where it could crash the process) is delivered
    once the checkpoint and the plot are done, so the message's epoch is the one last/ holds."""
    import json
    import signal

    from ptb_lm import checkpoint

    real = checkpoint._check_readable

    def interrupted_read_back(params, model):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of writing epoch 1
        return real(params, model)

    monkeypatch.setattr(checkpoint, "_check_readable", interrupted_read_back)
    save = str(tmp_path / "run")
    config = TrainConfig(embed_dim=8, hidden_dim=8, batch_size=4, num_steps=5, epochs=3, data=tiny_corpus,
                         ctx="cpu", progress="none", save_dir=save)
    with pytest.raises(Interrupted) as err:
        fit(config)
    assert "holds epoch 1" in str(err.value)
    assert json.load(open(os.path.join(save, "last", "state.json")))["epoch"] == 1


def test_ctrl_c_is_never_lost_the_run_stops_at_the_next_batch(tiny_corpus, tmp_path):
    """Ctrl-C only sets a flag that the loops check between batches: wherever the SIGINT lands (even in an
    NDArray's __del__, where a raised KeyboardInterrupt would be printed and ignored), the run stops."""
    import signal

    seen = []

    def interrupt_once(event):
        seen.append(event)
        if event["event"] == "batch" and len([e for e in seen if e["event"] == "batch"]) == 1:
            os.kill(os.getpid(), signal.SIGINT)

    config = TrainConfig(embed_dim=8, hidden_dim=8, batch_size=4, num_steps=5, epochs=50, eval_period=2,
                         data=tiny_corpus, ctx="cpu", progress="none", save_dir=str(tmp_path / "run"))
    with pytest.raises(Interrupted):
        fit(config, on_event=interrupt_once)
    assert [e["event"] for e in seen] == ["batch"]  # stopped before the next report, in epoch 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Python's own handler is back


def plotting_child_of(pid):
    """The PID of a live ``python -m ptb_lm.plotting`` whose parent is ``pid``, or None."""
    for entry in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % entry) as stat, open("/proc/%s/cmdline" % entry, "rb") as cmdline:
                if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid and b"ptb_lm.plotting" in cmdline.read():
                    return int(entry)
        except (OSError, ValueError, IndexError):
            continue
    return None


def test_ctrl_c_at_the_terminal_lets_the_plot_finish_and_stops_the_run(tiny_corpus, tmp_path):
    """A terminal's Ctrl-C reaches its whole process group: the plotting child ignores it and finishes the
    picture, and the run stops after it with the epoch saved."""
    save = str(tmp_path / "run")
    run = subprocess.Popen([sys.executable, os.path.join(ROOT, "scripts", "train.py"), "--data", tiny_corpus,
                            "--save-dir", save] + TINY + ["--epochs", "100000"], cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and plotting_child_of(run.pid) is None:
            time.sleep(0.01)
        child = plotting_child_of(run.pid)
        assert child is not None, "no plot was ever drawn"
        os.killpg(run.pid, signal.SIGINT)  # as a terminal does: the whole foreground group
        _, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)  # the run and its plotting child
    assert run.returncode == 130, err
    assert "could not draw" not in err, err
    epoch = json.load(open(os.path.join(save, "last", "state.json")))["epoch"]
    assert "holds epoch %d" % epoch in err
    with open(os.path.join(save, "curves.png"), "rb") as png:
        assert png.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.dist
def test_ctrl_c_on_the_launcher_ends_every_process(tiny_corpus, tmp_path):
    mark = uuid.uuid4().hex
    proc = start_long_launch(tiny_corpus, tmp_path, mark)
    assert len(processes_marked(mark)) >= 5  # launcher, scheduler, server, two workers
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    time.sleep(0.5)
    assert processes_marked(mark) == []


CUT_SHORT = """
import sys
import ptb_lm
%s
from ptb_lm.cli import _run

def body():
    raise KeyboardInterrupt  # Ctrl-C after mxnet loaded, before its first operation
sys.exit(_run(body))
"""


@pytest.mark.parametrize("loaded", ["import mxnet", "import ctypes; from ptb_lm.runtime.native import mxnet_library_path; "
                                                    "ctypes.CDLL(mxnet_library_path())"],
                         ids=["mxnet-imported", "import-cut-short"])
def test_ctrl_c_before_mxnet_ran_anything_leaves_our_line_last(loaded):
    """MXNet logs its engine line when its engine starts, and at exit if nothing started it: after our error
    line, when Ctrl-C came 1-2 s into a run (while mxnet imports). The error line must stay the last."""
    out = subprocess.run([sys.executable, "-c", CUT_SHORT % loaded], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 130
    assert out.stderr == "ptb-lm: error: interrupted\n"
