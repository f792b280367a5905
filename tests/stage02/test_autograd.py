"""Stage 02 (scalar autograd), visible suite.

Every test runs a probe on your module and on the reference and compares the two, and also checks something that does
not trust the reference: a gradient worked out by hand in the comments, an invariant, or central differences of YOUR
forward pass (grader.harness.central_difference, float64, eps=1e-6, judged at GRADCHECK: rtol 1e-5, atol 1e-7).
The conventions are in the docstrings of exercises/autograd.py and in docs/02-autograd.md.
"""
from __future__ import annotations

import math
import operator

import numpy as np
import pytest

from grader.harness import EXACT, F64, Mistake, Tol, assert_close, assert_true, raised, seeded
from tests.stage02.helpers import judge_gradients, probe_train


def _leaves(graph: dict) -> dict:
    return {name: float(value.grad) for name, value in graph.items()}


# ---------------------------------------------------------------- forward values


def probe_forward(m, x: float, y: float) -> dict:
    a, b = m.Value(x), m.Value(y)
    return {"add": (a + b).data, "sub": (a - b).data, "mul": (a * b).data, "div": (a / b).data, "neg": (-a).data,
            "pow3": (b ** 3).data, "exp": a.exp().data, "log": a.log().data, "tanh": b.tanh().data,
            "relu+": a.relu().data, "relu-": b.relu().data, "sigmoid": b.sigmoid().data,
            "1-x": (1 - a).data, "1/x": (1 / a).data}


@pytest.mark.concept("forward")
def test_every_op_computes_the_right_value(check):
    x, y = 0.7, -1.3
    got = check(probe_forward, x=x, y=y, tol=F64, what="forward values", mistakes=(
        Mistake("1 - x or 1 / x computed x - 1 or x / 1: the reflected ops get `other` on the LEFT",
                lambda got, want: abs(got["1-x"] + want["1-x"]) < 1e-9 or abs(got["1/x"] - x) < 1e-9),
    ))
    by_hand = {"add": x + y, "sub": x - y, "mul": x * y, "div": x / y, "neg": -x, "pow3": y ** 3, "exp": math.exp(x),
               "log": math.log(x), "tanh": math.tanh(y), "relu+": x, "relu-": 0.0,
               "sigmoid": 1 / (1 + math.exp(-y)), "1-x": 1 - x, "1/x": 1 / x}
    assert_close(got, by_hand, F64, "forward values vs the math module")


# ---------------------------------------------------------------- gradients worked out by hand


def probe_hand_example(m, a: float, b: float) -> dict:
    va, vb = m.Value(a), m.Value(b)
    f = va * vb + vb ** 3
    f.backward()
    return {"f": float(f.data), "df/da": float(va.grad), "df/db": float(vb.grad)}


@pytest.mark.concept("chain-rule")
def test_gradients_of_a_times_b_plus_b_cubed_match_the_hand_computation(check):
    # f = a*b + b^3 at a = 2, b = -3:  f = -6 + (-27) = -33
    # df/da = b = -3;  df/db = a + 3 b^2 = 2 + 27 = 29
    got = check(probe_hand_example, a=2.0, b=-3.0, tol=F64, what="f = a*b + b**3 at a=2, b=-3", mistakes=(
        Mistake("df/db = 2 + 3*(-3)^2 = 29 needs BOTH paths to b added together: use += in the closures",
                lambda got, want: got["df/db"] in (2.0, 27.0)),
        Mistake("the power rule is p * x ** (p - 1); df/db came out as if it were p * x ** p",
                lambda got, want: abs(got["df/db"] - (2 + 3 * (-3.0) ** 3)) < 1e-9),
    ))
    assert_close(got, {"f": -33.0, "df/da": -3.0, "df/db": 29.0}, F64, "f = a*b + b**3 worked by hand")


@pytest.mark.concept("chain-rule")
def test_gradient_of_an_expression_using_every_op_matches_central_differences(target, reference):
    rng = seeded(2002)
    points = rng.uniform(-1.5, 1.5, size=(3, 3)).tolist()
    judge_gradients(target, reference, "composite", points, mistakes=(
        Mistake("if the single-op tests pass, a closure probably forgets to multiply by out.grad (the chain rule: "
                "local derivative TIMES the gradient arriving from above; a lone op only ever sees out.grad = 1)",
                lambda got, want: True),
    ))


# ---------------------------------------------------------------- each op against central differences


BY_HAND = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b, "div": lambda a, b: a / b,
           "radd": lambda x: 2.5 + x, "rsub": lambda x: 2.5 - x, "rmul": lambda x: -1.5 * x,
           "rtruediv": lambda x: 2.5 / x, "neg": lambda x: -x, "exp": math.exp, "log": math.log, "tanh": math.tanh,
           "relu": lambda x: max(x, 0.0), "sigmoid": lambda x: 1 / (1 + math.exp(-x)), "pow3": lambda x: x ** 3,
           "pow-2": lambda x: x ** -2, "pow0.5": math.sqrt}  # the same ops on floats, for the forward values


@pytest.mark.concept("local-derivatives")
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_binary_op_gradients_match_central_differences(target, reference, op):
    rng = seeded(200 + ["add", "sub", "mul", "div"].index(op))
    magnitudes = rng.uniform(0.5, 2.0, size=(3, 2))  # away from 0: b is a denominator for div
    points = (magnitudes * rng.choice([-1.0, 1.0], size=(3, 2))).tolist()
    judge_gradients(target, reference, op, points, by_hand=BY_HAND[op], mistakes=(
        Mistake("the gradient of the second input has the wrong sign: d(a - b)/db = -1, d(a / b)/db = -a / b^2",
                lambda got, want: np.allclose(np.array(got)[:, 0], np.array(want)[:, 0])
                and np.allclose(np.array(got)[:, 1], -np.array(want)[:, 1])),
        Mistake("mul: each input's gradient is the OTHER input's data times out.grad (d(ab)/da = b)",
                lambda got, want: np.allclose(np.array(got)[:, ::-1], want)),
    ))


@pytest.mark.concept("reflected-ops")
@pytest.mark.parametrize("op", ["radd", "rsub", "rmul", "rtruediv"])
def test_number_on_the_left_works_and_has_the_right_gradient(target, reference, op):
    rng = seeded(210 + ["radd", "rsub", "rmul", "rtruediv"].index(op))
    points = rng.uniform(0.4, 2.0, size=(3, 1)).tolist()
    swapped = (
        Mistake("2.5 - x came out as x - 2.5: __rsub__(self, other) computes other - self",
                lambda got, want: op == "rsub" and np.allclose(got, -np.array(want))),
        Mistake("2.5 / x came out as x / 2.5: __rtruediv__(self, other) computes other / self",
                lambda got, want: op == "rtruediv" and np.allclose(np.array(got) * np.array(want), 1.0)),
    )
    judge_gradients(target, reference, op, points, by_hand=BY_HAND[op], mistakes=swapped, forward_mistakes=swapped)


@pytest.mark.concept("local-derivatives")
@pytest.mark.parametrize("op", ["neg", "exp", "log", "tanh", "relu", "sigmoid"])
def test_unary_op_gradients_match_central_differences(target, reference, op):
    rng = seeded(220 + ["neg", "exp", "log", "tanh", "relu", "sigmoid"].index(op))
    low = 0.2 if op == "log" else -2.0
    points = rng.uniform(low, 2.0, size=(4, 1))
    points[np.abs(points) < 0.05] = 0.5  # central differences straddling relu's kink would be meaningless
    judge_gradients(target, reference, op, points.tolist(), by_hand=BY_HAND[op], mistakes=(
        Mistake("tanh' = 1 - tanh(x)^2 (squared)", lambda got, want: op == "tanh"),
        Mistake("sigmoid' = s * (1 - s) with s = sigmoid(x), the output", lambda got, want: op == "sigmoid"),
        Mistake("exp' = exp(x) (the output), log' = 1 / x (the input)", lambda got, want: op in ("exp", "log")),
    ))


@pytest.mark.concept("local-derivatives")
@pytest.mark.parametrize("op", ["pow3", "pow-2", "pow0.5"])
def test_power_by_a_constant_matches_central_differences(target, reference, op):
    rng = seeded(230 + ["pow3", "pow-2", "pow0.5"].index(op))
    points = rng.uniform(0.3, 2.5, size=(3, 1)).tolist()  # positive: x ** 0.5 needs x > 0
    judge_gradients(target, reference, op, points, by_hand=BY_HAND[op], mistakes=(
        Mistake("the power rule is p * x ** (p - 1): the gradient came out p * x ** p",
                lambda got, want: np.allclose(got, np.array(want) * np.array(points))),
    ))


# ---------------------------------------------------------------- reuse, order, depth


def probe_reuse(m, x: float) -> dict:
    a, b, c = m.Value(x), m.Value(x), m.Value(x)
    (a + a).backward()
    (b * b).backward()
    (c * c * c).backward()
    return {"a+a": float(a.grad), "b*b": float(b.grad), "c*c*c": float(c.grad)}


@pytest.mark.concept("accumulate")
def test_a_value_used_twice_receives_both_gradients(check):
    x = 1.7
    got = check(probe_reuse, x=x, tol=F64, what="gradients of reused values", mistakes=(
        Mistake("a closure SETS the input's grad (=) instead of adding to it (+=), so the second use overwrites the "
                "first: a + a gave 1, a * a gave a", lambda got, want: got["a+a"] == 1.0),
    ))
    # d(a + a)/da = 2;  d(a * a)/da = 2a;  d(a^3)/da = 3a^2
    assert_close(got, {"a+a": 2.0, "b*b": 2 * x, "c*c*c": 3 * x * x}, F64, "reuse gradients worked by hand")


def probe_diamond(m, x: float) -> dict:
    leaf = m.Value(x)
    a = leaf * 2          # a feeds two nodes: b below and f
    b = a.tanh()
    f = b * a             # f = tanh(2x) * 2x
    f.backward()
    return {"f": float(f.data), "df/dx": float(leaf.grad), "df/da": float(a.grad)}


@pytest.mark.concept("topological-order")
def test_diamond_graph_gets_the_gradient_from_both_paths(check):
    x = 0.4
    got = check(probe_diamond, x=x, tol=F64, what="diamond f = tanh(2x) * 2x", mistakes=(
        Mistake("a passed its gradient down before b had added its share: run the closures in reverse "
                "topological order (every node after all the nodes that use it)",
                lambda got, want: abs(got["df/da"] - math.tanh(2 * x)) < 1e-9),
    ))
    # with a = 2x:  df/da = tanh(a) + a * (1 - tanh(a)^2);  df/dx = 2 df/da
    t = math.tanh(2 * x)
    by_hand = t + 2 * x * (1 - t * t)
    assert_close(got, {"f": t * 2 * x, "df/dx": 2 * by_hand, "df/da": by_hand}, F64, "diamond worked by hand")


def probe_topological_order(m) -> dict:
    a, b = m.Value(0.5), m.Value(-1.25)
    c = a * b
    d = c + a
    e = d.tanh()
    g = e * c
    f = g + b
    known = [a, b, c, d, e, g, f]
    order = m.topological_order(f)
    position = {id(node): i for i, node in enumerate(order)}
    return {"length": len(order),
            "distinct": len(position),
            "the graph's nodes exactly": set(position) == {id(node) for node in known},
            "root last": bool(order) and order[-1] is f,
            "inputs before users": all(position.get(id(child), len(order)) < i
                                       for i, node in enumerate(order) for child in node._prev)}


@pytest.mark.concept("topological-order")
def test_topological_order_lists_each_node_once_after_its_inputs(check):
    got = check(probe_topological_order, tol=EXACT, what="topological_order", mistakes=(
        Mistake("a node appears more than once: remember which nodes you have visited",
                lambda got, want: got["length"] > got["distinct"]),
    ))
    # a, b, c = a*b, d = c + a, e = tanh(d), g = e*c, f = g + b: 7 nodes
    assert_close(got, {"length": 7, "distinct": 7, "the graph's nodes exactly": True, "root last": True,
                       "inputs before users": True}, EXACT, "topological_order invariants")


def probe_deep_chain(m, length: int, x: float) -> dict:
    leaf = m.Value(x)
    y = leaf
    for _ in range(length):
        y = y + leaf  # every step reuses leaf: y = (length + 1) * x
    backward = raised(y.backward)  # a recursive topological sort raises RecursionError here
    return {"backward": backward, "value": float(y.data), "grad": float(leaf.grad)}


RECURSION = Mistake("backward() hit Python's recursion limit: build the topological order with an explicit stack of "
                    "pending nodes instead of recursion", lambda got, want: got["backward"].get("raised")
                    == "RecursionError")


@pytest.mark.concept("deep-graphs")
def test_backward_through_5000_additions_does_not_hit_the_recursion_limit(check):
    got = check(probe_deep_chain, length=5000, x=0.5, tol=F64, what="a chain of 5000 additions",
                mistakes=(RECURSION,))
    assert_close(got, {"backward": {"returned": None}, "value": 5001 * 0.5, "grad": 5001.0}, F64,
                 "y = 5001 x: backward() returns, then the value and dy/dx")


# ---------------------------------------------------------------- calling backward twice, zero_grad


def probe_backward_twice(m, x: float, w: float) -> dict:
    vx, vw = m.Value(x), m.Value(w)
    h = vx * vw
    out = h * h + vw
    out.backward()
    once = _leaves({"x": vx, "w": vw, "h": h, "out": out})
    out.backward()
    return {"once": once, "twice": _leaves({"x": vx, "w": vw, "h": h, "out": out})}


@pytest.mark.concept("backward-twice")
def test_calling_backward_twice_doubles_leaf_gradients_only(check):
    got = check(probe_backward_twice, x=1.5, w=-2.0, tol=F64, what="backward() twice", mistakes=(
        Mistake("the second pass fed the interior nodes' stale gradients (from the first pass) into the chain rule: "
                "reset interior grads to 0 at the start of backward()",
                lambda got, want: got["once"] == want["once"] and got["twice"]["x"] > want["twice"]["x"]),
        Mistake("backward() reset the leaves too: leaves (inputs, parameters) must accumulate until zero_grad()",
                lambda got, want: got["twice"]["x"] == got["once"]["x"]),
    ))
    # h = x*w = -3, out = h^2 + w = 7.  d out/dh = 2h = -6;  dx = -6 * w = 12;  dw = -6 * x + 1 = -8
    once = {"x": 12.0, "w": -8.0, "h": -6.0, "out": 1.0}
    assert_close(got, {"once": once, "twice": {"x": 24.0, "w": -16.0, "h": -6.0, "out": 1.0}}, F64,
                 "leaves double, interior nodes keep the latest pass")


def probe_zero_grad(m, x: float, w: float) -> dict:
    vx, vw = m.Value(x), m.Value(w)
    h = vx * vw
    out = h * h + vw
    out.backward()
    out.zero_grad()
    after_graph_zero = _leaves({"x": vx, "w": vw, "h": h, "out": out})
    out.backward()
    fresh = _leaves({"x": vx, "w": vw, "h": h, "out": out})
    m.zero_grad([vx, vw])
    return {"after Value.zero_grad": after_graph_zero, "backward after it": fresh,
            "after zero_grad([x, w])": _leaves({"x": vx, "w": vw, "h": h})}


@pytest.mark.concept("zero-grad")
def test_zero_grad_resets_so_the_next_backward_starts_fresh(check):
    got = check(probe_zero_grad, x=1.5, w=-2.0, tol=F64, what="zero_grad")
    # the same graph as the backward-twice test: one pass gives x 12, w -8, h -6, out 1
    zeros = {"x": 0.0, "w": 0.0, "h": 0.0, "out": 0.0}
    one_pass = {"x": 12.0, "w": -8.0, "h": -6.0, "out": 1.0}
    assert_close(got, {"after Value.zero_grad": zeros, "backward after it": one_pass,
                       "after zero_grad([x, w])": {"x": 0.0, "w": 0.0, "h": -6.0}}, F64,
                 "Value.zero_grad() clears the whole graph; zero_grad(values) clears just those values")


# ---------------------------------------------------------------- conventions


def probe_log_domain(m, x: float, fine: float) -> dict:
    defined = m.Value(fine).log()
    return {f"log({x})": raised(m.Value(x).log), f"log({fine})": float(defined.data)}


@pytest.mark.concept("conventions")
def test_log_of_zero_raises_value_error(check):
    # log is defined for x > 0: log(0) raises ValueError, log(e^2) = 2
    got = check(probe_log_domain, x=0.0, fine=math.exp(2.0), tol=F64, what="Value(x).log()")
    assert_close(got, {"log(0.0)": {"raised": "ValueError"}, f"log({math.exp(2.0)})": 2.0}, F64,
                 "log(0) raises ValueError; log(e^2) = 2")


def probe_value_exponent(m, x: float, p: float) -> dict:
    base = m.Value(x)
    squared = base ** 2  # a constant exponent works ...
    return {"constant": float(squared.data),
            "value exponent": raised(operator.pow, base, m.Value(p))}  # ... a Value exponent does not


@pytest.mark.concept("conventions")
def test_power_by_a_value_raises_type_error(check):
    # x ** Value(...) raises TypeError: the exponent must be a constant number
    got = check(probe_value_exponent, x=3.0, p=2.0, tol=EXACT, what="Value(3.0) ** p")
    assert_close(got, {"constant": 9.0, "value exponent": {"raised": "TypeError"}}, EXACT,
                 "Value(3.0) ** 2 is 9; Value(3.0) ** Value(2.0) raises TypeError")


def probe_relu_around_zero(m, xs: list) -> dict:
    result = {}
    for x in xs:
        leaf = m.Value(x)
        y = leaf.relu()
        y.backward()
        result[f"relu({x})"], result[f"relu'({x})"] = float(y.data), float(leaf.grad)
    return result


@pytest.mark.concept("conventions")
def test_relu_gradient_at_zero_is_zero(check):
    got = check(probe_relu_around_zero, xs=[0.0, 0.5, -0.5], tol=EXACT, what="relu at 0 and at +-0.5", mistakes=(
        Mistake("relu'(0) = 0 by convention: the gradient is 1 only for x > 0 (use >, not >=)",
                lambda got, want: got["relu'(0.0)"] == 1.0),
    ))
    assert_close(got, {"relu(0.0)": 0.0, "relu'(0.0)": 0.0, "relu(0.5)": 0.5, "relu'(0.5)": 1.0, "relu(-0.5)": 0.0,
                       "relu'(-0.5)": 0.0}, EXACT, "relu and relu' at 0 (0 and 0 by convention), 0.5 and -0.5")


# ---------------------------------------------------------------- numerical_grad


def smooth_function(xs: list) -> float:
    x0, x1, x2 = xs
    return x0 ** 2 * x1 + math.sin(x1) * x2 + math.exp(0.5 * x0 * x2)


def probe_numerical_grad(m, xs: list) -> list:
    return [float(g) for g in m.numerical_grad(smooth_function, xs)]


@pytest.mark.concept("numerical-grad")
def test_numerical_grad_matches_the_derivative_of_a_known_function(check):
    x0, x1, x2 = seeded(240).uniform(-1.0, 1.0, size=3).tolist()
    # central differences with eps = 1e-6 here: truncation ~1e-12, rounding ~1e-10; a one-sided difference is off by
    # about eps * f'' / 2 ~ 1e-6, which this tolerance catches
    tight = Tol(1e-7, 1e-8, "central differences (eps=1e-6) on a smooth function of size ~1 are good to ~1e-9")
    one_sided = Mistake("one-sided difference (f(x + eps) - f(x)) / eps: use (f(x + eps) - f(x - eps)) / (2 eps)",
                        lambda got, want: 1e-8 < np.max(np.abs(np.array(got) - want)) < 1e-4)
    got = check(probe_numerical_grad, xs=[x0, x1, x2], tol=tight, what="numerical_grad", mistakes=(one_sided,))
    e = math.exp(0.5 * x0 * x2)
    by_hand = [2 * x0 * x1 + 0.5 * x2 * e, x0 ** 2 + math.cos(x1) * x2, math.sin(x1) + 0.5 * x0 * e]
    assert_close(got, by_hand, tight, "numerical_grad vs the derivative worked by hand", mistakes=(
        one_sided,
        Mistake("divided by eps instead of 2 eps", lambda got, want: np.allclose(got, 2 * np.array(want), rtol=1e-6)),
    ))


# ---------------------------------------------------------------- the MLP


def probe_mlp_forward(m, sizes: list, values: list, x: list) -> dict:
    model = m.MLP(len(x), sizes, seed=0)
    params = model.parameters()
    count = len(params)
    for p, v in zip(params, values):
        p.data = v
    out = model(x)
    return {"parameters": count, "outputs": len(out), "out": [float(o.data) for o in out]}


@pytest.mark.concept("mlp")
def test_mlp_parameters_come_in_order_and_the_forward_pass_is_tanh_then_linear(check):
    rng = seeded(250)
    sizes = [4, 4, 1]
    count = 4 * (3 + 1) + 4 * (4 + 1) + 1 * (4 + 1)  # each neuron: one weight per input, then a bias: 41
    values = rng.normal(0.0, 0.7, size=count).tolist()
    x = rng.uniform(-1.0, 1.0, size=3).tolist()
    got = check(probe_mlp_forward, sizes=sizes, values=values, x=x, tol=F64, what="MLP(3, [4, 4, 1])", mistakes=(
        Mistake("the last layer applied tanh: it must be linear (raw scores)",
                lambda got, want: abs(got["out"][0] - math.tanh(want["out"][0])) < 1e-9),
    ))
    # the same network in numpy, reading the parameters neuron by neuron: weights in input order, then the bias
    h = np.array(x)
    at = 0
    for i, (n_in, n_out) in enumerate(zip([3] + sizes[:-1], sizes)):
        block = np.array(values[at: at + n_out * (n_in + 1)]).reshape(n_out, n_in + 1)  # (n_out, weights + bias)
        at += block.size
        h = block[:, :n_in] @ h + block[:, n_in]
        h = np.tanh(h) if i < len(sizes) - 1 else h
    assert_close(got, {"parameters": count, "outputs": 1, "out": h.tolist()}, F64,
                 "MLP forward vs numpy with the documented parameter order")


def probe_mlp_init(m, sizes: list, seed: int) -> dict:
    def draw(s: int) -> list:
        return [float(p.data) for p in m.MLP(2, sizes, seed=s).parameters()]
    return {"seed": draw(seed), "same seed again": draw(seed), "next seed": draw(seed + 1)}


@pytest.mark.concept("mlp-init")
def test_mlp_initialisation_is_seeded_uniform_with_zero_biases(check):
    sizes = [3, 1]
    got = check(probe_mlp_init, sizes=sizes, seed=5, tol=F64, what="MLP(2, [3, 1], seed=5).parameters()", mistakes=(
        Mistake("the same numbers in another order: draw layer by layer, neuron by neuron, weight by weight",
                lambda got, want: sorted(got["seed"]) == sorted(want["seed"])),
        Mistake("the biases must start at 0.0 and take no draw from rng",
                lambda got, want: got["seed"][2] != 0.0),
    ))
    first = np.array(got["seed"])
    biases = [2, 5, 8, 12]  # 3 neurons of (w, w, b), then one of (w, w, w, b)
    assert_true(got["seed"] == got["same seed again"], "two MLPs with seed=5 differ: draw from random.Random(seed), "
                                                       "not from the global random module")
    assert_true(got["seed"] != got["next seed"], "seeds 5 and 6 gave the same weights: the seed is ignored")
    assert_close(first[biases], np.zeros(4), EXACT, "biases at initialisation")
    weights = np.delete(first, biases)
    assert_true(bool(np.all(np.abs(weights) <= 1.0)) and np.ptp(weights) > 0,
                f"weights must be drawn from uniform(-1, 1); got {weights}")


def probe_mlp_zero_grad(m, seed: int) -> dict:
    model = m.MLP(2, [3, 1], seed=seed)
    loss = (model([0.5, -1.0])[0] - 1.0) ** 2
    loss.backward()
    touched = sum(1 for p in model.parameters() if p.grad != 0.0)
    model.zero_grad()
    return {"nonzero before": touched, "grads after": [float(p.grad) for p in model.parameters()]}


@pytest.mark.concept("zero-grad")
def test_mlp_zero_grad_clears_every_parameter(check):
    got = check(probe_mlp_zero_grad, seed=3, tol=EXACT, what="MLP.zero_grad()")
    assert_true(got["nonzero before"] > 0, "backward() left every parameter's gradient at 0")
    assert_close(got["grads after"], [0.0] * 13, EXACT, "the 13 parameter gradients after zero_grad()")


@pytest.mark.concept("training")
def test_mlp_learns_xor_with_gradient_descent(target, reference):
    points = [[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]]
    labels = [-1.0, 1.0, 1.0, -1.0]  # XOR: no single line separates the two classes
    inputs = dict(points=points, labels=labels, sizes=[4, 1], seed=1, steps=200, learning_rate=0.1)
    got = target.run(probe_train, **inputs)
    want = reference.run(probe_train, **inputs)
    losses = got["losses"]
    assert_true(all(math.isfinite(v) for v in losses), f"the loss became NaN or inf: {losses[-5:]}")
    assert_true(losses[-1] < 0.05 * losses[0], f"the loss fell from {losses[0]:.4f} to only {losses[-1]:.4f} in 200 "
                                               f"steps (expected below 5% of the start): check the gradients' signs")
    assert_close(np.sign(got["scores"]), np.array(labels), EXACT, "the sign of each XOR score after training")
    assert_close(np.sign(got["scores"]), np.sign(want["scores"]), EXACT, "the trained classes vs the reference")
