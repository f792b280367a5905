"""Stage 03 (the tensor engine), visible suite: the engine, dtypes, broadcasting, elementwise ops, `op`, gradcheck.

Every test runs a probe on your module and on the reference and compares the two, and also checks something that does
not trust the reference: a value worked out by hand in the comments, an invariant, or central differences of YOUR
forward pass (grader.harness.central_difference, float64, eps=1e-6, judged at GRADCHECK: rtol 1e-5, atol 1e-7).
Your own `gradcheck` is never used to judge other ops; it has tests of its own at the end.
The conventions are in the docstrings of exercises/tensor.py and in docs/03-tensor.md.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.harness import F32, F64, GRADCHECK, Mistake, assert_close, assert_true, raised, seeded
from tests.stage03.helpers import (REUSE_MISTAKE, SHAPE_MISTAKE, copied, dtype_name, judge_gradients, numpy_softmax,
                                   probe_unbroadcast)

# ---------------------------------------------------------------- dtypes


def probe_float32_flow(m, x: np.ndarray) -> dict:
    a = m.Tensor(x, requires_grad=True)  # x is a float64 array: it becomes float32
    y = (2.0 * a + 1) / 3 - a ** 2  # Python numbers on both sides must not upcast
    loss = (1 - y).exp().sum()
    loss.backward()
    tensors = {"from_list": m.Tensor([1, 2, 3]), "from_float64": a, "y": y, "loss": loss}
    dtypes = {name: str(t.dtype) for name, t in tensors.items()}
    dtypes["grad"] = dtype_name(a.grad)
    return {"dtypes": dtypes, "grad": a.grad}


@pytest.mark.concept("dtype")
def test_float32_by_default_and_through_every_op(target, check):
    x = seeded(1).uniform(-1, 1, size=(3, 4))
    got = target.run(probe_float32_flow, x=x)
    for name, dtype in got["dtypes"].items():
        assert_true(dtype == "float32", f"{name}: expected float32 (the default; Python numbers keep it), got {dtype}")
    # L = sum exp(1 - y), y = (2x + 1)/3 - x^2  =>  dL/dx = -exp(1 - y) * (2/3 - 2x)
    y = (2 * x + 1) / 3 - x ** 2
    assert_close(got["grad"], -np.exp(1 - y) * (2 / 3 - 2 * x), F32, "dL/dx in float32")
    check(probe_float32_flow, tol=F32, x=x)  # and the reference agrees


def probe_float64_flow(m, x: np.ndarray, w: np.ndarray) -> dict:
    a = m.Tensor(x, requires_grad=True, dtype=np.float64)
    b = m.Tensor(w, requires_grad=True, dtype=np.float64)
    loss = ((a @ b) * 0.5 + 1.0).tanh().mean()
    loss.backward()
    return {"dtypes": [str(t.dtype) for t in (a, b, loss)] + [dtype_name(a.grad), dtype_name(b.grad)],
            "loss": loss.item(), "grad_a": a.grad, "grad_b": b.grad}


@pytest.mark.concept("dtype")
def test_float64_on_request_is_kept_by_ops_and_gradients(target, check):
    rng = seeded(2)
    x, w = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))
    got = target.run(probe_float64_flow, x=x, w=w)
    assert_true(got["dtypes"] == ["float64"] * 5, f"expected float64 everywhere, got {got['dtypes']}")
    # L = mean(tanh(z)), z = 0.5 (x @ w) + 1  =>  dL/dz = (1 - tanh(z)^2) / 8 * 0.5; dx = dz @ w^T, dw = x^T @ dz
    out = np.tanh(0.5 * (x @ w) + 1)
    dz = (1 - out ** 2) / out.size * 0.5
    assert_close(got["loss"], float(out.mean()), F64, "loss")
    assert_close(got["grad_a"], dz @ w.T, F64, "dL/dx")
    assert_close(got["grad_b"], x.T @ dz, F64, "dL/dw")
    check(probe_float64_flow, x=x, w=w)  # and the reference agrees


# ---------------------------------------------------------------- broadcasting


@pytest.mark.concept("unbroadcast")
def test_unbroadcast_sums_the_added_and_stretched_axes(target, check):
    grad = np.arange(24.0).reshape(2, 3, 4)
    shapes = [(2, 3, 4), (3, 1), (4,), (), (1, 3, 1), (2, 1, 4)]
    got = target.run(probe_unbroadcast, grad=grad, shapes=shapes)
    want = [grad, grad.sum(axis=(0, 2)).reshape(3, 1), grad.sum(axis=(0, 1)), grad.sum(),
            grad.sum(axis=(0, 2), keepdims=True), grad.sum(axis=1, keepdims=True)]
    for shape, g, w in zip(shapes, got, want):
        assert_close(g, w, F64, f"unbroadcast(grad of shape (2, 3, 4), {shape})", (SHAPE_MISTAKE,))
    check(probe_unbroadcast, grad=grad, shapes=shapes)  # and the reference agrees


def probe_mul_broadcast(m, a: np.ndarray, b: np.ndarray) -> dict:
    ta = m.Tensor(a, requires_grad=True, dtype=np.float64)
    tb = m.Tensor(b, requires_grad=True, dtype=np.float64)
    out = ta * tb
    out.sum().backward()
    return {"out": out.data, "grad_a": ta.grad, "grad_b": tb.grad}


@pytest.mark.concept("broadcasting")
def test_broadcast_product_gradient_worked_by_hand(target, check):
    a = np.array([[1.0], [2.0], [3.0]])  # (3, 1)
    b = np.array([[1.0, 2.0, 3.0, 4.0]])  # (1, 4)
    got = target.run(probe_mul_broadcast, a=a, b=b)
    # out[i, j] = a[i] b[j]; L = sum_ij out[i, j]  =>  dL/da[i] = sum_j b[j] = 10,  dL/db[j] = sum_i a[i] = 6
    assert_close(got["out"], a * b, F64, "a * b")
    assert_close(got["grad_a"], np.full((3, 1), 10.0), F64, "dL/da, a of shape (3, 1)", (SHAPE_MISTAKE,))
    assert_close(got["grad_b"], np.full((1, 4), 6.0), F64, "dL/db, b of shape (1, 4)", (SHAPE_MISTAKE,))
    check(probe_mul_broadcast, a=a, b=b)  # and the reference agrees


@pytest.mark.concept("broadcasting")
@pytest.mark.parametrize("expression", ["add", "sub", "mul", "div"])
def test_broadcast_gradients_match_central_differences(target, check, expression):
    rng = seeded(3)
    a = rng.standard_normal((2, 3, 4))
    b = rng.uniform(0.5, 2.0, size=(3, 1)) * rng.choice([-1.0, 1.0], size=(3, 1))  # away from 0, for div
    judge_gradients(target, check, expression, [a, b])


# ---------------------------------------------------------------- elementwise


@pytest.mark.concept("elementwise")
def test_python_numbers_on_either_side(target, check):
    judge_gradients(target, check, "numbers", [seeded(4).standard_normal((3, 5))])


UNARY = {  # name -> (params, input maker); inputs stay where the op is smooth (log: > 0; relu: away from 0)
    "neg": ({}, lambda rng: rng.standard_normal((4, 3))),
    "exp": ({}, lambda rng: rng.standard_normal((4, 3))),
    "log": ({}, lambda rng: rng.uniform(0.2, 3.0, (4, 3))),
    "tanh": ({}, lambda rng: rng.standard_normal((4, 3)) * 2),
    "relu": ({}, lambda rng: rng.uniform(0.1, 2.0, (4, 3)) * rng.choice([-1.0, 1.0], (4, 3))),
    "sigmoid": ({}, lambda rng: rng.standard_normal((4, 3)) * 3),
    "pow": ({"p": 3}, lambda rng: rng.standard_normal((4, 3))),
}


@pytest.mark.concept("elementwise")
@pytest.mark.parametrize("expression", list(UNARY))
def test_unary_op_gradients_match_central_differences(target, check, expression):
    params, make = UNARY[expression]
    judge_gradients(target, check, expression, [make(seeded(5))], params)


def probe_relu_sigmoid_edges(m, x: np.ndarray) -> dict:
    a = m.Tensor(x, requires_grad=True, dtype=np.float64)
    b = m.Tensor(x, requires_grad=True, dtype=np.float64)
    r, s = a.relu(), b.sigmoid()
    r.backward(np.ones_like(x))
    s.backward(np.ones_like(x))
    return {"relu": r.data, "relu_grad": a.grad, "sigmoid": s.data, "sigmoid_grad": b.grad}


@pytest.mark.concept("elementwise")
def test_relu_at_zero_and_sigmoid_at_extremes(target, check):
    x = np.array([-1000.0, -2.0, 0.0, 3.0, 1000.0])
    got = target.run(probe_relu_sigmoid_edges, x=x)
    assert_close(got["relu"], np.array([0.0, 0.0, 0.0, 3.0, 1000.0]), F64, "relu")
    assert_close(got["relu_grad"], np.array([0.0, 0.0, 0.0, 1.0, 1.0]), F64,
                 "relu's gradient (convention: 0 at x == 0)")
    s = [0.0, 1 / (1 + math.exp(2)), 0.5, 1 / (1 + math.exp(-3)), 1.0]  # sigma(+-1000) is 0 or 1 in float64
    assert_close(got["sigmoid"], np.array(s), F64, "sigmoid, finite at +-1000",
                 (Mistake("exp overflowed: write sigmoid so that it never takes exp of a large positive number",
                          lambda got, want: not np.all(np.isfinite(got))),))
    assert_close(got["sigmoid_grad"], np.array([v * (1 - v) for v in s]), F64, "sigmoid's gradient s (1 - s)")
    check(probe_relu_sigmoid_edges, x=x)  # and the reference agrees


# ---------------------------------------------------------------- the backward pass


def probe_reuse(m, x: np.ndarray, u: np.ndarray) -> dict:
    a = m.Tensor(x, requires_grad=True, dtype=np.float64)
    (a * a + a).sum().backward()  # a used three times
    c = m.Tensor(u, requires_grad=True, dtype=np.float64)
    b = c * 2.0
    (b * b + b).sum().backward()  # a diamond: b used three times, c once
    return {"x": a.grad, "diamond": c.grad}


@pytest.mark.concept("accumulation")
def test_a_node_used_twice_gets_the_sum_of_its_gradients(target, check):
    x, u = np.array([1.0, 2.0, 3.0]), np.array([1.0, -1.0])
    got = target.run(probe_reuse, x=x, u=u)
    # d(x*x + x)/dx = 2x + 1;  b = 2u: d(b*b + b)/du = (2b + 1) * 2 = 8u + 2
    assert_close(got["x"], 2 * x + 1, F64, "d/dx sum(x*x + x)", (REUSE_MISTAKE,))
    assert_close(got["diamond"], 8 * u + 2, F64, "d/du sum(b*b + b) with b = 2u", (REUSE_MISTAKE,))
    check(probe_reuse, x=x, u=u)  # and the reference agrees


def probe_backward_twice(m, x: np.ndarray) -> dict:
    a = m.Tensor(x, requires_grad=True, dtype=np.float64)
    y = a * a
    loss = y.sum()
    loss.backward()
    once = copied(a.grad)
    loss.backward()
    twice = copied(a.grad)
    a.zero_grad()
    reset = a.grad is None
    loss.backward()
    return {"once": once, "twice": twice, "reset": reset, "after_reset": a.grad,
            "intermediate_grad_kept": y.grad is not None or loss.grad is not None}


@pytest.mark.concept("accumulation")
def test_backward_twice_accumulates_and_zero_grad_resets(target, check):
    x = np.array([1.0, 2.0, -1.0])
    got = target.run(probe_backward_twice, x=x)
    assert_close(got["once"], 2 * x, F64, "d/dx sum(x^2) after one backward")
    assert_close(got["twice"], 4 * x, F64, "after a second backward (leaf gradients accumulate, like torch)")
    assert_true(got["reset"], "zero_grad() must set .grad to None")
    assert_close(got["after_reset"], 2 * x, F64, "after zero_grad() and one more backward")
    assert_true(not got["intermediate_grad_kept"],
                "intermediate tensors (y = x*x, the loss) must not keep .grad: their gradients are freed after "
                "the pass")
    check(probe_backward_twice, x=x)  # and the reference agrees


def probe_backward_seed(m, x: np.ndarray, upstream: np.ndarray) -> dict:
    a = m.Tensor(x, requires_grad=True, dtype=np.float64)
    y = a * 3.0
    without_grad = raised(y.backward)
    y.backward(upstream)
    given = copied(a.grad)
    a.zero_grad()
    a.sum(axis=(0, 1), keepdims=True).backward()  # shape (1, 1): one element, seeded with 1
    return {"without_grad": without_grad, "given": given, "one_element": a.grad}


@pytest.mark.concept("backward-seed")
def test_backward_seeds_one_elements_and_demands_grad_otherwise(target, check):
    rng = seeded(6)
    x, upstream = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    got = target.run(probe_backward_seed, x=x, upstream=upstream)
    assert_close(got["without_grad"], {"raised": "ValueError"}, F64,
                 "backward() without `grad` on a (2, 3) tensor (only a one-element tensor is seeded with 1)")
    assert_close(got["given"], 3 * upstream, F64, "y = 3x, y.backward(G): dL/dx = 3 G")
    assert_close(got["one_element"], np.ones((2, 3)), F64, "a one-element (1, 1) tensor is seeded with 1")
    check(probe_backward_seed, x=x, upstream=upstream)  # and the reference agrees


def probe_deep_chain(m, x: np.ndarray, depth: int) -> dict:
    a = m.Tensor(x, requires_grad=True, dtype=np.float64)
    y = a
    for _ in range(depth):
        y = y * 1.001 + 0.01
    y.sum().backward()
    return {"out": y.data, "grad": a.grad}


@pytest.mark.concept("deep-graphs")
def test_a_chain_of_3000_ops_needs_no_recursion(target, check):
    x, depth = np.array([0.5, -2.0]), 1500  # 3000 nodes, deeper than Python's recursion limit of 1000
    got = target.run(probe_deep_chain, x=x, depth=depth)
    r = 1.001 ** depth  # y_n = r^n x + 0.01 (r^n - 1) / (r - 1), dy_n/dx = r^n
    assert_close(got["out"], r * x + 0.01 * (r - 1) / 0.001, F64, "the value after 1500 steps y = 1.001 y + 0.01")
    assert_close(got["grad"], np.full(2, r), F64, "dy/dx = 1.001^1500")
    check(probe_deep_chain, x=x, depth=depth)  # and the reference agrees


# ---------------------------------------------------------------- no_grad


def probe_no_grad(m, x: np.ndarray) -> dict:
    a = m.Tensor(x, requires_grad=True)

    def graph(t) -> dict:
        return {"requires_grad": bool(t.requires_grad), "has_parents": len(t._parents) > 0,
                "has_backward": t._backward is not None}

    with m.no_grad():
        inside = a * 2.0
        with m.no_grad():
            nested = a + 1.0
        after_nested = a * 3.0  # still inside the outer block
    try:
        with m.no_grad():
            raise KeyError("leaves the block by an exception")
    except KeyError:
        pass
    outside = a * 2.0
    return {"inside": graph(inside), "nested": graph(nested), "after_nested": graph(after_nested),
            "outside": graph(outside), "value": inside.data}


@pytest.mark.concept("no-grad")
def test_no_grad_builds_no_graph_nests_and_restores(target, check):
    x = np.array([1.0, -2.0, 3.0])
    got = target.run(probe_no_grad, x=x)
    constant = {"requires_grad": False, "has_parents": False, "has_backward": False}
    for name in ("inside", "nested", "after_nested"):
        assert_true(got[name] == constant, f"an op {name.replace('_', ' ')} no_grad() must give a constant with no "
                                           f"graph {constant}, got {got[name]}")
    graph = {"requires_grad": True, "has_parents": True, "has_backward": True}
    assert_true(got["outside"] == graph, f"after no_grad() (left by an exception) ops must build the graph again: "
                                         f"expected {graph}, got {got['outside']}")
    assert_close(got["value"], 2 * x, F32, "no_grad() changes nothing in the forward value")
    check(probe_no_grad, x=x)  # and the reference agrees


# ---------------------------------------------------------------- op: the API of fused ops


def probe_constant_op(m, x: np.ndarray) -> dict:
    constant = m.op(x * 2, (m.Tensor(x),), lambda g: (g * 2,))
    return {"requires_grad": bool(constant.requires_grad), "has_backward": constant._backward is not None,
            "value": constant.data}


@pytest.mark.concept("custom-op")
def test_a_fused_op_made_with_op_matches_the_composed_ops(target, check):
    x = seeded(7).standard_normal((3, 4)) * 2
    fused = judge_gradients(target, check, "swish", [x])
    composed = judge_gradients(target, check, "swish_composed", [x])
    assert_close(fused["analytic"][0], composed["analytic"][0], F64,
                 "gradient of the fused swish vs the same function composed from x * x.sigmoid()")
    got = target.run(probe_constant_op, x=x)
    assert_true(not got["requires_grad"] and not got["has_backward"],
                f"op() whose parents need no gradient must return a constant (requires_grad False, no backward), "
                f"got requires_grad={got['requires_grad']}, has_backward={got['has_backward']}")
    check(probe_constant_op, x=x)  # and the reference agrees


# ---------------------------------------------------------------- your gradcheck


def probe_gradcheck_correct(m, a: np.ndarray, b: np.ndarray) -> dict:
    a_before = a.copy()
    result = m.gradcheck(lambda x, y: (x * y).tanh().sum(axis=0), [a, b])

    def off_by_one_percent(x, y):
        """The same function with a backward 1% too large: what a gradcheck that passes anything would miss."""
        out = (x * y).tanh().sum(axis=0)
        return m.op(out.data, (out,), lambda g: (1.01 * g,))
    return {"ok": bool(result.ok), "max_error": float(result.max_error),
            "a_untouched": bool(np.array_equal(a, a_before)),
            "one_percent_off_ok": bool(m.gradcheck(off_by_one_percent, [a, b]).ok)}


@pytest.mark.concept("gradcheck")
def test_your_gradcheck_passes_a_correct_op(target, check):
    rng = seeded(8)
    a = rng.standard_normal((3, 4)).astype(np.float32)  # float32 on purpose: gradcheck must cast to float64
    b = rng.standard_normal((1, 4))
    got = target.run(probe_gradcheck_correct, a=a, b=b)
    assert_true(got["ok"], f"gradcheck of tanh(a * b).sum(axis=0) must pass (inputs cast to float64), got {got}")
    assert_true(0 <= got["max_error"] < 1e-6, f"max_error of a correct op should be ~1e-9, got {got['max_error']}")
    assert_true(got["a_untouched"], "gradcheck must not modify the caller's input arrays")
    assert_true(not got["one_percent_off_ok"], "gradcheck passed the same op with a backward 1% too large: it must "
                                               "compare backward() with central differences, element by element")
    check(probe_gradcheck_correct, tol=GRADCHECK, a=a, b=b)  # and the reference agrees


def probe_gradcheck_wrong(m, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> dict:
    def stray_one(a, b):
        """a + 3b, whose backward adds a stray 1 to b's gradient at (1, 2): wrong by exactly 1 there, whatever w."""
        def backward(g):
            grad_b = 3 * g
            grad_b[1, 2] += 1.0
            return g, grad_b
        return m.op(a.data + 3 * b.data, (a, b), backward)

    def softmax_without_gradient(a):
        """softmax with a zero backward: right for L = sum(softmax) (always 1), wrong for any other projection."""
        return m.op(numpy_softmax(a.data), (a,), lambda g: (np.zeros_like(g),))

    stray = m.gradcheck(stray_one, [x, y])
    zero = m.gradcheck(softmax_without_gradient, [z])
    return {"ok": bool(stray.ok), "input_index": int(stray.input_index), "index": [int(i) for i in stray.index],
            "max_error": float(stray.max_error), "gap": float(stray.analytic - stray.numeric),
            "softmax_ok": bool(zero.ok)}


@pytest.mark.concept("gradcheck")
def test_your_gradcheck_flags_a_wrong_backward_and_names_the_element(target, check):
    rng = seeded(9)
    x, y, z = rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), rng.standard_normal((2, 5))
    got = target.run(probe_gradcheck_wrong, x=x, y=y, z=z)
    assert_true(not got["ok"], "gradcheck must flag a backward that is off by 1 at one element (ok False)")
    assert_true(got["input_index"] == 1 and got["index"] == [1, 2],
                f"the worst element is input 1 at index (1, 2); gradcheck named input {got['input_index']} at "
                f"{tuple(got['index'])}")
    assert_close(got["max_error"], 1.0, GRADCHECK, "max_error (the backward is off by exactly 1 there)")
    assert_close(got["gap"], 1.0, GRADCHECK, "analytic - numeric at the worst element")
    assert_true(not got["softmax_ok"], "gradcheck passed a softmax whose backward returns zeros: reduce the output "
                                       "with a random projection sum(out * w), not a plain sum (sum(softmax) is 1)")
    check(probe_gradcheck_wrong, tol=GRADCHECK, x=x, y=y, z=z)  # and the reference agrees
