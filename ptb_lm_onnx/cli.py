"""ptb-lm-onnx-score and ptb-lm-onnx-generate: an exported model on the command line, without MXNet."""

import argparse
import json
import sys

from . import ExportError, load


class _Parser(argparse.ArgumentParser):
    """argparse with ptb_lm's error voice: one line ``ptb-lm: error: ...``, exit 2, no prefix matching."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super(_Parser, self).__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, "ptb-lm: error: %s (%s --help lists the flags)\n" % (message, self.prog))


def _run(body):
    try:
        return body() or 0
    except ExportError as err:
        sys.stderr.write("ptb-lm: error: %s\n" % err)
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("ptb-lm: error: interrupted\n")
        return 130


def _read_text(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except OSError as err:
        raise ExportError("cannot read %s: %s" % (path, err.strerror or err)) from None
    except UnicodeDecodeError as err:
        raise ExportError("%s is not UTF-8 text (byte %d): convert it to UTF-8" % (path, err.start)) from None


def score_main(argv=None):
    """ptb-lm-onnx-score: the perplexity of a text file under an exported model, with ONNX Runtime."""
    parser = _Parser(prog="ptb-lm-onnx-score", description=score_main.__doc__)
    parser.add_argument("export", help="the folder ptb-lm-export wrote (model.onnx, vocab.txt, model.json)")
    parser.add_argument("text", help="a UTF-8 text file, one sentence a line")
    parser.add_argument("--batch-size", type=int, help="streams, as ptb-lm-evaluate's (default: the run's)")
    parser.add_argument("--num-steps", type=int, help="time steps per window (default: the run's)")
    parser.add_argument("--per-line", action="store_true",
                        help="also print each line's log-probability (natural log, its words and <eos>)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)

    def body():
        model = load(args.export)
        lines = _read_text(args.text)
        result = model.score(lines, args.batch_size, args.num_steps, per_line=args.per_line)
        if args.json:
            sys.stdout.write(json.dumps(result) + "\n")
            return
        if args.per_line:
            for line, log_prob in zip(lines, result["lines"]):
                sys.stdout.write("%.4f\t%s\n" % (log_prob, line))
        sys.stdout.write("%s perplexity %.2f (loss %.4f) on %d tokens (%d scored; %d unknown, read as <unk>); "
                         "batch size %d, num_steps %d\n" % (args.text, result["perplexity"], result["loss"],
                                                            result["tokens"], result["tokens_scored"],
                                                            result["unknown"], result["batch_size"],
                                                            result["num_steps"]))

    return _run(body)


def generate_main(argv=None):
    """ptb-lm-onnx-generate: words sampled from an exported model, with ONNX Runtime."""
    parser = _Parser(prog="ptb-lm-onnx-generate", description=generate_main.__doc__)
    parser.add_argument("export", help="the folder ptb-lm-export wrote (model.onnx, vocab.txt, model.json)")
    parser.add_argument("--words", type=int, default=50, help="how many words to sample (default: 50)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="below 1: safer; above 1: more varied (default: 1.0)")
    parser.add_argument("--seed", type=int, help="random seed of the sampler (default: a different text each time)")
    parser.add_argument("--prompt", default="", help="words to start from (default: none, a sentence's start)")
    parser.add_argument("--strict", action="store_true",
                        help="refuse prompt words outside the vocabulary instead of reading them as <unk>")
    args = parser.parse_args(argv)

    def body():
        model = load(args.export)
        unknown = model.unknown_words(args.prompt)
        if unknown and args.strict:
            raise ExportError("--prompt has words outside the vocabulary: %s" % " ".join(unknown))
        if unknown:
            sys.stderr.write("not in the vocabulary, read as <unk>: %s\n" % " ".join(unknown))
        words = model.generate(args.words, args.temperature, args.prompt, args.seed)
        text = " ".join(words).replace(" <eos> ", "\n").replace("<eos>", "\n")
        sys.stdout.write((args.prompt + " " if args.prompt else "") + text.strip(" ") + "\n")

    return _run(body)
