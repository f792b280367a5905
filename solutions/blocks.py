"""Stage 07: transformer blocks.

The pieces a transformer layer is made of, around the attention of stage 06: two normalisations (LayerNorm, RMSNorm)
and two activations (GELU, SiLU) written as fused ops with hand-derived backward passes, the two feed-forward networks
built from them (a GELU MLP and SwiGLU), seeded dropout, and the block that wires attention and feed-forward into the
residual stream, pre-norm or post-norm.

Conventions (docs/07-blocks.md derives them; the tests rely on them):
  - Normalisation is over the LAST axis; weight and bias have shape (C,) and their gradients are summed over every
    leading axis. eps goes inside the square root: 1/sqrt(var + eps).
  - GELU is the tanh form: gelu(x) = x/2 · (1 + tanh(sqrt(2/π) · (x + 0.044715 x³))).
  - MLP: up (width -> hidden, with bias), GELU, down (hidden -> width, with bias). SwiGLU: down(silu(gate(x)) ⊙ up(x)),
    no biases (W1 = gate, W3 = up, W2 = down in the paper's names).
  - Dropout keeps an element where u >= p with u = rng.random(x.shape) (one call per forward), scales kept ones by
    1/(1 - p), is the identity in eval mode and for p = 0, and rejects p outside [0, 1) with ValueError.
  - Block: sublayers `attention_norm`, `attention`, `feed_forward_norm`, `feed_forward` (and `dropout`); every matrix
    drawn from N(0, 0.02²) except the residual projections (attention.output and feed_forward.down), drawn with std
    0.02 / sqrt(2 · layers); biases zero, norm weights one. Feed-forward hidden size: 4·width for "gelu", 8·width/3
    rounded up to a multiple of 8 for "swiglu" (about the same number of parameters).
  - float32 in, float32 out: no op here promotes the dtype of its input.
"""
from __future__ import annotations

import math

import numpy as np

from .attention import MultiHeadAttention
from .nn import Linear, Module
from .tensor import Tensor, op

GELU_SCALE = math.sqrt(2.0 / math.pi)  # the tanh form of GELU: sqrt(2/π) · (x + 0.044715 x³) inside the tanh
GELU_CUBIC = 0.044715


def _leading_axes(a: np.ndarray) -> tuple[int, ...]:
    """Every axis but the last: a per-feature parameter's gradient is summed over these."""
    return tuple(range(a.ndim - 1))


# ---------------------------------------------------------------------- fused ops


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    """Layer normalisation over the last axis, one fused op: y = x̂ · w + b.

    μ = mean(x), σ = sqrt(mean((x - μ)²) + eps) (the biased variance, divided by C), x̂ = (x - μ) / σ, per row.
    Forward keeps only x̂ and 1/σ for backward. With G = dL/dy and g·w the gradient reaching x̂:
        dL/dx = (1/σ) · (G·w - mean(G·w) - x̂ · mean(G·w · x̂))      (means over the last axis)
        dL/dw = sum of G · x̂ over every leading axis;  dL/db = sum of G over every leading axis.
    x: (..., C); weight, bias: (C,)  ->  (..., C), in x's dtype.
    """
    ### BEGIN SOLUTION
    centered = x.data - x.data.mean(axis=-1, keepdims=True)  # (..., C), a fresh array
    inv_std = 1.0 / np.sqrt((centered * centered).mean(axis=-1, keepdims=True) + eps)  # (..., 1)
    x_hat = centered
    x_hat *= inv_std  # (..., C), normalised in place: centered is not needed again
    w = weight.data

    def backward(g: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        gw = g * w  # (..., C): the gradient reaching x̂
        # x̂ depends on x through μ and σ too: the two means are those paths (docs/07-blocks.md, eq. 6)
        dx = inv_std * (gw - gw.mean(axis=-1, keepdims=True) - x_hat * (gw * x_hat).mean(axis=-1, keepdims=True))
        dw = (g * x_hat).sum(axis=_leading_axes(g)) if weight.requires_grad else None  # (C,)
        db = g.sum(axis=_leading_axes(g)) if bias.requires_grad else None  # (C,)
        return dx, dw, db

    return op(x_hat * w + bias.data, (x, weight, bias), backward)
    ### END SOLUTION


def rms_norm(x: Tensor, weight: Tensor, eps: float = 1e-5) -> Tensor:
    """Root-mean-square normalisation over the last axis, one fused op: y = x̂ · w.

    r = sqrt(mean(x²) + eps), x̂ = x / r, per row (no centring, no bias). Forward keeps only x̂ and 1/r. With G = dL/dy:
        dL/dx = (1/r) · (G·w - x̂ · mean(G·w · x̂))      (mean over the last axis)
        dL/dw = sum of G · x̂ over every leading axis.
    x: (..., C); weight: (C,)  ->  (..., C), in x's dtype.
    """
    ### BEGIN SOLUTION
    inv_rms = 1.0 / np.sqrt(np.einsum("...c,...c->...", x.data, x.data)[..., None] / x.shape[-1] + eps)  # (..., 1)
    x_hat = x.data * inv_rms  # (..., C)
    w = weight.data
    C = x.shape[-1]

    def backward(g: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        rows = (g.reshape(-1, C), x_hat.reshape(-1, C))  # (N, C) each: every leading axis is a row
        dw = np.einsum("nc,nc->c", *rows) if weight.requires_grad else None  # (C,) sum of G · x̂, no temporary
        dx = g * w  # (..., C): the gradient reaching x̂, turned into dL/dx in place
        along = np.einsum("...c,...c->...", dx, x_hat)[..., None] / C  # (..., 1) mean(G·w · x̂) per row
        dx -= x_hat * along  # the path through r: eq. 10
        dx *= inv_rms
        return dx, dw

    return op(x_hat * w, (x, weight), backward)
    ### END SOLUTION


def gelu(x: Tensor) -> Tensor:
    """GELU, tanh form, one fused op: gelu(x) = x/2 · (1 + tanh(u)), u = sqrt(2/π) · (x + 0.044715 x³).

    Exact derivative of that formula (not of the erf form), with t = tanh(u):
        gelu'(x) = (1 + t)/2 + x/2 · (1 - t²) · sqrt(2/π) · (1 + 3 · 0.044715 x²).
    gelu(0) = 0, gelu'(0) = 1/2, gelu(1) ≈ 0.841192, gelu(x) - gelu(-x) = x.  Any shape, elementwise.
    """
    ### BEGIN SOLUTION
    a = x.data
    t = np.tanh(GELU_SCALE * (a + GELU_CUBIC * a * a * a))  # same shape as x

    def backward(g: np.ndarray) -> tuple[np.ndarray]:
        du = GELU_SCALE * (1.0 + 3.0 * GELU_CUBIC * a * a)  # du/dx
        return (g * (0.5 * (1.0 + t) + 0.5 * a * (1.0 - t * t) * du),)  # product rule: docs/07-blocks.md, eq. 12

    return op(0.5 * a * (1.0 + t), (x,), backward)
    ### END SOLUTION


def silu(x: Tensor) -> Tensor:
    """SiLU (swish), one fused op: silu(x) = x · σ(x), σ(x) = 1 / (1 + e^-x).

    σ is computed as (1 + tanh(x/2)) / 2, the same function, which never overflows (e^-x does for x << 0).
    silu'(x) = σ(x) · (1 + x · (1 - σ(x))).  silu(0) = 0, silu(1) = 1/(1 + e^-1), silu(x) - silu(-x) = x.
    Any shape, elementwise.
    """
    ### BEGIN SOLUTION
    a = x.data
    s = 0.5 + 0.5 * np.tanh(0.5 * a)  # σ(x), same shape as x
    return op(a * s, (x,), lambda g: (g * s * (1.0 + a * (1.0 - s)),))  # docs/07-blocks.md, eq. 14
    ### END SOLUTION


def swiglu(gate: Tensor, up: Tensor) -> Tensor:
    """SwiGLU's gating silu(gate) ⊙ up as ONE fused op (gate and up are the two projections x W1 and x W3).

    Composed from `silu` and a product it would be two nodes and about ten full-size temporaries forward and
    backward; fused, it is one node whose backward builds its two gradients in place, as production kernels do.
    With σ = σ(gate) (computed as (1 + tanh(gate/2)) / 2, as in `silu`) and G = dL/dout:
        out = gate · σ · up
        dL/dgate = G · up · σ · (1 + gate · (1 - σ))      (silu'(gate): docs/07-blocks.md, eqs. 14-15)
        dL/dup   = G · gate · σ                           (= G · silu(gate))
    gate, up: (..., hidden), the same shape  ->  (..., hidden), in their dtype.
    """
    ### BEGIN SOLUTION
    if gate.shape != up.shape:
        raise ValueError(f"swiglu: gate {gate.shape} and up {up.shape} must have the same shape")
    a, b = gate.data, up.data
    sigma = np.multiply(a, 0.5)  # σ(a) = (1 + tanh(a/2)) / 2, built in place
    np.tanh(sigma, out=sigma)
    sigma *= 0.5
    sigma += 0.5
    silu_a = a * sigma  # kept: it is dL/dup's factor

    def backward(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        grad_gate = np.subtract(1.0, sigma)  # silu'(a) = σ (1 + a (1 - σ)), built in place: eq. 14
        grad_gate *= a
        grad_gate += 1.0
        grad_gate *= sigma
        grad_gate *= b
        grad_gate *= g  # G · up · silu'(gate)
        return grad_gate, g * silu_a

    return op(silu_a * b, (gate, up), backward)
    ### END SOLUTION


# ---------------------------------------------------------------------- modules


class LayerNorm(Module):
    """layer_norm with a learned per-feature scale `weight` (ones) and shift `bias` (zeros), both (width,) float32."""

    def __init__(self, width: int, eps: float = 1e-5) -> None:
        """Parameters `weight` = ones(width) and `bias` = zeros(width), float32, requiring grad; keeps `eps`."""
        ### BEGIN SOLUTION
        self.weight = Tensor(np.ones(width, dtype=np.float32), requires_grad=True)
        self.bias = Tensor(np.zeros(width, dtype=np.float32), requires_grad=True)
        self.eps = eps
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        """layer_norm(x, weight, bias, eps): (..., width) -> (..., width)."""
        ### BEGIN SOLUTION
        return layer_norm(x, self.weight, self.bias, self.eps)
        ### END SOLUTION


class RMSNorm(Module):
    """rms_norm with a learned per-feature scale `weight` (ones), (width,) float32; no bias."""

    def __init__(self, width: int, eps: float = 1e-5) -> None:
        """Parameter `weight` = ones(width), float32, requiring grad; keeps `eps`."""
        ### BEGIN SOLUTION
        self.weight = Tensor(np.ones(width, dtype=np.float32), requires_grad=True)
        self.eps = eps
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        """rms_norm(x, weight, eps): (..., width) -> (..., width)."""
        ### BEGIN SOLUTION
        return rms_norm(x, self.weight, self.eps)
        ### END SOLUTION


class MLP(Module):
    """The GPT-2 feed-forward: width -> hidden -> width with a GELU between, y = down(gelu(up(x)))."""

    def __init__(self, width: int, hidden: int, *, rng: np.random.Generator) -> None:
        """Submodules, in this order: `up` = Linear(width, hidden), `down` = Linear(hidden, width), both with bias
        and Linear's default initialisation, drawn from `rng` (up first)."""
        ### BEGIN SOLUTION
        self.up = Linear(width, hidden, rng=rng)
        self.down = Linear(hidden, width, rng=rng)
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        """(..., width) -> (..., width)."""
        ### BEGIN SOLUTION
        return self.down(gelu(self.up(x)))  # (..., hidden) in between
        ### END SOLUTION


class SwiGLU(Module):
    """The gated feed-forward of LLaMA: y = down(silu(gate(x)) ⊙ up(x)) = W2(silu(x W1) ⊙ x W3)."""

    def __init__(self, width: int, hidden: int, *, rng: np.random.Generator) -> None:
        """Submodules, in this order: `gate` = Linear(width, hidden) (W1), `up` = Linear(width, hidden) (W3),
        `down` = Linear(hidden, width) (W2), all without bias, Linear's default initialisation, drawn from `rng`.

        Three matrices instead of two: with hidden = 8·width/3 it has the parameters of a 4·width MLP.
        """
        ### BEGIN SOLUTION
        self.gate = Linear(width, hidden, bias=False, rng=rng)
        self.up = Linear(width, hidden, bias=False, rng=rng)
        self.down = Linear(hidden, width, bias=False, rng=rng)
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        """(..., width) -> (..., width): down(swiglu(gate(x), up(x))), the gating as one fused node."""
        ### BEGIN SOLUTION
        return self.down(swiglu(self.gate(x), self.up(x)))  # (..., hidden) in between
        ### END SOLUTION


class Dropout(Module):
    """Zero each element with probability p while training, scaling the survivors by 1/(1 - p); identity in eval."""

    def __init__(self, p: float, *, rng: np.random.Generator) -> None:
        """Keep `p` and the generator `rng` (owned by the module from now on: every mask is drawn from it).

        p must be in [0, 1): ValueError otherwise (p = 1 would drop everything and 1/(1 - p) is infinite).
        """
        ### BEGIN SOLUTION
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.rng = rng
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        """x itself in eval mode or when p = 0; otherwise one fused op x · mask with
        mask = (u >= p) / (1 - p), u = self.rng.random(x.shape), in x's dtype. The gradient is G · mask.

        Scaling by 1/(1 - p) keeps the expected value: E[x · mask] = x · (1 - p) / (1 - p) = x, so eval needs no
        rescaling.
        """
        ### BEGIN SOLUTION
        if not self.training or self.p == 0.0:
            return x
        mask = (self.rng.random(x.shape) >= self.p).astype(x.dtype) / x.dtype.type(1.0 - self.p)  # x's shape
        return op(x.data * mask, (x,), lambda g: (g * mask,))
        ### END SOLUTION


class Block(Module):
    """One transformer layer: attention then feed-forward, each added to the residual stream.

    pre-norm (GPT-2, LLaMA):   x = x + attention(attention_norm(x));     x = x + feed_forward(feed_forward_norm(x))
    post-norm (the original):  x = attention_norm(x + attention(x));     x = feed_forward_norm(x + feed_forward(x))
    With dropout > 0, each sublayer's output goes through `dropout` before it is added.
    """

    def __init__(self, width: int, heads: int, kv_heads: int | None = None, *, rng: np.random.Generator,
                 norm: str = "rms", feed_forward: str = "swiglu", pre_norm: bool = True, rotary: bool = False,
                 max_positions: int = 1024, dropout: float = 0.0, layers: int = 1) -> None:
        """Submodules in this order: `attention_norm`, `attention` (MultiHeadAttention(width, heads, kv_heads,
        rotary=..., max_positions=..., causal=True)), `feed_forward_norm`, `feed_forward`, `dropout` (Dropout(dropout)
        sharing `rng`).

        norm: "rms" (RMSNorm) or "layer" (LayerNorm); feed_forward: "swiglu" (SwiGLU with hidden = 8·width/3 rounded
        up to a multiple of 8, i.e. 8 · ceil(width / 3): 24 for width 8, 1024 for width 384) or "gelu" (MLP, hidden =
        4·width); anything else is a ValueError naming the option.
        Initialisation (GPT-2's): every matrix (2-D weight) is redrawn from N(0, 0.02²), except the projections that
        write into the residual stream, attention.output.weight and feed_forward.down.weight, which use std
        0.02 / sqrt(2 · layers) so that the stream's variance stays put as the 2 · layers additions pile up.
        Redraw in place (`parameter.data[...] = rng.standard_normal(shape) * std`) so the dtype stays; biases stay
        zero and norm weights one.
        """
        ### BEGIN SOLUTION
        norms = {"rms": RMSNorm, "layer": LayerNorm}
        if norm not in norms:
            raise ValueError(f"norm must be 'rms' or 'layer', got {norm!r}")
        if feed_forward not in ("swiglu", "gelu"):
            raise ValueError(f"feed_forward must be 'swiglu' or 'gelu', got {feed_forward!r}")
        self.pre_norm = pre_norm
        self.attention_norm = norms[norm](width)
        self.attention = MultiHeadAttention(width, heads, kv_heads, rng=rng, rotary=rotary,
                                            max_positions=max_positions, causal=True)
        self.feed_forward_norm = norms[norm](width)
        if feed_forward == "swiglu":
            self.feed_forward = SwiGLU(width, 8 * math.ceil(width / 3), rng=rng)  # 8·width/3 up to a multiple of 8
        else:
            self.feed_forward = MLP(width, 4 * width, rng=rng)
        self.dropout = Dropout(dropout, rng=rng)

        residual = {"attention.output.weight", "feed_forward.down.weight"}
        for name, parameter in self.named_parameters():
            if parameter.ndim == 2:  # a matrix; biases and norm weights are vectors and keep their values
                std = 0.02 / math.sqrt(2 * layers) if name in residual else 0.02
                parameter.data[...] = rng.standard_normal(parameter.shape) * std  # in place: keeps the dtype
        ### END SOLUTION

    def forward(self, x: Tensor, cache=None, layer: int = 0) -> Tensor:
        """(B, T, width) -> (B, T, width); causal: the output at position t depends only on inputs 0..t.

        cache, layer: passed on to the attention, the one sublayer that mixes positions (decoding with a key/value
        cache: MultiHeadAttention.forward). Norms and feed-forward work per position, pre-norm or post-norm alike, so
        in eval mode a sequence fed in pieces through the cache gives the outputs of one pass over the whole.
        """
        ### BEGIN SOLUTION
        if self.pre_norm:
            x = x + self.dropout(self.attention(self.attention_norm(x), cache, layer))  # (B, T, C)
            return x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))  # (B, T, C)
        x = self.attention_norm(x + self.dropout(self.attention(x, cache, layer)))  # (B, T, C)
        return self.feed_forward_norm(x + self.dropout(self.feed_forward(x)))  # (B, T, C)
        ### END SOLUTION
