"""Stage 06 (attention), visible suite: the fused scaled dot-product attention.

Every test compares your module with the reference AND checks something that does not trust the reference: a case
worked out by hand, an invariant (causality, the cached-keys convention), attention composed from the primitive ops
of your own tensor engine, or central differences of YOUR forward pass (grader.harness.central_difference, float64,
eps=1e-6, judged at GRADCHECK: rtol 1e-5, atol 1e-7). Conventions: exercises/attention.py and docs/06-attention.md.
"""
from __future__ import annotations

import importlib
import math
from typing import Callable

import numpy as np
import pytest

from grader.harness import (F32, F64, GRADCHECK, Mistake, Tol, assert_close, assert_true, central_difference, raised,
                            seeded)

# ---------------------------------------------------------------- shared by the suites (the hidden one imports these)


def tensor_module(m):
    """The target's own tensor engine (stage 03): the module its attention imports as `.tensor`."""
    return importlib.import_module(".tensor", m.__package__)


def attention_inputs(seed: int, B: int, H: int, Hkv: int, T: int, S: int, Dh: int, bias_shape=None) -> dict:
    """q, k, v, an upstream gradient `weights` (the loss is sum(out * weights)) and an optional bias; float64."""
    rng = seeded(seed)
    inputs = {"q": rng.standard_normal((B, H, T, Dh)), "k": rng.standard_normal((B, Hkv, S, Dh)),
              "v": rng.standard_normal((B, Hkv, S, Dh)), "weights": rng.standard_normal((B, H, T, Dh)), "bias": None}
    if bias_shape is not None:
        inputs["bias"] = rng.standard_normal(bias_shape)
    return inputs


def probe_attention(m, q, k, v, weights, causal: bool = False, bias=None, dtype: str = "float64") -> dict:
    """The fused op's output and backward()'s gradients of L = sum(out * weights) for q, k and v."""
    tensor = tensor_module(m)
    leaves = [tensor.Tensor(x.astype(dtype), requires_grad=True, dtype=dtype) for x in (q, k, v)]
    out = m.scaled_dot_product_attention(*leaves, causal=causal, bias=bias)
    out.backward(weights.astype(dtype))
    result = {"out": out.data}
    for name, leaf in zip("qkv", leaves):
        result[f"grad_{name}"] = leaf.grad
    return result


def probe_attention_numeric(m, q, k, v, weights, causal: bool = False, bias=None) -> dict:
    """Central differences of L = sum(out * weights) through the target's forward pass, in float64."""
    tensor = tensor_module(m)
    arrays = [q, k, v]  # perturbed in place by central_difference

    def loss() -> float:
        constants = [tensor.Tensor(x, dtype=np.float64) for x in arrays]
        return float((m.scaled_dot_product_attention(*constants, causal=causal, bias=bias).data * weights).sum())

    return {f"grad_{name}": central_difference(loss, x) for name, x in zip("qkv", arrays)}


def probe_composed_attention(m, q, k, v, weights, causal: bool = False, bias=None) -> dict:
    """The same attention composed from primitive tensor ops: matmul, softmax, indexing and adding a constant mask.

    Slow and memory-hungry (k and v are copied per query head, every step is its own node) but obviously right.
    """
    tensor = tensor_module(m)
    Q, K, V = (tensor.Tensor(x, requires_grad=True, dtype=np.float64) for x in (q, k, v))
    (B, H, T, Dh), (Hkv, S) = q.shape, k.shape[1:3]
    kv_head = np.arange(H) // (H // Hkv)  # query head h reads key/value head h // (H / Hkv)
    keys, values = K[:, kv_head], V[:, kv_head]  # (B, H, S, Dh): copies; indexing sums their gradients back
    scores = (Q @ keys.transpose(0, 1, 3, 2)) * (1.0 / math.sqrt(Dh))  # (B, H, T, S)
    if bias is not None:
        scores = scores + bias
    if causal:
        visible = np.tri(T, S, S - T, dtype=bool)  # key j <= S - T + i
        scores = scores + np.where(visible, 0.0, -1e30)  # exp(-1e30 - max) is exactly 0 in float64
    out = tensor.softmax(scores, axis=-1) @ values  # (B, H, T, Dh)
    out.backward(weights)
    return {"out": out.data, "grad_q": Q.grad, "grad_k": K.grad, "grad_v": V.grad}


def numpy_attention(q, k, v, weights, causal=False, bias=None, *, scale=None, grouping="consecutive",
                    top_left_mask=False, softmax_axis=-1, rowsum=True, backward_scale=True, sum_groups=True) -> dict:
    """A plain NumPy attention with its backward (test-side), and the usual mistakes as switches.

    With the defaults it is the right answer; the switches produce the signatures the `Mistake`s below recognise.
    """
    (B, H, T, Dh), (Hkv, S) = q.shape, k.shape[1:3]
    G = H // Hkv
    scale = 1.0 / math.sqrt(Dh) if scale is None else scale
    kv_head = np.arange(H) // G if grouping == "consecutive" else np.arange(H) % Hkv
    keys, values = k[:, kv_head], v[:, kv_head]  # (B, H, S, Dh)
    scores = q @ keys.swapaxes(-1, -2) * scale  # (B, H, T, S)
    if bias is not None:
        scores = scores + bias
    if causal:
        scores = np.where(np.tri(T, S, 0 if top_left_mask else S - T, dtype=bool), scores, -np.inf)
    probs = np.exp(scores - scores.max(axis=softmax_axis, keepdims=True))
    probs = probs / probs.sum(axis=softmax_axis, keepdims=True)
    out = probs @ values
    grad_values = probs.swapaxes(-1, -2) @ weights  # (B, H, S, Dh)
    grad_p = weights @ values.swapaxes(-1, -2)
    grad_s = probs * (grad_p - (grad_p * probs).sum(axis=-1, keepdims=True)) if rowsum else probs * grad_p
    grad_s = grad_s * scale if backward_scale else grad_s
    grad_keys = grad_s.swapaxes(-1, -2) @ q  # (B, H, S, Dh)
    if sum_groups:
        grad_k, grad_v = np.zeros_like(k), np.zeros_like(v)
        np.add.at(grad_k, (slice(None), kv_head), grad_keys)
        np.add.at(grad_v, (slice(None), kv_head), grad_values)
    else:  # only the first query head of each group
        grad_k, grad_v = grad_keys[:, ::G], grad_values[:, ::G]
    return {"out": out, "grad_q": grad_s @ keys, "grad_k": grad_k, "grad_v": grad_v}


def signature(wrong: dict, keys) -> Callable:
    """A `Mistake.matches` that recognises `wrong` on `keys`, in a probe's dict or in one of its arrays."""
    def matches(got, want) -> bool:
        if not isinstance(got, dict):
            got, want = {keys[0]: got}, {keys[0]: want}
            if len(keys) != 1:
                return False
        return all(np.shape(got[key]) == np.shape(wrong[key]) and np.allclose(got[key], wrong[key], rtol=1e-6,
                                                                               atol=1e-9) for key in keys)
    return matches


def attention_mistakes(inputs: dict, keys=("out", "grad_q", "grad_k", "grad_v")) -> tuple:
    """The mistakes whose exact signature these inputs can show, judged on `keys` of probe_attention's result."""
    q, k, bias = inputs["q"], inputs["k"], inputs.get("bias")
    H, T, Dh, Hkv, S = q.shape[1], q.shape[2], q.shape[3], k.shape[1], k.shape[2]
    causal = inputs.get("causal", False)
    forward, backward = ("out",), ("grad_q", "grad_k", "grad_v")
    variants = [
        ("the scores are not scaled: divide q kᵀ by sqrt(Dh)", forward, {"scale": 1.0}),
        ("the scores are divided by Dh; the scale is 1 / sqrt(Dh)", forward, {"scale": 1.0 / Dh}),
        ("softmax runs over the query axis; it must normalise over the keys (the last axis)", forward,
         {"softmax_axis": -2}),
        ("dS = P ⊙ dP misses the softmax term: dS = P ⊙ (dP − rowsum(dP ⊙ P))", backward, {"rowsum": False}),
        ("dQ and dK miss the factor 1/sqrt(Dh) of the forward's scale", backward, {"backward_scale": False}),
        ("query heads are grouped round-robin (h % Hkv); query head h must use key/value head h // (H / Hkv)",
         forward, {"grouping": "round-robin"}),
        ("dK and dV keep the first query head of each group; they must SUM over the group's query heads",
         backward, {"sum_groups": False}),
        ("the causal mask ignores cached keys: query i sits at position S - T + i, so use np.tri(T, S, S - T), "
         "not np.tri(T, S)", forward, {"top_left_mask": True}),
    ]
    arrays = {name: inputs[name] for name in ("q", "k", "v", "weights")}
    with np.errstate(invalid="ignore"):  # a softmax over the wrong axis may meet a column of -inf
        right = numpy_attention(**arrays, causal=causal, bias=bias)
        found = []
        for description, changed, switches in variants:
            found.append((description, changed, numpy_attention(**arrays, causal=causal, bias=bias, **switches)))
        if bias is not None:
            found.append(("the bias is scaled with the scores; add it to q kᵀ / sqrt(Dh), after the scaling",
                          forward, numpy_attention(**arrays, causal=causal, bias=bias / math.sqrt(Dh))))
    mistakes = []
    for description, changed, wrong in found:
        judged = tuple(key for key in keys if key in changed)
        if judged and not signature(right, judged)(wrong, None):  # skip a mistake these inputs cannot reveal
            mistakes.append(Mistake(description, signature(wrong, judged)))
    return tuple(mistakes)


def judge_attention(target, reference, what: str, **inputs) -> dict:
    """Forward vs the reference; backward vs central differences of the target's own forward; backward vs reference;
    and all of it vs the test's own NumPy attention."""
    mistakes = attention_mistakes(inputs)
    got = target.run(probe_attention, **inputs)
    want = reference.run(probe_attention, **inputs)
    assert_close(got["out"], want["out"], F64, f"{what}: output", attention_mistakes(inputs, keys=("out",)))
    numeric = target.run(probe_attention_numeric, **inputs)
    for name in ("grad_q", "grad_k", "grad_v"):
        assert_close(got[name], numeric[name], GRADCHECK,
                     f"{what}: {name} from backward() vs central differences of your own forward",
                     attention_mistakes(inputs, keys=(name,)))
    assert_close(got, want, F64, what, mistakes)
    assert_close(got, numpy_attention(**inputs), F64, f"{what} vs a plain NumPy attention")
    return got


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


def probe_outputs(m, q, k, v, causal: bool = True, bias=None) -> np.ndarray:
    tensor = tensor_module(m)
    return m.scaled_dot_product_attention(*(tensor.Tensor(x, dtype=np.float64) for x in (q, k, v)),
                                          causal=causal, bias=bias).data


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
    tensor = tensor_module(m)

    def attend(q, k, v, causal=False):
        return m.scaled_dot_product_attention(*(tensor.Tensor(x, dtype=np.float64) for x in (q, k, v)), causal=causal)

    return {"heads": raised(attend, q, k[:, :2], v[:, :2]),  # 3 query heads, 2 key/value heads
            "short": raised(attend, q, k[:, :, :2], v[:, :, :2], causal=True)}  # S = 2 keys, T = 3 queries


@pytest.mark.concept("shapes")
def test_shapes_that_do_not_fit_raise_value_error(target, reference):
    inputs = attention_inputs(612, 1, 3, 3, 3, 3, 2)
    for who in (target, reference):
        got = who.run(probe_bad_shapes, q=inputs["q"], k=inputs["k"], v=inputs["v"])
        for case, why in (("heads", "3 query heads with 2 key/value heads (3 % 2 != 0)"),
                          ("short", "causal with S=2 keys for T=3 queries (query 0 would see no key)")):
            assert_true("ValueError" in got[case].get("bases", []),
                        f"{who.target}: {why} must raise ValueError, got {got[case]}")
