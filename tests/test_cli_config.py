"""How flags, presets and --resume combine into a config (no training)."""
import io

from ptb_lm.cli import config_from_args, train_parser
from ptb_lm.config import TrainConfig, from_preset
from ptb_lm.reporting import Progress


def parse(*argv):
    return config_from_args(train_parser().parse_args(list(argv)))


def test_no_flags_is_the_seed_config():
    assert parse() == TrainConfig()


def test_explicit_flags_override_the_preset_and_only_they_do():
    config = parse("--preset", "zaremba-small", "--lr", "0.5", "--epochs", "2")
    assert config == from_preset("zaremba-small", lr=0.5, epochs=2)
    assert parse("--preset", "zaremba-medium-tied").tied
    assert parse("--tied", "--embed-dim", "64", "--hidden-dim", "64").tied


def test_resume_takes_the_checkpoint_config_and_the_flags_given(tmp_path):
    from ptb_lm.data import Dictionary
    import os

    folder = tmp_path / "run" / "epoch-0001"
    folder.mkdir(parents=True)
    saved = from_preset("zaremba-small", seed=3, save_dir=str(tmp_path / "run"))
    (folder / "config.json").write_text(saved.to_json())
    (folder / "state.json").write_text("{}")
    d = Dictionary()
    d.add_word("a")
    d.save(str(folder / "vocab.txt"))
    os.symlink("epoch-0001", str(tmp_path / "run" / "last"))
    config = parse("--resume", str(tmp_path / "run"), "--epochs", "20")
    assert config == saved.replace(epochs=20)


def test_progress_is_a_bar_only_in_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    plain = io.StringIO()
    progress = Progress("auto", stream=plain)
    progress.start(1, 10)
    progress.update(5)
    progress.close()
    assert not progress.enabled and plain.getvalue() == ""
    term = Terminal()
    progress = Progress("auto", stream=term, mininterval=0)
    progress.start(1, 10)
    for _ in range(10):
        progress.update(5)
    progress.report(4.5)
    progress.close()
    shown = term.getvalue()
    assert progress.enabled and "epoch 1" in shown and "10/10" in shown and "loss=4.50" in shown
