"""Stage 07 (transformer blocks), hidden suite: other shapes, seeds, edge cases and invariants than the visible one.

Each test compares your module with the reference on the same inputs and also checks something that does not trust
the reference: a hand-computed value, an invariant of the mathematics, central differences in float64, or an
independent NumPy implementation.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from grader.harness import randomise_parameters, EXACT, GRADCHECK, Mistake, Tol, assert_close, assert_true, central_difference, raised, seeded

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
COMPOSED = Tol(1e-8, 1e-10, "float64; two correct implementations round differently")
ROUNDING = Tol(0, 1e-12, "float64 rounding of quantities of order 1")


def _numpy_gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)))


# ---------------------------------------------------------------- fused ops: gradchecks in other shapes


def _call(m, op: str, tensors: list, eps: float):
    if op == "layer_norm":
        return m.layer_norm(*tensors, eps=eps)
    if op == "rms_norm":
        return m.rms_norm(*tensors, eps=eps)
    return getattr(m, op)(*tensors)


def probe_gradients(m, op: str, arrays: list, upstream: np.ndarray, eps: float = 1e-5, numeric: bool = True) -> dict:
    """Output, backward of L = sum(out * upstream), and (optionally) central differences of L; float64."""
    leaves = [m.Tensor(a, requires_grad=True, dtype=np.float64) for a in arrays]
    out = _call(m, op, leaves, eps)
    out.backward(upstream)

    def loss() -> float:
        return float((_call(m, op, [m.Tensor(a, dtype=np.float64) for a in arrays], eps).data * upstream).sum())

    return {"out": out.data, "grads": [leaf.grad for leaf in leaves],
            "numeric": [central_difference(loss, a) for a in arrays] if numeric else None}


def _judge_numeric(got: dict, what: str, names: tuple) -> None:
    for name, analytic, numeric in zip(names, got["grads"], got["numeric"]):
        assert_close(analytic, numeric, GRADCHECK, f"{what}: d/d{name} (backward vs central differences)")


@pytest.mark.concept("layer-norm-backward")
@pytest.mark.parametrize("shape", [(7,), (2, 2, 2, 5)], ids=["1-D", "4-D"])
def test_layer_norm_gradcheck_on_a_single_row_and_four_axes(check, shape):
    rng = seeded(7001 + len(shape))
    arrays = [rng.normal(size=shape) * 2.0 + 0.5, 1.0 + 0.3 * rng.normal(size=shape[-1]), rng.normal(size=shape[-1])]
    got = check(probe_gradients, op="layer_norm", arrays=arrays, upstream=rng.normal(size=shape), tol=GRADCHECK,
                what=f"layer_norm gradcheck, x of shape {shape}")
    _judge_numeric(got, f"layer_norm on {shape}", ("x", "weight", "bias"))
    assert_close([list(np.shape(g)) for g in got["grads"]], [list(shape), [shape[-1]], [shape[-1]]], EXACT,
                 "gradient shapes: x's shape, then (C,) for weight and bias (summed over every leading axis)")


@pytest.mark.concept("layer-norm-backward")
def test_layer_norm_gradient_rows_sum_to_zero_and_are_orthogonal_to_x(check):
    # eps = 0: layer_norm(x + c) = layer_norm(x) and layer_norm(k x) = layer_norm(x) (k > 0), so the directional
    # derivatives along 1 and along x vanish: each row of dL/dx sums to 0 and is orthogonal to x, for any w, b, G.
    rng = seeded(7010)
    arrays = [rng.normal(size=(6, 9)) + 3.0, rng.normal(size=9), rng.normal(size=9)]
    got = check(probe_gradients, op="layer_norm", arrays=arrays, upstream=rng.normal(size=(6, 9)), eps=0.0,
                numeric=False, tol=COMPOSED, what="layer_norm gradients, eps=0")
    dx = got["grads"][0]
    assert_close(dx.sum(axis=-1), np.zeros(6), Tol(0, 1e-11, "float64 rounding"), "row sums of dL/dx (shift "
                 "invariance)", mistakes=(Mistake("the -mean(G·w) term (the path through μ) is missing",
                                                  lambda got, want: np.abs(got).max() > 1e-3),))
    assert_close((dx * arrays[0]).sum(axis=-1), np.zeros(6), Tol(0, 1e-10, "float64 rounding"),
                 "row dot products dL/dx · x (scale invariance)", mistakes=(
                     Mistake("the -x̂·mean(G·w·x̂) term (the path through σ) is missing",
                             lambda got, want: np.abs(got).max() > 1e-3),))


def probe_layer_norm_float32(m, x: np.ndarray) -> np.ndarray:
    C = x.shape[-1]
    return m.layer_norm(m.Tensor(x), m.Tensor(np.ones(C, np.float32)), m.Tensor(np.zeros(C, np.float32))).data


@pytest.mark.concept("layer-norm")
def test_layer_norm_of_constant_rows_and_of_large_offsets(check):
    # a constant row has x - μ = 0: x̂ = 0 and the output is the bias, with finite gradients (eps keeps 1/σ finite)
    rng = seeded(7020)
    bias = rng.normal(size=5)
    got = check(probe_gradients, op="layer_norm", arrays=[np.full((2, 5), 3.25), rng.normal(size=5), bias],
                upstream=rng.normal(size=(2, 5)), numeric=False, tol=COMPOSED, what="layer_norm of constant rows")
    assert_close(got["out"], np.broadcast_to(bias, (2, 5)), ROUNDING, "layer_norm(constant row) = bias")
    assert_true(all(np.isfinite(g).all() for g in got["grads"]), "gradients of a constant row must be finite")
    # float32 rows around 10^4 with unit spread: mean((x - μ)²) keeps ~3 digits; mean(x²) - μ² would lose them all
    x = (1e4 + rng.normal(size=(4, 32))).astype(np.float32)
    got = check(probe_layer_norm_float32, x=x, tol=Tol(1e-3, 1e-3, "float32 at 10^4: ulp 1e-3"), what="layer_norm "
                "of float32 rows near 10^4")
    x64 = x.astype(np.float64)
    want = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-5)
    assert_close(got, want, Tol(0, 1e-2, "float32 rounding of x near 10^4 is 1e-3 absolute"),
                 "layer_norm of float32 rows near 10^4 vs float64", mistakes=(
                     Mistake("the variance as mean(x²) - mean(x)² cancels catastrophically in float32: centre first, "
                             "then average the squares", lambda got, want: True),))


@pytest.mark.concept("rms-norm-backward")
def test_rms_norm_gradcheck_and_scale_invariance_of_the_gradient(check):
    rng = seeded(7030)
    arrays = [rng.normal(size=(3, 1, 4, 6)), 1.0 + 0.3 * rng.normal(size=6)]
    got = check(probe_gradients, op="rms_norm", arrays=arrays, upstream=rng.normal(size=(3, 1, 4, 6)),
                tol=GRADCHECK, what="rms_norm gradcheck, 4-D")
    _judge_numeric(got, "rms_norm on (3, 1, 4, 6)", ("x", "weight"))
    # eps = 0: rms_norm(k x) = rms_norm(x), so each row of dL/dx is orthogonal to x (but need not sum to 0)
    got = check(probe_gradients, op="rms_norm", arrays=arrays, upstream=rng.normal(size=(3, 1, 4, 6)), eps=0.0,
                numeric=False, tol=COMPOSED, what="rms_norm gradients, eps=0")
    dx = got["grads"][0]
    assert_close((dx * arrays[0]).sum(axis=-1), np.zeros((3, 1, 4)), Tol(0, 1e-11, "float64 rounding"),
                 "row dot products dL/dx · x (scale invariance)")
    assert_true(np.abs(dx.sum(axis=-1)).max() > 1e-3, "RMSNorm is not shift invariant: its gradient rows need not "
                "sum to 0, but here they all do (is the mean subtracted?)")


@pytest.mark.concept("rms-norm")
def test_rms_norm_of_a_zero_row_by_hand(check):
    # x = 0: r = sqrt(0 + eps), x̂ = 0, output 0, and dL/dx = (1/r)(G·w - 0) = G·w / sqrt(eps), finite
    rng = seeded(7040)
    weight, upstream = rng.normal(size=4), rng.normal(size=(1, 4))
    got = check(probe_gradients, op="rms_norm", arrays=[np.zeros((1, 4)), weight], upstream=upstream, eps=1e-4,
                numeric=False, tol=COMPOSED, what="rms_norm of a zero row")
    assert_close(got["out"], np.zeros((1, 4)), EXACT, "rms_norm(0) = 0")
    assert_close(got["grads"][0], upstream * weight / math.sqrt(1e-4), Tol(1e-12, 0, "float64 rounding"),
                 "dL/dx at x = 0: G·w / sqrt(eps)", mistakes=(
                     Mistake("not finite: eps must go inside the square root", lambda g, w: not np.isfinite(g).all()),))


def probe_activation_extremes(m, op: str, x: np.ndarray) -> dict:
    """float32 forward and backward with warnings recorded (an overflowing exp warns)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        leaf = m.Tensor(x, requires_grad=True)
        out = getattr(m, op)(leaf)
        out.backward(np.ones_like(x))
    return {"out": out.data, "grad": leaf.grad, "warnings": [str(w.message) for w in caught]}


@pytest.mark.concept("gelu")
def test_gelu_symmetry_of_values_and_slopes_and_large_inputs(check):
    # gelu(x) - gelu(-x) = x for every x, hence gelu'(x) + gelu'(-x) = 1
    x = seeded(7050).normal(size=40) * 3.0
    both = np.concatenate([x, -x])
    got = check(probe_gradients, op="gelu", arrays=[both], upstream=np.ones(80), numeric=False, tol=COMPOSED,
                what="gelu at ±x")
    assert_close(got["out"][:40] - got["out"][40:], x, ROUNDING, "gelu(x) - gelu(-x) = x")
    assert_close(got["grads"][0][:40] + got["grads"][0][40:], np.ones(40), Tol(0, 1e-11, "float64 rounding"),
                 "gelu'(x) + gelu'(-x) = 1")
    # far out tanh saturates: gelu(x) = x and gelu'(x) = 1 for x >> 0; 0 and 0 for x << 0; float32, no warnings
    got = check(probe_activation_extremes, op="gelu", x=np.array([-30.0, -10.0, 10.0, 30.0], np.float32),
                tol=Tol(1e-6, 1e-6, "float32"), what="gelu in float32 far from 0")
    assert_close(got["out"], np.array([0.0, 0.0, 10.0, 30.0]), Tol(1e-6, 1e-6, "float32"), "gelu(-30, -10, 10, 30)")
    assert_close(got["grad"], np.array([0.0, 0.0, 1.0, 1.0]), Tol(1e-6, 1e-6, "float32"), "gelu' at -30, -10, 10, 30")
    assert_close(got["warnings"], [], EXACT, "warnings raised by gelu far from 0")


@pytest.mark.concept("silu")
def test_silu_symmetry_of_slopes_and_float32_extremes(check):
    x = seeded(7060).normal(size=30) * 4.0
    got = check(probe_gradients, op="silu", arrays=[np.concatenate([x, -x])], upstream=np.ones(60), numeric=False,
                tol=COMPOSED, what="silu at ±x")
    assert_close(got["grads"][0][:30] + got["grads"][0][30:], np.ones(30), Tol(0, 1e-11, "float64 rounding"),
                 "silu'(x) + silu'(-x) = 1 (the derivative of silu(x) - silu(-x) = x)")
    got = check(probe_activation_extremes, op="silu", x=np.array([-200.0, -100.0, 100.0, 200.0], np.float32),
                tol=Tol(1e-6, 1e-6, "float32"), what="silu in float32 far from 0")
    assert_close(got["out"], np.array([0.0, 0.0, 100.0, 200.0]), Tol(1e-6, 1e-6, "float32"),
                 "silu(-200, -100, 100, 200) in float32")
    assert_close(got["warnings"], [], EXACT, "warnings raised by silu in float32 (e^200 overflows float32)",
                 mistakes=(Mistake("exp(-x) overflows for x << 0: compute σ(x) as (1 + tanh(x/2))/2",
                                   lambda got, want: any("overflow" in w for w in got)),))


@pytest.mark.concept("swiglu-op")
@pytest.mark.parametrize("shape", [(5,), (2, 1, 2, 3)], ids=["1-D", "4-D"])
def test_swiglu_gradcheck_on_a_single_row_and_four_axes(check, shape):
    rng = seeded(7070 + len(shape))
    arrays = [rng.normal(size=shape) * 3.0, rng.normal(size=shape)]
    got = check(probe_gradients, op="swiglu", arrays=arrays, upstream=seeded(7075).normal(size=shape), tol=GRADCHECK,
                what=f"swiglu gradcheck, shape {shape}")
    _judge_numeric(got, f"swiglu, shape {shape}", ("gate", "up"))


def probe_swiglu_float32(m, gate: np.ndarray, up: np.ndarray) -> dict:
    """float32 forward and backward of swiglu with warnings recorded (an overflowing exp warns)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        leaves = [m.Tensor(gate, requires_grad=True), m.Tensor(up, requires_grad=True)]
        out = m.swiglu(*leaves)
        out.backward(np.ones_like(gate))
    return {"out": out.data, "grads": [leaf.grad for leaf in leaves], "dtypes": [str(out.dtype)] + [
        str(leaf.grad.dtype) for leaf in leaves], "warnings": [str(w.message) for w in caught]}


@pytest.mark.concept("swiglu-op")
def test_swiglu_in_float32_far_from_0(check):
    gate = np.array([-200.0, -100.0, 100.0, 200.0], np.float32)
    up = np.array([2.0, -1.0, 0.5, -3.0], np.float32)
    got = check(probe_swiglu_float32, gate=gate, up=up, tol=Tol(1e-6, 1e-6, "float32"), what="swiglu in float32")
    assert_close(got["out"], np.array([0.0, 0.0, 50.0, -600.0]), Tol(1e-6, 1e-6, "float32"),
                 "swiglu(gate, up) far from 0: silu(gate) is 0 or gate there")
    assert_close(got["grads"][0], np.array([0.0, 0.0, 0.5, -3.0]), Tol(1e-6, 1e-6, "float32"),
                 "d/dgate far from 0: up · silu'(gate), silu' is 0 or 1 there")
    assert_close(got["dtypes"], ["float32"] * 3, EXACT, "dtypes of the output and of both gradients")
    assert_close(got["warnings"], [], EXACT, "warnings raised by swiglu in float32 (e^200 overflows float32)",
                 mistakes=(Mistake("exp(-x) overflows for x << 0: compute σ(x) as (1 + tanh(x/2))/2",
                                   lambda got, want: any("overflow" in w for w in got)),))


# ---------------------------------------------------------------- dropout


def probe_dropout_sequence(m, p: float, seeds: list, x: np.ndarray) -> dict:
    first = m.Dropout(p, rng=seeded(seeds[0]))
    masks = [first(m.Tensor(x, dtype=np.float64)).data for _ in range(2)]
    first.eval()
    evaluated = first(m.Tensor(x, dtype=np.float64)).data
    first.train()
    masks.append(first(m.Tensor(x, dtype=np.float64)).data)  # back in training: the third draw
    other = m.Dropout(p, rng=seeded(seeds[1]))(m.Tensor(x, dtype=np.float64)).data
    return {"masks": masks, "eval": evaluated, "other": other}


@pytest.mark.concept("dropout")
def test_dropout_draws_one_mask_per_training_forward_from_its_own_generator(check):
    x = np.ones((5, 8))
    got = check(probe_dropout_sequence, p=0.4, seeds=[7070, 7071], x=x, tol=EXACT, what="Dropout(0.4) sequence")
    rng = seeded(7070)  # forward 1, forward 2, (eval draws nothing), forward 3: three calls rng.random(x.shape)
    want = [np.where(rng.random(x.shape) >= 0.4, 1.0 / 0.6, 0.0) for _ in range(3)]
    assert_close(got["masks"], want, Tol(1e-15, 0, "float64"), "three training forwards of Dropout(0.4)(ones)",
                 mistakes=(Mistake("eval mode drew a mask too (it must draw nothing)",
                                   lambda got, want: not np.array_equal(got[2], want[2])),))
    assert_close(got["eval"], x, EXACT, "Dropout in eval mode")
    assert_true(not np.array_equal(got["other"], got["masks"][0]), "another seed must give another mask")


@pytest.mark.concept("dropout")
def test_dropout_with_large_p_keeps_the_mean(check):
    # p = 0.9 on 50,000 elements of x = 2: outputs are 0 or 20, mean 2, std of the mean 2·sqrt(p/(1-p)/N) = 0.027;
    # allowed 5 standard errors.
    x = np.full((250, 200), 2.0)
    got = check(probe_dropout_sequence, p=0.9, seeds=[7080, 7081], x=x, tol=EXACT, what="Dropout(0.9)")
    kept = got["masks"][0][got["masks"][0] != 0]
    assert_close(np.unique(kept), np.array([20.0]), Tol(1e-12, 0, "float64"), "the kept values: x / (1 - p) = 20")
    assert_close(float(got["masks"][0].mean()), 2.0, Tol(0, 5 * 2 * math.sqrt(9 / x.size), "5 standard errors"),
                 "mean of Dropout(0.9)(2)")


# ---------------------------------------------------------------- feed-forward gradients


def probe_feed_forward_gradcheck(m, kind: str, x: np.ndarray, upstream: np.ndarray, seed: int) -> dict:
    module = getattr(m, kind)(3, 5, rng=seeded(seed))
    randomise_parameters(module, seed + 1)
    leaf = m.Tensor(x, requires_grad=True, dtype=np.float64)
    module(leaf).backward(upstream)

    def loss() -> float:
        return float((module(m.Tensor(x, dtype=np.float64)).data * upstream).sum())

    named = module.named_parameters()
    return {"grads": {"x": leaf.grad, **{n: p.grad for n, p in named}},
            "numeric": {"x": central_difference(loss, x), **{n: central_difference(loss, p.data) for n, p in named}}}


@pytest.mark.parametrize("kind", [pytest.param("MLP", marks=pytest.mark.concept("mlp")),
                                  pytest.param("SwiGLU", marks=pytest.mark.concept("swiglu"))])
def test_feed_forward_gradcheck(check, kind):
    rng = seeded(7090)
    x, upstream = rng.normal(size=(2, 2, 3)), rng.normal(size=(2, 2, 3))
    got = check(probe_feed_forward_gradcheck, kind=kind, x=x, upstream=upstream, seed=7091, tol=COMPOSED,
                what=f"{kind}(3, 5) gradients")
    for name, numeric in got["numeric"].items():
        assert_close(got["grads"][name], numeric, GRADCHECK, f"{kind}: d/d{name} (backward vs central differences)")


# ---------------------------------------------------------------- Block


def _numpy_block(x: np.ndarray, s: dict, heads: int, kv_heads: int) -> np.ndarray:
    """A pre-norm LayerNorm + GELU-MLP block with grouped-query rotary attention, written out in NumPy."""
    def norm(h, prefix):
        centered = h - h.mean(-1, keepdims=True)
        return centered / np.sqrt((centered ** 2).mean(-1, keepdims=True) + 1e-5) * s[prefix + ".weight"] + \
            s[prefix + ".bias"]

    def rotate(z):  # RoPE, rotate-half pairs (i, i + Dh/2), positions 0..T-1
        half = z.shape[-1] // 2
        angles = np.arange(z.shape[2])[:, None] * 10000.0 ** (-np.arange(half) * 2.0 / z.shape[-1])  # (T, Dh/2)
        a, b = z[..., :half], z[..., half:]
        return np.concatenate([a * np.cos(angles) - b * np.sin(angles), b * np.cos(angles) + a * np.sin(angles)], -1)

    B, T, C = x.shape
    Dh = C // heads
    h = norm(x, "attention_norm")
    q = rotate((h @ s["attention.query.weight"]).reshape(B, T, heads, Dh).transpose(0, 2, 1, 3))  # (B, H, T, Dh)
    k = rotate((h @ s["attention.key.weight"]).reshape(B, T, kv_heads, Dh).transpose(0, 2, 1, 3))  # (B, Hkv, T, Dh)
    v = (h @ s["attention.value.weight"]).reshape(B, T, kv_heads, Dh).transpose(0, 2, 1, 3)
    k, v = np.repeat(k, heads // kv_heads, axis=1), np.repeat(v, heads // kv_heads, axis=1)  # head h reads h // G
    scores = q @ k.swapaxes(-1, -2) / math.sqrt(Dh) + np.triu(np.full((T, T), -np.inf), 1)  # (B, H, T, T)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    x = x + (probs @ v).transpose(0, 2, 1, 3).reshape(B, T, C) @ s["attention.output.weight"]
    h = norm(x, "feed_forward_norm")
    up = _numpy_gelu(h @ s["feed_forward.up.weight"] + s["feed_forward.up.bias"])
    return x + up @ s["feed_forward.down.weight"] + s["feed_forward.down.bias"]


def probe_block(m, x: np.ndarray, options: dict, seed: int) -> dict:
    block = m.Block(8, 4, 2, rng=seeded(seed), **options)
    randomise_parameters(block, seed + 1)
    return {"out": block(m.Tensor(x, dtype=np.float64)).data, "state": block.state_dict()}


@pytest.mark.concept("block-wiring")
def test_block_matches_an_independent_numpy_implementation(check):
    x = seeded(7100).normal(size=(2, 5, 8))
    options = {"norm": "layer", "feed_forward": "gelu", "rotary": True}
    got = check(probe_block, x=x, options=options, seed=7101, tol=COMPOSED, what="Block(8, 4, 2, layer, gelu, rotary)")
    assert_close(got["out"], _numpy_block(x, got["state"], 4, 2), COMPOSED,
                 "pre-norm Block vs the same block written in NumPy")


def probe_block_batches(m, x: np.ndarray, seed: int) -> dict:
    block = m.Block(8, 2, rng=seeded(seed), rotary=True)
    leaf = m.Tensor(x.astype(np.float32), requires_grad=True)
    together = block(leaf)
    together.backward(np.ones(x.shape, np.float32))
    alone = [block(m.Tensor(x[i:i + 1].astype(np.float32))).data for i in range(len(x))]
    return {"together": together.data, "alone": np.concatenate(alone), "dtypes": [str(together.dtype),
            str(leaf.grad.dtype)] + sorted({str(p.grad.dtype) for p in block.parameters()})}


@pytest.mark.concept("float32")
def test_block_treats_batch_rows_independently_and_stays_float32(check):
    x = seeded(7110).normal(size=(3, 4, 8))
    got = check(probe_block_batches, x=x, seed=7111, tol=Tol(1e-4, 1e-5, "float32"), what="Block in float32")
    assert_close(got["together"], got["alone"], Tol(1e-4, 1e-5, "float32 matmuls of another batch size"),
                 "Block on a batch of 3 vs on each row alone")
    assert_close(got["dtypes"], ["float32"] * 3, EXACT, "dtypes of the output, of x.grad and of the parameter grads")


def probe_post_norm_causal(m, x: np.ndarray, seed: int) -> dict:
    block = m.Block(8, 2, 1, rng=seeded(seed), norm="layer", feed_forward="gelu", pre_norm=False, rotary=True)
    randomise_parameters(block, seed + 1)
    leaf = m.Tensor(x, requires_grad=True, dtype=np.float64)
    upstream = np.zeros_like(x)
    upstream[:, 0] = seeded(seed + 2).normal(size=(x.shape[0], 8))  # only the first position's output
    block(leaf).backward(upstream)
    return {"grad": leaf.grad, "names_with_grad": [n for n, p in block.named_parameters() if p.grad is not None]}


@pytest.mark.concept("block-causal")
def test_post_norm_block_is_causal_too(check):
    x = seeded(7120).normal(size=(2, 5, 8))
    got = check(probe_post_norm_causal, x=x, seed=7121, tol=COMPOSED, what="post-norm Block gradients")
    assert_close(got["grad"][:, 1:], np.zeros((2, 4, 8)), EXACT, "d(output at 0) / d(inputs at 1..4)")
    assert_true(np.abs(got["grad"][:, 0]).min() > 0, "d(output at 0) / d(input at 0) must be nonzero")
    assert_close(len(got["names_with_grad"]), 12, EXACT, "parameters that received a gradient (all 12)")


def probe_block_init_shapes(m, width: int, feed_forward: str, layers: int, seed: int) -> dict:
    block = m.Block(width, 2, rng=seeded(seed), feed_forward=feed_forward, layers=layers)
    return {"shapes": {n: list(p.shape) for n, p in block.named_parameters()},
            "std": {n: float(p.data.std()) for n, p in block.named_parameters() if p.ndim == 2},
            "bias_max": max([float(np.abs(p.data).max()) for n, p in block.named_parameters() if n.endswith("bias")],
                            default=0.0)}


@pytest.mark.concept("residual-init")
@pytest.mark.parametrize("width, feed_forward, hidden", [(12, "swiglu", 32), (16, "swiglu", 48), (48, "gelu", 192)])
def test_feed_forward_hidden_sizes_and_residual_init_with_more_layers(target, reference, width, feed_forward, hidden):
    # hidden: 8 · ceil(width / 3) for SwiGLU (12 -> 32, 16 -> 48), 4 · width for the GELU MLP (48 -> 192)
    for who in (target, reference):
        got = who.run(probe_block_init_shapes, width=width, feed_forward=feed_forward, layers=6, seed=7130 + width)
        assert_close(got["shapes"]["feed_forward.down.weight"], [hidden, width], EXACT,
                     f"{who.target}: feed_forward.down.weight shape for width {width}, {feed_forward}", mistakes=(
                         Mistake("SwiGLU's hidden size is 8·width/3 rounded UP to a multiple of 8",
                                 lambda got, want: got[0] == int(8 * width / 3)),))
        assert_close(got["bias_max"], 0.0, EXACT, f"{who.target}: biases start at zero")
        if width == 48:  # down is 192 x 48 = 9216 draws: std's relative standard error 0.7%, allowed 5%
            assert_close(got["std"]["feed_forward.down.weight"], 0.02 / math.sqrt(12), Tol(0.05, 0, "5%: 7 standard "
                         "errors of a sample std"), f"{who.target}: std of feed_forward.down.weight, layers=6")
            assert_close(got["std"]["feed_forward.up.weight"], 0.02, Tol(0.05, 0, "5%"),
                         f"{who.target}: std of feed_forward.up.weight (not a residual projection)")


def probe_bad_block_options(m, options: list) -> list:
    # "a ValueError naming the option": its name or the value it does not know
    return [raised(m.Block, 8, 2, rng=seeded(0), **option, mentions=[[key, value] for key, value in option.items()])
            for option in options]


@pytest.mark.concept("block-options")
def test_block_rejects_unknown_norm_and_feed_forward(check):
    options = [{"norm": "batch"}, {"feed_forward": "relu"}, {"norm": "layer", "feed_forward": "gelu"}]
    got = check(probe_bad_block_options, options=options, tol=EXACT, what="Block(8, 2, ...) options")
    for option, record in zip(options[:2], got):
        assert_close(record, {"raised": "ValueError", "mentions": [list(*option.items())]}, EXACT,
                     f"Block(8, 2, {option})")
    assert_close(got[2], {"returned": "<Block object>"}, EXACT, f"Block(8, 2, {options[2]}): known options")
