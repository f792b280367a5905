"""Stage 02 (scalar autograd), visible suite: the conventions of the docstrings that the other tests' inputs do not
expose (a mistake there would pass them and fail the hidden suite). Each test's input is chosen so that one plausible
mistake gives a different answer; tests/mutants/stage02.toml lists those mistakes.
"""
from __future__ import annotations

import math
import random

import pytest

from grader.harness import EXACT, F64, Mistake, Tol, assert_close, assert_true, raised


def _value_and_gradient(m, op: str, x: float) -> list:
    leaf = m.Value(x)
    out = getattr(leaf, op)()
    out.backward()
    return [float(out.data), float(leaf.grad)]


OVERFLOW = Mistake("exp() of a large number overflows: use math.tanh, and for sigmoid of x < 0 use e^x / (1 + e^x)",
                   lambda got, want: "OverflowError" in str(got))


def probe_saturated(m, xs: list) -> dict:
    return {f"{op}({x})": raised(_value_and_gradient, m, op, x) for op in ("tanh", "sigmoid") for x in xs}


@pytest.mark.concept("stability")
def test_tanh_and_sigmoid_are_finite_far_from_zero(check):
    # e^800 overflows a float (the largest is ~1.8e308 = e^709.8): tanh through (e^x - e^-x) / (e^x + e^-x), or
    # sigmoid through 1 / (1 + e^-x) at x = -800, raise OverflowError. Both saturate: the values are +-1 and 0 or 1,
    # the gradients 0.
    xs = [800.0, -800.0, 30.0]
    got = check(probe_saturated, xs=xs, tol=F64, what="[value, gradient] far from 0", mistakes=(OVERFLOW,))
    t30 = 1.0 - 2.0 / (1.0 + math.exp(60.0))  # tanh(30): 1 - 2e-26, exactly 1 in float64
    s30 = 1.0 / (1.0 + math.exp(-30.0))  # 1 - 9.4e-14
    by_hand = {"tanh(800.0)": [1.0, 0.0], "tanh(-800.0)": [-1.0, 0.0], "tanh(30.0)": [t30, 1.0 - t30 * t30],
               "sigmoid(800.0)": [1.0, 0.0], "sigmoid(-800.0)": [0.0, 0.0], "sigmoid(30.0)": [s30, s30 * (1 - s30)]}
    stable = Tol(1e-9, 1e-15, "saturated values are exact to the last bits; the gradients are ~1e-13 or 0")
    for name, want in by_hand.items():
        assert_close(got[name], {"returned": want}, stable, f"{name}: [value, gradient]", mistakes=(OVERFLOW,))


def probe_leaf_backward(m, x: float, calls: int) -> list:
    leaf = m.Value(x)
    grads = []
    for _ in range(calls):
        leaf.backward()
        grads.append(float(leaf.grad))
    return grads


@pytest.mark.concept("backward-twice")
def test_backward_adds_one_to_the_outputs_own_gradient(check):
    # backward() on a leaf: step 3 of the docstring ADDS 1 to self.grad, and a leaf accumulates, so 1, 2, 3.
    got = check(probe_leaf_backward, x=2.0, calls=3, tol=EXACT, what="Value(2.0).backward() three times")
    assert_close(got, [1.0, 2.0, 3.0], EXACT, "a leaf's grad after each backward() on itself", mistakes=(
        Mistake("self.grad = 1 instead of self.grad += 1: the output's own gradient must accumulate like any leaf's",
                lambda got, want: got == [1.0, 1.0, 1.0]),))


def cube(xs: list) -> float:
    return xs[0] ** 3


def probe_numerical_eps(m, xs: list, eps: float) -> list:
    return [float(g) for g in m.numerical_grad(cube, xs, eps=eps)]


@pytest.mark.concept("numerical-grad")
def test_numerical_grad_uses_the_eps_it_is_given(check):
    # ((x + e)^3 - (x - e)^3) / (2 e) = 3 x^2 + e^2: at x = 2 with e = 0.1 that is 12.01, not the derivative 12.
    got = check(probe_numerical_eps, xs=[2.0], eps=0.1, tol=F64, what="numerical_grad(x^3, [2.0], eps=0.1)")
    assert_close(got, [12.01], Tol(1e-12, 0.0, "a few roundings in 3 x^2 + e^2"),
                 "central difference of x^3 at 2 with eps = 0.1: 3 x^2 + eps^2", mistakes=(
                     Mistake("the eps argument was ignored: use the eps passed in, not a fixed 1e-6",
                             lambda got, want: abs(got[0] - 12.0) < 1e-6),))


def probe_neuron_inputs(m, n_inputs: int, sizes: list) -> dict:
    neuron = m.Neuron(n_inputs, random.Random(0))
    return {f"{size} inputs": raised(lambda x: float(neuron(x).data), [0.5] * size) for size in sizes}


@pytest.mark.concept("forward")
def test_a_neuron_rejects_the_wrong_number_of_inputs(check):
    got = check(probe_neuron_inputs, n_inputs=3, sizes=[2, 4, 3], tol=F64, what="Neuron(3, rng)(x)")
    for size in (2, 4):
        assert_close(got[f"{size} inputs"], {"raised": "ValueError"}, EXACT,
                     f"Neuron(3, rng) called on {size} inputs (zip() would silently drop or miss some)")
    assert_true("returned" in got["3 inputs"], f"Neuron(3, rng) called on 3 inputs: expected a Value, but it raised "
                                               f"{got['3 inputs'].get('raised')}: {got['3 inputs'].get('message')}")
