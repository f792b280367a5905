"""Stage 08 (byte-level BPE), visible suite: the conventions of the docstrings that the other tests' inputs do not
expose (a mistake there would pass them and fail the hidden suite). Each test's input is chosen so that one plausible
mistake gives a different answer; tests/mutants/stage08.toml lists those mistakes.
"""
from __future__ import annotations

import json
import os
import tempfile

import pytest

from grader.harness import EXACT, Mistake, assert_close, raised
from tests.stage08.helpers import EOT


def probe_split_edges(m, cases: list) -> list:
    return [m.split_on_special(text, specials) for text, specials in cases]


@pytest.mark.concept("special-split")
def test_split_on_special_of_an_empty_text_is_empty(check):
    cases = [["", []], ["", [EOT]], ["abc", []], [EOT, [EOT]]]
    empty = Mistake("an empty text gave ['']: the docstring asks for the non-empty pieces, so []",
                    lambda got, want: got[0] == [""])
    got = check(probe_split_edges, cases=cases, tol=EXACT, what="split_on_special at the edges", mistakes=(empty,))
    assert_close(got, [[], [], ["abc"], [EOT]], EXACT,
                 "split_on_special of '' (no pieces, with or without special tokens), of 'abc' with none, and of a "
                 "text that is one special token", mistakes=(empty,))


def probe_bad_special_tokens(m, cases: list, good: list) -> dict:
    result = {repr(specials): raised(m.Tokenizer, [], specials) for specials in cases}
    result["good"] = m.Tokenizer([], good).vocab_size
    return result


@pytest.mark.concept("errors")
def test_special_tokens_must_be_distinct_non_empty_and_without_whitespace(check):
    cases = [["<end of text>"], ["<|a|>", "<|b|>\n"], [""], [EOT, EOT]]
    got = check(probe_bad_special_tokens, cases=cases, good=["<|a|>", EOT], tol=EXACT,
                what="Tokenizer([], special_tokens)")
    assert_close(got["good"], 258, EXACT, f"Tokenizer([], ['<|a|>', {EOT!r}]).vocab_size: 256 bytes and 2 specials")
    for specials in cases:
        assert_close(got[repr(specials)], {"raised": "ValueError"}, EXACT,
                     f"Tokenizer([], {specials!r}): a special token with whitespace would be cut by pre-tokenization "
                     f"and by streaming; empty or repeated ones have no single id")


def probe_merge_using_its_own_id(m, merges: list, good: list) -> dict:
    return {"bad": raised(m.Tokenizer, [tuple(pair) for pair in merges], mentions=["1"]),
            "good": m.Tokenizer([tuple(pair) for pair in good]).vocab[257].decode("latin-1")}


@pytest.mark.concept("errors")
def test_a_merge_may_not_use_its_own_id(check):
    # merge 1 makes id 257, so (97, 257) uses an id that does not exist before it (the bound is < 256 + r, not <=)
    got = check(probe_merge_using_its_own_id, merges=[[97, 98], [97, 257]], good=[[97, 98], [97, 256]], tol=EXACT,
                what="Tokenizer([(97, 98), (97, 257)])")
    assert_close(got["bad"], {"raised": "ValueError", "mentions": ["1"]}, EXACT,
                 "merge 1 = (97, 257) uses its own id 257: ValueError naming the merge's index 1")
    assert_close(got["good"], "aab", EXACT, "Tokenizer([(97, 98), (97, 256)]).vocab[257]: 'a' + 'ab', the id before it")


def probe_special_text(m, merges: list) -> dict:
    tokenizer, plain = m.Tokenizer([tuple(pair) for pair in merges], [EOT]), m.Tokenizer([tuple(p) for p in merges])
    return {"ordinary": tokenizer.encode(EOT), "without specials": plain.encode(EOT),
            "allowed": tokenizer.encode(EOT, allow_special=True), "special id": tokenizer.vocab_size - 1}


@pytest.mark.concept("special-tokens")
def test_a_text_that_is_exactly_a_special_token_is_ordinary_unless_allowed(check):
    got = check(probe_special_text, merges=[[60, 124], [124, 62]], tol=EXACT, what=f"encode({EOT!r})", mistakes=(
        Mistake("the special id came from ordinary text: only allow_special=True may produce it",
                lambda got, want: got["ordinary"] == [got["special id"]]),))
    assert_close(got["ordinary"], got["without specials"], EXACT,
                 f"encode({EOT!r}) with allow_special=False: its bytes, merged like any text")
    assert_close(got["allowed"], [got["special id"]], EXACT, f"encode({EOT!r}, allow_special=True): the one id")


def probe_load_checks(m, merges: list) -> dict:
    tokenizer = m.Tokenizer([tuple(pair) for pair in merges], [EOT])
    result = {}
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "tokenizer.json")
        tokenizer.save(path)
        with open(path, encoding="utf-8") as file:
            good = json.load(file)
        tampered = dict(good, vocab=dict(good["vocab"], **{"256": "7a7a"}))  # "zz", where the merges make "ab"
        for name, data in (("vocab disagrees", tampered), ("version 2", dict(good, version=2)),
                           ("another format", dict(good, format="sentencepiece"))):
            with open(path, "w", encoding="utf-8") as file:
                json.dump(data, file)
            result[name] = raised(m.Tokenizer.load, path)
    return result


@pytest.mark.concept("save-load")
def test_load_rejects_another_format_or_a_vocab_that_disagrees(check):
    got = check(probe_load_checks, merges=[[97, 98], [256, 99]], tol=EXACT, what="Tokenizer.load of a bad file")
    for name in ("vocab disagrees", "version 2", "another format"):
        assert_close(got[name], {"raised": "ValueError"}, EXACT, f"Tokenizer.load of a file whose {name}")
