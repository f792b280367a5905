"""Stage 04 (a neural language model), visible suite: Linear and Embedding.

Forward values are checked against NumPy written out in the test, gradients against central differences in float64,
and initialisations against their stated distributions. Conventions: exercises/nn.py and docs/04-nn.md, "Layers".
"""
from __future__ import annotations


import numpy as np
import pytest

from grader.harness import EXACT, F32, F64, GRADCHECK, Mistake, Tol, assert_close, central_difference, seeded, sibling
from tests.stage04.helpers import grad_or_zeros


# ---------------------------------------------------------------- Linear


def probe_linear_forward(m, weight: np.ndarray, bias: np.ndarray, inputs: list) -> dict:
    T = sibling(m, "tensor")
    layer = m.Linear(*weight.shape, rng=np.random.default_rng(0), dtype=np.float64)
    layer.weight.data[...] = weight
    layer.bias.data[...] = bias
    return {"shapes": [list(layer.weight.shape), list(layer.bias.shape)],
            "outputs": [layer(T.Tensor(x, dtype=np.float64)).data for x in inputs]}


@pytest.mark.concept("linear")
def test_linear_is_x_at_weight_plus_bias(check):
    rng = seeded(410)
    weight, bias = rng.standard_normal((4, 3)), rng.standard_normal(3)
    inputs = [rng.standard_normal((5, 4)), rng.standard_normal((2, 5, 4))]  # a batch, and a batch of sequences
    got = check(probe_linear_forward, weight=weight, bias=bias, inputs=inputs, tol=F64, what="Linear outputs")
    assert_close(got["shapes"], [[4, 3], [3]], EXACT, "shapes of weight (in, out) and bias (out,)")
    assert_close(got["outputs"], [x @ weight + bias for x in inputs], F64, "Linear(x) vs x @ weight + bias", mistakes=(
        Mistake("the bias was not added", lambda got, want: np.allclose(got[0], want[0] - bias)),))


def probe_linear_gradients(m, x: np.ndarray, upstream: np.ndarray) -> dict:
    T = sibling(m, "tensor")
    layer = m.Linear(x.shape[-1], upstream.shape[-1], rng=np.random.default_rng(1), dtype=np.float64)
    inputs = T.Tensor(x, requires_grad=True, dtype=np.float64)
    (layer(inputs) * upstream).sum().backward()  # L = sum(y * upstream), so dL/dy = upstream

    def loss() -> float:
        return float((layer(T.Tensor(x, dtype=np.float64)).data * upstream).sum())

    return {"analytic": {"weight": grad_or_zeros(layer.weight), "bias": grad_or_zeros(layer.bias),
                         "x": grad_or_zeros(inputs)},
            "numeric": {"weight": central_difference(loss, layer.weight.data),
                        "bias": central_difference(loss, layer.bias.data), "x": central_difference(loss, x)},
            "x": x, "upstream": upstream}


@pytest.mark.concept("linear")
def test_linear_gradients_match_central_differences(check):
    rng = seeded(411)
    x, upstream = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 5))
    got = check(probe_linear_gradients, x=x, upstream=upstream, tol=F64, what="Linear gradients")
    assert_close(got["analytic"], got["numeric"], GRADCHECK, "backward vs central differences")
    # by hand: dL/db sums the upstream over every batch position; dL/dW = sum over positions of x^T upstream
    assert_close(got["analytic"]["bias"], upstream.sum(axis=(0, 1)), F64, "dL/dbias = upstream summed over (B, T)")
    assert_close(got["analytic"]["weight"], np.einsum("bti,bto->io", x, upstream), F64, "dL/dweight = x^T upstream")


def probe_init(m, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    default = m.Linear(256, 128, rng=rng)
    narrow = m.Linear(64, 100, rng=rng, std=0.02)
    table = m.Embedding(300, 64, rng=rng)
    again = m.Linear(256, 128, rng=np.random.default_rng(seed))
    return {"linear std": float(default.weight.data.std()), "linear mean": float(default.weight.data.mean()),
            "narrow std": float(narrow.weight.data.std()), "embedding std": float(table.weight.data.std()),
            "embedding mean": float(table.weight.data.mean()),
            "bias": default.bias.data, "dtypes": [str(default.weight.dtype), str(default.bias.dtype),
                                                   str(table.weight.dtype)],
            "requires_grad": [default.weight.requires_grad, default.bias.requires_grad, table.weight.requires_grad],
            "first weight": default.weight.data, "same seed": again.weight.data}


# The standard deviation of n samples of N(0, s^2) has a standard error of about s / sqrt(2n), its mean s / sqrt(n).
# Five standard errors: the weight matrices here have n >= 6,400 elements, so 5/sqrt(2n) <= 4.5%.
STD_TOL = Tol(0.045, 0.0, "a sample std of >= 6,400 draws lies within 5 standard errors (4.5%) of the true std")


@pytest.mark.concept("init")
def test_initialisations_have_the_stated_distributions_and_follow_the_seed(check):
    std_mistakes = (Mistake("std 1/in_features instead of 1/sqrt(in_features)",
                            lambda got, want: abs(got["linear std"] - 1 / 256) < 0.01),
                    Mistake("the fan-in is in_features, not out_features: std = 1/sqrt(in_features)",
                            lambda got, want: abs(got["linear std"] - 1 / np.sqrt(128)) < 0.005))
    got = check(probe_init, seed=412, tol=F32, what="initial weights", mistakes=std_mistakes)
    assert_close(got, {**got, "linear std": 1 / np.sqrt(256)}, STD_TOL, "std of Linear(256, 128).weight = 1/sqrt(256)",
                 mistakes=std_mistakes)
    assert_close(got["narrow std"], 0.02, STD_TOL, "std of Linear(64, 100, std=0.02).weight")
    assert_close(got["embedding std"], 1.0, STD_TOL, "std of Embedding(300, 64).weight (default std 1)")
    assert_close(got["linear mean"], 0.0, Tol(0.0, 5 / 16 / np.sqrt(256 * 128), "5 standard errors of the mean"),
                 "mean of Linear(256, 128).weight")
    assert_close(got["embedding mean"], 0.0, Tol(0.0, 5 / np.sqrt(300 * 64), "5 standard errors of the mean"),
                 "mean of Embedding(300, 64).weight")
    assert_close(got["bias"], np.zeros(128), EXACT, "Linear bias starts at zero")
    assert_close(got["dtypes"], ["float32"] * 3, EXACT, "default dtypes")
    assert_close(got["requires_grad"], [True] * 3, EXACT, "parameters require grad")
    # the stated draw: one rng.standard_normal((in, out)) call, times std, cast to float32
    stated = (np.random.default_rng(412).standard_normal((256, 128)) / 16).astype(np.float32)
    assert_close(got["first weight"], stated, EXACT, "Linear(256, 128, rng=default_rng(412)).weight vs "
                 "(rng.standard_normal((256, 128)) * std).astype(float32)", mistakes=(
                     Mistake("drawn as (out, in) and transposed: draw the (in_features, out_features) shape",
                             lambda got, want: got.shape == want.shape and np.allclose(
                                 got, (np.random.default_rng(412).standard_normal((128, 256)) / 16).T)),))
    assert_close(got["same seed"], got["first weight"], EXACT, "the same seed gives the same weights")


# ---------------------------------------------------------------- Embedding


def probe_embedding_forward(m, seed: int, ids_list: list) -> dict:
    table = m.Embedding(6, 4, rng=np.random.default_rng(seed))
    return {"weight": table.weight.data, "outputs": [table(ids).data for ids in ids_list]}


@pytest.mark.concept("embedding")
def test_embedding_looks_up_rows_for_ids_of_any_shape(check):
    ids_list = [np.array([3, 0, 5]), np.array([[1, 2], [2, 1], [0, 0]])]
    got = check(probe_embedding_forward, seed=413, ids_list=ids_list, tol=EXACT, what="Embedding lookups")
    weight = got["weight"]
    stated = np.random.default_rng(413).standard_normal((6, 4)).astype(np.float32)  # std 1: one draw of (num, dim)
    assert_close(weight, stated, EXACT, "Embedding(6, 4, rng=default_rng(413)).weight")
    assert_close(got["outputs"], [weight[ids] for ids in ids_list], EXACT, "Embedding(ids) = weight[ids], shape "
                 "ids.shape + (dim,)")


def probe_embedding_gradient(m, ids: np.ndarray, upstream: np.ndarray) -> np.ndarray:
    table = m.Embedding(5, upstream.shape[-1], rng=np.random.default_rng(2), dtype=np.float64)
    (table(ids) * upstream).sum().backward()
    return grad_or_zeros(table.weight)


@pytest.mark.concept("embedding")
def test_embedding_gradient_accumulates_over_repeated_ids(check):
    ids = np.array([[1, 1, 2], [1, 0, 0]])
    upstream = seeded(414).standard_normal((2, 3, 4))
    # each row's gradient is the sum of the upstream rows that read it; rows 3 and 4 were never read
    hand = np.zeros((5, 4))
    hand[0] = upstream[1, 1] + upstream[1, 2]
    hand[1] = upstream[0, 0] + upstream[0, 1] + upstream[1, 0]
    hand[2] = upstream[0, 2]
    got = check(probe_embedding_gradient, ids=ids, upstream=upstream, tol=F64, what="Embedding weight gradient",
                mistakes=(Mistake("a repeated id kept only one of its gradients (grad[ids] = g instead of np.add.at)",
                                  lambda got, want: not np.allclose(got[1], hand[1])
                                  and np.allclose(got[2], hand[2])),))
    assert_close(got, hand, F64, "gradient of the table: rows summed over their uses")
