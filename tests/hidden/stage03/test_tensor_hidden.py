"""Stage 03 (the tensor engine), hidden suite: other shapes, seeds and edge cases than the visible suite.

Same method: gradients against central differences of the target's own forward (float64, eps=1e-6, GRADCHECK:
rtol 1e-5, atol 1e-7), forward values against NumPy or values worked out by hand.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

from grader.harness import F32, F64, GRADCHECK, Mistake, assert_close, assert_true, raised, seeded
from tests.stage03.helpers import (REUSE_MISTAKE, SHAPE_MISTAKE, axis_argument, copied, dtype_name, gradients_of,
                                   judge_gradients, probe_unbroadcast)


def _residual_tower(m, x, depth):
    """depth residual blocks y <- y + 0.01 tanh(0.5 y): 4 nodes each, and every block is a diamond."""
    y = x
    for _ in range(depth):
        y = y + (y * 0.5).tanh() * 0.01
    return y


def _np_residual_tower(x, depth):
    for _ in range(depth):
        x = x + np.tanh(x * 0.5) * 0.01
    return x


HIDDEN = {  # name -> (on the target's Tensors, in NumPy)
    "mixed": (lambda m, a, b: (a - 1.5) / b + 2.0 / (b * b) - a * b,
              lambda a, b: (a - 1.5) / b + 2.0 / (b * b) - a * b),
    "scalar_tensor": (lambda m, a, s: a * s + s - 1.0 / (s * s + 1.0), lambda a, s: a * s + s - 1.0 / (s * s + 1.0)),
    "matmul": (lambda m, a, b: a @ b, lambda a, b: a @ b),
    "reduce": (lambda m, x, kind, axis, keepdims: getattr(x, kind)(axis=axis_argument(axis), keepdims=keepdims),
               lambda x, kind, axis, keepdims: getattr(x, kind)(axis=axis_argument(axis), keepdims=keepdims)),
    "pairs": (lambda m, x: x[np.array([0, 2, 0, 1]), np.array([1, 1, 1, 3])],
              lambda x: x[np.array([0, 2, 0, 1]), np.array([1, 1, 1, 3])]),
    "repeated_columns": (lambda m, x: x[:, [0, 0, 2]], lambda x: x[:, [0, 0, 2]]),
    "index_grid": (lambda m, x: x[np.array([[1, 1], [0, 2]])], lambda x: x[np.array([[1, 1], [0, 2]])]),
    "embed_project": (lambda m, w, p, ids: w[np.array(ids)] @ p, lambda w, p, ids: w[np.array(ids)] @ p),
    "softmax": (lambda m, x, axis: m.softmax(x, axis=axis),
                lambda x, axis: np.exp(x - x.max(axis, keepdims=True))
                / np.exp(x - x.max(axis, keepdims=True)).sum(axis, keepdims=True)),
    "log_softmax": (lambda m, x, axis: m.log_softmax(x, axis=axis),
                    lambda x, axis: x - x.max(axis, keepdims=True)
                    - np.log(np.exp(x - x.max(axis, keepdims=True)).sum(axis, keepdims=True))),
    "pow": (lambda m, x, p: x ** p, lambda x, p: x ** p),
    "exp_log": (lambda m, x: (x.log() * 0.5).exp() - x.tanh(), lambda x: np.exp(np.log(x) * 0.5) - np.tanh(x)),
    "sigmoid": (lambda m, x: x.sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    "transpose_negative": (lambda m, x: x.transpose(0, -1, 1), lambda x: x.transpose(0, -1, 1)),
    "transpose_tuple": (lambda m, x: x.transpose((2, 0, 1)), lambda x: x.transpose((2, 0, 1))),
    "flatten": (lambda m, x: x.reshape(-1) * x.reshape(6, -1).sum(), lambda x: x.reshape(-1) * x.reshape(6, -1).sum()),
    "tower": (lambda m, x, depth: _residual_tower(m, x, depth), lambda x, depth: _np_residual_tower(x, depth)),
}


def probe_hidden_gradients(m, expression: str, inputs: list, params: dict) -> dict:
    return gradients_of(m, HIDDEN[expression][0], inputs, params, seed=1)


judge = functools.partial(judge_gradients, probe=probe_hidden_gradients, expressions=HIDDEN)


# ---------------------------------------------------------------- broadcasting


@pytest.mark.concept("unbroadcast")
def test_unbroadcast_other_shapes(target, check):
    grad = seeded(101).standard_normal((5, 2, 3, 4))
    shapes = [(2, 1, 4), (1, 1, 1, 1), (3, 4), (1, 4), (5, 1, 3, 1)]
    got = target.run(probe_unbroadcast, grad=grad, shapes=shapes)
    want = [grad.sum(axis=(0, 2), keepdims=True)[0], grad.sum(axis=(0, 1, 2, 3), keepdims=True),
            grad.sum(axis=(0, 1)), grad.sum(axis=(0, 1, 2)).reshape(1, 4), grad.sum(axis=(1, 3), keepdims=True)]
    for shape, g, w in zip(shapes, got, want):
        assert_close(g, w, F64, f"unbroadcast(grad of shape (5, 2, 3, 4), {shape})", (SHAPE_MISTAKE,))
    check(probe_unbroadcast, grad=grad, shapes=shapes)  # and the reference agrees


@pytest.mark.concept("broadcasting")
@pytest.mark.parametrize("expression, shapes", [("mixed", [(4, 1, 3), (5, 1)]), ("scalar_tensor", [(2, 3), ()])],
                         ids=["numbers-on-the-left", "zero-dim-tensor"])
def test_broadcasting_with_numbers_and_zero_dim_tensors(target, check, expression, shapes):
    rng = seeded(102)
    inputs = [rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape) for shape in shapes]  # away from 0
    judge(target, check, expression, inputs)


# ---------------------------------------------------------------- dtypes


def probe_dtype_mix(m, x: np.ndarray, y: np.ndarray, ids: np.ndarray) -> dict:
    a = m.Tensor(x, requires_grad=True)  # float32
    b = m.Tensor(y, requires_grad=True, dtype=np.float64)
    mixed = (a * b).sum()  # float32 * float64 is float64; each leaf's gradient keeps the leaf's dtype
    mixed.backward()
    c = m.Tensor(x, requires_grad=True)
    outs = {"mean": c.mean(axis=0), "max": c.max(axis=1), "softmax": m.softmax(c * 0.5),
            "matmul": c @ (c.transpose() - 1.0), "index": c[ids], "pow": c ** 2,
            "log_softmax": m.log_softmax(1.0 - c, axis=0)}
    total = outs["mean"].sum() + outs["max"].sum() + outs["matmul"].sum() + outs["index"].sum()
    total.backward()
    return {"mixed": str(mixed.dtype), "grad_a": dtype_name(a.grad), "grad_b": dtype_name(b.grad),
            "outs": {k: str(v.dtype) for k, v in outs.items()}, "grad_c": dtype_name(c.grad), "total": str(total.dtype)}


@pytest.mark.concept("dtype")
def test_gradients_keep_their_leaf_dtype_and_float32_survives_every_op(target, check):
    rng = seeded(103)
    x, y, ids = rng.standard_normal((3, 3)), rng.standard_normal((3, 3)), np.array([2, 0, 2])
    got = target.run(probe_dtype_mix, x=x, y=y, ids=ids)
    assert_true(got["mixed"] == "float64", f"float32 * float64 promotes like NumPy to float64, got {got['mixed']}")
    assert_true((got["grad_a"], got["grad_b"]) == ("float32", "float64"),
                f"a gradient has its own tensor's dtype: expected float32 and float64, got {got['grad_a']} and "
                f"{got['grad_b']}")
    float32 = {k: "float32" for k in got["outs"]}
    assert_true(got["outs"] == float32, f"float32 in, float32 out for every op; got {got['outs']}")
    assert_true(got["grad_c"] == "float32" and got["total"] == "float32", f"got {got['grad_c']}, {got['total']}")
    check(probe_dtype_mix, x=x, y=y, ids=ids)  # and the reference agrees


# ---------------------------------------------------------------- matmul and reductions


@pytest.mark.concept("matmul")
@pytest.mark.parametrize("shapes", [((3, 4), (2, 4, 5)), ((4, 1, 3, 5), (2, 5, 6)), ((1, 3, 2), (4, 2, 3))],
                         ids=["matrix-times-batch", "four-dims", "size-one-batch"])
def test_matmul_other_broadcasts(target, check, shapes):
    rng = seeded(104)
    judge(target, check, "matmul", [rng.standard_normal(shape) for shape in shapes])


@pytest.mark.concept("reductions")
@pytest.mark.parametrize("kind, shape, axis, keepdims", [
    ("mean", (2, 3, 4), [-1, -3], True), ("sum", (5,), 0, False), ("max", (2, 3, 2, 2), [1, 2], False),
    ("mean", (2, 3, 2, 2), 2, False), ("sum", (2, 3, 2, 2), [-2, 0], True),
])
def test_reductions_over_other_axes(target, check, kind, shape, axis, keepdims):
    x = seeded(105).permutation(int(np.prod(shape))).reshape(shape) / 5.0  # distinct: no max ties
    judge(target, check, "reduce", [x], {"kind": kind, "axis": axis, "keepdims": keepdims})


def probe_max_ties_keepdims(m, x: np.ndarray, upstream: np.ndarray, flat: np.ndarray) -> dict:
    a = m.Tensor(x, requires_grad=True, dtype=np.float64)
    out = a.max(axis=(1, 2), keepdims=True)
    out.backward(upstream)
    b = m.Tensor(flat, requires_grad=True, dtype=np.float64)
    b.max(axis=0).backward()
    return {"out": out.data, "grad": a.grad, "flat_grad": b.grad}


@pytest.mark.concept("max-ties")
def test_max_ties_with_axis_tuples_and_keepdims(target, check):
    x = np.array([[[1.0, 4.0], [4.0, 2.0]], [[7.0, 0.0], [1.0, 2.0]]])  # block 0: 4 twice; block 1: one 7
    upstream = np.array([[[2.0]], [[3.0]]])
    flat = np.full(4, 2.0)  # four ties
    got = target.run(probe_max_ties_keepdims, x=x, upstream=upstream, flat=flat)
    assert_close(got["out"], np.array([[[4.0]], [[7.0]]]), F64, "max(axis=(1, 2), keepdims=True)")
    assert_close(got["grad"], np.array([[[0.0, 1.0], [1.0, 0.0]], [[3.0, 0.0], [0.0, 0.0]]]), F64,
                 "two ties share G=2 (1 each); a single maximum takes G=3")
    assert_close(got["flat_grad"], np.full(4, 0.25), F64, "max of four equal values: 1/4 each")
    check(probe_max_ties_keepdims, x=x, upstream=upstream, flat=flat)  # and the reference agrees


# ---------------------------------------------------------------- indexing


@pytest.mark.concept("indexing")
@pytest.mark.parametrize("expression", ["pairs", "repeated_columns", "index_grid"])
def test_advanced_indexing_with_repeats(target, check, expression):
    judge(target, check, expression, [seeded(106).standard_normal((3, 4))])


def probe_column_counts(m, x: np.ndarray) -> np.ndarray:
    t = m.Tensor(x, requires_grad=True, dtype=np.float64)
    t[:, [0, 0, 2]].sum().backward()
    return t.grad


@pytest.mark.concept("indexing")
def test_repeated_columns_count_their_uses(target, check):
    got = target.run(probe_column_counts, x=np.zeros((2, 4)))
    assert_close(got, np.array([[2.0, 0.0, 1.0, 0.0]] * 2), F64, "gradient of x[:, [0, 0, 2]].sum()",
                 (Mistake("column 0 is read twice and must get 2: use np.add.at, not grad[index] += g",
                          lambda got, want: got is not None and got[0, 0] == 1.0),))
    check(probe_column_counts, x=np.zeros((2, 4)))  # and the reference agrees


@pytest.mark.concept("indexing")
def test_embedding_then_projection(target, check):
    rng = seeded(107)
    weight, projection = rng.standard_normal((6, 3)), rng.standard_normal((3, 2))
    judge(target, check, "embed_project", [weight, projection], {"ids": [[5, 0, 5], [1, 5, 0]]})


# ---------------------------------------------------------------- softmax and log-softmax


def probe_softmax_edges(m, single: np.ndarray, low: np.ndarray) -> dict:
    s = m.Tensor(single, requires_grad=True, dtype=np.float64)
    out = m.softmax(s, axis=1)  # a length-1 axis: softmax is 1 whatever x, its gradient 0
    out.backward(np.arange(3.0).reshape(3, 1))
    return {"single": out.data, "single_grad": s.grad, "low": m.softmax(m.Tensor(low)).data,
            "low_log": m.log_softmax(m.Tensor(low)).data}


@pytest.mark.concept("softmax")
def test_softmax_edges(target, check):
    single = np.array([[5.0], [-3.0], [0.0]])
    low = np.array([[-1000.0, -1000.0, -1001.0]], dtype=np.float32)
    got = target.run(probe_softmax_edges, single=single, low=low)
    assert_close(got["single"], np.ones((3, 1)), F64, "softmax over a length-1 axis")
    assert_close(got["single_grad"], np.zeros((3, 1)), F64, "its gradient (softmax is constant there)")
    z = 2 + np.exp(-1.0)
    assert_close(got["low"], np.array([[1 / z, 1 / z, np.exp(-1.0) / z]]), F32, "softmax of logits near -1000",
                 (Mistake("exp(-1000) underflows to 0 and 0/0 is NaN: subtract the max first",
                          lambda got, want: not np.all(np.isfinite(got))),))
    assert_close(got["low_log"], np.log(np.array([[1 / z, 1 / z, np.exp(-1.0) / z]])), F32,
                 "log_softmax of logits near -1000")
    check(probe_softmax_edges, tol=F32, single=single, low=low)  # and the reference agrees


@pytest.mark.concept("softmax")
def test_softmax_along_a_middle_axis(target, check):
    x = seeded(108).standard_normal((2, 3, 4)) * 2
    got = judge(target, check, "softmax", [x], {"axis": 1})
    assert_close(got["out"].sum(axis=1), np.ones((2, 4)), F64, "softmax(axis=1): slices along axis 1 sum to 1")


@pytest.mark.concept("log-softmax")
def test_log_softmax_along_the_first_axis(target, check):
    x = seeded(109).standard_normal((3, 2, 4)) * 3
    got = judge(target, check, "log_softmax", [x], {"axis": 0})
    assert_close(np.exp(got["out"]).sum(axis=0), np.ones((2, 4)), F64, "exp(log_softmax(axis=0)) sums to 1")


# ---------------------------------------------------------------- elementwise and shapes


@pytest.mark.concept("elementwise")
@pytest.mark.parametrize("expression, params, low, high", [
    ("pow", {"p": -1.5}, 0.3, 3.0), ("pow", {"p": 0.5}, 0.3, 3.0), ("exp_log", {}, 0.2, 4.0),
    ("sigmoid", {}, -30.0, 30.0),
], ids=["pow-negative", "pow-half", "exp-of-log", "sigmoid-wide"])
def test_more_elementwise_gradients(target, check, expression, params, low, high):
    judge(target, check, expression, [seeded(110).uniform(low, high, (3, 4))], params)


@pytest.mark.concept("shapes")
@pytest.mark.parametrize("expression", ["transpose_negative", "transpose_tuple", "flatten"])
def test_transpose_with_negative_or_tuple_axes_and_flatten(target, check, expression):
    judge(target, check, expression, [seeded(111).standard_normal((2, 3, 4))])


# ---------------------------------------------------------------- the engine


def probe_private_leaf_grads(m, x: np.ndarray, upstream: np.ndarray) -> dict:
    a = m.Tensor(x, requires_grad=True, dtype=np.float64)
    b = m.Tensor(x, requires_grad=True, dtype=np.float64)
    (a + b).sum().backward()  # both get the same upstream array from add's backward
    a.grad *= 2.0  # as gradient clipping would: must not touch b.grad
    c = m.Tensor(x, requires_grad=True, dtype=np.float64)
    kept = upstream.copy()
    c.backward(upstream)  # a leaf's own backward: .grad must be a copy, not the caller's array
    c.grad *= 3.0
    return {"a": copied(a.grad), "b": copied(b.grad), "c": copied(c.grad),
            "upstream_untouched": bool(np.array_equal(upstream, kept))}


@pytest.mark.concept("accumulation")
def test_leaf_gradients_are_arrays_of_their_own(target, check):
    rng = seeded(112)
    x, upstream = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    got = target.run(probe_private_leaf_grads, x=x, upstream=upstream)
    shared = Mistake("two leaves share one gradient array: store a copy in .grad the first time (optimizers scale "
                     ".grad in place)", lambda got, want: True)
    assert_close(got["a"], np.full((2, 3), 2.0), F64, "a.grad after a.grad *= 2")
    assert_close(got["b"], np.ones((2, 3)), F64, "b.grad, untouched by a.grad *= 2", (shared,))
    assert_close(got["c"], 3 * upstream, F64, "c.grad after c.backward(G); c.grad *= 3")
    assert_true(got["upstream_untouched"],
                "c.grad *= 3 changed the array passed to c.backward(G): .grad must be a copy")
    check(probe_private_leaf_grads, x=x, upstream=upstream)  # and the reference agrees


@pytest.mark.concept("deep-graphs")
def test_a_deep_residual_tower_matches_central_differences(target, check):
    # 4000 nodes deep, every block a diamond (y feeds both the skip and the branch)
    judge(target, check, "tower", [seeded(113).standard_normal(3)], {"depth": 1000},
          mistakes=(SHAPE_MISTAKE, REUSE_MISTAKE))


def probe_backward_arguments(m, x: np.ndarray) -> dict:
    a = m.Tensor(x, requires_grad=True, dtype=np.float64)
    y = a * 2.0
    wrong_shape = raised(y.backward, np.ones((3, 2)))
    y.backward([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # a nested list is an array too
    from_list = copied(a.grad)
    s = m.Tensor(3.0, requires_grad=True, dtype=np.float64)
    (s * s).backward()  # a 0-d tensor is one element: seeded with 1
    with m.no_grad():
        constant = (a * 2.0).sum()
    return {"wrong_shape": wrong_shape, "from_list": from_list, "zero_dim": copied(s.grad),
            "on_constant": raised(constant.backward)}


@pytest.mark.concept("backward-seed")
def test_backward_checks_its_gradient_argument(target, check):
    got = target.run(probe_backward_arguments, x=np.arange(6.0).reshape(2, 3))
    assert_close(got["wrong_shape"], {"raised": "ValueError"}, F64,
                 "backward(grad) with grad (3, 2) for a (2, 3) tensor")
    assert_close(got["from_list"], 2 * np.arange(1.0, 7.0).reshape(2, 3), F64, "y = 2x, y.backward(nested list)")
    assert_close(got["zero_dim"], 6.0, F64, "d(s*s)/ds at s = 3, a 0-d tensor seeded with 1")
    assert_close(got["on_constant"], {"raised": "RuntimeError"}, F64,
                 "backward() on a tensor made under no_grad() (nothing leads to a leaf)")
    check(probe_backward_arguments, x=np.arange(6.0).reshape(2, 3))  # and the reference agrees


def probe_no_grad_edges(m, x: np.ndarray) -> dict:
    with m.no_grad():
        leaf = m.Tensor(x, requires_grad=True)  # a leaf made inside no_grad still asks for a gradient
    try:
        with m.no_grad():
            with m.no_grad():
                raise ValueError("out of both blocks")
    except ValueError:
        pass
    y = (leaf * leaf).sum()
    y.backward()
    from_constants = m.Tensor(x) * m.Tensor(x)  # no parent requires grad: a constant even outside no_grad
    return {"leaf_grad": copied(leaf.grad), "constant": bool(from_constants.requires_grad),
            "constant_backward": from_constants._backward is not None}


@pytest.mark.concept("no-grad")
def test_no_grad_restores_after_nested_exceptions(target, check):
    x = np.array([1.5, -0.5])
    got = target.run(probe_no_grad_edges, x=x)
    assert_close(got["leaf_grad"], 2 * x, F32, "gradient after leaving two nested no_grad() blocks by an exception")
    assert_true(not got["constant"] and not got["constant_backward"],
                "an op on tensors that need no gradient must give a constant (requires_grad False, no backward)")
    check(probe_no_grad_edges, tol=F32, x=x)  # and the reference agrees


def probe_custom_ops(m, x: np.ndarray, bias: np.ndarray, scale: np.ndarray) -> dict:
    tx = m.Tensor(x, requires_grad=True, dtype=np.float64)
    tb = m.Tensor(bias, requires_grad=True, dtype=np.float64)
    tc = m.Tensor(scale, requires_grad=True, dtype=np.float64)
    biased = m.op(tx.data + tb.data, (tx, tb), lambda g: (g, g))  # the engine must sum b's gradient to (4,)
    scaled = m.op(biased.data * tc.data, (biased, tc), lambda g: (g * tc.data, None))  # None: no gradient for c
    scaled.backward(np.ones_like(scaled.data))
    with m.no_grad():
        inside = m.op(tx.data * 2, (tx,), lambda g: (2 * g,))
    return {"grad_x": tx.grad, "grad_b": tb.grad, "grad_c_is_none": tc.grad is None,
            "inside_requires_grad": bool(inside.requires_grad)}


@pytest.mark.concept("custom-op")
def test_op_unbroadcasts_custom_gradients_and_honours_none(target, check):
    rng = seeded(114)
    x, bias, scale = rng.standard_normal((2, 3, 4)), rng.standard_normal(4), rng.standard_normal((3, 1))
    got = target.run(probe_custom_ops, x=x, bias=bias, scale=scale)
    grad_out = np.broadcast_to(scale, (2, 3, 4))  # d(scale * (x + b))/dx, with dL/dout = 1
    assert_close(got["grad_x"], grad_out, F64, "dL/dx through two custom ops")
    assert_close(got["grad_b"], grad_out.sum(axis=(0, 1)), F64, "dL/dbias, summed to (4,) by the engine",
                 (SHAPE_MISTAKE,))
    assert_true(got["grad_c_is_none"], "a parent whose backward gradient is None must get no .grad")
    assert_true(not got["inside_requires_grad"], "op() inside no_grad() must return a constant")
    check(probe_custom_ops, x=x, bias=bias, scale=scale)  # and the reference agrees


# ---------------------------------------------------------------- your gradcheck


def probe_gradcheck_hidden(m, p: np.ndarray, q: np.ndarray) -> dict:
    seen = []

    def stray_first(a, b):
        """a * b.sum(), with a stray -2 on a's gradient at (3,)."""
        seen.append(str(a.dtype))
        s = b.data.sum()

        def backward(g):
            grad_a = g * s
            grad_a[3] -= 2.0
            return grad_a, np.full(b.shape, (g * a.data).sum())
        return m.op(a.data * s, (a, b), backward)

    wrong = m.gradcheck(stray_first, [p, q], seed=3)
    right = m.gradcheck(lambda a, b: m.log_softmax(a.reshape(1, 5) * b.sum()), [p, q])
    return {"ok": bool(wrong.ok), "where": [int(wrong.input_index)] + [int(i) for i in wrong.index],
            "max_error": float(wrong.max_error), "gap": float(wrong.analytic - wrong.numeric),
            "right_ok": bool(right.ok), "dtypes": sorted(set(seen))}


@pytest.mark.concept("gradcheck")
def test_your_gradcheck_names_the_worst_element_of_the_first_input(target, check):
    rng = seeded(115)
    p, q = rng.standard_normal(5).astype(np.float32), rng.standard_normal((2, 2))
    got = target.run(probe_gradcheck_hidden, p=p, q=q)
    assert_true(not got["ok"], "gradcheck must flag a backward that is off by 2 at one element")
    assert_true(got["where"] == [0, 3], f"the worst element is input 0 at index (3,); gradcheck named {got['where']}")
    assert_close(got["max_error"], 2.0, GRADCHECK, "max_error")
    assert_close(got["gap"], -2.0, GRADCHECK, "analytic - numeric at the worst element")
    assert_true(got["right_ok"], "gradcheck must pass log_softmax(a * b.sum()), a correct composition")
    assert_true(got["dtypes"] == ["float64"], f"fn must receive float64 tensors (inputs cast), saw {got['dtypes']}")
    check(probe_gradcheck_hidden, tol=GRADCHECK, p=p, q=q)  # and the reference agrees
