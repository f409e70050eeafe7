"""A trained run's tools: ``ptb-lm-evaluate``, ``ptb-lm-generate``, ``ptb-lm-plot`` and ``ptb-lm-export``.
"""

import argparse
import logging
import os
import sys

from ..config import check_whole_number
from ..errors import ConfigError, DataError
from ..reporting import describe_reading, format_ppl, read_events
from .common import Parser, _run, checkpoint_argument


def evaluate_main(argv=None):
    """ptb-lm-evaluate: perplexity of a checkpoint on a split of the data it was trained on, or on any text file."""
    parser = Parser(prog="ptb-lm-evaluate", description=evaluate_main.__doc__)
    checkpoint_argument(parser)
    parser.add_argument("--split", default="test", help="valid, test or train of the run's data (default: test; "
                                                         "ignored with --text)")
    parser.add_argument("--text", help="a UTF-8 text file, one sentence per line, instead of a PTB split")
    parser.add_argument("--data", help="the data whose --split is read: a folder or zip (default: the data the run "
                                       "was trained on)")
    parser.add_argument("--batch-size", type=int, help="evaluation batch size (default: the run's); it changes "
                                                       "perplexity, since each stream starts from a zero state")
    parser.add_argument("--num-steps", type=int, help="time steps per batch (default: the run's)")
    parser.add_argument("--context", type=int, help="a transformer only: give each window the tokens before it, "
                                                     "up to this many in all (a sliding window; default: each "
                                                     "window on its own, as in training)")
    parser.add_argument("--cache-window", type=int, help="score with the continuous cache of the last N positions "
                                                          "of each stream (Grave et al.), and say the perplexity "
                                                          "without it too; the batch size is then 1 unless given")
    parser.add_argument("--cache-theta", type=float, help="the cache's sharpness theta, 0 or more (AWD-LSTM's PTB "
                                                          "value: 1.0)")
    parser.add_argument("--cache-lambda", type=float, help="the cache's weight lambda in [0, 1] (AWD's: 0.1)")
    parser.add_argument("--cache-search", action="store_true", help="choose theta and lambda on the validation "
                                                                     "split first (never the test split), then score")
    args = parser.parse_args(argv)

    def body():
        from ..runtime.devices import resolve_contexts
        from ..scoring import score_checkpoint

        ctx = resolve_contexts(args.ctx, purpose="evaluating")[0]
        cache_flags = [args.cache_theta, args.cache_lambda, args.cache_search or None]
        if args.cache_window is not None or any(flag is not None for flag in cache_flags):
            return _evaluate_with_cache(args, ctx)
        result = score_checkpoint(args.checkpoint, split=args.split, text=args.text, batch_size=args.batch_size,
                                  num_steps=args.num_steps, data=args.data, ctx=ctx, context=args.context)
        seen = ", context %d" % args.context if args.context else ""
        if not result["carries_state"]:
            seen += "; " + describe_reading(result["num_steps"], args.context)
        read = "; read from %s" % result["data"] if result["data"] else ""
        logging.getLogger("ptb_lm").info(
            "%(source)s perplexity %(shown)s (loss %(loss).4f) on %(tokens)d tokens (%(scored)d scored; "
            "%(unknown)d unknown, read as <unk>); eval batch size %(batch_size)d, num_steps %(num_steps)d%(seen)s; "
            "checkpoint %(checkpoint)s%(read)s" % dict(result, shown=format_ppl(result["ppl"]), seen=seen,
                                                         read=read))

    return _run(body)


def _evaluate_with_cache(args, ctx):
    from ..scoring import score_with_cache

    if args.cache_window is None:
        raise ConfigError("the cache's settings need --cache-window N", setting="cache_window")
    if args.context is not None:
        raise ConfigError("context and the cache are two ways to read before a window: give one",
                          setting="context")
    result = score_with_cache(args.checkpoint, args.cache_window, args.cache_theta, args.cache_lambda,
                              args.cache_search, split=args.split, text=args.text,
                              batch_size=1 if args.batch_size is None else args.batch_size,
                              num_steps=args.num_steps, data=args.data, ctx=ctx)
    log = logging.getLogger("ptb_lm")
    settings = result["settings"]
    if result["search"] is not None:
        log.info("cache search on the validation split (window %d): theta %s, lambda %s give perplexity %s "
                 "(%s without the cache)", settings.window, settings.theta, settings.lam,
                 format_ppl(result["search"]["ppl"]), format_ppl(result["search"]["ppl_without"]))
    read = "; read from %s" % result["data"] if result["data"] else ""
    log.info("%(source)s perplexity %(shown)s with the cache (window %(window)d, theta %(theta)s, lambda %(lam)s), "
             "%(without)s without it (loss %(loss).4f, %(loss_without).4f) on %(tokens)d tokens (%(scored)d scored; "
             "%(unknown)d unknown, read as <unk>); eval batch size %(batch_size)d, num_steps %(num_steps)d; "
             "checkpoint %(checkpoint)s%(read)s"
             % dict(result, shown=format_ppl(result["ppl"]), without=format_ppl(result["ppl_without"]),
                    window=settings.window, theta=settings.theta, lam=settings.lam, read=read))


def generate_main(argv=None):
    """ptb-lm-generate: words sampled from a checkpoint."""
    parser = Parser(prog="ptb-lm-generate", description=generate_main.__doc__)
    checkpoint_argument(parser)
    parser.add_argument("--words", type=int, default=50, help="how many words to sample (default: 50)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="below 1: safer; above 1: more varied (default: 1.0)")
    parser.add_argument("--seed", type=int, help="random seed of the sampler, for a repeatable text "
                                                 "(default: a different text each time)")
    parser.add_argument("--prompt", default="", help="words to start from; words outside the vocabulary read as "
                                                     "<unk>, and are named (default: none, start of a sentence)")
    parser.add_argument("--strict", action="store_true",
                        help="refuse prompt words outside the vocabulary instead of reading them as <unk>")
    args = parser.parse_args(argv)

    def body():
        from ..checkpoint import load
        from ..runtime.devices import resolve_contexts
        from ..sampling import check_sampling, generate, prompt_ids

        check_sampling(args.words, args.temperature, args.seed)  # before loading anything
        ctx = resolve_contexts(args.ctx, purpose="generating")[0]
        model, vocab, config = load(args.checkpoint, ctx=ctx)
        _, unknown = prompt_ids(vocab, args.prompt)
        if unknown and args.strict:
            raise DataError("--prompt has words outside the vocabulary: %s" % " ".join(unknown))
        if unknown:
            logging.getLogger("ptb_lm").warning("not in the vocabulary, read as <unk>: %s", " ".join(unknown))
        if not model.carries_state:
            logging.getLogger("ptb_lm").info(describe_reading(config.num_steps, sampling=True))
        words = generate(model, vocab, args.words, args.temperature, args.prompt, args.seed, ctx,
                         window=config.num_steps)
        text = " ".join(words).replace(" <eos> ", "\n").replace("<eos>", "\n")
        sys.stdout.write((args.prompt + " " if args.prompt else "") + text.strip(" ") + "\n")

    return _run(body, info=sys.stderr)  # stdout carries the text alone
def plot_main(argv=None):
    """ptb-lm-plot: a PNG of train and validation perplexity by epoch from a run's --log-json file or save dir."""
    parser = Parser(prog="ptb-lm-plot", description=plot_main.__doc__)
    parser.add_argument("log_json", metavar="RUN", help="the file written by ptb-lm-train --log-json, or a save dir "
                                                        "(its events are in its checkpoints)")
    parser.add_argument("--out", help="the PNG to write (default: the log's name with .png; for a save dir, "
                                      "DIR/curves.png)")
    parser.add_argument("--reference", action="append", default=[], metavar="EPOCH=PPL",
                        help="a validation perplexity printed elsewhere, drawn as a point; repeatable "
                             "(e.g. the chapter's: --reference 14=178.52 --reference 26=173.24)")
    parser.add_argument("--reference-label", default="the chapter", help="the legend of those points "
                                                                         "(default: the chapter)")
    args = parser.parse_args(argv)

    def body():
        try:
            from ..plotting import plot_history
        except ImportError:
            raise DataError("plotting needs matplotlib: pip install -e '.[plot]'") from None
        if os.path.isdir(args.log_json):
            events = _run_events(args.log_json)
            out = args.out or os.path.join(args.log_json, "curves.png")
        else:
            try:
                events = read_events(args.log_json)
            except (OSError, ValueError, KeyError) as err:
                raise DataError("cannot read %s: %s" % (args.log_json, err)) from None
            out = args.out or os.path.splitext(args.log_json)[0] + ".png"
        reference = {}
        for item in args.reference:
            epoch, _, ppl = item.partition("=")
            try:
                reference[int(epoch)] = float(ppl)
            except ValueError:
                raise DataError("--reference %r: give EPOCH=PERPLEXITY, e.g. 14=178.52" % item) from None
        try:
            plot_history(events, out, reference=reference, reference_label=args.reference_label)
        except OSError as err:
            raise DataError("cannot write %s: %s" % (out, err.strerror or err)) from None
        logging.getLogger("ptb_lm").info("wrote %s", out)

    return _run(body)


def _run_events(save_dir):
    """A save dir's events: its log's, if it names one that is there (it holds the test figure too), else those
    its last checkpoint holds."""
    from ..checkpoint import Checkpoint
    checkpoint = Checkpoint(save_dir)
    log = checkpoint.config.log_json
    if log and os.path.isfile(log):
        try:
            return read_events(log)
        except (OSError, ValueError, KeyError):
            pass  # the checkpoint's own events below
    return checkpoint.state["events"]


def export_main(argv=None):
    """ptb-lm-export: a checkpoint as an ONNX model, checked against MXNet in ONNX Runtime.

    It writes OUT/model.onnx, OUT/vocab.txt and OUT/model.json; ptb_lm_onnx (pip install
    '.[onnx]') scores and generates with them where MXNet does not run.
    """
    parser = Parser(prog="ptb-lm-export", description=export_main.__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a save dir (its last/ is used) or a checkpoint folder such as runs/x/best")
    parser.add_argument("--out", required=True, help="the folder to write (it must not exist, or be empty)")
    parser.add_argument("--force", action="store_true", help="replace --out if it already holds something")
    parser.add_argument("--route", default="auto", help="auto (MXNet's exporter where it matches, else ptb_lm's), "
                                                         "mxnet or ptb_lm (default: auto)")
    parser.add_argument("--data", help="the data whose test split the export is measured on (default: the data the "
                                       "run was trained on, if it is there; nothing is downloaded)")
    parser.add_argument("--batch-size", type=int, help="the batch size of that measurement (default: the run's)")
    args = parser.parse_args(argv)

    def body():
        from ..export import export_onnx

        if args.batch_size is not None:
            check_whole_number("batch_size", args.batch_size)
        export_onnx(args.checkpoint, args.out, route=args.route, force=args.force, data=args.data,
                    test_batch_size=args.batch_size)

    return _run(body)
