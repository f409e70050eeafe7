import logging

import mxnet as mx
import pytest

from ptb_lm.errors import ContextError
from ptb_lm.runtime import devices as context


@pytest.mark.parametrize("spec, parsed", [
    ("auto", ("auto", [])), ("cpu", ("cpu", [0])), ("gpu", ("gpu", [0])), ("gpu:3", ("gpu", [3])),
    ("gpu:0,1,2,3", ("gpu", [0, 1, 2, 3])), ("cpu:0,1", ("cpu", [0, 1])), (" GPU:1 ", ("gpu", [1])),
])
def test_parse_ctx_spec(spec, parsed):
    assert context.parse_ctx_spec(spec) == parsed


@pytest.mark.parametrize("spec", ["tpu", "gpu:", "gpu:a", "cpu:0,0", ""])
def test_unknown_ctx_is_a_clear_error(spec):
    with pytest.raises(ContextError):
        context.parse_ctx_spec(spec)


def test_try_gpu_falls_back_when_a_visible_gpu_cannot_compute(monkeypatch, caplog):
    """A GPU that the driver lists but that cannot run our code (e.g. a Hopper GPU with a wheel built
    for sm_50..sm_86): the real probe fails on this CPU-only build, so the fallback path is real."""
    monkeypatch.setattr(mx.context, "num_gpus", lambda: 1)
    with caplog.at_level(logging.INFO, logger="ptb_lm"):
        ctx = context.try_gpu()
    assert ctx == mx.cpu()
    # the range the wheel's cubins cover (sm_50 .. sm_86, and 8.9 by compatibility), as the doctor states it
    assert "GPU 0 cannot compute" in caplog.text and "5.0 to 8.9" in caplog.text


def test_try_gpu_returns_the_gpu_once_a_computation_finished_there(monkeypatch):
    probed = []
    monkeypatch.setattr(mx.context, "num_gpus", lambda: 2)
    monkeypatch.setattr(context, "_probe", probed.append)
    assert context.try_gpu(1) == mx.gpu(1)
    assert probed == [mx.gpu(1)]


def test_try_gpu_with_no_gpu_logs_why(caplog):
    with caplog.at_level(logging.INFO, logger="ptb_lm"):
        assert context.try_gpu() == mx.cpu()
    assert "training on the CPU" in caplog.text


def test_asking_for_a_gpu_that_cannot_compute_is_an_error(monkeypatch):
    monkeypatch.setattr(mx.context, "num_gpus", lambda: 1)
    with pytest.raises(ContextError) as err:
        context.resolve_contexts("gpu:0")
    assert "--ctx cpu" in str(err.value)
    assert context.resolve_contexts("cpu:0,1") == [mx.cpu(0), mx.cpu(1)]
