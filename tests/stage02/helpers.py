"""Stage 02 helpers shared by the visible and the hidden suite (a helper exists once)."""
from __future__ import annotations

import numpy as np

from grader.harness import F64, GRADCHECK, assert_close, central_difference

# Each op as a function of Values. The probes also call it on fresh Values to get the forward value that the
# central differences perturb, so the check is "your backward agrees with your forward".
OPS = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "radd": lambda x: 2.5 + x,
    "rsub": lambda x: 2.5 - x,
    "rmul": lambda x: -1.5 * x,
    "rtruediv": lambda x: 2.5 / x,
    "neg": lambda x: -x,
    "exp": lambda x: x.exp(),
    "log": lambda x: x.log(),
    "tanh": lambda x: x.tanh(),
    "relu": lambda x: x.relu(),
    "sigmoid": lambda x: x.sigmoid(),
    "pow3": lambda x: x ** 3,
    "pow-2": lambda x: x ** -2,
    "pow0.5": lambda x: x ** 0.5,
    # every op at once; the relu arguments stay clear of the kink at 0 (a*a + 0.1 > 0, -(b*b) - 0.1 < 0)
    "composite": lambda a, b, c: ((a * b).tanh() + (c ** 2 + 1).log() - a / (1 + c.exp())
                                  + (a * a + 0.1).relu() * b.sigmoid() - 3 * (-(b * b) - 0.1).relu() + 2 - c),
}


def gradients_at(m, fn, points: list) -> dict:
    """At each point: fn's forward value, backward()'s gradients, and central differences of the forward."""
    values, grads, numeric = [], [], []
    for point in points:
        leaves = [m.Value(x) for x in point]
        out = fn(*leaves)
        out.backward()
        values.append(float(out.data))
        grads.append([float(leaf.grad) for leaf in leaves])
        at = np.array(point, dtype=np.float64)
        numeric.append(central_difference(lambda: float(fn(*(m.Value(float(v)) for v in at)).data), at).tolist())
    return {"value": values, "grads": grads, "numeric": numeric}


def probe_gradients(m, op: str, points: list) -> dict:
    return gradients_at(m, OPS[op], points)


def judge_gradients(target, reference, op: str, points: list, mistakes: tuple = (), probe=probe_gradients,
                    by_hand=None, forward_mistakes: tuple = ()) -> dict:
    """Forward vs the reference (and vs `by_hand(*point)` when given); backward vs central differences of the target's
    own forward; backward vs the reference."""
    got = target.run(probe, op=op, points=points)
    want = reference.run(probe, op=op, points=points)
    assert_close(got["value"], want["value"], F64, f"{op}: forward value at {points}", forward_mistakes)
    if by_hand is not None:
        assert_close(got["value"], [by_hand(*point) for point in points], F64,
                     f"{op}: forward value vs the math module", forward_mistakes)
    assert_close(got["grads"], got["numeric"], GRADCHECK,
                 f"{op}: backward() gradients vs central differences of your own forward, at {points}", mistakes)
    assert_close(got["grads"], want["grads"], F64, f"{op}: gradients at {points}", mistakes)
    return got


def probe_train(m, points: list, labels: list, sizes: list, seed: int, steps: int, learning_rate: float) -> dict:
    model = m.MLP(len(points[0]), sizes, seed=seed)
    losses = []
    for _ in range(steps):
        scores = [model(x)[0] for x in points]
        loss = sum(((s - y) ** 2 for s, y in zip(scores, labels)), m.Value(0.0)) * (1.0 / len(points))  # mean squared
        model.zero_grad()
        loss.backward()
        for p in model.parameters():
            p.data -= learning_rate * p.grad  # plain gradient descent
        losses.append(float(loss.data))
    return {"losses": losses, "scores": [float(model(x)[0].data) for x in points]}
