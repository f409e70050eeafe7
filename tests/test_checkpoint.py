"""Checkpoints, resume, schedules, divergence and interruption, on the tiny corpus."""
import hashlib
import json
import os

import mxnet as mx
import pytest

from ptb_lm import TrainConfig, fit, load
from ptb_lm.data import Corpus, batchify
from ptb_lm.errors import Interrupted, TrainingDiverged
from ptb_lm.runner import learning_rate
from ptb_lm.training import evaluate


def tiny_config(tiny_corpus, **changes):
    values = dict(mode="lstm", embed_dim=12, hidden_dim=12, batch_size=4, num_steps=5, dropout=0.3, epochs=3,
                  seed=11, data=tiny_corpus, ctx="cpu", eval_period=10, progress="none")
    values.update(changes)
    return TrainConfig(**values)


def epoch_losses(history):
    return [e[k] for e in history.of("epoch") for k in ("train_loss", "val_loss")]


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


def test_resume_reaches_the_same_losses_as_an_uninterrupted_run(tiny_corpus, tmp_path):
    whole = fit(tiny_config(tiny_corpus, epochs=3))
    first = tiny_config(tiny_corpus, epochs=2, save_dir=str(tmp_path / "run"))
    fit(first)
    resumed = fit(first.replace(epochs=3), resume=str(tmp_path / "run"))
    assert len(resumed.of("epoch")) == 3
    assert epoch_losses(resumed) == pytest.approx(epoch_losses(whole), rel=1e-6)
    assert resumed.test["test_loss"] == pytest.approx(whole.test["test_loss"], rel=1e-6)


def test_learning_rate_schedules():
    zaremba = TrainConfig(lr=1.0, lr_decay_after=4, lr_decay_per_epoch=0.5)
    assert [learning_rate(zaremba, e) for e in range(1, 8)] == [1, 1, 1, 1, 0.5, 0.25, 0.125]
    assert learning_rate(TrainConfig(lr=2.0), 50) == 2.0  # off by default: the seed's constant rate
    assert learning_rate(TrainConfig(lr=2.0, lr_decay=0.25), 3, plateau_factor=0.25) == 0.5


def test_the_epoch_events_follow_the_schedule(tiny_corpus):
    history = fit(tiny_config(tiny_corpus, epochs=3, lr_decay_after=1, lr_decay_per_epoch=0.5))
    assert history.series("lr") == [1.0, 0.5, 0.25]


def test_plateau_decay_lowers_the_rate_when_validation_does_not_improve(tiny_corpus, tmp_path):
    # with a rate of 0 the validation loss never improves after epoch 1, so epochs 2 and 3 each decay it
    save = str(tmp_path / "run")
    history = fit(tiny_config(tiny_corpus, epochs=3, lr=0.0, lr_decay=0.5, dropout=0.0, save_dir=save))
    val = history.series("val_loss")
    assert val[0] == val[1] == val[2]
    state = json.loads(open(os.path.join(save, "last", "state.json")).read())
    assert state["plateau_factor"] == 0.25 and state["best_val_loss"] == val[0]
    assert os.readlink(os.path.join(save, "best")) == "epoch-0001"
    # a normal run decays only after an epoch that did not improve on the best so far
    normal = fit(tiny_config(tiny_corpus, epochs=3, lr=3.0, lr_decay=0.5))
    lrs, val = normal.series("lr"), normal.series("val_loss")
    assert lrs[1] == lrs[0] == 3.0
    assert lrs[2] == (1.5 if val[1] >= val[0] else 3.0)


def test_tied_weights_train_and_reload(tiny_corpus, tmp_path):
    config = tiny_config(tiny_corpus, epochs=1, tied=True, save_dir=str(tmp_path / "t"))
    history = fit(config)
    model, _, saved = load(str(tmp_path / "t"))
    assert saved.tied and model.decoder.weight is model.encoder.weight
    assert history.test["test_ppl"] > 1


def sha1(path):
    return hashlib.sha1(open(path, "rb").read()).hexdigest()


def test_divergence_stops_the_run_and_leaves_best_intact(tiny_corpus, tmp_path):
    save = str(tmp_path / "run")
    fit(tiny_config(tiny_corpus, epochs=1, save_dir=save))
    best_params = os.path.join(save, "best", "model.params")
    before = sha1(best_params)
    with pytest.raises(TrainingDiverged) as err:
        fit(tiny_config(tiny_corpus, epochs=2, save_dir=save, lr=1e38, clipping_norm=1e30), resume=save)
    assert "diverged" in str(err.value)
    assert os.readlink(os.path.join(save, "best")) == "epoch-0001" and sha1(best_params) == before


def test_ctrl_c_keeps_the_last_checkpoint_and_says_how_to_resume(tiny_corpus, tmp_path):
    save = str(tmp_path / "run")

    def interrupt_in_epoch_2(event):
        if event["event"] == "batch" and event["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as err:
        fit(tiny_config(tiny_corpus, epochs=3, save_dir=save), on_event=interrupt_in_epoch_2)
    assert "--resume %s" % save in str(err.value)
    assert json.loads(open(os.path.join(save, "last", "state.json")).read())["epoch"] == 1
    resumed = fit(tiny_config(tiny_corpus, epochs=3, save_dir=save), resume=save)
    assert [e["epoch"] for e in resumed.of("epoch")] == [1, 2, 3]
