"""Stage 02: scalar autograd.

A `Value` holds one float and remembers how it was made: the Values it came from (`_prev`) and a closure
(`_backward`) that turns the gradient of the final output with respect to this Value into gradients for its inputs,
by the chain rule. `backward()` runs those closures from the output back to the leaves, in reverse topological order.
`numerical_grad` is the independent check, and `Neuron`, `Layer` and `MLP` are a small network built from Values.

Conventions (the tests rely on them; docs/02-autograd.md derives them):
  - Python numbers mix with Values on either side of +, -, *, /: `2 * x`, `1 - x`, `1 / x` all work.
  - `x ** p` takes a constant int or float `p`; a Value exponent raises TypeError. With a non-integer `p` keep x > 0.
  - `log(x)` of x <= 0 raises ValueError; relu'(0) = 0.
  - `backward()` adds to `.grad`. Leaves (Values you created: inputs, parameters) accumulate over calls until
    `zero_grad`; interior nodes (results of ops) hold the gradient of the latest `backward()` only.
"""
from __future__ import annotations

import math
import random
from typing import Callable, Iterable, Sequence


class Value:
    """One scalar in a computation graph, and d(output)/d(this scalar) once `backward()` has run on the output.

    Every primitive op follows one pattern (docs/02-autograd.md, section 2):

        out = Value(forward_value, (self, other), "op")
        def _backward():                  # called once out.grad holds d(final output)/d(out)
            self.grad += d_out_d_self * out.grad     # the chain rule; += because self may be used twice
            other.grad += d_out_d_other * out.grad
        out._backward = _backward
        return out

    A Python number on either side becomes a constant leaf with `_as_value(other)`.
    """

    def __init__(self, data: float, _children: tuple[Value, ...] = (), _op: str = "") -> None:
        """A leaf when made by hand (no children); ops make interior Values and set their `_backward`."""
        self.data = float(data)
        self.grad = 0.0  # d(output)/d(self); filled in by backward()
        self._backward: Callable[[], None] = lambda: None  # a leaf has no inputs to pass a gradient to
        self._prev = tuple(_children)
        self._op = _op  # which op made this Value: for printing and debugging only

    def __repr__(self) -> str:
        return f"Value(data={self.data:.6g}, grad={self.grad:.6g}, op={self._op!r})"

    # ------------------------------------------------------------ the primitive ops: forward and local derivative

    def __add__(self, other: Value | float) -> Value:
        """a + b.  d/da = 1, d/db = 1: each input receives the output's gradient unchanged."""
        ### BEGIN SOLUTION
        other = _as_value(other)
        out = Value(self.data + other.data, (self, other), "+")

        def _backward() -> None:
            # += and not =: the same Value may feed several ops (a + a, or x in two branches)
            self.grad += out.grad
            other.grad += out.grad
        out._backward = _backward
        return out
        ### END SOLUTION

    def __mul__(self, other: Value | float) -> Value:
        """a * b.  d/da = b, d/db = a: each input receives the output's gradient times the *other* input."""
        ### BEGIN SOLUTION
        other = _as_value(other)
        out = Value(self.data * other.data, (self, other), "*")

        def _backward() -> None:
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad
        out._backward = _backward
        return out
        ### END SOLUTION

    def __pow__(self, exponent: int | float) -> Value:
        """x ** p for a constant int or float p.  d/dx = p * x ** (p - 1).

        A Value exponent raises TypeError: its gradient (x ** p * log x) is not part of this stage.
        """
        ### BEGIN SOLUTION
        if isinstance(exponent, Value) or not isinstance(exponent, (int, float)):
            raise TypeError(f"Value ** {type(exponent).__name__}: the exponent must be a constant int or float "
                            f"(x ** 2, x ** -0.5), not a Value")
        out = Value(self.data ** exponent, (self,), f"**{exponent}")

        def _backward() -> None:
            if exponent != 0:  # x ** 0 is constant; skipping it avoids 0.0 ** -1 at x = 0
                self.grad += exponent * self.data ** (exponent - 1) * out.grad
        out._backward = _backward
        return out
        ### END SOLUTION

    def exp(self) -> Value:
        """e ** x.  d/dx = e ** x, which is the output itself."""
        ### BEGIN SOLUTION
        out = Value(math.exp(self.data), (self,), "exp")

        def _backward() -> None:
            self.grad += out.data * out.grad
        out._backward = _backward
        return out
        ### END SOLUTION

    def log(self) -> Value:
        """Natural log.  d/dx = 1 / x.  Raises ValueError for x <= 0 (log is defined for x > 0 only)."""
        ### BEGIN SOLUTION
        if self.data <= 0:
            raise ValueError(f"log of a non-positive number ({self.data!r}): log is defined for x > 0 only")
        out = Value(math.log(self.data), (self,), "log")

        def _backward() -> None:
            self.grad += out.grad / self.data
        out._backward = _backward
        return out
        ### END SOLUTION

    def tanh(self) -> Value:
        """tanh(x) = (e^x - e^-x) / (e^x + e^-x).  d/dx = 1 - tanh(x)^2.  Finite for every finite x (use math.tanh)."""
        ### BEGIN SOLUTION
        t = math.tanh(self.data)  # the textbook formula overflows for |x| > ~355; math.tanh does not
        out = Value(t, (self,), "tanh")

        def _backward() -> None:
            self.grad += (1.0 - t * t) * out.grad
        out._backward = _backward
        return out
        ### END SOLUTION

    def relu(self) -> Value:
        """max(0, x).  d/dx = 1 for x > 0 and 0 for x <= 0 (so relu'(0) = 0, by convention)."""
        ### BEGIN SOLUTION
        out = Value(self.data if self.data > 0 else 0.0, (self,), "relu")

        def _backward() -> None:
            self.grad += (1.0 if self.data > 0 else 0.0) * out.grad
        out._backward = _backward
        return out
        ### END SOLUTION

    def sigmoid(self) -> Value:
        """1 / (1 + e^-x).  d/dx = s * (1 - s) with s the output.  Finite for any finite x: no exp(-x) for x < 0."""
        ### BEGIN SOLUTION
        if self.data >= 0:
            s = 1.0 / (1.0 + math.exp(-self.data))
        else:  # the same number written with e^x, which cannot overflow for x < 0
            e = math.exp(self.data)
            s = e / (1.0 + e)
        out = Value(s, (self,), "sigmoid")

        def _backward() -> None:
            self.grad += s * (1.0 - s) * out.grad
        out._backward = _backward
        return out
        ### END SOLUTION

    # ------------------------------------------------------------ composed ops: their gradients come for free

    def __neg__(self) -> Value:
        """-x, written as x * -1."""
        ### BEGIN SOLUTION
        return self * -1
        ### END SOLUTION

    def __sub__(self, other: Value | float) -> Value:
        """a - b, written as a + (-b)."""
        ### BEGIN SOLUTION
        return self + (-other)
        ### END SOLUTION

    def __truediv__(self, other: Value | float) -> Value:
        """a / b, written as a * b ** -1."""
        ### BEGIN SOLUTION
        return self * other ** -1
        ### END SOLUTION

    def __radd__(self, other: float) -> Value:
        """other + self, for a Python number on the left (2 + x)."""
        ### BEGIN SOLUTION
        return self + other
        ### END SOLUTION

    def __rmul__(self, other: float) -> Value:
        """other * self, for a Python number on the left (2 * x)."""
        ### BEGIN SOLUTION
        return self * other
        ### END SOLUTION

    def __rsub__(self, other: float) -> Value:
        """other - self, for a Python number on the left (1 - x). Careful: not self - other."""
        ### BEGIN SOLUTION
        return other + (-self)
        ### END SOLUTION

    def __rtruediv__(self, other: float) -> Value:
        """other / self, for a Python number on the left (1 / x). Careful: not self / other."""
        ### BEGIN SOLUTION
        return other * self ** -1
        ### END SOLUTION

    # ------------------------------------------------------------ the backward pass

    def backward(self) -> None:
        """Fill in .grad = d(self)/d(node) for every node of the graph that ends in self.

        1. order = topological_order(self): every node after all of its inputs; self last.
        2. Reset the gradient of every interior node (one with inputs) to 0: it must hold this pass's gradient only,
           because its closure passes it on. Leaves keep theirs, so they accumulate over calls.
        3. Add 1 to self.grad (d self / d self = 1), then call each node's _backward in reverse order: a node passes
           its gradient on only after every node that uses it has added its share.

        Calling backward() twice without zero_grad() therefore doubles every leaf's gradient and leaves the interior
        gradients as they were. Iterative (no recursion), so graphs thousands of ops deep work.
        See docs/02-autograd.md, sections 4 and 5.
        """
        ### BEGIN SOLUTION
        order = topological_order(self)
        for node in order:
            if node._prev:
                node.grad = 0.0
        self.grad += 1.0
        for node in reversed(order):
            node._backward()
        ### END SOLUTION

    def zero_grad(self) -> None:
        """Set .grad = 0 on every node of the graph that ends in self (self, the interior nodes and the leaves)."""
        ### BEGIN SOLUTION
        for node in topological_order(self):
            node.grad = 0.0
        ### END SOLUTION


def _as_value(x: Value | float) -> Value:
    """x itself if it is a Value; otherwise a new leaf holding the number (a constant: its gradient is never used)."""
    return x if isinstance(x, Value) else Value(x)


def topological_order(root: Value) -> list[Value]:
    """Every node of the graph that ends in `root`, once each, every node after all of its inputs (`_prev`).

    The leaves come early and `root` comes last. Built with an explicit stack, not recursion: a chain of 5000 ops
    would pass Python's recursion limit (1000). See docs/02-autograd.md, section 4.
    """
    ### BEGIN SOLUTION
    order: list[Value] = []
    visited: set[int] = set()  # ids, so that a Value never needs __eq__ or __hash__
    stack: list[tuple[Value, bool]] = [(root, False)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:  # second visit: everything it depends on is already in order
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))  # come back to it after its inputs
        for child in node._prev:
            if id(child) not in visited:
                stack.append((child, False))
    return order
    ### END SOLUTION


def zero_grad(values: Iterable[Value]) -> None:
    """Set .grad = 0 on each of `values` (typically a model's parameters) before the next backward()."""
    ### BEGIN SOLUTION
    for value in values:
        value.grad = 0.0
    ### END SOLUTION


def numerical_grad(f: Callable[[list[float]], float], xs: Sequence[float], eps: float = 1e-6) -> list[float]:
    """d f / d xs[i] for each i, by central differences: (f(xs + eps e_i) - f(xs - eps e_i)) / (2 eps).

    f maps a list of floats to a float. Each call of f gets a fresh list; xs itself is not modified.
    The error is O(eps^2) (the one-sided (f(x + eps) - f(x)) / eps is only O(eps)).
    """
    ### BEGIN SOLUTION
    point = [float(x) for x in xs]
    gradient = []
    for i in range(len(point)):
        above, below = list(point), list(point)
        above[i] += eps
        below[i] -= eps
        gradient.append((float(f(above)) - float(f(below))) / (2 * eps))
    return gradient
    ### END SOLUTION


# ---------------------------------------------------------------- a small multilayer perceptron


class Module:
    """Anything with parameters. `zero_grad()` resets the gradients of all of them."""

    def parameters(self) -> list[Value]:
        return []

    def zero_grad(self) -> None:
        zero_grad(self.parameters())


class Neuron(Module):
    """out = tanh(w · x + b), or w · x + b when `nonlinear` is False."""

    def __init__(self, n_inputs: int, rng: random.Random, nonlinear: bool = True) -> None:
        """self.w: n_inputs weights drawn in input order with rng.uniform(-1, 1), one draw each;
        self.b: the bias, starting at 0.0 (no draw); self.nonlinear as given.
        """
        ### BEGIN SOLUTION
        self.w = [Value(rng.uniform(-1.0, 1.0)) for _ in range(n_inputs)]
        self.b = Value(0.0)
        self.nonlinear = nonlinear
        ### END SOLUTION

    def __call__(self, x: Sequence[Value | float]) -> Value:
        """x: n_inputs Values or numbers -> one Value. Raises ValueError if len(x) != n_inputs."""
        ### BEGIN SOLUTION
        if len(x) != len(self.w):
            raise ValueError(f"this neuron takes {len(self.w)} inputs, got {len(x)}")
        activation = sum((w * xi for w, xi in zip(self.w, x)), self.b)
        return activation.tanh() if self.nonlinear else activation
        ### END SOLUTION

    def parameters(self) -> list[Value]:
        """The weights in input order, then the bias."""
        ### BEGIN SOLUTION
        return self.w + [self.b]
        ### END SOLUTION


class Layer(Module):
    """n_outputs neurons that all read the same n_inputs inputs."""

    def __init__(self, n_inputs: int, n_outputs: int, rng: random.Random, nonlinear: bool = True) -> None:
        """self.neurons: n_outputs Neurons, made (and drawing their weights from rng) in order."""
        ### BEGIN SOLUTION
        self.neurons = [Neuron(n_inputs, rng, nonlinear) for _ in range(n_outputs)]
        ### END SOLUTION

    def __call__(self, x: Sequence[Value | float]) -> list[Value]:
        """x: n_inputs Values or numbers -> a list of n_outputs Values, one per neuron."""
        ### BEGIN SOLUTION
        return [neuron(x) for neuron in self.neurons]
        ### END SOLUTION

    def parameters(self) -> list[Value]:
        """Neuron by neuron: the first neuron's weights and bias, then the second's, ..."""
        ### BEGIN SOLUTION
        return [p for neuron in self.neurons for p in neuron.parameters()]
        ### END SOLUTION


class MLP(Module):
    """A stack of Layers: tanh on every hidden layer, the last layer linear (its outputs are raw scores)."""

    def __init__(self, n_inputs: int, layer_sizes: Sequence[int], seed: int = 0) -> None:
        """MLP(2, [4, 1]): 2 inputs -> 4 tanh neurons -> 1 linear output.

        All weights come from one rng = random.Random(seed), drawn layer by layer, neuron by neuron, weight by weight
        (the order of parameters()); biases start at 0.0. The same seed gives the same network.
        self.layers: the Layers; every one but the last is nonlinear.
        """
        ### BEGIN SOLUTION
        rng = random.Random(seed)
        sizes = [n_inputs] + list(layer_sizes)
        last = len(layer_sizes) - 1
        self.layers = [Layer(sizes[i], sizes[i + 1], rng, nonlinear=i < last) for i in range(len(layer_sizes))]
        ### END SOLUTION

    def __call__(self, x: Sequence[Value | float]) -> list[Value]:
        """x: n_inputs Values or numbers -> a list of layer_sizes[-1] Values (a list even when it holds one)."""
        ### BEGIN SOLUTION
        for layer in self.layers:
            x = layer(x)
        return list(x)
        ### END SOLUTION

    def parameters(self) -> list[Value]:
        """Layer by layer, in the order of Layer.parameters()."""
        ### BEGIN SOLUTION
        return [p for layer in self.layers for p in layer.parameters()]
        ### END SOLUTION
