"""The causal Transformer (ptb_lm.transformer) against a numpy oracle written from the papers' formulas:
causality, the attention, the positions, a whole layer stack; and it in the chapter's loop."""
import math

import mxnet as mx
from mxnet import autograd
import numpy as np
import pytest

from ptb_lm import TrainConfig, fit
from ptb_lm.transformer import SelfAttention, TransformerModel, sinusoids


def model_of(vocab=23, d=8, heads=2, ffn=12, layers=2, seed=0):
    mx.random.seed(seed)
    model = TransformerModel(vocab, d, heads, ffn, layers, dropout=0.0)
    model.initialize_parameters(mx.cpu())
    for p in model.collect_params().values():  # non-trivial biases and gains, so that the oracle checks them
        if p.grad_req != "null" and (p.name.endswith("bias") or p.name.endswith("gamma") or p.name.endswith("beta")):
            p.set_data(mx.nd.random.uniform(-0.5, 0.5, shape=p.shape) + (1 if p.name.endswith("gamma") else 0))
    return model


def test_positions_are_the_papers_sinusoids():
    """Vaswani et al.: PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d))."""
    d = 10
    table = sinusoids(50, d)[:, 0, :]
    for pos in (0, 1, 7, 49):
        for i in range(d // 2):
            angle = pos / 10000.0 ** (2 * i / d)
            assert table[pos, 2 * i] == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1] == pytest.approx(math.cos(angle), abs=1e-6)


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def attention_oracle(x, w_in, b_in, w_out, b_out, heads):
    """Multi-head causal self-attention, one stream at a time, in float64: x (T, N, C) -> (T, N, C)."""
    steps, batch, size = x.shape
    d = size // heads
    out = np.zeros_like(x, dtype=np.float64)
    for n in range(batch):
        qkv = x[:, n, :] @ w_in.T + b_in  # (T, 3C)
        q, k, v = qkv[:, :size], qkv[:, size:2 * size], qkv[:, 2 * size:]
        merged = []
        for h in range(heads):
            qh, kh, vh = (m[:, h * d:(h + 1) * d] for m in (q, k, v))
            scores = qh @ kh.T / math.sqrt(d)
            scores[np.triu_indices(steps, 1)] = -np.inf  # position t sees positions 0..t
            merged.append(softmax(scores) @ vh)
        out[:, n, :] = np.concatenate(merged, axis=1) @ w_out.T + b_out
    return out


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_the_attention_is_multi_head_causal_attention(heads):
    mx.random.seed(3)
    block = SelfAttention(8, heads, dropout=0.0)
    block.initialize(mx.init.Uniform(0.5))
    block.in_proj.bias.set_data(mx.nd.random.uniform(-0.5, 0.5, shape=(24,)))
    block.out_proj.bias.set_data(mx.nd.random.uniform(-0.5, 0.5, shape=(8,)))
    x = np.random.RandomState(1).randn(5, 3, 8).astype(np.float32)
    expected = attention_oracle(x, block.in_proj.weight.data().asnumpy(), block.in_proj.bias.data().asnumpy(),
                                block.out_proj.weight.data().asnumpy(), block.out_proj.bias.data().asnumpy(), heads)
    for hybridize in (False, True):
        if hybridize:
            block.hybridize()
        np.testing.assert_allclose(block(mx.nd.array(x)).asnumpy(), expected, rtol=1e-5, atol=1e-5)


def layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def model_oracle(model, tokens):
    """The whole model from its weights: embedding x sqrt(d) + positions, post-norm layers, final norm,
    decoder; logits (T*N, vocab)."""
    p = {name: param.data().asnumpy().astype(np.float64) for name, param in model._collect_params_with_prefix().items()}
    d = model.d_model
    x = p["encoder.weight"][tokens] * math.sqrt(d) + sinusoids(tokens.shape[0], d)
    for layer in range(len(model.layers)):
        q = "layers.%d." % layer
        a = attention_oracle(x, p[q + "attention.in_proj.weight"], p[q + "attention.in_proj.bias"],
                             p[q + "attention.out_proj.weight"], p[q + "attention.out_proj.bias"], 2)
        x = layer_norm(x + a, p[q + "norm1.gamma"], p[q + "norm1.beta"])
        hidden = np.maximum(x @ p[q + "ffn1.weight"].T + p[q + "ffn1.bias"], 0)
        x = layer_norm(x + hidden @ p[q + "ffn2.weight"].T + p[q + "ffn2.bias"], p[q + "norm2.gamma"],
                       p[q + "norm2.beta"])
    x = layer_norm(x, p["norm.gamma"], p["norm.beta"])
    return (x @ p["decoder.weight"].T + p["decoder.bias"]).reshape(-1, p["decoder.weight"].shape[0])


def test_the_model_is_post_norm_layers_over_scaled_embeddings_and_positions():
    model = model_of()
    tokens = np.random.RandomState(2).randint(0, 23, size=(6, 3))
    expected = model_oracle(model, tokens)
    for hybridize in (False, True):
        if hybridize:
            model.hybridize(static_alloc=True, static_shape=True)
        logits, state = model(mx.nd.array(tokens, dtype="int32"), [])
        assert state == []
        np.testing.assert_allclose(logits.asnumpy(), expected, rtol=1e-4, atol=1e-4)


def test_a_later_token_changes_no_earlier_logit():
    model = model_of(seed=5)
    tokens = np.random.RandomState(4).randint(0, 23, size=(7, 2))
    changed = tokens.copy()
    changed[4, :] = (changed[4, :] + 5) % 23
    before, _ = model(mx.nd.array(tokens, dtype="int32"), [])
    after, _ = model(mx.nd.array(changed, dtype="int32"), [])
    before, after = before.asnumpy().reshape(7, 2, -1), after.asnumpy().reshape(7, 2, -1)
    np.testing.assert_array_equal(before[:4], after[:4])  # positions 0..3 cannot see position 4
    assert np.abs(before[4:] - after[4:]).max() > 1e-3  # positions 4.. do


def test_heads_that_do_not_divide_the_size_are_refused():
    from ptb_lm.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        TransformerModel(10, 10, 3, 10, 1)
    assert "heads must divide" in str(err.value)


def test_a_transformer_trains_in_both_engines_and_generates_from_its_window(tiny_corpus, tmp_path):
    from ptb_lm import load
    from ptb_lm.sampling import generate

    config = TrainConfig(mode="transformer", embed_dim=16, hidden_dim=16, heads=2, num_layers=2, batch_size=4,
                         num_steps=6, epochs=2, seed=1, data=tiny_corpus, ctx="cpu", progress="none",
                         eval_period=10, optimizer="adam", lr=0.003, save_dir=str(tmp_path / "t"))
    fast = fit(config, quiet=True)
    imperative = fit(config.replace(engine="imperative", save_dir=None), quiet=True)
    assert fast.series("val_loss") == pytest.approx(imperative.series("val_loss"), rel=1e-3)
    assert fast.series("val_ppl")[-1] < fast.series("val_ppl")[0] < 31  # it learns, below a uniform guess
    model, vocab, saved = load(str(tmp_path / "t"))
    assert saved.mode == "transformer" and not model.carries_state
    calls = []
    real = model.forward

    def counting(inputs, state):
        calls.append(inputs.shape[0])
        return real(inputs, state)

    model.forward = counting
    words = generate(model, vocab, 12, prompt="w01 w02", seed=3, window=6)
    assert len(words) == 12 and calls[:6] == [2, 3, 4, 5, 6, 6]  # the prompt, growing, then the last 6 words


def test_a_sliding_window_as_long_as_the_stream_is_one_window_over_it_all(tiny_corpus):
    """With a context longer than the stream, every token sees all before it: the same as one window over
    the whole stream; a context no longer than the window is no context."""
    from ptb_lm.batches import device_batches
    from ptb_lm.data import Corpus
    from ptb_lm.training import evaluate

    corpus = Corpus(tiny_corpus)
    model = TransformerModel(len(corpus.dictionary), 16, 2, 16, 2, dropout=0.0)
    mx.random.seed(1)
    model.initialize_parameters(mx.cpu())
    source = device_batches(corpus.valid, 2, mx.cpu())[:40]
    whole = evaluate(model, source, num_steps=39)
    sliding = evaluate(model, source, num_steps=3, context=10 ** 4)
    assert sliding == pytest.approx(whole, rel=1e-5)
    assert evaluate(model, source, num_steps=3, context=3) == pytest.approx(evaluate(model, source, num_steps=3))


def test_a_sliding_window_reads_each_window_with_the_context_tokens_that_end_with_it(tiny_corpus):
    """context=C: a window's last input token sees the C - 1 tokens before it (all of them near the start).
    The oracle feeds the model, window by window, the C tokens that end with the window (or the stream up
    to there) and scores the window's own targets in numpy."""
    from ptb_lm.batches import device_batches
    from ptb_lm.data import Corpus
    from ptb_lm.training import evaluate

    corpus = Corpus(tiny_corpus)
    vocab = len(corpus.dictionary)
    model = TransformerModel(vocab, 16, 2, 16, 2, dropout=0.0)
    mx.random.seed(2)
    model.initialize_parameters(mx.cpu())
    steps, context = 3, 8
    source = device_batches(corpus.valid, 2, mx.cpu())[:3 * 8 + 1]  # 8 whole windows: none cut short
    rows, streams = source.shape
    total, tokens = 0.0, 0
    for i in range(0, rows - 1, steps):
        end = i + steps  # the window's inputs are rows i .. end - 1, its targets rows i + 1 .. end
        begin = max(0, end - context)
        logits = model(source[begin:end], [])[0].asnumpy().astype(np.float64).reshape(end - begin, streams, vocab)
        own = logits[i - begin:]
        log_probs = own - own.max(axis=-1, keepdims=True)
        log_probs -= np.log(np.exp(log_probs).sum(axis=-1, keepdims=True))
        targets = source[i + 1:end + 1].asnumpy().astype(int)
        total -= np.take_along_axis(log_probs, targets[:, :, None], axis=-1).sum()
        tokens += targets.size
    assert evaluate(model, source, num_steps=steps, context=context) == pytest.approx(total / tokens, rel=1e-5)


def batch_dot_attention(F, x, weight, bias, out_weight, out_bias, heads):
    """The attention written with MXNet's generic operators (split, transposes, batch_dot), an oracle independent of
    the interleaved operators and of the projection's row order: (T, N, C) -> (T, N, C)."""
    T, N, C = x.shape
    d = C // heads
    qkv = F.FullyConnected(x, weight, bias, num_hidden=3 * C, flatten=False)
    q, k, v = F.split(qkv, num_outputs=3, axis=2)
    q, k, v = (t.reshape((T, N, heads, d)).transpose((1, 2, 0, 3)).reshape((N * heads, T, d)) for t in (q, k, v))
    scores = F.batch_dot(q, k, transpose_b=True) / math.sqrt(d)
    mask = mx.nd.array(np.triu(np.full((T, T), -1e9, dtype=np.float32), k=1))
    out = F.batch_dot(F.softmax(F.broadcast_add(scores, mask.expand_dims(0)), axis=-1), v)
    out = out.reshape((N, heads, T, d)).transpose((2, 0, 1, 3)).reshape((T, N, C))
    return F.FullyConnected(out, out_weight, out_bias, num_hidden=C, flatten=False)


@pytest.mark.parametrize("hybridize", [False, True], ids=["imperative", "hybridized"])
def test_the_attentions_gradients_are_those_of_the_batch_dot_formulation(hybridize):
    """The interleaved operators take the projection's rows per head: its output and the gradients of the input, the
    projection's weight and bias must be those of the plain formulation with PyTorch's row order."""
    mx.random.seed(9)
    block = SelfAttention(12, 3, dropout=0.0)
    block.initialize(mx.init.Xavier())
    for p in (block.in_proj.bias, block.out_proj.bias):
        p.set_data(mx.nd.random.uniform(-0.5, 0.5, shape=p.shape))
    if hybridize:
        block.hybridize()
    x = mx.nd.random.normal(shape=(7, 2, 12))
    head = mx.nd.random.normal(shape=(7, 2, 12))
    xs = x.copy()
    xs.attach_grad()
    with autograd.record():
        ours = block(xs)
    ours.backward(head)
    arrays = [x.copy()] + [p.data().copy() for p in (block.in_proj.weight, block.in_proj.bias, block.out_proj.weight,
                                                      block.out_proj.bias)]
    for a in arrays:
        a.attach_grad()
    with autograd.record():
        theirs = batch_dot_attention(mx.nd, *arrays, heads=3)
    theirs.backward(head)
    np.testing.assert_allclose(ours.asnumpy(), theirs.asnumpy(), rtol=1e-5, atol=1e-6)
    for got, expected in ((xs.grad, arrays[0].grad), (block.in_proj.weight.grad(), arrays[1].grad),
                          (block.in_proj.bias.grad(), arrays[2].grad)):
        np.testing.assert_allclose(got.asnumpy(), expected.asnumpy(), rtol=1e-4, atol=1e-6)
