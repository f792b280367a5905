"""Stage 15 (aligning a model), visible suite: direct preference optimisation.

Per-token log-probabilities against a log-softmax of the model's own logits, sequence log-probabilities that count
the response only (the mask shifted like the targets, the padding free), the DPO loss and its gradient by hand, by
central differences through a whole GPT, log 2 when the policy is the reference, implicit rewards, and a reference
that gets no gradient.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.harness import EXACT, F64, GRADCHECK, Mistake, assert_close, assert_true, seeded
from tests.stage15.helpers import (LOGPROB, MODEL_GRADCHECK, TINY, pair_batch, probe_dpo_batch, probe_dpo_beta_refusal,
                                   probe_dpo_gradcheck, probe_dpo_loss, probe_implicit_rewards,
                                   probe_pairwise_gradcheck, probe_sequence_logprobs, probe_sequence_refusals,
                                   probe_token_logprobs, sigmoid)


@pytest.mark.concept("token-logprobs")
def test_token_logprobs_are_the_log_softmax_at_the_next_token(check):
    ids = seeded(1510).integers(0, TINY["vocab_size"], (2, 6))
    got = check(probe_token_logprobs, fields=TINY, seed=1510, ids=ids, tol=LOGPROB, what="token_logprobs")
    assert_close(got["shape"], [2, 5], EXACT, "token_logprobs of (2, 6) ids: (B, T - 1)")
    assert_close(got["got"], got["by_hand"], LOGPROB, "log p(ids[b, t] | ids[b, :t]) vs the log-softmax of your "
                 "model's logits at t - 1", mistakes=(
                     Mistake("position t predicts token t + 1: gather the logits at t - 1 for token t",
                             lambda g, w: np.asarray(g).shape == np.asarray(w).shape),))


@pytest.mark.concept("sequence-logprobs")
def test_sequence_logprobs_count_the_response_only(check):
    ids = seeded(1511).integers(1, TINY["vocab_size"], (2, 7))
    mask = np.array([[0, 0, 0, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1, 0]], dtype=bool)
    got = check(probe_sequence_logprobs, fields=TINY, seed=1511, ids=ids, mask=mask, padded_from=[5, 6],
                tol=LOGPROB, what="sequence_logprobs")
    assert_close(got["got"], got["summed"], LOGPROB, "sum of token_logprobs * mask[:, 1:] over each row", mistakes=(
        Mistake("the mask must be shifted like the targets: token t's log-prob sits at column t - 1, so it is "
                "selected by mask[:, 1:], not mask[:, :-1]", lambda g, w: True),))
    assert_close(got["repadded"], got["got"], LOGPROB, "the same rows with other tokens in the padding")
    assert_true(got["grad_norm"] > 0, "sequence_logprobs must keep the graph: no gradient reached the model")


@pytest.mark.concept("sequence-logprobs")
def test_sequence_logprobs_refuse_a_mask_that_does_not_fit(check):
    got = check(probe_sequence_refusals, fields=TINY, tol=EXACT, what="sequence_logprobs' checks")
    assert_close(got["accepted"]["returned"], [1], EXACT, "a valid (1, 4) batch gives (B,) = [1]")


@pytest.mark.concept("dpo-loss")
def test_dpo_loss_by_hand(check):
    # β = 0.5. Pair 1: Δ = (-2 + 2.5) - (-3 + 2.5) = 1, βΔ = 0.5. Pair 2: Δ = (-5 + 5) - (-4 + 4.5) = -0.5,
    # βΔ = -0.25. Loss = (log(1 + e^-0.5) + log(1 + e^0.25)) / 2; dL/dπ_c = -β σ(-βΔ) / 2, dL/dπ_r the opposite.
    inputs = {"policy_chosen": [-2.0, -5.0], "policy_rejected": [-3.0, -4.0], "reference_chosen": [-2.5, -5.0],
              "reference_rejected": [-2.5, -4.5], "beta": 0.5}
    got = check(probe_dpo_loss, **inputs, tol=F64, what="dpo_loss")
    want = (math.log1p(math.exp(-0.5)) + math.log1p(math.exp(0.25))) / 2
    assert_close(got["loss"], want, F64, "DPO loss by hand", mistakes=(
        Mistake("β must multiply the whole Δ inside σ", lambda g, w: abs(g - (math.log1p(math.exp(-1.0))
                                                                            + math.log1p(math.exp(0.5))) / 2) < 1e-9),
        Mistake("the sum over pairs, not the mean", lambda g, w: abs(g - 2 * w) < 1e-9)))
    grad = -0.5 * np.array([sigmoid(-0.5), sigmoid(0.25)]) / 2
    assert_close([got["grad_chosen"], got["grad_rejected"]], [grad, -grad], F64, "dL/dπ_c = -β σ(-βΔ) / B and "
                 "dL/dπ_r = +β σ(-βΔ) / B")


@pytest.mark.concept("dpo-gradient")
def test_dpo_loss_gradcheck_and_log_2_at_the_reference(check):
    rng = seeded(1512)
    reference = {"reference_chosen": rng.standard_normal(5) - 3, "reference_rejected": rng.standard_normal(5) - 3}
    got = check(probe_pairwise_gradcheck, function="dpo_loss", chosen=rng.standard_normal(5) - 3,
                rejected=rng.standard_normal(5) - 3, extra={**reference, "beta": 0.3}, tol=GRADCHECK, what="dpo_loss")
    assert_close([got["grad_chosen"], got["grad_rejected"]], [got["numeric_chosen"], got["numeric_rejected"]],
                 GRADCHECK, "backward vs central differences of your forward")
    for beta in (0.1, 2.0):  # the policy IS the reference: Δ = 0 for every pair, σ(0) = 1/2
        got = check(probe_pairwise_gradcheck, function="dpo_loss", chosen=reference["reference_chosen"],
                    rejected=reference["reference_rejected"], extra={**reference, "beta": beta}, tol=GRADCHECK,
                    what=f"dpo_loss with policy = reference, β = {beta}")
        assert_close(got["loss"], math.log(2.0), F64, f"policy = reference: loss log 2 whatever β ({beta})")


@pytest.mark.concept("dpo-loss")
def test_dpo_loss_refuses_a_beta_that_is_not_positive(check):
    for beta in (0.0, -1.0):
        check(probe_dpo_beta_refusal, beta=beta, tol=EXACT, what=f"dpo_loss with beta {beta}")
    got = check(probe_dpo_beta_refusal, beta=0.1, tol=F64, what="dpo_loss with beta 0.1")
    assert_close(got["returned"], math.log(2.0), F64, "beta 0.1 is accepted (policy = reference: log 2)")


@pytest.mark.concept("implicit-rewards")
def test_implicit_rewards_by_hand(check):
    got = check(probe_implicit_rewards, policy=[-2.0, -5.0], reference=[-2.5, -4.0], beta=0.1, tol=F64,
                what="implicit_rewards")
    assert_close(got, np.array([0.05, -0.1]), F64, "β (log π - log π_ref) with β = 0.1", mistakes=(
        Mistake("reference minus policy: the reward grows with the policy's log-prob", lambda g, w: g[0] < 0),))


@pytest.mark.concept("reference-frozen")
def test_dpo_batch_loss_trains_the_policy_and_freezes_the_reference(check):
    batch = pair_batch(1513, TINY["vocab_size"], 4, 9)
    got = check(probe_dpo_batch, fields=TINY, seeds=[1513, 1514], beta=0.5, **batch, tol=LOGPROB,
                what="dpo_batch_loss")
    assert_close(got["reference_graphs"], [False, False], EXACT, "did the reference's two forward passes (chosen, "
                 "rejected) build a graph?", mistakes=(
                     Mistake("run the reference inside `with no_grad():`: it is never trained, and its graph would "
                             "hold every activation until the step ends", lambda g, w: any(g)),))
    assert_close(got["reference_grads"], 0, EXACT, "reference parameters with a gradient after backward",
                 mistakes=(Mistake("the reference's log-probs must be computed under no_grad and kept as .data",
                                   lambda g, w: g > 0),))
    assert_close(got["policy_grads"], got["policy_parameters"], EXACT, "policy parameters with a gradient")
    assert_close([got["loss"], got["stats"]], [got["by_hand"]["loss"], {k: v for k, v in got["by_hand"].items()
                                                                       if k != "loss"}],
                 LOGPROB, "the loss and the stats from your sequence_logprobs, by the formulas")


@pytest.mark.concept("dpo-gradient")
def test_dpo_gradient_through_a_whole_gpt(target, check):
    batch = pair_batch(1515, TINY["vocab_size"], 3, 8)
    names = ["final_norm.weight", "blocks.0.attention.query.weight"]
    got = target.run(probe_dpo_gradcheck, fields=TINY, seeds=[1515, 1516], beta=0.5, **batch, names=names)
    for name in names:
        assert_close(got["analytic"][name], got["numeric"][name], MODEL_GRADCHECK,
                     f"d DPO loss / d {name}: backward vs central differences of your dpo_batch_loss", mistakes=(
                         Mistake("no gradient reached the policy: a .data shortcut cut the graph",
                                 lambda g, w: not np.any(np.asarray(g))),))
    check(probe_dpo_gradcheck, fields=TINY, seeds=[1515, 1516], beta=0.5, **batch, names=names, tol=MODEL_GRADCHECK,
          what="the DPO gradient vs the reference's")
