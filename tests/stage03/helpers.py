"""Stage 03 helpers shared by the visible suites and the hidden one (a helper exists once): the expressions the
gradient checks run, the probe that runs them, and the judge that compares them with NumPy, central differences and
the reference."""
from __future__ import annotations

import numpy as np

from grader.harness import F64, GRADCHECK, Mistake, assert_close, assert_true, central_difference, seeded


def axis_argument(axis):
    """An axis argument as NumPy wants it: inputs cross the sandbox as JSON, where tuples become lists."""
    return tuple(axis) if isinstance(axis, (list, tuple)) else axis


def _swish(m, x):
    """x * sigmoid(x) as ONE node made with `op`, with a hand-written backward: how later stages build fused ops."""
    s = 1 / (1 + np.exp(-x.data))
    out = x.data * s
    return m.op(out, (x,), lambda g: (g * (s + out * (1 - s)),))  # d(x s)/dx = s + x s (1 - s)


def numpy_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# Each expression twice: on the target's Tensors (m is the stage module) and in plain NumPy, the forward oracle.
# The probe perturbs the target's own inputs, so the judgment is "your backward agrees with your forward".
EXPRESSIONS = {
    "add": (lambda m, a, b: a + b, lambda a, b: a + b),
    "sub": (lambda m, a, b: a - b, lambda a, b: a - b),
    "mul": (lambda m, a, b: a * b, lambda a, b: a * b),
    "div": (lambda m, a, b: a / b, lambda a, b: a / b),
    "numbers": (lambda m, x: 2.0 * x + x / 4.0 - 3.0 / (1.5 + x * x) + (1.0 - x) - (-x) * 0.5,
                lambda x: 2.0 * x + x / 4.0 - 3.0 / (1.5 + x * x) + (1.0 - x) - (-x) * 0.5),
    "neg": (lambda m, x: -x, lambda x: -x),
    "exp": (lambda m, x: x.exp(), np.exp),
    "log": (lambda m, x: x.log(), np.log),
    "tanh": (lambda m, x: x.tanh(), np.tanh),
    "relu": (lambda m, x: x.relu(), lambda x: np.maximum(x, 0.0)),
    "sigmoid": (lambda m, x: x.sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    "pow": (lambda m, x, p: x ** p, lambda x, p: x ** p),
    "swish": (_swish, lambda x: x / (1 + np.exp(-x))),
    "swish_composed": (lambda m, x: x * x.sigmoid(), lambda x: x / (1 + np.exp(-x))),
    "matmul": (lambda m, a, b: a @ b, lambda a, b: a @ b),
    "sum": (lambda m, x, axis, keepdims: x.sum(axis=axis_argument(axis), keepdims=keepdims),
            lambda x, axis, keepdims: x.sum(axis=axis_argument(axis), keepdims=keepdims)),
    "mean": (lambda m, x, axis, keepdims: x.mean(axis=axis_argument(axis), keepdims=keepdims),
             lambda x, axis, keepdims: x.mean(axis=axis_argument(axis), keepdims=keepdims)),
    "max": (lambda m, x, axis, keepdims: x.max(axis=axis_argument(axis), keepdims=keepdims),
            lambda x, axis, keepdims: x.max(axis=axis_argument(axis), keepdims=keepdims)),
    # (B, T, C) -> (B, H, T, C/H) and back to (B*H, T*C/H): the attention head split
    "heads": (lambda m, x: x.reshape(2, 3, 2, 2).transpose(0, 2, 1, 3).reshape((4, 6)),
              lambda x: x.reshape(2, 3, 2, 2).transpose(0, 2, 1, 3).reshape((4, 6))),
    "transpose_all": (lambda m, x: x.transpose(), lambda x: x.transpose()),
    "transpose_axes": (lambda m, x, axes: x.transpose(*axes), lambda x, axes: x.transpose(*axes)),
    "reshape_tuple": (lambda m, x, shape: x.reshape(tuple(shape)), lambda x, shape: x.reshape(tuple(shape))),
    "row": (lambda m, x: x[1], lambda x: x[1]),
    "last": (lambda m, x: x[-1, 2], lambda x: x[-1, 2]),
    "columns": (lambda m, x: x[:, 1:3], lambda x: x[:, 1:3]),
    "strided": (lambda m, x: x[..., ::-2], lambda x: x[..., ::-2]),
    "softmax": (lambda m, x, axis: m.softmax(x, axis=axis), lambda x, axis: numpy_softmax(x, axis)),
    "log_softmax": (lambda m, x, axis: m.log_softmax(x, axis=axis), lambda x, axis: np.log(numpy_softmax(x, axis))),
}


def gradients_of(m, f, inputs: list, params: dict, seed: int = 0) -> dict:
    """Forward value, backward's gradients and central differences of L = sum(f(inputs) * w), all in float64.

    w is a seeded random projection: with a plain sum, a wrong gradient whose entries add up right would pass.
    """
    leaves = [m.Tensor(x, requires_grad=True, dtype=np.float64) for x in inputs]
    out = f(m, *leaves, **params)
    weights = seeded(seed).standard_normal(out.shape)
    out.backward(weights)  # dL/dout = w
    numeric = [central_difference(lambda: float((f(m, *leaves, **params).data * weights).sum()), leaf.data)
               for leaf in leaves]
    return {"out": out.data, "dtype": str(out.dtype), "analytic": [leaf.grad for leaf in leaves], "numeric": numeric}


def probe_gradients(m, expression: str, inputs: list, params: dict) -> dict:
    return gradients_of(m, EXPRESSIONS[expression][0], inputs, params)


SHAPE_MISTAKE = Mistake("gradient not summed over the broadcast axes: the engine must pass each gradient through "
                        "unbroadcast(grad, parent.shape), which sums the axes broadcasting added or stretched",
                        lambda got, want: got is not None and np.shape(got) != np.shape(want))


def judge_gradients(target, check, expression: str, inputs: list, params: dict | None = None,
                    mistakes: tuple = (SHAPE_MISTAKE,), probe=probe_gradients, expressions=EXPRESSIONS) -> dict:
    """Forward vs NumPy, backward vs central differences of the target's own forward, then both vs the reference."""
    params = params or {}
    what = f"{expression}{params or ''} on shapes {[np.shape(x) for x in inputs]}"
    got = target.run(probe, expression=expression, inputs=inputs, params=params)
    want = expressions[expression][1](*inputs, **params)
    assert_close(got["out"], want, F64, f"{what}: forward value (vs NumPy)")
    assert_true(got["dtype"] == "float64", f"{what}: float64 inputs must give a float64 output, got {got['dtype']}")
    for i, (analytic, numeric) in enumerate(zip(got["analytic"], got["numeric"])):
        assert_close(analytic, numeric, GRADCHECK, f"{what}: dL/d(input {i}) from backward() vs central differences",
                     mistakes)
    check(probe, tol=GRADCHECK, what=what, expression=expression, inputs=inputs, params=params)  # the reference agrees
    return got


def copied(array: np.ndarray | None) -> np.ndarray | None:
    """A snapshot of a .grad that may still be None (a probe must not crash on an unfinished engine)."""
    return None if array is None else np.array(array)


def dtype_name(array: np.ndarray | None) -> str | None:
    return None if array is None else str(array.dtype)


REUSE_MISTAKE = Mistake("a node used several times must receive the SUM of the gradients of all its uses (add to what "
                        "is there, never overwrite), and its backward must run only after all of them arrived",
                        lambda got, want: got is not None)


def probe_unbroadcast(m, grad: np.ndarray, shapes: list) -> list:
    return [m.unbroadcast(grad, tuple(shape)) for shape in shapes]
