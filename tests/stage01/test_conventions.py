"""Stage 01 (n-gram language models), visible suite: the conventions of the docstrings that the other tests' inputs
do not expose (a mistake there would pass them and fail the hidden suite). Each test's input is chosen so that one
plausible mistake gives a different answer; tests/mutants/stage01.toml lists those mistakes.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.harness import EXACT, F64, Mistake, assert_close, assert_true, raised, seeded
from tests.stage01.helpers import VALUE_ERROR

# ---------------------------------------------------------------- the tokenizer


def probe_empty_text(m) -> dict:
    return {"empty": raised(m.CharTokenizer, ""), "one character": list(m.CharTokenizer("a").vocab)}


@pytest.mark.concept("tokenizer")
def test_an_empty_text_has_no_vocabulary(check):
    got = check(probe_empty_text, tol=EXACT, what="CharTokenizer('') and CharTokenizer('a')")
    assert_close(got["empty"], VALUE_ERROR, EXACT, "CharTokenizer(''): an empty text has no vocabulary, so ValueError")
    assert_close(got["one character"], ["a"], EXACT, "CharTokenizer('a').vocab: the smallest text is fine")


def probe_decode_outside(m, text: str, ids: list) -> dict:
    tokenizer = m.CharTokenizer(text)
    return {f"decode([{i}])": raised(tokenizer.decode, [i], mentions=[str(i)]) for i in ids}


@pytest.mark.concept("unknown-char")
def test_decode_rejects_negative_ids_instead_of_wrapping(check):
    # V = 4 for "hello": -1 would be vocab[-1] = 'o' if it wrapped around; 4 is one past the end.
    got = check(probe_decode_outside, text="hello", ids=[-1, -4, 4], tol=EXACT, what="decode of ids outside [0, 4)")
    for i in (-1, -4, 4):
        assert_close(got[f"decode([{i}])"], {"raised": "ValueError", "mentions": [str(i)]}, EXACT,
                     f"decode([{i}]) with V = 4 (a negative id must not wrap around to the end)")


# ---------------------------------------------------------------- the split


def probe_split_sizes(m, n: int, fractions: list) -> dict:
    tokens = np.arange(n)
    sizes = {}
    for fraction in fractions:
        train, val = m.train_val_split(tokens, fraction)
        sizes[f"val_fraction={fraction}"] = [len(train), len(val)]
    return sizes


@pytest.mark.concept("split")
def test_split_rounds_with_pythons_round(check):
    # 10 tokens: 0.27 -> round(2.7) = 3 (int() truncates to 2); 0.25 -> round(2.5) = 2 (Python rounds a half to the
    # even neighbour; int(x + 0.5) gives 3); 0.75 -> round(7.5) = 8.
    fractions = [0.27, 0.25, 0.75]
    by_hand = {"val_fraction=0.27": [7, 3], "val_fraction=0.25": [8, 2], "val_fraction=0.75": [2, 8]}
    mistakes = (Mistake("n_val = int(val_fraction * N) truncates: the docstring says round()",
                        lambda got, want: got["val_fraction=0.27"] == [8, 2]),
                Mistake("halves rounded up (int(x + 0.5) or math.floor(x + 0.5)): Python's round(2.5) is 2, the even "
                        "neighbour", lambda got, want: got["val_fraction=0.25"] == [7, 3]))
    got = check(probe_split_sizes, n=10, fractions=fractions, tol=EXACT, what="(len(train), len(val)) of 10 tokens",
                mistakes=mistakes)
    assert_close(got, by_hand, EXACT, "(len(train), len(val)) for 10 tokens, n_val = round(val_fraction * 10)",
                 mistakes=mistakes)


# ---------------------------------------------------------------- fitting


def probe_fit_outside(m, vocab_size: int, sequences: list) -> dict:
    return {str(tokens): raised(m.NGramModel(2, vocab_size).fit, np.array(tokens), mentions=[str(bad)])
            for tokens, bad in sequences}


@pytest.mark.concept("counts")
def test_fit_rejects_ids_outside_the_vocabulary_naming_them(check):
    # V = 4: 7 is past the end and -1 would wrap around to 3; the message must name the bad token.
    sequences = [([0, 1, 7, 2], 7), ([2, -1, 0], -1)]
    got = check(probe_fit_outside, vocab_size=4, sequences=sequences, tol=EXACT, what="fit with ids outside [0, 4)")
    for tokens, bad in sequences:
        assert_close(got[str(tokens)], {"raised": "ValueError", "mentions": [str(bad)]}, EXACT,
                     f"NGramModel(2, 4).fit({tokens}): check the ids yourself and name {bad} (NumPy's own error "
                     f"does not, and np.add.at would wrap -1 around)")


def probe_refit(m, first: np.ndarray, second: np.ndarray) -> dict:
    model = m.NGramModel(2, 3).fit(first).fit(second)
    return {"tables": len(model.counts), "counts": [np.asarray(c) for c in model.counts]}


@pytest.mark.concept("counts")
def test_fitting_again_replaces_the_counts(check):
    first, second = np.array([0, 0, 0, 0]), np.array([1, 2, 1])
    got = check(probe_refit, first=first, second=second, tol=EXACT, what="fit([0, 0, 0, 0]) then fit([1, 2, 1])")
    bigrams = np.zeros((3, 3), dtype=np.int64)
    bigrams[1, 2] = bigrams[2, 1] = 1
    assert_close(got, {"tables": 2, "counts": [np.array([0, 2, 1]), bigrams]}, EXACT,
                 "the counts after the second fit: those of [1, 2, 1] alone", mistakes=(
                     Mistake("fitting again kept or added to the old counts: fit must replace self.counts",
                             lambda got, want: got["tables"] != 2 or got["counts"][0][0] != 0),))


# ---------------------------------------------------------------- hyperparameters


def probe_weights(m, cases: list) -> dict:
    return {str(lambdas): raised(m.NGramModel, 3, 5, 0.0, lambdas, mentions=["sum"]) for lambdas in cases}


@pytest.mark.concept("validation")
def test_weights_sum_to_one_within_1e_9(check):
    # 0.7 + 0.2 + 0.1 is 0.9999999999999999 in floating point: within 1e-9 of 1, so accepted (== 1 would reject it);
    # 0.2 + 0.3 + 0.5000001 is 1e-7 away: rejected, and the message says what they sum to.
    accepted, rejected = [0.7, 0.2, 0.1], [0.2, 0.3, 0.5000001]
    got = check(probe_weights, cases=[accepted, rejected], tol=EXACT, what="NGramModel(3, 5, lambdas=...)", mistakes=(
        Mistake("the sum was compared with == 1: compare abs(sum - 1) with 1e-9, as the docstring says",
                lambda got, want: got[str(accepted)].get("raised") == "ValueError"),))
    record = got[str(accepted)]
    assert_true("returned" in record, f"NGramModel(3, 5, lambdas={accepted}): expected the weights to be accepted "
                f"(their sum is 1 within 1e-9: compare with a tolerance, not ==), but it raised {record.get('raised')}: "
                f"{record.get('message')}")
    assert_close(got[str(rejected)], {"raised": "ValueError", "mentions": ["sum"]}, EXACT,
                 f"NGramModel(3, 5, lambdas={rejected}), whose sum is 1 + 1e-7")


# ---------------------------------------------------------------- scoring


def probe_log_likelihood(m, train: np.ndarray, order: int, vocab_size: int, alpha: float, scored: dict) -> dict:
    model = m.NGramModel(order, vocab_size, alpha).fit(train)
    return {name: model.log_likelihood(np.array(tokens)) for name, tokens in scored.items()}


HELLO = np.array([1, 0, 2, 2, 3])  # "hello" with e=0, h=1, l=2, o=3


@pytest.mark.concept("log-likelihood")
def test_scoring_starts_at_position_n_minus_1(check):
    # Bigram of "hello". "llo": l|l = 1/2 and o|l = 1/2, so ln L = 2 ln(1/2). The first scored token is position 1:
    # starting at 2 skips l|l (-0.69), where in "hello" the skipped e|h = 1 would have cost nothing (ln 1 = 0).
    got = check(probe_log_likelihood, train=HELLO, order=2, vocab_size=4, alpha=0.0, scored={"llo": [2, 2, 3]},
                what="bigram log-likelihood of 'llo'", mistakes=(
                    Mistake("scoring started one position late (at n, not n - 1): the first scored token was "
                            "skipped", lambda got, want: math.isclose(got["llo"], math.log(0.5))),))
    assert_close(got["llo"], 2 * math.log(0.5), F64, "ln P(l | l) + ln P(o | l) by hand")


@pytest.mark.concept("unseen-context")
def test_log_likelihood_of_an_unseen_history_is_uniform(check):
    # 'o' is never followed by anything in "hello": with alpha = 0, P(. | o) is uniform, 1/4 (as in distribution),
    # so "oh" scores ln(1/4), not ln 0 = -inf. "ohe" adds e|h = 1.
    got = check(probe_log_likelihood, train=HELLO, order=2, vocab_size=4, alpha=0.0,
                scored={"oh": [3, 1], "ohe": [3, 1, 0]}, what="bigram log-likelihood after the unseen 'o'",
                mistakes=(Mistake("an unseen history gave probability 0 (-inf): it is uniform, 1/V, as in "
                                  "distribution", lambda got, want: got["oh"] == -math.inf),))
    assert_close(got, {"oh": math.log(0.25), "ohe": math.log(0.25)}, F64, "log-likelihoods by hand")


# ---------------------------------------------------------------- sampling


def probe_greedy_ties(m, tokens: np.ndarray, context: list, length: int) -> np.ndarray:
    return m.NGramModel(2, 4).fit(tokens).sample(context, length, seeded(0), 0.0)


@pytest.mark.concept("temperature")
def test_greedy_ties_go_to_the_lowest_id(check):
    # "0 1 0 2": after 0 come 1 and 2 once each (a tie: np.argmax takes 1); after 1 comes 0. From [0]: 1 0 1 0.
    got = check(probe_greedy_ties, tokens=np.array([0, 1, 0, 2]), context=[0], length=4, tol=EXACT,
                what="greedy sample with ties", mistakes=(
                    Mistake("a tie went to the highest id: np.argmax(p) takes the lowest",
                            lambda got, want: got[0] == 2),))
    assert_close(got, np.array([1, 0, 1, 0]), EXACT, "greedy from [0] after '0 1 0 2' by hand")
