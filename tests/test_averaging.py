"""NT-ASGD (ptb_lm.averaging, --optimizer ntasgd): its trigger replayed as awd-lstm-lm's main.py writes it, its
average against numpy's mean of the iterates in both engines, evaluation on the average, and a resume on either
side of the switch that ends bit for bit where an uninterrupted run does."""
import os

import mxnet as mx
import numpy as np
import pytest

from ptb_lm import averaging, fit
from ptb_lm.assembly import assemble
from ptb_lm.averaging import Averager
from ptb_lm.data import Corpus
from ptb_lm.scoring import score_checkpoint
from ptb_lm.training import train_epoch

from helpers import tiny_config


def awd_switch_epoch(losses, nonmono):
    """awd-lstm-lm's main.py, its epoch loop reduced to the trigger: the epoch after which ASGD takes over."""
    best_val_loss = []
    for epoch, val_loss in enumerate(losses, 1):
        if len(best_val_loss) > nonmono and val_loss > min(best_val_loss[:-nonmono]):
            return epoch
        best_val_loss.append(val_loss)
    return None


@pytest.mark.parametrize("nonmono", [1, 2, 5])
def test_the_trigger_is_awds_rule(nonmono):
    rng = np.random.RandomState(nonmono)
    for _ in range(200):
        losses = (5 - np.cumsum(rng.uniform(-0.05, 0.2, size=12))).tolist()  # mostly falling, now and then not
        averager = Averager(nonmono, lambda k: [mx.nd.zeros((2,))], 1)
        switched = [epoch for epoch, loss in enumerate(losses, 1) if averager.end_of_epoch(epoch, loss) == "switch"]
        expected = awd_switch_epoch(losses, nonmono)
        assert switched == ([] if expected is None else [expected])
        assert averager.started_after == expected
        # finetune.py's loop stops ("Done!") by the same rule, on the fine-tuning's own losses
        averager.begin_finetune(0)
        stops = [epoch for epoch, loss in enumerate(losses, 1) if averager.end_of_epoch(epoch, loss) == "stop"]
        assert stops[:1] == ([] if expected is None else [expected])


def ntasgd_config(tiny_corpus, **changes):
    return tiny_config(tiny_corpus, **dict(dict(mode="lstm", optimizer="ntasgd", nonmono=1, lr=1.0, dropout=0.0),
                                           **changes))


@pytest.mark.parametrize("engine", ["fast", "imperative"])
def test_the_average_is_the_mean_of_the_iterates_after_the_switch(tiny_corpus, engine):
    run = assemble(ntasgd_config(tiny_corpus, engine=engine, max_batches=6), Corpus(tiny_corpus))
    params = [p for p in run.model.collect_params().values() if p.grad_req != "null"]

    def weights():
        return np.concatenate([p.data().asnumpy().ravel() for p in params])

    for epoch, loss in enumerate([0.5, 1.0, 0.9], 1):  # 0.9: worse than the best but the last epoch (0.5)
        switched = run.updater.end_of_epoch(epoch, loss)
    assert switched and run.updater.average.started_after == 3
    iterates = []
    train_epoch(run, between_batches=lambda: iterates.append(weights()))
    iterates = iterates[1:] + [weights()]  # the weights after each of the 6 steps
    with run.updater.evaluation_weights():
        averaged = weights()
    np.testing.assert_allclose(averaged, np.mean(iterates, axis=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(weights(), iterates[-1])  # training goes on from the iterate
    assert run.updater.average.count == 6


def switch_after_epoch(monkeypatch, epoch):
    """Make the trigger fire after ``epoch`` (the trigger's own rule is the test above)."""
    monkeypatch.setattr(averaging, "should_switch", lambda history, val_loss, nonmono: len(history) == epoch - 1)


@pytest.mark.parametrize("stop", [1, 2, 3], ids=["stopped-before-the-switch", "stopped-at-it", "stopped-after-it"])
def test_a_resume_across_the_switch_ends_bit_for_bit_where_an_uninterrupted_run_does(tiny_corpus, tmp_path,
                                                                                     monkeypatch, stop):
    switch_after_epoch(monkeypatch, 2)
    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    config = ntasgd_config(tiny_corpus, epochs=4)
    fit(config.replace(save_dir=whole), quiet=True)
    fit(config.replace(epochs=stop, save_dir=parts), quiet=True)
    fit(config.replace(save_dir=parts), resume=parts, quiet=True)
    for name in ("model.params", "optimizer.params"):
        a, b = (open(os.path.join(folder, "last", name), "rb").read() for folder in (whole, parts))
        assert a == b, name


def test_validation_best_and_the_test_use_the_average(tiny_corpus, tmp_path, monkeypatch):
    """ptb-lm-evaluate on best/ gives the validation loss the run recorded for that epoch, which after the
    switch was the average's; the averaged weights are not the iterate the run trained on."""
    switch_after_epoch(monkeypatch, 1)
    save = str(tmp_path / "run")
    history = fit(ntasgd_config(tiny_corpus, epochs=3, save_dir=save), quiet=True)
    epochs = history.of("epoch")
    best = min(epochs, key=lambda e: e["val_loss"])
    assert best["epoch"] > 1  # an averaged epoch
    scored = score_checkpoint(os.path.join(save, "best"), split="valid")
    assert scored["loss"] == pytest.approx(best["val_loss"], rel=1e-6)
    assert score_checkpoint(save, split="test")["loss"] == pytest.approx(history.test["test_loss"], rel=1e-6) \
        or best["epoch"] != epochs[-1]["epoch"]
    saved = mx.nd.load(os.path.join(save, "last", "optimizer.params"))
    iterate = {k[:-len(":iterate")]: v for k, v in saved.items() if k.endswith(":iterate")}
    weights = mx.nd.load(os.path.join(save, "last", "model.params"))
    assert iterate and any(not np.array_equal(weights[k].asnumpy(), v.asnumpy()) for k, v in iterate.items())


def finetuning_state(folder):
    scalars = mx.nd.load(os.path.join(folder, "last", "optimizer.params"))[averaging.SCALARS].asnumpy()
    return dict(zip(["active", "count", "started_after", "history", "finetuning"], scalars.tolist()))


def test_finetuning_averages_from_its_first_step_stops_when_the_trigger_fires_and_resumes_exactly(
        tiny_corpus, tmp_path, monkeypatch):
    trained = str(tmp_path / "trained")
    fit(ntasgd_config(tiny_corpus, epochs=2, save_dir=trained), quiet=True)
    monkeypatch.setattr(averaging, "should_switch", lambda history, val_loss, nonmono: len(history) == 1)
    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    config = ntasgd_config(tiny_corpus, epochs=6, finetune=True)
    history = fit(config.replace(save_dir=whole), resume=os.path.join(trained, "last"), quiet=True)
    assert [e["epoch"] for e in history.of("epoch")] == [1, 2, 3, 4]  # the trigger fired after epoch 4
    state = finetuning_state(whole)
    batches = history.of("epoch")[-1]["batches"]
    assert state == dict(active=1, count=2 * batches, started_after=2, history=2, finetuning=1)
    fit(config.replace(epochs=3, save_dir=parts), resume=os.path.join(trained, "last"), quiet=True)
    fit(config.replace(save_dir=parts), resume=parts, quiet=True)
    for name in ("model.params", "optimizer.params"):
        a, b = (open(os.path.join(folder, "last", name), "rb").read() for folder in (whole, parts))
        assert a == b, name


def test_finetuning_starts_from_the_weights_the_run_evaluates(tiny_corpus, tmp_path, monkeypatch):
    """A run averaging since epoch 1 holds its average in model.params and its iterate elsewhere; fine-tuning
    at rate 0 then keeps the average it started from."""
    switch_after_epoch(monkeypatch, 1)  # the training switches after epoch 1; the fine-tuning stops after one
    trained, tuned = str(tmp_path / "trained"), str(tmp_path / "tuned")
    fit(ntasgd_config(tiny_corpus, epochs=2, save_dir=trained), quiet=True)
    fit(ntasgd_config(tiny_corpus, epochs=3, lr=0.0, finetune=True, save_dir=tuned),
        resume=os.path.join(trained, "last"), quiet=True)
    start = mx.nd.load(os.path.join(trained, "last", "model.params"))
    iterate = mx.nd.load(os.path.join(trained, "last", "optimizer.params"))
    end = mx.nd.load(os.path.join(tuned, "last", "model.params"))
    assert any(not np.allclose(start[k].asnumpy(), iterate[k + ":iterate"].asnumpy()) for k in start)
    for name in start:
        np.testing.assert_allclose(end[name].asnumpy(), start[name].asnumpy(), rtol=1e-6, atol=1e-7)


def test_finetuning_needs_a_run_to_continue(tiny_corpus):
    from ptb_lm.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        fit(ntasgd_config(tiny_corpus, finetune=True), quiet=True)
    assert "--resume RUN/best --save-dir NEW --finetune" in str(err.value)
