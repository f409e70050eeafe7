"""The config: the chapter's defaults, the checks, presets from JSON, and how flags and presets combine."""

import pytest

from ptb_lm.cli import config_from_args, train_parser
from ptb_lm.config import PRESETS, TrainConfig, check_fits_data, from_preset
from ptb_lm.errors import ConfigError


def test_defaults_are_the_seeds_hyperparameters():
    # the seed's notebook cell In [6], checked field by field
    seed = dict(mode="rnn_relu", embed_dim=100, hidden_dim=100, num_layers=2, lr=1.0, clipping_norm=0.2,
                epochs=100, batch_size=32, num_steps=5, dropout=0.2, eval_period=500)
    config = TrainConfig()
    assert {k: getattr(config, k) for k in seed} == seed
    assert config.eval_batch == config.batch_size  # evaluation at the training batch size


@pytest.mark.parametrize("change, words", [
    (dict(mode="tcn"), "rnn_relu, rnn_tanh, lstm, gru, transformer"),
    (dict(mode="transformer", embed_dim=100, hidden_dim=100, heads=3), "heads must divide"),
    (dict(mode="transformer", embed_dim=64, hidden_dim=100), "--embed-dim and --hidden-dim alike"),
    (dict(weight_decay=-1e-4), "weight_decay must be 0 or more"),
    (dict(optimizer="adam", betas=(0.9, 1.0)), "betas must be two numbers in [0, 1)"),
    (dict(optimizer="adam", betas=(-0.1, 0.9)), "betas"),
    (dict(optimizer="lamb"), "unknown optimizer 'lamb': choose one of sgd, momentum, adam, adamw"),
    (dict(optimizer="adam", momentum=0.9), "momentum goes with --optimizer momentum"),
    (dict(optimizer="momentum", momentum=1.0), "momentum must be in [0, 1)"),
    (dict(batch_size=0), "batch_size"),
    (dict(num_steps=-1), "num_steps"),
    (dict(lr=-0.1), "lr"),
    (dict(dropout=1.0), "dropout"),
    (dict(dropout=-0.1), "dropout"),
    (dict(engine="turbo"), "engine"),
    (dict(tied=True, embed_dim=100, hidden_dim=200), "embed_dim == hidden_dim"),
    (dict(lr_decay_after=3), "go together"),
])
def test_bad_settings_raise_a_clear_error(change, words):
    with pytest.raises(ConfigError) as err:
        TrainConfig(**change)
    assert words in str(err.value)


def test_config_is_frozen_and_replace_validates():
    config = TrainConfig()
    with pytest.raises(Exception):
        config.lr = 2.0
    assert config.replace(lr=0.5).lr == 0.5 and config.lr == 1.0
    with pytest.raises(ConfigError):
        config.replace(dropout=2.0)


def test_batch_must_fit_the_smallest_split():
    lengths = {"train": 1000, "valid": 100, "test": 90}
    check_fits_data(TrainConfig(batch_size=10, num_steps=5), lengths)
    with pytest.raises(ConfigError) as err:
        check_fits_data(TrainConfig(batch_size=50, num_steps=5), lengths)
    assert "test split" in str(err.value) and "at most 45" in str(err.value)
    with pytest.raises(ConfigError) as err:
        check_fits_data(TrainConfig(batch_size=10, num_steps=9), lengths)
    assert "num_steps 9" in str(err.value)


def test_presets_are_overridden_by_explicit_values():
    small = from_preset("zaremba-small")
    assert (small.mode, small.hidden_dim, small.num_steps, small.batch_size) == ("lstm", 200, 20, 20)
    # Zaremba clips the batch-averaged, time-summed gradient at 5: per token that is 5 / num_steps
    assert small.clipping_norm * small.num_steps == pytest.approx(5.0)
    assert from_preset("zaremba-large").clipping_norm * 35 == pytest.approx(10.0)
    changed = from_preset("zaremba-small", lr=0.5, epochs=2)
    assert (changed.lr, changed.epochs, changed.hidden_dim) == (0.5, 2, 200)
    assert from_preset("zaremba-small-tied").tied and not small.tied
    assert from_preset("chapter") == TrainConfig()
    with pytest.raises(ConfigError):
        from_preset("nope")
    assert set(PRESETS) >= {"chapter", "zaremba-small", "zaremba-medium", "zaremba-large"}


def test_the_pytorch_examples_recipe_is_its_command_in_our_units(tmp_path):
    """main.py --emsize 200 --nhid 200 --dropout 0.2 --epochs 40 --tied (lr 20, clip 0.25, bptt 35, batch 20, eval
    batch 10, lr / 4 on a plateau): its loss is the mean over T x N where ours is the sum, the step / N."""
    example = dict(emsize=200, nhid=200, nlayers=2, dropout=0.2, epochs=40, lr=20.0, clip=0.25, bptt=35,
                   batch_size=20, eval_batch_size=10)
    ours = from_preset("pytorch-tied-200")
    assert (ours.mode, ours.tied, ours.embed_dim, ours.hidden_dim, ours.num_layers, ours.dropout, ours.epochs) == \
        ("lstm", True, example["emsize"], example["nhid"], example["nlayers"], example["dropout"], example["epochs"])
    assert (ours.num_steps, ours.batch_size, ours.eval_batch_size) == \
        (example["bptt"], example["batch_size"], example["eval_batch_size"])
    assert ours.lr * ours.num_steps == pytest.approx(example["lr"])  # the same step on the same gradient
    assert ours.clipping_norm == example["clip"] and ours.lr_decay == 0.25
    # the reasons beside the settings are notes, not settings; an unknown setting is still refused
    notes = tmp_path / "mine.json"
    notes.write_text('{"_why": "a note", "lr": 0.5}')
    assert from_preset(str(notes)).lr == 0.5
    notes.write_text('{"why": "a note"}')
    with pytest.raises(ConfigError):
        from_preset(str(notes))


def test_config_round_trips_through_json():
    import json

    config = from_preset("zaremba-medium", seed=4)
    assert TrainConfig.from_dict(json.loads(config.to_json())) == config


def parse(*argv):
    return config_from_args(train_parser().parse_args(list(argv)))


def test_no_flags_is_the_chapter_config():
    assert parse() == (TrainConfig(), None)


def test_explicit_flags_override_the_preset_and_only_they_do():
    config, _ = parse("--preset", "zaremba-small", "--lr", "0.5", "--epochs", "2")
    assert config == from_preset("zaremba-small", lr=0.5, epochs=2)
    assert parse("--preset", "zaremba-medium-tied")[0].tied
    assert parse("--tied", "--embed-dim", "64", "--hidden-dim", "64")[0].tied
