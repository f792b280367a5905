"""Stage 02 (scalar autograd), hidden suite: other expressions, points, seeds, edge cases and a second toy task.

Like the visible suite, every test compares with the reference AND checks a hand-worked value, an invariant, or
central differences of the target's own forward pass (float64, eps=1e-6, GRADCHECK tolerance: rtol 1e-5, atol 1e-7).
"""
from __future__ import annotations

import math
import operator
import random

import numpy as np
import pytest

from grader.harness import (EXACT, F64, GRADCHECK, Mistake, Tol, assert_close, assert_true, central_difference, raised,
                            seeded)
from tests.stage02.helpers import OPS, gradients_at, judge_gradients, probe_train


# ---------------------------------------------------------------- more hand-worked gradients


def probe_quotient(m, a: float, b: float) -> dict:
    va, vb = m.Value(a), m.Value(b)
    f = (va - vb) / (va + vb)
    f.backward()
    return {"f": float(f.data), "df/da": float(va.grad), "df/db": float(vb.grad)}


@pytest.mark.concept("chain-rule")
def test_quotient_gradients_match_the_hand_computation(check):
    # f = (a - b) / (a + b) at a = 3, b = 1: f = 2 / 4 = 0.5
    # df/da = ((a + b) - (a - b)) / (a + b)^2 = 2b / 16 = 0.125;  df/db = -2a / (a + b)^2 = -6 / 16 = -0.375
    got = check(probe_quotient, a=3.0, b=1.0, tol=F64, what="f = (a - b) / (a + b) at a=3, b=1")
    assert_close(got, {"f": 0.5, "df/da": 0.125, "df/db": -0.375}, F64, "quotient worked by hand")


def probe_sigmoid_neuron(m, w: list, x: list, b: float) -> dict:
    ws, xs, vb = [m.Value(v) for v in w], [m.Value(v) for v in x], m.Value(b)
    out = (ws[0] * xs[0] + ws[1] * xs[1] + vb).sigmoid()
    out.backward()
    return {"out": float(out.data), "dw": [float(v.grad) for v in ws], "dx": [float(v.grad) for v in xs],
            "db": float(vb.grad)}


@pytest.mark.concept("chain-rule")
def test_sigmoid_neuron_gradients_match_the_hand_computation(check):
    # z = 1.5*2 + (-2)*1.5 + 0 = 0, sigmoid(0) = 0.5, sigmoid'(0) = 0.5 * 0.5 = 0.25
    # dw_i = x_i * 0.25 = [0.5, 0.375];  dx_i = w_i * 0.25 = [0.375, -0.5];  db = 0.25
    got = check(probe_sigmoid_neuron, w=[1.5, -2.0], x=[2.0, 1.5], b=0.0, tol=F64, what="sigmoid neuron")
    assert_close(got, {"out": 0.5, "dw": [0.5, 0.375], "dx": [0.375, -0.5], "db": 0.25}, F64,
                 "sigmoid neuron worked by hand")


def mixed(x, y):
    """Every op in one expression of two variables (log's argument stays above 0.5 for x, y in [-1, 1])."""
    return ((x * y - y / (x * x + 1)).sigmoid() * (x.tanh() - y).exp()
            + (2 - x) ** 3 / 7 + (1.5 * y + 0.3 * x * x + 2).log() - (-x).relu() * 0.5)


def probe_mixed_gradients(m, op: str, points: list) -> dict:
    return gradients_at(m, mixed, points)


@pytest.mark.concept("chain-rule")
@pytest.mark.parametrize("seed", [7, 8, 9])
def test_random_points_of_a_mixed_expression_match_central_differences(target, reference, seed):
    points = seeded(seed).uniform(-1.0, 1.0, size=(3, 2))
    points[np.abs(points[:, 0]) < 0.05, 0] = 0.3  # keep away from the relu kink at x = 0
    judge_gradients(target, reference, "mixed", points.tolist(), probe=probe_mixed_gradients)


# ---------------------------------------------------------------- edges of the ops


def probe_extremes(m, xs: list) -> dict:
    result = {}  # an OverflowError from exp of a huge number fails the test with the learner's traceback
    for name in ("sigmoid", "tanh"):
        values, grads = [], []
        for x in xs:
            leaf = m.Value(x)
            out = OPS[name](leaf)
            out.backward()
            values.append(float(out.data))
            grads.append(float(leaf.grad))
        result[name] = {"values": values, "grads": grads}
    return result


@pytest.mark.concept("stability")
def test_sigmoid_and_tanh_stay_finite_for_huge_inputs(check):
    xs = [-1000.0, -400.0, 400.0, 1000.0]  # never call exp on a large positive number: it overflows
    got = check(probe_extremes, xs=xs, tol=F64, what="sigmoid and tanh at huge |x|")
    # sigmoid -> 0 or 1, tanh -> -1 or 1, both with gradient 0 (to far below float precision)
    assert_close(got, {"sigmoid": {"values": [0.0, 0.0, 1.0, 1.0], "grads": [0.0] * 4},
                       "tanh": {"values": [-1.0, -1.0, 1.0, 1.0], "grads": [0.0] * 4}},
                 Tol(0.0, 1e-150, "the exact values are within 1e-170 of these"), "saturated values and gradients")


def probe_log_of_negative(m, x: float) -> dict:
    y = m.Value(x) * 1.0  # an interior node: the check belongs to log, whatever made its input
    positive = (m.Value(-x) * 1.0).log()
    return {f"log({x})": raised(y.log), f"log({-x})": float(positive.data)}


@pytest.mark.concept("conventions")
def test_log_of_a_negative_number_raises_value_error(check):
    got = check(probe_log_of_negative, x=-2.5, tol=F64, what="log of an interior node")
    assert_close(got, {"log(-2.5)": {"raised": "ValueError"}, "log(2.5)": math.log(2.5)}, F64,
                 "log(-2.5) raises ValueError; log(2.5) is defined")


def probe_special_exponents(m, x: float) -> dict:
    result = {}
    for name, p in (("x**0", 0), ("x**1", 1), ("x**0.5", 0.5), ("x**-2", -2)):
        leaf = m.Value(x)
        out = leaf ** p
        out.backward()
        result[name] = [float(out.data), float(leaf.grad)]
    interior = m.Value(x) + 1.0
    result["(x+1)**Value"] = raised(operator.pow, interior, interior)
    return result


@pytest.mark.concept("conventions")
def test_power_with_special_exponents(check):
    got = check(probe_special_exponents, x=4.0, tol=F64, what="powers of 4")
    # x^0 = 1 (slope 0); x^1 = 4 (slope 1); sqrt(4) = 2, slope 1/(2*2) = 0.25; 4^-2 = 1/16, slope -2/64 = -1/32
    by_hand = {"x**0": [1.0, 0.0], "x**1": [4.0, 1.0], "x**0.5": [2.0, 0.25], "x**-2": [0.0625, -0.03125]}
    assert_close(got, {**by_hand, "(x+1)**Value": {"raised": "TypeError"}}, F64,
                 "powers worked by hand; a Value exponent raises TypeError")


# ---------------------------------------------------------------- numerical_grad details


def cube(xs: list) -> float:
    return xs[0] ** 3


def probe_numerical_grad_details(m, xs: list, eps: float) -> dict:
    seen_types = []

    def product(values: list) -> float:
        seen_types.append(type(values).__name__)
        return values[0] * values[1] * values[1]

    original = list(xs)
    two = m.numerical_grad(product, xs)
    return {"cube, given eps": [float(g) for g in m.numerical_grad(cube, [2.0], eps=eps)],
            "product": [float(g) for g in two], "returns a list": type(two) is list,
            "f gets lists": all(t == "list" for t in seen_types),
            "xs unchanged": xs == original}


@pytest.mark.concept("numerical-grad")
def test_numerical_grad_honours_eps_and_leaves_its_input_alone(check):
    xs = seeded(260).uniform(0.5, 1.5, size=2).tolist()
    got = check(probe_numerical_grad_details, xs=xs, eps=1e-3, tol=Tol(1e-9, 1e-12, "the same float operations"),
                what="numerical_grad", mistakes=(
        Mistake("eps was ignored: with eps=1e-3, ((2 + h)^3 - (2 - h)^3) / (2h) = 12 + h^2 = 12.000001 exactly",
                lambda got, want: abs(got["cube, given eps"][0] - 12.0) < 1e-9),
    ))
    # central difference of x^3 at 2: ((2+h)^3 - (2-h)^3) / 2h = 3*2^2 + h^2 = 12 + 1e-6 with h = 1e-3
    assert_close(got["cube, given eps"], [12.000001], Tol(1e-12, 1e-9, "float rounding of the difference at h=1e-3"),
                 "numerical_grad(x^3, [2.0], eps=1e-3)")
    a, b = xs
    assert_close(got["product"], [b * b, 2 * a * b], Tol(1e-7, 1e-8, "central differences with eps=1e-6"),
                 "numerical_grad of a * b^2")
    assert_close({k: got[k] for k in ("returns a list", "f gets lists", "xs unchanged")},
                 {"returns a list": True, "f gets lists": True, "xs unchanged": True}, EXACT,
                 "lists in and out, xs left as it was")


def probe_numerical_vs_backward(m, xs: list) -> dict:
    def forward(values: list) -> float:
        return float(mixed(*(m.Value(v) for v in values)).data)
    leaves = [m.Value(v) for v in xs]
    mixed(*leaves).backward()
    at = np.array(xs, dtype=np.float64)
    return {"numerical_grad": [float(g) for g in m.numerical_grad(forward, xs)],
            "harness": central_difference(lambda: forward(at.tolist()), at).tolist(),
            "backward": [float(v.grad) for v in leaves]}


@pytest.mark.concept("numerical-grad")
def test_numerical_grad_of_your_forward_agrees_with_your_backward(check):
    xs = seeded(261).uniform(0.2, 1.0, size=2).tolist()
    got = check(probe_numerical_vs_backward, xs=xs, tol=GRADCHECK, what="numerical_grad vs backward")
    assert_close(got["numerical_grad"], got["harness"], Tol(1e-8, 1e-9, "the same central differences"),
                 "your numerical_grad vs the harness's central differences of the same forward")
    assert_close(got["backward"], got["numerical_grad"], GRADCHECK, "your backward vs your numerical_grad")


# ---------------------------------------------------------------- depth, fan-out, repeated passes


def probe_deep_mixed_chain(m, length: int, x: float) -> dict:
    leaf = m.Value(x)
    y = leaf
    for i in range(length):
        y = (y * 0.999 + 0.001).tanh() if i % 3 == 0 else y * 1.0005 - 0.0002
    backward = raised(y.backward)  # a recursive topological sort raises RecursionError here
    return {"backward": backward, "value": float(y.data), "grad": float(leaf.grad)}


@pytest.mark.concept("deep-graphs")
def test_a_6000_op_chain_of_mixed_ops_backpropagates(check):
    length, x = 2700, 0.3  # 900 steps of 3 ops (*, +, tanh) and 1800 of 2 (*, -): 6300 nodes deep
    got = check(probe_deep_mixed_chain, length=length, x=x, tol=F64, what="a deep chain of tanh, * and +", mistakes=(
        Mistake("backward() hit Python's recursion limit: use an explicit stack, not recursion",
                lambda got, want: got["backward"].get("raised") == "RecursionError"),))
    assert_close(got["backward"], {"returned": None}, EXACT, "backward() on the chain")
    y, slope = x, 1.0  # the same chain in floats, with the chain rule applied step by step
    for i in range(length):
        if i % 3 == 0:
            y = math.tanh(y * 0.999 + 0.001)
            slope *= 0.999 * (1 - y * y)
        else:
            y = y * 1.0005 - 0.0002
            slope *= 1.0005
    assert_close({"value": got["value"], "grad": got["grad"]}, {"value": y, "grad": slope},
                 Tol(1e-9, 1e-14, "float64 over thousands of ops"),
                 "value and dy/dx of the chain, by the chain rule in floats")


def probe_fan_out(m, x: float) -> dict:
    leaf = m.Value(x)
    f = leaf * leaf * leaf + leaf.exp() - 2 * leaf + leaf / (leaf + 1)
    f.backward()
    return {"f": float(f.data), "df/dx": float(leaf.grad)}


@pytest.mark.concept("accumulate")
def test_a_value_feeding_many_branches_sums_their_gradients(check):
    x = 0.5
    got = check(probe_fan_out, x=x, tol=F64, what="f = x^3 + e^x - 2x + x/(x + 1)")
    # df/dx = 3x^2 + e^x - 2 + 1/(x + 1)^2
    by_hand = {"f": x ** 3 + math.exp(x) - 2 * x + x / (x + 1), "df/dx": 3 * x * x + math.exp(x) - 2 + 1 / (x + 1) ** 2}
    assert_close(got, by_hand, F64, "fan-out worked by hand")


def probe_repeated_passes(m, x: float) -> dict:
    root_leaf = m.Value(x)
    root_leaf.backward()
    root_leaf.backward()  # a leaf that is its own output: d x / d x = 1, accumulated twice
    leaf = m.Value(x)
    mid = leaf.exp()
    out = mid * mid
    for _ in range(3):
        out.backward()
    return {"lone leaf": float(root_leaf.grad), "leaf after 3": float(leaf.grad), "mid after 3": float(mid.grad),
            "out after 3": float(out.grad)}


@pytest.mark.concept("backward-twice")
def test_three_backward_passes_triple_leaves_and_keep_interior_nodes(check):
    x = 0.25
    got = check(probe_repeated_passes, x=x, tol=F64, what="repeated backward()", mistakes=(
        Mistake("interior gradients from earlier passes leaked into later ones: reset them at the start of backward()",
                lambda got, want: got["mid after 3"] != want["mid after 3"]),
    ))
    # out = e^(2x): d out/d mid = 2 mid = 2 e^x;  d out/dx = 2 e^(2x), three passes add up to 6 e^(2x)
    assert_close(got, {"lone leaf": 2.0, "leaf after 3": 6 * math.exp(2 * x), "mid after 3": 2 * math.exp(x),
                       "out after 3": 1.0}, F64, "three passes worked by hand")


# ---------------------------------------------------------------- the MLP's parts


def probe_parts(m, seed: int, x: list) -> dict:
    rng = random.Random(seed)
    neuron = m.Neuron(3, rng, nonlinear=False)
    layer = m.Layer(3, 2, rng)
    neuron_out = neuron(x)
    layer_out = layer(x)
    return {"neuron parameters": [float(p.data) for p in neuron.parameters()],
            "neuron out": float(neuron_out.data),
            "layer parameters": [float(p.data) for p in layer.parameters()],
            "layer outputs": [float(v.data) for v in layer_out],
            "one-output MLP gives a list": type(m.MLP(3, [1], seed=seed)(x)) is list}


@pytest.mark.concept("mlp")
def test_neuron_and_layer_share_one_rng_in_order(check):
    x = [0.3, -0.8, 1.1]
    got = check(probe_parts, seed=42, x=x, tol=F64, what="Neuron(3, rng, nonlinear=False) then Layer(3, 2, rng)")
    rng = random.Random(42)
    draws = [rng.uniform(-1.0, 1.0) for _ in range(9)]  # 3 for the neuron, then 3 for each of the layer's 2 neurons
    w, layer_w = np.array(draws[:3]), np.array(draws[3:]).reshape(2, 3)  # (3,), (2, 3)
    by_hand = {"neuron parameters": draws[:3] + [0.0], "neuron out": float(w @ np.array(x)),
               "layer parameters": draws[3:6] + [0.0] + draws[6:9] + [0.0],
               "layer outputs": np.tanh(layer_w @ np.array(x)).tolist(), "one-output MLP gives a list": True}
    assert_close(got, by_hand, F64, "the documented draws and forward pass")


def probe_init_other_shape(m, seed: int) -> dict:
    model = m.MLP(3, [2, 2], seed=seed)
    return {"parameters": [float(p.data) for p in model.parameters()], "outputs": len(model([1.0, 2.0, 3.0]))}


@pytest.mark.concept("mlp-init")
def test_initialisation_of_a_two_output_mlp(check):
    got = check(probe_init_other_shape, seed=11, tol=F64, what="MLP(3, [2, 2], seed=11).parameters()")
    rng = random.Random(11)
    expected = []
    for n_in, n_out in ((3, 2), (2, 2)):
        for _ in range(n_out):
            expected += [rng.uniform(-1.0, 1.0) for _ in range(n_in)] + [0.0]
    assert_close(got, {"parameters": expected, "outputs": 2}, F64, "draws from random.Random(11) in parameter order")


@pytest.mark.concept("training")
def test_mlp_learns_a_ring_of_points(target, reference):
    # the centre against four points around it: the classes are separated by a ring, not by a line
    points = [[0.0, 0.0], [1.5, 0.0], [-1.5, 0.0], [0.0, 1.5], [0.0, -1.5]]
    labels = [1.0, -1.0, -1.0, -1.0, -1.0]
    inputs = dict(points=points, labels=labels, sizes=[4, 1], seed=2, steps=120, learning_rate=0.2)
    got = target.run(probe_train, **inputs)
    want = reference.run(probe_train, **inputs)
    losses = got["losses"]
    assert_true(all(math.isfinite(v) for v in losses), f"the loss became NaN or inf: {losses[-5:]}")
    assert_true(losses[-1] < 0.1 * losses[0], f"the loss fell from {losses[0]:.4f} only to {losses[-1]:.4f}")
    assert_close(np.sign(got["scores"]), np.array(labels), EXACT, "the sign of each score after training")
    assert_close(np.sign(got["scores"]), np.sign(want["scores"]), EXACT, "the trained classes vs the reference")
