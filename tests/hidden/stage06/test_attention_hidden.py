"""Stage 06 (attention), hidden suite: other shapes, groupings, seeds, edge cases and properties than the visible one.

Like the visible suite, every test compares with the reference AND checks a hand-worked value, an invariant, or
central differences of the target's own forward pass (float64, eps=1e-6, GRADCHECK tolerance).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.harness import (EXACT, F64, GRADCHECK, Mistake, Tol, assert_close, assert_true, central_difference, raised,
                            seeded, sibling)
from tests.stage06.helpers import (alibi_mistakes, attention_inputs, attention_mistakes, build, judge_attention,
                                   numpy_attention, numpy_module, numpy_rope, probe_alibi, probe_attention,
                                   probe_composed_attention, probe_outputs, probe_rope, probe_rope_numeric,
                                   rope_mistakes)

ROUNDING = Tol(1e-9, 1e-11, "float64; the two sides are computed along different paths")


# ---------------------------------------------------------------- the fused op: more gradient checks


@pytest.mark.concept("gqa")
def test_gradcheck_groups_of_three_with_cached_keys_and_a_broadcast_bias(target, reference):
    inputs = attention_inputs(660, 1, 6, 2, 3, 5, 2, bias_shape=(3, 5))  # bias (T, S) for every batch and head
    judge_attention(target, reference, "H=6, Hkv=2, causal, T=3, S=5, bias (T, S)", causal=True, **inputs)


@pytest.mark.concept("sdpa-backward")
def test_gradcheck_odd_head_dim_multi_query_padding_bias(target, reference):
    inputs = attention_inputs(661, 2, 3, 1, 3, 4, 5, bias_shape=(2, 1, 1, 4))  # a per-batch bias over keys
    judge_attention(target, reference, "H=3, Hkv=1, Dh=5, T=3, S=4, bias (B, 1, 1, S)", **inputs)


@pytest.mark.concept("sdpa-backward")
def test_a_single_key_returns_its_value(check):
    # S = 1: the softmax of one score is 1 whatever the score, so out = v for every query head, the scores get no
    # gradient (dQ = dK = 0 exactly) and dV is the sum of dO over the query heads that share the key/value head.
    inputs = attention_inputs(662, 2, 4, 2, 1, 1, 3)
    got = check(probe_attention, tol=F64, what="T=S=1, H=4, Hkv=2", mistakes=attention_mistakes(inputs), **inputs)
    v, weights = inputs["v"], inputs["weights"]
    assert_close(got["out"], np.repeat(v, 2, axis=1), F64, "out = v (one key: probability 1)")
    assert_close(got["grad_q"], np.zeros_like(inputs["q"]), F64, "dQ with one key")
    assert_close(got["grad_k"], np.zeros_like(inputs["k"]), F64, "dK with one key")
    assert_close(got["grad_v"], weights.reshape(2, 2, 2, 1, 3).sum(axis=2), F64,
                 "dV = sum of dO over query heads 2g, 2g + 1 of key/value head g")


@pytest.mark.concept("sdpa-forward")
def test_large_scores_stay_finite(check):
    inputs = attention_inputs(663, 1, 2, 2, 4, 4, 4)
    inputs["q"], inputs["k"] = inputs["q"] * 40, inputs["k"] * 40  # scores ~1000: exp overflows unless shifted
    for dtype in ("float64", "float32"):
        got = check(probe_attention, tol=F64 if dtype == "float64" else Tol(1e-4, 1e-4, "float32 with large scores"),
                    what=f"scores of size ~1000, {dtype}", dtype=dtype, **inputs)
        assert_true(all(np.all(np.isfinite(value)) for value in got.values()),
                    f"{dtype}: NaN or inf with large scores: subtract each row's maximum before exp")
        want = numpy_attention(**inputs)
        assert_close(got["out"], want["out"], F64 if dtype == "float64" else Tol(1e-4, 1e-4, "float32"),
                     f"{dtype}: output with large scores vs a stable NumPy attention")


def probe_partial_grads(m, q, k, v, weights, needs: list) -> dict:
    tensor = sibling(m, "tensor")
    leaves = [tensor.Tensor(x, requires_grad=name in needs, dtype=np.float64) for name, x in zip("qkv", (q, k, v))]
    m.scaled_dot_product_attention(*leaves, causal=True).backward(weights)
    return {f"grad_{name}": leaf.grad for name, leaf in zip("qkv", leaves)}


@pytest.mark.concept("sdpa-backward")
def test_inputs_that_need_no_gradient_get_none(check):
    inputs = attention_inputs(664, 1, 2, 1, 3, 3, 2)
    del inputs["bias"]
    want = numpy_attention(**inputs, causal=True)
    for needs in (["q"], ["v"], ["k", "v"]):
        got = check(probe_partial_grads, needs=needs, tol=F64, what=f"only {needs} require grad", **inputs)
        for name in "qkv":
            expected = want[f"grad_{name}"] if name in needs else None
            assert_close(got[f"grad_{name}"], expected, F64, f"grad of {name} when only {needs} require grad")


# ---------------------------------------------------------------- the bias


def probe_bias_cases(m, q, k, v, bias, row_shift, padding) -> dict:
    """Attention with a bias, with that bias plus a per-query constant, and with the last key padded away."""
    tensor = sibling(m, "tensor")

    def attend(k, v, bias):
        return m.scaled_dot_product_attention(*(tensor.Tensor(x, dtype=np.float64) for x in (q, k, v)),
                                              bias=bias).data
    return {"bias": attend(k, v, bias), "shifted": attend(k, v, bias + row_shift),
            "padded": attend(k, v, bias + padding), "dropped": attend(k[:, :, :-1], v[:, :, :-1], bias[..., :-1])}


@pytest.mark.concept("bias")
def test_bias_row_constants_cancel_and_a_large_negative_bias_removes_a_key(check):
    rng = seeded(665)
    inputs = attention_inputs(665, 2, 2, 2, 3, 4, 3, bias_shape=(2, 2, 3, 4))
    q, k, v, bias = inputs["q"], inputs["k"], inputs["v"], inputs["bias"]
    padding = np.zeros((1, 1, 1, 4))
    padding[..., -1] = -1e30  # a padding mask over the last key
    got = check(probe_bias_cases, q=q, k=k, v=v, bias=bias, row_shift=rng.standard_normal((2, 2, 3, 1)) * 5,
                padding=padding, tol=F64, what="attention with biases")
    assert_close(got["bias"], numpy_attention(q, k, v, np.zeros_like(q), bias=bias)["out"], ROUNDING,
                 "attention with a bias vs NumPy", (
                     Mistake("the bias is added after the scale was applied to it: add it to q kᵀ / sqrt(Dh)",
                             lambda got, want: np.allclose(got, numpy_attention(
                                 q, k, v, np.zeros_like(q), bias=bias / math.sqrt(3))["out"])),))
    assert_close(got["shifted"], got["bias"], ROUNDING, "adding a constant to every score of a row changes nothing")
    assert_close(got["padded"], got["dropped"], ROUNDING, "a -1e30 bias on the last key = attention without that key")


# ---------------------------------------------------------------- composed reference and causality with cached keys


@pytest.mark.concept("causal-offset")
def test_fused_equals_composed_multi_query_with_cached_keys(check, target):
    inputs = attention_inputs(666, 2, 4, 1, 3, 7, 2, bias_shape=(2, 1, 3, 7))
    inputs["causal"] = True
    mistakes = attention_mistakes(inputs)
    got = check(probe_attention, tol=F64, what="H=4, Hkv=1, T=3, S=7, causal, bias", mistakes=mistakes, **inputs)
    composed = target.run(probe_composed_attention, **inputs)
    assert_close(got, composed, Tol(1e-9, 1e-11, "float64, summation order only"),
                 "fused op vs attention composed of your tensor engine's primitive ops", mistakes)


@pytest.mark.concept("causal-offset")
def test_grouped_causality_with_cached_keys(check, target):
    # T = 3 queries at absolute positions 3, 4, 5 over S = 6 keys; H = 4 heads in 2 groups.
    inputs = attention_inputs(667, 1, 4, 2, 3, 6, 3)
    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    base = check(probe_outputs, q=q, k=k, v=v, tol=F64, what="causal, H=4, Hkv=2, T=3, S=6",
                 mistakes=attention_mistakes(dict(inputs, causal=True)))
    rng = seeded(668)
    for t in range(2):  # query t sits at position 3 + t: keys 4 + t .. 5 are its future
        k2, v2 = k.copy(), v.copy()
        k2[:, :, 4 + t:] = rng.standard_normal(k2[:, :, 4 + t:].shape)
        v2[:, :, 4 + t:] = rng.standard_normal(v2[:, :, 4 + t:].shape)
        after = target.run(probe_outputs, q=q, k=k2, v=v2)
        assert_close(after[:, :, :t + 1], base[:, :, :t + 1], Tol(0.0, 0.0, "the future must not move the past"),
                     f"queries 0..{t} (positions 3..{3 + t}) after changing keys at positions {4 + t}..5")
    cached = k.copy()
    cached[:, :, 0] += 1.0  # a cached key, in everyone's past
    after = target.run(probe_outputs, q=q, k=cached, v=v)
    assert_true(np.all(np.abs(after - base).max(axis=(0, 1, 3)) > 0),
                "changing cached key 0 must change every query's output: every query sees the cached keys")


# ---------------------------------------------------------------- RoPE


@pytest.mark.concept("rope")
def test_rope_cache_other_base_and_head_dim(check):
    # head_dim 6, base 100: θ = 100^0, 100^(-2/6), 100^(-4/6) = 1, 100^(-1/3), 100^(-2/3).
    x = np.zeros((1, 1, 4, 6))
    got = check(probe_rope, x=x, weights=x, max_positions=4, base=100.0, tol=F64, what="rope_cache(6, 4, base=100)")
    theta = np.array([1.0, 100 ** (-1 / 3), 100 ** (-2 / 3)])
    angles = np.arange(4)[:, None] * theta
    assert_close(got["cos"], np.cos(angles), F64, "cos table, base 100")
    assert_close(got["sin"], np.sin(angles), F64, "sin table, base 100")


def probe_rope_errors(m, x) -> dict:
    tensor = sibling(m, "tensor")
    cos, sin = m.rope_cache(4, 5)
    out32 = m.apply_rope(tensor.Tensor(x[:, :, :, :4]), cos, sin, offset=1)  # float32, positions 1..3
    return {"odd": raised(m.rope_cache, 5, 8),
            "past_the_table": raised(m.apply_rope, tensor.Tensor(x[:, :, :, :4], dtype=np.float64), cos, sin, 3),
            "dtype": str(out32.dtype), "out32": out32.data}


@pytest.mark.concept("rope")
def test_rope_errors_and_float32(check):
    x = seeded(669).standard_normal((1, 2, 3, 4))
    float32 = Tol(1e-6, 1e-6, "float32 rotation")
    got = check(probe_rope_errors, x=x, tol=float32, what="RoPE errors and float32")
    assert_close(got["odd"], {"raised": "ValueError"}, EXACT, "rope_cache(5, ...) (an odd head_dim)")
    assert_close(got["past_the_table"], {"raised": "ValueError"}, EXACT,
                 "apply_rope at positions 3..5 with a table of 5 positions")
    assert_close(got["dtype"], "float32", EXACT, "apply_rope of a float32 tensor keeps float32")
    assert_close(got["out32"], numpy_rope(x, offset=1), float32, "apply_rope in float32, offset 1", rope_mistakes(x, 1))


def probe_rope_pair_scores(m, q, k, pairs: list, base: float) -> list:
    """(R_m q) · (R_n k) for each (m, n), each side rotated on its own with offset m or n."""
    tensor = sibling(m, "tensor")
    cos, sin = m.rope_cache(q.shape[-1], 32, base)

    def rotate(x, position):
        return m.apply_rope(tensor.Tensor(x.reshape(1, 1, 1, -1), dtype=np.float64), cos, sin, offset=position).data
    return [float((rotate(q, a) * rotate(k, b)).sum()) for a, b in pairs]


@pytest.mark.concept("rope")
def test_rope_relative_positions_with_offsets_and_gradcheck(check, target):
    rng = seeded(670)
    q, k = rng.standard_normal(8), rng.standard_normal(8)
    pairs = [[2, 5], [9, 12], [20, 23], [5, 2], [30, 27]]  # offsets 3, 3, 3, -3, -3
    got = check(probe_rope_pair_scores, q=q, k=k, pairs=pairs, base=500.0, tol=F64, what="RoPE scores by offsets")
    assert_close(got[1:3], [got[0]] * 2, ROUNDING, "scores at (2, 5), (9, 12), (20, 23): the same offset")
    assert_close(got[4], got[3], ROUNDING, "scores at (5, 2) and (30, 27): the same offset")
    assert_true(abs(got[0] - got[3]) > 1e-6, "offsets +3 and -3 should give different scores")
    inputs = {"x": rng.standard_normal((1, 3, 4, 6)), "weights": rng.standard_normal((1, 3, 4, 6)),
              "max_positions": 12, "offset": 5}
    grads = check(probe_rope, tol=F64, what="apply_rope, offset 5", **inputs)
    assert_close(grads["grad"], target.run(probe_rope_numeric, **inputs), GRADCHECK,
                 "apply_rope backward() vs central differences, offset 5")


# ---------------------------------------------------------------- sinusoidal and ALiBi


def probe_sinusoidal_cases(m) -> dict:
    return {"table": np.asarray(m.sinusoidal_positions(50, 6)), "odd": raised(m.sinusoidal_positions, 4, 5)}


@pytest.mark.concept("sinusoidal")
def test_sinusoidal_other_dim_and_relative_dot_products(check):
    got = check(probe_sinusoidal_cases, tol=F64, what="sinusoidal_positions(50, 6)")
    table = got["table"]
    # column 4 = 2i with i = 2: sin(p / 10000^(4/6)); column 3 = 2i + 1 with i = 1: cos(p / 10000^(2/6))
    assert_close([table[3, 4], table[7, 3]], [math.sin(3 / 10000 ** (4 / 6)), math.cos(7 / 10000 ** (2 / 6))], F64,
                 "table[3, 4] and table[7, 3]")
    # PE[p] · PE[p + s] = sum_i cos(s ω_i): it depends on the offset s only
    omega = 10000.0 ** (-np.arange(0, 6, 2) / 6)
    for s in (1, 4):
        dots = np.einsum("pd,pd->p", table[:-s], table[s:])
        assert_close(dots, np.full(50 - s, np.cos(s * omega).sum()), ROUNDING, f"PE[p] · PE[p + {s}] for every p")
    assert_close(got["odd"], {"raised": "ValueError"}, EXACT, "sinusoidal_positions(4, 5) (an odd dim)")


@pytest.mark.concept("alibi")
def test_alibi_slopes_for_heads_that_are_not_a_power_of_two(check):
    cases = {1: [2.0 ** -8], 2: [2.0 ** -4, 2.0 ** -8],
             # 6 heads: the 4 slopes of 4 heads (2^-2, 2^-4, 2^-6, 2^-8), then the 1st and 3rd of 8 heads (2^-1, 2^-3)
             6: [2.0 ** -2, 2.0 ** -4, 2.0 ** -6, 2.0 ** -8, 2.0 ** -1, 2.0 ** -3]}
    for heads, slopes in cases.items():
        mistakes = alibi_mistakes(np.array(slopes), 3, 3)
        got = check(probe_alibi, heads=heads, T=3, S=3, tol=F64, what=f"alibi_bias({heads}, 3, 3)", mistakes=mistakes)
        distance = np.arange(3)[None, :] - np.arange(3)[:, None]
        assert_close(got, np.array(slopes)[:, None, None] * distance, F64, f"ALiBi with {heads} heads", mistakes)


def probe_alibi_attention(m, heads: int, T: int) -> np.ndarray:
    """Causal attention with ALiBi where every raw score is 0 and v is the identity: the output is P itself."""
    tensor = sibling(m, "tensor")
    zeros = tensor.Tensor(np.zeros((1, heads, T, T)), dtype=np.float64)
    eye = tensor.Tensor(np.broadcast_to(np.eye(T), (1, heads, T, T)).copy(), dtype=np.float64)
    return m.scaled_dot_product_attention(zeros, zeros, eye, causal=True, bias=m.alibi_bias(heads, T, T)).data


@pytest.mark.concept("alibi")
def test_alibi_attention_prefers_recent_keys(check):
    # Scores are the bias alone: P[i, j] ∝ exp(slope · (j - i)) over j <= i. Head 0 of 2 has slope 2^-4.
    got = check(probe_alibi_attention, heads=2, T=3, tol=F64, what="attention with ALiBi only")
    m = 2.0 ** -4
    row = np.exp(m * np.array([-2.0, -1.0, 0.0]))
    assert_close(got[0, 0, 2], row / row.sum(), F64, "head 0, query 2: P ∝ exp(m · (j − 2)), m = 1/16")
    assert_close(got[0, 0, 1], np.array([np.exp(-m), 1.0, 0.0]) / (np.exp(-m) + 1), F64, "head 0, query 1")
    assert_true(np.all(np.diff(got[0, :, 2], axis=-1) > 0), "the most recent key gets the largest probability")


# ---------------------------------------------------------------- the module


def probe_module_cases(m) -> dict:
    tensor = sibling(m, "tensor")
    rng = np.random.default_rng(671)
    module = m.MultiHeadAttention(16, 4, kv_heads=1, rng=rng, rotary=True, max_positions=6)
    short = module(tensor.Tensor(np.ones((1, 6, 16)))).shape
    return {"shapes": {name: list(p.shape) for name, p in module.named_parameters()}, "short": list(short),
            "buffers": [list(np.shape(module.rope_cos)), list(np.shape(module.rope_sin))],
            "too_long": raised(module, tensor.Tensor(np.ones((1, 7, 16)))),
            "width": raised(m.MultiHeadAttention, 10, 4, rng=rng),
            "groups": raised(m.MultiHeadAttention, 12, 4, 3, rng=rng)}


@pytest.mark.concept("mha")
def test_module_multi_query_shapes_buffers_and_errors(check):
    got = check(probe_module_cases, tol=EXACT, what="MultiHeadAttention(16, 4, kv_heads=1, rotary, max_positions=6)")
    # Dh = 16 / 4 = 4: one key/value head is 4 wide.
    assert_close(got["shapes"], {"query.weight": [16, 16], "key.weight": [16, 4], "value.weight": [16, 4],
                                 "output.weight": [16, 16]}, EXACT, "multi-query parameter shapes")
    assert_close(got["short"], [1, 6, 16], EXACT, "output shape for T = max_positions")
    assert_close(got["buffers"], [[6, 2], [6, 2]], EXACT, "rope_cos, rope_sin: (max_positions, Dh // 2)")
    for case, why in (("too_long", "T=7 > max_positions=6 with rotary"), ("width", "width 10 with 4 heads"),
                      ("groups", "4 heads with 3 key/value heads")):
        assert_close(got[case], {"raised": "ValueError"}, EXACT, why)


def probe_module_weight_grad(m, x, weights) -> dict:
    """A non-causal module with projection biases: its query weight's gradient and central differences of it."""
    tensor = sibling(m, "tensor")
    module = build(m, 6, 3, None, 672, causal=False, bias=True)
    out = module(tensor.Tensor(x, dtype=np.float64))
    out.backward(weights)
    parameters = {name: p.data.copy() for name, p in module.named_parameters()}
    numeric = central_difference(
        lambda: float((module(tensor.Tensor(x, dtype=np.float64)).data * weights).sum()), module.query.weight.data)
    return {"out": out.data, "parameters": parameters, "grad": module.query.weight.grad, "numeric": numeric}


@pytest.mark.concept("mha")
def test_module_without_mask_or_rope_and_a_weight_gradcheck(target, reference):
    rng = seeded(673)
    inputs = {"x": rng.standard_normal((3, 4, 6)), "weights": rng.standard_normal((3, 4, 6))}
    got = target.run(probe_module_weight_grad, **inputs)
    assert_close(got["out"], numpy_module(inputs["x"], got["parameters"], 3, 3, rotary=False, causal=False), ROUNDING,
                 "MultiHeadAttention(6, 3, causal=False, bias=True) vs NumPy from its own weights", (
                     Mistake("the module masks the future although causal=False",
                             lambda got_, want: np.allclose(got_, numpy_module(inputs["x"], got["parameters"], 3, 3,
                                                                               rotary=False, causal=True))),))
    assert_close(got["grad"], got["numeric"], GRADCHECK, "d/d query.weight: backward() vs central differences")
    want = reference.run(probe_module_weight_grad, **inputs)
    assert_close(got["grad"], want["grad"], F64, "d/d query.weight")
