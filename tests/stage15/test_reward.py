"""Stage 15 (aligning a model), visible suite: the reward model.

log σ by hand at the extremes (finite where log(sigmoid(x)) is -inf), a reward model that reads each row's last real
token (stage 14's last_token_states) and ignores its padding, the Bradley-Terry loss and its gradient by hand and by
central differences, accuracy with ties, and a tiny reward model that learns a rule.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.harness import EXACT, F32, F64, GRADCHECK, Mistake, assert_close, assert_true, seeded
from tests.stage15.helpers import (TINY, probe_log_sigmoid, probe_pairwise_gradcheck, probe_reward_model,
                                   probe_reward_training, sigmoid)


def probe_accuracy(m, chosen: list, rejected: list) -> dict:
    value = m.preference_accuracy(np.array(chosen), np.array(rejected))
    return {"value": value, "type": type(value).__name__}


@pytest.mark.concept("log-sigmoid")
def test_log_sigmoid_by_hand_at_the_extremes(check):
    # log σ(x) = -log(1 + e^-x): -1000 at x = -1000 (log(sigmoid(-1000)) = log 0 = -inf), -log 2 at 0, 0 at 1000.
    # Its derivative is σ(-x): 1 far left, 1/2 at 0, 0 far right.
    x = [-1000.0, -1.0, 0.0, 1.0, 1000.0]
    got = check(probe_log_sigmoid, x=x, weights=[1.0] * 5, tol=F64, what="log_sigmoid")
    want = [-1000.0, -math.log1p(math.e), -math.log(2.0), -math.log1p(math.exp(-1.0)), 0.0]
    assert_close(got["out"], np.array(want), F64, "log σ(x) at -1000, -1, 0, 1, 1000", mistakes=(
        Mistake("log(sigmoid(x)) underflows to log 0 = -inf at x = -1000: use -np.logaddexp(0, -x)",
                lambda g, w: not np.isfinite(g[0])),))
    assert_close(got["grad"], np.array([sigmoid(-v) for v in x]), F64, "d log σ(x) / dx = σ(-x)", mistakes=(
        Mistake("the derivative is 1 - σ(x) = σ(-x), not σ(x)", lambda g, w: g[-1] > 0.5),))


@pytest.mark.concept("log-sigmoid")
def test_log_sigmoid_gradient_and_dtype(check):
    rng = seeded(1501)
    x, weights = (rng.standard_normal(7) * 4).tolist(), rng.standard_normal(7).tolist()
    got = check(probe_log_sigmoid, x=x, weights=weights, tol=F64, what="log_sigmoid, random x")
    assert_close(got["grad"], np.array(weights) * np.array([sigmoid(-v) for v in x]), GRADCHECK,
                 "gradient of sum(w · log σ(x)): w · σ(-x)")
    got = check(probe_log_sigmoid, x=[-30.0, 0.5, 30.0], weights=[1.0] * 3, dtype="float32", tol=F32,
                what="log_sigmoid in float32")
    assert_close(got["dtype"], "float32", EXACT, "log_sigmoid keeps float32 float32")


@pytest.mark.concept("reward-model")
def test_reward_model_scores_the_last_real_token_and_ignores_padding(check):
    rng = seeded(1502)
    ids = rng.integers(0, TINY["vocab_size"], (3, 7))
    got = check(probe_reward_model, fields=TINY, seed=1502, ids=ids, lengths=[7, 2, 5], tol=F64,
                what="RewardModel")
    assert_close(got["batch"], np.array(got["alone"]), F64, "each row's reward in the padded batch vs alone",
                 mistakes=(Mistake("the reward must be read at position lengths[b] - 1, not at T - 1",
                                   lambda g, w: abs(g[0] - w[0]) < 1e-12 and abs(g[1] - w[1]) > 1e-9),))
    assert_close(got["repadded"], got["batch"], F64, "rewards with other tokens in the padding")
    assert_close(got["head_shape"], [TINY["width"], 1], EXACT, "head.weight is (width, 1): one number per sequence")
    assert_true({"head.weight", "gpt.token_embedding.weight"} <= set(got["names"]),
                f"the RewardModel keeps the GPT as `gpt` and its head as `head`: names {got['names'][:4]} ...")


@pytest.mark.concept("bradley-terry")
def test_bradley_terry_loss_by_hand(check):
    # Differences r_c - r_r = (2, 0, -1.5): losses log(1 + e^-2), log 2, log(1 + e^1.5); the mean of the three.
    # dL/dr_c = -σ(-(r_c - r_r)) / 3 and dL/dr_r is its negative.
    chosen, rejected = np.array([2.0, 0.0, -1.0]), np.array([0.0, 0.0, 0.5])
    got = check(probe_pairwise_gradcheck, function="bradley_terry_loss", chosen=chosen, rejected=rejected, extra={},
                tol=GRADCHECK, what="bradley_terry_loss")
    want = (math.log1p(math.exp(-2.0)) + math.log(2.0) + math.log1p(math.exp(1.5))) / 3
    assert_close(got["loss"], want, F64, "Bradley-Terry loss by hand", mistakes=(
        Mistake("the sum over pairs, not the mean", lambda g, w: abs(g - 3 * w) < 1e-9),
        Mistake("rejected minus chosen: the loss is -log σ(r_chosen - r_rejected)",
                lambda g, w: abs(g - (math.log1p(math.exp(2.0)) + math.log(2.0) + math.log1p(math.exp(-1.5))) / 3)
                < 1e-9)))
    assert_close(got["shape"], [], EXACT, "the loss is a scalar")
    grad = -np.array([sigmoid(-2.0), 0.5, sigmoid(1.5)]) / 3
    assert_close([got["grad_chosen"], got["grad_rejected"]], [grad, -grad], F64, "dL/dr_chosen, dL/dr_rejected")


@pytest.mark.concept("bradley-terry")
def test_bradley_terry_gradcheck_shift_and_stability(check):
    rng = seeded(1503)
    chosen, rejected = rng.standard_normal(6) * 2, rng.standard_normal(6) * 2
    got = check(probe_pairwise_gradcheck, function="bradley_terry_loss", chosen=chosen, rejected=rejected, extra={},
                tol=GRADCHECK, what="bradley_terry_loss, random rewards")
    assert_close([got["grad_chosen"], got["grad_rejected"]], [got["numeric_chosen"], got["numeric_rejected"]],
                 GRADCHECK, "backward vs central differences of your forward")
    shifted = check(probe_pairwise_gradcheck, function="bradley_terry_loss", chosen=chosen + 5.0,
                    rejected=rejected + 5.0, extra={}, tol=GRADCHECK, what="every reward + 5")
    assert_close(shifted["loss"], got["loss"], F64, "only r_c - r_r matters: a shared constant changes nothing")
    far = check(probe_pairwise_gradcheck, function="bradley_terry_loss", chosen=np.array([-1000.0, 1000.0]),
                rejected=np.array([0.0, 0.0]), extra={}, tol=GRADCHECK, what="margins of -1000 and 1000")
    assert_close([far["loss"], far["grad_chosen"]], [500.0, np.array([-0.5, 0.0])], F64,
                 "loss (1000 + 0) / 2 and finite gradients at margins of +-1000", mistakes=(
                     Mistake("log(sigmoid(d)) is -inf at d = -1000: use log_sigmoid",
                             lambda g, w: not np.isfinite(g[0])),))


@pytest.mark.concept("accuracy")
def test_preference_accuracy_counts_a_tie_as_wrong(check):
    got = check(probe_accuracy, chosen=[1.0, 2.0, 3.0], rejected=[0.0, 2.0, 4.0], tol=F64, what="accuracy")
    assert_close(got, {"value": 1 / 3, "type": "float"}, F64, "one win, one tie, one loss: 1/3, a Python float",
                 mistakes=(Mistake("a tie counted as a win: use chosen > rejected", lambda g, w: g["value"] > 0.5),))


@pytest.mark.concept("bradley-terry")
def test_a_tiny_reward_model_learns_a_rule(target, reference):
    # Chosen sequences end in token 1, rejected ones in token 2: the pooled state sees it, so 30 AdamW steps drive
    # the loss far below log 2 and rank every held-out pair right. Only the first loss is compared with the
    # reference: float32 steps written another (correct) way drift apart after a few updates.
    inputs = {"fields": TINY, "seed": 1504, "steps": 30, "lr": 1e-2}
    got, want = target.run(probe_reward_training, **inputs), reference.run(probe_reward_training, **inputs)
    assert_close(got["losses"][0], want["losses"][0], F32, "the first Bradley-Terry loss of the run")
    assert_true(got["losses"][-1] < 0.1 < got["losses"][0],
                f"the Bradley-Terry loss must fall below 0.1 in 30 steps; got {got['losses'][0]:.3f} -> "
                f"{got['losses'][-1]:.3f}")
    assert_close(got["accuracy"][-1], 1.0, EXACT, "held-out accuracy after 30 steps")
