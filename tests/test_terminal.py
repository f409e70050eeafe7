"""What a newcomer sees: the terminal (through tmux, as a person sees it), help texts, and messages."""
import io
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from ptb_lm.reporting import Progress

from helpers import ROOT, SCRIPTS, TINY, clean_env, run_cli, write_tiny_corpus


@pytest.mark.ptb
@pytest.mark.slow
def test_report_lines_land_above_the_progress_bar_in_a_terminal(ptb_zip, tmp_path):
    assert shutil.which("tmux"), "tmux is part of this machine's image; the terminal test needs it"
    session = "ptb-lm-%s" % uuid.uuid4().hex[:8]
    done = tmp_path / "done"
    command = "%s %s --data %s --epochs 1 --max-batches 300 --eval-period 50 --seed 1 --ctx cpu; touch %s; sleep 60" % (
        sys.executable, os.path.join(SCRIPTS, "train.py"), ptb_zip, done)
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "50", command], check=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not done.exists():
            time.sleep(0.5)
        screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session])
    lines = [l for l in screen.splitlines() if l.strip()]
    reports = [l for l in lines if "[Epoch 1 Batch" in l]
    assert len(reports) == 5, screen
    for line in reports + [l for l in lines if "[Epoch 1]" in l or "Test loss" in l]:
        assert line.startswith("[Epoch") or line.startswith("Test loss"), line  # nothing of a bar before it
        assert "batch/s" not in line and "%|" not in line, line
    assert not any("%|" in l for l in lines), screen  # the bar is gone at the end


def test_the_header_counts_the_batches_that_will_run_and_the_run_says_where_things_went(tiny_corpus, tmp_path):
    save, log = str(tmp_path / "run"), str(tmp_path / "run.jsonl")
    out = run_cli(["--data", tiny_corpus, "--max-batches", "7", "--save-dir", save, "--log-json", log] + TINY)
    assert out.returncode == 0, out.stderr
    header = out.stdout.splitlines()[0]
    assert " 7 batches of 5x4 per epoch (--max-batches 7 of " in header, header
    assert "checkpoints: %s/last -> epoch-0001" % save in out.stdout and "events: %s" % log in out.stdout


def test_evaluate_and_generate_do_not_say_training(tiny_corpus, tmp_path):
    save = str(tmp_path / "run")
    assert run_cli(["--data", tiny_corpus, "--save-dir", save] + TINY).returncode == 0
    evaluate = run_cli([os.path.join(SCRIPTS, "evaluate.py"), save, "--data", tiny_corpus])
    generate = run_cli([os.path.join(SCRIPTS, "generate.py"), save, "--words", "3", "--prompt", "w01 zebra"])
    for out in (evaluate, generate):
        assert out.returncode == 0, out.stderr
        assert "training" not in out.stdout + out.stderr
    assert "evaluating on the CPU" in evaluate.stdout
    assert "not in the vocabulary, read as <unk>: zebra" in generate.stderr
    zero = run_cli([os.path.join(SCRIPTS, "evaluate.py"), save, "--data", tiny_corpus, "--batch-size", "0"])
    assert zero.returncode == 2 and "--batch-size must be" in zero.stderr
    for flag, value in (("--words", "0"), ("--temperature", "0")):
        out = run_cli([os.path.join(SCRIPTS, "generate.py"), save, flag, value])
        assert out.returncode == 2 and out.stderr.strip().splitlines() == [
            l for l in out.stderr.strip().splitlines() if l.startswith("ptb-lm: error: %s must be" % flag)], out.stderr


@pytest.mark.parametrize("script", ["train", "evaluate", "generate", "plot", "launch"])
def test_help_texts_are_clean(script):
    out = run_cli([os.path.join(SCRIPTS, script + ".py"), "--help"])
    assert out.returncode == 0
    assert "``" not in out.stdout
    for block in out.stdout.split("\n  -")[1:]:  # each option's help
        assert block.count("default:") <= 1, block
    if script == "generate":
        for flag in ("--words", "--temperature", "--seed", "--prompt", "--ctx"):
            assert "default:" in out.stdout.split("\n  " + flag)[1].split("\n  -")[0], flag
    if script == "launch":
        assert out.stdout.startswith("usage: ptb-lm-launch") and " -- " in out.stdout.splitlines()[0]


def test_the_readme_never_points_at_our_own_machines():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    assert "../shared" not in readme and "shared/" not in readme


def test_fit_in_a_notebook_shows_the_chapters_lines_unless_quiet(tiny_corpus):
    code = ("import ptb_lm; ptb_lm.fit(ptb_lm.TrainConfig(embed_dim=8, hidden_dim=8, batch_size=4, num_steps=5, "
            "epochs=1, data=%r, ctx='cpu', progress='none'), quiet=%s)")
    loud = subprocess.run([sys.executable, "-c", code % (tiny_corpus, False)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    quiet = subprocess.run([sys.executable, "-c", code % (tiny_corpus, True)], capture_output=True, text=True,
                           timeout=300, cwd=ROOT)
    assert loud.returncode == quiet.returncode == 0, loud.stderr + quiet.stderr
    assert "[Epoch 1]" in loud.stdout and "Test loss" in loud.stdout
    assert quiet.stdout == "" and quiet.stderr == ""
    configured = subprocess.run([sys.executable, "-c", "import logging; logging.basicConfig(level=logging.WARNING); "
                                 + code % (tiny_corpus, False)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert configured.returncode == 0 and "[Epoch 1]" not in configured.stdout + configured.stderr


def test_import_ptb_lm_then_mxnet_works():
    out = subprocess.run([sys.executable, "-c", "import ptb_lm; import mxnet; print(mxnet.nd.ones((2,)).sum().asscalar())"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "2.0", out.stderr


def test_progress_is_a_bar_only_in_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    plain = io.StringIO()
    progress = Progress("auto", stream=plain)
    progress.start(10, "epoch 1")
    progress.update(5)
    progress.close()
    assert not progress.enabled and plain.getvalue() == ""
    term = Terminal()
    progress = Progress("auto", stream=term, mininterval=0)
    progress.start(10, "epoch 1")
    for _ in range(10):
        progress.update(5)
    progress.report(4.5)
    progress.close()
    shown = term.getvalue()
    assert progress.enabled and "epoch 1" in shown and "10/10" in shown and "loss=4.50" in shown


def test_perplexities_too_large_to_mean_anything_are_printed_short():
    from ptb_lm.reporting import format_event, format_ppl, perplexity

    assert format_ppl(perplexity(5.6)) == "%.2f" % perplexity(5.6)  # the chapter's two decimals
    wild = perplexity(91.0)  # an early batch of the chapter's ReLU RNN can reach this
    assert format_ppl(wild) == "%.3g" % wild and len(format_ppl(wild)) < 12
    line = format_event({"event": "batch", "epoch": 1, "batch": 20, "loss": 91.0, "ppl": wild})
    assert line.endswith("perplexity %.3g" % wild)
    assert format_ppl(float("inf")) == "inf"


def test_in_a_notebook_without_ipywidgets_the_bar_is_text_redrawn_in_place(monkeypatch):
    """tqdm.auto would warn ("IProgress not found") and add an output for every update; ptb_lm takes tqdm's
    text bar instead, which a notebook redraws in place, and the widget when ipywidgets is there."""
    import tqdm.std

    from ptb_lm import reporting

    monkeypatch.setattr(reporting, "in_notebook", lambda: True)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # not installed
    assert reporting._bar_class(sys.stderr) is tqdm.std.tqdm


def test_the_launchers_thread_share_is_said_to_be_the_launchers():
    from ptb_lm.runtime.launcher import thread_environments
    from ptb_lm.runtime.threads import describe_threads

    base = clean_env(MXNET_OMP_MAX_THREADS="2", PTB_LM_DEFAULT_THREADS="2")
    serve, worker = thread_environments(base, 2, local=True)
    assert "ptb-lm-launch's share" in describe_threads(worker) and "in the environment says" not in \
        describe_threads(worker)
    assert "in the environment says" in describe_threads(clean_env(MXNET_OMP_MAX_THREADS="1"))  # the user's


def test_ctrl_c_at_the_terminal_leaves_no_stale_bar_on_the_screen(tmp_path):
    """The "^C" a terminal echoes lands on the bar's own line (the bar stops short of the edge), so the
    bar, cleared as the run stops, leaves nothing of itself above the run's last lines."""
    assert shutil.which("tmux"), "tmux is part of this machine's image; the terminal test needs it"
    tiny_corpus = str(tmp_path / "corpus")
    write_tiny_corpus(tiny_corpus, train_lines=20000, eval_lines=400)  # epochs of about 900 chapter batches
    session = "ptb-lm-%s" % uuid.uuid4().hex[:8]
    done = tmp_path / "done"
    command = ("%s %s --data %s --epochs 100000 --seed 1 --ctx cpu --progress bar --save-dir %s; echo EXIT=$?; "
               "touch %s; sleep 60" % (sys.executable, os.path.join(SCRIPTS, "train.py"), tiny_corpus,
                                       tmp_path / "run", done))
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "40", command], check=True)

    def screen():
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout

    try:
        deadline = time.time() + 120
        while time.time() < deadline and not ("[Epoch 2]" in screen() and "%|" in screen()):
            time.sleep(0.2)
        assert "%|" in screen(), screen()
        subprocess.run(["tmux", "send-keys", "-t", session, "C-c"], check=True)
        while time.time() < deadline and not done.exists():
            time.sleep(0.2)
        shown = screen()
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session])
    assert "EXIT=130" in shown and "Continue with: --resume" in shown, shown
    assert not any("%|" in line or "batch/s" in line for line in shown.splitlines()), shown
