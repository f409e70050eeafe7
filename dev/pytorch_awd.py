#!/usr/bin/env python
"""AWD-LSTM in today's PyTorch, layer for layer, as the independent check of ptb_lm's ``awd-lstm`` preset.

    python dev/pytorch_awd.py data/ptb.zip --epochs 2 --json runs/torch-awd.jsonl

salesforce/awd-lstm-lm does not run on today's PyTorch (its WeightDrop patches a private attribute of nn.LSTM), so
this writes its model and loop again, in its own conventions, not ptb_lm's: the loss is the mean over batch and
time; the rate (30) is scaled by each window's length over bptt; the gradient is clipped at 0.25; SGD's weight
decay is 1.2e-6; the window lengths are drawn by numpy as its main.py draws them. ptb_lm translates each of these
into its own (ptb_lm/presets/awd-lstm.json says how), so the two runs agree only if both translations and both
models are right.

The model (its model.py, embed_regularize.py, locked_dropout.py, weight_drop.py):

    words (T, N) -> embedding with whole words dropped (dropoute) -> locked dropout (dropouti)
      -> LSTM 400->1150 -> locked (dropouth) -> LSTM 1150->1150 -> locked (dropouth) -> LSTM 1150->400
      -> locked dropout (dropout) -> decoder tied to the embedding
    every LSTM's hidden-to-hidden matrix DropConnected (wdrop), a new mask each batch

loss = cross-entropy + alpha * mean(dropped last outputs ** 2) + beta * mean((h[t+1] - h[t]) ** 2). NT-ASGD: once
validation is worse than the best of all but the last ``nonmono`` epochs, the weights' average from then on is
what is evaluated. It runs where torch is installed and needs neither mxnet nor ptb_lm.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_baseline import batchify, peak_rss_mb, read_split  # noqa: E402


def locked(x, p, training):
    """One (1, N, C) mask per sequence, shared over time, rescaled by 1 / (1 - p)."""
    if not training or not p:
        return x
    mask = x.new_empty((1,) + tuple(x.shape[1:])).bernoulli_(1 - p) / (1 - p)
    return x * mask


class AWDLSTM(nn.Module):
    def __init__(self, vocab, emsize, nhid, nlayers, dropout, dropouth, dropouti, dropoute, wdrop):
        super().__init__()
        self.encoder = nn.Embedding(vocab, emsize)
        sizes = [nhid] * (nlayers - 1) + [emsize]  # the last as wide as the embedding, for the tied decoder
        self.rnns = nn.ModuleList(nn.LSTM(n_in, n_out, 1) for n_in, n_out in zip([emsize] + sizes[:-1], sizes))
        self.decoder = nn.Linear(emsize, vocab)
        self.decoder.weight = self.encoder.weight
        self.sizes, self.dropout, self.dropouth, self.dropouti, self.dropoute, self.wdrop = (
            sizes, dropout, dropouth, dropouti, dropoute, wdrop)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)  # its init_weights
        nn.init.zeros_(self.decoder.bias)

    def forward(self, words, hidden):
        """``words`` (T, N) -> logits (T * N, vocab), new hidden, last layer's outputs before and after dropout."""
        weight = self.encoder.weight
        if self.training and self.dropoute:  # embedded_dropout: rows of the matrix
            weight = weight * (weight.new_empty((weight.size(0), 1)).bernoulli_(1 - self.dropoute) /
                               (1 - self.dropoute))
        x = locked(F.embedding(words, weight), self.dropouti, self.training)
        new_hidden = []
        for layer, (rnn, state) in enumerate(zip(self.rnns, hidden)):
            w_ih, w_hh, b_ih, b_hh = rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0
            w_hh = F.dropout(w_hh, self.wdrop, self.training)  # WeightDrop: a DropConnect mask per batch
            x, h, c = torch._VF.lstm(x, state, [w_ih, w_hh, b_ih, b_hh], True, 1, 0.0, self.training, False, False)
            new_hidden.append((h, c))
            raw = x
            if layer < len(self.rnns) - 1:
                x = locked(x, self.dropouth, self.training)
        dropped = locked(x, self.dropout, self.training)
        return self.decoder(dropped).view(-1, self.decoder.out_features), new_hidden, raw, dropped

    def begin_state(self, batch):
        return [(torch.zeros(1, batch, h), torch.zeros(1, batch, h)) for h in self.sizes]


def detach(hidden):
    return [(h.detach(), c.detach()) for h, c in hidden]


def evaluate(model, source, bptt):
    """Mean loss per token, the state carried across windows (its evaluate())."""
    model.eval()
    hidden, total = model.begin_state(source.size(1)), 0.0
    with torch.no_grad():
        for i in range(0, source.size(0) - 1, bptt):
            seq_len = min(bptt, source.size(0) - 1 - i)
            logits, hidden, _, _ = model(source[i:i + seq_len], hidden)
            total += seq_len * F.cross_entropy(logits, source[i + 1:i + 1 + seq_len].reshape(-1)).item()
    return total / (source.size(0) - 1)


def train_epoch(model, source, args, averaging, max_batches=None):
    """One epoch of its train(): variable windows, the rate scaled by their length; returns (loss, tokens, s)."""
    model.train()
    params = list(model.parameters())
    hidden, i, batches, total, tokens = model.begin_state(args.batch_size), 0, 0, 0.0, 0
    start = time.perf_counter()
    while i < source.size(0) - 1 - 1 and (max_batches is None or batches < max_batches):
        bptt = args.bptt if np.random.random() < 0.95 else args.bptt / 2.
        seq_len = min(max(5, int(np.random.normal(bptt, 5))), source.size(0) - 1 - i)  # its get_batch cuts the last
        lr = args.lr * seq_len / args.bptt
        hidden = detach(hidden)
        logits, hidden, raw, dropped = model(source[i:i + seq_len], hidden)
        raw_loss = F.cross_entropy(logits, source[i + 1:i + 1 + seq_len].reshape(-1))
        loss = raw_loss + args.alpha * dropped.pow(2).mean() + args.beta * (raw[1:] - raw[:-1]).pow(2).mean()
        model.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, args.clip)
        with torch.no_grad():
            for p in params:
                p.add_(p.grad + args.wdecay * p, alpha=-lr)
            if averaging is not None:
                averaging["count"] += 1
                for p, a in zip(params, averaging["ax"]):
                    a.add_((p - a) / averaging["count"])
        total += raw_loss.item() * seq_len * args.batch_size
        tokens += seq_len * args.batch_size
        i += seq_len
        batches += 1
    return total / tokens, tokens, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="ptb.zip (holding ptb/ptb.{train,valid,test}.txt) or a folder of those files")
    for name, default in (("emsize", 400), ("nhid", 1150), ("nlayers", 3), ("batch_size", 20), ("bptt", 70),
                          ("nonmono", 5), ("seed", 141), ("epochs", 2)):
        parser.add_argument("--" + name, type=int, default=default)
    for name, default in (("lr", 30.0), ("clip", 0.25), ("dropout", 0.4), ("dropouth", 0.25), ("dropouti", 0.4),
                          ("dropoute", 0.1), ("wdrop", 0.5), ("alpha", 2.0), ("beta", 1.0), ("wdecay", 1.2e-6)):
        parser.add_argument("--" + name, type=float, default=default)
    parser.add_argument("--max-batches", type=int, help="stop each epoch after this many batches (a timing)")
    parser.add_argument("--json", help="write one JSON object per epoch here")
    args = parser.parse_args(argv)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    index = {}
    train, valid = (read_split(args.data, split, index) for split in ("train", "valid"))
    train_data, val_data = batchify(train, args.batch_size), batchify(valid, 10)
    model = AWDLSTM(len(index), args.emsize, args.nhid, args.nlayers, args.dropout, args.dropouth, args.dropouti,
                    args.dropoute, args.wdrop)
    print("AWD-LSTM in PyTorch %s (%d threads): %d parameters, layers %s" % (
        torch.__version__, torch.get_num_threads(), sum(p.numel() for p in model.parameters()), model.sizes))
    averaging, history, log = None, [], []
    for epoch in range(1, args.epochs + 1):
        loss, tokens, seconds = train_epoch(model, train_data, args, averaging, args.max_batches)
        if averaging is not None:  # evaluate the average, as its loop swaps 'ax' in
            kept = [p.detach().clone() for p in model.parameters()]
            with torch.no_grad():
                for p, a in zip(model.parameters(), averaging["ax"]):
                    p.copy_(a)
        val = evaluate(model, val_data, args.bptt)
        if averaging is not None:
            with torch.no_grad():
                for p, k in zip(model.parameters(), kept):
                    p.copy_(k)
        elif len(history) > args.nonmono and val > min(history[:-args.nonmono]):
            averaging = {"count": 0, "ax": [p.detach().clone() for p in model.parameters()]}
            print("switching to averaged SGD")
        history.append(val)
        event = dict(event="epoch", epoch=epoch, train_loss=loss, val_loss=val, val_ppl=math.exp(val),
                     train_tokens_per_sec=tokens / seconds, train_seconds=seconds, peak_rss_mb=peak_rss_mb())
        log.append(event)
        print("[Epoch %d] validation perplexity %.2f (train loss %.3f, %.0f tokens/s, %.0f s)"
              % (epoch, math.exp(val), loss, tokens / seconds, seconds), flush=True)
        if args.json:
            with open(args.json, "w") as out:
                out.write("".join(json.dumps(e) + "\n" for e in log))


if __name__ == "__main__":
    main()
