"""Stage 01 (n-gram language models), visible suite.

Every test runs a probe on your module and on the reference, compares the two, and also checks a value worked out by
hand in the comments, or an invariant, so that it would catch a wrong reference too. The conventions are in the
docstrings of exercises/ngram.py and in docs/01-ngram.md.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.harness import EXACT, F64, Mistake, Tol, assert_close, assert_true, raised, seeded
from tests.stage01.helpers import VALUE_ERROR, all_contexts

# "hello" with the vocabulary sorted: e=0, h=1, l=2, o=3, so "hello" is [1, 0, 2, 2, 3].
HELLO = np.array([1, 0, 2, 2, 3], dtype=np.int64)


# ---------------------------------------------------------------- the tokenizer


def probe_tokenizer(m, text: str, other: str) -> dict:
    tokenizer = m.CharTokenizer(text)
    ids = tokenizer.encode(other)
    return {"vocab": list(tokenizer.vocab), "vocab_size": tokenizer.vocab_size, "ids": ids, "dtype": str(ids.dtype)}


@pytest.mark.concept("tokenizer")
def test_vocabulary_is_sorted_and_encode_gives_int64_ids(check):
    got = check(probe_tokenizer, text="hello", other="hello", tol=EXACT, what="tokenizer of 'hello'", mistakes=(
        Mistake("the vocabulary is in order of first appearance; it must be sorted(set(text))",
                lambda got, want: got["vocab"] == ["h", "e", "l", "o"]),
    ))
    assert_close(got["vocab"], ["e", "h", "l", "o"], EXACT, "vocab (sorted unique characters)")
    assert_close(got["ids"], HELLO, EXACT, "encode('hello') with e=0, h=1, l=2, o=3")
    assert_close(got["dtype"], "int64", EXACT, "dtype of encode's result")


def probe_round_trip(m, text: str, ids: list) -> dict:
    tokenizer = m.CharTokenizer(text)
    return {"decoded": tokenizer.decode(tokenizer.encode(text)), "from_list": tokenizer.decode(ids),
            "from_array": tokenizer.decode(np.asarray(ids, dtype=np.int64))}


@pytest.mark.concept("tokenizer")
def test_decode_inverts_encode_and_accepts_lists_and_arrays(check):
    rng = seeded(101)
    alphabet = list("ab cd\nEF!?")
    text = "".join(rng.choice(alphabet, size=200).tolist()) + "".join(alphabet)  # every character appears
    ids = rng.integers(0, len(alphabet), size=30).tolist()
    got = check(probe_round_trip, text=text, ids=ids, tol=EXACT, what="decode")
    vocab = sorted(set(text))
    assert_close(got["decoded"], text, EXACT, "decode(encode(text))")
    assert_close(got["from_list"], "".join(vocab[i] for i in ids), EXACT, "decode(list of ids)")
    assert_close(got["from_array"], got["from_list"], EXACT, "decode(array) vs decode(list)")


def probe_unknown_character(m, text: str, bad: str, mentions: list) -> dict:
    tokenizer = m.CharTokenizer(text)
    return {"unknown": raised(tokenizer.encode, bad, mentions=mentions), "known": tokenizer.encode(text[::-1])}


@pytest.mark.concept("unknown-char")
def test_unknown_character_error_names_the_character_and_its_position(check):
    # 'z' is at index 3; the message names it as repr('z') and says where (the docstring's promise)
    got = check(probe_unknown_character, text="hello", bad="helzo", mentions=["'z'", "position 3"], tol=EXACT,
                what="CharTokenizer('hello')")
    assert_close(got["unknown"], {"raised": "ValueError", "mentions": ["'z'", "position 3"]}, EXACT,
                 "encode('helzo')")
    assert_close(got["known"], HELLO[::-1], EXACT, "encode('olleh'): known characters still encode")


# ---------------------------------------------------------------- the split


def probe_split(m, tokens: np.ndarray, val_fraction: float) -> dict:
    train, val = m.train_val_split(tokens, val_fraction)
    return {"train": np.asarray(train), "val": np.asarray(val)}


SWAPPED = Mistake("train and validation are swapped: return (head, tail) = (train, val)",
                  lambda got, want: len(got["train"]) == len(want["val"]) and len(got["val"]) == len(want["train"]))


@pytest.mark.concept("split")
def test_split_sizes_and_concatenation(check):
    rng = seeded(102)
    # 10 tokens, 0.2 -> n_val = round(2.0) = 2; 101 tokens, 0.1 -> n_val = round(10.1) = 10, n_train = 91.
    for n, fraction, n_train in ((10, 0.2, 8), (101, 0.1, 91)):
        tokens = rng.integers(0, 7, size=n)
        got = check(probe_split, tokens=tokens, val_fraction=fraction, tol=EXACT, what=f"split of {n} tokens",
                    mistakes=(SWAPPED,))
        assert_close([len(got["train"]), len(got["val"])], [n_train, n - n_train], EXACT,
                     f"(len(train), len(val)) for {n} tokens and val_fraction={fraction}")
        assert_close(np.concatenate([got["train"], got["val"]]), tokens, EXACT, "concatenate(train, val)")


@pytest.mark.concept("split")
def test_split_cannot_leak(check):
    tokens = np.arange(50)  # token = its position, so the values show which positions went where
    got = check(probe_split, tokens=tokens, val_fraction=0.3, tol=EXACT, what="split of arange(50)",
                mistakes=(SWAPPED,))
    assert_true(not set(got["train"].tolist()) & set(got["val"].tolist()),
                "a position is in both train and validation: the split leaks")
    assert_close(got["val"], np.arange(35, 50), EXACT, "validation = the contiguous tail (positions 35..49)")
    assert_true(got["train"].max() < got["val"].min(), "every train position must come before every val position")


def probe_bad_splits(m, tokens: np.ndarray, fractions: list) -> dict:
    return {f"train_val_split(4 tokens, {fraction})": raised(m.train_val_split, tokens, fraction)
            for fraction in fractions}


@pytest.mark.concept("split")
def test_split_rejects_fractions_that_leave_a_part_empty(check):
    tokens = seeded(103).integers(0, 5, size=4)
    fractions = [0.0, 1.0, -0.1, 1.5, 0.1, 0.5]  # 0.1 gives round(0.4) = 0 validation tokens; 0.5 is fine: 2 and 2
    got = check(probe_bad_splits, tokens=tokens, fractions=fractions, tol=EXACT, what="splits of 4 tokens")
    for fraction in fractions[:-1]:
        name = f"train_val_split(4 tokens, {fraction})"
        assert_close(got[name], VALUE_ERROR, EXACT, name)
    assert_close(got["train_val_split(4 tokens, 0.5)"], {"returned": [tokens[:2], tokens[2:]]}, EXACT,
                 "train_val_split(4 tokens, 0.5): two tokens each")


# ---------------------------------------------------------------- counting


def probe_counts(m, tokens: np.ndarray, n: int, vocab_size: int) -> np.ndarray:
    return np.asarray(m.ngram_counts(tokens, n, vocab_size))


TRANSPOSED = Mistake("the axes are reversed: counts[previous, next], the earliest token on the first axis",
                     lambda got, want: np.array_equal(got, want.T))


@pytest.mark.concept("counts")
def test_counts_of_abab_by_hand(check):
    abab = np.array([0, 1, 0, 1])
    # unigrams: a twice, b twice; bigrams: ab, ba, ab; trigrams: aba, bab.
    hand = {1: [2, 2], 2: [[0, 2], [1, 0]], 3: [[[0, 0], [1, 0]], [[0, 1], [0, 0]]]}
    for n, want in hand.items():
        got = check(probe_counts, tokens=abab, n=n, vocab_size=2, tol=EXACT, what=f"{n}-gram counts of 'abab'",
                    mistakes=(TRANSPOSED,))
        assert_close(got, np.array(want), EXACT, f"{n}-gram counts of 'abab' by hand", mistakes=(TRANSPOSED,))


def probe_fitted_counts(m, tokens: np.ndarray, order: int, vocab_size: int) -> dict:
    model = m.NGramModel(order, vocab_size).fit(tokens)
    return {f"order {k + 1}": np.asarray(c) for k, c in enumerate(model.counts)}


@pytest.mark.concept("counts")
def test_fit_counts_every_order(check):
    transposed = Mistake("counts[1] must be indexed [previous, next]",
                         lambda got, want: np.array_equal(got["order 2"], want["order 2"].T))
    got = check(probe_fitted_counts, tokens=HELLO, order=2, vocab_size=4, tol=EXACT, what="counts of 'hello'",
                mistakes=(transposed,))
    # unigrams e, h, l, l, o; bigrams he, el, ll, lo.
    bigrams = np.zeros((4, 4), dtype=np.int64)
    bigrams[1, 0] = bigrams[0, 2] = bigrams[2, 2] = bigrams[2, 3] = 1
    assert_close(got, {"order 1": np.array([1, 1, 2, 1]), "order 2": bigrams}, EXACT, "counts of 'hello' by hand",
                 mistakes=(transposed,))
    tokens = seeded(104).integers(0, 5, size=300)
    got = check(probe_fitted_counts, tokens=tokens, order=3, vocab_size=5, tol=EXACT, what="counts of 300 tokens")
    for k in (1, 2, 3):
        table = got[f"order {k}"]
        assert_close(list(table.shape), [5] * k, EXACT, f"shape of counts[{k - 1}]")
        assert_close(int(table.sum()), 300 - k + 1, EXACT, f"sum of the {k}-gram counts (one per window)")


# ---------------------------------------------------------------- probabilities


def probe_distributions(m, tokens: np.ndarray, order: int, vocab_size: int, alpha: float, lambdas,
                        contexts: list) -> dict:
    model = m.NGramModel(order, vocab_size, alpha, lambdas).fit(tokens)
    return {"dists": np.array([model.distribution(c) for c in contexts]),
            "probs": [model.prob(c, t) for c in contexts for t in range(vocab_size)]}


@pytest.mark.concept("mle")
def test_maximum_likelihood_bigram_of_hello(check):
    contexts = [[1], [0], [2]]  # after h, after e, after l
    got = check(probe_distributions, tokens=HELLO, order=2, vocab_size=4, alpha=0.0, lambdas=None,
                contexts=contexts, what="bigram of 'hello'")
    # h is followed by e once; e by l once; l by l once and by o once.
    hand = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0.5, 0.5]])
    assert_close(got["dists"], hand, F64, "P(next | h), P(next | e), P(next | l) by hand", mistakes=(
        Mistake("divided by the total number of bigrams instead of the count of the context",
                lambda got, want: np.allclose(got[2], [0, 0, 0.25, 0.25])),))
    assert_close(got["probs"], hand.reshape(-1).tolist(), F64, "prob(context, token) = distribution(context)[token]")


@pytest.mark.concept("unseen-context")
def test_unseen_context_gives_uniform(check):
    # 'o' ends "hello": it is never followed by anything, so with alpha = 0 the row is 0/0 -> uniform.
    got = check(probe_distributions, tokens=HELLO, order=2, vocab_size=4, alpha=0.0, lambdas=None,
                contexts=[[3]], what="bigram of 'hello' after 'o'")
    assert_close(got["dists"][0], np.full(4, 0.25), F64, "P(next | o), never seen: uniform 1/V", mistakes=(
        Mistake("0/0 gave NaN: an unseen history must give the uniform distribution",
                lambda got, want: bool(np.isnan(got).any())),
        Mistake("an unseen history gave all zeros: it must give the uniform distribution",
                lambda got, want: not np.any(got))))


UNSEEN_NOT_UNIFORM = Mistake("a history never seen (0/0 with alpha = 0) must give the uniform distribution 1/V, "
                             "not zeros or NaN", lambda got, want: bool(np.any(~(np.sum(got["dists"], axis=-1) > 0))))
ADD_ALPHA_DENOMINATOR = Mistake("the denominator must be count(context) + alpha * V, not + alpha",
                                lambda got, want: not np.allclose(np.sum(got["dists"], axis=-1), 1))


@pytest.mark.concept("add-alpha")
def test_add_one_smoothing_by_hand(check):
    got = check(probe_distributions, tokens=HELLO, order=2, vocab_size=4, alpha=1.0, lambdas=None,
                contexts=[[2], [1], [3]], what="add-one bigram of 'hello'", mistakes=(ADD_ALPHA_DENOMINATOR,))
    # after l: counts (0, 0, 1, 1) + 1 over 2 + 4; after h: (1, 0, 0, 0) + 1 over 1 + 4; after o: 1/4 each.
    hand = np.array([[1 / 6, 1 / 6, 2 / 6, 2 / 6], [2 / 5, 1 / 5, 1 / 5, 1 / 5], [0.25, 0.25, 0.25, 0.25]])
    assert_close(got["dists"], hand, F64, "add-one P(next | l), P(next | h), P(next | o) by hand")


@pytest.mark.concept("add-alpha")
def test_huge_alpha_tends_to_uniform(check):
    tokens = seeded(105).integers(0, 6, size=120)
    got = check(probe_distributions, tokens=tokens, order=3, vocab_size=6, alpha=1e9, lambdas=None,
                contexts=all_contexts(6, 3), what="trigram with alpha = 1e9", mistakes=(ADD_ALPHA_DENOMINATOR,))
    # (c + a) / (C + a V) - 1/V = (c - C/V) / (C + a V): at most ~120 / 6e9 = 2e-8 here.
    assert_close(got["dists"], np.full((36, 6), 1 / 6), Tol(0.0, 1e-6, "counts <= 120 against alpha = 1e9"),
                 "every distribution with alpha = 1e9 (nearly uniform)")


@pytest.mark.concept("add-alpha")
def test_every_distribution_sums_to_one(check):
    tokens = seeded(106).integers(0, 5, size=80)  # 80 tokens, 25 contexts: some contexts are never seen
    for alpha, lambdas in ((0.0, None), (0.1, None), (0.0, (0.2, 0.3, 0.5)), (0.5, (0.1, 0.1, 0.8))):
        got = check(probe_distributions, tokens=tokens, order=3, vocab_size=5, alpha=alpha, lambdas=lambdas,
                    contexts=all_contexts(5, 3), what=f"trigram, alpha={alpha}, lambdas={lambdas}",
                    mistakes=(UNSEEN_NOT_UNIFORM, ADD_ALPHA_DENOMINATOR))
        assert_true(bool(np.all(got["dists"] >= 0)), "a probability is negative")
        assert_close(got["dists"].sum(axis=1), np.ones(25), F64,
                     f"sums of the 25 distributions (alpha={alpha}, lambdas={lambdas})")


@pytest.mark.concept("interpolation")
def test_interpolation_by_hand(check):
    got = check(probe_distributions, tokens=HELLO, order=2, vocab_size=4, alpha=0.0, lambdas=(0.5, 0.5),
                contexts=[[2]], what="interpolated bigram of 'hello' after 'l'")
    # 0.5 * unigram (1, 1, 2, 1) / 5 + 0.5 * bigram after l (0, 0, 1/2, 1/2)
    assert_close(got["dists"][0], np.array([0.1, 0.1, 0.45, 0.35]), F64, "0.5 P_1 + 0.5 P_2(. | l) by hand",
                 mistakes=(Mistake("the unigram must be the (V,) counts over the number of tokens (5 here)",
                                   lambda got, want: not np.isclose(got[0], want[0])),))


@pytest.mark.concept("interpolation")
def test_interpolation_extremes(check):
    tokens = seeded(107).integers(0, 4, size=150)
    contexts = all_contexts(4, 3)
    top = check(probe_distributions, tokens=tokens, order=3, vocab_size=4, alpha=0.0, lambdas=(0.0, 0.0, 1.0),
                contexts=contexts, what="lambdas (0, 0, 1)")
    alone = check(probe_distributions, tokens=tokens, order=3, vocab_size=4, alpha=0.0, lambdas=None,
                  contexts=contexts, what="lambdas None")
    assert_close(top, alone, F64, "lambdas (0, 0, 1) vs the trigram alone (lambdas=None)")
    bottom = check(probe_distributions, tokens=tokens, order=3, vocab_size=4, alpha=0.0, lambdas=(1.0, 0.0, 0.0),
                   contexts=contexts, what="lambdas (1, 0, 0)")
    unigram = np.bincount(tokens, minlength=4) / len(tokens)
    assert_close(bottom["dists"], np.tile(unigram, (16, 1)), F64, "lambdas (1, 0, 0): the unigram for every context",
                 mistakes=(Mistake("lambdas are applied in reverse: lambdas[0] weighs order 1 (the unigram)",
                                   lambda got, want: not np.allclose(got, got[0])),))


def probe_hyperparameters(m, order: int, vocab_size: int, alpha: float, lambdas, words: list) -> dict:
    return raised(m.NGramModel, order, vocab_size, alpha, lambdas, mentions=[words])


def probe_stored_lambdas(m, order: int, vocab_size: int, alpha: float, lambdas) -> dict:
    stored = m.NGramModel(order, vocab_size, alpha, lambdas).lambdas
    return {"lambdas": np.asarray(stored, dtype=np.float64), "dtype": str(np.asarray(stored).dtype)}


@pytest.mark.concept("validation")
def test_bad_interpolation_weights_raise_value_error(check):
    # each message must say what is wrong: the expected count, the negative weight, or the sum
    cases = {"two weights for order 3": ((0.5, 0.5), ["3"]),
             "a negative weight": ((0.5, 0.6, -0.1), ["-0.1", "negative", ">= 0", "non-negative"]),
             "weights summing to 0.9": ((0.2, 0.3, 0.4), ["sum"])}
    for name, (lambdas, words) in cases.items():
        got = check(probe_hyperparameters, order=3, vocab_size=5, alpha=0.0, lambdas=lambdas, words=words,
                    tol=EXACT, what=f"NGramModel(3, 5, lambdas={lambdas}), {name}")
        assert_close(got, {"raised": "ValueError", "mentions": [words]}, EXACT,
                     f"NGramModel(3, 5, lambdas={lambdas}), {name}")
    # valid weights are accepted and stored (so a constructor that always raises fails here)
    for lambdas, stored in ((None, [0.0, 0.0, 1.0]), ((0.2, 0.3, 0.5), [0.2, 0.3, 0.5])):
        got = check(probe_stored_lambdas, order=3, vocab_size=5, alpha=0.0, lambdas=lambdas, tol=EXACT,
                    what=f"NGramModel(3, 5, lambdas={lambdas}).lambdas")
        assert_close(got, {"lambdas": np.array(stored), "dtype": "float64"}, EXACT,
                     f"the stored lambdas for lambdas={lambdas}")


# ---------------------------------------------------------------- scoring


def probe_scores(m, train: np.ndarray, tokens: np.ndarray, order: int, vocab_size: int, alpha: float,
                 lambdas) -> dict:
    model = m.NGramModel(order, vocab_size, alpha, lambdas).fit(train)
    return {"log_likelihood": model.log_likelihood(tokens), "cross_entropy": model.cross_entropy(tokens),
            "perplexity": model.perplexity(tokens), "bits_per_char": model.bits_per_char(tokens)}


@pytest.mark.concept("log-likelihood")
def test_scores_of_hello_by_hand(check):
    got = check(probe_scores, train=HELLO, tokens=HELLO, order=2, vocab_size=4, alpha=0.0, lambdas=None,
                what="bigram scores of 'hello' on itself", mistakes=(
                    Mistake("cross-entropy divided by all N tokens instead of the N - n + 1 scored ones",
                            lambda got, want: math.isclose(got["cross_entropy"], want["cross_entropy"] * 4 / 5)),
                    Mistake("log base 2 where the natural log was expected",
                            lambda got, want: math.isclose(got["log_likelihood"], -2.0))))
    # scored: e|h = 1, l|e = 1, l|l = 1/2, o|l = 1/2 -> ln L = 2 ln(1/2); 4 scored tokens.
    hand = {"log_likelihood": -2 * math.log(2), "cross_entropy": math.log(2) / 2, "perplexity": math.sqrt(2),
            "bits_per_char": 0.5}
    assert_close(got, hand, F64, "bigram scores of 'hello' by hand")


@pytest.mark.concept("metrics")
def test_uniform_model_has_perplexity_v_and_bits_are_nats_over_ln2(check):
    rng = seeded(108)
    tokens = rng.integers(0, 7, size=60)
    even = np.tile(np.arange(7), 3)  # every token equally often: the unigram is exactly uniform
    got = check(probe_scores, train=even, tokens=tokens, order=1, vocab_size=7, alpha=0.0, lambdas=None,
                what="uniform unigram")
    assert_close(got["perplexity"], 7.0, F64, "perplexity of a uniform model over V = 7 tokens")
    got = check(probe_scores, train=rng.integers(0, 7, size=40), tokens=tokens, order=3, vocab_size=7, alpha=1e9,
                lambdas=None, what="trigram with alpha = 1e9")
    assert_close(got["perplexity"], 7.0, Tol(1e-6, 0.0, "alpha = 1e9 is uniform to ~1e-8"),
                 "perplexity of a nearly uniform trigram")
    got = check(probe_scores, train=rng.integers(0, 7, size=200), tokens=tokens, order=2, vocab_size=7, alpha=0.3,
                lambdas=(0.4, 0.6), what="interpolated add-alpha bigram")
    assert_close(got["bits_per_char"], got["cross_entropy"] / math.log(2), F64, "bits = nats / ln 2")
    assert_close(got["perplexity"], math.exp(got["cross_entropy"]), F64, "perplexity = exp(cross-entropy)")
    assert_close(got["cross_entropy"], -got["log_likelihood"] / 59, F64, "cross-entropy = -ln L / (60 - 2 + 1)")


# ---------------------------------------------------------------- sampling


def probe_samples(m, tokens: np.ndarray, order: int, vocab_size: int, alpha: float, context: list, length: int,
                  seed: int, temperature: float) -> dict:
    model = m.NGramModel(order, vocab_size, alpha).fit(tokens)
    first = model.sample(context, length, np.random.default_rng(seed), temperature)
    return {"first": first, "again": model.sample(context, length, np.random.default_rng(seed), temperature),
            "other_seed": model.sample(context, length, np.random.default_rng(seed + 1), temperature),
            "dtype": str(first.dtype)}


@pytest.mark.concept("sampling")
def test_sampling_is_determined_by_the_seed(check):
    tokens = seeded(109).integers(0, 5, size=200)
    got = check(probe_samples, tokens=tokens, order=2, vocab_size=5, alpha=0.1, context=[3], length=40, seed=7,
                temperature=1.0, tol=EXACT, what="40 samples, seed 7", mistakes=(
                    Mistake("draw each token with rng.choice(vocab_size, p=q), one call per token, as the "
                            "docstring says; another way of drawing gives other tokens for the same seed",
                            lambda got, want: got["first"].shape == want["first"].shape),))
    assert_close(got["again"], got["first"], EXACT, "the same seed twice must give the same tokens")
    assert_true(not np.array_equal(got["other_seed"], got["first"]), "seeds 7 and 8 gave the same 40 tokens")
    assert_close([got["dtype"], list(got["first"].shape)], ["int64", [40]], EXACT, "dtype and shape of sample()")


def probe_greedy(m, tokens: np.ndarray, vocab_size: int, context: list, length: int) -> dict:
    model = m.NGramModel(2, vocab_size).fit(tokens)
    return {"greedy": model.sample(context, length, np.random.default_rng(0), 0.0),
            "nearly_greedy": model.sample(context, length, np.random.default_rng(1), 1e-4),
            "negative": raised(model.sample, context, length, np.random.default_rng(2), -0.5)}


@pytest.mark.concept("temperature")
def test_temperature_zero_is_greedy(check):
    # "abcabcabd": after a always b; after b, c twice and d once; after c always a. Greedy from a: b c a b c a b.
    abcabcabd = np.array([0, 1, 2, 0, 1, 2, 0, 1, 3])
    got = check(probe_greedy, tokens=abcabcabd, vocab_size=4, context=[0], length=7, tol=EXACT, what="greedy")
    assert_close(got["greedy"], np.array([1, 2, 0, 1, 2, 0, 1]), EXACT, "temperature 0 from 'a': 'bcabcab'")
    assert_close(got["nearly_greedy"], got["greedy"], EXACT, "temperature 1e-4 (p ** 10000) must be greedy here",
                 mistakes=(Mistake("p ** (1 / T) underflowed; use exp((ln p - max ln p) / T)",
                                   lambda got, want: True),))
    assert_close(got["negative"], VALUE_ERROR, EXACT, "sample(..., temperature=-0.5)")


def probe_long_sample(m, tokens: np.ndarray, vocab_size: int, length: int, seed: int) -> dict:
    model = m.NGramModel(2, vocab_size, 0.5).fit(tokens)
    return {"samples": model.sample([0], length, np.random.default_rng(seed), 1.0)}


def probe_bigram_table(m, tokens: np.ndarray, vocab_size: int) -> np.ndarray:
    model = m.NGramModel(2, vocab_size, 0.5).fit(tokens)
    return np.array([model.distribution([c]) for c in range(vocab_size)])


@pytest.mark.concept("sampling")
def test_sample_frequencies_match_the_model(target, reference):
    tokens = seeded(110).integers(0, 4, size=60)
    samples = target.run(probe_long_sample, tokens=tokens, vocab_size=4, length=6000, seed=11)["samples"]
    table = reference.run(probe_bigram_table, tokens=tokens, vocab_size=4)  # (4, 4) P(next | previous)
    sequence = np.concatenate([[0], samples])
    transitions = np.zeros((4, 4))
    np.add.at(transitions, (sequence[:-1], sequence[1:]), 1)
    seen = transitions.sum(axis=1, keepdims=True)  # (4, 1) how often each previous token came up
    # Each frequency is a mean of seen Bernoulli(p) draws: standard error sqrt(p (1 - p) / seen). Allow 5 of them
    # (a correct sampler falls outside with probability ~6e-7 per cell).
    allowed = 5 * np.sqrt(table * (1 - table) / np.maximum(seen, 1)) + 1e-12
    error = np.abs(transitions / np.maximum(seen, 1) - table)
    worst = np.unravel_index(int(np.argmax(error - allowed)), error.shape)
    assert_true(bool(np.all(seen >= 500)) and bool(np.all(error <= allowed)),
                f"sample frequencies do not match the model: after token {worst[0]}, token {worst[1]} came "
                f"{transitions[worst] / seen[worst[0], 0]:.4f} of the time, the model says {table[worst]:.4f} "
                f"(allowed +-{allowed[worst]:.4f}, 5 standard errors); counts of each previous token: "
                f"{seen.ravel().astype(int).tolist()}")
