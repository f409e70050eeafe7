"""The registry of model families: every mode has one, and what it says of its model is what the model does."""
import os
import re

import mxnet as mx
import numpy as np
import pytest

from ptb_lm import TrainConfig
from ptb_lm.families import FAMILIES, MODES, ModelFamily, family_of
from ptb_lm.model import ALL_PARAMETERS, tensor_sizes

from helpers import ROOT


def config_of(mode, **changes):
    values = dict(mode=mode, embed_dim=8, hidden_dim=8, num_layers=2, heads=2, batch_size=3, num_steps=4,
                  dropout=0.0)
    values.update(changes)
    return TrainConfig(**values)


def test_every_mode_has_one_family_and_every_family_the_whole_interface():
    assert sorted(MODES) == sorted(m for f in FAMILIES for m in f.modes)
    assert len(MODES) == len(set(MODES))
    for family in FAMILIES:
        assert isinstance(family, ModelFamily)  # an abstract method left out could not be instantiated


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("tied", [False, True])
def test_what_a_family_says_of_its_model_is_what_the_model_does(mode, tied):
    """The oracle is the built block itself: its parameters, its state, and whether it carries it."""
    config = config_of(mode, tied=tied)
    family = family_of(mode)
    vocab = 11
    model = family.build(config, vocab)
    model.initialize_parameters(mx.cpu())
    assert model.carries_state == family.carries_state
    state = model.begin_state(func=mx.nd.zeros, batch_size=3, ctx=mx.cpu())
    assert len(state) == len(family.state_names(mode))
    assert all(s.shape == (config.num_layers, 3, config.hidden_dim) for s in state)
    tokens = mx.nd.array(np.arange(12).reshape(4, 3) % vocab, dtype="int32")
    logits, _ = model(tokens, state)
    assert logits.shape == (4 * 3, vocab)
    model.keep_auxiliary(model.auxiliary)  # every block offers its auxiliary outputs the one way, (T, N, hidden)
    _, _, auxiliary = model.with_auxiliary(tokens, state)
    assert sorted(auxiliary) == sorted(model.auxiliary)
    assert all(a.shape == (4, 3, config.hidden_dim) for a in auxiliary.values())
    counted = sum(int(np.prod(p.shape)) for p in model.collect_params().values() if p.grad_req != "null")
    assert tensor_sizes(config, vocab)[ALL_PARAMETERS] == counted


def test_no_module_asks_which_family_a_model_is():
    """The registry answers: no mode compared to 'transformer' outside its family's modules, and no carries_state
    read with a default that would hide a model lacking it."""
    asked = []
    for package in ("ptb_lm", "ptb_lm_onnx"):
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                path = os.path.join(folder, name)
                if not name.endswith(".py") or os.sep + "families" + os.sep in path or name == "transformer.py":
                    continue
                text = open(path, encoding="utf-8").read()
                for pattern in (r"mode\s*[!=]=\s*\"transformer\"", r"getattr\([^)]*carries_state"):
                    asked += ["%s: %s" % (os.path.relpath(path, ROOT), m) for m in re.findall(pattern, text)]
    assert asked == []
