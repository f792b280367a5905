"""Stage 07 (transformer blocks), visible suite: the fused ops layer_norm, rms_norm, gelu, silu and swiglu.

Every test runs a probe on your module and on the reference and compares the two, and also checks something that does
not trust the reference: a value worked out by hand in the comments, an invariant, central differences of YOUR forward
pass (grader.harness.central_difference, float64, judged at GRADCHECK), or the same function composed from the
primitive Tensor ops of stage 03 (slower, obviously right). Conventions: exercises/blocks.py and docs/07-blocks.md.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.harness import GRADCHECK, Mistake, Tol, assert_close, central_difference, seeded

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
# the fused op and its composition from primitives compute the same float64 numbers in a different order
COMPOSED = Tol(1e-8, 1e-10, "float64; the fused op and the composition of primitive ops round differently")
HAND = Tol(1e-6, 1e-6, "values worked out by hand to 6-7 significant digits")


# ---------------------------------------------------------------- the ops, fused and composed from primitives

def composed_layer_norm(x, weight, bias, eps):
    centered = x - x.mean(axis=-1, keepdims=True)  # (..., C)
    variance = (centered * centered).mean(axis=-1, keepdims=True)  # (..., 1), divided by C
    return centered / (variance + eps) ** 0.5 * weight + bias


def composed_rms_norm(x, weight, eps):
    return x / ((x * x).mean(axis=-1, keepdims=True) + eps) ** 0.5 * weight


def composed_gelu(x):
    return 0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).tanh())


def composed_silu(x):
    return x * x.sigmoid()


def composed_swiglu(gate, up):
    return gate * gate.sigmoid() * up


# name -> (argument names, fused call, composition); eps is ignored by the activations
OPS = {
    "layer_norm": (("x", "weight", "bias"), lambda m, a, eps: m.layer_norm(*a, eps=eps),
                   lambda m, a, eps: composed_layer_norm(*a, eps)),
    "rms_norm": (("x", "weight"), lambda m, a, eps: m.rms_norm(*a, eps=eps),
                 lambda m, a, eps: composed_rms_norm(*a, eps)),
    "gelu": (("x",), lambda m, a, eps: m.gelu(*a), lambda m, a, eps: composed_gelu(*a)),
    "silu": (("x",), lambda m, a, eps: m.silu(*a), lambda m, a, eps: composed_silu(*a)),
    "swiglu": (("gate", "up"), lambda m, a, eps: m.swiglu(*a), lambda m, a, eps: composed_swiglu(*a)),
}


def _forward_and_backward(m, fn, arrays: list, upstream: np.ndarray, eps: float, dtype) -> tuple:
    leaves = [m.Tensor(a, requires_grad=True, dtype=dtype) for a in arrays]
    out = fn(m, leaves, eps)
    out.backward(upstream.astype(dtype))
    return out, leaves


def probe_gradcheck(m, op: str, inputs: dict, upstream: np.ndarray, eps: float = 1e-5) -> dict:
    """Forward, backward of L = sum(out * upstream), and central differences of L, all in float64."""
    names, fused, _ = OPS[op]
    arrays = [inputs[name] for name in names]
    out, leaves = _forward_and_backward(m, fused, arrays, upstream, eps, np.float64)

    def loss() -> float:  # reads `arrays`, which central_difference perturbs in place
        return float((fused(m, [m.Tensor(a, dtype=np.float64) for a in arrays], eps).data * upstream).sum())

    return {"out": out.data, "grads": {n: leaf.grad for n, leaf in zip(names, leaves)},
            "numeric": {n: central_difference(loss, a) for n, a in zip(names, arrays)}}


def probe_composed(m, op: str, inputs: dict, upstream: np.ndarray, eps: float = 1e-5) -> dict:
    """The fused op and its composition from primitives: outputs and gradients, float64."""
    names, fused, composed = OPS[op]
    result = {}
    for label, fn in (("fused", fused), ("composed", composed)):
        out, leaves = _forward_and_backward(m, fn, [inputs[n] for n in names], upstream, eps, np.float64)
        result[label] = {"out": out.data, **{f"d{n}": leaf.grad for n, leaf in zip(names, leaves)}}
    return result


def probe_forward(m, op: str, inputs: dict, eps: float = 1e-5) -> np.ndarray:
    names, fused, _ = OPS[op]
    return fused(m, [m.Tensor(inputs[n], dtype=np.float64) for n in names], eps).data


def _judge_gradcheck(got: dict, what: str, mistakes: dict | None = None) -> None:
    for name, numeric in got["numeric"].items():
        assert_close(got["grads"][name], numeric, GRADCHECK, f"{what}: d/d{name} (backward vs central differences)",
                     mistakes=(mistakes or {}).get(name, ()))


def _judge_composed(got: dict, what: str) -> None:
    for key, want in got["composed"].items():
        assert_close(got["fused"][key], want, COMPOSED, f"{what}: fused {key} vs the composition of primitive ops")


def _normalised(x: np.ndarray, eps: float, centre: bool) -> tuple[np.ndarray, np.ndarray]:
    """x̂ and 1/σ (LayerNorm, centre=True) or 1/r (RMSNorm), by NumPy, for the judges' mistake signatures."""
    centered = x - x.mean(axis=-1, keepdims=True) if centre else x
    inverse = 1.0 / np.sqrt((centered ** 2).mean(axis=-1, keepdims=True) + eps)
    return centered * inverse, inverse


def _norm_inputs(seed: int, shape: tuple, with_bias: bool = True) -> dict:
    rng = seeded(seed)
    rows = shape[:-1] + (1,)
    inputs = {"x": rng.normal(size=shape) * rng.uniform(0.5, 3.0, size=rows) + rng.normal(size=rows),
              "weight": 1.0 + 0.5 * rng.normal(size=shape[-1])}
    if with_bias:
        inputs["bias"] = 0.5 * rng.normal(size=shape[-1])
    return inputs


# ---------------------------------------------------------------- layer_norm


@pytest.mark.concept("layer-norm")
def test_layer_norm_rows_have_mean_0_and_variance_1_before_the_affine(check):
    rng = seeded(701)
    x = rng.normal(size=(4, 9)) * np.array([[0.1], [1.0], [5.0], [30.0]]) + 7.0  # rows of very different scales
    plain_affine = {"x": x, "weight": np.ones(9), "bias": np.zeros(9)}
    unbiased = Mistake("the variance is divided by C - 1 (unbiased); LayerNorm divides by C",
                       lambda got, want: np.allclose(np.var(got, axis=-1), 8 / 9, atol=1e-6))
    got = check(probe_forward, op="layer_norm", inputs=plain_affine, eps=0.0, what="layer_norm(x, 1, 0, eps=0)",
                mistakes=(unbiased,))
    assert_close(got.mean(axis=-1), np.zeros(4), Tol(0, 1e-12, "float64 rounding"), "row means of x̂ (eps=0)")
    assert_close(np.var(got, axis=-1), np.ones(4), Tol(1e-12, 0, "float64 rounding"),
                 "row variances (divided by C) of x̂ (eps=0)", mistakes=(unbiased,))
    # with eps, var(x̂) = v / (v + eps) exactly, v the row's variance: visible for the row of scale 0.1 (v ≈ 0.01)
    got = check(probe_forward, op="layer_norm", inputs=plain_affine, eps=1e-3, what="layer_norm(x, 1, 0, eps=1e-3)")
    v = np.var(x, axis=-1)
    assert_close(np.var(got, axis=-1), v / (v + 1e-3), Tol(1e-10, 0, "float64 rounding"),
                 "row variances of x̂ with eps=1e-3: v / (v + eps), eps inside the square root", mistakes=(
                     Mistake("eps is added outside the square root: use 1/sqrt(var + eps)",
                             lambda got, want: np.allclose(got, v / (np.sqrt(v) + 1e-3) ** 2, rtol=1e-6)),))
    # the affine: y = x̂ · w + b, per feature
    inputs = _norm_inputs(702, (4, 9))
    got = check(probe_forward, op="layer_norm", inputs=inputs, what="layer_norm(x, w, b)")
    x_hat, _ = _normalised(inputs["x"], 1e-5, centre=True)
    assert_close(got, x_hat * inputs["weight"] + inputs["bias"], Tol(1e-10, 1e-12, "float64 rounding"),
                 "layer_norm(x, w, b) = x̂ · w + b computed by NumPy")


@pytest.mark.concept("layer-norm")
def test_layer_norm_is_invariant_to_adding_a_constant_to_a_row(check):
    inputs = _norm_inputs(703, (3, 5, 8))
    shift = seeded(704).normal(size=(3, 5, 1)) * 100.0  # one constant per row
    shifted = dict(inputs, x=inputs["x"] + shift)
    got = check(probe_forward, op="layer_norm", inputs=inputs, what="layer_norm(x)")
    got_shifted = check(probe_forward, op="layer_norm", inputs=shifted, what="layer_norm(x + c)")
    assert_close(got_shifted, got, Tol(1e-9, 1e-9, "float64; x - μ cancels the shift up to rounding of |c| ~ 100"),
                 "layer_norm(x + c per row) vs layer_norm(x): the mean must be subtracted")


@pytest.mark.concept("layer-norm-backward")
def test_layer_norm_gradients_match_central_differences(check):
    inputs = _norm_inputs(705, (2, 3, 6))  # leading axes (2, 3): weight and bias gradients sum over both
    upstream = seeded(706).normal(size=(2, 3, 6))
    got = check(probe_gradcheck, op="layer_norm", inputs=inputs, upstream=upstream, tol=GRADCHECK,
                what="layer_norm gradcheck")
    x_hat, inv_std = _normalised(inputs["x"], 1e-5, centre=True)
    gw = upstream * inputs["weight"]
    mistakes = {"x": (
        Mistake("dx treats μ and σ as constants (dx = G·w/σ); they depend on x: dx = (1/σ)(G·w - mean(G·w) - "
                "x̂·mean(G·w·x̂))", lambda got, want: np.allclose(got, gw * inv_std, atol=1e-6)),
        Mistake("dx lacks the -mean(G·w) term (the gradient through μ)",
                lambda got, want: np.allclose(got, inv_std * (gw - x_hat * (gw * x_hat).mean(-1, keepdims=True)),
                                              atol=1e-6)),
        Mistake("dx lacks the -x̂·mean(G·w·x̂) term (the gradient through σ)",
                lambda got, want: np.allclose(got, inv_std * (gw - gw.mean(-1, keepdims=True)), atol=1e-6)),
    ), "weight": (Mistake("dweight is the sum of G, without the factor x̂",
                          lambda got, want: np.allclose(got, upstream.sum(axis=(0, 1)))),)}
    _judge_gradcheck(got, "layer_norm", mistakes)


@pytest.mark.concept("layer-norm-backward")
def test_layer_norm_matches_its_composition_from_primitive_ops(check):
    inputs = _norm_inputs(707, (5, 7))
    upstream = seeded(708).normal(size=(5, 7))
    got = check(probe_composed, op="layer_norm", inputs=inputs, upstream=upstream, tol=COMPOSED,
                what="layer_norm fused and composed")
    _judge_composed(got, "layer_norm")


# ---------------------------------------------------------------- rms_norm


@pytest.mark.concept("rms-norm")
def test_rms_norm_rows_have_mean_square_1(check):
    rng = seeded(711)
    x = rng.normal(size=(3, 10)) * np.array([[0.01], [1.0], [50.0]]) + 2.0
    got = check(probe_forward, op="rms_norm", inputs={"x": x, "weight": np.ones(10)}, eps=0.0,
                what="rms_norm(x, 1, eps=0)")
    assert_close((got ** 2).mean(axis=-1), np.ones(3), Tol(1e-12, 0, "float64 rounding"), "row mean squares of x̂")
    # by hand: x = [3, 4], mean(x²) = 12.5, r = sqrt(12.5 + eps); with w = [2, -1]: y = [6, -4] / r
    got = check(probe_forward, op="rms_norm", inputs={"x": np.array([[3.0, 4.0]]), "weight": np.array([2.0, -1.0])},
                eps=0.5, what="rms_norm([3, 4], w=[2, -1], eps=0.5)")
    assert_close(got, np.array([[6.0, -4.0]]) / math.sqrt(13.0), Tol(1e-12, 0, "float64 rounding"),
                 "rms_norm([3, 4], w=[2, -1], eps=0.5) = [6, -4] / sqrt(12.5 + 0.5) by hand", mistakes=(
                     Mistake("divided by sqrt(sum(x²)) instead of sqrt(mean(x²))",
                             lambda got, want: np.allclose(got, [[6.0, -4.0]] / np.sqrt(25.5))),
                     Mistake("eps added outside the square root", lambda got, want: np.allclose(
                         got, [[6.0, -4.0]] / (math.sqrt(12.5) + 0.5))),
                     Mistake("the mean is subtracted (that is LayerNorm); RMSNorm only divides by the RMS",
                             lambda got, want: np.allclose(got, [[-1.0, -0.5]] / math.sqrt(0.75)))))


@pytest.mark.concept("rms-norm")
def test_rms_norm_is_invariant_to_scaling_a_row_by_a_positive_constant(check):
    inputs = _norm_inputs(712, (4, 6), with_bias=False)
    scale = seeded(713).uniform(0.01, 100.0, size=(4, 1))  # one positive constant per row
    got = check(probe_forward, op="rms_norm", inputs=inputs, eps=0.0, what="rms_norm(x)")
    got_scaled = check(probe_forward, op="rms_norm", inputs=dict(inputs, x=inputs["x"] * scale), eps=0.0,
                       what="rms_norm(k x)")
    assert_close(got_scaled, got, Tol(1e-12, 1e-14, "float64 rounding"), "rms_norm(k · x) vs rms_norm(x), k > 0, eps=0")


@pytest.mark.concept("rms-norm-backward")
def test_rms_norm_gradients_match_central_differences(check):
    inputs = _norm_inputs(714, (3, 2, 5), with_bias=False)
    upstream = seeded(715).normal(size=(3, 2, 5))
    got = check(probe_gradcheck, op="rms_norm", inputs=inputs, upstream=upstream, tol=GRADCHECK,
                what="rms_norm gradcheck")
    x_hat, inv_rms = _normalised(inputs["x"], 1e-5, centre=False)
    gw = upstream * inputs["weight"]
    mistakes = {"x": (
        Mistake("dx treats r as a constant (dx = G·w/r); r depends on x: dx = (1/r)(G·w - x̂·mean(G·w·x̂))",
                lambda got, want: np.allclose(got, gw * inv_rms, atol=1e-6)),
        Mistake("dx has LayerNorm's extra -mean(G·w) term; RMSNorm does not centre",
                lambda got, want: np.allclose(got, inv_rms * (gw - gw.mean(-1, keepdims=True)
                                                              - x_hat * (gw * x_hat).mean(-1, keepdims=True)),
                                              atol=1e-6)),
    )}
    _judge_gradcheck(got, "rms_norm", mistakes)


@pytest.mark.concept("rms-norm-backward")
def test_rms_norm_matches_its_composition_from_primitive_ops(check):
    inputs = _norm_inputs(716, (2, 4, 5), with_bias=False)
    upstream = seeded(717).normal(size=(2, 4, 5))
    got = check(probe_composed, op="rms_norm", inputs=inputs, upstream=upstream, tol=COMPOSED,
                what="rms_norm fused and composed")
    _judge_composed(got, "rms_norm")


# ---------------------------------------------------------------- gelu and silu


ERF_GELU = Mistake("this is the exact (erf) GELU, gelu(1) = 0.841345; the convention is the tanh form, 0.841192",
                   lambda got, want: abs(got["out"][2] - 0.841345) < 1e-5)


@pytest.mark.concept("gelu")
def test_gelu_at_hand_computed_points(check):
    points = np.array([-1.0, 0.0, 1.0, 2.0])
    got = check(probe_gradcheck, op="gelu", inputs={"x": points}, upstream=np.ones(4), tol=GRADCHECK,
                what="gelu at -1, 0, 1, 2", mistakes=(ERF_GELU,))
    # gelu(1) = 0.5 (1 + tanh(0.7978846 · 1.044715)) = 0.5 (1 + tanh(0.8335616)) = 0.841192
    # gelu(2) = 1 + tanh(0.7978846 · 2.35772) = 1 + tanh(1.8811724) = 1.954598; gelu(-x) = gelu(x) - x
    assert_close(got["out"], np.array([0.841192 - 1.0, 0.0, 0.841192, 1.954598]), HAND, "gelu at -1, 0, 1, 2",
                 mistakes=(Mistake(ERF_GELU.description, lambda g, w: abs(g[2] - 0.841345) < 1e-5),))
    # gelu'(0) = 1/2: the first term (1 + tanh 0)/2, the second vanishes with x
    assert_close(got["grads"]["x"][1], 0.5, HAND, "gelu'(0)")
    _judge_gradcheck(got, "gelu at -1, 0, 1, 2")


@pytest.mark.concept("silu")
def test_silu_at_hand_computed_points(check):
    points = np.array([-1.0, 0.0, 1.0])
    got = check(probe_gradcheck, op="silu", inputs={"x": points}, upstream=np.ones(3), tol=GRADCHECK,
                what="silu at -1, 0, 1")
    sigma1 = 1.0 / (1.0 + math.exp(-1.0))  # σ(1) = 0.7310586; silu(-x) = silu(x) - x
    assert_close(got["out"], np.array([sigma1 - 1.0, 0.0, sigma1]), HAND, "silu at -1, 0, 1 (silu(1) = σ(1))")
    # silu'(x) = σ(x)(1 + x(1 - σ(x))): 1/2 at 0, σ(1)(2 - σ(1)) = 0.9276705 at 1
    assert_close(got["grads"]["x"][1:], np.array([0.5, sigma1 * (2.0 - sigma1)]), HAND, "silu'(0), silu'(1)",
                 mistakes=(Mistake("the derivative is σ(x); the product rule adds x·σ(x)(1 - σ(x))",
                                   lambda got, want: abs(got[1] - sigma1) < 1e-6),))
    _judge_gradcheck(got, "silu at -1, 0, 1")


@pytest.mark.concept("gelu")
def test_gelu_gradients_and_composition_over_a_range(check):
    x = np.concatenate([np.linspace(-6.0, 6.0, 25), seeded(721).normal(size=(2, 5)).ravel()])
    upstream = seeded(722).normal(size=x.shape)
    got = check(probe_gradcheck, op="gelu", inputs={"x": x}, upstream=upstream, tol=GRADCHECK, what="gelu gradcheck")
    erf_derivative = upstream * np.array([0.5 * (1 + math.erf(v / math.sqrt(2)))  # Φ(x) + x φ(x)
                                          + v * math.exp(-v * v / 2) / math.sqrt(2 * math.pi) for v in x])
    tanh_slope_missing = 0.5 * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3))) * upstream
    _judge_gradcheck(got, "gelu", {"x": (
        Mistake("the derivative of the erf form is not the derivative of the tanh form's forward",
                lambda g, w: np.allclose(g, erf_derivative, atol=1e-5)),
        Mistake("only (1 + t)/2: the product rule also gives x/2 · (1 - t²) · du/dx",
                lambda g, w: np.allclose(g, tanh_slope_missing, atol=1e-5)))})
    assert_close(got["out"] - _numpy_gelu(-x), x, Tol(1e-12, 1e-12, "float64 rounding"),
                 "gelu(x) - gelu(-x) = x (a property of x·(1 + tanh(u(x)))/2 with u odd)")
    got = check(probe_composed, op="gelu", inputs={"x": x}, upstream=upstream, tol=COMPOSED, what="gelu composed")
    _judge_composed(got, "gelu")


def _numpy_gelu(x: np.ndarray) -> np.ndarray:
    """The tanh-form GELU in NumPy, for the judge."""
    return 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)))


@pytest.mark.concept("silu")
def test_silu_gradients_composition_and_large_inputs(check):
    x = np.concatenate([np.linspace(-8.0, 8.0, 17), [-1000.0, -60.0, 60.0, 1000.0]])
    upstream = np.ones_like(x)
    got = check(probe_gradcheck, op="silu", inputs={"x": x}, upstream=upstream, tol=GRADCHECK,
                what="silu gradcheck, with |x| up to 1000")
    # σ(-1000) underflows to 0 and σ(1000) is 1: silu is 0 and 1000 there, its slope 0 and 1; e^1000 must not appear
    assert_close(got["out"][[-4, -1]], np.array([0.0, 1000.0]), Tol(0, 1e-12, "exact in float64"),
                 "silu(-1000), silu(1000)", mistakes=(
                     Mistake("NaN from exp(-x) overflowing: compute σ(x) as (1 + tanh(x/2))/2 or branch on the sign",
                             lambda got, want: bool(np.isnan(got).any())),))
    assert_close(got["grads"]["x"][[-4, -1]], np.array([0.0, 1.0]), Tol(0, 1e-12, "exact in float64"),
                 "silu'(-1000), silu'(1000)")
    _judge_gradcheck(got, "silu")
    x = x[:-4]  # the composition's sigmoid is stage 03's; keep to the range where both are accurate
    got = check(probe_composed, op="silu", inputs={"x": x}, upstream=np.ones_like(x), tol=COMPOSED,
                what="silu composed")
    _judge_composed(got, "silu")


# ---------------------------------------------------------------- swiglu: silu(gate) ⊙ up, fused


@pytest.mark.concept("swiglu-op")
def test_swiglu_at_hand_computed_points(check):
    gate, up = np.array([-1.0, 0.0, 1.0, 2.0]), np.array([3.0, -2.0, 0.5, 0.0])
    got = check(probe_gradcheck, op="swiglu", inputs={"gate": gate, "up": up}, upstream=np.ones(4), tol=GRADCHECK,
                what="swiglu at four points")
    sigma = 1.0 / (1.0 + np.exp(-gate))  # σ(-1) = 0.2689414, σ(0) = 1/2, σ(1) = 0.7310586, σ(2) = 0.8807971
    silu = gate * sigma
    # out = silu(gate) · up: -0.2689414 · 3, 0, 0.7310586 · 0.5, 1.7615942 · 0
    assert_close(got["out"], silu * up, HAND, "swiglu(gate, up) = silu(gate) · up", mistakes=(
        Mistake("silu applied to up instead of gate", lambda got, want: np.allclose(got, gate * up / (1 + np.exp(-up)))),
        Mistake("sigmoid(gate) · up (the GLU's sigmoid without the factor gate)",
                lambda got, want: np.allclose(got, sigma * up)),))
    # d/dup = silu(gate): at gate = 2 the up gradient is silu(2) = 1.7615942 although out is 0 there
    assert_close(got["grads"]["up"], silu, HAND, "d/dup = silu(gate)")
    # d/dgate = up · silu'(gate), silu'(x) = σ(x)(1 + x(1 - σ(x))): 3 · 0.0723295 at -1, -2 · 1/2 at 0, 0 at 2
    assert_close(got["grads"]["gate"], up * sigma * (1.0 + gate * (1.0 - sigma)), HAND, "d/dgate = up · silu'(gate)",
                 mistakes=(Mistake("d/dgate = up · σ(gate): the derivative of silu is not σ",
                                   lambda got, want: np.allclose(got, up * sigma)),))
    _judge_gradcheck(got, "swiglu at four points")


@pytest.mark.concept("swiglu-op")
def test_swiglu_gradients_and_composition_from_silu_and_a_product(check):
    rng = seeded(741)
    inputs = {"gate": rng.normal(size=(2, 3, 7)) * 3.0, "up": rng.normal(size=(2, 3, 7))}
    upstream = seeded(742).normal(size=(2, 3, 7))
    got = check(probe_gradcheck, op="swiglu", inputs=inputs, upstream=upstream, tol=GRADCHECK,
                what="swiglu gradcheck")
    _judge_gradcheck(got, "swiglu")
    got = check(probe_composed, op="swiglu", inputs=inputs, upstream=upstream, tol=COMPOSED,
                what="swiglu fused and composed")
    _judge_composed(got, "swiglu")


# ---------------------------------------------------------------- float32 stays float32


def probe_float32(m, inputs: dict, upstream: np.ndarray) -> dict:
    """Every fused op on float32 tensors: output, gradients and their dtypes, and the float64 result to compare."""
    result = {}
    for op, (names, fused, _) in OPS.items():
        for dtype in (np.float32, np.float64):
            out, leaves = _forward_and_backward(m, fused, [inputs[n] for n in names], upstream, 1e-5, dtype)
            key = f"{op}/{np.dtype(dtype).name}"
            result[key] = {"out": out.data, **{f"d{n}": leaf.grad for n, leaf in zip(names, leaves)}}
            result[key + "/dtypes"] = [str(out.dtype)] + [str(leaf.grad.dtype) for leaf in leaves]
    return result


@pytest.mark.concept("float32")
def test_float32_inputs_give_float32_outputs_and_gradients(check):
    inputs = _norm_inputs(731, (4, 3, 16))
    inputs["gate"], inputs["up"] = seeded(733).normal(size=(2, 4, 3, 16)) * 2.0  # swiglu's two projections
    inputs = {k: v.astype(np.float32) for k, v in inputs.items()}
    upstream = seeded(732).normal(size=(4, 3, 16)).astype(np.float32)
    got = check(probe_float32, inputs=inputs, upstream=upstream, tol=Tol(1e-4, 1e-5, "float32 arithmetic in "
                "another order"), what="fused ops in float32")
    for op, (names, _, _) in OPS.items():
        assert_close(got[f"{op}/float32/dtypes"], ["float32"] * (1 + len(names)), Tol(0, 0, "dtype names"),
                     f"{op}: dtypes of the output and of the gradients of {', '.join(names)} for float32 inputs")
        for key, want in got[f"{op}/float64"].items():
            # float32 keeps ~7 digits; the gradient of weight sums 12 rows, so allow a little more than F32
            assert_close(got[f"{op}/float32"][key], want, Tol(1e-4, 1e-5, "float32 vs float64 on the same inputs"),
                         f"{op}: {key} in float32 vs float64")
