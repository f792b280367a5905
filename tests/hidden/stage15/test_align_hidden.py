"""Stage 15 (aligning a model), hidden suite: other seeds, shapes, configs and edge cases than the visible one. Like
the visible suites, every test compares with the reference AND checks a hand value, a bound or an invariant of your
own output."""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.harness import EXACT, F32, F64, GRADCHECK, Mistake, assert_close, assert_true, seeded
from tests.stage15.helpers import (LOGPROB, TINY, pair_batch, probe_advantages, probe_dpo_batch, probe_dpo_loss,
                                   probe_grpo_loss, probe_grpo_step, probe_kl, probe_log_sigmoid,
                                   probe_pairwise_gradcheck, probe_reward_model, probe_sample_responses,
                                   probe_sequence_logprobs, probe_token_logprobs, rollout_batch, sigmoid)

OTHER = dict(TINY, kv_heads=1, position="learned", norm="layer", tie_embeddings=False, width=12, heads=3)


@pytest.mark.concept("log-sigmoid")
def test_log_sigmoid_far_right_and_far_left_in_float32(check):
    # float32: log σ(-90) = -90 (σ itself underflows below 1e-38), log σ(90) = -e^-90, rounds to 0.
    got = check(probe_log_sigmoid, x=[-90.0, -20.0, 20.0, 90.0], weights=[1.0] * 4, dtype="float32", tol=F64,
                what="log_sigmoid, float32 extremes")
    assert_true(bool(np.all(np.isfinite(got["out"]))), f"log_sigmoid must be finite in float32: {got['out']}")
    assert_close(got["out"][[0, 1]], np.array([-90.0, -20.0]), F64, "log σ(x) ≈ x far left (float32)")
    assert_close(got["grad"], np.array([1.0, 1.0, sigmoid(-20.0), 0.0]), F32, "σ(-x) in float32")


@pytest.mark.concept("reward-model")
def test_reward_model_on_another_gpt(check):
    ids = seeded(1581).integers(0, OTHER["vocab_size"], (4, 9))
    got = check(probe_reward_model, fields=OTHER, seed=1581, ids=ids, lengths=[9, 1, 4, 6], tol=F64,
                what="RewardModel, learned positions, untied head")
    assert_close(got["batch"], np.array(got["alone"]), F64, "padded batch vs each row alone")
    assert_close(got["repadded"], got["batch"], F64, "other padding tokens")
    assert_true(float(np.abs(got["initial_head"]).max()) < 0.1, "head weights start N(0, 0.02²): small")


@pytest.mark.concept("bradley-terry")
def test_bradley_terry_one_pair_by_hand(check):
    got = check(probe_pairwise_gradcheck, function="bradley_terry_loss", chosen=np.array([0.3]),
                rejected=np.array([1.1]), extra={}, tol=GRADCHECK, what="one pair")
    assert_close([got["loss"], got["grad_chosen"][0]], [math.log1p(math.exp(0.8)), -sigmoid(0.8)], F64,
                 "-log σ(-0.8) and its gradient -σ(0.8)")


@pytest.mark.concept("token-logprobs")
def test_token_logprobs_on_another_gpt(check):
    ids = seeded(1582).integers(0, OTHER["vocab_size"], (3, 10))
    got = check(probe_token_logprobs, fields=OTHER, seed=1582, ids=ids, tol=LOGPROB, what="token_logprobs")
    assert_close(got["got"], got["by_hand"], LOGPROB, "log-softmax at the next token")
    assert_true(bool(np.all(np.asarray(got["got"]) <= 0)), "log-probabilities are <= 0")


@pytest.mark.concept("sequence-logprobs")
def test_sequence_logprobs_of_a_one_token_response(check):
    ids = seeded(1583).integers(1, TINY["vocab_size"], (3, 6))
    mask = np.zeros((3, 6), dtype=bool)
    mask[0, 5], mask[1, 1], mask[2, 2:4] = True, True, True
    got = check(probe_sequence_logprobs, fields=TINY, seed=1583, ids=ids, mask=mask, padded_from=[6, 2, 4],
                tol=LOGPROB, what="sequence_logprobs, short responses")
    assert_close(got["got"], got["summed"], LOGPROB, "the masked sum")
    assert_close(got["repadded"], got["got"], LOGPROB, "padding changes nothing")


@pytest.mark.concept("dpo-loss")
def test_dpo_loss_with_large_margins_stays_finite(check):
    # βΔ = ±500: the loss is log(1 + e^-500) ≈ 0 and log(1 + e^500) = 500, the mean 250.
    got = check(probe_dpo_loss, policy_chosen=[0.0, -1000.0], policy_rejected=[-1000.0, 0.0],
                reference_chosen=[0.0, 0.0], reference_rejected=[0.0, 0.0], beta=0.5, tol=F64,
                what="dpo_loss at βΔ = ±500")
    assert_close(got["loss"], 250.0, F64, "mean of 0 and 500", mistakes=(
        Mistake("log(sigmoid(x)) overflows: use log_sigmoid", lambda g, w: not math.isfinite(g)),))
    assert_close(got["grad_chosen"], np.array([0.0, -0.25]), F64, "-β σ(-βΔ) / B: 0 and -0.5 / 2")


@pytest.mark.concept("reference-frozen")
def test_dpo_batch_with_another_beta(check):
    batch = pair_batch(1584, TINY["vocab_size"], 5, 8)
    got = check(probe_dpo_batch, fields=TINY, seeds=[1584, 1585], beta=2.0, **batch, tol=LOGPROB,
                what="dpo_batch_loss, β = 2")
    assert_close(got["reference_grads"], 0, EXACT, "reference parameters with a gradient")
    assert_close(got["loss"], got["by_hand"]["loss"], LOGPROB, "the loss from your sequence_logprobs")


@pytest.mark.concept("advantages")
def test_group_of_two_and_a_constant_group(check):
    got = check(probe_advantages, rewards=np.array([[0.0, 1.0], [3.0, 3.0]]), eps=0.0 + 1e-8, tol=F64,
                what="groups of two")
    assert_close(got["advantages"], np.array([[-0.5 / (0.5 + 1e-8), 0.5 / (0.5 + 1e-8)], [0.0, 0.0]]), F64,
                 "±1 (population std 1/2), and zeros")


@pytest.mark.concept("kl")
def test_kl_penalty_is_non_negative(check):
    rng = seeded(1586)
    logprobs, reference = rng.normal(-2, 1, 12), rng.normal(-2, 1, 12)
    got = check(probe_kl, logprobs=logprobs.tolist(), reference=reference.tolist(), tol=F64, what="kl_penalty")
    assert_true(bool(np.all(np.asarray(got["out"]) >= 0)), "k3 = e^d - d - 1 >= 0 for every d")
    assert_close(got["grad"], 1.0 - np.exp(reference - logprobs), F64, "1 - exp(ref - π)")


@pytest.mark.concept("clipping")
def test_clip_at_another_epsilon_and_the_kl_alone(check):
    # ε = 0.1, A = 2, ratio 1.3 -> 2 · 1.1; A = 0 with the KL term only: kl_coef · k3 averaged per response.
    old = np.full((2, 2), -1.5)
    logprobs = old + np.log(1.3)
    reference = logprobs + np.log(2.0)  # d = log 2: k3 = 1 - log 2 on every token
    got = check(probe_grpo_loss, logprobs=logprobs, old=old, advantages=[2.0, 0.0], mask=np.ones((2, 2), bool),
                clip=0.1, reference=reference, kl_coef=0.5, tol=GRADCHECK, what="grpo_loss, ε = 0.1, with KL")
    want = (-2.0 * 1.1 + 0.5 * (1 - math.log(2.0)) + 0.5 * (1 - math.log(2.0))) / 2
    assert_close(got["loss"], want, F64, "(-(2 · 1.1) + 0.5 k3 + 0.5 k3) / 2 responses")


@pytest.mark.concept("sampling")
def test_greedy_groups_are_identical_and_draw_nothing(check):
    got = check(probe_sample_responses, fields=OTHER, seed=1587, prompt=[2, 5], group=3, max_new_tokens=7, end=0,
                rng_seed=1588, temperature=0.0, tol=EXACT, what="greedy sampling")
    first = np.asarray(got["responses"][0])
    for response in got["responses"][1:]:
        assert_close(np.asarray(response), first, EXACT, "temperature 0: every row of the group is the argmax path")
    assert_close(got["calls"], [], EXACT, "greedy draws no random number")


@pytest.mark.concept("grpo-step")
def test_grpo_step_with_the_kl_penalty(check):
    batch = rollout_batch(1589, TINY["vocab_size"], 3, 10)
    got = check(probe_grpo_step, fields=TINY, seeds=[1589, 1590], **batch, advantages=[0.0, 0.0, 0.0], shift=0.0,
                clip=0.2, kl_coef=0.3, lr=1e-2, tol=F64, what="grpo_step, zero advantages, KL to another model")
    assert_true(got["stats"]["loss"] > 0 and got["moved"] > 0, "with A = 0 only the KL term acts: a positive loss "
                "that moves the policy towards the reference")
