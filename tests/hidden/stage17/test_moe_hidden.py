"""Stage 17 (mixture of experts), hidden suite: other sizes, seeds, k and expert kinds than the visible one. Like the
visible suites, every test compares with the reference AND checks a hand count, an invariant or central differences
of your own forward."""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.harness import EXACT, F32, F64, GRADCHECK, assert_close, assert_true, seeded
from tests.stage17.helpers import (TINY, hand_expert, probe_balance, probe_capacity, probe_claim, probe_counts,
                                   probe_dropped_in_block, probe_hand_layer, probe_index_add, probe_layer,
                                   probe_layer_gradcheck, probe_moe_loss, probe_top_k, probe_training)


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


@pytest.mark.concept("capacity")
def test_capacity_more_cases(check):
    cases = [(1, 4, 1, 1.25, ()),    # 0.3125 -> 1: a lone token always fits
             (16, 8, 2, 1.0, ()),    # 4 exactly
             (12, 5, 5, 1.0, ()),    # k = E: every expert sees every token, 12
             (9, 4, 1, 2.0, ()),     # 4.5 -> 5
             (8, 4, 5, 1.0, ("top_k",)), (8, 4, 1, -1.0, ("capacity_factor",))]
    got = check(probe_capacity, cases=cases, tol=EXACT, what="expert_capacity, more cases")
    assert_close([record.get("returned") for record in got[:4]], [1, 4, 12, 5], EXACT, "capacities by hand")


@pytest.mark.concept("top-k")
def test_top_k_with_k_equal_to_experts_is_a_full_ranking(check):
    probabilities = np.array([[0.1, 0.3, 0.2, 0.4], [0.25, 0.25, 0.4, 0.1]])
    got = check(probe_top_k, probabilities=probabilities, k=4, tol=EXACT, what="top_k_experts(p, E)")
    assert_close(got, [[3, 1, 2, 0], [2, 0, 1, 3]], EXACT, "a full ranking; the tie 0.25 = 0.25 puts expert 0 first")


@pytest.mark.concept("claim-order")
def test_claims_with_three_choices(check):
    # capacity 2, E = 3, k = 3 (every token names every expert). Rank 0: t0 -> 2, t1 -> 2, t2 -> 2 (full: dropped).
    # Rank 1: t0 -> 0, t1 -> 0, t2 -> 1. Rank 2: t0 -> 1, t1 -> 1 (expert 1 full after t2 and t0), t2 -> 0 (full).
    choices = [[2, 0, 1], [2, 0, 1], [2, 1, 0]]
    got = check(probe_claim, choices=choices, experts=3, capacity=2, tol=EXACT, what="claim_slots, k = 3")
    assert_close(got, [[True, True, True], [True, True, False], [False, True, False]], EXACT,
                 "kept by hand (see the comment)")


@pytest.mark.concept("index-add")
def test_index_add_with_every_row_once_is_a_permutation(check):
    rng = seeded(1730)
    values, weights = rng.standard_normal((4, 2)), rng.standard_normal((4, 2))
    rows = [2, 0, 3, 1]
    got = check(probe_index_add, values=values, rows=rows, size=4, weights=weights, tol=F64, what="index_add")
    assert_close(np.asarray(got["out"])[rows], values, F64, "out[rows] = values when each row appears once")


@pytest.mark.concept("balance")
def test_balance_loss_minimum_and_skew(check):
    # E = 3, all tokens on expert 2 with p_2 = 1: f = [0, 0, 1], P_2 = 1, loss = 3 (the worst case, E).
    probabilities = np.array([[0.0, 0.0, 1.0]] * 4)
    got = check(probe_balance, probabilities=probabilities, choices=[[2]] * 4, experts=3, tol=F64,
                what="balance loss, collapsed")
    assert_close(got["loss"], 3.0, F64, "a router that sends everything to one sure expert scores E")
    assert_close(got["grad"], np.tile([0.0, 0.0, 3.0 / 4], (4, 1)), F64, "gradient E · f_e / N")


@pytest.mark.concept("layer")
def test_two_experts_both_chosen_add_up(check):
    # k = 2 with E = 2: y = p_0 e_0(x) + p_1 e_1(x); capacity ceil(1 · 2 · 2 / 2) = 2 keeps all.
    x = [0.5, -1.5]
    got = check(probe_hand_layer, x=x, capacity_factor=1.0, top_k=2, tol=F64, what="hand layer, k = 2")
    expected = [(1 - sigmoid(v)) * hand_expert(0, v) + sigmoid(v) * hand_expert(1, v) for v in x]
    assert_close(got["out"], expected, F64, "both experts, weighted by their probabilities")
    assert_close(got["choices"], [[1, 0], [0, 1]], EXACT, "choices in decreasing probability")
    assert_close(got["aux"], 1.0, F64, "k = E: f = 1/E for every expert, so aux is exactly 1 up to rounding")


@pytest.mark.concept("gradients")
def test_layer_gradcheck_gelu_experts_top_1(target, check):
    layer = {"width": 3, "hidden": 5, "experts": 4, "top_k": 1, "capacity_factor": 1.0, "feed_forward": "gelu",
             "seed": 1731}
    rng = seeded(1732)
    inputs = {"x": rng.standard_normal((7, 3)), "weights": rng.standard_normal((7, 3)), "alpha": 1.3}
    got = target.run(probe_layer_gradcheck, layer=layer, **inputs)
    assert_true(got["margin"] > 1e-4, f"routing near a tie (margin {got['margin']:.3g})")
    for name, numeric in got["numeric"].items():
        assert_close(got["analytic"][name], numeric, GRADCHECK, f"backward vs central differences: {name}")
    check(probe_layer, layer=layer, tol=F64, what="gelu layer forward and gradients", **inputs)


@pytest.mark.concept("gradients")
def test_router_learns_from_the_balance_loss_alone(check):
    # weights 0: the only loss is alpha · aux, whose gradient reaches the router through P_e, not the experts.
    layer = {"width": 4, "hidden": 8, "experts": 3, "top_k": 1, "capacity_factor": 2.0, "feed_forward": "swiglu",
             "seed": 1733}
    x = seeded(1734).standard_normal((6, 4))
    got = check(probe_layer, x=x, weights=np.zeros((6, 4)), alpha=1.0, layer=layer, tol=F64, what="aux alone")
    assert_true(np.abs(np.asarray(got["grads"]["router.weight"])).max() > 1e-6,
                "the balance loss must send a gradient to the router")
    for name, grad in got["grads"].items():
        if name != "router.weight":
            assert_close(grad, np.zeros_like(np.asarray(grad)), EXACT, f"{name}: the aux loss does not touch experts")


@pytest.mark.concept("dropped")
def test_dropped_tokens_in_block_other_seed(check):
    x = seeded(1735).standard_normal((1, 9, 8))
    got = check(probe_dropped_in_block, x=x, seed=1736, capacity_factor=0.3, tol=F64, what="Block with an MoE")
    kept = np.asarray(got["kept"]).reshape(1, 9)  # capacity ceil(0.3 · 9 / 4) = 1
    assert_true(kept.sum() <= 4, f"capacity 1 for each of 4 experts keeps at most 4 tokens; kept {kept.sum()}")
    assert_close(np.asarray(got["out"])[~kept], np.asarray(got["residual"])[~kept], EXACT,
                 "dropped tokens: block output = residual path")


MORE = dict(TINY, experts=3, top_k=2, capacity_factor=1.0, aux_loss_weight=0.1, expert_feed_forward="gelu",
            position="learned")


@pytest.mark.concept("model")
def test_gelu_experts_top_2_count_and_loss(check):
    # gelu experts of hidden 64: 2 · 16 · 64 + 64 + 16 = 2128 each; 2 more per layer and a router of 16 · 3 = 48:
    # 2 · (2 · 2128 + 48) = 8608 over 2 layers.
    got = check(probe_counts, fields=MORE, tol=EXACT, what="MoEGPT parameters, gelu, k = 2")
    assert_close(got["moe"] - got["dense"], 8608, EXACT, "MoE minus dense parameters, by hand")
    rng = seeded(1737)
    batch = {"ids": rng.integers(0, 13, (2, 12)), "targets": rng.integers(0, 13, (2, 12))}
    loss = check(probe_moe_loss, fields=MORE, seed=1738, tol=F32, what="MoEGPT loss, gelu, k = 2", **batch)
    assert_close(loss["loss"], loss["cross_entropy"] + 0.1 * sum(loss["blocks"]), F32, "loss = CE + 0.1 · aux")


@pytest.mark.concept("model")
def test_top_2_moe_gpt_trains(target, check):
    got = target.run(probe_training, fields=MORE, seed=1739, steps=30, lr=1e-2)
    losses = got["losses"]
    assert_true(np.mean(losses[-5:]) < 0.6 * losses[0], f"the loss must fall by 40% in 30 steps: first "
                f"{losses[0]:.4f}, last five {np.round(losses[-5:], 4).tolist()}")
    assert_true(all(a > 0.5 for a in got["aux"]), f"the summed aux loss of 2 layers stays near 2: {got['aux'][:5]}")
    check(probe_training, fields=MORE, seed=1739, steps=1, lr=1e-2, tol=F32, what="the first training loss")
