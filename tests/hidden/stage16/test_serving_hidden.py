"""Stage 16 (serving small and fast), hidden suite: other shapes, groups, seeds, configs and edge cases than the
visible one. Like the visible suites, every test compares with the reference AND checks a hand value, a bound or an
invariant of your own output."""
from __future__ import annotations

import numpy as np
import pytest

from grader.harness import EXACT, F32, assert_close, assert_true, raised, seeded
from tests.stage16.helpers import (DRAFT, PADDED, PROBABILITY, TINY, bound_allowance, probe_accept,
                                   probe_batched, probe_first_token_distribution, probe_int4, probe_int8, probe_pack,
                                   probe_padded_forward, probe_quantized_model, probe_speculative, probe_truncate,
                                   weights_with_outliers)

MORE = {"multi-query, learned, layer norm": dict(TINY, kv_heads=1, position="learned", norm="layer"),
        "3 layers, width 24, 3 heads": dict(TINY, layers=3, width=24, heads=3)}


def probe_unpack_refusal(m, q: list) -> dict:
    return raised(m.pack_int4, np.array(q), mentions=("pack_int4",))


def within_bound(w, deq, scale) -> bool:
    return bool(np.all(np.abs(w - deq) <= scale / 2 + bound_allowance(w, scale)))


@pytest.mark.concept("error-bound")
def test_int8_bound_on_float32_weights_and_a_single_row(check):
    for seed, shape in ((1690, (1, 6)), (1691, (128, 3))):
        w = seeded(seed).standard_normal(shape).astype(np.float32).astype(np.float64) * 1e-3  # small magnitudes
        got = check(probe_int8, w=w, tol=F32, what=f"int8 of {shape}")
        assert_true(within_bound(w, got["deq"], np.broadcast_to(got["scale"].astype(np.float64), shape)),
                    f"int8 {shape}: |w - deq| > scale / 2 somewhere")
    got = check(probe_int8, w=np.zeros((4, 3)), tol=EXACT, what="an all-zero weight")
    assert_close([got["q"], got["scale"]], [np.zeros((4, 3)), np.zeros(3)], EXACT, "all-zero weight: q 0, scale 0")


@pytest.mark.concept("int8")
def test_int8_negative_maximum_by_hand(check):
    # max |w| = 254 from -254: scale 2, -254 -> -127, 3 -> 1.5 -> 2 (half to even), 1 -> 0.5 -> 0.
    got = check(probe_int8, w=np.array([[-254.0], [3.0], [1.0]]), tol=EXACT, what="int8, negative maximum")
    assert_close([got["q"][:, 0], got["scale"]], [np.array([-127, 2, 0]), np.array([2.0])], EXACT, "q and scale")


@pytest.mark.concept("int4")
def test_int4_other_groups_and_an_all_zero_weight(check):
    for seed, group, rows in ((1692, 64, 100), (1693, 2, 9), (1694, 16, 16)):
        w = weights_with_outliers(seed, rows, 5)
        got = check(probe_int4, w=w, group=group, tol=F32, what=f"int4, group {group}, {rows} rows")
        scale = np.repeat(got["scale"].astype(np.float64), group, axis=0)[:rows]
        assert_true(within_bound(w, got["deq"], scale), f"int4 group {group}: |w - deq| > scale / 2 somewhere")
        # the scale is >= max / 7 but within one float16 step (2^-10 relative) of it: max / s rounds to 7
        largest = np.abs(got["q"]).reshape(-1, group, 5).max(axis=1)  # (groups, 5)
        assert_close(largest[got["scale"] > 0], np.full(int((got["scale"] > 0).sum()), 7), EXACT,
                     f"group {group}: each non-zero group's largest |w| maps to +-7")
    got = check(probe_int4, w=np.zeros((6, 2)), group=4, tol=EXACT, what="int4 of zeros")
    assert_close(got["packed"], np.full((4, 2), 136), EXACT, "zeros pack as 8 | 8 << 4 = 136 (two rows padded)")


@pytest.mark.concept("int4-pack")
def test_pack_random_round_trip_and_minus_nine(check):
    q = seeded(1695).integers(-8, 8, (10, 7))
    got = check(probe_pack, q=q, tol=EXACT, what="pack_int4 of random values")
    assert_close(got["unpacked"], q, EXACT, "unpack(pack(q)) == q")
    check(probe_unpack_refusal, q=[[-9], [0]], tol=EXACT, what="-9 is not an int4 value")
    got = check(probe_unpack_refusal, q=[[-8], [0]], tol=EXACT, what="-8 is")
    assert_close(got["returned"], np.array([[128]]), EXACT, "pack_int4([[-8], [0]]) = 0 | 8 << 4")


@pytest.mark.concept("quantized-linear")
def test_quantize_more_models(check):
    ids = seeded(1696).integers(0, TINY["vocab_size"], (1, 9))
    for name, fields in MORE.items():
        for bits in (8, 4):
            got = check(probe_quantized_model, fields=fields, seed=1696, bits=bits, group=8, ids=ids, tol=F32,
                        what=f"{name}, {bits} bits")
            assert_close(got["linears_left"], [], EXACT, f"{name}: Linear modules left")
            assert_true(got["bytes_after"] < got["bytes_before"] / 2, f"{name}, {bits} bits: bytes must shrink")


@pytest.mark.concept("truncate")
def test_truncate_to_zero_and_refeed(check):
    rng = seeded(1697)
    ids, again = rng.integers(0, 11, (1, 6)), rng.integers(0, 11, (1, 5))
    got = check(probe_truncate, fields=MORE["multi-query, learned, layer norm"], seed=1697, ids=ids, keep=0,
                again=again, tol=PADDED, what="truncate(0) then 5 tokens")
    assert_close([got["length_after_truncate"], got["length"]], [0, 5], EXACT, "lengths")


@pytest.mark.concept("residual")
def test_first_token_law_on_peaked_and_disjoint_pairs(check):
    cases = [(np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.5, 0.5])),  # disjoint: every draft rejected
             (np.array([0.0, 1.0]), np.array([0.0, 1.0])),  # identical one-hot: greedy agreement
             (seeded(1698).dirichlet(np.full(9, 0.3)), seeded(1699).dirichlet(np.full(9, 0.3)))]
    for p, q in cases:
        got = check(probe_first_token_distribution, p=p, q=q, tol=PROBABILITY, what="first token's law")
        assert_close(got["law"], p, PROBABILITY, "P(first token = x) vs p")


@pytest.mark.concept("accept")
def test_all_accepted_draws_the_bonus_from_the_last_row(check):
    target = np.array([[0.0, 1.0], [1.0, 0.0], [0.25, 0.75]])
    draft = np.array([[0.0, 1.0], [1.0, 0.0]])
    for u, token in ((0.2, 0), (0.3, 1)):  # bonus from (0.25, 0.75): u < 0.25 -> 0
        got = check(probe_accept, target_probs=target, draft_probs=draft, drafts=[1, 0], draws=[0.9, 0.9, u],
                    tol=EXACT, what=f"two accepted drafts, bonus u = {u}")
        assert_close(got, {"accepted": 2, "token": token, "draws_used": 3}, EXACT, "accepted, bonus token, draws")


@pytest.mark.concept("speculative")
def test_greedy_speculative_on_more_configs(check):
    for name, fields in MORE.items():
        got = check(probe_speculative, fields=fields, draft_fields=dict(fields, layers=1), seeds=[1700, 1701],
                    prompt=np.array([0]), tokens=20, k=6, temperature=0.0, rng_seed=3, tol=EXACT, what=name)
        assert_close(got["ids"], got["target_alone_greedy"], EXACT, f"{name}: greedy speculative vs target alone")


@pytest.mark.concept("speculative")
def test_sampled_speculative_matches_the_reference_and_counts(check):
    got = check(probe_speculative, fields=TINY, draft_fields=DRAFT, seeds=[1702, 1703], prompt=np.array([5, 6]),
                tokens=16, k=3, temperature=0.9, rng_seed=4, tol=EXACT, what="sampled speculative tokens at a seed")
    stats = got["stats"]
    assert_close(stats["accepted"] + stats["rounds"], 16, EXACT, "accepted + rounds = new tokens")
    assert_true(stats["accepted"] <= stats["drafted"], "accepted <= drafted")


@pytest.mark.concept("padded-forward")
def test_padded_forward_more_configs_and_no_padding(check):
    ids = seeded(1704).integers(0, 11, (3, 5))
    for name, fields in MORE.items():
        for pads in ([0, 0, 0], [4, 1, 0]):
            got = check(probe_padded_forward, fields=fields, seed=1704, ids=ids, pads=pads, tol=PADDED,
                        what=f"{name}, pads {pads}")
            for row, (together, alone) in enumerate(zip(got["rows"], got["alone"])):
                assert_close(together, alone, PADDED, f"{name}, pads {pads}: row {row} vs alone")


@pytest.mark.concept("batched")
def test_batched_single_tokens_and_equal_prompts(check):
    for name, fields in MORE.items():
        got = check(probe_batched, fields=fields, seed=1705, prompts=[[3], [3], [1, 2, 3, 4, 5, 6, 7]], tokens=8,
                    tol=EXACT, what=f"batched, {name}")
        assert_close(got["together"], got["alone"], EXACT, f"{name}: batched vs one at a time")
        assert_close(got["together"][0], got["together"][1], EXACT, "equal prompts decode equally")
