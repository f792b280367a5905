"""Stage 06: attention (your turn: replace every NotImplementedError).

Scaled dot-product attention as ONE fused op with a hand-derived backward, grouped-query heads handled inside it
(multi-query is the case of one key/value head), a causal mask that follows the key/value-cache convention, and the
three ways of telling attention where a token is: sinusoidal tables, rotary embeddings (RoPE) and ALiBi biases.
`MultiHeadAttention` puts them together as a module. Learned positions are just an `Embedding` (stage 04).

Conventions (the tests rely on them; docs/06-attention.md derives them):
  - shapes: q (B, H, T, Dh); k, v (B, Hkv, S, Dh); H query heads, Hkv key/value heads, H % Hkv == 0.
  - grouping: query head h reads key/value head h // (H // Hkv) (consecutive query heads share a key/value head).
  - scores are (q · k) / sqrt(Dh); positions are 0-indexed; with causal=True query i sits at absolute position
    S - T + i (its keys are the S - T cached ones plus the T new ones) and sees keys j <= S - T + i.
  - RoPE rotates the pairs (x[..., i], x[..., i + Dh/2]) ("rotate half", as in GPT-NeoX and LLaMA), not neighbours.
  - ALiBi adds slope_h * (j - i) (i the absolute query position): 0 on the diagonal, negative into the past.
  - float32 inputs stay float32; the position tables are float64 constants, cast to the working dtype where used.
  - decoding: MultiHeadAttention.forward(x, cache, layer) runs x's tokens after the cache.length cached ones, so a
    sequence fed in pieces gives the outputs of one pass over the whole (stage 11 keeps the cache).
"""
from __future__ import annotations

import math

import numpy as np

from .nn import Linear, Module
from .tensor import Tensor, op


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, *, causal: bool = False,
                                 bias: np.ndarray | None = None) -> Tensor:
    """softmax(q kᵀ / sqrt(Dh) + bias + mask) v, as ONE fused op with a hand-derived backward.

    q: (B, H, T, Dh); k, v: (B, Hkv, S, Dh) with H % Hkv == 0 (grouped-query attention; Hkv == 1 is multi-query,
    Hkv == H plain multi-head). Query head h attends with key/value head h // (H // Hkv). Returns (B, H, T, Dh).
    Do not copy k and v H // Hkv times: view the queries as (B, Hkv, H // Hkv, T, Dh) instead, so a group's query
    heads are extra rows against their one key/value head.

    Forward, per (batch, head), with scale = 1 / sqrt(Dh):
        Sc = q kᵀ · scale + bias (+ mask)    (T, S)    scores
        P  = softmax(Sc) along the key axis  (T, S)    probabilities: the one thing backward keeps
        O  = P v                             (T, Dh)
    Backward, given dO (derivation in docs/06-attention.md):
        dV = Pᵀ dO;   dP = dO vᵀ;   dSc = P ⊙ (dP − rowsum(dP ⊙ P));   dQ = dSc k · scale;   dK = dScᵀ q · scale
    and with groups, dK and dV sum over the query heads of the group.

    causal: query i sits at absolute position S - T + i and sees keys j <= S - T + i (S == T is the usual square
    mask; S > T is decoding with S - T cached keys). Masked scores are -inf, so their probabilities are exactly 0.
    Every row keeps at least key 0 when S >= T, so no row is fully masked; causal with S < T raises ValueError.
    bias: a constant array broadcastable to (B, H, T, S) added to the scores (ALiBi, padding masks); no gradient.
    ValueError for shapes that do not fit together.
    """
    raise NotImplementedError("stage 06 (attention): scaled_dot_product_attention")


def rope_cache(head_dim: int, max_positions: int, base: float = 10000.0) -> tuple[np.ndarray, np.ndarray]:
    """The rotary tables: cos and sin of the angles p · θ_i, each (max_positions, head_dim // 2), float64.

    θ_i = base ** (-2 i / head_dim) for i = 0 .. head_dim/2 - 1 (θ_0 = 1 turns fastest), p = 0 .. max_positions - 1
    (0-indexed: position 0 is not rotated). head_dim must be even: ValueError otherwise.
    """
    raise NotImplementedError("stage 06 (attention): rope_cache")


def apply_rope(x: Tensor, cos: np.ndarray, sin: np.ndarray, offset: int = 0) -> Tensor:
    """Rotate each pair (x[..., i], x[..., i + Dh/2]) of a token at position p by the angle p · θ_i; one fused op.

    x: (B, H, T, Dh), its tokens at positions offset .. offset + T - 1 (offset > 0 when decoding after cached keys);
    cos, sin: (P, Dh/2) from `rope_cache`, P >= offset + T (ValueError otherwise). With a = x[..., :Dh/2],
    b = x[..., Dh/2:], c = cos[p], s = sin[p]:
        out[..., :Dh/2] = a c - b s;    out[..., Dh/2:] = b c + a s
    A rotation keeps norms, and (R_m q) · (R_n k) depends only on m - n. Backward is the inverse rotation (the
    transpose, angle -p · θ_i): da = ga c + gb s, db = gb c - ga s.
    """
    raise NotImplementedError("stage 06 (attention): apply_rope")


def sinusoidal_positions(max_positions: int, dim: int) -> np.ndarray:
    """The fixed position table of "Attention Is All You Need": (max_positions, dim), float64.

    table[p, 2i] = sin(p / 10000 ** (2i / dim)),  table[p, 2i + 1] = cos(p / 10000 ** (2i / dim)),
    p = 0 .. max_positions - 1 (so table[0] is 0, 1, 0, 1, ...). Added to the token embeddings. dim must be even:
    ValueError otherwise.
    """
    raise NotImplementedError("stage 06 (attention): sinusoidal_positions")


def alibi_bias(heads: int, T: int, S: int) -> np.ndarray:
    """ALiBi's additive attention bias: (heads, T, S), float64, bias[h, i, j] = slope_h · (j - (S - T + i)).

    Query i sits at absolute position S - T + i (the causal convention of `scaled_dot_product_attention`), so the
    bias is 0 on the diagonal, negative and growing linearly into the past, positive in the (masked) future.
    slope_h = 2 ** (-8 h / H) for h = 1..H when H is a power of two (H = 8: 1/2, 1/4, ..., 1/256). Otherwise, with n
    the largest power of two below H: the n slopes of n, then the 1st, 3rd, 5th, ... slopes of 2n for the other
    H - n heads (the paper's rule).
    """
    raise NotImplementedError("stage 06 (attention): alibi_bias")


class MultiHeadAttention(Module):
    """Multi-head self-attention with grouped-query key/value heads and optional rotary positions."""

    def __init__(self, width: int, heads: int, kv_heads: int | None = None, *, rng: np.random.Generator,
                 rotary: bool = False, max_positions: int = 1024, causal: bool = True, bias: bool = False) -> None:
        """Projections `query` (width -> heads·Dh), `key` and `value` (width -> kv_heads·Dh), `output`
        (heads·Dh -> width), all `Linear` with `bias` (projection biases; default none), made in that order from
        `rng`; Dh = width // heads.

        kv_heads defaults to heads (plain multi-head); 1 is multi-query. ValueError unless heads divides width and
        kv_heads divides heads. rotary: RoPE on queries and keys, with `rope_cache(Dh, max_positions)` kept as the
        constant arrays `rope_cos`, `rope_sin` (buffers, not parameters). causal: mask the future.
        Keeps `heads`, `kv_heads`, `head_dim`, `rotary` and `causal` as attributes (a key/value cache reads them).
        """
        raise NotImplementedError("stage 06 (attention): MultiHeadAttention.__init__")

    def forward(self, x: Tensor, cache=None, layer: int = 0) -> Tensor:
        """x: (B, T, width) -> (B, T, width). Project, split heads, (rotate,) attend, merge heads, project back.

        q = x Wq split into (B, heads, T, Dh); k, v = x Wk, x Wv split into (B, kv_heads, T, Dh); positions 0..T-1.

        cache: None, or a key/value cache for decoding (stage 11's KVCache; anything with an int `length` and
        `update(layer, k, v)`, which stores k, v (B, kv_heads, T, Dh) arrays at positions length .. length + T - 1 of
        `layer` and returns that layer's keys and values so far, (B, kv_heads, length + T, Dh) arrays). The tokens of
        x then follow the `length` cached ones: they sit at positions length .. length + T - 1 (RoPE with
        offset=length), their k and v (rotated) go into the cache, and q attends to all length + T keys (query i sits
        at length + i: the S - T convention of scaled_dot_product_attention). In the graph the cached keys are
        op(keys, (k,), backward), whose gradient reaches k through the T new positions only: keys computed by earlier
        calls are constants. Nothing moves `length`: the caller advances the cache once every layer has stored its
        keys (GPT.forward does).
        """
        raise NotImplementedError("stage 06 (attention): MultiHeadAttention.forward")
