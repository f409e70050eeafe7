"""How flags, presets and --resume combine into a config (no training)."""
import io

import pytest

from ptb_lm import fit
from ptb_lm.cli import config_from_args, train_parser
from ptb_lm.errors import UserError
from ptb_lm.config import TrainConfig, from_preset
from ptb_lm.reporting import Progress


def parse(*argv):
    return config_from_args(train_parser().parse_args(list(argv)))


def test_no_flags_is_the_chapter_config():
    assert parse() == (TrainConfig(), None)


def test_explicit_flags_override_the_preset_and_only_they_do():
    config, _ = parse("--preset", "zaremba-small", "--lr", "0.5", "--epochs", "2")
    assert config == from_preset("zaremba-small", lr=0.5, epochs=2)
    assert parse("--preset", "zaremba-medium-tied")[0].tied
    assert parse("--tied", "--embed-dim", "64", "--hidden-dim", "64")[0].tied


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
])
def test_resume_refuses_a_preset_or_an_architecture_flag(saved_run, flags, words):
    save, _ = saved_run
    with pytest.raises(UserError) as err:
        parse("--resume", save, "--epochs", "3", *flags)
    for word in words:
        assert word in str(err.value)


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
