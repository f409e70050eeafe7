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
gradient dense, as the example has it; and its TransformerModel (see that class). Only
the numbers are ptb_lm's (its benchmark configs "chapter", "zaremba-small-shape" and
"transformer-small-shape"): the loss is summed, clipped at
clipping_norm x num_steps x batch_size, and the step is lr / batch_size, so both
frameworks do the same arithmetic on the same shapes and data.

Training tokens/s is timed over --max-batches batches after --warmup; evaluation
tokens/s over --eval-batches batches of the validation split at the training batch
size, as ptb_lm evaluates. With --train-epochs it trains whole epochs instead, as ptb_lm
does (python dev/pytorch_baseline.py data/ptb.zip --configs transformer-small-shape
--train-epochs 6 --lr-decay 0.25 --eval-batch-size 10 --json runs/torch-transformer.jsonl).
"""
import argparse
import json
import math
import os
import resource
import time
import zipfile

import torch
from torch import nn

# ptb_lm's benchmark configs (ptb_lm/benchmark.py CONFIGS), written out: this file imports no ptb_lm.
CONFIGS = {
    "chapter": dict(mode="rnn_relu", embed=100, hidden=100, layers=2, dropout=0.2, batch=32, steps=5,
                    lr=1.0, clipping_norm=0.2),
    "zaremba-small-shape": dict(mode="lstm", embed=200, hidden=200, layers=2, dropout=0.0, batch=20, steps=20,
                                lr=1.0, clipping_norm=5.0 / 20),
    "transformer-small-shape": dict(mode="transformer", embed=200, hidden=200, layers=2, dropout=0.1, batch=20,
                                    steps=35, lr=5.0 / 35, clipping_norm=0.25, heads=2, ffn=200),
}
# Whole recipes for --train-epochs, each a ptb_lm preset of the same name written out
RECIPES = {
    "pytorch-tied-200": dict(mode="lstm", embed=200, hidden=200, layers=2, dropout=0.2, batch=20, steps=35,
                             lr=20.0 / 35, clipping_norm=0.25, tied=True),
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

    def __init__(self, vocab, mode, embed, hidden, layers, dropout, tied=False):
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
        if tied:  # the example's --tied
            self.decoder.weight = self.encoder.weight

    def forward(self, tokens, state):
        """``tokens`` (steps, batch) -> log-probabilities (steps * batch, vocab), new state."""
        output, state = self.rnn(self.drop(self.encoder(tokens)), state)
        logits = self.decoder(self.drop(output))
        return torch.log_softmax(logits.view(-1, logits.shape[-1]), dim=1), state

    def begin_state(self, batch):
        zeros = torch.zeros(self.layers, batch, self.hidden)
        return (zeros, zeros.clone()) if self.mode == "lstm" else zeros


class PositionalEncoding(nn.Module):
    """The example's: sin at even columns, cos at odd ones, added, then dropout."""

    def __init__(self, d_model, dropout, max_len=5000):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        pe = torch.zeros(max_len, d_model)
        position = torch.arange(0, max_len, dtype=torch.float).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe.unsqueeze(0).transpose(0, 1))  # (max_len, 1, d_model)

    def forward(self, x):
        return self.dropout(x + self.pe[:x.size(0), :])


class TransformerModel(nn.Module):
    """The example's TransformerModel, layer for layer: nn.Transformer's encoder (post-norm layers with a ReLU
    feed-forward network, and its final LayerNorm), embeddings x sqrt(d_model), sinusoidal positions, the
    causal mask, Xavier-uniform matrices, then the embedding and decoder Uniform(0.1) with a zero decoder bias.

    One difference, on purpose: the example builds nn.Transformer without passing its --dropout on, so its
    layers use nn.Transformer's 0.1 whatever --dropout says, and only the positions get --dropout; here, as
    in ptb_lm, every dropout takes the one rate, so that both frameworks train the same model.
    """

    carries_state = False

    def __init__(self, vocab, d_model, heads, ffn, layers, dropout):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model, heads, ffn, dropout)
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(d_model))
        for p in self.encoder.parameters():  # nn.Transformer._reset_parameters
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.pos_encoder = PositionalEncoding(d_model, dropout)
        self.input_emb = nn.Embedding(vocab, d_model)
        self.decoder = nn.Linear(d_model, vocab)
        self.d_model = d_model
        nn.init.uniform_(self.input_emb.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        self.mask = None

    def forward(self, tokens, state):
        steps = tokens.size(0)
        if self.mask is None or self.mask.size(0) != steps:
            self.mask = torch.triu(torch.full((steps, steps), float("-inf")), diagonal=1)
        x = self.pos_encoder(self.input_emb(tokens) * math.sqrt(self.d_model))
        logits = self.decoder(self.encoder(x, mask=self.mask))
        return torch.log_softmax(logits.view(-1, logits.shape[-1]), dim=1), state

    def begin_state(self, batch):
        return ()


def build(cfg, vocab):
    """The config's model: the example's RNNModel or its TransformerModel."""
    if cfg["mode"] == "transformer":
        return TransformerModel(vocab, cfg["hidden"], cfg["heads"], cfg["ffn"], cfg["layers"], cfg["dropout"])
    return Model(vocab, cfg["mode"], cfg["embed"], cfg["hidden"], cfg["layers"], cfg["dropout"], cfg.get("tied", False))


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
    model = build(cfg, vocab)
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


def train_full(name, corpus, vocab, args):
    """Whole epochs, as ptb_lm trains them: the rate divided by 1/--lr-decay after an epoch whose validation
    loss does not improve (the example divides it by 4), the best epoch's weights kept for the test."""
    import copy

    cfg = dict(CONFIGS[name] if name in CONFIGS else RECIPES[name])
    if args.lr is not None:
        cfg["lr"] = args.lr
    if args.dropout is not None:
        cfg["dropout"] = args.dropout
    torch.manual_seed(args.seed)
    model = build(cfg, vocab)
    steps = cfg["steps"]
    train_source = batchify(corpus["train"], cfg["batch"])
    eval_cfg = dict(cfg, batch=args.eval_batch_size or cfg["batch"])
    valid_source, test_source = (batchify(corpus[s], eval_cfg["batch"]) for s in ("valid", "test"))
    batches = (train_source.shape[0] - 1 + steps - 1) // steps
    best, best_state, log = float("inf"), None, []
    for epoch in range(1, args.train_epochs + 1):
        start = time.perf_counter()
        loss, tokens, seconds = train(model, train_source, cfg, batches if not args.max_batches_per_epoch else
                                      min(batches, args.max_batches_per_epoch))
        val, _, _ = evaluate(model, valid_source, eval_cfg, 10 ** 9)
        improved = val < best
        if improved:
            best, best_state = val, copy.deepcopy(model.state_dict())
        elif args.lr_decay:
            cfg["lr"] *= args.lr_decay
        log.append(dict(event="epoch", epoch=epoch, train_loss=loss, val_loss=val, val_ppl=math.exp(val),
                        lr=cfg["lr"], train_tokens_per_sec=tokens / seconds, time_s=time.perf_counter() - start))
        print("[Epoch %d] validation perplexity %.2f (train loss %.3f, %.0f tokens/s, lr %g)"
              % (epoch, math.exp(val), loss, tokens / seconds, cfg["lr"]), flush=True)
    model.load_state_dict(best_state)
    test, _, _ = evaluate(model, test_source, eval_cfg, 10 ** 9)
    log.append(dict(event="test", test_loss=test, test_ppl=math.exp(test), eval_batch_size=eval_cfg["batch"],
                    of="the best epoch's weights"))
    print("Test perplexity %.2f (best epoch's weights, eval batch size %d)" % (math.exp(test), eval_cfg["batch"]))
    return log


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="ptb.zip (holding ptb/ptb.{train,valid}.txt) or a folder holding those files")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated, of: %s; with --train-epochs "
                                                                     "also %s" % (", ".join(CONFIGS), ", ".join(RECIPES)))
    parser.add_argument("--max-batches", type=int, default=200, help="training batches timed")
    parser.add_argument("--eval-batches", type=int, default=200, help="validation batches timed")
    parser.add_argument("--warmup", type=int, default=20, help="batches run before timing")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="write the rows here as a JSON list")
    parser.add_argument("--train-epochs", type=int, help="instead of timing: train this many whole epochs of the "
                                                         "one config in --configs and write its events to --json")
    parser.add_argument("--lr", type=float, help="with --train-epochs: the rate (ptb_lm's convention: summed "
                                                 "loss, step lr / batch size)")
    parser.add_argument("--dropout", type=float, help="with --train-epochs: the dropout rate instead of the "
                                                      "config's")
    parser.add_argument("--lr-decay", type=float, help="with --train-epochs: multiply the rate by this after an "
                                                       "epoch that did not improve")
    parser.add_argument("--eval-batch-size", type=int, help="with --train-epochs: validation and test batch size")
    parser.add_argument("--max-batches-per-epoch", type=int, help="with --train-epochs: a shorter epoch")
    args = parser.parse_args(argv)
    index = {}
    corpus = {split: read_split(args.data, split, index) for split in ("train", "valid", "test")}
    if args.train_epochs:
        log = train_full(args.configs.split(",")[0], corpus, len(index), args)
        if args.json:
            with open(args.json, "w") as out:
                out.write("".join(json.dumps(e) + "\n" for e in log))
        return
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
