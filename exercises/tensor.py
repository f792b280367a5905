"""Stage 03: the tensor engine (your turn: replace every NotImplementedError).

A Tensor wraps a NumPy array and remembers how it was made, so that `loss.backward()` can send a gradient to every
tensor that asks for one. Each operation is ONE node: its forward is a NumPy call on whole arrays, its backward a
closure that turns the output's gradient into one gradient per input (a vector-Jacobian product). Every node is made
by `op`, the same constructor later stages use for their fused operations (cross-entropy, attention, norms).

Conventions (derivations in docs/03-tensor.md):
- data is float32 unless you ask for float64 (`dtype=np.float64`); a gradient has its tensor's dtype.
- NumPy broadcasting everywhere; the engine sums each gradient back to its input's shape with `unbroadcast`.
- Only leaves (tensors made with requires_grad=True) keep `.grad`; it accumulates until `zero_grad()`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

_grad_enabled = True  # switched off inside `no_grad()`; read by `op`


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Inside `with no_grad():` operations build no graph: every result is a constant (requires_grad False).

    Nestable; the previous setting comes back on exit, also when an exception leaves the block.
    """
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum `grad` over the axes that broadcasting added or stretched, so that the result has `shape`.

    Broadcasting copies each input element to several output elements, so the input's gradient is the SUM over the
    copies: leading axes that broadcasting added are summed away, and axes where `shape` has 1 but grad has n > 1
    are summed keeping a size-1 axis. e.g. grad (2, 3, 4) -> shape (3, 1): sum over axes 0 and 2.
    Returns `grad` itself when its shape already is `shape`; ValueError if grad is not a broadcast of `shape`.
    """
    raise NotImplementedError("stage 03 (the tensor engine): unbroadcast")


def op(output: np.ndarray, parents: tuple[Tensor, ...],
       backward: Callable[[np.ndarray], Sequence[np.ndarray | None]]) -> Tensor:
    """Make the node `output = f(*parents)`: the one way every operation, here and in later stages, is built.

    backward(grad_output) -> one gradient per parent, in order (None: no gradient for that parent). Each has the
    parent's shape or one that broadcasts to it from the output's side (the engine applies `unbroadcast`). backward
    must not modify grad_output in place: several nodes may share that array.
    If no parent requires grad, or inside `no_grad()`, the result is a constant: requires_grad False, no parents,
    no backward, so no graph is kept. The output keeps its own dtype.
    """
    raise NotImplementedError("stage 03 (the tensor engine): op")


class Tensor:
    """An n-dimensional array (`data`) with an optional gradient (`grad`) and the node that made it.

    Tensor(data, requires_grad=False, dtype=None): data goes through np.asarray with dtype float32 unless `dtype` is
    given, so a float64 array becomes float32 unless you pass dtype=np.float64 (an array of the requested dtype is
    shared, not copied). Python numbers and arrays on either side of an operator become constants.
    """

    __array_ufunc__ = None  # makes `ndarray * Tensor` call Tensor.__rmul__ instead of NumPy's elementwise loop

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None) -> None:
        self.data: np.ndarray = np.asarray(data, dtype=np.float32 if dtype is None else dtype)
        self.grad: np.ndarray | None = None
        self.requires_grad = requires_grad
        self._parents: tuple[Tensor, ...] = ()
        self._backward: Callable | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    def item(self) -> float:
        """The value of a one-element tensor as a Python number."""
        return self.data.item()

    def numpy(self) -> np.ndarray:
        """The data array itself (not a copy)."""
        return self.data

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({np.array2string(self.data, precision=4, threshold=20)}, dtype={self.dtype}{grad})"

    def zero_grad(self) -> None:
        """Forget the accumulated gradient (before each training step's backward)."""
        self.grad = None

    def _lift(self, other: Tensor | float | np.ndarray) -> Tensor:
        """`other` as a Tensor: a number or array becomes a constant of this tensor's dtype (float32 stays float32)."""
        return other if isinstance(other, Tensor) else Tensor(other, dtype=self.dtype)

    # ------------------------------------------------------------------ the backward pass

    def backward(self, grad: np.ndarray | None = None) -> None:
        """Accumulate d(self)/d(leaf)^T · grad into `.grad` of every leaf that requires grad.

        grad: the gradient of some scalar L with respect to self, of self's shape; omitted only for a one-element
        tensor (a loss), which is seeded with 1. ValueError otherwise; RuntimeError if self does not require grad.
        Visits nodes in reverse topological order found by an iterative depth-first search (no recursion: a GPT's
        graph is thousands of nodes deep), so that a node's backward runs once, with the SUM of the gradients of all
        its uses. Intermediate gradients live in a dict only for the pass (their `.grad` stays None); leaves that
        require grad add theirs into `.grad`, an array of their own (optimizers may scale it in place), so calling
        backward twice adds twice.
        """
        raise NotImplementedError("stage 03 (the tensor engine): Tensor.backward")

    # ------------------------------------------------------------------ elementwise, with broadcasting
    # `other` may be a Tensor, a number or an array: `self._lift(other)` makes it a Tensor.

    def __add__(self, other: Tensor | float) -> Tensor:
        """self + other. d/da = d/db = 1: both inputs get the upstream gradient."""
        raise NotImplementedError("stage 03 (the tensor engine): Tensor.__add__")

    def __sub__(self, other: Tensor | float) -> Tensor:
        """self - other. d/da = 1, d/db = -1."""
        raise NotImplementedError("stage 03 (the tensor engine): Tensor.__sub__")

    def __mul__(self, other: Tensor | float) -> Tensor:
        """self * other. d/da = b, d/db = a."""
        raise NotImplementedError("stage 03 (the tensor engine): Tensor.__mul__")

    def __truediv__(self, other: Tensor | float) -> Tensor:
        """self / other. d/da = 1/b, d/db = -a/b² = -out/b."""
        raise NotImplementedError("stage 03 (the tensor engine): Tensor.__truediv__")

    def __radd__(self, other: float) -> Tensor:
        return self._lift(other) + self

    def __rsub__(self, other: float) -> Tensor:
        return self._lift(other) - self

    def __rmul__(self, other: float) -> Tensor:
        return self._lift(other) * self

    def __rtruediv__(self, other: float) -> Tensor:
        return self._lift(other) / self

    def __neg__(self) -> Tensor:
        """-self. d/da = -1."""
        raise NotImplementedError("stage 03 (the tensor engine): Tensor.__neg__")

    def __pow__(self, exponent: float) -> Tensor:
        """self ** p for a Python number p (TypeError for a Tensor exponent). d/da = p · a^(p-1)."""
        raise NotImplementedError("stage 03 (the tensor engine): Tensor.__pow__")

    def exp(self) -> Tensor:
        """e^a. d/da = e^a, the output itself."""
        raise NotImplementedError("stage 03 (the tensor engine): Tensor.exp")

    def log(self) -> Tensor:
        """Natural log. d/da = 1/a."""
        raise NotImplementedError("stage 03 (the tensor engine): Tensor.log")

    def tanh(self) -> Tensor:
        """tanh(a). d/da = 1 - tanh(a)²."""
        raise NotImplementedError("stage 03 (the tensor engine): Tensor.tanh")

    def relu(self) -> Tensor:
        """max(a, 0). d/da = 1 where a > 0, else 0 (also at a == 0)."""
        raise NotImplementedError("stage 03 (the tensor engine): Tensor.relu")

    def sigmoid(self) -> Tensor:
        """1 / (1 + e^-a), computed as (1 + tanh(a/2)) / 2, which never overflows. d/da = s(1 - s)."""
        raise NotImplementedError("stage 03 (the tensor engine): Tensor.sigmoid")

    # ------------------------------------------------------------------ matrix product

    def __matmul__(self, other: Tensor) -> Tensor:
        """self @ other like np.matmul, both at least 2-D: (..., n, k) @ (..., k, m) -> (..., n, m).

        Batch dims broadcast ((B, T, C) @ (C, D) is the usual linear layer). With G = dL/dout:
        dL/dA = G @ Bᵀ and dL/dB = Aᵀ @ G (ᵀ swaps the last two axes); the engine sums broadcast batch dims.
        """
        raise NotImplementedError("stage 03 (the tensor engine): Tensor.__matmul__")

    # ------------------------------------------------------------------ reductions

    def sum(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        """Sum over `axis` (None: all). Each input element moved the sum by 1: the gradient is G broadcast back."""
        raise NotImplementedError("stage 03 (the tensor engine): Tensor.sum")

    def mean(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        """Mean over `axis` (None: all) = sum / n, with n the number of elements averaged: gradient G/n broadcast."""
        raise NotImplementedError("stage 03 (the tensor engine): Tensor.mean")

    def max(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        """Largest element over `axis` (None: all). The gradient goes to the arg-max; TIES SPLIT IT EVENLY
        (max of [1, 3, 3] sends 0, G/2, G/2), so the gradient is the same whichever tie NumPy would pick."""
        raise NotImplementedError("stage 03 (the tensor engine): Tensor.max")

    # ------------------------------------------------------------------ shapes and indexing

    def reshape(self, *shape: int | tuple[int, ...]) -> Tensor:
        """Same elements, new shape: x.reshape(2, -1) or x.reshape((2, -1)). The gradient is reshaped back."""
        raise NotImplementedError("stage 03 (the tensor engine): Tensor.reshape")

    def transpose(self, *axes: int | tuple[int, ...]) -> Tensor:
        """Permute axes like np.transpose: output axis i is input axis axes[i]; no axes reverses them all.
        The gradient goes through the inverse permutation."""
        raise NotImplementedError("stage 03 (the tensor engine): Tensor.transpose")

    def __getitem__(self, index: Any) -> Tensor:
        """self[index] with ints, slices, integer arrays or a tuple of them, as in NumPy. The gradient is scattered with
        np.add.at, so an element read twice gets both gradients: `weight[ids]` with ids (B, T) is an embedding
        lookup (V, C) -> (B, T, C) whose rows used twice accumulate."""
        raise NotImplementedError("stage 03 (the tensor engine): Tensor.__getitem__")


# ---------------------------------------------------------------------- fused functions


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """Normalised exponentials along `axis`, one fused node.

    s_i = exp(x_i - m) / sum_j exp(x_j - m), m = max_j x_j (subtracting m changes nothing but keeps exp finite).
    Backward, the Jacobian diag(s) - s sᵀ applied to G: dL/dx = s * (G - sum(G * s)), sum along `axis`.
    x: (..., n) -> (..., n); every slice along `axis` sums to 1.
    """
    raise NotImplementedError("stage 03 (the tensor engine): softmax")


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """log(softmax(x)) along `axis`, one fused node, finite even where softmax underflows to 0.

    out_i = (x_i - m) - log sum_j exp(x_j - m), m = max_j x_j.
    Backward: dL/dx = G - softmax(x) * sum(G), with softmax(x) = exp(out) and the sum along `axis`.
    """
    raise NotImplementedError("stage 03 (the tensor engine): log_softmax")


# ---------------------------------------------------------------------- checking gradients


@dataclass(frozen=True)
class GradcheckResult:
    """What `gradcheck` found: ok, the largest |analytic - numeric|, and where it is."""

    ok: bool  # every element within atol + rtol * |numeric|
    max_error: float  # the largest |analytic - numeric| over all inputs
    input_index: int  # which input holds that worst element
    index: tuple[int, ...]  # where in that input
    analytic: float  # the gradient backward() gave there
    numeric: float  # the central difference there

    def __str__(self) -> str:
        verdict = "passed" if self.ok else "FAILED"
        return (f"gradcheck {verdict}: max |analytic - numeric| = {self.max_error:.3g} at input {self.input_index}, "
                f"index {self.index} (analytic {self.analytic:.8g}, numeric {self.numeric:.8g})")


def gradcheck(fn: Callable[..., Tensor], inputs: Sequence[np.ndarray], eps: float = 1e-6, rtol: float = 1e-5,
              atol: float = 1e-7, seed: int = 0) -> GradcheckResult:
    """Compare backward() of fn(*tensors) with central differences, in float64.

    Each input is copied to float64 and wrapped in a Tensor requiring grad. fn's output is reduced to the scalar
    L = sum(out * w), w ~ N(0, 1) drawn with `seed` (a plain sum would hide errors such as softmax's, whose sum is
    constant). Analytic: backward. Numeric: (L(x + eps) - L(x - eps)) / (2 eps), one element at a time.
    ok when |analytic - numeric| <= atol + rtol * |numeric| everywhere; the worst element is the largest |difference|.
    """
    raise NotImplementedError("stage 03 (the tensor engine): gradcheck")
