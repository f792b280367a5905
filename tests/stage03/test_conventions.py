"""Stage 03 (the tensor engine), visible suite: the conventions of the docstrings that the other tests' inputs do not
expose (a mistake there would pass them and fail the hidden suite). Each test's input is chosen so that one plausible
mistake gives a different answer; tests/mutants/stage03.toml lists those mistakes.
"""
from __future__ import annotations

import numpy as np
import pytest

from grader.harness import EXACT, F64, Mistake, assert_close, raised, seeded
from tests.stage03.helpers import judge_gradients

# ---------------------------------------------------------------- unbroadcast


def probe_unbroadcast_contract(m, grad: np.ndarray, bad_shapes: list) -> dict:
    same = m.unbroadcast(grad, grad.shape)
    result = {"same shape returns grad itself": same is grad}
    for shape in bad_shapes:
        result[f"to {tuple(shape)}"] = raised(m.unbroadcast, grad, tuple(shape))
    return result


@pytest.mark.concept("unbroadcast")
def test_unbroadcast_returns_grad_itself_or_rejects_a_shape_it_cannot_come_from(check):
    # (4, 1) is not a broadcast of (2, 2) (4 is neither 2 nor 1), although it has as many elements: a reshape would
    # hide the mistake. (2, 3) cannot come from (3, 2) or from the longer (1, 2, 3, 4).
    grad = np.arange(4.0).reshape(4, 1)
    got = check(probe_unbroadcast_contract, grad=grad, bad_shapes=[[2, 2], [4, 2], [1, 1, 4, 2]], tol=EXACT,
                what="unbroadcast of a (4, 1) gradient", mistakes=(
                    Mistake("a gradient whose shape is not a broadcast of `shape` must raise ValueError, not be "
                            "reshaped", lambda got, want: "returned" in got["to (2, 2)"]),))
    assert_close(got["same shape returns grad itself"], True, EXACT,
                 "unbroadcast(grad, grad.shape) is grad (the docstring: 'Returns grad itself', no copy)")
    for shape in ("(2, 2)", "(4, 2)", "(1, 1, 4, 2)"):
        assert_close(got[f"to {shape}"], {"raised": "ValueError"}, EXACT, f"unbroadcast(grad of shape (4, 1), {shape})")


# ---------------------------------------------------------------- backward


def probe_backward_of_a_constant(m, x: np.ndarray) -> dict:
    constant = m.Tensor(x, dtype=np.float64) * 2.0  # no input requires grad: a constant
    leaf = m.Tensor(x, requires_grad=True, dtype=np.float64)
    with m.no_grad():
        made_without_graph = leaf * 2.0
    return {"constant": raised(constant.sum().backward), "inside no_grad": raised(made_without_graph.sum().backward)}


@pytest.mark.concept("backward-seed")
def test_backward_of_a_tensor_that_requires_no_grad_raises(check):
    got = check(probe_backward_of_a_constant, x=seeded(301).standard_normal((2, 3)), tol=EXACT,
                what="backward() with nothing to differentiate")
    assert_close(got, {"constant": {"raised": "RuntimeError"}, "inside no_grad": {"raised": "RuntimeError"}}, EXACT,
                 "backward() on a tensor that does not require grad (a constant, or a result made inside no_grad())")


def probe_leaf_gradients_are_their_own(m, x: np.ndarray, y: np.ndarray, upstream: np.ndarray) -> dict:
    a = m.Tensor(x, requires_grad=True, dtype=np.float64)
    b = m.Tensor(y, requires_grad=True, dtype=np.float64)
    given = upstream.copy()
    (a + b).backward(given)  # both leaves receive the upstream gradient unchanged
    a.grad *= 0.5  # what an optimizer may do in place (clipping, loss scaling)
    return {"a.grad": a.grad, "b.grad": b.grad, "the caller's upstream": given}


@pytest.mark.concept("accumulation")
def test_each_leaf_gets_a_gradient_array_of_its_own(check):
    rng = seeded(302)
    x, y, upstream = rng.standard_normal((2, 3)), rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    got = check(probe_leaf_gradients_are_their_own, x=x, y=y, upstream=upstream, what="a + b, then a.grad *= 0.5",
                mistakes=(Mistake("a leaf's .grad was the upstream array itself, shared with the other leaf and the "
                                  "caller: store a copy (g.copy() or g.astype(dtype, copy=True))",
                                  lambda got, want: np.allclose(got["b.grad"], 0.5 * upstream)),))
    assert_close(got, {"a.grad": 0.5 * upstream, "b.grad": upstream, "the caller's upstream": upstream}, F64,
                 "scaling a.grad in place must change neither b.grad nor the array passed to backward()")


# ---------------------------------------------------------------- shapes


@pytest.mark.concept("shapes")
def test_transpose_gradient_uses_the_inverse_permutation(target, check):
    # (1, 2, 0) is a cycle, not a swap: its inverse is (2, 0, 1). Sending the gradient through (1, 2, 0) again gives
    # an array of the wrong shape here ((3, 4, 2) -> (4, 2, 3), where the input is (2, 3, 4)).
    judge_gradients(target, check, "transpose_axes", [seeded(303).standard_normal((2, 3, 4))], {"axes": [1, 2, 0]},
                    mistakes=(Mistake("the gradient went through the same permutation; it must go through the "
                                      "inverse one, np.argsort(axes)", lambda got, want: True),))
