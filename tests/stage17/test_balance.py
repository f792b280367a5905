"""Stage 17 (mixture of experts), visible suite: the Switch Transformer balance loss E · sum_e f_e · P_e — its value
at uniform probabilities and at a balanced assignment (exactly 1, docs/17-moe.md, section 5), a skewed case by hand, and
its gradient E · f_e / N."""
from __future__ import annotations

import numpy as np
import pytest

from grader.harness import EXACT, F64, Mistake, assert_close, seeded
from tests.stage17.helpers import probe_balance


def random_probabilities(seed: int, tokens: int, experts: int) -> np.ndarray:
    logits = seeded(seed).standard_normal((tokens, experts))
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


@pytest.mark.concept("balance")
def test_balance_loss_is_one_at_uniform_probabilities(check):
    # P_e = 1/E for every e, so E · sum_e f_e / E = sum_e f_e = 1 whatever the choices: even all on expert 0.
    uniform = np.full((6, 4), 0.25)  # mathematically exactly 1; f_e = 2/6 rounds, so F64 allows the last digits
    for choices in ([[0]] * 6, [[0], [1], [2], [3], [0], [1]]):
        got = check(probe_balance, probabilities=uniform, choices=choices, experts=4, tol=F64,
                    what=f"balance loss, uniform probabilities, choices {choices}")
        assert_close(got["loss"], 1.0, F64, "balance loss at uniform probabilities, k = 1", mistakes=(
            Mistake("f_e divided by N · E or not at all: f must sum to 1 over the experts",
                    lambda g, w: abs(g - 1.0) > 1e-9),))
        assert_close(got["shape"], [], EXACT, "the balance loss is a scalar Tensor, shape ()")


@pytest.mark.concept("balance")
def test_balance_loss_is_one_at_a_balanced_assignment(check):
    # f_e = 1/E for every e: E · sum_e P_e / E = sum_e P_e = 1, because each token's probabilities sum to 1.
    probabilities = random_probabilities(1710, 8, 4)
    got = check(probe_balance, probabilities=probabilities, choices=[[e % 4] for e in range(8)], experts=4,
                tol=F64, what="balance loss, balanced assignment")
    assert_close(got["loss"], 1.0, F64, "balance loss with each expert chosen by 2 of 8 tokens")


@pytest.mark.concept("balance")
def test_balance_loss_and_gradient_by_hand(check):
    # Both tokens pick expert 0: f = [1, 0]; P_0 = (0.9 + 0.8) / 2 = 0.85, so the loss is 2 · 0.85 = 1.7.
    # dL/dp[n, e] = E · f_e / N = 2 · [1, 0] / 2: ones in column 0, zeros in column 1.
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2]])
    got = check(probe_balance, probabilities=probabilities, choices=[[0], [0]], experts=2, tol=F64,
                what="balance loss, skewed")
    assert_close(got["loss"], 1.7, F64, "balance loss by hand (see the comment)", mistakes=(
        Mistake("P_e summed over tokens instead of averaged", lambda g, w: abs(g - 3.4) < 1e-9),
        Mistake("the factor E left out", lambda g, w: abs(g - 0.85) < 1e-9)))
    assert_close(got["grad"], [[1.0, 0.0], [1.0, 0.0]], F64, "d loss / d probabilities = E · f_e / N", mistakes=(
        Mistake("no gradient reached the probabilities: build P_e with Tensor ops (mean over tokens)",
                lambda g, w: not np.any(np.asarray(g))),))


@pytest.mark.concept("balance")
def test_balance_loss_with_two_choices_per_token(check):
    # k = 2: f counts all N · k = 6 choices. Expert 0 is named 3 times, 1 twice, 2 once: f = [1/2, 1/3, 1/6].
    probabilities = random_probabilities(1711, 3, 3)
    choices = [[0, 1], [0, 2], [1, 0]]
    got = check(probe_balance, probabilities=probabilities, choices=choices, experts=3, tol=F64,
                what="balance loss, k = 2")
    fraction = np.array([1 / 2, 1 / 3, 1 / 6])
    assert_close(got["loss"], 3 * float(fraction @ probabilities.mean(axis=0)), F64, "balance loss, k = 2, by hand",
                 mistakes=(Mistake("f divided by N instead of N · k: it must sum to 1", lambda g, w: g > 1.5 * w),))
    assert_close(got["grad"], np.tile(3 * fraction / 3, (3, 1)), F64, "gradient E · f_e / N, k = 2")
