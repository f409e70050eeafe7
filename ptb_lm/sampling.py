"""Sampling words from a trained model (``ptb-lm-generate``)."""

from ptb_lm_onnx import prompt_ids as shared_prompt_ids, sample_ids

from .config import check_seed, check_whole_number
from .data import unknown_id
from .errors import ConfigError
from .runtime import import_mxnet

mx = import_mxnet()


def check_sampling(num_words, temperature, seed=None):
    """Raise ConfigError, naming the setting, unless :func:`generate` can sample with these."""
    check_whole_number("words", num_words)
    if not temperature > 0:
        raise ConfigError("temperature must be above 0, got %g" % temperature, setting="temperature")
    if seed is not None:
        check_seed("seed", seed)


def prompt_ids(dictionary, prompt):
    """``(ids, unknown)``: the prompt's words as ids (``<eos>`` for an empty prompt), and those outside the
    vocabulary, which read as ``<unk>`` (DataError, naming them, where the vocabulary has none)."""
    return shared_prompt_ids(prompt, dictionary.word_to_idx, lambda words: unknown_id(dictionary, words))


def generate(model, dictionary, num_words, temperature=1.0, prompt="", seed=None, ctx=None, window=35):
    """Sample ``num_words`` words after ``prompt`` (words outside the vocabulary read as ``<unk>``:
    :func:`prompt_ids`).

    Each next word is drawn from softmax(logits / temperature): below 1 sharper,
    above 1 flatter. An RNN reads each new word from its state; a model that carries
    no state (the transformer) reads the last ``window`` words again each time (its
    training window: pass the run's ``num_steps``). Returns the list of sampled words.
    """
    check_sampling(num_words, temperature, seed)
    ctx = ctx or mx.cpu()
    history, _ = prompt_ids(dictionary, prompt)
    hidden = [model.begin_state(func=mx.nd.zeros, batch_size=1, ctx=ctx)]

    def last_logits(tokens):
        logits, hidden[0] = model(mx.nd.array(tokens, ctx=ctx, dtype="int32").reshape((-1, 1)), hidden[0])
        return logits[-1].asnumpy()

    ids = sample_ids(last_logits, history, num_words, temperature, seed, model.carries_state, window)
    return [dictionary.idx_to_word[i] for i in ids]
