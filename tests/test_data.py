import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from ptb_lm.data import Corpus, DataError, Dictionary, batchify, encode, get_batch

from helpers import ROOT, write_tiny_corpus


def test_dictionary_assigns_ids_in_order_of_first_sight():
    d = Dictionary()
    ids = [d.add_word(w) for w in "b a b c a".split()]
    assert ids == [0, 1, 0, 2, 1]
    assert d.idx_to_word == ["b", "a", "c"] and len(d) == 3


def test_dictionary_round_trips_through_text(tmp_path):
    d = Dictionary()
    for w in ["the", "<unk>", "N", "<eos>"]:
        d.add_word(w)
    d.save(str(tmp_path / "vocab.txt"))
    assert Dictionary.load(str(tmp_path / "vocab.txt")).word_to_idx == d.word_to_idx


def test_corpus_appends_eos_and_shares_one_dictionary(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "ptb.train.txt").write_text(" a b \n c\n")
    (folder / "ptb.valid.txt").write_text(" b d\n")
    (folder / "ptb.test.txt").write_text("e a\n")
    corpus = Corpus(str(folder))
    words = corpus.dictionary.idx_to_word
    assert [words[i] for i in corpus.train] == ["a", "b", "<eos>", "c", "<eos>"]
    assert [words[i] for i in corpus.valid] == ["b", "d", "<eos>"]
    assert [words[i] for i in corpus.test] == ["e", "a", "<eos>"]
    assert corpus.train.dtype == np.int32


def test_corpus_reads_folder_zip_and_seed_prefix_alike(tiny_corpus, tmp_path):
    archive = tmp_path / "tiny.zip"
    with zipfile.ZipFile(str(archive), "w") as z:
        for split in ("train", "valid", "test"):
            z.write(os.path.join(tiny_corpus, "ptb.%s.txt" % split), "ptb/ptb.%s.txt" % split)
    a, b, c = Corpus(tiny_corpus), Corpus(str(archive)), Corpus(os.path.join(tiny_corpus, "ptb."))
    for split in ("train", "valid", "test"):
        assert np.array_equal(getattr(a, split), getattr(b, split))
        assert np.array_equal(getattr(a, split), getattr(c, split))


def test_batchify_matches_the_seed_layout():
    data = np.arange(11)
    out = batchify(data, 2)
    assert out.shape == (5, 2)
    assert list(out[:, 0]) == [0, 1, 2, 3, 4] and list(out[:, 1]) == [5, 6, 7, 8, 9]


def test_get_batch_gives_next_word_targets_and_a_short_last_batch():
    source = batchify(np.arange(40), 4)  # (10, 4)
    data, target = get_batch(source, 0, 3)
    assert data.shape == (3, 4) and target.shape == (12,)
    assert np.array_equal(target, source[1:4].reshape(-1))
    data, target = get_batch(source, 8, 3)  # only row 9 is left to predict
    assert data.shape == (1, 4) and np.array_equal(target, source[9])


def test_encode_maps_unknown_words_and_counts_them():
    d = Dictionary()
    for w in ["<unk>", "a", "<eos>"]:
        d.add_word(w)
    ids, unknown = encode(["a zz", "yy a"], d, unknown="<unk>")
    assert [d.idx_to_word[i] for i in ids] == ["a", "<unk>", "<eos>", "<unk>", "a", "<eos>"]
    assert unknown == 2 and len(d) == 3


@pytest.mark.parametrize("problem", ["missing_path", "not_a_zip", "missing_split", "empty_split"])
def test_bad_data_raises_one_clear_error(tmp_path, problem):
    folder = write_tiny_corpus(str(tmp_path / "c"))
    path = folder
    if problem == "missing_path":
        path = str(tmp_path / "nowhere")
    elif problem == "not_a_zip":
        path = str(tmp_path / "fake.zip")
        open(path, "w").write("not a zip")
    elif problem == "missing_split":
        os.remove(os.path.join(folder, "ptb.valid.txt"))
    else:
        open(os.path.join(folder, "ptb.test.txt"), "w").write("\n  \n")
    with pytest.raises(DataError) as err:
        Corpus(path)
    expected = {"missing_path": "does not exist", "not_a_zip": "not a zip", "missing_split": "valid split is missing",
                "empty_split": "test split"}[problem]
    assert expected in str(err.value)


def test_pytorchs_file_names_and_the_unzipped_parent_folder_are_read_too(tiny_corpus, tmp_path):
    """The PyTorch example's layout (train.txt, valid.txt, test.txt) and the folder the zip unpacks into, with
    ptb/ inside, hold the same corpus as PTB's own names."""
    expected = Corpus(tiny_corpus)
    torch_layout = tmp_path / "torch"
    torch_layout.mkdir()
    for split in ("train", "valid", "test"):
        shutil.copy(os.path.join(tiny_corpus, "ptb.%s.txt" % split), str(torch_layout / ("%s.txt" % split)))
    parent = tmp_path / "unzipped"
    shutil.copytree(tiny_corpus, str(parent / "ptb"))
    for layout in (torch_layout, parent):
        corpus = Corpus(str(layout))
        assert corpus.dictionary.idx_to_word == expected.dictionary.idx_to_word
        assert all((getattr(corpus, s) == getattr(expected, s)).all() for s in ("train", "valid", "test"))


def test_a_folder_without_the_splits_says_what_it_holds_and_what_is_looked_for(tmp_path):
    (tmp_path / "notes.md").write_text("x")
    (tmp_path / "wiki.train.tokens").write_text("x")
    with pytest.raises(DataError) as err:
        Corpus(str(tmp_path))
    for words in ("notes.md", "wiki.train.tokens", "ptb.train.txt", "train.txt", "ptb/"):
        assert words in str(err.value)


def test_data_layer_imports_without_mxnet():
    code = ("import sys; sys.modules['mxnet'] = None\n"
            "import ptb_lm, ptb_lm.data, ptb_lm.download, ptb_lm.config\n"
            "print(ptb_lm.batchify(__import__('numpy').arange(6), 2).shape)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(3, 2)"


@pytest.mark.ptb
def test_real_ptb_has_the_published_sizes(ptb_zip):
    corpus = Corpus(ptb_zip)
    assert len(corpus.dictionary) == 10000
    assert "<eos>" in corpus.dictionary.word_to_idx
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (929589, 73760, 82430)
