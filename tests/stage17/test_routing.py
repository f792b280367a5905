"""Stage 17 (mixture of experts), visible suite: the routing pieces — capacity, top-k with its tie-break, the order in
which choices claim an expert's slots, and the index_add scatter with its gradient. Each is checked by hand and
against the reference."""
from __future__ import annotations

import numpy as np
import pytest

from grader.harness import EXACT, F64, Mistake, assert_close, assert_true, seeded
from tests.stage17.helpers import probe_capacity, probe_claim, probe_index_add, probe_top_k


@pytest.mark.concept("capacity")
def test_capacity_by_hand(check):
    cases = [(8, 4, 1, 1.25, ()),   # 1.25 · 8 / 4 = 2.5 -> 3 (Switch's factor)
             (10, 4, 2, 1.0, ()),   # 10 · 2 / 4 = 5 exactly -> 5
             (3, 2, 1, 0.5, ()),    # 0.75 -> 1
             (7, 3, 2, 1.1, ())]    # 1.1 · 14 / 3 = 5.13 -> 6
    got = check(probe_capacity, cases=cases, tol=EXACT, what="expert_capacity(tokens, experts, top_k, factor)")
    assert_close([record["returned"] for record in got], [3, 5, 1, 6], EXACT, "capacities by hand", mistakes=(
        Mistake("rounded down (int() or //) instead of up: ceil keeps every expert at least its even share",
                lambda g, w: g[0] == 2),
        Mistake("top_k left out: each token makes k claims, so the even share is tokens · k / experts",
                lambda g, w: g[1] == 3)))


@pytest.mark.concept("capacity")
def test_capacity_refuses_bad_arguments(check):
    cases = [(8, 4, 1, 1.0, ()),  # accepted: a stub that always raises fails here
             (8, 0, 1, 1.0, ("experts",)), (8, 2, 3, 1.0, ("top_k",)), (8, 2, 0, 1.0, ("top_k",)),
             (8, 4, 1, 0.0, ("capacity_factor",))]
    got = check(probe_capacity, cases=cases, tol=EXACT, what="expert_capacity on bad arguments")
    assert_true(got[0].get("returned") == 2, f"expert_capacity(8, 4, 1, 1.0) must return 2, got {got[0]}")


@pytest.mark.concept("top-k")
def test_top_k_orders_by_probability(check):
    probabilities = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5]])
    got = check(probe_top_k, probabilities=probabilities, k=2, tol=EXACT, what="top_k_experts(p, 2)")
    assert_close(got, [[1, 2], [0, 2], [2, 1]], EXACT, "top-2 by hand: most probable first", mistakes=(
        Mistake("ascending order: argsort(p) gives the least probable first; sort -p", lambda g, w: g[0][0] == 0),))
    assert_true(np.asarray(got).dtype == np.int64, f"top_k_experts must return int64 ids, got {np.asarray(got).dtype}")


@pytest.mark.concept("tie-break")
def test_top_k_ties_go_to_the_lowest_expert_id(check):
    probabilities = np.array([[0.4, 0.2, 0.4], [0.25, 0.25, 0.25], [0.2, 0.4, 0.4]])
    first = check(probe_top_k, probabilities=probabilities[:, :3], k=1, tol=EXACT, what="top_k_experts(ties, 1)")
    second = check(probe_top_k, probabilities=probabilities, k=2, tol=EXACT, what="top_k_experts(ties, 2)")
    assert_close([first, second], [[[0], [0], [1]], [[0, 2], [0, 1], [1, 2]]], EXACT,
                 "ties broken towards the lower expert id", mistakes=(
                     Mistake("np.argsort without kind='stable' (or argsort of p reversed) puts the higher id first",
                             lambda g, w: g[0][0] == [2]),))


@pytest.mark.concept("claim-order")
def test_slots_are_claimed_by_rank_then_token(check):
    # capacity 1. Rank 0 first: token 0 takes expert 0, token 1 finds it full, token 2 takes expert 1. Then rank 1:
    # both experts are full, so every second choice is dropped.
    choices = [[0, 1], [0, 1], [1, 0]]
    got = check(probe_claim, choices=choices, experts=2, capacity=1, tol=EXACT, what="claim_slots, k = 2")
    assert_close(got, [[True, False], [False, False], [True, False]], EXACT, "kept, by hand (see the comment)",
                 mistakes=(Mistake("claims in token-major order (token 0's both choices, then token 1's ...): "
                                   "every first choice must claim before any second choice",
                                   lambda g, w: g[0] == [True, True]),))


@pytest.mark.concept("claim-order")
def test_overflow_keeps_the_first_tokens(check):
    choices = [[1], [1], [0], [1], [1]]  # expert 1 is asked four times, capacity 2
    got = check(probe_claim, choices=choices, experts=3, capacity=2, tol=EXACT, what="claim_slots, overflow")
    assert_close(np.asarray(got).reshape(-1).tolist(), [True, True, True, False, False], EXACT,
                 "tokens 0 and 1 keep expert 1's two slots; tokens 3 and 4 are dropped", mistakes=(
                     Mistake("an off-by-one: the (capacity + 1)-th claim was kept (use position < capacity)",
                             lambda g, w: g[3]),
                     Mistake("the last claims were kept instead of the first", lambda g, w: not g[0])))
    roomy = check(probe_claim, choices=choices, experts=3, capacity=4, tol=EXACT, what="claim_slots, enough room")
    assert_true(bool(np.all(roomy)), f"with capacity 4 every choice fits; got kept = {roomy}")


@pytest.mark.concept("index-add")
def test_index_add_adds_repeated_rows_and_gathers_the_gradient(check):
    rng = seeded(1701)
    values, weights = rng.standard_normal((4, 3)), rng.standard_normal((5, 3))
    rows = [3, 0, 3, 1]
    got = check(probe_index_add, values=values, rows=rows, size=5, weights=weights, tol=F64, what="index_add")
    expected = np.zeros((5, 3))
    expected[0], expected[1], expected[3] = values[1], values[3], values[0] + values[2]  # rows 2 and 4 stay 0
    assert_close(got["out"], expected, F64, "index_add by hand: row 3 gets values 0 and 2", mistakes=(
        Mistake("out[rows] += values keeps only one of the repeated rows: use np.add.at",
                lambda g, w: np.allclose(np.asarray(g)[3], values[2])),))
    assert_close(got["grad"], weights[rows], F64, "d/dvalues of sum(out · weights) = weights[rows]")
    assert_true(got["dtype"] == "float64", f"index_add must keep the values' dtype float64, got {got['dtype']}")
