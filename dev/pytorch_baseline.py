#!/usr/bin/env python
"""The same model and loop in PyTorch, timed the way scripts/benchmark.py times ptb_lm.

    python dev/pytorch_baseline.py data/ptb.zip --json runs/torch.json

This is the yardstick of "faster than PyTorch on the same CPU". It runs under an
interpreter that has torch (CPU build) and needs neither mxnet nor ptb_lm:

    python3.11 -m venv ../torchvenv && ../torchvenv/bin/pip install torch numpy

and scripts/benchmark.py runs it as its "pytorch" variant with ``--pytorch ../torchvenv/bin/python``.

What it runs is PyTorch's word_language_model example as that example writes it:
nn.Embedding -> dropout -> nn.RNN/LSTM/GRU -> dropout -> nn.Linear -> log_softmax with
NLLLoss, the hidden state detached between batches, clip_grad_norm_ over all
parameters, then one ``p.add_(grad, alpha=-lr)`` per parameter; the embedding's
gradient dense, as the example has it. Only the numbers are the chapter's (ptb_lm's
configs "chapter" and "zaremba-small-shape"): the loss is summed, clipped at
clipping_norm x num_steps x batch_size, and the step is lr / batch_size, so both
frameworks do the same arithmetic on the same shapes and data.

Training tokens/s is timed over --max-batches batches after --warmup; evaluation
tokens/s over --eval-batches batches of the validation split at the training batch
size, as ptb_lm evaluates.
"""
import argparse
import json
import os
import resource
import time
import zipfile

import torch
from torch import nn

# ptb_lm's two benchmark configs (scripts/benchmark.py CONFIGS), written out: this file imports no ptb_lm.
CONFIGS = {
    "chapter": dict(mode="rnn_relu", embed=100, hidden=100, layers=2, dropout=0.2, batch=32, steps=5,
                    lr=1.0, clipping_norm=0.2),
    "zaremba-small-shape": dict(mode="lstm", embed=200, hidden=200, layers=2, dropout=0.0, batch=20, steps=20,
                                lr=1.0, clipping_norm=5.0 / 20),
}


# The same as scripts/benchmark.py's, written again because this file runs where ptb_lm may not be importable.
def peak_rss_mb():
    """This process's peak resident memory in MB: the kernel's VmHWM, which starts afresh at exec
    (getrusage's ru_maxrss keeps the peak of the process that spawned this one, if that was larger)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def read_text(data, split):
    """The text of split ``split`` from a PTB zip (``ptb/ptb.<split>.txt`` inside) or folder."""
    if os.path.isdir(data):
        with open(os.path.join(data, "ptb.%s.txt" % split), encoding="utf-8") as f:
            return f.read()
    with zipfile.ZipFile(data) as archive:
        return archive.read("ptb/ptb.%s.txt" % split).decode("utf-8")


def read_split(data, split, index):
    """Token ids of one split: each line's words, then ``<eos>``; a new word gets the next id."""
    ids = []
    for line in read_text(data, split).splitlines():
        for word in line.split() + ["<eos>"]:
            ids.append(index.setdefault(word, len(index)))
    return torch.tensor(ids, dtype=torch.long)


def batchify(ids, batch):
    """``(len // batch, batch)``: column j is the j-th contiguous slice of the split (TN layout)."""
    rows = ids.numel() // batch
    return ids[: rows * batch].view(batch, rows).t().contiguous()


class Model(nn.Module):
    """Embedding -> dropout -> RNN -> dropout -> Linear -> log_softmax, as the example's RNNModel."""

    def __init__(self, vocab, mode, embed, hidden, layers, dropout):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab, embed)
        if mode in ("lstm", "gru"):
            self.rnn = getattr(nn, mode.upper())(embed, hidden, layers, dropout=dropout)
        else:
            self.rnn = nn.RNN(embed, hidden, layers, nonlinearity=mode[len("rnn_"):], dropout=dropout)
        self.decoder = nn.Linear(hidden, vocab)
        self.mode, self.hidden, self.layers = mode, hidden, layers
        for weight in (self.encoder.weight, self.decoder.weight):
            nn.init.uniform_(weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, tokens, state):
        """``tokens`` (steps, batch) -> log-probabilities (steps * batch, vocab), new state."""
        output, state = self.rnn(self.drop(self.encoder(tokens)), state)
        logits = self.decoder(self.drop(output))
        return torch.log_softmax(logits.view(-1, logits.shape[-1]), dim=1), state

    def begin_state(self, batch):
        zeros = torch.zeros(self.layers, batch, self.hidden)
        return (zeros, zeros.clone()) if self.mode == "lstm" else zeros


def detach(state):
    """Cut the graph at the batch boundary: truncated BPTT backpropagates within one batch only."""
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def train(model, source, cfg, batches, start_row=0):
    """Train ``batches`` batches from ``start_row``; return (mean loss per token, tokens, seconds)."""
    model.train()
    loss_fn = nn.NLLLoss(reduction="sum")
    steps, batch = cfg["steps"], cfg["batch"]
    max_norm = cfg["clipping_norm"] * steps * batch
    state = model.begin_state(batch)
    total, row = 0.0, start_row
    start = time.perf_counter()
    for _ in range(batches):
        if row + steps + 1 > source.shape[0]:
            row, state = 0, model.begin_state(batch)
        data, target = source[row:row + steps], source[row + 1:row + 1 + steps].reshape(-1)
        row += steps
        state = detach(state)
        model.zero_grad()
        log_probs, state = model(data, state)
        loss = loss_fn(log_probs, target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(p.grad, alpha=-cfg["lr"] / batch)
        total += loss.item()
    seconds = time.perf_counter() - start
    return total / (batches * steps * batch), batches * steps * batch, seconds


def evaluate(model, source, cfg, batches):
    """Mean loss per token over ``batches`` batches, the state carried across them; and tokens, seconds."""
    model.eval()
    loss_fn = nn.NLLLoss(reduction="sum")
    steps, batch = cfg["steps"], cfg["batch"]
    state, total, tokens = model.begin_state(batch), 0.0, 0
    start = time.perf_counter()
    with torch.no_grad():
        for row in range(0, min(batches * steps, source.shape[0] - 1), steps):
            rows = min(steps, source.shape[0] - 1 - row)
            target = source[row + 1:row + 1 + rows].reshape(-1)
            log_probs, state = model(source[row:row + rows], state)
            total += loss_fn(log_probs, target).item()
            tokens += target.numel()
    return total / tokens, tokens, time.perf_counter() - start


def measure(name, corpus, vocab, args):
    """One result row for config ``name``, in the shape of scripts/benchmark.py's rows."""
    cfg = CONFIGS[name]
    torch.manual_seed(args.seed)
    model = Model(vocab, cfg["mode"], cfg["embed"], cfg["hidden"], cfg["layers"], cfg["dropout"])
    train_source, valid_source = batchify(corpus["train"], cfg["batch"]), batchify(corpus["valid"], cfg["batch"])
    train(model, train_source, cfg, args.warmup)
    loss, tokens, seconds = train(model, train_source, cfg, args.max_batches, start_row=args.warmup * cfg["steps"])
    evaluate(model, valid_source, cfg, 2)  # warm-up
    eval_loss, eval_tokens, eval_seconds = evaluate(model, valid_source, cfg, args.eval_batches)
    return dict(config=name, variant="pytorch", train_tokens_per_sec=tokens / seconds,
                eval_tokens_per_sec=eval_tokens / eval_seconds, ms_per_batch=1000 * seconds / args.max_batches,
                train_loss=loss, eval_loss=eval_loss, batches=args.max_batches,
                peak_rss_mb=peak_rss_mb(), vocab=vocab,
                torch=torch.__version__, threads=torch.get_num_threads())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="ptb.zip (holding ptb/ptb.{train,valid}.txt) or a folder holding those files")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated, of: " + ", ".join(CONFIGS))
    parser.add_argument("--max-batches", type=int, default=200, help="training batches timed")
    parser.add_argument("--eval-batches", type=int, default=200, help="validation batches timed")
    parser.add_argument("--warmup", type=int, default=20, help="batches run before timing")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="write the rows here as a JSON list")
    args = parser.parse_args(argv)
    index = {}
    corpus = {split: read_split(args.data, split, index) for split in ("train", "valid")}
    rows = [measure(name, corpus, len(index), args) for name in args.configs.split(",")]
    for row in rows:
        print("%(config)-20s pytorch %(torch)s (%(threads)d threads): train %(ms_per_batch).1f ms/batch, "
              "%(train_tokens_per_sec).0f tok/s; eval %(eval_tokens_per_sec).0f tok/s; "
              "loss %(train_loss).3f; peak RSS %(peak_rss_mb).0f MB" % row)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(rows, out, indent=1)


if __name__ == "__main__":
    main()
