#!/usr/bin/env python
"""Where ptb_lm_onnx's scoring time goes: ONNX Runtime's graph against the log-softmax in numpy.

    python dev/portable_scoring.py runs/tsmall-onnx data/ptb.zip --lines 800 --rounds 3

Scores the first ``--lines`` lines of a PTB split with an export (``ptb-lm-export``), in one
process, alternating two log-softmaxes round by round so that both meet the same machine:

* ``float32``: ptb_lm_onnx's own (float32 exponentials summed in float64);
* ``float64``: the same formula all in float64, which ptb_lm_onnx used before.

Prints, for each, the best round's seconds in all, in the graph (``PortableModel.step``) and in
the log-softmax, tokens per second, and the loss; and the largest gap between the two
log-softmaxes' per-token values (float64's as the reference).
"""
import argparse
import time
import zipfile

import numpy as np

import ptb_lm_onnx


def float64_log_probs(logits, targets):
    """log softmax(logits)[target], all in float64: the reference."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=-1))
    return np.take_along_axis(z, targets[..., None].astype(np.int64), axis=-1)[..., 0] - log_norm


def timed(function, clock):
    """``function`` with its seconds added to ``clock[0]``."""
    def wrapper(*args):
        start = time.perf_counter()
        try:
            return function(*args)
        finally:
            clock[0] += time.perf_counter() - start
    return wrapper


def score_once(model, lines, batch_size, log_probs):
    """One scoring pass with ``log_probs``: (result, seconds in all, in the graph, in the log-softmax)."""
    graph, softmax = [0.0], [0.0]
    step, own = model.step, ptb_lm_onnx._log_probs
    model.step = timed(step, graph)
    ptb_lm_onnx._log_probs = timed(log_probs, softmax)
    try:
        start = time.perf_counter()
        result = model.score(lines, batch_size=batch_size)
        return result, time.perf_counter() - start, graph[0], softmax[0]
    finally:
        model.step, ptb_lm_onnx._log_probs = step, own


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", help="a folder written by ptb-lm-export")
    parser.add_argument("data", help="ptb.zip")
    parser.add_argument("--split", default="valid", help="valid, test or train (default: valid)")
    parser.add_argument("--lines", type=int, default=800, help="how many of its lines (default: 800)")
    parser.add_argument("--batch-size", type=int, default=10, help="default: 10")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each, alternating (default: 3)")
    args = parser.parse_args(argv)

    with zipfile.ZipFile(args.data) as archive:
        lines = archive.read("ptb/ptb.%s.txt" % args.split).decode("utf-8").splitlines()[:args.lines]
    model = ptb_lm_onnx.load(args.export)
    variants = {"float32": ptb_lm_onnx._log_probs, "float64": float64_log_probs}
    best = {}
    for _ in range(args.rounds):
        for name, log_probs in variants.items():
            result, total, graph, softmax = score_once(model, lines, args.batch_size, log_probs)
            if name not in best or total < best[name][1]:
                best[name] = (result, total, graph, softmax)
    print("%d lines of %s, batch size %d, best of %d rounds" % (len(lines), args.split, args.batch_size,
                                                               args.rounds))
    print("| log-softmax | seconds | graph | log-softmax | tokens/s | loss |")
    print("|---|---|---|---|---|---|")
    for name, (result, total, graph, softmax) in best.items():
        print("| %s | %.2f | %.2f | %.2f (%.0f %%) | %.0f | %.6f |" % (
            name, total, graph, softmax, 100 * softmax / total, result["tokens_scored"] / total, result["loss"]))
    ids, _ = model.encode(lines)
    window = model.description.get("num_steps", 35)
    gaps = []
    for i in range(0, len(ids) - window - 1, window):  # one stream, windows of the run's length
        logits, _ = model.step(ids[i:i + window].reshape(-1, 1), model.begin_state(1))
        targets = ids[i + 1:i + 1 + window].reshape(-1, 1)
        gaps.append(np.abs(ptb_lm_onnx._log_probs(logits, targets) - float64_log_probs(logits, targets)).max())
    print("largest per-token gap of float32 from float64 over %d windows of %d: %.2e" % (len(gaps), window,
                                                                                      max(gaps)))


if __name__ == "__main__":
    main()
