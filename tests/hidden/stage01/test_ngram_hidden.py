"""Stage 01 (n-gram language models), hidden suite: other texts, orders, seeds and edge cases than the visible one."""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.harness import EXACT, F64, Mistake, assert_close, assert_true, raised, seeded
from tests.stage01.helpers import VALUE_ERROR, all_contexts

# "banana" with a=0, b=1, n=2.
BANANA = np.array([1, 0, 2, 0, 2, 0], dtype=np.int64)


# ---------------------------------------------------------------- the tokenizer


def probe_tokenizer(m, text: str, other: str) -> dict:
    tokenizer = m.CharTokenizer(text)
    ids = tokenizer.encode(other)
    empty = tokenizer.encode("")
    return {"vocab": list(tokenizer.vocab), "vocab_size": tokenizer.vocab_size, "ids": ids,
            "back": tokenizer.decode(ids), "empty": [str(empty.dtype), list(empty.shape)]}


@pytest.mark.concept("tokenizer")
def test_tokenizer_sorts_by_code_point_including_spaces_newlines_and_accents(check):
    text = "Zebra zoo\né→a"
    got = check(probe_tokenizer, text=text, other="a zoo\n", tol=EXACT, what="tokenizer of a mixed text")
    # code points: '\n' 10 < ' ' 32 < 'Z' 90 < 'a' 97 < 'b' < 'e' < 'o' < 'r' < 'z' < 'é' 233 < '→' 8594
    vocab = ["\n", " ", "Z", "a", "b", "e", "o", "r", "z", "é", "→"]
    assert_close(got["vocab"], vocab, EXACT, "vocab sorted by code point")
    assert_close(got["ids"], np.array([3, 1, 8, 6, 6, 0]), EXACT, "encode('a zoo\\n')")
    assert_close(got["back"], "a zoo\n", EXACT, "decode(encode(...))")
    assert_close(got["empty"], ["int64", [0]], EXACT, "encode('') is an empty int64 array")


def probe_tokenizer_errors(m, text: str, bad: str, ids: list) -> dict:
    tokenizer = m.CharTokenizer(text)
    # the message names the character as repr(ch) and its position; decode's names the id
    return {"encode": raised(tokenizer.encode, bad, mentions=[repr(bad[0]), "position 0"]),
            **{f"decode([0, {i}])": raised(tokenizer.decode, [0, i], mentions=[str(i)]) for i in ids},
            "CharTokenizer('')": raised(m.CharTokenizer, ""), "decode([2, 0])": tokenizer.decode([2, 0])}


@pytest.mark.concept("unknown-char")
def test_unknown_newline_at_position_zero_and_out_of_range_ids(check):
    got = check(probe_tokenizer_errors, text="abc", bad="\nabc", ids=[-1, 3], tol=EXACT,
                what="CharTokenizer('abc')", mistakes=(
                    Mistake("a negative id must not wrap around to the end of the vocabulary: check 0 <= id < V",
                            lambda got, want: "returned" in got["decode([0, -1])"]),))
    assert_close(got["encode"], {"raised": "ValueError", "mentions": [repr("\n"), "position 0"]}, EXACT,
                 "encode('\\nabc')")
    for token in (-1, 3):
        assert_close(got[f"decode([0, {token}])"], {"raised": "ValueError", "mentions": [str(token)]}, EXACT,
                     f"decode([0, {token}]) with V = 3")
    assert_close(got["CharTokenizer('')"], VALUE_ERROR, EXACT, "CharTokenizer('') (no vocabulary)")
    assert_close(got["decode([2, 0])"], "ca", EXACT, "decode([2, 0]) of ids in range")


# ---------------------------------------------------------------- the split


def probe_split(m, tokens: np.ndarray, val_fraction: float) -> dict:
    return {"split": [np.asarray(part) for part in m.train_val_split(tokens, val_fraction)]}


def probe_bad_split(m, tokens: np.ndarray, val_fraction: float) -> dict:
    return raised(m.train_val_split, tokens, val_fraction)


@pytest.mark.concept("split")
def test_split_other_sizes_and_a_part_that_would_be_empty(check):
    rng = seeded(201)
    # round(0.3 * 7) = round(2.1) = 2; round(0.05 * 1000) = 50; round(0.25 * 37) = round(9.25) = 9;
    # round(0.3 * 9) = round(2.7) = 3 (rounded, not truncated to 2).
    for n, fraction, n_val in ((7, 0.3, 2), (1000, 0.05, 50), (37, 0.25, 9), (9, 0.3, 3)):
        tokens = rng.permutation(n)  # distinct values: any overlap would show
        got = check(probe_split, tokens=tokens, val_fraction=fraction, tol=EXACT, what=f"split of {n}")["split"]
        assert_close(got[1], tokens[n - n_val:], EXACT, f"validation = the last {n_val} of {n} tokens")
        assert_close(got[0], tokens[:n - n_val], EXACT, f"train = the first {n - n_val} of {n} tokens")
    # two tokens, 0.9 -> round(1.8) = 2 validation tokens and none left for training
    got = check(probe_bad_split, tokens=np.array([4, 2]), val_fraction=0.9, tol=EXACT, what="split leaving no train")
    assert_close(got, VALUE_ERROR, EXACT, "train_val_split(2 tokens, 0.9), which leaves no training tokens")


# ---------------------------------------------------------------- counting


def probe_counts(m, tokens: np.ndarray, orders: list, vocab_size: int) -> dict:
    return {f"n={n}": np.asarray(m.ngram_counts(tokens, n, vocab_size)) for n in orders}


@pytest.mark.concept("counts")
def test_trigram_counts_of_banana_and_short_sequences(check):
    got = check(probe_counts, tokens=BANANA, orders=[3], vocab_size=3, tol=EXACT, what="trigrams of 'banana'")
    # ban, ana, nan, ana
    hand = np.zeros((3, 3, 3), dtype=np.int64)
    hand[1, 0, 2], hand[0, 2, 0], hand[2, 0, 2] = 1, 2, 1
    assert_close(got["n=3"], hand, EXACT, "trigram counts of 'banana' by hand", mistakes=(
        Mistake("the axes are reversed: counts[t1, t2, t3] in reading order",
                lambda got, want: np.array_equal(got, want.transpose(2, 1, 0))),))
    got = check(probe_counts, tokens=np.array([2, 1]), orders=[3, 4], vocab_size=3, tol=EXACT,
                what="counts of a sequence shorter than n")
    assert_close(got, {"n=3": np.zeros((3,) * 3), "n=4": np.zeros((3,) * 4)}, EXACT,
                 "no window of length n in 2 tokens: all zeros")
    tokens = seeded(202).integers(0, 3, size=500)
    got = check(probe_counts, tokens=tokens, orders=[1, 4], vocab_size=3, tol=EXACT, what="counts of 500 tokens")
    assert_close(got["n=1"], np.bincount(tokens, minlength=3), EXACT, "unigram counts = bincount")
    assert_close(int(got["n=4"].sum()), 497, EXACT, "sum of the 4-gram counts of 500 tokens")


def probe_fit_checks(m, vocab_size: int, bad: list, first: np.ndarray, second: np.ndarray) -> dict:
    model = m.NGramModel(2, vocab_size)
    # the message names the offending token (the docstring's promise)
    records = [raised(model.fit, np.asarray(tokens), mentions=[str(min(tokens) if min(tokens) < 0 else max(tokens))])
               for tokens in bad]
    refit = m.NGramModel(2, vocab_size).fit(first).fit(second)
    return {"bad": records, "refit": [np.asarray(c) for c in refit.counts]}


@pytest.mark.concept("counts")
def test_fit_rejects_tokens_outside_the_vocabulary_and_refits_from_scratch(check):
    first, second = np.array([0, 1, 2, 3, 4]), np.array([4, 4, 4])
    got = check(probe_fit_checks, vocab_size=5, bad=[[0, 1, -1, 2], [0, 5, 1]], first=first, second=second,
                tol=EXACT, what="fit checks")
    for token, record in zip((-1, 5), got["bad"]):
        assert_close(record, {"raised": "ValueError", "mentions": [str(token)]}, EXACT,
                     f"fit with token {token} and V = 5")
    bigrams = np.zeros((5, 5), dtype=np.int64)
    bigrams[4, 4] = 2
    assert_close(got["refit"], [np.array([0, 0, 0, 0, 3]), bigrams], EXACT,
                 "counts after fit(first).fit(second): only the second text's", mistakes=(
                     Mistake("fit added to the previous counts; it must replace them",
                             lambda got, want: int(got[0].sum()) == 8),))


# ---------------------------------------------------------------- probabilities


def probe_distributions(m, tokens: np.ndarray, order: int, vocab_size: int, alpha: float, lambdas,
                        contexts: list) -> np.ndarray:
    model = m.NGramModel(order, vocab_size, alpha, lambdas).fit(tokens)
    return np.array([model.distribution(c) for c in contexts])


@pytest.mark.concept("add-alpha")
def test_add_half_trigram_of_banana_by_hand(check):
    # contexts: "an", "bb" (never seen), and a longer context "bban" whose last two tokens are "an"
    got = check(probe_distributions, tokens=BANANA, order=3, vocab_size=3, alpha=0.5, lambdas=None,
                contexts=[[0, 2], [1, 1], [1, 1, 0, 2]], what="add-0.5 trigram of 'banana'")
    # after "an": a twice -> (2 + 0.5, 0 + 0.5, 0 + 0.5) / (2 + 1.5)
    after_an = np.array([2.5, 0.5, 0.5]) / 3.5
    assert_close(got, np.array([after_an, np.full(3, 1 / 3), after_an]), F64,
                 "P(. | an), P(. | bb), P(. | bban) by hand", mistakes=(
                     Mistake("only the last n-1 tokens of a longer context count (the context is 'an' here)",
                             lambda got, want: not np.allclose(got[2], want[2])),))


@pytest.mark.concept("unseen-context")
def test_unseen_trigram_context_falls_to_uniform_inside_the_mixture(check):
    lambdas = (0.2, 0.3, 0.5)
    got = check(probe_distributions, tokens=BANANA, order=3, vocab_size=3, alpha=0.0, lambdas=lambdas,
                contexts=[[0, 2], [1, 1]], what="interpolated trigram of 'banana'")
    unigram = np.array([3, 1, 2]) / 6
    # after "an": P_2(. | n) = P_3(. | an) = (1, 0, 0); after "bb": P_2(. | b) = (1, 0, 0), P_3 unseen -> uniform
    hand = np.array([0.2 * unigram + 0.8 * np.array([1, 0, 0]),
                     0.2 * unigram + 0.3 * np.array([1, 0, 0]) + 0.5 * np.full(3, 1 / 3)])
    assert_close(got, hand, F64, "interpolated P(. | an) and P(. | bb) by hand", mistakes=(
        Mistake("an unseen history must make that order's component uniform (1/V), not zero or NaN",
                lambda got, want: np.allclose(got[0], want[0]) and not np.allclose(got[1], want[1])),))
    assert_close(float(got[0, 0]), 0.9, F64, "P(a | an) = 0.2 * 3/6 + 0.3 * 1 + 0.5 * 1")


def probe_hyperparameters(m, cases: list) -> list:
    return [raised(m.NGramModel, *case) for case in cases]


def probe_accepted_lambdas(m, order: int, vocab_size: int, lambdas: list) -> dict:
    made = raised(m.NGramModel, order, vocab_size, 0.0, lambdas)
    if "raised" in made:
        return made
    return {"lambdas": np.asarray(m.NGramModel(order, vocab_size, 0.0, lambdas).lambdas, dtype=np.float64)}


@pytest.mark.concept("validation")
def test_hyperparameter_validation_and_rounding_in_the_weights(check):
    cases = [[0, 5, 0.0, None], [3, 5, -1.0, None], [3, 5, 0.0, (0.2, 0.3, 0.501)],
             [3, 5, 0.0, (0.25, 0.25, 0.25, 0.25)]]
    got = check(probe_hyperparameters, cases=cases, tol=EXACT, what="NGramModel(order, V, alpha, lambdas)")
    for case, record in zip(cases, got):
        assert_close(record, VALUE_ERROR, EXACT, f"NGramModel{tuple(case)}")
    # 0.7 + 0.1 + 0.1 + 0.1 is 0.9999999999999999 in floating point: it must be accepted (within 1e-9 of 1)
    got = check(probe_accepted_lambdas, order=4, vocab_size=5, lambdas=[0.7, 0.1, 0.1, 0.1], tol=EXACT,
                what="NGramModel(4, 5, lambdas=(0.7, 0.1, 0.1, 0.1))", mistakes=(
                    Mistake("compare the sum with 1 within a tolerance (1e-9), not with ==",
                            lambda got, want: "raised" in got),))
    assert_close(got, {"lambdas": np.array([0.7, 0.1, 0.1, 0.1])}, EXACT,
                 "NGramModel(4, 5, lambdas=(0.7, 0.1, 0.1, 0.1)).lambdas: weights that sum to 1 up to rounding")


def probe_model_everything(m, tokens: np.ndarray, held_out: np.ndarray, order: int, vocab_size: int, alpha: float,
                           lambdas) -> dict:
    model = m.NGramModel(order, vocab_size, alpha, lambdas).fit(tokens)
    contexts = all_contexts(vocab_size, order)
    n = order - 1
    return {"dists": np.array([model.distribution(c) for c in contexts]),
            "log_likelihood": model.log_likelihood(held_out),
            "per_position": [math.log(model.prob(held_out[i - n:i], int(held_out[i])))
                             for i in range(n, len(held_out))]}


@pytest.mark.concept("log-likelihood")
def test_order_four_model_log_likelihood_is_the_sum_over_scored_positions(check):
    rng = seeded(203)
    tokens, held_out = rng.integers(0, 3, size=400), rng.integers(0, 3, size=50)
    got = check(probe_model_everything, tokens=tokens, held_out=held_out, order=4, vocab_size=3, alpha=0.2,
                lambdas=(0.1, 0.2, 0.3, 0.4), what="order-4 interpolated add-0.2 model")
    assert_close(got["dists"].sum(axis=1), np.ones(27), F64, "sums of the 27 order-4 distributions")
    assert_close(len(got["per_position"]), 47, EXACT, "scored positions: 50 - 4 + 1")
    assert_close(got["log_likelihood"], math.fsum(got["per_position"]), F64,
                 "log_likelihood = sum over i >= 3 of ln prob(tokens[i-3:i], tokens[i])", mistakes=(
                     Mistake("the first n-1 tokens are context only: score positions n-1 .. N-1",
                             lambda got, want: got < want),))


def probe_scores(m, train: np.ndarray, tokens: np.ndarray, order: int, vocab_size: int) -> dict:
    model = m.NGramModel(order, vocab_size).fit(train)
    return {"log_likelihood": model.log_likelihood(tokens), "cross_entropy": model.cross_entropy(tokens),
            "perplexity": model.perplexity(tokens), "bits_per_char": model.bits_per_char(tokens),
            "too_short": raised(model.log_likelihood, tokens[:order - 1])}


@pytest.mark.concept("metrics")
def test_unigram_entropy_of_hello_and_unseen_bigram_gives_infinity(check):
    hello = np.array([1, 0, 2, 2, 3])
    got = check(probe_scores, train=hello, tokens=hello, order=1, vocab_size=4, what="unigram scores of 'hello'")
    # P = (1, 1, 2, 1) / 5; ln L = 3 ln(1/5) + 2 ln(2/5), all 5 tokens scored
    log_likelihood = 3 * math.log(0.2) + 2 * math.log(0.4)
    assert_close({k: got[k] for k in ("log_likelihood", "cross_entropy", "perplexity", "bits_per_char")},
                 {"log_likelihood": log_likelihood, "cross_entropy": -log_likelihood / 5,
                  "perplexity": math.exp(-log_likelihood / 5), "bits_per_char": -log_likelihood / 5 / math.log(2)},
                 F64, "unigram scores of 'hello' by hand")
    # the maximum-likelihood bigram of "hello" has never seen "hh": probability 0, ln 0 = -inf
    got = check(probe_scores, train=hello, tokens=np.array([1, 1, 0]), order=2, vocab_size=4,
                what="ML bigram on an unseen bigram")
    assert_true(got["log_likelihood"] == -math.inf and got["perplexity"] == math.inf,
                f"ln L and perplexity of 'hhe' under the ML bigram of 'hello' must be -inf and inf (P(h | h) = 0), "
                f"got {got['log_likelihood']} and {got['perplexity']}")
    assert_close(got["too_short"], VALUE_ERROR, EXACT, "log_likelihood of 1 token with a bigram")


# ---------------------------------------------------------------- sampling


def probe_deterministic_samples(m, tokens: np.ndarray, vocab_size: int, context: list, length: int,
                                temperature: float, seeds: list) -> list:
    model = m.NGramModel(2, vocab_size).fit(tokens)
    return [model.sample(context, length, np.random.default_rng(s), temperature) for s in seeds]


@pytest.mark.concept("temperature")
def test_certain_transitions_and_greedy_ties(check):
    # ML bigram of "abab": a -> b and b -> a with probability 1, whatever the seed
    got = check(probe_deterministic_samples, tokens=np.array([0, 1, 0, 1]), vocab_size=2, context=[0], length=6,
                temperature=1.0, seeds=[0, 1, 2], tol=EXACT, what="samples of the 'abab' bigram")
    for samples in got:
        assert_close(samples, np.array([1, 0, 1, 0, 1, 0]), EXACT, "samples after 'a' of the 'abab' bigram",
                     mistakes=(Mistake("a zero-probability token was drawn", lambda got, want: True),))
    # "hello": after l, l and o tie at 1/2: greedy takes the lowest id, l (2), forever: "elllll"
    got = check(probe_deterministic_samples, tokens=np.array([1, 0, 2, 2, 3]), vocab_size=4, context=[1], length=6,
                temperature=0.0, seeds=[5], tol=EXACT, what="greedy 'hello' bigram")
    assert_close(got[0], np.array([0, 2, 2, 2, 2, 2]), EXACT, "greedy from 'h': 'elllll'", mistakes=(
        Mistake("a tie must go to the lowest id (np.argmax), and temperature 0 must not sample",
                lambda got, want: True),))


def probe_unigram_samples(m, tokens: np.ndarray, vocab_size: int, length: int, seed: int,
                          temperatures: list) -> dict:
    model = m.NGramModel(1, vocab_size).fit(tokens)
    return {f"T={t}": model.sample([], length, np.random.default_rng(seed), t) for t in temperatures}


@pytest.mark.concept("temperature")
def test_temperature_reshapes_the_distribution_as_p_to_the_one_over_t(target):
    counts = np.array([1, 2, 3, 4, 0])  # the last token never occurs
    tokens = np.repeat(np.arange(5), counts)
    p = counts / counts.sum()
    got = target.run(probe_unigram_samples, tokens=tokens, vocab_size=5, length=4000, seed=31,
                     temperatures=[0.5, 3.0])
    for temperature in (0.5, 3.0):
        q = p ** (1 / temperature) / np.sum(p ** (1 / temperature))  # what the docstring asks for
        frequencies = np.bincount(got[f"T={temperature}"], minlength=5)[:5] / 4000
        # 5 standard errors of a mean of 4000 Bernoulli(q) draws (~6e-7 chance each of a false alarm)
        allowed = 5 * np.sqrt(q * (1 - q) / 4000) + 1e-12
        assert_true(bool(np.all(np.abs(frequencies - q) <= allowed)),
                    f"temperature {temperature}: sample frequencies {np.round(frequencies, 4).tolist()} do not "
                    f"match q = p ** (1/T) normalised = {np.round(q, 4).tolist()} within 5 standard errors "
                    f"{np.round(allowed, 4).tolist()}; a never-seen token must never be drawn")


def probe_context_use(m, tokens: np.ndarray, vocab_size: int, context: list, seed: int) -> dict:
    model = m.NGramModel(3, vocab_size, 0.3, (0.2, 0.3, 0.5)).fit(tokens)
    return {"long": model.sample(context, 25, np.random.default_rng(seed)),
            "last_two": model.sample(context[-2:], 25, np.random.default_rng(seed)),
            "empty": model.sample(context, 0, np.random.default_rng(seed)),
            "short_context": raised(model.sample, context[-1:], 5, np.random.default_rng(seed))}


@pytest.mark.concept("sampling")
def test_sampling_uses_the_last_n_minus_1_tokens_of_the_context(check):
    rng = seeded(204)
    tokens, context = rng.integers(0, 6, size=300), rng.integers(0, 6, size=9).tolist()
    got = check(probe_context_use, tokens=tokens, vocab_size=6, context=context, seed=17, tol=EXACT,
                what="trigram samples after a long context")
    assert_close(got["long"], got["last_two"], EXACT, "sample after a 9-token context vs after its last 2 tokens")
    assert_close(got["empty"], np.zeros(0, dtype=np.int64), EXACT, "sample(context, 0, rng): an empty array")
    assert_close(got["short_context"], VALUE_ERROR, EXACT, "a trigram sampling after 1 context token")
