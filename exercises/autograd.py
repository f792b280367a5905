"""Stage 02: scalar autograd (your turn: replace every NotImplementedError).

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
        raise NotImplementedError("stage 02 (scalar autograd): Value.__add__")

    def __mul__(self, other: Value | float) -> Value:
        """a * b.  d/da = b, d/db = a: each input receives the output's gradient times the *other* input."""
        raise NotImplementedError("stage 02 (scalar autograd): Value.__mul__")

    def __pow__(self, exponent: int | float) -> Value:
        """x ** p for a constant int or float p.  d/dx = p * x ** (p - 1).

        A Value exponent raises TypeError: its gradient (x ** p * log x) is not part of this stage.
        """
        raise NotImplementedError("stage 02 (scalar autograd): Value.__pow__")

    def exp(self) -> Value:
        """e ** x.  d/dx = e ** x, which is the output itself."""
        raise NotImplementedError("stage 02 (scalar autograd): Value.exp")

    def log(self) -> Value:
        """Natural log.  d/dx = 1 / x.  Raises ValueError for x <= 0 (log is defined for x > 0 only)."""
        raise NotImplementedError("stage 02 (scalar autograd): Value.log")

    def tanh(self) -> Value:
        """tanh(x) = (e^x - e^-x) / (e^x + e^-x).  d/dx = 1 - tanh(x)^2.  Finite for every finite x (use math.tanh)."""
        raise NotImplementedError("stage 02 (scalar autograd): Value.tanh")

    def relu(self) -> Value:
        """max(0, x).  d/dx = 1 for x > 0 and 0 for x <= 0 (so relu'(0) = 0, by convention)."""
        raise NotImplementedError("stage 02 (scalar autograd): Value.relu")

    def sigmoid(self) -> Value:
        """1 / (1 + e^-x).  d/dx = s * (1 - s) with s the output.  Finite for any finite x: no exp(-x) for x < 0."""
        raise NotImplementedError("stage 02 (scalar autograd): Value.sigmoid")

    # ------------------------------------------------------------ composed ops: their gradients come for free

    def __neg__(self) -> Value:
        """-x, written as x * -1."""
        raise NotImplementedError("stage 02 (scalar autograd): Value.__neg__")

    def __sub__(self, other: Value | float) -> Value:
        """a - b, written as a + (-b)."""
        raise NotImplementedError("stage 02 (scalar autograd): Value.__sub__")

    def __truediv__(self, other: Value | float) -> Value:
        """a / b, written as a * b ** -1."""
        raise NotImplementedError("stage 02 (scalar autograd): Value.__truediv__")

    def __radd__(self, other: float) -> Value:
        """other + self, for a Python number on the left (2 + x)."""
        raise NotImplementedError("stage 02 (scalar autograd): Value.__radd__")

    def __rmul__(self, other: float) -> Value:
        """other * self, for a Python number on the left (2 * x)."""
        raise NotImplementedError("stage 02 (scalar autograd): Value.__rmul__")

    def __rsub__(self, other: float) -> Value:
        """other - self, for a Python number on the left (1 - x). Careful: not self - other."""
        raise NotImplementedError("stage 02 (scalar autograd): Value.__rsub__")

    def __rtruediv__(self, other: float) -> Value:
        """other / self, for a Python number on the left (1 / x). Careful: not self / other."""
        raise NotImplementedError("stage 02 (scalar autograd): Value.__rtruediv__")

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
        raise NotImplementedError("stage 02 (scalar autograd): Value.backward")

    def zero_grad(self) -> None:
        """Set .grad = 0 on every node of the graph that ends in self (self, the interior nodes and the leaves)."""
        raise NotImplementedError("stage 02 (scalar autograd): Value.zero_grad")


def _as_value(x: Value | float) -> Value:
    """x itself if it is a Value; otherwise a new leaf holding the number (a constant: its gradient is never used)."""
    return x if isinstance(x, Value) else Value(x)


def topological_order(root: Value) -> list[Value]:
    """Every node of the graph that ends in `root`, once each, every node after all of its inputs (`_prev`).

    The leaves come early and `root` comes last. Built with an explicit stack, not recursion: a chain of 5000 ops
    would pass Python's recursion limit (1000). See docs/02-autograd.md, section 4.
    """
    raise NotImplementedError("stage 02 (scalar autograd): topological_order")


def zero_grad(values: Iterable[Value]) -> None:
    """Set .grad = 0 on each of `values` (typically a model's parameters) before the next backward()."""
    raise NotImplementedError("stage 02 (scalar autograd): zero_grad")


def numerical_grad(f: Callable[[list[float]], float], xs: Sequence[float], eps: float = 1e-6) -> list[float]:
    """d f / d xs[i] for each i, by central differences: (f(xs + eps e_i) - f(xs - eps e_i)) / (2 eps).

    f maps a list of floats to a float. Each call of f gets a fresh list; xs itself is not modified.
    The error is O(eps^2) (the one-sided (f(x + eps) - f(x)) / eps is only O(eps)).
    """
    raise NotImplementedError("stage 02 (scalar autograd): numerical_grad")


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
        raise NotImplementedError("stage 02 (scalar autograd): Neuron.__init__")

    def __call__(self, x: Sequence[Value | float]) -> Value:
        """x: n_inputs Values or numbers -> one Value. Raises ValueError if len(x) != n_inputs."""
        raise NotImplementedError("stage 02 (scalar autograd): Neuron.__call__")

    def parameters(self) -> list[Value]:
        """The weights in input order, then the bias."""
        raise NotImplementedError("stage 02 (scalar autograd): Neuron.parameters")


class Layer(Module):
    """n_outputs neurons that all read the same n_inputs inputs."""

    def __init__(self, n_inputs: int, n_outputs: int, rng: random.Random, nonlinear: bool = True) -> None:
        """self.neurons: n_outputs Neurons, made (and drawing their weights from rng) in order."""
        raise NotImplementedError("stage 02 (scalar autograd): Layer.__init__")

    def __call__(self, x: Sequence[Value | float]) -> list[Value]:
        """x: n_inputs Values or numbers -> a list of n_outputs Values, one per neuron."""
        raise NotImplementedError("stage 02 (scalar autograd): Layer.__call__")

    def parameters(self) -> list[Value]:
        """Neuron by neuron: the first neuron's weights and bias, then the second's, ..."""
        raise NotImplementedError("stage 02 (scalar autograd): Layer.parameters")


class MLP(Module):
    """A stack of Layers: tanh on every hidden layer, the last layer linear (its outputs are raw scores)."""

    def __init__(self, n_inputs: int, layer_sizes: Sequence[int], seed: int = 0) -> None:
        """MLP(2, [4, 1]): 2 inputs -> 4 tanh neurons -> 1 linear output.

        All weights come from one rng = random.Random(seed), drawn layer by layer, neuron by neuron, weight by weight
        (the order of parameters()); biases start at 0.0. The same seed gives the same network.
        self.layers: the Layers; every one but the last is nonlinear.
        """
        raise NotImplementedError("stage 02 (scalar autograd): MLP.__init__")

    def __call__(self, x: Sequence[Value | float]) -> list[Value]:
        """x: n_inputs Values or numbers -> a list of layer_sizes[-1] Values (a list even when it holds one)."""
        raise NotImplementedError("stage 02 (scalar autograd): MLP.__call__")

    def parameters(self) -> list[Value]:
        """Layer by layer, in the order of Layer.parameters()."""
        raise NotImplementedError("stage 02 (scalar autograd): MLP.parameters")
