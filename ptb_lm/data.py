"""Tokenised PTB as integer arrays, and the chapter's batch layout. Pure NumPy.

Nothing here imports mxnet, so the data layer can be used (and tested) on its
own. ``batchify`` and ``get_batch`` only slice, reshape and transpose, so they
work the same on a NumPy array and on an MXNet NDArray.
"""

import io
import os
import zipfile
import zlib

import numpy as np

from ptb_lm_onnx import no_unk_message

from .errors import DataError

EOS = "<eos>"
UNK = "<unk>"
SPLITS = ("train", "valid", "test")


class Dictionary(object):
    """A two-way map between words and consecutive integer ids, in order of first sight."""

    def __init__(self):
        self.word_to_idx = {}
        self.idx_to_word = []

    def add_word(self, word):
        """Return the id of ``word``, giving it the next free id if it is new."""
        if word not in self.word_to_idx:
            self.idx_to_word.append(word)
            self.word_to_idx[word] = len(self.idx_to_word) - 1
        return self.word_to_idx[word]

    def __len__(self):
        return len(self.idx_to_word)

    def save(self, path):
        """Write one word per line, in id order (a word never holds whitespace)."""
        with io.open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(self.idx_to_word) + "\n")

    @classmethod
    def load(cls, path):
        """Read a dictionary written by :meth:`save`."""
        dictionary = cls()
        with io.open(path, encoding="utf-8") as f:
            for line in f:
                word = line.rstrip("\n")
                if word:
                    dictionary.add_word(word)
        return dictionary


def tokenize_lines(lines):
    """Yield the words of each line followed by ``<eos>``, as the chapter does."""
    for line in lines:
        for word in line.split():
            yield word
        yield EOS


def encode(lines, dictionary, unknown=None):
    """Map the words of ``lines`` to an int32 array of ids.

    With ``unknown=None`` new words are added to ``dictionary`` (how a corpus is
    built). With ``unknown=WORD`` the dictionary is left as it is and words it
    lacks map to the id of WORD; returns ``(ids, number_of_unknown_words)``.
    """
    if unknown is None:
        ids = [dictionary.add_word(w) for w in tokenize_lines(lines)]
        return np.array(ids, dtype=np.int32)
    lookup = dictionary.word_to_idx.get
    words = list(tokenize_lines(lines))
    ids = np.array([lookup(w, -1) for w in words], dtype=np.int32)
    missing = ids < 0
    if missing.any():
        ids[missing] = unknown_id(dictionary, [w for w, m in zip(words, missing) if m], unknown)
    return ids, int(missing.sum())


def unknown_id(dictionary, words, unknown=UNK):
    """The id that ``words``, outside ``dictionary``, are read as: that of ``<unk>``.

    Every vocabulary ptb_lm builds has ``<unk>`` (:class:`Corpus`); one from a model trained before
    that may not, and its unknown words are refused by name rather than read as another word.
    """
    if unknown not in dictionary.word_to_idx:
        raise DataError(no_unk_message(words))
    return dictionary.word_to_idx[unknown]


class Corpus(object):
    """PTB's three splits as int32 arrays of word ids, with one shared dictionary.

    ``path`` is any of:

    * a folder holding ``ptb.train.txt``, ``ptb.valid.txt``, ``ptb.test.txt`` (or PyTorch's
      example's ``train.txt``, ``valid.txt``, ``test.txt``), or such a folder's parent, with ``ptb/`` in it;
    * a zip holding those three files (in any folder inside it);
    * the chapter's file prefix, e.g. ``'data/ptb/ptb.'``.

    The dictionary grows over train, then valid, then test, so ids match the chapter's.
    A corpus without ``<unk>`` (PTB has one) gains it last, so that a trained model can read
    any text: words it never saw read as ``<unk>``. ``add_unk=False`` builds the vocabulary of
    a model trained before that (``added_unk`` says whether it was added).
    """

    def __init__(self, path, add_unk=True):
        self.dictionary = Dictionary()
        texts = read_split_texts(path)
        self.train = self.tokenize(texts["train"])
        self.valid = self.tokenize(texts["valid"])
        self.test = self.tokenize(texts["test"])
        self.added_unk = add_unk and UNK not in self.dictionary.word_to_idx
        if self.added_unk:
            self.dictionary.add_word(UNK)

    def tokenize(self, text):
        """Add the words of ``text`` to the dictionary; return their ids (int32)."""
        return encode(text.splitlines(), self.dictionary)

    def splits(self):
        """Return ``{'train': ids, 'valid': ids, 'test': ids}``."""
        return {name: getattr(self, name) for name in SPLITS}


# How a folder may name the three splits: PTB's zip (and the chapter), and PyTorch's word_language_model example.
NAMINGS = ("ptb.%s.txt", "%s.txt")


def split_files(folder):
    """``{split: path}`` of the three splits in ``folder`` or in its ``ptb/`` (under either naming), or None."""
    for where in (folder, os.path.join(folder, "ptb")):
        for naming in NAMINGS:
            names = {s: os.path.join(where, naming % s) for s in SPLITS}
            if all(os.path.isfile(name) for name in names.values()):
                return names
    return None


def read_split_texts(path):
    """Return ``{split: text}`` for the three PTB files found at ``path``."""
    path = os.fspath(path)
    if os.path.isdir(path):
        names = split_files(path)
        if names is None:
            raise DataError(_missing_splits(path))
        return {s: _read_text_file(names[s], s) for s in SPLITS}
    if os.path.isfile(path):
        return _read_zip(path)
    if os.path.isfile(path + "train.txt"):  # the chapter's prefix form
        return {s: _read_text_file(path + s + ".txt", s) for s in SPLITS}
    raise DataError(
        "the data path %s does not exist: give a folder holding ptb.{train,valid,test}.txt or the ptb.zip "
        "itself (in Python, ptb_lm.download.locate_ptb() finds or downloads PTB and returns such a path)"
        % os.path.abspath(path)
    )


def _missing_splits(folder):
    """What a folder without the three splits holds, and the names looked for."""
    for where in (folder, os.path.join(folder, "ptb")):
        for naming in NAMINGS:
            present = [s for s in SPLITS if os.path.isfile(os.path.join(where, naming % s))]
            if present:
                missing = [naming % s for s in SPLITS if s not in present]
                return "the %s split is missing: %s holds %s but not %s" % (
                    [s for s in SPLITS if s not in present][0], where,
                    ", ".join(naming % s for s in present), ", ".join(missing))
    try:
        held = sorted(os.listdir(folder))
    except OSError as err:
        return "cannot read the data folder %s: %s" % (folder, err.strerror or err)
    shown = ", ".join(held[:8]) + (", ..." if len(held) > 8 else "") if held else "nothing"
    return ("%s holds no PTB splits (it holds %s): give a folder, or a folder with ptb/ in it, holding "
            "ptb.train.txt, ptb.valid.txt and ptb.test.txt (or train.txt, valid.txt and test.txt), or the ptb.zip"
            % (folder, shown))


def _check_text(text, split, where):
    if not text.strip():
        raise DataError("the %s split (%s) is empty: the PTB files are damaged, fetch them again" % (split, where))
    return text


def _decode(data, split, where):
    try:
        return _check_text(data.decode("utf-8"), split, where)
    except UnicodeDecodeError as err:
        raise DataError("the %s split (%s) is not UTF-8 text (byte %d): the PTB files are damaged or not PTB; "
                        "fetch them again" % (split, where, err.start)) from None


def _read_text_file(name, split):
    if not os.path.isfile(name):
        raise DataError("the %s split is missing: expected the file %s" % (split, name))
    try:
        with io.open(name, "rb") as f:
            return _decode(f.read(), split, name)
    except OSError as err:
        raise DataError("cannot read the %s split %s: %s" % (split, name, err.strerror or err)) from None


def _read_zip(path):
    damaged = "%s is damaged (%s): delete it and fetch the PTB zip again, or give a folder holding its text files"
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise DataError("%s is not a zip file: give the PTB zip or a folder holding its three text files"
                        % path) from None
    except OSError as err:
        raise DataError("cannot read %s: %s" % (path, err.strerror or err)) from None
    with archive:
        members = {os.path.basename(m): m for m in archive.namelist() if not m.endswith("/")}
        texts = {}
        for split in SPLITS:
            member = members.get("ptb.%s.txt" % split)
            if member is None:
                raise DataError("the %s split is missing: %s holds no ptb.%s.txt" % (split, path, split))
            try:
                data = archive.read(member)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
                raise DataError(damaged % (path, err)) from None
            texts[split] = _decode(data, split, "%s:%s" % (path, member))
    return texts


def batchify(data, batch_size):
    """Cut a 1-D id sequence into ``batch_size`` parallel streams, one per column.

    The tail that does not fill a whole row is dropped. For the sequence
    ``a b c d e f g h i j k`` and ``batch_size=2``::

        a f
        b g          shape (num_batches, batch_size) = (5, 2):
        c h          column 0 is the stream a..e, column 1 is f..j,
        d i          and k, which fills no row, is dropped.
        e j

    Reading down a column follows the text, so the hidden state left by one
    batch is the right start for the next batch of the same column.
    """
    num_batches = data.shape[0] // batch_size
    data = data[: num_batches * batch_size]
    return data.reshape((batch_size, num_batches)).T


def get_batch(source, i, num_steps):
    """Return rows ``i .. i+num_steps-1`` of ``source`` and the rows one step later.

    ``source`` is ``(num_rows, batch_size)`` as made by :func:`batchify`.
    ``data`` is ``(seq_len, batch_size)`` (time-major, TN) and ``target`` is the
    next word of each, flattened row by row to ``(seq_len * batch_size,)`` so it
    lines up with the decoder's ``(seq_len * batch_size, vocab)`` output. The
    last batch of a split may be shorter than ``num_steps``.
    """
    seq_len = min(num_steps, source.shape[0] - 1 - i)
    data = source[i : i + seq_len]
    target = source[i + 1 : i + 1 + seq_len]
    return data, target.reshape((-1,))


def batch_starts(num_rows, num_steps):
    """The row indices where the batches of a ``(num_rows, batch_size)`` split begin."""
    return range(0, num_rows - 1, num_steps)
