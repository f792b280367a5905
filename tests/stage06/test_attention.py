"""Stage 06 (attention), visible suite: the fused scaled dot-product attention.

Every test compares your module with the reference AND checks something that does not trust the reference: a case
worked out by hand, an invariant (causality, the cached-keys convention), attention composed from the primitive ops
of your own tensor engine, or central differences of YOUR forward pass (grader.harness.central_difference, float64,
eps=1e-6, judged at GRADCHECK: rtol 1e-5, atol 1e-7). Conventions: exercises/attention.py and docs/06-attention.md.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.harness import F32, F64, Mistake, Tol, assert_close, assert_true, raised, seeded, sibling
from tests.stage06.helpers import (attention_inputs, attention_mistakes, judge_attention, numpy_attention,
                                   probe_attention, probe_composed_attention, probe_outputs)

# ---------------------------------------------------------------- a case worked out by hand

LN3 = math.log(3.0)
# B = H = 1, T = S = 2, Dh = 1 (so the scale 1/sqrt(Dh) is 1). Keys k = (0, 1), values v = (2, 6).
# Query 0 = ln 3: scores (0, ln 3) -> P = (1/4, 3/4) -> out = 2/4 + 18/4 = 5.
# Query 1 = 0:    scores (0, 0)    -> P = (1/2, 1/2) -> out = 4.
# With L = out_0 + out_1 (dO = 1):
#   dV = Pᵀ dO = column sums of P = (1/4 + 1/2, 3/4 + 1/2) = (3/4, 5/4)
#   dP = dO vᵀ = (2, 6) in each row;  rowsum(dP ⊙ P) = 5 (row 0), 4 (row 1)
#   dS = P ⊙ (dP − rowsum): row 0 (1/4 · -3, 3/4 · 1) = (-3/4, 3/4); row 1 (1/2 · -2, 1/2 · 2) = (-1, 1)
#   dQ = dS k = (3/4, 1);   dK = dSᵀ q = (-3/4 · ln 3 + -1 · 0, 3/4 · ln 3) = (-3/4 ln 3, 3/4 ln 3)
# Causal: query 0 sees key 0 only -> out_0 = 2, P row 0 = (1, 0), dS row 0 = 0; row 1 is unchanged:
#   dV = (1 + 1/2, 0 + 1/2) = (3/2, 1/2);  dQ = (0, 1);  dK = (0 · ln 3 + -1 · 0, 0 + 1 · 0) = (0, 0)
TINY = {"q": np.array([LN3, 0.0]).reshape(1, 1, 2, 1), "k": np.array([0.0, 1.0]).reshape(1, 1, 2, 1),
        "v": np.array([2.0, 6.0]).reshape(1, 1, 2, 1), "weights": np.ones((1, 1, 2, 1))}


def _tiny(values: list) -> np.ndarray:
    return np.array(values, dtype=np.float64).reshape(1, 1, 2, 1)


@pytest.mark.concept("sdpa-forward")
def test_tiny_case_worked_out_by_hand(check):
    for causal, want in (
        (False, {"out": _tiny([5, 4]), "grad_q": _tiny([0.75, 1]), "grad_k": _tiny([-0.75 * LN3, 0.75 * LN3]),
                 "grad_v": _tiny([0.75, 1.25])}),
        (True, {"out": _tiny([2, 4]), "grad_q": _tiny([0, 1]), "grad_k": _tiny([0, 0]), "grad_v": _tiny([1.5, 0.5])}),
    ):
        inputs = dict(TINY, causal=causal)
        got = check(probe_attention, tol=F64, what=f"T=2, Dh=1, causal={causal}", mistakes=attention_mistakes(inputs),
                    **inputs)
        assert_close(got, want, F64, f"T=2, Dh=1, causal={causal}, worked out by hand (see the test's comments)",
                     attention_mistakes(inputs))


# ---------------------------------------------------------------- gradient checks (float64)


@pytest.mark.concept("sdpa-backward")
def test_gradcheck_plain_attention(target, reference):
    judge_attention(target, reference, "B=2, H=2, T=S=3, Dh=4", **attention_inputs(601, 2, 2, 2, 3, 3, 4))


@pytest.mark.concept("causal")
def test_gradcheck_causal_attention(target, reference):
    judge_attention(target, reference, "causal, B=1, H=2, T=S=4, Dh=3",
                    causal=True, **attention_inputs(602, 1, 2, 2, 4, 4, 3))


@pytest.mark.concept("bias")
def test_gradcheck_attention_with_a_bias(target, reference):
    inputs = attention_inputs(603, 2, 2, 2, 3, 4, 2, bias_shape=(2, 3, 4))  # bias (H, T, S) broadcast over B
    judge_attention(target, reference, "bias (H, T, S), B=2, H=2, T=3, S=4, Dh=2", **inputs)


@pytest.mark.concept("gqa")
def test_gradcheck_grouped_query_attention(target, reference):
    inputs = attention_inputs(604, 1, 4, 2, 3, 3, 2)  # H = 4 query heads share Hkv = 2 key/value heads
    judge_attention(target, reference, "grouped-query H=4, Hkv=2, causal", causal=True, **inputs)


@pytest.mark.concept("gqa")
def test_gradcheck_multi_query_attention(target, reference):
    inputs = attention_inputs(605, 2, 4, 1, 2, 3, 2, bias_shape=(1, 4, 2, 3))  # Hkv = 1: every head shares k, v
    judge_attention(target, reference, "multi-query H=4, Hkv=1, causal with S=3 > T=2, bias", causal=True, **inputs)


# ---------------------------------------------------------------- against attention composed of primitive ops


def judge_composed(check, target, what: str, **inputs) -> None:
    mistakes = attention_mistakes(inputs)
    got = check(probe_attention, tol=F64, what=what, mistakes=mistakes, **inputs)
    composed = target.run(probe_composed_attention, **inputs)
    # float64; the fused op sums in another order than the composed graph, nothing else may differ
    assert_close(got, composed, Tol(1e-9, 1e-11, "float64, summation order only"),
                 f"{what}: fused op vs the same attention composed of your tensor engine's primitive ops", mistakes)


@pytest.mark.concept("sdpa-forward")
def test_fused_equals_composed_primitives(check, target):
    judge_composed(check, target, "B=2, H=3, T=S=5, Dh=4", **attention_inputs(606, 2, 3, 3, 5, 5, 4))


@pytest.mark.concept("gqa")
def test_fused_equals_composed_primitives_with_mask_bias_and_groups(check, target):
    inputs = attention_inputs(607, 2, 6, 2, 4, 6, 3, bias_shape=(6, 4, 6))
    judge_composed(check, target, "causal, S=6 > T=4, bias, H=6, Hkv=2", causal=True, **inputs)


# ---------------------------------------------------------------- causality and the cached-keys convention


@pytest.mark.concept("causal")
def test_causal_output_ignores_the_future(check, target):
    inputs = attention_inputs(608, 2, 2, 2, 5, 5, 3)
    base = check(probe_outputs, tol=F64, what="causal attention, T=S=5", q=inputs["q"], k=inputs["k"], v=inputs["v"])
    rng = seeded(609)
    for t in range(4):
        changed = {name: inputs[name].copy() for name in ("q", "k", "v")}
        for array in changed.values():
            array[:, :, t + 1:] = rng.standard_normal(array[:, :, t + 1:].shape) * 3  # every position after t
        after = target.run(probe_outputs, **changed)
        assert_close(after[:, :, :t + 1], base[:, :, :t + 1], Tol(0.0, 0.0, "the future must not move the past at all"),
                     f"causal outputs at positions 0..{t} after changing q, k, v at positions {t + 1}..4",
                     (Mistake("the mask is missing or off by one: a query sees a key after it",
                              lambda got, want: True),))
        changed_free = target.run(probe_outputs, causal=False, **changed)
        assert_true(not np.allclose(changed_free[:, :, 0], base[:, :, 0]),
                    "without causal=True the first position should see the changed future (it did not)")


@pytest.mark.concept("causal-offset")
def test_cached_keys_queries_are_the_last_positions(check, target):
    # T=2 new queries after 3 cached keys: S=5 keys, query i at absolute position 3 + i.
    inputs = attention_inputs(610, 1, 2, 2, 2, 5, 4)
    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    got = check(probe_outputs, tol=F64, what="causal, T=2, S=5",
                mistakes=attention_mistakes(dict(inputs, causal=True), keys=("out",)), q=q, k=k, v=v)
    # The last query is the newest position: it sees every key, exactly as attention without a mask.
    full = target.run(probe_outputs, q=q[:, :, -1:], k=k, v=v, causal=False)
    assert_close(got[:, :, -1:], full, F64, "last query row (position S-1) vs unmasked attention over all S keys")
    # The first query sits at position 3: it sees keys 0..3, and attending over those four alone gives the same.
    first = target.run(probe_outputs, q=q[:, :, :1], k=k[:, :, :4], v=v[:, :, :4], causal=False)
    assert_close(got[:, :, :1], first, F64, "first query row (position 3) vs unmasked attention over keys 0..3")


# ---------------------------------------------------------------- precision and errors


@pytest.mark.concept("dtype")
def test_float32_inputs_stay_float32(check, target):
    inputs = attention_inputs(611, 2, 4, 2, 4, 4, 8)
    inputs = dict(inputs, causal=True, dtype="float32")
    got = check(probe_attention, tol=F32, what="float32 attention", **inputs)
    for name, value in got.items():
        assert_true(value.dtype == np.float32, f"float32 inputs must give float32 {name}, got {value.dtype} "
                    "(a NumPy float64 scalar such as np.sqrt(Dh) promotes float32 arrays; use math.sqrt or cast)")
    precise = target.run(probe_attention, **dict(inputs, dtype="float64"))
    assert_close(got, precise, Tol(1e-3, 1e-5, "float32 vs float64 on O(1) values"), "float32 vs float64 attention")


def probe_bad_shapes(m, q, k, v) -> dict:
    tensor = sibling(m, "tensor")
    q, k, v = (tensor.Tensor(x, dtype=np.float64) for x in (q, k, v))
    attend = m.scaled_dot_product_attention
    return {"heads": raised(attend, q, k[:, :2], v[:, :2]),  # 3 query heads, 2 key/value heads
            "short": raised(attend, q, k[:, :, :2], v[:, :, :2], causal=True),  # S = 2 keys, T = 3 queries
            "fits": attend(q, k, v, causal=True).data}  # the same tensors, whole: no error


@pytest.mark.concept("shapes")
def test_shapes_that_do_not_fit_raise_value_error(check):
    inputs = attention_inputs(612, 1, 3, 3, 3, 3, 2)
    got = check(probe_bad_shapes, q=inputs["q"], k=inputs["k"], v=inputs["v"], tol=F64, what="attention shapes")
    for case, why in (("heads", "3 query heads with 2 key/value heads (3 % 2 != 0)"),
                      ("short", "causal with S=2 keys for T=3 queries (query 0 would see no key)")):
        assert_close(got[case], {"raised": "ValueError"}, F64, why)
    assert_close(got["fits"], numpy_attention(**{k: inputs[k] for k in ("q", "k", "v", "weights")}, causal=True)["out"],
                 F64, "the same q, k, v whole (3 heads each, T = S = 3): causal attention, no error")
