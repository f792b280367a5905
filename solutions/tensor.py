"""Stage 03: the tensor engine.

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
    ### BEGIN SOLUTION
    if grad.shape == shape:
        return grad
    added = grad.ndim - len(shape)
    if added < 0 or any(n not in (1, m) for n, m in zip(shape, grad.shape[added:])):
        raise ValueError(f"a gradient of shape {grad.shape} cannot be summed to shape {shape}")
    stretched = tuple(added + i for i, n in enumerate(shape) if n == 1 and grad.shape[added + i] != 1)
    return grad.sum(axis=tuple(range(added)) + stretched, keepdims=True).reshape(shape)
    ### END SOLUTION


def op(output: np.ndarray, parents: tuple[Tensor, ...],
       backward: Callable[[np.ndarray], Sequence[np.ndarray | None]]) -> Tensor:
    """Make the node `output = f(*parents)`: the one way every operation, here and in later stages, is built.

    backward(grad_output) -> one gradient per parent, in order (None: no gradient for that parent). Each has the
    parent's shape or one that broadcasts to it from the output's side (the engine applies `unbroadcast`). backward
    must not modify grad_output in place: several nodes may share that array.
    If no parent requires grad, or inside `no_grad()`, the result is a constant: requires_grad False, no parents,
    no backward, so no graph is kept. The output keeps its own dtype.
    """
    ### BEGIN SOLUTION
    output = np.asarray(output)
    needs_grad = _grad_enabled and any(parent.requires_grad for parent in parents)
    if not needs_grad:  # a constant (every op of a decoding step): its fields set directly, no conversion to redo
        out = Tensor.__new__(Tensor)
        out.data, out.grad, out.requires_grad, out._parents, out._backward = output, None, False, (), None
        return out
    out = Tensor(output, requires_grad=needs_grad, dtype=output.dtype)
    out._parents = parents
    out._backward = backward
    return out
    ### END SOLUTION


### BEGIN SOLUTION
def _rows_times(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x @ w for x (..., n, k) and a matrix w (k, m) as ONE (rows, k) @ (k, m) product: np.matmul would loop over the
    batch, which is up to twice as slow for the small matrices of a character-level GPT."""
    return np.dot(x.reshape(-1, x.shape[-1]), w).reshape(*x.shape[:-1], w.shape[-1])


def _reduced_axes_back(g: np.ndarray, axis: int | tuple[int, ...] | None, keepdims: bool) -> np.ndarray:
    """Give a reduction's output gradient its size-1 axes back, so that it broadcasts against the input."""
    return g if keepdims or axis is None else np.expand_dims(g, axis)


def _is_row_lookup(index: Any, a: np.ndarray) -> bool:
    """index is one array of integer ids picking whole rows of a (an embedding lookup: weight[ids])."""
    return isinstance(index, np.ndarray) and index.dtype.kind in "iu" and a.ndim >= 1 and index.size > 0


def _add_rows(grad: np.ndarray, ids: np.ndarray, g: np.ndarray) -> None:
    """grad[ids] += g with repeated ids summed, as np.add.at does, but by sorting: the rows of each id are
    consecutive after a stable argsort, and np.add.reduceat sums each run in one call."""
    flat = ids.reshape(-1) % grad.shape[0]  # negative ids count from the end, as in the forward's a[ids]
    rows = g.reshape(flat.size, *grad.shape[1:])  # (N, ...) one row per id
    order = np.argsort(flat, kind="stable")
    sorted_ids = flat[order]
    starts = np.flatnonzero(np.concatenate([[True], sorted_ids[1:] != sorted_ids[:-1]]))  # first row of each id
    grad[sorted_ids[starts]] += np.add.reduceat(rows[order], starts, axis=0)
### END SOLUTION


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
        ### BEGIN SOLUTION
        if grad is None:
            if self.size != 1:
                raise ValueError(f"backward() on a tensor of shape {self.shape} needs `grad` (dL/dself of that "
                                 "shape); only a one-element tensor, a loss, is seeded with 1")
            grad = np.ones_like(self.data)
        grad = np.asarray(grad, dtype=self.dtype)
        if grad.shape != self.shape:
            raise ValueError(f"backward(grad): grad has shape {grad.shape}, the tensor has shape {self.shape}")
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad: nothing leads to a leaf with "
                               "requires_grad=True (or it was made inside no_grad())")

        order: list[Tensor] = []  # every node before the nodes made from it
        visited: set[int] = set()
        stack: list[tuple[Tensor, bool]] = [(self, False)]
        while stack:
            node, parents_done = stack.pop()
            if parents_done:
                order.append(node)
            elif id(node) not in visited:
                visited.add(id(node))
                stack.append((node, True))  # comes back off the stack after all its parents are ordered
                for parent in node._parents:
                    if parent.requires_grad and id(parent) not in visited:
                        stack.append((parent, False))

        grads: dict[int, np.ndarray] = {id(self): grad}  # dL/dnode for the nodes not yet processed
        owned: set[int] = set()  # keys whose array the engine made itself (a sum), so it may add into it in place
        for node in reversed(order):
            key = id(node)
            g = grads.pop(key, None)  # popped: an intermediate gradient is freed once passed on
            if g is None:
                continue  # every path to this node returned None
            if node._backward is None:  # a leaf: g may be shared with other nodes, so it keeps a copy
                if node.grad is None:
                    node.grad = g.astype(node.dtype, order="C", copy=True)
                else:
                    node.grad += g  # its own array: accumulating in place makes no temporary
                continue
            parent_grads = node._backward(g)
            if len(parent_grads) != len(node._parents):
                raise ValueError(f"a backward returned {len(parent_grads)} gradients for {len(node._parents)} parents")
            for parent, parent_grad in zip(node._parents, parent_grads):
                if parent_grad is None or not parent.requires_grad:
                    continue
                if type(parent_grad) is not np.ndarray or parent_grad.shape != parent.data.shape:
                    parent_grad = unbroadcast(np.asarray(parent_grad), parent.data.shape)
                if parent_grad.dtype != parent.data.dtype:
                    parent_grad = parent_grad.astype(parent.data.dtype)
                key = id(parent)  # a node used twice gets the sum of both gradients
                if key not in grads:
                    grads[key] = parent_grad  # may be shared with other nodes: never written to
                elif key in owned:
                    grads[key] += parent_grad  # the engine's own sum: adding in place makes no temporary
                else:
                    grads[key] = grads[key] + parent_grad
                    owned.add(key)
        ### END SOLUTION

    # ------------------------------------------------------------------ elementwise, with broadcasting
    # `other` may be a Tensor, a number or an array: `self._lift(other)` makes it a Tensor.

    def __add__(self, other: Tensor | float) -> Tensor:
        """self + other. d/da = d/db = 1: both inputs get the upstream gradient."""
        ### BEGIN SOLUTION
        other = self._lift(other)
        return op(self.data + other.data, (self, other), lambda g: (g, g))
        ### END SOLUTION

    def __sub__(self, other: Tensor | float) -> Tensor:
        """self - other. d/da = 1, d/db = -1."""
        ### BEGIN SOLUTION
        other = self._lift(other)
        return op(self.data - other.data, (self, other), lambda g: (g, -g))
        ### END SOLUTION

    def __mul__(self, other: Tensor | float) -> Tensor:
        """self * other. d/da = b, d/db = a."""
        ### BEGIN SOLUTION
        other = self._lift(other)
        a, b = self.data, other.data
        return op(a * b, (self, other), lambda g: (g * b, g * a))
        ### END SOLUTION

    def __truediv__(self, other: Tensor | float) -> Tensor:
        """self / other. d/da = 1/b, d/db = -a/b² = -out/b."""
        ### BEGIN SOLUTION
        other = self._lift(other)
        b = other.data
        out = self.data / b
        return op(out, (self, other), lambda g: (g / b, -g * out / b))
        ### END SOLUTION

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
        ### BEGIN SOLUTION
        return op(-self.data, (self,), lambda g: (-g,))
        ### END SOLUTION

    def __pow__(self, exponent: float) -> Tensor:
        """self ** p for a Python number p (TypeError for a Tensor exponent). d/da = p · a^(p-1)."""
        ### BEGIN SOLUTION
        if isinstance(exponent, Tensor):
            raise TypeError("Tensor ** Tensor is not supported: the exponent must be a Python number")
        a = self.data
        return op(a ** exponent, (self,), lambda g: (g * exponent * a ** (exponent - 1),))
        ### END SOLUTION

    def exp(self) -> Tensor:
        """e^a. d/da = e^a, the output itself."""
        ### BEGIN SOLUTION
        out = np.exp(self.data)
        return op(out, (self,), lambda g: (g * out,))
        ### END SOLUTION

    def log(self) -> Tensor:
        """Natural log. d/da = 1/a."""
        ### BEGIN SOLUTION
        a = self.data
        return op(np.log(a), (self,), lambda g: (g / a,))
        ### END SOLUTION

    def tanh(self) -> Tensor:
        """tanh(a). d/da = 1 - tanh(a)²."""
        ### BEGIN SOLUTION
        out = np.tanh(self.data)
        return op(out, (self,), lambda g: (g * (1 - out * out),))
        ### END SOLUTION

    def relu(self) -> Tensor:
        """max(a, 0). d/da = 1 where a > 0, else 0 (also at a == 0)."""
        ### BEGIN SOLUTION
        a = self.data
        return op(np.maximum(a, 0), (self,), lambda g: (g * (a > 0),))
        ### END SOLUTION

    def sigmoid(self) -> Tensor:
        """1 / (1 + e^-a), computed as (1 + tanh(a/2)) / 2, which never overflows. d/da = s(1 - s)."""
        ### BEGIN SOLUTION
        out = 0.5 + 0.5 * np.tanh(0.5 * self.data)
        return op(out, (self,), lambda g: (g * out * (1 - out),))
        ### END SOLUTION

    # ------------------------------------------------------------------ matrix product

    def __matmul__(self, other: Tensor) -> Tensor:
        """self @ other like np.matmul, both at least 2-D: (..., n, k) @ (..., k, m) -> (..., n, m).

        Batch dims broadcast ((B, T, C) @ (C, D) is the usual linear layer). With G = dL/dout:
        dL/dA = G @ Bᵀ and dL/dB = Aᵀ @ G (ᵀ swaps the last two axes); the engine sums broadcast batch dims.
        """
        ### BEGIN SOLUTION
        other = self._lift(other)
        a, b = self.data, other.data
        if a.ndim < 2 or b.ndim < 2:
            raise ValueError(f"matmul needs two arrays of at least 2 dims, got shapes {a.shape} and {b.shape}")
        if b.ndim == 2:  # the linear layer (..., n, k) @ (k, m): one big product over all rows, faster than a batch

            def backward(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                grad_b = a.reshape(-1, a.shape[-1]).T @ g.reshape(-1, g.shape[-1])  # (k, m), batch dims summed
                return _rows_times(g, b.T), grad_b  # (..., n, k)

            return op(_rows_times(a, b), (self, other), backward)

        def backward(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            # (..., n, k) and (..., k, m); the engine sums the batch dims that were broadcast
            return g @ b.swapaxes(-1, -2), a.swapaxes(-1, -2) @ g

        return op(a @ b, (self, other), backward)
        ### END SOLUTION

    # ------------------------------------------------------------------ reductions

    def sum(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        """Sum over `axis` (None: all). Each input element moved the sum by 1: the gradient is G broadcast back."""
        ### BEGIN SOLUTION
        shape = self.shape

        def backward(g: np.ndarray) -> tuple[np.ndarray]:
            return (np.broadcast_to(_reduced_axes_back(g, axis, keepdims), shape),)  # a view: no copy

        return op(self.data.sum(axis=axis, keepdims=keepdims), (self,), backward)
        ### END SOLUTION

    def mean(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        """Mean over `axis` (None: all) = sum / n, with n the number of elements averaged: gradient G/n broadcast."""
        ### BEGIN SOLUTION
        shape = self.shape
        out = self.data.mean(axis=axis, keepdims=keepdims)
        count = self.size // max(np.size(out), 1)  # elements per mean

        def backward(g: np.ndarray) -> tuple[np.ndarray]:
            return (np.broadcast_to(_reduced_axes_back(g, axis, keepdims) / count, shape),)

        return op(out, (self,), backward)
        ### END SOLUTION

    def max(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        """Largest element over `axis` (None: all). The gradient goes to the arg-max; TIES SPLIT IT EVENLY
        (max of [1, 3, 3] sends 0, G/2, G/2), so the gradient is the same whichever tie NumPy would pick."""
        ### BEGIN SOLUTION
        a = self.data
        out = a.max(axis=axis, keepdims=keepdims)

        def backward(g: np.ndarray) -> tuple[np.ndarray]:
            winners = (a == _reduced_axes_back(out, axis, keepdims)).astype(a.dtype)  # 1 at every arg-max
            share = winners / winners.sum(axis=axis, keepdims=True)  # 1/(number of ties) at each arg-max
            return (_reduced_axes_back(g, axis, keepdims) * share,)

        return op(out, (self,), backward)
        ### END SOLUTION

    # ------------------------------------------------------------------ shapes and indexing

    def reshape(self, *shape: int | tuple[int, ...]) -> Tensor:
        """Same elements, new shape: x.reshape(2, -1) or x.reshape((2, -1)). The gradient is reshaped back."""
        ### BEGIN SOLUTION
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        original = self.shape
        return op(self.data.reshape(shape), (self,), lambda g: (g.reshape(original),))
        ### END SOLUTION

    def transpose(self, *axes: int | tuple[int, ...]) -> Tensor:
        """Permute axes like np.transpose: output axis i is input axis axes[i]; no axes reverses them all.
        The gradient goes through the inverse permutation."""
        ### BEGIN SOLUTION
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        axes = tuple(axis % self.ndim for axis in axes) or tuple(reversed(range(self.ndim)))
        inverse = tuple(sorted(range(len(axes)), key=axes.__getitem__))  # output axis of each input axis (argsort)
        return op(self.data.transpose(axes), (self,), lambda g: (g.transpose(inverse),))
        ### END SOLUTION

    def __getitem__(self, index: Any) -> Tensor:
        """self[index] with ints, slices, integer arrays or a tuple of them, as in NumPy. The gradient is scattered with
        np.add.at, so an element read twice gets both gradients: `weight[ids]` with ids (B, T) is an embedding
        lookup (V, C) -> (B, T, C) whose rows used twice accumulate."""
        ### BEGIN SOLUTION
        a = self.data

        def backward(g: np.ndarray) -> tuple[np.ndarray]:
            grad = np.zeros_like(a)
            if _is_row_lookup(index, a):
                _add_rows(grad, index, g)  # the embedding's case, several times faster than np.add.at
            else:
                np.add.at(grad, index, g)  # grad[index] += g would keep only one of repeated indices
            return (grad,)

        return op(a[index], (self,), backward)
        ### END SOLUTION


# ---------------------------------------------------------------------- fused functions


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """Normalised exponentials along `axis`, one fused node.

    s_i = exp(x_i - m) / sum_j exp(x_j - m), m = max_j x_j (subtracting m changes nothing but keeps exp finite).
    Backward, the Jacobian diag(s) - s sᵀ applied to G: dL/dx = s * (G - sum(G * s)), sum along `axis`.
    x: (..., n) -> (..., n); every slice along `axis` sums to 1.
    """
    ### BEGIN SOLUTION
    s = x.data - x.data.max(axis=axis, keepdims=True)  # a fresh array, largest entry 0
    np.exp(s, out=s)
    s /= s.sum(axis=axis, keepdims=True)
    return op(s, (x,), lambda g: (s * (g - (g * s).sum(axis=axis, keepdims=True)),))
    ### END SOLUTION


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """log(softmax(x)) along `axis`, one fused node, finite even where softmax underflows to 0.

    out_i = (x_i - m) - log sum_j exp(x_j - m), m = max_j x_j.
    Backward: dL/dx = G - softmax(x) * sum(G), with softmax(x) = exp(out) and the sum along `axis`.
    """
    ### BEGIN SOLUTION
    out = x.data - x.data.max(axis=axis, keepdims=True)  # a fresh array, largest entry 0
    out -= np.log(np.exp(out).sum(axis=axis, keepdims=True))
    return op(out, (x,), lambda g: (g - np.exp(out) * g.sum(axis=axis, keepdims=True),))
    ### END SOLUTION


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
    ### BEGIN SOLUTION
    tensors = [Tensor(np.array(x, dtype=np.float64), requires_grad=True, dtype=np.float64) for x in inputs]
    out = fn(*tensors)
    weights = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(weights)  # dL/dout = w

    def projected() -> float:
        with no_grad():
            return float((fn(*tensors).data * weights).sum())

    worst = (-1.0, 0, (), 0.0, 0.0)  # (error, input, index, analytic, numeric)
    ok = True
    for i, tensor in enumerate(tensors):
        analytic = tensor.grad if tensor.grad is not None else np.zeros_like(tensor.data)
        numeric = np.zeros_like(tensor.data)
        flat = tensor.data.reshape(-1)  # a view: writing to it perturbs what fn reads
        for j in range(flat.size):
            original = flat[j]
            flat[j] = original + eps
            above = projected()
            flat[j] = original - eps
            below = projected()
            flat[j] = original
            numeric.flat[j] = (above - below) / (2 * eps)
        error = np.abs(analytic - numeric)
        ok = ok and bool(np.all(error <= atol + rtol * np.abs(numeric)))
        if error.size and error.max() > worst[0]:
            index = np.unravel_index(int(np.argmax(error)), error.shape)
            worst = (float(error[index]), i, tuple(int(k) for k in index), float(analytic[index]),
                     float(numeric[index]))
    return GradcheckResult(ok, max(worst[0], 0.0), *worst[1:])
    ### END SOLUTION
