"""Stage 08 (byte-level BPE), visible suite.

Every test runs a probe on your module and on the reference, compares the two, and also checks a merge sequence or an
encoding worked out by hand in the comments, or an invariant (round trip, streaming == whole text, save/load
identity), so that it would catch a wrong reference too. The conventions are in the docstrings of exercises/bpe.py
and in docs/08-bpe.md.
"""
from __future__ import annotations

import itertools
import json
import os
import tempfile

import numpy as np
import pytest

from grader.harness import EXACT, Mistake, assert_close, assert_true, raised, seeded
from tests.stage08.helpers import EOT, merges_as_lists, random_string

def corpus(seed: int, n_words: int, special: str | None = EOT) -> str:
    """A seeded text of word-like runs (so that merges have something to find) with Unicode and document breaks."""
    rng = seeded(seed)
    letters = list("aeiostnrl") + ["é", "ß", "中", "😀", "'s"]
    words = [random_string(rng, int(rng.integers(1, 9)), letters) for _ in range(150)]
    breaks = [" "] * 8 + ["\n", ", ", ". ", "  ", "\n\n", "!"] + ([special] if special else [])
    chosen = rng.choice(words, size=n_words).tolist()
    gaps = rng.choice(breaks, size=n_words).tolist()
    return "".join(word + gap for word, gap in zip(chosen, gaps))


# ---------------------------------------------------------------- pre-tokens


def probe_split_on_special(m, cases: list) -> list:
    return [m.split_on_special(text, specials) for text, specials in cases]


@pytest.mark.concept("special-split")
def test_split_on_special_cuts_leftmost_then_longest(check):
    cases = [("a<|endoftext|>b", [EOT]),
             ("<|endoftext|><|endoftext|>x<|end", [EOT]),  # adjacent specials; an unfinished one is plain text
             ("say <|a|><|b|> now", ["<|a|>", "<|a|><|b|>"]),  # both match at 4: the longer wins
             ("plain text", []),
             ("", [EOT])]
    got = check(probe_split_on_special, cases=cases, tol=EXACT, what="split_on_special", mistakes=(
        Mistake("a shorter special token won where a longer one matches at the same place: try the longest first",
                lambda got, want: "<|a|>" in got[2]),))
    hand = [["a", EOT, "b"], [EOT, EOT, "x<|end"], ["say ", "<|a|><|b|>", " now"], ["plain text"], []]
    assert_close(got, hand, EXACT, "split_on_special by hand")


def probe_counts(m, text: str, special_tokens: list) -> dict:
    counts = m.count_pretokens(text, special_tokens)
    return {"keys_are_bytes": all(type(key) is bytes for key in counts),
            "counts": {(key.decode("utf-8") if type(key) is bytes else repr(key)): int(value)
                       for key, value in counts.items()}}


@pytest.mark.concept("count-pretokens")
def test_count_pretokens_by_hand(check):
    text = "the cat the  cat<|endoftext|>the café, I'll"
    got = check(probe_counts, text=text, special_tokens=[EOT], tol=EXACT, what="count_pretokens", mistakes=(
        Mistake("the special token was split as text: cut it out with split_on_special and drop it",
                lambda got, want: any("endoftext" in key for key in got["counts"])),))
    # "the cat the  cat" -> the | " cat" | " the" | " " | " cat"   (of two spaces, the last one starts " cat")
    # "the café, I'll"   -> the | " café" | "," | " I" | "'ll"
    hand = {"the": 2, " cat": 2, " the": 1, " ": 1, " café": 1, ",": 1, " I": 1, "'ll": 1}
    assert_close(got, {"keys_are_bytes": True, "counts": hand}, EXACT, "pre-token counts by hand (UTF-8 keys)")


def probe_merge_pair(m, cases: list) -> dict:
    results, untouched = [], True
    for ids, pair, new_id in cases:
        before = list(ids)
        results.append([int(i) for i in m.merge_pair(ids, tuple(pair), new_id)])
        untouched = untouched and list(ids) == before
    return {"results": results, "input_unchanged": untouched}


@pytest.mark.concept("merge-pair")
def test_merge_pair_goes_left_to_right_without_overlap(check):
    cases = [([1, 1, 1], [1, 1], 9), ([1, 1, 1, 1], [1, 1], 9), ([5, 1, 2, 1, 2, 3], [1, 2], 7),
             ([1, 2], [2, 1], 9), ([], [1, 2], 9)]
    got = check(probe_merge_pair, cases=cases, tol=EXACT, what="merge_pair", mistakes=(
        Mistake("overlapping occurrences were both merged: after a merge, skip both of its tokens",
                lambda got, want: got["results"][0] != [9, 1]),))
    hand = [[9, 1], [9, 9], [5, 7, 7, 3], [1, 2], []]
    assert_close(got, {"results": hand, "input_unchanged": True}, EXACT, "merge_pair by hand; input not modified")


# ---------------------------------------------------------------- training


def probe_train(m, text: str, vocab_size: int, special_tokens: list) -> dict:
    return {"train": merges_as_lists(m.train(text, vocab_size, special_tokens)),
            "naive": merges_as_lists(m.train_naive(text, vocab_size, special_tokens))}


SMALLEST_IDS = Mistake("ties were broken by the smallest pair of ids; the rule is the greatest pair of byte strings "
                       "(vocab[a], vocab[b])", lambda got, want: got["train"][1] == [97, 98])


@pytest.mark.concept("tie-break")
def test_merges_of_aaabdaaabac_by_hand(check):
    got = check(probe_train, text="aaabdaaabac", vocab_size=256 + 5, special_tokens=[], tol=EXACT,
                what="merges of 'aaabdaaabac'", mistakes=(SMALLEST_IDS,))
    # One pre-token. Pairs: aa 4, ab 2, bd da ba ac 1 -> (a, a) = 256.  Word: [aa a b d aa a b a c]
    # (aa, a) 2 and (a, b) 2 tie: b"aa" > b"a", so (256, a) = 257 "aaa".  Word: [aaa b d aaa b a c]
    # (aaa, b) 2 -> 258 "aaab".  Word: [aaab d aaab a c], every pair once: the first strings are
    # b"aaab", b"d", b"aaab", b"a" and b"d" is the greatest -> (d, aaab) = 259.  Word: [aaab daaab a c]
    # b"daaab" leads again -> (daaab, a) = 260.
    hand = [[97, 97], [256, 97], [257, 98], [100, 258], [259, 97]]
    assert_close(got, {"train": hand, "naive": hand}, EXACT, "merges of 'aaabdaaabac' (train and train_naive)",
                 mistakes=(SMALLEST_IDS,))


@pytest.mark.concept("tie-break")
def test_ties_go_to_the_greatest_byte_pair_and_counts_come_first(check):
    got = check(probe_train, text="ab cd", vocab_size=300, special_tokens=[], tol=EXACT, what="merges of 'ab cd'",
                mistakes=(Mistake("ties were broken by the smallest pair of ids",
                                  lambda got, want: got["train"][0] == [32, 99]),))
    # "ab" | " cd": three pairs, once each. Greatest bytes: (c, d) = 256; then (b"a", b"b") > (b" ", b"cd"):
    # (a, b) = 257; then (" ", cd) = 258. Nothing is left to merge: 3 merges although 44 were allowed.
    hand = [[99, 100], [97, 98], [32, 256]]
    assert_close(got, {"train": hand, "naive": hand}, EXACT, "merges of 'ab cd'")
    got = check(probe_train, text="zz aa aa", vocab_size=300, special_tokens=[], tol=EXACT,
                what="merges of 'zz aa aa'")
    # "zz" | " aa" | " aa": (a, a) 2 and (" ", a) 2 tie, b"a" > b" " -> (a, a) = 256. Then (" ", aa) has count 2
    # and beats (z, z) with count 1 although b"z" > b" ": the count decides first.
    hand = [[97, 97], [32, 256], [122, 122]]
    assert_close(got, {"train": hand, "naive": hand}, EXACT, "merges of 'zz aa aa'")


@pytest.mark.concept("boundaries")
def test_merges_never_cross_pretoken_boundaries(check):
    crossing = Mistake("a merge joins a letter to the space after it: pre-tokenize first and count pairs only "
                       "inside pre-tokens", lambda got, want: [97, 32] in got["train"] or [98, 32] in got["train"])
    got = check(probe_train, text="a b a b a b", vocab_size=300, special_tokens=[], tol=EXACT,
                what="merges of 'a b a b a b'", mistakes=(crossing,))
    # "a" | " b" | " a" | " b" | " a" | " b": (" ", b) 3 then (" ", a) 2; then every pre-token is one token.
    assert_close(got, {"train": [[32, 98], [32, 97]], "naive": [[32, 98], [32, 97]]}, EXACT,
                 "merges of 'a b a b a b' by hand", mistakes=(crossing,))
    as_text = Mistake("the special token was trained on as text: cut it out before pre-tokenizing",
                      lambda got, want: len(got["train"]) > 0)
    got = check(probe_train, text="x<|sep|>x<|sep|>x", vocab_size=300, special_tokens=["<|sep|>"], tol=EXACT,
                what="merges of 'x<|sep|>x<|sep|>x'", mistakes=(as_text,))
    # The special token only separates: the pre-tokens are "x", "x", "x" and there is no pair at all.
    assert_close(got, {"train": [], "naive": []}, EXACT, "merges when special tokens separate single letters",
                 mistakes=(as_text,))


def probe_vocab(m, text: str, vocab_size: int, special_tokens: list) -> dict:
    merges = m.train(text, vocab_size, special_tokens)
    tokenizer = m.Tokenizer(merges, special_tokens)
    return {"merges": merges_as_lists(merges), "vocab_size": tokenizer.vocab_size,
            "vocab": {str(i): tokenizer.vocab[i].hex() for i in sorted(tokenizer.vocab)}}


@pytest.mark.concept("vocab-size")
def test_vocab_size_is_reached_exactly_or_training_stops_early(check):
    got = check(probe_vocab, text="aaaa", vocab_size=1000, special_tokens=[EOT], tol=EXACT, what="'aaaa'")
    # [a a a a] -> (a, a) = 256 gives [aa aa] -> (aa, aa) = 257 gives [aaaa]: no pair is left, 2 merges.
    assert_close(got["merges"], [[97, 97], [256, 256]], EXACT, "merges of 'aaaa' (the corpus runs out of pairs)")
    assert_close([got["vocab_size"], got["vocab"]["256"], got["vocab"]["257"], got["vocab"]["258"]],
                 [259, b"aa".hex(), b"aaaa".hex(), EOT.encode().hex()], EXACT,
                 "vocab_size, vocab[256], vocab[257] and the special token's bytes at id 256 + 2 merges")
    text = corpus(801, 400)
    one_too_many = Mistake("one merge too many: vocab_size counts the special tokens too, so learn "
                           "vocab_size - 256 - len(special_tokens) merges",
                           lambda got, want: len(got["merges"]) == len(want["merges"]) + 1)
    got = check(probe_vocab, text=text, vocab_size=256 + 1 + 60, special_tokens=[EOT], tol=EXACT,
                what="60 merges of a random corpus", mistakes=(one_too_many,))
    assert_close([len(got["merges"]), got["vocab_size"], got["vocab"]["316"]], [60, 317, EOT.encode().hex()],
                 EXACT, "len(merges), vocab_size and the special token at the last id (316)")
    for r, (a, b) in enumerate(got["merges"]):
        assert_true(a < 256 + r and b < 256 + r, f"merge {r} = ({a}, {b}) uses an id that does not exist yet")
        assert_close(got["vocab"][str(256 + r)], got["vocab"][str(a)] + got["vocab"][str(b)], EXACT,
                     f"vocab[{256 + r}] = vocab[{a}] + vocab[{b}] (hex)")


@pytest.mark.concept("incremental")
def test_incremental_training_equals_naive_training(check):
    text = corpus(802, 900)  # about 4 KB
    got = check(probe_train, text=text, vocab_size=256 + 1 + 150, special_tokens=[EOT], tol=EXACT,
                what="150 merges of a random corpus", mistakes=(
                    Mistake("train and train_naive disagree: after a merge, update the counts of every pair of "
                            "every affected pre-token (old pairs out, new pairs in, times its multiplicity)",
                            lambda got, want: got["naive"] == want["naive"]),))
    assert_close(got["train"], got["naive"], EXACT, "incremental merges vs naive merges")
    assert_close(len(got["train"]), 150, EXACT, "number of merges")


def probe_train_errors(m, text: str, cases: list) -> list:
    # a vocab_size too small raises ValueError naming vocab_size (the docstring's promise)
    return [[raised(m.train, text, size, specials, mentions=["vocab_size"]),
             raised(m.train_naive, text, size, specials, mentions=["vocab_size"])] for size, specials in cases]


@pytest.mark.concept("errors")
def test_too_small_vocab_size_raises_value_error_naming_it(check):
    cases = [(255, []), (256, [EOT]), (100, ["<|a|>", "<|b|>"]), (257, [EOT])]
    got = check(probe_train_errors, text="hello world", cases=cases, tol=EXACT, what="train and train_naive")
    for (size, specials), records in zip(cases[:3], got[:3]):
        for name, record in zip(("train", "train_naive"), records):
            assert_close(record, {"raised": "ValueError", "mentions": ["vocab_size"]}, EXACT,
                         f"{name}(vocab_size={size}) with {len(specials)} special tokens")
    assert_close(got[3], [{"returned": []}, {"returned": []}], EXACT,
                 "vocab_size = 256 + 1 with one special token leaves no room: no merges")


# ---------------------------------------------------------------- encoding and decoding


def probe_encode(m, merges: list, texts: list) -> list:
    tokenizer = m.Tokenizer([tuple(pair) for pair in merges])
    return [tokenizer.encode(text) for text in texts]


@pytest.mark.concept("encode-by-rank")
def test_encode_applies_merges_by_rank(check):
    # merge 0: (b, c) = 256, merge 1: (a, b) = 257. In "abc" both pairs are present; (b, c) was learned first,
    # so "abc" -> [a, bc]; (a, bc) is not a merge. "abab" -> [ab, ab]; "bcab" -> [bc, ab].
    got = check(probe_encode, merges=[[98, 99], [97, 98]], texts=["abc", "abab", "bcab", "cab"], tol=EXACT,
                what="encode with merges (b, c), (a, b)", mistakes=(
                    Mistake("merges were applied where they occur first (left to right), not by rank",
                            lambda got, want: got[0] == [257, 99]),))
    assert_close(got, [[97, 256], [257, 257], [256, 257], [99, 257]], EXACT, "encode by hand")
    merges = [[97, 97], [256, 97], [257, 98], [100, 258], [259, 97]]  # trained on "aaabdaaabac" (see above)
    got = check(probe_encode, merges=merges, texts=["aaabdaaabac", "daaabac", "aaaa"], tol=EXACT,
                what="encode with the merges of 'aaabdaaabac'")
    # the training word ends as [aaab, daaaba, c]; "daaabac" -> [daaaba, c]; "aaaa" -> [aa, aa] ((aa, a) needs a lone a)
    assert_close(got, [[258, 260, 99], [260, 99], [256, 256]], EXACT, "encode by hand")


def probe_round_trip(m, text: str, vocab_size: int, special_tokens: list, samples: list) -> dict:
    tokenizer = m.Tokenizer(m.train(text, vocab_size, special_tokens), special_tokens)
    encoded = [tokenizer.encode(sample) for sample in samples]
    flat = [i for ids in encoded for i in ids]
    return {"decoded": [tokenizer.decode(ids) for ids in encoded], "ids": encoded,
            "id_range": [min(flat), max(flat)], "training_tokens": len(tokenizer.encode(text)),
            "training_bytes": len(text.encode("utf-8"))}


@pytest.mark.concept("round-trip")
def test_decode_inverts_encode_on_random_unicode(check):
    rng = seeded(803)
    samples = [random_string(rng, int(rng.integers(0, 30))) for _ in range(150)]
    samples += ["", "   ", "\n\n\n", " \t \n", "👩‍💻👍🏽e\u0301", "can't won't y'all'll", "a  b   c    d"]
    vocab_size = 256 + 1 + 120
    got = check(probe_round_trip, text=corpus(804, 600), vocab_size=vocab_size, special_tokens=[EOT],
                samples=samples, tol=EXACT, what="round trip")
    assert_close(got["decoded"], samples, EXACT, "decode(encode(s)) for 157 random Unicode strings")
    assert_true(0 <= got["id_range"][0] and got["id_range"][1] < vocab_size - 1,
                f"ids of ordinary text must lie in [0, {vocab_size - 1}) (the last id is the special token), "
                f"got the range {got['id_range']}")
    assert_true(got["training_tokens"] < got["training_bytes"] / 2,
                f"120 merges should at least halve the training text: {got['training_tokens']} tokens for "
                f"{got['training_bytes']} bytes")


@pytest.mark.concept("byte-fallback")
def test_text_never_seen_in_training_falls_back_to_bytes(check):
    samples = ["日本語 😀!", "Ελληνικά\u2028", "x"]
    got = check(probe_round_trip, text="aaaa bbbb aaaa bbbb", vocab_size=256 + 6, special_tokens=[], samples=samples,
                tol=EXACT, what="encode of unseen scripts")
    assert_close(got["decoded"], samples, EXACT, "round trip of unseen text")
    # No merge involves these bytes, so the ids are exactly the UTF-8 bytes.
    assert_close(got["ids"], [list(s.encode("utf-8")) for s in samples], EXACT, "ids = the UTF-8 bytes")


def probe_specials(m, text: str, vocab_size: int, special_tokens: list, sample: str) -> dict:
    tokenizer = m.Tokenizer(m.train(text, vocab_size, special_tokens), special_tokens)
    plain = m.Tokenizer(tokenizer.merges)
    allowed, ordinary = tokenizer.encode(sample, allow_special=True), tokenizer.encode(sample)
    return {"allowed": allowed, "ordinary": ordinary, "without_specials": plain.encode(sample),
            "pieces": [tokenizer.encode(piece) for piece in sample.split(EOT)],
            "special_id": tokenizer.vocab_size - 1, "n_merges": len(tokenizer.merges),
            "decoded": [tokenizer.decode(allowed), tokenizer.decode(ordinary)]}


@pytest.mark.concept("special-tokens")
def test_special_tokens_are_one_id_only_when_allowed(check):
    sample = "hi<|endoftext|>there <|endoftext|>"
    got = check(probe_specials, text=corpus(805, 300), vocab_size=256 + 1 + 40, special_tokens=[EOT], sample=sample,
                tol=EXACT, what="special tokens", mistakes=(
                    Mistake("with allow_special=False the special id appeared: ordinary text must never produce it",
                            lambda got, want: want["special_id"] in got["ordinary"]),
                    Mistake("with allow_special=True the special token was encoded as text",
                            lambda got, want: want["special_id"] not in got["allowed"])))
    eot = got["special_id"]
    assert_close(eot, 256 + got["n_merges"], EXACT, "the special token's id: 256 + len(merges)")
    hi, there, _ = got["pieces"]
    assert_close(got["allowed"], hi + [eot] + there + [eot], EXACT,
                 "allowed: encode('hi') + [special] + encode('there ') + [special]")
    assert_true(eot not in got["ordinary"], f"not allowed: the special id {eot} must not appear in {got['ordinary']}")
    assert_close(got["ordinary"], got["without_specials"], EXACT,
                 "not allowed: the same ids as a tokenizer that has no special tokens")
    assert_close(got["decoded"], [sample, sample], EXACT, "both encodings decode back to the text")


def probe_decode_errors(m, ids_list: list, bad: list) -> dict:
    tokenizer = m.Tokenizer([(97, 98)], [EOT])  # vocab: 256 bytes, ab = 256, special = 257
    # an id outside [0, vocab_size) raises ValueError naming it (the docstring's promise)
    return {"records": [raised(tokenizer.decode, ids, mentions=[str(b)]) for ids, b in zip(ids_list, bad)],
            "array": tokenizer.decode(np.array([256, 99, 257, 230], dtype=np.int64))}


@pytest.mark.concept("errors")
def test_decode_rejects_unknown_ids_and_replaces_broken_utf8(check):
    got = check(probe_decode_errors, ids_list=[[97, 258], [-1], [97, 1000]], bad=[258, -1, 1000], tol=EXACT,
                what="decode with a vocabulary of 258")
    for record, bad in zip(got["records"], (258, -1, 1000)):
        assert_close(record, {"raised": "ValueError", "mentions": [str(bad)]}, EXACT, f"decode with the id {bad}")
    # [ab, c, special, 0xE6]: 0xE6 starts a 3-byte character that never ends -> U+FFFD.
    assert_close(got["array"], "abc<|endoftext|>\ufffd", EXACT, "decode of an int64 array ending inside a character")


def probe_bad_merges(m, bad: list, good: list) -> dict:
    # a merge using an id not defined yet raises ValueError naming the merge's index (the docstring's promise)
    return {"bad": raised(m.Tokenizer, [tuple(pair) for pair in bad], mentions=["1"]),
            "good": m.Tokenizer([tuple(pair) for pair in good]).vocab_size}


@pytest.mark.concept("errors")
def test_tokenizer_rejects_merges_that_use_undefined_ids(check):
    got = check(probe_bad_merges, bad=[[97, 98], [256, 258]], good=[[97, 98], [256, 99]], tol=EXACT,
                what="Tokenizer(merges)")
    assert_close(got["bad"], {"raised": "ValueError", "mentions": ["1"]}, EXACT,
                 "merge 1 = (256, 258) uses id 258, which does not exist before it")
    assert_close(got["good"], 258, EXACT, "vocab_size of two good merges")


# ---------------------------------------------------------------- saving


def probe_save_load(m, text: str, vocab_size: int, special_tokens: list, sample: str) -> dict:
    tokenizer = m.Tokenizer(m.train(text, vocab_size, special_tokens), special_tokens)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "tokenizer.json")
        tokenizer.save(path)
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
        loaded = m.Tokenizer.load(path)
    vocab = lambda t: {str(i): t.vocab[i].hex() for i in sorted(t.vocab)}  # noqa: E731
    return {"merges": [merges_as_lists(tokenizer.merges), merges_as_lists(loaded.merges)],
            "special_tokens": [list(tokenizer.special_tokens), list(loaded.special_tokens)],
            "vocab": [vocab(tokenizer), vocab(loaded)],
            "ids": [tokenizer.encode(sample, True), loaded.encode(sample, True)],
            "file": {"keys": sorted(data), "format": [data["format"], data["version"]], "merges": data["merges"],
                     "special_tokens": data["special_tokens"], "vocab": data["vocab"]}}


@pytest.mark.concept("save-load")
def test_save_then_load_is_the_identity(check):
    sample = "they'll see 中文 😀<|endoftext|>tea"
    got = check(probe_save_load, text=corpus(806, 500), vocab_size=256 + 1 + 80, special_tokens=[EOT], sample=sample,
                tol=EXACT, what="save and load")
    for key in ("merges", "special_tokens", "vocab", "ids"):
        assert_close(got[key][1], got[key][0], EXACT, f"{key} after save + load vs before")
    assert_close(got["file"]["keys"], ["format", "merges", "special_tokens", "version", "vocab"], EXACT,
                 "the keys of the saved JSON")
    assert_close([got["file"]["format"], got["file"]["merges"], got["file"]["special_tokens"], got["file"]["vocab"]],
                 [["byte-level-bpe", 1], got["merges"][0], [EOT], got["vocab"][0]], EXACT,
                 "the saved format, merges ([a, b] lists), special tokens and vocab (id -> hex of its bytes)")


# ---------------------------------------------------------------- streaming


def probe_stream(m, text: str, vocab_size: int, special_tokens: list, sample: str, cuts: list) -> dict:
    tokenizer = m.Tokenizer(m.train(text, vocab_size, special_tokens), special_tokens)
    bounds = [0, *cuts, len(sample)]
    pieces = [sample[i:j] for i, j in zip(bounds, bounds[1:])]
    return {name: {"whole": tokenizer.encode(sample, flag),
                   "stream": list(tokenizer.encode_iterable(iter(pieces), flag)),
                   "characters": list(tokenizer.encode_iterable(list(sample), flag))}
            for name, flag in (("not allowed", False), ("allowed", True))}


STREAM_SAMPLE = "I'll say  hello,\r\n  world<|endoftext|>they've 42 cafés!!  \n\n 👍🏽 end   "


@pytest.mark.concept("streaming")
def test_streaming_gives_the_ids_of_the_whole_text(check):
    sample = STREAM_SAMPLE
    cuts = sorted({sample.index("'ll") + 1,  # between ' and ll
                   sample.index("  hello") + 1,  # inside a run of two spaces
                   sample.index("\r\n") + 1,  # between \r and \n
                   sample.index("world") + 7,  # inside <|endoftext|>
                   sample.index("'ve") + 2,
                   sample.index("👍🏽") + 1,  # between the emoji and its skin tone
                   sample.index("caf") + 3,  # between caf and é
                   len(sample) - 2})  # inside the final whitespace
    got = check(probe_stream, text=corpus(807, 500) + sample, vocab_size=256 + 1 + 100, special_tokens=[EOT],
                sample=sample, cuts=cuts, tol=EXACT, what="streaming", mistakes=(
                    Mistake("each piece was encoded on its own: keep the text after the last safe cut in a buffer",
                            lambda got, want: got["allowed"]["stream"] != got["allowed"]["whole"]),))
    for name in ("not allowed", "allowed"):
        assert_close(got[name]["stream"], got[name]["whole"], EXACT, f"encode_iterable(awkward pieces) vs encode, "
                                                                     f"special tokens {name}")
        assert_close(got[name]["characters"], got[name]["whole"], EXACT, f"encode_iterable(one character at a "
                                                                         f"time) vs encode, special tokens {name}")


def probe_file(m, text: str, vocab_size: int, sample: str, chunk_sizes: list) -> dict:
    tokenizer = m.Tokenizer(m.train(text, vocab_size, [EOT]), [EOT])
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "text.txt")
        with open(path, "w", encoding="utf-8", newline="") as file:
            file.write(sample)
        streams = {str(size): list(tokenizer.encode_file(path, size, True)) for size in chunk_sizes}
    return {"whole": tokenizer.encode(sample, True), "streams": streams}


@pytest.mark.concept("streaming")
def test_encode_file_gives_the_ids_of_the_whole_file(check):
    rng = seeded(808)
    sample = STREAM_SAMPLE + random_string(rng, 300) + EOT + random_string(rng, 100)
    got = check(probe_file, text=corpus(809, 400), vocab_size=256 + 1 + 60, sample=sample, chunk_sizes=[1, 7, 64, 4096],
                tol=EXACT, what="encode_file", mistakes=(
                    Mistake("the file was read with newline translation: open it with newline='' so '\\r\\n' stays",
                            lambda got, want: any(len(s) < len(want["whole"]) for s in got["streams"].values())),))
    for size, ids in got["streams"].items():
        assert_close(ids, got["whole"], EXACT, f"encode_file(chunk_size={size}) vs encode(whole file)")


def probe_lazy(m, text: str, line: str, n_lines: int) -> dict:
    tokenizer = m.Tokenizer(m.train(text, 256 + 30))
    consumed = 0

    def lines():
        nonlocal consumed
        for _ in range(n_lines):
            consumed += 1
            yield line

    first = list(itertools.islice(tokenizer.encode_iterable(lines()), 4))
    return {"consumed": consumed, "first": first, "expected": tokenizer.encode(line * 3)[:4]}


@pytest.mark.concept("streaming")
def test_encode_iterable_is_lazy(check):
    got = check(probe_lazy, text=corpus(810, 200), line="the rest is silence\n", n_lines=100_000, tol=EXACT,
                what="encode_iterable on a long generator")
    assert_close(got["first"], got["expected"], EXACT, "the first 4 ids of the stream")
    assert_true(got["consumed"] <= 2, f"encode_iterable read {got['consumed']} of 100000 lines before yielding its "
                                      f"first ids: it must yield as it goes, not read everything first")
