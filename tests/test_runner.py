"""The epoch loop: the learning-rate schedules, and the events a run emits as it follows them."""
import json
import os

from ptb_lm import TrainConfig, fit
from ptb_lm.runner import learning_rate

from helpers import lstm_config


def test_learning_rate_schedules():
    zaremba = TrainConfig(lr=1.0, lr_decay_after=4, lr_decay_per_epoch=0.5)
    assert [learning_rate(zaremba, e) for e in range(1, 8)] == [1, 1, 1, 1, 0.5, 0.25, 0.125]
    assert learning_rate(TrainConfig(lr=2.0), 50) == 2.0  # off by default: the seed's constant rate
    assert learning_rate(TrainConfig(lr=2.0, lr_decay=0.25), 3, plateau_factor=0.25) == 0.5


def test_the_epoch_events_follow_the_schedule(tiny_corpus):
    history = fit(lstm_config(tiny_corpus, epochs=3, lr_decay_after=1, lr_decay_per_epoch=0.5))
    assert history.series("lr") == [1.0, 0.5, 0.25]


def test_plateau_decay_lowers_the_rate_when_validation_does_not_improve(tiny_corpus, tmp_path):
    # with a rate of 0 the validation loss never improves after epoch 1, so epochs 2 and 3 each decay it
    save = str(tmp_path / "run")
    history = fit(lstm_config(tiny_corpus, epochs=3, lr=0.0, lr_decay=0.5, dropout=0.0, save_dir=save))
    val = history.series("val_loss")
    assert val[0] == val[1] == val[2]
    state = json.loads(open(os.path.join(save, "last", "state.json")).read())
    assert state["plateau_factor"] == 0.25 and state["best_val_loss"] == val[0]
    assert os.readlink(os.path.join(save, "best")) == "epoch-0001"
    # a normal run decays only after an epoch that did not improve on the best so far
    normal = fit(lstm_config(tiny_corpus, epochs=3, lr=3.0, lr_decay=0.5))
    lrs, val = normal.series("lr"), normal.series("val_loss")
    assert lrs[1] == lrs[0] == 3.0
    assert lrs[2] == (1.5 if val[1] >= val[0] else 3.0)
