"""Resume: where a resumed run goes, what it restores, what it refuses, and that it takes exactly the
steps an uninterrupted run takes (one module: ptb_lm.resume)."""
import json
import os
import shutil

import pytest

from ptb_lm import TrainConfig, fit
from ptb_lm.cli import config_from_args, train_parser
from ptb_lm.errors import CheckpointError, ConfigError, Interrupted, UserError
from ptb_lm.runner import learning_rate

from helpers import (
    TINY,
    lstm_config,
    run_cli,
    tiny_config,
)

# TINY without --epochs, and seeded
RESUME_TINY = ["--embed-dim", "8", "--hidden-dim", "8", "--batch-size", "4", "--num-steps", "5", "--ctx", "cpu",
               "--progress", "none", "--seed", "4"]


def epoch_losses(history):
    return [e[k] for e in history.of("epoch") for k in ("train_loss", "val_loss")]


def state_of(folder):
    return json.load(open(os.path.join(folder, "state.json")))


def snapshot(folder):
    """Every file below ``folder`` with its bytes, and every link with its target."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder)
            if os.path.islink(path):
                found[rel] = "-> " + os.readlink(path)
            elif os.path.isfile(path):
                found[rel] = open(path, "rb").read()
    return found


@pytest.fixture
def two_epochs(tiny_corpus, tmp_path):
    """A save dir holding a 2-epoch run; returns its path."""
    save = str(tmp_path / "run")
    out = run_cli(["--data", tiny_corpus, "--save-dir", save, "--epochs", "2"] + RESUME_TINY)
    assert out.returncode == 0, out.stderr
    return save


def test_resume_reaches_the_same_losses_as_an_uninterrupted_run(tiny_corpus, tmp_path):
    whole = fit(lstm_config(tiny_corpus, epochs=3))
    first = lstm_config(tiny_corpus, epochs=2, save_dir=str(tmp_path / "run"))
    fit(first)
    resumed = fit(first.replace(epochs=3), resume=str(tmp_path / "run"))
    assert len(resumed.of("epoch")) == 3
    assert epoch_losses(resumed) == pytest.approx(epoch_losses(whole), rel=1e-6)
    assert resumed.test["test_loss"] == pytest.approx(whole.test["test_loss"], rel=1e-6)


def test_resume_from_the_command_line_continues_and_appends_the_log(tiny_corpus, tmp_path):
    save, log = str(tmp_path / "run"), str(tmp_path / "run.jsonl")
    first = run_cli(["--data", tiny_corpus, "--save-dir", save, "--log-json", log, "--seed", "4"] + TINY)
    assert first.returncode == 0, first.stderr
    again = run_cli(["--resume", save, "--epochs", "2", "--log-json", log, "--progress", "none"])
    assert again.returncode == 0, again.stderr
    assert "[Epoch 2]" in again.stdout and "[Epoch 1]" not in again.stdout
    events = [json.loads(l) for l in open(log)]
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2]


def parse(*argv):
    return config_from_args(train_parser().parse_args(list(argv)))


@pytest.fixture(scope="module")
def saved_run(tiny_corpus, tmp_path_factory):
    """A one-epoch run saved with checkpoints; returns (save_dir, its config)."""
    save = str(tmp_path_factory.mktemp("cfg") / "run")
    config = TrainConfig(mode="gru", embed_dim=8, hidden_dim=8, batch_size=4, num_steps=5, epochs=1, seed=3,
                         data=tiny_corpus, ctx="cpu", progress="none", save_dir=save)
    fit(config)
    return save, config


def test_resume_takes_the_checkpoint_config_and_the_flags_given(saved_run):
    save, saved = saved_run
    config, point = parse("--resume", save, "--epochs", "20", "--lr", "0.5")
    assert config == saved.replace(epochs=20, lr=0.5, save_dir=None)  # the save dir is the checkpoint's, in fit
    assert point.checkpoint.epoch == 1


@pytest.mark.parametrize("flags, words", [
    (["--preset", "zaremba-small"], ["drop --preset"]),
    (["--hidden-dim", "16"], ["hidden_dim", "--hidden-dim"]),
    (["--mode", "lstm"], ["mode", "--mode"]),
    (["--optimizer", "adam"], ["optimizer", "--optimizer"]),  # an SGD run has no moments to resume Adam from
])
def test_resume_refuses_a_preset_or_an_architecture_flag(saved_run, flags, words):
    save, _ = saved_run
    with pytest.raises(UserError) as err:
        parse("--resume", save, "--epochs", "3", *flags)
    for word in words:
        assert word in str(err.value)


def test_a_copied_run_resumes_in_the_copy_and_leaves_the_original_alone(two_epochs, tmp_path):
    copy = str(tmp_path / "copy")
    shutil.copytree(two_epochs, copy, symlinks=True)
    before = snapshot(two_epochs)
    out = run_cli(["--resume", copy, "--epochs", "3", "--progress", "none"])
    assert out.returncode == 0, out.stderr
    assert state_of(os.path.join(copy, "last"))["epoch"] == 3
    assert snapshot(two_epochs) == before


def test_a_resume_started_elsewhere_writes_into_the_checkpoints_save_dir(two_epochs, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    relative = os.path.relpath(two_epochs, str(elsewhere))
    out = run_cli(["--resume", relative, "--epochs", "3", "--progress", "none"], cwd=str(elsewhere))
    assert out.returncode == 0, out.stderr
    assert os.listdir(str(elsewhere)) == []
    assert state_of(os.path.join(two_epochs, "last"))["epoch"] == 3


def test_an_older_checkpoint_is_not_resumed_in_place_but_can_branch(two_epochs, tmp_path):
    last = state_of(os.path.join(two_epochs, "last"))["epoch"]
    older = os.path.join(two_epochs, "older")
    os.makedirs(older)
    for name in os.listdir(os.path.join(two_epochs, "last")):  # a checkpoint of epoch 2 standing for an older one
        shutil.copy(os.path.join(two_epochs, "last", name), older)
    state = state_of(older)
    state["epoch"] = 1
    json.dump(state, open(os.path.join(older, "state.json"), "w"))
    before = snapshot(two_epochs)
    out = run_cli(["--resume", older, "--epochs", "3", "--progress", "none"])
    assert out.returncode == 2 and "--save-dir" in out.stderr and "newer" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert snapshot(two_epochs) == before and last == 2
    branch = str(tmp_path / "branch")
    out = run_cli(["--resume", older, "--save-dir", branch, "--epochs", "2", "--progress", "none"])
    assert out.returncode == 0, out.stderr
    assert state_of(os.path.join(branch, "last"))["epoch"] == 2
    assert "epoch-0002" in os.listdir(branch) and os.readlink(os.path.join(branch, "last")) == "epoch-0002"
    assert snapshot(two_epochs) == before


def test_resuming_best_in_place_is_refused_when_last_is_newer(tiny_corpus, tmp_path):
    save = str(tmp_path / "run")
    # lr 0 with dropout 0: the validation loss never improves after epoch 1, so best stays at epoch 1
    fit(tiny_config(tiny_corpus, epochs=2, lr=0.0, save_dir=save))
    assert os.readlink(os.path.join(save, "best")) == "epoch-0001"
    before = snapshot(save)
    with pytest.raises(CheckpointError) as err:
        fit(tiny_config(tiny_corpus, epochs=3, lr=0.0), resume=os.path.join(save, "best"))
    assert "newer" in str(err.value) and "give a new save_dir" in str(err.value)  # a notebook's words
    assert snapshot(save) == before


def test_resuming_a_complete_run_says_so(two_epochs):
    before = snapshot(two_epochs)
    out = run_cli(["--resume", two_epochs, "--progress", "none"])
    assert out.returncode == 2 and "complete" in out.stderr and "--epochs" in out.stderr, out.stderr
    assert snapshot(two_epochs) == before


def test_a_loose_checkpoint_folder_needs_a_save_dir(two_epochs, tmp_path):
    loose = str(tmp_path / "loose")
    shutil.copytree(os.path.join(two_epochs, "last"), loose)
    out = run_cli(["--resume", loose, "--epochs", "3", "--progress", "none"])
    assert out.returncode == 2 and "--save-dir" in out.stderr, out.stderr
    out = run_cli(["--resume", loose, "--epochs", "3", "--save-dir", str(tmp_path / "new"), "--progress", "none"])
    assert out.returncode == 0, out.stderr
    assert state_of(str(tmp_path / "new" / "last"))["epoch"] == 3


def test_fit_refuses_a_different_architecture(tiny_corpus, tmp_path):
    save = str(tmp_path / "run")
    fit(tiny_config(tiny_corpus, epochs=1, save_dir=save))
    with pytest.raises(CheckpointError):
        fit(tiny_config(tiny_corpus, epochs=2, hidden_dim=10), resume=save)
    with pytest.raises(CheckpointError) as err:  # an SGD run resumed as Adam would start from zero moments
        fit(tiny_config(tiny_corpus, epochs=2, optimizer="adam"), resume=save)
    assert "optimizer" in str(err.value)
    with pytest.raises(ConfigError):
        tiny_config(tiny_corpus).replace(batch_size=0)


def test_resume_restores_the_plateau_factor_and_the_best_loss(tiny_corpus, tmp_path):
    """Under --lr-decay both matter: an uninterrupted run is the oracle for the resumed one."""
    # lr 0 and no dropout: validation never improves after epoch 1, so every later epoch decays the plateau
    base = tiny_config(tiny_corpus, lr=0.0, lr_decay=0.5)
    whole = str(tmp_path / "whole")
    fit(base.replace(epochs=4, save_dir=whole))
    split = str(tmp_path / "split")
    fit(base.replace(epochs=2, save_dir=split))
    assert state_of(os.path.join(split, "last"))["plateau_factor"] < 1  # the decay happened before the resume
    fit(base.replace(epochs=4), resume=split)
    for key in ("plateau_factor", "best_val_loss", "epoch"):
        assert state_of(os.path.join(split, "last"))[key] == state_of(os.path.join(whole, "last"))[key], key
    assert os.readlink(os.path.join(split, "best")) == os.readlink(os.path.join(whole, "best"))
    # and the rate a resumed epoch trains at follows the restored plateau factor
    history = fit(base.replace(epochs=5, lr=1.0), resume=split)
    plateau = state_of(os.path.join(whole, "last"))["plateau_factor"]
    assert history.series("lr")[-1] == learning_rate(base.replace(lr=1.0), 5, plateau)


def test_a_resumed_runs_log_counts_each_batch_once(tiny_corpus, tmp_path):
    """Interrupted in epoch 2 after some reports, then resumed: the log holds the interrupted epoch's reports
    and the resumed run's, and says so with a resume event, so that its readers count every batch once."""
    from ptb_lm.reporting import read_events

    save, log = str(tmp_path / "run"), str(tmp_path / "run.jsonl")
    config = lstm_config(tiny_corpus, epochs=3, save_dir=save, log_json=log, eval_period=5)

    def interrupt_late_in_epoch_2(event):
        if event["event"] == "batch" and event["epoch"] == 2 and event["batch"] >= 15:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        fit(config, on_event=interrupt_late_in_epoch_2)
    raw_before = [json.loads(line) for line in open(log)]
    assert [e["batch"] for e in raw_before if e["event"] == "batch" and e["epoch"] == 2] == [5, 10, 15]
    fit(config, resume=save)
    raw = [json.loads(line) for line in open(log)]
    assert {"event": "resume", "after_epoch": 1} in raw
    events = read_events(log)
    whole = fit(lstm_config(tiny_corpus, epochs=3, eval_period=5))  # the same run, never interrupted
    key = lambda e: (e["event"], e.get("epoch"), e.get("batch"))  # noqa: E731
    assert [key(e) for e in events] == [key(e) for e in whole.events]
    assert len(set(key(e) for e in events)) == len(events)


@pytest.mark.parametrize("engine", ["fast", "imperative"])
@pytest.mark.parametrize("settings", [dict(optimizer="adam", lr=0.005), dict(optimizer="momentum", lr=0.3,
                                                                                weight_decay=1e-4),
                                      dict(optimizer="adamw", lr=0.005, weight_decay=0.01)],
                         ids=["adam", "momentum", "adamw"])
def test_a_resumed_run_with_optimizer_state_ends_bit_for_bit_where_an_uninterrupted_one_does(tiny_corpus, tmp_path,
                                                                                          settings, engine):
    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    config = lstm_config(tiny_corpus, engine=engine, **settings)
    fit(config.replace(epochs=3, save_dir=whole))
    fit(config.replace(epochs=2, save_dir=parts))
    fit(config.replace(epochs=3, save_dir=parts), resume=parts)
    for name in ("model.params", "optimizer.params"):
        a, b = (open(os.path.join(folder, "last", name), "rb").read() for folder in (whole, parts))
        assert a == b, name
    assert state_of(os.path.join(parts, "last"))["optimizer"]["steps"] == \
        state_of(os.path.join(whole, "last"))["optimizer"]["steps"] > 0


def test_a_damaged_optimizer_state_is_refused(tiny_corpus, tmp_path):
    from ptb_lm.checkpoint import Checkpoint

    save = str(tmp_path / "run")
    fit(lstm_config(tiny_corpus, epochs=1, save_dir=save, optimizer="adam", lr=0.01))
    path = os.path.join(save, "last", "optimizer.params")
    data = bytearray(open(path, "rb").read())
    data[-5] ^= 0xFF
    open(path, "wb").write(bytes(data))
    with pytest.raises(CheckpointError) as err:
        Checkpoint(save)
    assert "optimizer.params is damaged" in str(err.value)


def test_an_adam_run_branched_into_a_new_save_dir_takes_its_optimizer_state_along(tiny_corpus, tmp_path):
    """--resume OLD --save-dir NEW copies the checkpoint into NEW; the copy must hold Adam's moments, so that the
    branch, stopped before its first new epoch ends and resumed from its copy alone, ends bit for bit where an
    uninterrupted run does."""
    whole, parts, branch = (str(tmp_path / name) for name in ("whole", "parts", "branch"))
    config = lstm_config(tiny_corpus, optimizer="adam", lr=0.005, eval_period=5)
    fit(config.replace(epochs=3, save_dir=whole))
    fit(config.replace(epochs=2, save_dir=parts))

    def stop_in_epoch_3(event):
        if event["event"] == "batch":
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        fit(config.replace(epochs=3, save_dir=branch), resume=parts, on_event=stop_in_epoch_3)
    shutil.rmtree(parts)  # the branch must stand on its own copy
    fit(config.replace(epochs=3), resume=branch)
    for name in ("model.params", "optimizer.params"):
        a, b = (open(os.path.join(folder, "last", name), "rb").read() for folder in (whole, branch))
        assert a == b, name
