"""A ptb_lm model without MXNet: score text and generate words with ONNX Runtime and NumPy only.

    pip install '.[onnx]'                          # onnxruntime and numpy; any Python from 3.11, numpy 2 too
    ptb-lm-onnx-score EXPORT_DIR my.txt            # perplexity, as ptb-lm-evaluate computes it
    ptb-lm-onnx-generate EXPORT_DIR --words 20 --temperature 0.8 --seed 1 --prompt "the market"

EXPORT_DIR is what ``ptb-lm-export`` wrote: model.onnx, vocab.txt and model.json. This
package imports nothing but the standard library, NumPy and onnxruntime, so it runs
where MXNet 1.9.1 cannot (Python 3.13, numpy 2). Its text handling is ptb_lm's: each
line's words, then ``<eos>``; words outside the vocabulary read as ``<unk>``. Its
scoring is ptb-lm-evaluate's: the tokens cut into ``batch_size`` streams, windows of
``num_steps``, the state carried from window to window. Its sampling is
ptb-lm-generate's: softmax(logits / temperature), drawn with NumPy's RandomState(seed).
"""

import hashlib
import json
import os

import numpy as np

__all__ = ["ExportError", "PortableModel", "load"]

FORMAT = "ptb-lm-onnx"
FORMAT_VERSION = 1  # the newest model.json this package reads
EOS, UNK = "<eos>", "<unk>"


class ExportError(ValueError):
    """An export folder that cannot be used as it is; the message names the file and what to do."""


def file_digest(path, algorithm="sha256", chunk_size=1 << 20):
    """The hex digest (``hashlib`` name ``algorithm``) of the file at ``path``; ptb_lm's files.py uses this one
    too (this package may not import ptb_lm, and ptb_lm ships it)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _runtime(path_or_bytes):
    try:
        import onnxruntime
    except ImportError:
        raise ExportError("ptb_lm_onnx needs onnxruntime: pip install onnxruntime (or pip install '.[onnx]')") \
            from None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    try:
        return onnxruntime.InferenceSession(path_or_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own classes for a file it cannot read
        raise ExportError("ONNX Runtime cannot load %s (%s): export it again with ptb-lm-export"
                          % (path_or_bytes if isinstance(path_or_bytes, str) else "the model",
                             str(err).splitlines()[0])) from None


def load(folder):
    """The model exported to ``folder`` (model.onnx, vocab.txt, model.json), checked: format version, sha256,
    producer, and the vocabulary against the graph's output."""
    return PortableModel.from_export(folder)


class PortableModel(object):
    """An exported model in ONNX Runtime: :meth:`step`, :meth:`score`, :meth:`generate`."""

    def __init__(self, runtime, words, mode, num_layers, hidden, description=None, state_names=None):
        self.runtime = runtime
        self.words = list(words)
        self.ids = {w: i for i, w in enumerate(self.words)}
        self.mode, self.num_layers, self.hidden = mode, num_layers, hidden
        self.description = description or {}
        # The state arrays the graph takes after the tokens: its interface says (model.json records it), so that
        # this package need not know the model's family.
        if state_names is None:
            state_names = [i["name"] for i in self.description.get("inputs", []) if i["name"] != "tokens"]
        self.state_names = list(state_names)
        self.carries_state = bool(self.state_names)  # a transformer reads each window on its own

    @classmethod
    def from_files(cls, onnx_path, words, mode, num_layers, hidden, num_steps=35, state_names=()):
        """From a model.onnx and its vocabulary, without a model.json (how the exporter measures it)."""
        return cls(_runtime(onnx_path), words, mode, num_layers, hidden, {"num_steps": num_steps}, state_names)

    @classmethod
    def from_export(cls, folder):
        paths = {name: os.path.join(folder, name) for name in ("model.onnx", "vocab.txt", "model.json")}
        missing = [name for name, path in paths.items() if not os.path.isfile(path)]
        if missing:
            raise ExportError("%s is not a ptb_lm export: it lacks %s (ptb-lm-export writes model.onnx, vocab.txt "
                              "and model.json)" % (folder, ", ".join(missing)))
        try:
            with open(paths["model.json"], encoding="utf-8") as f:
                described = json.load(f)
        except (OSError, ValueError) as err:
            raise ExportError("%s is damaged (%s): export again with ptb-lm-export" % (paths["model.json"], err)) \
                from None
        if not isinstance(described, dict) or described.get("format") != FORMAT:
            raise ExportError("%s is not a ptb_lm export's model.json" % paths["model.json"])
        version = described.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ExportError("%s has format version %s, newer than this ptb_lm_onnx reads (%d): upgrade ptb-lm"
                              % (paths["model.json"], version, FORMAT_VERSION))
        found = file_digest(paths["model.onnx"])
        if found != described.get("model_onnx_sha256"):
            raise ExportError("%s is not the model model.json describes: its sha256 is %s, not %s. Export again"
                              % (paths["model.onnx"], found[:12], str(described.get("model_onnx_sha256"))[:12]))
        runtime = _runtime(paths["model.onnx"])
        producer = runtime.get_modelmeta().producer_name
        if producer != described.get("producer", "ptb_lm"):
            raise ExportError("%s was made by %r, not by ptb_lm's exporter" % (paths["model.onnx"], producer))
        with open(paths["vocab.txt"], encoding="utf-8") as f:
            words = [line.rstrip("\n") for line in f if line.rstrip("\n")]
        outputs = {o.name: o.shape for o in runtime.get_outputs()}
        vocab = outputs.get("logits", [None])[-1]
        if vocab != len(words) or len(words) != described.get("vocab_size"):
            raise ExportError("%s holds %d words but the graph scores %s: they are not one export"
                              % (paths["vocab.txt"], len(words), vocab))
        return cls(runtime, words, described["mode"], described["num_layers"], described["hidden_dim"], described)

    # --- the graph, one window at a time -----------------------------------------------------------

    def begin_state(self, batch):
        """The zero state: one ``[num_layers, batch, hidden]`` array (two for an LSTM)."""
        return [np.zeros((self.num_layers, batch, self.hidden), dtype=np.float32) for _ in self.state_names]

    def step(self, tokens, state):
        """``tokens`` int ``[seq_len, batch]`` from ``state`` -> ``(logits [seq_len, batch, vocab], new state)``."""
        feed = {"tokens": np.asarray(tokens, dtype=np.int64)}
        feed.update(zip(self.state_names, state))
        out = self.runtime.run(None, feed)
        return out[0], out[1:]

    # --- text -------------------------------------------------------------------------------------

    def encode(self, lines):
        """Each line's words then ``<eos>``, as ids; words outside the vocabulary as ``<unk>``. Returns
        ``(ids, number of unknown words)``."""
        ids, unknown = [], []
        for line in lines:
            for word in line.split() + [EOS]:
                found = self.ids.get(word, -1)
                if found < 0:
                    unknown.append(word)
                ids.append(found)
        ids = np.array(ids, dtype=np.int64)
        if unknown:
            ids[ids < 0] = self.unknown_id(unknown)
        return ids, len(unknown)

    def unknown_id(self, words):
        """The id that ``words``, outside the vocabulary, read as: ``<unk>``'s (ptb_lm gives every vocabulary
        one). An export of a model trained before that may have none: its unknown words are refused by name."""
        if UNK not in self.ids:
            raise ExportError(no_unk_message(words))
        return self.ids[UNK]

    def score(self, lines, batch_size=None, num_steps=None, per_line=False):
        """Perplexity of ``lines`` as ptb-lm-evaluate computes it (streams of ``batch_size``, windows of
        ``num_steps``, the state carried); with ``per_line``, each line's log-probability (natural log, its
        words and ``<eos>``) scored as one stream from a zero state."""
        batch_size = self.description.get("eval_batch_size", 1) if batch_size is None else batch_size
        num_steps = self.description.get("num_steps", 35) if num_steps is None else num_steps
        for name, value in (("batch_size", batch_size), ("num_steps", num_steps)):
            if not isinstance(value, int) or value < 1:
                raise ExportError("--%s must be a whole number of at least 1, got %r" % (name.replace("_", "-"),
                                                                                        value))
        ids, unknown = self.encode(lines)
        loss, scored = self.score_ids(ids, batch_size, num_steps)
        result = {"loss": loss, "perplexity": float(np.exp(loss)) if loss < 700 else float("inf"),
                  "tokens": int(len(ids)), "tokens_scored": scored, "unknown": unknown, "batch_size": batch_size,
                  "num_steps": num_steps}
        if per_line:
            result["lines"] = [self.line_log_prob(line) for line in lines]
        return result

    def score_ids(self, ids, batch_size, num_steps):
        """``(mean loss per token, tokens scored)`` of a 1-D id array, cut as ptb-lm-evaluate cuts it."""
        rows = len(ids) // batch_size
        if rows < 2:
            raise ExportError("the text has %d tokens: too few for batch size %d (each stream needs 2)"
                              % (len(ids), batch_size))
        source = np.asarray(ids[: rows * batch_size]).reshape(batch_size, rows).T  # (rows, batch): a stream a column
        state = self.begin_state(batch_size)
        total, scored = 0.0, 0
        for i in range(0, rows - 1, num_steps):
            seq_len = min(num_steps, rows - 1 - i)
            logits, state = self.step(source[i:i + seq_len], state)
            total += float(-_log_probs(logits, source[i + 1:i + 1 + seq_len]).sum())
            scored += seq_len * batch_size
        return total / scored, scored

    def line_log_prob(self, line):
        """The natural-log probability of one line's words and ``<eos>``, after an ``<eos>``, from a zero state."""
        ids, _ = self.encode([line])
        start = self.ids[EOS]
        tokens = np.concatenate([[start], ids]).astype(np.int64)
        logits, _ = self.step(tokens[:-1].reshape(-1, 1), self.begin_state(1))
        return float(_log_probs(logits, tokens[1:].reshape(-1, 1)).sum())

    def generate(self, num_words, temperature=1.0, prompt="", seed=None):
        """``num_words`` words sampled after ``prompt``, as ptb-lm-generate samples them."""
        if not isinstance(num_words, int) or num_words < 1:
            raise ExportError("--words must be a whole number of at least 1, got %r" % (num_words,))
        if not temperature > 0:
            raise ExportError("--temperature must be above 0, got %g" % temperature)
        if seed is not None and not (isinstance(seed, int) and 0 <= seed < 2 ** 32):
            raise ExportError("--seed must be a whole number from 0 to 2**32 - 1, got %r" % (seed,))
        history, _ = prompt_ids(prompt, self.ids, self.unknown_id)
        state = [self.begin_state(1)]

        def last_logits(tokens):
            logits, state[0] = self.step(np.array(tokens, dtype=np.int64).reshape(-1, 1), state[0])
            return logits[-1, 0]

        ids = sample_ids(last_logits, history, num_words, temperature, seed, self.carries_state,
                         self.description.get("num_steps", 35))
        return [self.words[i] for i in ids]

    def unknown_words(self, text):
        """The words of ``text`` outside the vocabulary, in order."""
        return [w for w in text.split() if w not in self.ids]


def prompt_ids(prompt, ids, unknown_id):
    """``(ids, unknown)``: a prompt's words as ids (``<eos>`` for an empty prompt), and those outside the
    vocabulary ``ids``, which read as ``unknown_id(their words)`` (``<unk>``'s id, or an error naming them).
    Generation's one reader of a prompt, ptb_lm's too."""
    words = prompt.split() or [EOS]
    unknown = [w for w in words if w not in ids]
    unk = unknown_id(unknown) if unknown else None
    return [ids.get(w, unk) for w in words], unknown


def sample_ids(last_logits, history, num_words, temperature=1.0, seed=None, carries_state=True, window=35):
    """The sampling loop of ptb-lm-generate and ptb-lm-onnx-generate, one for both (this package may not import
    ptb_lm, and ptb_lm imports it): ``num_words`` ids, each drawn from softmax(logits / temperature) with
    NumPy's RandomState(seed), so that both give the same words for a seed.

    ``last_logits(tokens)`` runs the model on ``tokens`` (a list of ids) from its state, keeps the new state,
    and returns the logits (vocab,) of the last one. A model that carries its state is given each new word
    alone; one that does not (a transformer) the last ``window`` words again each time. ``history`` (the
    prompt's ids) grows with the words drawn.
    """
    rng = np.random.RandomState(seed)
    tokens = history if carries_state else history[-window:]
    out = []
    for _ in range(num_words):
        last = np.asarray(last_logits(tokens), dtype=np.float64) / temperature
        probs = np.exp(last - last.max())
        probs /= probs.sum()
        next_id = int(rng.choice(len(probs), p=probs))
        out.append(next_id)
        history.append(next_id)
        tokens = [next_id] if carries_state else history[-window:]
    return out


def no_unk_message(words):
    """Why ``words``, outside a vocabulary that has no ``<unk>``, cannot be read: the one wording of ptb_lm's
    rule for unknown words. It lives here because this package may not import ptb_lm (it runs where MXNet
    does not), while ptb_lm, which ships it, may import this one."""
    shown = " ".join(sorted(set(words))[:5]) + (" ..." if len(set(words)) > 5 else "")
    return ("%d word(s) are outside the vocabulary (%s), and this model's vocabulary has no %s to read them as "
            "(it was trained before ptb_lm gave every vocabulary one): remove them, or train the model again"
            % (len(words), shown, UNK))


def _log_probs(logits, targets):
    """log softmax(logits)[target] for each position: logits [T, N, V], targets [T, N] -> [T, N] (float64).

    The exponentials are float32 (the logits' own precision, and MXNet's), summed in float64: each is off by at
    most float32's rounding, 2**-24 relative, so a log-probability by at most about 6e-8. This is most of the
    scoring time, and float64 exponentials took about 2.6 times as long (dev/portable_scoring.py)."""
    top = logits.max(axis=-1, keepdims=True)
    shifted = np.subtract(logits, top)
    np.exp(shifted, out=shifted)
    log_norm = np.log(shifted.sum(axis=-1, dtype=np.float64))
    picked = np.take_along_axis(logits, targets[..., None].astype(np.int64), axis=-1)[..., 0]
    return (picked.astype(np.float64) - top[..., 0]) - log_norm
