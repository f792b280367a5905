"""Stage 07: transformer blocks (your turn: replace every NotImplementedError).

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
    raise NotImplementedError("stage 07 (transformer blocks): layer_norm")


def rms_norm(x: Tensor, weight: Tensor, eps: float = 1e-5) -> Tensor:
    """Root-mean-square normalisation over the last axis, one fused op: y = x̂ · w.

    r = sqrt(mean(x²) + eps), x̂ = x / r, per row (no centring, no bias). Forward keeps only x̂ and 1/r. With G = dL/dy:
        dL/dx = (1/r) · (G·w - x̂ · mean(G·w · x̂))      (mean over the last axis)
        dL/dw = sum of G · x̂ over every leading axis.
    x: (..., C); weight: (C,)  ->  (..., C), in x's dtype.
    """
    raise NotImplementedError("stage 07 (transformer blocks): rms_norm")


def gelu(x: Tensor) -> Tensor:
    """GELU, tanh form, one fused op: gelu(x) = x/2 · (1 + tanh(u)), u = sqrt(2/π) · (x + 0.044715 x³).

    Exact derivative of that formula (not of the erf form), with t = tanh(u):
        gelu'(x) = (1 + t)/2 + x/2 · (1 - t²) · sqrt(2/π) · (1 + 3 · 0.044715 x²).
    gelu(0) = 0, gelu'(0) = 1/2, gelu(1) ≈ 0.841192, gelu(x) - gelu(-x) = x.  Any shape, elementwise.
    """
    raise NotImplementedError("stage 07 (transformer blocks): gelu")


def silu(x: Tensor) -> Tensor:
    """SiLU (swish), one fused op: silu(x) = x · σ(x), σ(x) = 1 / (1 + e^-x).

    σ is computed as (1 + tanh(x/2)) / 2, the same function, which never overflows (e^-x does for x << 0).
    silu'(x) = σ(x) · (1 + x · (1 - σ(x))).  silu(0) = 0, silu(1) = 1/(1 + e^-1), silu(x) - silu(-x) = x.
    Any shape, elementwise.
    """
    raise NotImplementedError("stage 07 (transformer blocks): silu")


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
    raise NotImplementedError("stage 07 (transformer blocks): swiglu")


# ---------------------------------------------------------------------- modules


class LayerNorm(Module):
    """layer_norm with a learned per-feature scale `weight` (ones) and shift `bias` (zeros), both (width,) float32."""

    def __init__(self, width: int, eps: float = 1e-5) -> None:
        """Parameters `weight` = ones(width) and `bias` = zeros(width), float32, requiring grad; keeps `eps`."""
        raise NotImplementedError("stage 07 (transformer blocks): LayerNorm.__init__")

    def forward(self, x: Tensor) -> Tensor:
        """layer_norm(x, weight, bias, eps): (..., width) -> (..., width)."""
        raise NotImplementedError("stage 07 (transformer blocks): LayerNorm.forward")


class RMSNorm(Module):
    """rms_norm with a learned per-feature scale `weight` (ones), (width,) float32; no bias."""

    def __init__(self, width: int, eps: float = 1e-5) -> None:
        """Parameter `weight` = ones(width), float32, requiring grad; keeps `eps`."""
        raise NotImplementedError("stage 07 (transformer blocks): RMSNorm.__init__")

    def forward(self, x: Tensor) -> Tensor:
        """rms_norm(x, weight, eps): (..., width) -> (..., width)."""
        raise NotImplementedError("stage 07 (transformer blocks): RMSNorm.forward")


class MLP(Module):
    """The GPT-2 feed-forward: width -> hidden -> width with a GELU between, y = down(gelu(up(x)))."""

    def __init__(self, width: int, hidden: int, *, rng: np.random.Generator) -> None:
        """Submodules, in this order: `up` = Linear(width, hidden), `down` = Linear(hidden, width), both with bias
        and Linear's default initialisation, drawn from `rng` (up first)."""
        raise NotImplementedError("stage 07 (transformer blocks): MLP.__init__")

    def forward(self, x: Tensor) -> Tensor:
        """(..., width) -> (..., width)."""
        raise NotImplementedError("stage 07 (transformer blocks): MLP.forward")


class SwiGLU(Module):
    """The gated feed-forward of LLaMA: y = down(silu(gate(x)) ⊙ up(x)) = W2(silu(x W1) ⊙ x W3)."""

    def __init__(self, width: int, hidden: int, *, rng: np.random.Generator) -> None:
        """Submodules, in this order: `gate` = Linear(width, hidden) (W1), `up` = Linear(width, hidden) (W3),
        `down` = Linear(hidden, width) (W2), all without bias, Linear's default initialisation, drawn from `rng`.

        Three matrices instead of two: with hidden = 8·width/3 it has the parameters of a 4·width MLP.
        """
        raise NotImplementedError("stage 07 (transformer blocks): SwiGLU.__init__")

    def forward(self, x: Tensor) -> Tensor:
        """(..., width) -> (..., width): down(swiglu(gate(x), up(x))), the gating as one fused node."""
        raise NotImplementedError("stage 07 (transformer blocks): SwiGLU.forward")


class Dropout(Module):
    """Zero each element with probability p while training, scaling the survivors by 1/(1 - p); identity in eval."""

    def __init__(self, p: float, *, rng: np.random.Generator) -> None:
        """Keep `p` and the generator `rng` (owned by the module from now on: every mask is drawn from it).

        p must be in [0, 1): ValueError otherwise (p = 1 would drop everything and 1/(1 - p) is infinite).
        """
        raise NotImplementedError("stage 07 (transformer blocks): Dropout.__init__")

    def forward(self, x: Tensor) -> Tensor:
        """x itself in eval mode or when p = 0; otherwise one fused op x · mask with
        mask = (u >= p) / (1 - p), u = self.rng.random(x.shape), in x's dtype. The gradient is G · mask.

        Scaling by 1/(1 - p) keeps the expected value: E[x · mask] = x · (1 - p) / (1 - p) = x, so eval needs no
        rescaling.
        """
        raise NotImplementedError("stage 07 (transformer blocks): Dropout.forward")


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
        raise NotImplementedError("stage 07 (transformer blocks): Block.__init__")

    def forward(self, x: Tensor, cache=None, layer: int = 0) -> Tensor:
        """(B, T, width) -> (B, T, width); causal: the output at position t depends only on inputs 0..t.

        cache, layer: passed on to the attention, the one sublayer that mixes positions (decoding with a key/value
        cache: MultiHeadAttention.forward). Norms and feed-forward work per position, pre-norm or post-norm alike, so
        in eval mode a sequence fed in pieces through the cache gives the outputs of one pass over the whole.
        """
        raise NotImplementedError("stage 07 (transformer blocks): Block.forward")
