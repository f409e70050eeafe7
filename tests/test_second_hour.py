"""What a newcomer meets after the first hour: words for a notebook and for a shell, a first command that can be
run twice, the PyTorch example's flags, plots of a save dir, and the launcher's own lines."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ptb_lm import fit
from ptb_lm.errors import SaveDirError

from helpers import LAUNCH, ROOT, SCRIPTS, TINY, TRAIN, one_line_error, run_cli, tiny_config


def test_a_notebook_is_told_its_arguments_and_a_shell_its_flags(tiny_corpus, tmp_path):
    save = str(tmp_path / "nb")
    fit(tiny_config(tiny_corpus, epochs=1, save_dir=save), quiet=True)
    with pytest.raises(SaveDirError) as err:
        fit(tiny_config(tiny_corpus, epochs=1, save_dir=save), quiet=True)  # the README's cell, run again
    said = str(err.value)
    assert "save_dir=%r" % save in said and "resume=%r" % save in said and "epochs=2" in said, said
    assert "--" not in said
    out = run_cli(["--data", tiny_corpus, "--save-dir", save, "--seed", "7"] + TINY)
    line = one_line_error(out, 2, "--save-dir %s" % save, "--resume %s" % save, "--epochs 2")
    assert "save_dir=" not in line


def test_the_first_command_run_twice_says_what_to_do_and_doing_it_works(tiny_corpus, tmp_path):
    save = str(tmp_path / "smoke")
    first = run_cli(["--data", tiny_corpus, "--save-dir", save, "--seed", "1"] + TINY)
    assert first.returncode == 0, first.stderr
    again = run_cli(["--data", tiny_corpus, "--save-dir", save, "--seed", "1"] + TINY)
    line = one_line_error(again, 2, "complete run (1 of 1 epochs)")
    advice = line.split("train it further with ")[1].split(" (nothing")[0]  # "--resume DIR and --epochs 2"
    flags = advice.replace(" and ", " ").split()
    follow = run_cli(flags + ["--progress", "none"])
    assert follow.returncode == 0, follow.stderr
    assert json.load(open(os.path.join(save, "last", "state.json")))["epoch"] == 2


@pytest.mark.parametrize("theirs, ours", [
    (["--emsize", "8"], "--embed-dim"), (["--nhid", "8"], "--hidden-dim"), (["--nlayers", "2"], "--num-layers"),
    (["--bptt", "5"], "--num-steps"), (["--batch_size", "4"], "--batch-size"), (["--clip", "0.25"], "--clipping-norm"),
    (["--log-interval", "10"], "--eval-period"), (["--save", "m.pt"], "--save-dir"), (["--nhead", "2"], "--heads"),
    (["--dry-run"], "--epochs 1 --max-batches N"), (["--model", "LSTM"], "--mode"),
    (["--epoch", "3"], "did you mean --epochs"),
])
def test_the_pytorch_examples_flags_name_ptb_lms(tiny_corpus, theirs, ours):
    out = run_cli(["--data", tiny_corpus] + theirs)
    hint = ours if ours.startswith("did you mean") else "%s is ptb_lm's %s" % (theirs[0], ours)
    one_line_error(out, 2, "unrecognized arguments", hint, alone=True)


def test_plot_takes_a_save_dir_and_curves_end_with_the_test_line(tiny_corpus, tmp_path, monkeypatch):
    from ptb_lm import outputs

    drawn = []
    monkeypatch.setattr(outputs.RunOutputs, "_draw_curves", lambda self, history: drawn.append(list(history.events)))
    save = str(tmp_path / "run")
    history = fit(tiny_config(tiny_corpus, epochs=1, save_dir=save), quiet=True)
    assert drawn and [e["event"] for e in drawn[-1]][-1] == "test"  # the last picture has the test figure
    assert drawn[-1][-1] == history.test
    out = run_cli([os.path.join(SCRIPTS, "plot.py"), save, "--out", str(tmp_path / "curves.png")])
    assert out.returncode == 0, out.stderr
    assert open(str(tmp_path / "curves.png"), "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_one_epoch_plot_starts_at_zero():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from ptb_lm import plotting

    saved = {}
    real_savefig = plt.Figure.savefig

    def keep(fig, path, *args, **kwargs):
        saved["xlim"] = fig.axes[0].get_xlim()
        return real_savefig(fig, path, *args, **kwargs)

    events = [{"event": "epoch", "epoch": 1, "train_loss": 5.0, "val_ppl": 120.0, "batches": 10},
              {"event": "test", "test_ppl": 118.0}]
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        plt.Figure.savefig = keep
        try:
            plotting.plot_history(events, os.path.join(folder, "c.png"))
        finally:
            plt.Figure.savefig = real_savefig
    assert saved["xlim"][0] == 0 and saved["xlim"][1] > 1


def test_python_313_is_told_what_runs_there_not_an_install_that_cannot():
    from ptb_lm.runtime.shim import _explain

    said = _explain(ImportError("No module named 'mxnet'"), version=(3, 13))
    assert "3.13" in said and "python3.12" in said and "ptb-lm-onnx-score" in said
    assert "pip install 'mxnet" not in said
    assert "pip install 'mxnet" in _explain(ImportError("No module named 'mxnet'"), version=(3, 12))


def test_mpi_as_root_is_one_line_that_names_the_flag_and_the_flag_lets_it_through():
    from ptb_lm.errors import LaunchError
    from ptb_lm.runtime.launcher import MPI_ROOT_VARIABLES, check_mpi_user

    with pytest.raises(LaunchError, match="--allow-run-as-root"):
        check_mpi_user({}, euid=0)
    check_mpi_user({}, euid=1000)  # anyone else: Open MPI has no objection
    check_mpi_user({name: "1" for name in MPI_ROOT_VARIABLES}, euid=0)
    out = run_cli([LAUNCH, "--local", "2", "--allow-run-as-root", "--", "--epochs", "1"])
    one_line_error(out, 2, "--allow-run-as-root goes with --launcher mpi")


def test_an_interrupted_launch_names_the_resume_command():
    from ptb_lm.runtime.launcher import interrupted_message

    said = interrupted_message(["--epochs", "9", "--save-dir", "runs/x", "--seed", "1"])
    assert "--resume runs/x" in said and "runs/x/last" in said
    assert "--resume runs/y" in interrupted_message(["--save-dir=runs/y"])
    assert "nothing was saved" in interrupted_message(["--epochs", "9"])


@pytest.mark.dist
def test_ctrl_c_on_the_launcher_is_one_line_and_the_device_is_said_once(tiny_corpus, tmp_path):
    save = str(tmp_path / "run")
    auto = [a for a in TRAIN if a not in ("--ctx", "cpu")]  # --ctx auto: the line that says it trains on the CPU
    proc = subprocess.Popen([sys.executable, LAUNCH, "--local", "2", "--", "--data", tiny_corpus, "--epochs",
                             "100000", "--save-dir", save] + auto,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.time() + 180
    while time.time() < deadline and not os.path.islink(os.path.join(save, "last")) and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("ptb-lm: error: interrupted"), err
    assert "--resume %s" % save in err.strip().splitlines()[-1]
    assert out.count("training on the CPU") == 1, out


def test_without_matplotlib_the_run_says_why_there_are_no_curves(tiny_corpus, tmp_path, monkeypatch, caplog):
    import logging

    from ptb_lm import outputs, runner

    monkeypatch.setattr(outputs, "can_plot", lambda: False)
    monkeypatch.setattr(runner, "can_plot", lambda: False)
    save = str(tmp_path / "run")
    with caplog.at_level(logging.INFO, logger="ptb_lm"):
        fit(tiny_config(tiny_corpus, epochs=1, save_dir=save))
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("checkpoints:")]
    assert len(said) == 1 and "no curves.png: matplotlib is not installed (pip install -e '.[plot]')" in said[0]
    assert not os.path.exists(os.path.join(save, "curves.png"))


def test_an_export_without_onnx_installed_says_only_that(tiny_corpus, tmp_path):
    save = str(tmp_path / "run")
    fit(tiny_config(tiny_corpus, epochs=1, save_dir=save), quiet=True)
    code = ("import sys; sys.modules['onnx'] = None; from ptb_lm.cli import export_main; "
            "sys.exit(export_main(sys.argv[1:]))")
    out = subprocess.run([sys.executable, "-c", code, save, "--out", str(tmp_path / "onnx")], cwd=str(tmp_path),
                         capture_output=True, text=True, timeout=300)
    one_line_error(out, 2, "exporting needs the onnx package", alone=True)
    assert out.stdout == "" and not os.path.exists(str(tmp_path / "onnx"))
