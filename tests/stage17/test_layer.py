"""Stage 17 (mixture of experts), visible suite: the MoE layer. A two-expert layer with weights set by hand (width 1,
so every output is a formula), capacity overflow (a dropped token's block output is its residual path), all-tied
routing (zero router: the lowest expert id wins), and a float64 gradcheck of x, the router and every expert."""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.harness import EXACT, F64, GRADCHECK, Mistake, assert_close, assert_true, raised, seeded
from tests.stage17.helpers import (hand_expert, probe_dropped_in_block, probe_hand_layer, probe_initialisation,
                                   probe_layer, probe_layer_gradcheck)


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


@pytest.mark.concept("gates")
def test_two_experts_by_hand(check):
    # router [[0, 1]]: logits (0, x), so p_1 = σ(x). x = 1 and 2 pick expert 1, x = -1 picks expert 0 (p_0 = σ(1)).
    # The gate is p(chosen) itself, not 1: y = σ(1) · e_1(1), σ(1) · e_0(-1), σ(2) · e_1(2).
    x = [1.0, -1.0, 2.0]
    got = check(probe_hand_layer, x=x, capacity_factor=2.0, top_k=1, tol=F64, what="the hand-built layer")
    expected = [sigmoid(1) * hand_expert(1, 1.0), sigmoid(1) * hand_expert(0, -1.0), sigmoid(2) * hand_expert(1, 2.0)]
    assert_close(got["out"], expected, F64, "MoE outputs by hand (see the comment)", mistakes=(
        Mistake("gates renormalised over the top k (a k = 1 gate is then 1): use the softmax probability itself",
                lambda g, w: abs(g[0] - hand_expert(1, 1.0)) < 1e-9),
        Mistake("the expert's output not scaled by its gate", lambda g, w: abs(g[0] - hand_expert(1, 1.0)) < 1e-9)))
    assert_close(got["choices"], [[1], [0], [1]], EXACT, "choices of the hand layer")
    # f = [1/3, 2/3]; P_0 = mean(1 - σ(x)), P_1 = mean(σ(x)); aux = 2 (f_0 P_0 + f_1 P_1)
    p1 = np.array([sigmoid(v) for v in x])
    assert_close(got["aux"], 2 * (np.mean(1 - p1) / 3 + 2 * np.mean(p1) / 3), F64, "aux_loss of the hand layer")


@pytest.mark.concept("dropped")
def test_overflow_drops_the_later_token_by_hand(check):
    # factor 0.5: capacity ceil(0.5 · 3 · 1 / 2) = 1. Tokens 0 and 2 both choose expert 1: token 0 keeps the slot,
    # token 2 is dropped and its output is exactly 0; token 1 has expert 0 to itself.
    got = check(probe_hand_layer, x=[1.0, -1.0, 2.0], capacity_factor=0.5, top_k=1, tol=F64, what="hand layer, full")
    assert_close(got["kept"], [[True], [True], [False]], EXACT, "kept with capacity 1")
    assert_close(got["out"], [sigmoid(1) * hand_expert(1, 1.0), sigmoid(1) * hand_expert(0, -1.0), 0.0], F64,
                 "outputs with token 2 dropped", mistakes=(
                     Mistake("the dropped token got its expert's output anyway: skip the choices that are not kept",
                             lambda g, w: g[2] != 0.0),))


@pytest.mark.concept("dropped")
def test_dropped_tokens_leave_the_block_on_its_residual_path(target, check):
    x = seeded(1712).standard_normal((2, 5, 8))
    got = check(probe_dropped_in_block, x=x, seed=1713, capacity_factor=0.5, tol=F64, what="a Block with an MoE")
    kept = np.asarray(got["kept"]).reshape(2, 5)  # k = 1; capacity ceil(0.5 · 10 / 4) = 2 per expert
    assert_true(0 < kept.sum() < kept.size, f"the test needs some tokens kept and some dropped; kept = {kept}")
    out, residual = np.asarray(got["out"]), np.asarray(got["residual"])
    assert_close(out[~kept], residual[~kept], EXACT, "dropped tokens: block output = residual path (MoE adds 0)")
    assert_true(np.all(np.abs(out[kept] - residual[kept]).max(axis=-1) > 0),
                "kept tokens must get a nonzero expert contribution on top of the residual")


@pytest.mark.concept("tie-break")
def test_zero_router_sends_every_token_to_expert_zero(check):
    # A zero router gives every token p = 1/4 for every expert: all ties, so k = 1 picks expert 0 for all 8 tokens.
    # capacity ceil(1.25 · 8 / 4) = 3: tokens 0, 1, 2 are kept (token order), tokens 3 .. 7 are dropped (output 0).
    layer = {"width": 6, "hidden": 8, "experts": 4, "top_k": 1, "capacity_factor": 1.25, "feed_forward": "swiglu",
             "seed": 1714}
    x, weights = seeded(1715).standard_normal((8, 6)), seeded(1716).standard_normal((8, 6))
    got = check(probe_layer, x=x, weights=weights, alpha=0.0, layer=layer, zero_router=True, tol=F64,
                what="zero router")
    assert_close(got["choices"], [[0]] * 8, EXACT, "ties: the lowest expert id wins", mistakes=(
        Mistake("the highest id won the tie: sort -p stably", lambda g, w: g[0] == [3]),))
    assert_close(np.asarray(got["kept"]).reshape(-1).tolist(), [True] * 3 + [False] * 5, EXACT,
                 "expert 0 keeps its first three tokens")
    assert_close(np.asarray(got["out"])[3:], np.zeros((5, 6)), EXACT, "dropped tokens' MoE output is 0")
    assert_close(got["aux"], 1.0, F64, "aux at uniform probabilities is 1 (even with all tokens on one expert)")


GRADCHECK_LAYER = {"width": 4, "hidden": 8, "experts": 3, "top_k": 2, "capacity_factor": 0.75,
                   "feed_forward": "swiglu", "seed": 1717}


@pytest.mark.concept("gradients")
def test_layer_gradcheck_in_float64(target, check):
    rng = seeded(1718)
    inputs = {"x": rng.standard_normal((2, 3, 4)), "weights": rng.standard_normal((2, 3, 4)), "alpha": 0.7}
    got = target.run(probe_layer_gradcheck, layer=GRADCHECK_LAYER, **inputs)
    assert_true(got["margin"] > 1e-4, f"the routing must not be near a tie for central differences with eps 1e-6; "
                                      f"margin {got['margin']:.3g}")
    for name, numeric in got["numeric"].items():
        assert_close(got["analytic"][name], numeric, GRADCHECK, f"backward vs central differences of your forward: "
                     f"{name}", mistakes=(
                         Mistake("no gradient reached this parameter: a .data shortcut or a gate built outside the "
                                 "graph cuts it", lambda g, w: not np.any(np.asarray(g))),))
    reference = check(probe_layer, layer=GRADCHECK_LAYER, tol=F64, what="layer forward and gradients", **inputs)
    kept = np.asarray(reference["kept"])
    assert_true(0 < kept.sum() < kept.size, f"capacity 4 of 12 claims: some choices must be dropped; kept = {kept}")


def probe_layer_options(m) -> dict:
    return {"accepted": raised(m.MoE, 4, 8, 2, 1, 1.0, rng=seeded(0), feed_forward="gelu"),
            "refused": raised(m.MoE, 4, 8, 2, 1, 1.0, rng=seeded(0), feed_forward="relu", mentions=("feed_forward",)),
            "too_many": raised(m.MoE, 4, 8, 2, 3, 1.0, rng=seeded(0), mentions=("top_k",))}


@pytest.mark.concept("options")
def test_layer_refuses_an_unknown_feed_forward(target, check):
    got = target.run(probe_layer_options)
    assert_close(got["accepted"].get("returned"), "<MoE object>", EXACT, "MoE(..., feed_forward='gelu') must build")
    assert_true(got["refused"].get("raised") == "ValueError" and "relu" in got["refused"]["message"],
                f"MoE(..., feed_forward='relu') must raise ValueError naming 'relu'; got {got['refused']}")
    check(probe_layer_options, tol=EXACT, what="MoE's feed_forward option")


@pytest.mark.concept("init")
def test_initialisation_order_and_scale(check):
    # Draw order (router, then experts 0..3, then the redraw in named_parameters order) is checked by equality with the
    # reference on the same seed; float32 because the constructor's draws are what is compared, exactly.
    got = check(probe_initialisation, seed=1719, layers=3, tol=EXACT, what="MoE's initial parameters")
    names = got["names"]
    assert_close(names[:4], ["router.weight", "experts.0.gate.weight", "experts.0.up.weight", "experts.0.down.weight"],
                 EXACT, "the first parameter names: router, then expert 0's gate, up, down")
    assert_close(got["dtypes"], ["float32"], EXACT, "the parameters' dtype")
    values = got["values"]
    down = np.concatenate([np.ravel(values[f"experts.{e}.down.weight"]) for e in range(4)])  # 4 · 768 draws
    other = np.concatenate([np.ravel(values[n]) for n in names if not n.endswith("down.weight")])
    # Sample standard deviations of thousands of normal draws lie within ~3% of the truth: 10% is a safe margin.
    for what, sample, std in (("the experts' down matrices", down, 0.02 / np.sqrt(6)), ("the other matrices", other,
                                                                                      0.02)):
        assert_true(abs(sample.std() / std - 1) < 0.1, f"{what}: std {sample.std():.5f}, expected {std:.5f} "
                    "(0.02, and 0.02 / sqrt(2 · layers) for the projections into the residual stream)")
