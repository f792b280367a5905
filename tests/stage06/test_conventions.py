"""Stage 06 (attention), visible suite: the conventions of the docstrings that the other tests' inputs do not expose
(a mistake there would pass them and fail the hidden suite). Each test's input is chosen so that one plausible mistake
gives a different answer; tests/mutants/stage06.toml lists those mistakes.
"""
from __future__ import annotations

import numpy as np
import pytest

from grader.harness import EXACT, F32, F64, Mistake, Tol, assert_close, raised, seeded, sibling
from tests.stage06.helpers import GrowingCache, attention_inputs, build, numpy_attention, probe_alibi, probe_attention

# ---------------------------------------------------------------- the fused op


@pytest.mark.concept("sdpa-forward")
def test_attention_is_finite_for_huge_scores(check):
    # q and k of size ~100 give scores of ~1e4 / sqrt(4): exp() of them overflows to inf (inf / inf = NaN) unless
    # each row's maximum is subtracted first, which changes nothing else.
    inputs = attention_inputs(601, B=1, H=2, Hkv=2, T=3, S=3, Dh=4)
    inputs["q"], inputs["k"] = 100.0 * inputs["q"], 100.0 * inputs["k"]
    want = numpy_attention(**{key: inputs[key] for key in ("q", "k", "v", "weights")}, causal=True)
    got = check(probe_attention, **inputs, causal=True, what="attention with scores near 1e4", mistakes=(
        Mistake("exp() of the raw scores overflowed: subtract each row's maximum before exponentiating",
                lambda got, want: bool(np.isnan(got["out"]).any())),))
    assert_close(got["out"], want["out"], F64, "attention's output for scores near 1e4 (vs NumPy)")


def probe_float32_with_bias(m, q, k, v, weights, bias) -> dict:
    got = probe_attention(m, q, k, v, weights, causal=True, bias=bias, dtype="float32")
    return {"dtypes": {name: str(value.dtype) for name, value in got.items()}, "out": got["out"]}


@pytest.mark.concept("dtype")
def test_a_float64_bias_keeps_float32_attention_float32(check):
    # ALiBi's table is float64; added to float32 scores it must be cast, or NumPy promotes everything to float64.
    inputs = attention_inputs(602, B=1, H=2, Hkv=1, T=3, S=3, Dh=4)
    del inputs["bias"]
    got = check(probe_float32_with_bias, **inputs, bias=probe_alibi_table(2, 3), tol=F32,
                what="float32 attention with a float64 ALiBi bias")
    assert_close(got["dtypes"], {"out": "float32", "grad_q": "float32", "grad_k": "float32", "grad_v": "float32"},
                 EXACT, "dtypes of the output and the gradients (float32 in, float32 out)", mistakes=(
                     Mistake("the float64 bias promoted the scores to float64: cast it to the scores' dtype",
                             lambda got, want: got["out"] == "float64"),))


def probe_alibi_table(heads: int, T: int) -> np.ndarray:
    """ALiBi's bias written out here (float64), for heads a power of two: slope_h = 2^(-8h/H)."""
    slopes = 2.0 ** (-8.0 * np.arange(1, heads + 1) / heads)
    return slopes[:, None, None] * (np.arange(T)[None, :] - np.arange(T)[:, None])


# ---------------------------------------------------------------- ALiBi


@pytest.mark.concept("alibi")
def test_alibi_slopes_for_a_head_count_that_is_not_a_power_of_two(check):
    # H = 6: n = 4 (the largest power of two below 6) gives 2^(-8h/4) = 1/4, 1/16, 1/64, 1/256; the other 2 heads
    # take the 1st and 3rd slopes of 2n = 8 heads, 2^(-8h/8) for h = 1, 3: 1/2 and 1/8.
    slopes = np.array([1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8])
    got = check(probe_alibi, heads=6, T=3, S=3, tol=F64, what="alibi_bias(6, 3, 3)", mistakes=(
        Mistake("the extra heads must take the 1st, 3rd, 5th, ... slopes of 2n heads (h = 1, 3, 5, ...), not the "
                "even ones (those repeat the first n slopes)",
                lambda got, want: np.allclose(-got[4:, 1, 0], [1 / 4, 1 / 16])),))
    assert_close(-got[:, 1, 0], slopes, F64, "the six slopes, read off one step into the past (-bias[h, 1, 0])")


# ---------------------------------------------------------------- the module


def probe_bad_heads(m, cases: list, good: list) -> dict:
    result = {f"MultiHeadAttention({w}, {h}, {kv})": raised(
        lambda: m.MultiHeadAttention(w, h, kv, rng=np.random.default_rng(0))) for w, h, kv in cases}
    w, h, kv = good
    module = m.MultiHeadAttention(w, h, kv, rng=np.random.default_rng(0))
    result["good"] = [module.heads, module.kv_heads, module.head_dim]
    return result


@pytest.mark.concept("gqa")
def test_heads_that_do_not_divide_raise_value_error(check):
    cases = [[8, 4, 3], [8, 3, 1], [12, 6, 4]]
    got = check(probe_bad_heads, cases=cases, good=[12, 6, 3], tol=EXACT,
                what="MultiHeadAttention with heads that do not divide")
    assert_close(got.pop("good"), [6, 3, 2], EXACT, "MultiHeadAttention(12, 6, 3): [heads, kv_heads, head_dim]")
    for name, record in got.items():
        assert_close(record, {"raised": "ValueError"}, EXACT,
                     f"{name}: heads must divide width and kv_heads must divide heads, checked when it is made")


def probe_gradient_after_cached_tokens(m, x, weights, seed: int, cached: int) -> dict:
    """x's first `cached` tokens go through the cache as constants; the rest requires grad. Also the same tokens in
    one pass, with the loss weights of the cached tokens' outputs 0: x's later tokens must get the same gradient."""
    tensor = sibling(m, "tensor")
    module = build(m, 8, 4, 2, seed, rotary=True)
    cache = GrowingCache()
    module(tensor.Tensor(x[:, :cached], dtype=np.float64), cache, 0)
    cache.advance(cached)
    new = tensor.Tensor(x[:, cached:], requires_grad=True, dtype=np.float64)
    module(new, cache, 0).backward(weights[:, cached:])
    whole = tensor.Tensor(x, requires_grad=True, dtype=np.float64)
    masked = weights.copy()
    masked[:, :cached] = 0.0
    module(whole).backward(masked)
    return {"through the cache": new.grad, "in one pass": whole.grad[:, cached:]}


@pytest.mark.concept("causal-offset")
def test_new_tokens_after_a_cache_get_the_gradient_of_one_pass(check):
    rng = seeded(603)
    x, weights = rng.standard_normal((2, 5, 8)), rng.standard_normal((2, 5, 8))
    got = check(probe_gradient_after_cached_tokens, x=x, weights=weights, seed=604, cached=3, tol=F64,
                what="gradient of 2 new tokens after 3 cached ones")
    assert_close(got["through the cache"], got["in one pass"], Tol(1e-9, 1e-12, "float64; sums in another order"),
                 "dL/dx of the 2 new tokens: through the cache vs one pass over all 5", mistakes=(
                     Mistake("the new keys' gradient was read from the wrong positions of the cache: they are the "
                             "last T, op(keys, (k,), lambda g: (g[:, :, length:],))", lambda got, want: True),))
