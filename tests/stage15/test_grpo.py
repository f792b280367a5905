"""Stage 15 (aligning a model), visible suite: group relative policy optimisation.

Group advantages by hand (an all-equal group gives exactly 0), the k3 KL estimate by hand, the four cases of the
clipped objective by hand (which tokens get a gradient), the per-response normalisation, a float64 gradcheck with the
KL term, sampling that equals stage 11's generate and stops at the end token, one update against the reference and
its limiting cases, and a toy run whose reward rises.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.harness import EXACT, F64, GRADCHECK, Mistake, assert_close, assert_true, seeded
from tests.stage15.helpers import (TINY, probe_advantages, probe_grpo_loss, probe_grpo_step, probe_grpo_training,
                                   probe_kl, probe_sample_responses, rollout_batch)


@pytest.mark.concept("advantages")
def test_group_advantages_by_hand(check):
    # Row 1: mean 1/2, std 1/2 -> ±(1/2) / (1/2 + eps). Row 2: all equal -> exactly 0. Row 3: mean 1/2,
    # std sqrt(3/4) -> (-1/2, -1/2, -1/2, 3/2) / (sqrt(3/4) + eps).
    rewards = np.array([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 2.0]])
    got = check(probe_advantages, rewards=rewards, tol=F64, what="group_advantages")
    eps = 1e-6
    want = np.array([[0.5, -0.5, -0.5, 0.5], [0.0] * 4, [-0.5, -0.5, -0.5, 1.5]])
    want /= np.array([[0.5 + eps], [eps], [math.sqrt(0.75) + eps]])
    assert_close(got["advantages"], want, F64, "(r - mean) / (std + eps) per group (row)", mistakes=(
        Mistake("the population std (np.std, ddof 0), not the sample std (ddof 1)",
                lambda g, w: abs(g[0][0] - 0.5 / (math.sqrt(1 / 3) + eps)) < 1e-6),
        Mistake("each group is normalised on its own: mean and std along the last axis, not over the whole batch",
                lambda g, w: abs(g[1][0]) > 0)))
    assert_close(got["advantages"][1], np.zeros(4), EXACT, "an all-equal group: advantages exactly 0 (not NaN)")


@pytest.mark.concept("advantages")
def test_group_advantages_of_several_prompts(check):
    rewards = seeded(1530).integers(0, 3, (2, 3, 5)).astype(np.float64)
    got = check(probe_advantages, rewards=rewards, eps=1e-4, tol=F64, what="group_advantages of (2, 3, 5) rewards")
    assert_close(np.asarray(got["advantages"]).mean(axis=-1), np.zeros((2, 3)), F64, "each group's advantages "
                 "sum to zero")
    assert_close(got["dtype"], "float64", EXACT, "advantages are float64")


@pytest.mark.concept("kl")
def test_kl_penalty_by_hand(check):
    # d = ref - π = (0, log 2, -log 2): k3 = e^d - d - 1 = (0, 1 - log 2, log 2 - 1/2); d k3 / dπ = 1 - e^d.
    log2 = math.log(2.0)
    got = check(probe_kl, logprobs=[0.0, -1.0, -2.0], reference=[0.0, -1.0 + log2, -2.0 - log2], tol=F64,
                what="kl_penalty")
    assert_close(got["out"], np.array([0.0, 1.0 - log2, log2 - 0.5]), F64, "k3 = exp(ref - π) - (ref - π) - 1",
                 mistakes=(Mistake("the sign of d: k3 uses ref - π (exp(π - ref) is the other estimator)",
                                   lambda g, w: abs(g[1] - (0.5 + log2 - 1)) < 1e-9),))
    assert_close(got["grad"], np.array([0.0, -1.0, 0.5]), F64, "d k3 / dπ = 1 - exp(ref - π)")


@pytest.mark.concept("clipping")
def test_the_four_cases_of_the_clipped_objective(check):
    # One response token each, ε = 0.2, B = 4:
    #   A = +1, ratio 1.5: min(1.5, 1.2) = 1.2, clipped, no gradient
    #   A = +1, ratio 0.5: min(0.5, 0.8) = 0.5, gradient -A·ratio/B = -0.125
    #   A = -1, ratio 0.5: min(-0.5, -0.8) = -0.8, clipped, no gradient
    #   A = -1, ratio 1.5: min(-1.5, -1.2) = -1.5, gradient +0.375
    # loss = -(1.2 + 0.5 - 0.8 - 1.5) / 4 = 0.15
    old = np.full((4, 1), -1.0)
    logprobs = old + np.log([[1.5], [0.5], [0.5], [1.5]])
    got = check(probe_grpo_loss, logprobs=logprobs, old=old, advantages=[1.0, 1.0, -1.0, -1.0],
                mask=np.ones((4, 1), dtype=bool), clip=0.2, reference=None, kl_coef=0.0, tol=GRADCHECK,
                what="grpo_loss, the four cases")
    assert_close(got["loss"], 0.15, F64, "the clipped loss by hand", mistakes=(
        Mistake("the loss is MINUS the objective (gradient descent maximises it)", lambda g, w: abs(g + w) < 1e-9),
        Mistake("a negative advantage must be clipped at 1 - ε from below too: min(ratio·A, clip(ratio)·A) does it "
                "for either sign", lambda g, w: abs(g - 0.075) < 1e-9)))
    assert_close(got["grad"], np.array([[0.0], [-0.125], [0.0], [0.375]]), F64, "dL/dlogπ per token", mistakes=(
        Mistake("where the clipped term wins it is a constant: those tokens get no gradient",
                lambda g, w: g[0][0] != 0 or g[2][0] != 0),))
    assert_close(got["shape"], [], EXACT, "the loss is a scalar")


@pytest.mark.concept("normalisation")
def test_each_response_is_averaged_over_its_own_tokens(check):
    # Ratios 1. Response 1: one token, A = 1. Response 2: three tokens, A = -1. The mean of the per-response means
    # is (1 - 1) / 2 = 0; one mean over all four tokens would give (1 - 3) / 4. Masked tokens hold junk (-50, 30)
    # that must change nothing and get no gradient.
    old = np.array([[-1.0, -50.0, 30.0], [-1.0, -2.0, -0.5]])
    mask = np.array([[True, False, False], [True, True, True]])
    got = check(probe_grpo_loss, logprobs=old.copy(), old=old, advantages=[1.0, -1.0], mask=mask, clip=0.2,
                reference=None, kl_coef=0.0, tol=GRADCHECK, what="grpo_loss, responses of 1 and 3 tokens")
    assert_close(got["loss"], 0.0, F64, "the mean over responses of each response's token mean", mistakes=(
        Mistake("one mean over all the batch's response tokens weighs long responses more: average each response "
                "over its own tokens first", lambda g, w: abs(g - 0.5) < 1e-9),))
    assert_close(got["grad"], np.array([[-0.5, 0.0, 0.0], [1 / 6, 1 / 6, 1 / 6]]), F64,
                 "dL/dlogπ: -A · ratio / (n_b · B) on response tokens, 0 elsewhere")


@pytest.mark.concept("kl")
def test_grpo_loss_gradcheck_with_the_kl_term(check):
    rng = seeded(1531)
    old = np.log(rng.uniform(0.05, 0.9, (3, 5)))
    logprobs = old + rng.uniform(-0.15, 0.15, (3, 5))  # ratios in (0.86, 1.16): away from the clip edges 0.9, 1.1
    logprobs[0, 0], logprobs[1, 1] = old[0, 0] + 0.5, old[1, 1] - 0.5  # and two well outside them
    mask = rng.random((3, 5)) < 0.8
    mask[:, 0] = True
    inputs = {"logprobs": logprobs, "old": old, "advantages": [1.3, -0.4, 0.7], "mask": mask, "clip": 0.1,
              "reference": old + rng.normal(0.0, 0.3, (3, 5)), "kl_coef": 0.25}
    got = check(probe_grpo_loss, **inputs, tol=GRADCHECK, what="grpo_loss with the KL penalty")
    assert_close(got["grad"], got["numeric"], GRADCHECK, "backward vs central differences of your grpo_loss",
                 mistakes=(Mistake("the KL term has no gradient: build it from the logprobs Tensor",
                                   lambda g, w: True),))
    without = check(probe_grpo_loss, **dict(inputs, kl_coef=0.0), tol=GRADCHECK, what="grpo_loss, kl_coef 0")
    assert_true(got["loss"] > without["loss"], f"the KL penalty (>= 0) must add to the loss: {got['loss']:.6f} with, "
                                               f"{without['loss']:.6f} without")


@pytest.mark.concept("sampling")
def test_sampled_responses_are_generate_cut_at_the_end_token(check):
    # The group is one batch: with the same seed its draws are stage 11's generate on `group` copies of the prompt,
    # one rng call per step for the whole group. Each row stops after its first end token (4).
    got = check(probe_sample_responses, fields=TINY, seed=1532, prompt=[1, 2, 3], group=6, max_new_tokens=9, end=4,
                rng_seed=1533, temperature=1.5, tol=EXACT, what="sample_responses")
    longest = max(len(r) for r in got["responses"])
    for b, response in enumerate(got["responses"]):
        response = np.asarray(response)
        ends = np.flatnonzero(response == 4)
        assert_true(ends.size == 0 and len(response) == 9 or ends.tolist() == [len(response) - 1],
                    f"response {b} = {response.tolist()}: it must end at its first end token (4), or run to "
                    f"max_new_tokens (9) without one")
        assert_close(response, np.asarray(got["generated"])[b, :len(response)], EXACT,
                     f"response {b} vs stage 11's generate with the same seed")
    assert_true(any(len(r) < 9 for r in got["responses"]), "this seed must stop some responses early")
    assert_close(got["calls"], [[6]] * longest, EXACT, "rng.random calls: one (group,) draw per step, stopping "
                 "when every row has ended", mistakes=(
                     Mistake("one sample call per row per step: draw the whole group at once",
                             lambda g, w: len(g) > len(w)),))
    assert_close(got["training"], True, EXACT, "the model's training mode is restored after sampling")


@pytest.mark.concept("sampling")
def test_sampling_stops_when_the_context_is_full(check):
    # A 14-token prompt in a context of 16: the cache holds prompt + draws - 1 <= 16, so 3 draws at most. The end id
    # 11 is outside the vocabulary (never drawn), so every response has exactly 3 tokens.
    got = check(probe_sample_responses, fields=TINY, seed=1534, prompt=list(range(1, 11)) + [1, 2, 3, 4], group=3,
                max_new_tokens=20, end=11, rng_seed=1535, temperature=1.0, tol=EXACT, what="a full context")
    assert_close([len(r) for r in got["responses"]], [3, 3, 3], EXACT, "draws per response: context - P + 1")


@pytest.mark.concept("grpo-step")
def test_one_grpo_step_against_the_reference(check):
    batch = rollout_batch(1536, TINY["vocab_size"], 4, 9)
    got = check(probe_grpo_step, fields=TINY, seeds=[1536, 1537], **batch, advantages=[1.0, -0.5, 0.5, 0.3],
                shift=0.0, clip=0.2, kl_coef=0.0, lr=1e-2, steps=3, tol=F64, what="three grpo_steps on one batch",
                mistakes=(Mistake("the second step differs: zero the gradients at the start of every step (they "
                                  "accumulate across backward calls)", lambda g, w: g["stats"] == w["stats"]),))
    # the first step's ratios are 1 (old = the policy itself): loss = -mean(A) = -0.325, nothing clipped
    assert_close([got["stats"]["loss"], got["stats"]["clipped"]], [-0.325, 0.0], F64, "loss and clipped fraction")
    assert_true(got["moved"] > 0, "grpo_step must update the policy's parameters")
    assert_true(got["later"][-1]["loss"] < -0.325, f"the loss must fall on the same batch: {got['stats']['loss']:.4f} "
                                                   f"then {[round(s['loss'], 4) for s in got['later']]}")


@pytest.mark.concept("clipping")
def test_a_step_whose_every_token_is_clipped_changes_nothing(check):
    # old = logπ - 0.5: every ratio is e^0.5 = 1.65 > 1.2. With A > 0 the clipped term wins everywhere: no gradient,
    # so AdamW's update is 0 / (0 + eps) = 0. With A < 0 the unclipped term wins: the policy moves.
    batch = rollout_batch(1538, TINY["vocab_size"], 3, 8)
    got = check(probe_grpo_step, fields=TINY, seeds=[1538, 1539], **batch, advantages=[1.0, 0.5, 2.0], shift=0.5,
                clip=0.2, kl_coef=0.0, lr=1e-2, tol=F64, what="grpo_step, every ratio above 1 + ε, A > 0")
    assert_close([got["stats"]["clipped"], got["stats"]["grad_norm"], got["moved"]], [1.0, 0.0, 0], EXACT,
                 "clipped fraction, gradient norm, parameters moved", mistakes=(
                     Mistake("the clipped branch must carry no gradient", lambda g, w: g[1] > 0),))
    got = check(probe_grpo_step, fields=TINY, seeds=[1538, 1539], **batch, advantages=[-1.0, -0.5, -2.0],
                shift=0.5, clip=0.2, kl_coef=0.0, lr=1e-2, tol=F64, what="grpo_step, every ratio above 1 + ε, A < 0")
    assert_true(got["moved"] > 0 and got["stats"]["grad_norm"] > 0, "A < 0 with ratio > 1 + ε is NOT clipped "
                "(min picks the unclipped -ratio·|A|): the policy must move")


@pytest.mark.concept("training")
def test_a_toy_grpo_run_raises_the_reward(target, reference):
    # Reward 1 when the first response token is 3 (of 6): groups of 8 from one prompt, 30 steps.
    inputs = {"fields": dict(TINY, vocab_size=6), "seed": 1540, "steps": 30, "group": 8, "lr": 1e-2}
    got, want = target.run(probe_grpo_training, **inputs), reference.run(probe_grpo_training, **inputs)
    assert_close(got["rewards"][0], want["rewards"][0], EXACT, "the first group's mean reward (before any update)")
    first, last = np.mean(got["rewards"][:5]), np.mean(got["rewards"][-5:])
    assert_true(last > first + 0.3, f"mean reward of the first 5 groups {first:.2f}, of the last 5 {last:.2f}: GRPO "
                                    f"must raise it by more than 0.3 (reference: {np.mean(want['rewards'][:5]):.2f} "
                                    f"-> {np.mean(want['rewards'][-5:]):.2f})")
