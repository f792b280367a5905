"""Stage 08 (byte-level BPE), hidden suite: other texts, tie cases, seeds and edge cases than the visible one."""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import pytest

from grader.harness import EXACT, Mistake, assert_close, assert_true, raised, seeded
from tests.stage08.helpers import EOT, merges_as_lists, random_string

PAD = "<|终|>"  # a special token that is not ASCII

# Scripts and characters the visible suite does not use: RTL text, Indic clusters, Arabic-Indic digits, regional
# indicator flags, a ZWJ family, Unicode line and paragraph separators, NEL, vertical tab, the information separators
# \x1c-\x1f (whitespace to str.isspace and to `re`, but not to the pattern's \s), a byte order mark, astral letters.
ALPHABET = ["x", "y", "q", " ", "   ", "\n", "\x0b", "\x85", "\u2028", "\u2029", "\x1c", "!\x1c", "\x1f", "\ufeff",
            "שלום", "مرحبا", "क्षि", "١٢٣", "½", "🇫🇷", "👨‍👩‍👧", "\u0301", "𝔸𝔹", "'re", "'d", "'m", "Ω", "ç"]


def corpus(seed: int, n_words: int, specials: tuple = (EOT, PAD)) -> str:
    rng = seeded(seed)
    letters = list("xyqzwuv") + ["ç", "Ω", "١٢", "'re", "!\x1c", "🇫🇷"]
    words = [random_string(rng, int(rng.integers(1, 8)), letters) for _ in range(120)]
    breaks = [" "] * 6 + ["\n", "\x1c ", "!\x1c", "   ", "\u2028", *specials]
    chosen = rng.choice(words, size=n_words).tolist()
    gaps = rng.choice(breaks, size=n_words).tolist()
    return "".join(word + gap for word, gap in zip(chosen, gaps))


# ---------------------------------------------------------------- training


def probe_train(m, text: str, vocab_size: int, special_tokens: list) -> dict:
    return {"train": merges_as_lists(m.train(text, vocab_size, special_tokens)),
            "naive": merges_as_lists(m.train_naive(text, vocab_size, special_tokens))}


@pytest.mark.concept("tie-break")
def test_merges_of_abababcab_by_hand(check):
    got = check(probe_train, text="abababcab", vocab_size=300, special_tokens=[], tol=EXACT,
                what="merges of 'abababcab'", mistakes=(
                    Mistake("ties were broken by the smallest pair of ids; the rule is the greatest pair of byte "
                            "strings", lambda got, want: got["train"][3] == [256, 258]),))
    # ab 4 -> 256: [ab ab ab c ab]. (ab, ab) 2 -> 257: [abab ab c ab]. Three pairs once each; first strings
    # b"abab", b"ab", b"c": (c, ab) = 258: [abab ab cab]. (b"abab", b"ab") > (b"ab", b"cab"): (abab, ab) = 259.
    # Then (ababab, cab) = 260 and the word is one token.
    hand = [[97, 98], [256, 256], [99, 256], [257, 256], [259, 258]]
    assert_close(got, {"train": hand, "naive": hand}, EXACT, "merges of 'abababcab' by hand")


@pytest.mark.concept("tie-break")
def test_ties_compare_the_first_string_before_the_second(check):
    got = check(probe_train, text="abx\nabx\nab\nac\nac", vocab_size=256 + 3, special_tokens=[], tol=EXACT,
                what="merges of 'abx abx ab ac ac' (newline-separated)", mistakes=(
                    Mistake("ties compared the joined bytes vocab[a] + vocab[b]; compare the pair (vocab[a], "
                            "vocab[b]) so the first string decides first",
                            lambda got, want: got["train"][1] == [97, 99]),))
    # (a, b) 3 -> 256. Then (ab, x) 2 and (a, c) 2 tie: (b"ab", b"x") > (b"a", b"c") since b"ab" > b"a"
    # (joined, b"abx" < b"ac" would pick the other). Then (a, c).
    hand = [[97, 98], [256, 120], [97, 99]]
    assert_close(got, {"train": hand, "naive": hand}, EXACT, "merges by hand")


@pytest.mark.concept("incremental")
def test_incremental_equals_naive_with_two_special_tokens(check):
    text = corpus(851, 1000)
    got = check(probe_train, text=text, vocab_size=256 + 2 + 200, special_tokens=[EOT, PAD], tol=EXACT,
                what="200 merges of another random corpus", mistakes=(
                    Mistake("train and train_naive disagree: after a merge, update the counts of every pair of "
                            "every affected pre-token, times its multiplicity",
                            lambda got, want: got["naive"] == want["naive"]),))
    assert_close(got["train"], got["naive"], EXACT, "incremental vs naive merges")
    assert_close(len(got["train"]), 200, EXACT, "number of merges")


def probe_edges(m) -> dict:
    empty = m.Tokenizer([])
    return {"train_empty": merges_as_lists(m.train("", 300)), "naive_empty": merges_as_lists(m.train_naive("", 300)),
            "no_room": merges_as_lists(m.train("hello hello", 256)), "counts_empty": dict(m.count_pretokens("")),
            "encode_empty": empty.encode(""), "decode_empty": empty.decode([]),
            "stream_empty": list(empty.encode_iterable([])), "stream_blank": list(empty.encode_iterable(["", ""])),
            "bytes_only": empty.encode("héllo 😀"), "vocab_size": empty.vocab_size}


@pytest.mark.concept("vocab-size")
def test_empty_inputs_and_no_merges(check):
    got = check(probe_edges, tol=EXACT, what="empty inputs")
    assert_close(got, {"train_empty": [], "naive_empty": [], "no_room": [], "counts_empty": {}, "encode_empty": [],
                       "decode_empty": "", "stream_empty": [], "stream_blank": [],
                       "bytes_only": list("héllo 😀".encode("utf-8")), "vocab_size": 256}, EXACT,
                 "empty text, vocab_size 256, and a tokenizer without merges (bytes only)")


def probe_merge_pair(m, cases: list) -> dict:
    results = []
    for ids, pair, new_id in cases:
        results.append([int(i) for i in m.merge_pair(tuple(ids), tuple(pair), new_id)])
    return {"results": results}


@pytest.mark.concept("merge-pair")
def test_merge_pair_edge_cases(check):
    cases = [([1, 2, 1, 2, 1], [1, 2], 8), ([3], [3, 3], 8), ([4, 5, 5], [5, 5], 8), ([6, 6, 6, 6, 6], [6, 6], 8),
             ([2, 1, 2, 1], [1, 2], 8)]
    got = check(probe_merge_pair, cases=cases, tol=EXACT, what="merge_pair on a tuple")
    assert_close(got["results"], [[8, 8, 1], [3], [4, 8], [8, 8, 6], [2, 8, 1]], EXACT, "merge_pair by hand")


def probe_train_errors(m, cases: list, mentions: list) -> list:
    return [[raised(m.train, "a b c", size, specials, mentions=mentions),
             raised(m.train_naive, "a b c", size, specials, mentions=mentions),
             raised(m.Tokenizer, [], specials)] for size, specials in cases]


@pytest.mark.concept("errors")
def test_bad_special_tokens_raise_value_error(check):
    # special tokens must be distinct, non-empty and free of whitespace
    cases = [(300, ["<|a|>", "<|a|>"]), (300, [""]), (300, ["<| a |>"]), (300, ["<|a|>\n"])]
    got = check(probe_train_errors, cases=cases, mentions=[], tol=EXACT, what="bad special tokens")
    for (size, specials), records in zip(cases, got):
        for record, name in zip(records, ("train", "train_naive", "Tokenizer")):
            assert_close(record, {"raised": "ValueError"}, EXACT, f"{name} with special tokens {specials!r}")
    # a vocab_size below 256 + len(special_tokens) raises ValueError naming vocab_size; the tokenizer itself is fine
    cases = [(257, ["<|a|>", "<|b|>"]), (255, [])]
    got = check(probe_train_errors, cases=cases, mentions=["vocab_size"], tol=EXACT, what="too small a vocab_size")
    for (size, specials), records in zip(cases, got):
        for record, name in zip(records[:2], ("train", "train_naive")):
            assert_close(record, {"raised": "ValueError", "mentions": ["vocab_size"]}, EXACT,
                         f"{name}(vocab_size={size}) with {len(specials)} special tokens")
        assert_close(records[2], {"returned": "<Tokenizer object>"}, EXACT, f"Tokenizer([], {specials})")


# ---------------------------------------------------------------- encoding


def probe_round_trip(m, text: str, vocab_size: int, special_tokens: list, samples: list) -> dict:
    tokenizer = m.Tokenizer(m.train(text, vocab_size, special_tokens), special_tokens)
    return {"ordinary": [tokenizer.decode(tokenizer.encode(s)) for s in samples],
            "allowed": [tokenizer.decode(tokenizer.encode(s, allow_special=True)) for s in samples],
            "arrays": [tokenizer.decode(np.array(tokenizer.encode(s), dtype=np.int64)) for s in samples[:20]]}


@pytest.mark.concept("round-trip")
def test_round_trip_on_other_scripts_and_separators(check):
    rng = seeded(852)
    samples = [random_string(rng, int(rng.integers(0, 25)), ALPHABET) for _ in range(120)]
    samples += ["\u0301start", "    ", "\n \n \n", EOT + EOT, PAD + " " + EOT, "<|endoftext", "x" * 200,
                "🇫🇷" * 30, "\x1c\x1c!!\x1c ", "'re're'd"]
    got = check(probe_round_trip, text=corpus(853, 700), vocab_size=256 + 2 + 150, special_tokens=[EOT, PAD],
                samples=samples, tol=EXACT, what="round trip")
    for key in ("ordinary", "allowed"):
        assert_close(got[key], samples, EXACT, f"decode(encode(s)) with special tokens {key}")
    assert_close(got["arrays"], samples[:20], EXACT, "decode(int64 array of encode(s))")


def probe_unseen(m, text: str, vocab_size: int, samples: list) -> dict:
    tokenizer = m.Tokenizer(m.train(text, vocab_size))
    return {"ids": [tokenizer.encode(s) for s in samples], "decoded": [tokenizer.decode(tokenizer.encode(s))
                                                                       for s in samples]}


@pytest.mark.concept("byte-fallback")
def test_unseen_bytes_stay_byte_tokens_beside_merged_ones(check):
    # "qq" | " qq" | " qq": (q, q) 3 beats (" ", q) 2 -> 256; then (" ", qq) 2 -> 257. "€" is not a letter, so
    # "qq€" is "qq" | "€" and its three bytes E2 82 AC stay byte tokens.
    samples = ["qq€", " qq", "€ qq"]
    got = check(probe_unseen, text="qq qq qq", vocab_size=256 + 2, samples=samples, tol=EXACT, what="unseen bytes")
    euro = list("€".encode("utf-8"))  # E2 82 AC
    assert_close(got["ids"], [[256] + euro, [257], euro + [257]], EXACT, "ids by hand: merges where they apply, "
                                                                      "bytes elsewhere")
    assert_close(got["decoded"], samples, EXACT, "round trip")


def probe_specials(m, merges: list, special_tokens: list, samples: list) -> dict:
    tokenizer = m.Tokenizer([tuple(pair) for pair in merges], special_tokens)
    return {"allowed": [tokenizer.encode(s, allow_special=True) for s in samples],
            "ordinary": [tokenizer.encode(s) for s in samples],
            "decoded": [tokenizer.decode([i]) for i in range(256 + len(merges), tokenizer.vocab_size)]}


@pytest.mark.concept("special-tokens")
def test_special_tokens_longest_first_adjacent_and_at_the_ends(check):
    specials = ["<|a|>", "<|a|><|b|>", PAD]  # ids 257, 258, 259 after one merge
    samples = ["<|a|><|b|><|a|>", "<|a|><|a|>x", "x<|终|>", "<|a|", "<|a|> <|b|>"]
    got = check(probe_specials, merges=[[60, 124]], special_tokens=specials, samples=samples, tol=EXACT,
                what="special tokens", mistakes=(
                    Mistake("a shorter special token won where a longer one matches: try the longest first",
                            lambda got, want: got["allowed"][0][0] == 257),))
    # "<|" is merge 0 = 256. "<|a|" -> [<|, a, |]; "<|b|>" alone is not special: [<|, b, |, >].
    hand = [[258, 257], [257, 257, 120], [120, 259], [256, 97, 124], [257, 32, 256, 98, 124, 62]]
    assert_close(got["allowed"], hand, EXACT, "encode(allow_special=True) by hand")
    assert_true(not any(i >= 257 for ids in got["ordinary"] for i in ids),
                f"allow_special=False produced a special id: {got['ordinary']}")
    assert_close(got["decoded"], specials, EXACT, "decode of each special id (ids 257, 258, 259 in order)")


# ---------------------------------------------------------------- saving


def probe_save_load(m, merges: list, special_tokens: list, sample: str, tamper: str | None) -> dict:
    tokenizer = m.Tokenizer([tuple(pair) for pair in merges], special_tokens)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "tokenizer.json")
        tokenizer.save(path)
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
        if tamper == "vocab":
            data["vocab"]["256"] = "ffff"
        elif tamper == "format":
            data["format"] = "something-else"
        if tamper:
            with open(path, "w", encoding="utf-8") as file:
                json.dump(data, file)
        loaded = raised(m.Tokenizer.load, path)
        if "returned" in loaded:
            again = m.Tokenizer.load(path)
            loaded = {"merges": merges_as_lists(again.merges), "special_tokens": list(again.special_tokens),
                      "ids": again.encode(sample, True)}
    return {"loaded": loaded, "ids": tokenizer.encode(sample, True), "file_vocab": data["vocab"]}


@pytest.mark.concept("save-load")
def test_save_load_with_unicode_special_tokens_and_bad_files(check):
    # "文" is E6 96 87 in UTF-8: the merges make 256 = E6 96, 257 = "文", 258 = " 文".
    merges, specials, sample = [[230, 150], [256, 135], [32, 257]], [PAD, EOT], " 文<|终|>终<|endoftext|>文"
    got = check(probe_save_load, merges=merges, special_tokens=specials, sample=sample, tamper=None, tol=EXACT,
                what="save + load")
    assert_close(got["loaded"], {"merges": merges, "special_tokens": specials, "ids": got["ids"]}, EXACT,
                 "merges, special tokens and ids after save + load")
    assert_close([got["file_vocab"]["259"], got["file_vocab"]["260"], got["file_vocab"]["256"]],
                 [PAD.encode("utf-8").hex(), EOT.encode("utf-8").hex(), "e696"], EXACT,
                 "the saved vocab: id -> hex of its bytes (special tokens after the 3 merges)")



@pytest.mark.concept("save-load")
def test_load_rejects_files_that_are_not_this_format(check):
    merges, specials = [[230, 150], [256, 135], [32, 257]], [PAD, EOT]
    for tamper in ("vocab", "format"):
        got = check(probe_save_load, merges=merges, special_tokens=specials, sample="x", tamper=tamper, tol=EXACT,
                    what=f"Tokenizer.load of a file whose {tamper} was changed")
        assert_close(got["loaded"], {"raised": "ValueError"}, EXACT,
                     f"Tokenizer.load of a file whose {tamper} was changed")


# ---------------------------------------------------------------- streaming


def probe_every_cut(m, text: str, vocab_size: int, special_tokens: list, sample: str) -> dict:
    tokenizer = m.Tokenizer(m.train(text, vocab_size, special_tokens), special_tokens)
    result = {}
    for name, flag in (("not allowed", False), ("allowed", True)):
        whole = tokenizer.encode(sample, flag)
        bad = [cut for cut in range(len(sample) + 1)
               if list(tokenizer.encode_iterable([sample[:cut], sample[cut:]], flag)) != whole]
        result[name] = {"whole": whole, "cuts_that_differ": bad}
    return result


@pytest.mark.concept("streaming")
def test_streaming_equals_whole_text_at_every_cut(check):
    sample = "y!\x1cq \x1c\x1cx  " + EOT + "'re\u2028\u2028 x" + PAD + "   !\x1c"
    text = corpus(854, 600) + ("xy!\x1cq " * 30)  # makes "!\x1c" a merge, so cutting inside it changes the ids
    got = check(probe_every_cut, text=text, vocab_size=256 + 2 + 120, special_tokens=[EOT, PAD], sample=sample,
                tol=EXACT, what="streaming at every cut", mistakes=(
                    Mistake("some cuts change the ids. If you find safe cuts with str.isspace or the `re` module: they "
                            "call \\x1c-\\x1f whitespace but the pattern's \\s does not, so '!\\x1c' (one pre-token) "
                            "gets cut; use the `regex` module's \\S(?=\\s)",
                            lambda got, want: any(got[k]["cuts_that_differ"] for k in got)),))
    for name in ("not allowed", "allowed"):
        assert_close(got[name]["cuts_that_differ"], [], EXACT,
                     f"cuts where encode_iterable([left, right]) != encode(whole), special tokens {name}")


def probe_file(m, text: str, sample: str, chunk_sizes: list) -> dict:
    tokenizer = m.Tokenizer(m.train(text, 256 + 40))
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "text.txt")
        with open(path, "w", encoding="utf-8", newline="") as file:
            file.write(sample)
        streams = {str(size): list(tokenizer.encode_file(path, size)) for size in chunk_sizes}
    return {"whole": tokenizer.encode(sample), "streams": streams}


@pytest.mark.concept("streaming")
def test_encode_file_without_whitespace_and_with_crlf(check):
    for sample in ("xyxyxyxyqqq" * 40, "a\r\nb\r\n\r\n  \r\n", "", "🇫🇷" * 50 + "\r"):
        got = check(probe_file, text=corpus(855, 300), sample=sample, chunk_sizes=[1, 3, 1000], tol=EXACT,
                    what=f"encode_file of {sample[:12]!r}...")
        for size, ids in got["streams"].items():
            assert_close(ids, got["whole"], EXACT, f"encode_file(chunk_size={size}) vs encode of {sample[:12]!r}...")
