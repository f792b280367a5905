"""Stage 03 (the tensor engine), visible suite: matmul, reductions, shapes, indexing, softmax and log-softmax.

Same method as test_tensor.py: each gradient is judged against central differences of YOUR forward pass (float64,
eps=1e-6, GRADCHECK tolerance: rtol 1e-5, atol 1e-7), each forward against NumPy or a value worked out by hand.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.harness import F32, F64, Mistake, assert_close, assert_true, seeded

from tests.stage03.helpers import judge_gradients

# ---------------------------------------------------------------- matmul


def probe_matmul_grads(m, a: np.ndarray, b: np.ndarray, upstream: np.ndarray) -> dict:
    ta = m.Tensor(a, requires_grad=True, dtype=np.float64)
    tb = m.Tensor(b, requires_grad=True, dtype=np.float64)
    out = ta @ tb
    out.backward(upstream)
    return {"out": out.data, "grad_a": ta.grad, "grad_b": tb.grad}


TRANSPOSE_MISTAKE = Mistake("dL/dA = G @ Bᵀ and dL/dB = Aᵀ @ G: check which factor is transposed, and that only "
                            "the last two axes are swapped", lambda got, want: got is not None)


@pytest.mark.concept("matmul")
def test_matmul_2d_worked_by_hand(target, check):
    a = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # (2, 3)
    b = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # (3, 2)
    upstream = np.array([[1.0, 0.0], [0.0, 2.0]])  # G = dL/dout, (2, 2)
    got = target.run(probe_matmul_grads, a=a, b=b, upstream=upstream)
    # out = [[1+3, 2+3], [4+6, 5+6]];  G @ Bᵀ = [[1, 0, 1], [0, 2, 2]];  Aᵀ @ G = [[1, 8], [2, 10], [3, 12]]
    assert_close(got["out"], np.array([[4.0, 5.0], [10.0, 11.0]]), F64, "A @ B")
    assert_close(got["grad_a"], np.array([[1.0, 0.0, 1.0], [0.0, 2.0, 2.0]]), F64, "dL/dA", (TRANSPOSE_MISTAKE,))
    assert_close(got["grad_b"], np.array([[1.0, 8.0], [2.0, 10.0], [3.0, 12.0]]), F64, "dL/dB", (TRANSPOSE_MISTAKE,))
    check(probe_matmul_grads, a=a, b=b, upstream=upstream)  # and the reference agrees


BATCH_MISTAKE = Mistake("the gradient of the operand whose batch dims were broadcast has the wrong shape: sum it over "
                        "those dims (the engine's unbroadcast does it, if backward returns a broadcastable gradient)",
                        lambda got, want: got is not None and np.shape(got) != np.shape(want))


@pytest.mark.concept("matmul")
@pytest.mark.parametrize("shapes", [((2, 3, 4), (4, 5)), ((2, 3, 4, 5), (3, 5, 2)), ((2, 1, 3, 4), (5, 4, 2))],
                         ids=["linear-layer", "leading-batch", "stretched-batch"])
def test_batched_matmul_gradients_with_broadcast_batch_dims(target, check, shapes):
    rng = seeded(10)
    inputs = [rng.standard_normal(shape) for shape in shapes]
    judge_gradients(target, check, "matmul", inputs, mistakes=(BATCH_MISTAKE,))


# ---------------------------------------------------------------- reductions


@pytest.mark.concept("reductions")
@pytest.mark.parametrize("reduction, axis, keepdims", [
    ("sum", None, False), ("sum", [0, 2], False), ("sum", -1, True),
    ("mean", 1, False), ("mean", [0, -1], True), ("mean", None, True),
])
def test_sum_and_mean_over_axes(target, check, reduction, axis, keepdims):
    x = seeded(11).standard_normal((2, 3, 4))
    judge_gradients(target, check, reduction, [x], {"axis": axis, "keepdims": keepdims})


@pytest.mark.concept("reductions")
@pytest.mark.parametrize("axis, keepdims", [([0, 2], True), (-1, False), (None, False)])
def test_max_gradient_goes_to_the_argmax(target, check, axis, keepdims):
    x = seeded(12).permutation(24).reshape(2, 3, 4) / 7.0  # distinct values: no ties
    judge_gradients(target, check, "max", [x], {"axis": axis, "keepdims": keepdims})


def probe_max_ties(m, x: np.ndarray, upstream: np.ndarray, y: np.ndarray) -> dict:
    a = m.Tensor(x, requires_grad=True, dtype=np.float64)
    out = a.max(axis=1)
    out.backward(upstream)
    b = m.Tensor(y, requires_grad=True, dtype=np.float64)
    whole = b.max()
    whole.backward()
    return {"rows": out.data, "rows_grad": a.grad, "whole": whole.item(), "whole_grad": b.grad}


TIE_MISTAKES = (
    Mistake("every tie got the whole gradient; the convention is to split it evenly among the ties",
            lambda got, want: got is not None and np.sum(got) > np.sum(want) + 1e-9),
    Mistake("one tie got the whole gradient; the convention is to split it evenly among the ties",
            lambda got, want: got is not None and np.isclose(np.sum(got), np.sum(want))),
)


@pytest.mark.concept("max-ties")
def test_max_splits_the_gradient_evenly_among_ties(target, check):
    x = np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]])
    upstream = np.array([1.0, 10.0])
    y = np.array([[5.0, 1.0], [5.0, 5.0]])
    got = target.run(probe_max_ties, x=x, upstream=upstream, y=y)
    assert_close(got["rows"], np.array([3.0, 2.0]), F64, "max over axis 1")
    # row 0: two tied maxima share G=1; row 1: one maximum takes G=10
    assert_close(got["rows_grad"], np.array([[0.0, 0.5, 0.5], [10.0, 0.0, 0.0]]), F64,
                 "gradient of max(axis=1) with a tie in row 0", TIE_MISTAKES)
    assert_close(got["whole"], 5.0, F64, "max of everything")
    assert_close(got["whole_grad"], np.array([[1.0, 0.0], [1.0, 1.0]]) / 3, F64,
                 "gradient of max() with three tied maxima", TIE_MISTAKES)
    check(probe_max_ties, x=x, upstream=upstream, y=y)  # and the reference agrees


# ---------------------------------------------------------------- shapes and indexing


@pytest.mark.concept("shapes")
@pytest.mark.parametrize("expression, params", [
    ("heads", {}), ("transpose_all", {}), ("transpose_axes", {"axes": [1, 0, 2]}),
    ("reshape_tuple", {"shape": [4, -1]}),
], ids=["split-heads", "transpose-reverses", "transpose-axes", "reshape-tuple"])
def test_reshape_and_transpose(target, check, expression, params):
    judge_gradients(target, check, expression, [seeded(13).standard_normal((2, 3, 4))], params)


@pytest.mark.concept("indexing")
@pytest.mark.parametrize("expression", ["row", "last", "columns", "strided"])
def test_basic_indexing_gradients(target, check, expression):
    judge_gradients(target, check, expression, [seeded(14).standard_normal((3, 4, 5))])


def probe_embedding(m, weight: np.ndarray, ids: np.ndarray) -> dict:
    w = m.Tensor(weight, requires_grad=True, dtype=np.float64)
    out = w[ids]
    out.sum().backward()
    return {"out": out.data, "grad": w.grad}


OVERWRITE_MISTAKE = Mistake("a row used several times got the gradient of one use only: grad[index] += g keeps one of "
                            "repeated indices; np.add.at(grad, index, g) adds them all",
                            lambda got, want: got is not None and np.array_equal(got, (np.asarray(want) > 0) * 1.0))


@pytest.mark.concept("indexing")
def test_embedding_lookup_accumulates_repeated_ids(target, check):
    weight = seeded(15).standard_normal((5, 3))  # (V, C)
    ids = np.array([[0, 1, 1, 4], [4, 4, 2, 1]])  # (B, T): row 1 used 3 times, row 4 three times, row 3 never
    got = target.run(probe_embedding, weight=weight, ids=ids)
    assert_close(got["out"], weight[ids], F64, "weight[ids], shape (B, T, C) = (2, 4, 3)")
    counts = np.array([1.0, 3.0, 1.0, 0.0, 3.0])  # L = sum(out): each row's gradient counts its uses
    assert_close(got["grad"], np.repeat(counts[:, None], 3, axis=1), F64, "dL/dweight", (OVERWRITE_MISTAKE,))
    check(probe_embedding, weight=weight, ids=ids)  # and the reference agrees


# ---------------------------------------------------------------- softmax and log-softmax


def probe_softmax_node(m, x: np.ndarray) -> dict:
    t = m.Tensor(x, requires_grad=True)
    out = m.softmax(t, axis=-1)
    log_out = m.log_softmax(t, axis=-1)
    return {"softmax": out.data, "log_softmax": log_out.data, "dtypes": [str(out.dtype), str(log_out.dtype)],
            "one_node": [len(o._parents) == 1 and o._parents[0] is t for o in (out, log_out)]}


@pytest.mark.concept("softmax")
@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_gradient_and_slices_sum_to_one(target, check, axis):
    x = seeded(16).standard_normal((3, 5)) * 2
    got = judge_gradients(target, check, "softmax", [x], {"axis": axis})
    assert_close(got["out"].sum(axis=axis), np.ones_like(x.sum(axis=axis)), F64,
                 f"softmax(axis={axis}): every slice along the axis sums to 1")


MAX_MISTAKE = Mistake("forgot to subtract the max: exp(1000) overflows to inf and inf/inf is NaN; "
                      "exp(x - max(x)) gives the same softmax and never overflows",
                      lambda got, want: not np.all(np.isfinite(got)))


def probe_softmax_huge(m, x: np.ndarray) -> dict:
    return {"softmax": m.softmax(m.Tensor(x)).data, "log_softmax": m.log_softmax(m.Tensor(x)).data}


@pytest.mark.concept("softmax")
def test_softmax_of_huge_logits_is_finite(target, check):
    x = np.array([[1000.0, 1001.0, 1002.0], [-1000.0, 0.0, 1000.0]], dtype=np.float32)
    got = target.run(probe_softmax_huge, x=x)
    z = 1 + math.exp(-1) + math.exp(-2)  # row 0 is softmax([0, 1, 2]); row 1 puts all its mass on 1000
    want = np.array([[math.exp(-2) / z, math.exp(-1) / z, 1 / z], [0.0, 0.0, 1.0]])
    assert_close(got["softmax"], want, F32, "softmax of logits near +-1000 (float32)", (MAX_MISTAKE,))
    assert_true(got["softmax"].dtype == np.float32, f"softmax of float32 must stay float32, got {got['softmax'].dtype}")
    log_z = math.log(z)  # log_softmax = x - max - log sum exp(x - max); row 1's log-sum-exp is log(1 + ~0) = 0
    want_log = np.array([[-2 - log_z, -1 - log_z, -log_z], [-2000.0, -1000.0, 0.0]])
    assert_close(got["log_softmax"], want_log, F32, "log_softmax of logits near +-1000 (float32)", (MAX_MISTAKE,))
    check(probe_softmax_huge, tol=F32, x=x)  # and the reference agrees


def probe_log_softmax_spread(m, x: np.ndarray, upstream: np.ndarray) -> dict:
    t = m.Tensor(x, requires_grad=True)
    out = m.log_softmax(t)
    out.backward(upstream)
    return {"out": out.data, "grad": t.grad}


@pytest.mark.concept("log-softmax")
def test_log_softmax_stays_finite_where_softmax_underflows(target, check):
    x = np.array([[0.0, -1e4, -2e4]], dtype=np.float32)
    upstream = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    got = target.run(probe_log_softmax_spread, x=x, upstream=upstream)
    # log-sum-exp = 0 + log(1 + e^-1e4 + e^-2e4) = 0, so out = x;  grad = G - softmax * sum(G) = [1 - 6, 2, 3]
    assert_close(got["out"], x, F32, "log_softmax([0, -1e4, -2e4])",
                 (Mistake("log(softmax(x)) is log(0) = -inf here: compute (x - m) - log(sum exp(x - m))",
                          lambda got, want: not np.all(np.isfinite(got))),))
    assert_close(got["grad"], np.array([[-5.0, 2.0, 3.0]]), F32, "gradient G - softmax * sum(G)")
    check(probe_log_softmax_spread, tol=F32, x=x, upstream=upstream)  # and the reference agrees


@pytest.mark.concept("log-softmax")
def test_log_softmax_gradient_and_value(target, check):
    x = seeded(17).standard_normal((4, 6)) * 3
    judge_gradients(target, check, "log_softmax", [x], {"axis": -1})
    got = target.run(probe_softmax_node, x=x.astype(np.float32))
    assert_close(got["log_softmax"], np.log(got["softmax"]), F32, "log_softmax vs log(softmax) where both are finite")
    assert_true(got["one_node"] == [True, True], f"softmax and log_softmax must each be ONE node made with op whose "
                                                 f"only parent is the input; got {got['one_node']}")
    assert_true(got["dtypes"] == ["float32", "float32"], f"float32 in, float32 out; got {got['dtypes']}")
    check(probe_softmax_node, tol=F32, x=x.astype(np.float32))  # and the reference agrees
