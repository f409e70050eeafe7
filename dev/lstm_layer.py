#!/usr/bin/env python
"""One LSTM layer's forward pass: MXNet's fused RNN operator (oneDNN's kernel) against PyTorch's nn.LSTM.

    python dev/lstm_layer.py --pytorch ../torchvenv/bin/python

Prints ms per forward pass of one layer on random data (median of 5 after one warm-up, no gradient), at
AWD-LSTM's three layer shapes (400 -> 1150, 1150 -> 1150, 1150 -> 400) and Zaremba-small's (200 -> 200),
70 steps x 10 streams (AWD's validation windows) and 70 x 20 (its training batch). With --pytorch it runs
the same shapes under that interpreter (which needs torch, not mxnet) and prints the ratio. The matrix
products alone are the bound: 2 x 4H x (I + H) multiply-adds x 2 per token.
"""
import argparse
import json
import os
import subprocess
import sys
import time

SHAPES = [(70, 10, 400, 1150), (70, 10, 1150, 1150), (70, 10, 1150, 400), (70, 20, 1150, 1150),
          (35, 20, 200, 200)]  # (T, N, input, hidden)


def median_ms(run, tries=5):
    run()
    times = []
    for _ in range(tries):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2]


def mxnet_times():
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from ptb_lm.runtime import import_mxnet

    mx = import_mxnet()
    times = []
    for steps, batch, inputs, hidden in SHAPES:
        x = mx.nd.random.uniform(shape=(steps, batch, inputs))
        h, c = mx.nd.zeros((1, batch, hidden)), mx.nd.zeros((1, batch, hidden))
        w = mx.nd.random.uniform(-0.03, 0.03, shape=(4 * hidden * (inputs + hidden) + 8 * hidden,))

        def run():
            mx.nd.RNN(x, w, h, c, state_size=hidden, num_layers=1, mode="lstm", state_outputs=True)[0].wait_to_read()
        times.append(median_ms(run))
    return times


def torch_times():
    import torch

    times = []
    with torch.no_grad():
        for steps, batch, inputs, hidden in SHAPES:
            lstm, x = torch.nn.LSTM(inputs, hidden, 1), torch.rand(steps, batch, inputs)
            times.append(median_ms(lambda: lstm(x)))
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pytorch", metavar="PYTHON", help="an interpreter with torch, for PyTorch's column")
    parser.add_argument("--torch-only", action="store_true", help=argparse.SUPPRESS)  # what --pytorch runs
    args = parser.parse_args(argv)
    if args.torch_only:
        print(json.dumps(torch_times()))
        return
    ours = mxnet_times()
    theirs = None
    if args.pytorch:
        done = subprocess.run([args.pytorch, os.path.abspath(__file__), "--torch-only"], capture_output=True,
                              text=True, check=True)
        theirs = json.loads(done.stdout.strip().splitlines()[-1])
    print("T x N, input -> hidden      MXNet RNN (oneDNN) ms  GFLOP/s" + ("   PyTorch ms  GFLOP/s  MXNet/PyTorch time"
                                                                       if theirs else ""))
    for k, (steps, batch, inputs, hidden) in enumerate(SHAPES):
        gflop = 2 * 4 * hidden * (inputs + hidden) * steps * batch / 1e9
        line = "%3d x %-3d %5d -> %-5d %16.1f %8.1f" % (steps, batch, inputs, hidden, ours[k], gflop / ours[k] * 1e3)
        if theirs:
            line += " %12.1f %8.1f %12.2f" % (theirs[k], gflop / theirs[k] * 1e3, ours[k] / theirs[k])
        print(line)


if __name__ == "__main__":
    main()
