"""Checkpoints: what they hold, that they reload whole, and that a failing run leaves the best one intact."""
import hashlib
import json
import os

import mxnet as mx
import pytest

from ptb_lm import fit, load
from ptb_lm.data import Corpus, batchify
from ptb_lm.errors import TrainingDiverged
from ptb_lm.training import evaluate

from helpers import (
    lstm_config,
    tiny_config,
)


def test_checkpoint_round_trip_reproduces_the_validation_loss(tiny_corpus, tmp_path):
    config = tiny_config(tiny_corpus, epochs=2, save_dir=str(tmp_path / "run"))
    history = fit(config)
    folder = tmp_path / "run" / "last"
    assert sorted(os.listdir(str(folder))) == ["config.json", "model.params", "state.json", "vocab.txt"]
    assert json.loads((folder / "state.json").read_text())["epoch"] == 2
    model, vocab, saved = load(str(tmp_path / "run"))
    assert saved == config and len(vocab) == len(Corpus(tiny_corpus).dictionary)
    source = mx.nd.array(batchify(Corpus(tiny_corpus).valid, 4), dtype="int32")
    assert evaluate(model, source, 5) == pytest.approx(history.of("epoch")[-1]["val_loss"], rel=1e-6)
    assert not any(n.endswith(".pkl") or n.endswith(".pickle") for _, _, f in os.walk(str(tmp_path)) for n in f)


def test_tied_weights_train_and_reload(tiny_corpus, tmp_path):
    config = lstm_config(tiny_corpus, epochs=1, tied=True, save_dir=str(tmp_path / "t"))
    history = fit(config)
    model, _, saved = load(str(tmp_path / "t"))
    assert saved.tied and model.decoder.weight is model.encoder.weight
    assert history.test["test_ppl"] > 1


def sha1(path):
    return hashlib.sha1(open(path, "rb").read()).hexdigest()


def test_divergence_stops_the_run_and_leaves_best_intact(tiny_corpus, tmp_path):
    save = str(tmp_path / "run")
    fit(lstm_config(tiny_corpus, epochs=1, save_dir=save))
    best_params = os.path.join(save, "best", "model.params")
    before = sha1(best_params)
    with pytest.raises(TrainingDiverged) as err:
        fit(lstm_config(tiny_corpus, epochs=2, save_dir=save, lr=1e38, clipping_norm=1e30), resume=save)
    assert "diverged" in str(err.value)
    assert os.readlink(os.path.join(save, "best")) == "epoch-0001" and sha1(best_params) == before
