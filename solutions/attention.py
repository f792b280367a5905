"""Stage 06: attention.

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
    ### BEGIN SOLUTION
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"attention needs 4-D q, k, v (B, heads, time, head_dim), got {q.shape}, {k.shape}, {v.shape}")
    B, H, T, Dh = q.shape
    _, Hkv, S, _ = k.shape
    if k.shape != v.shape or k.shape[0] != B or k.shape[3] != Dh:
        raise ValueError(f"k and v must both be (B={B}, kv_heads, S, Dh={Dh}), got {k.shape} and {v.shape}")
    if H % Hkv:
        raise ValueError(f"{H} query heads cannot be shared evenly by {Hkv} key/value heads (H % Hkv must be 0)")
    if causal and S < T:
        raise ValueError(f"causal attention with fewer keys (S={S}) than queries (T={T}) would fully mask a row")
    G = H // Hkv  # query heads per key/value head
    scale = 1.0 / math.sqrt(Dh)  # a Python float: a NumPy float64 scalar would turn float32 scores into float64

    queries = q.data.reshape(B, Hkv, G * T, Dh)  # a group's query heads are extra rows against one key head
    scores = queries @ k.data.swapaxes(-1, -2)  # (B, Hkv, G*T, S), a fresh array: the steps below work in place
    scores *= scale
    scores = scores.reshape(B, Hkv, G, T, S)  # a view: head h = (h // G, h % G)
    if bias is not None:
        bias = np.broadcast_to(np.asarray(bias, dtype=scores.dtype), (B, H, T, S))
        scores = scores + bias.reshape(B, Hkv, G, T, S)
    if causal and T > 1:  # one query (a decoding step) sits at the last position and sees every key: no mask
        visible = np.tri(T, S, S - T, dtype=bool)  # (T, S): True where key j <= S - T + i
        np.copyto(scores, -np.inf, where=~visible)  # -inf on the future (exp gives exactly 0), no full-size mask
    scores -= scores.max(axis=-1, keepdims=True)  # largest score 0: exp cannot overflow; rows are never all -inf
    probs = np.exp(scores, out=scores)  # the scores are not needed again
    probs /= probs.sum(axis=-1, keepdims=True)  # (B, Hkv, G, T, S)
    probs = probs.reshape(B, Hkv, G * T, S)
    out = (probs @ v.data).reshape(B, H, T, Dh)  # (B, Hkv, G*T, Dh) -> (B, H, T, Dh)

    def backward(grad: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        grad = grad.reshape(B, Hkv, G * T, Dh)  # dO, grouped like the queries
        grad_v = probs.swapaxes(-1, -2) @ grad  # (B, Hkv, S, Dh): Pᵀ dO, summed over the group's rows
        grad_s = grad @ v.data.swapaxes(-1, -2)  # (B, Hkv, G*T, S): dP = dO vᵀ, turned into dSc in place below
        grad_s -= np.einsum("...s,...s->...", grad_s, probs)[..., None]  # dP − rowsum(dP ⊙ P): softmax's Jacobian
        grad_s *= probs
        grad_s *= scale  # the scale of q kᵀ · scale, folded in once for both dQ and dK
        grad_q = (grad_s @ k.data).reshape(B, H, T, Dh)  # dSc k · scale
        grad_k = grad_s.swapaxes(-1, -2) @ queries  # (B, Hkv, S, Dh): dScᵀ q · scale, summed over the group
        return grad_q, grad_k, grad_v

    return op(out, (q, k, v), backward)
    ### END SOLUTION


def rope_cache(head_dim: int, max_positions: int, base: float = 10000.0) -> tuple[np.ndarray, np.ndarray]:
    """The rotary tables: cos and sin of the angles p · θ_i, each (max_positions, head_dim // 2), float64.

    θ_i = base ** (-2 i / head_dim) for i = 0 .. head_dim/2 - 1 (θ_0 = 1 turns fastest), p = 0 .. max_positions - 1
    (0-indexed: position 0 is not rotated). head_dim must be even: ValueError otherwise.
    """
    ### BEGIN SOLUTION
    if head_dim % 2:
        raise ValueError(f"rotary embeddings rotate pairs of features: head_dim must be even, got {head_dim}")
    frequencies = base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)  # (Dh/2,) θ_i
    angles = np.arange(max_positions, dtype=np.float64)[:, None] * frequencies  # (P, Dh/2) p · θ_i
    return np.cos(angles), np.sin(angles)
    ### END SOLUTION


def apply_rope(x: Tensor, cos: np.ndarray, sin: np.ndarray, offset: int = 0) -> Tensor:
    """Rotate each pair (x[..., i], x[..., i + Dh/2]) of a token at position p by the angle p · θ_i; one fused op.

    x: (B, H, T, Dh), its tokens at positions offset .. offset + T - 1 (offset > 0 when decoding after cached keys);
    cos, sin: (P, Dh/2) from `rope_cache`, P >= offset + T (ValueError otherwise). With a = x[..., :Dh/2],
    b = x[..., Dh/2:], c = cos[p], s = sin[p]:
        out[..., :Dh/2] = a c - b s;    out[..., Dh/2:] = b c + a s
    A rotation keeps norms, and (R_m q) · (R_n k) depends only on m - n. Backward is the inverse rotation (the
    transpose, angle -p · θ_i): da = ga c + gb s, db = gb c - ga s.
    """
    ### BEGIN SOLUTION
    T, Dh = x.shape[-2:]
    half = Dh // 2
    if Dh % 2 or cos.shape[-1] != half or sin.shape != cos.shape:
        raise ValueError(f"apply_rope: head_dim {Dh} needs cos and sin of shape (positions, {Dh // 2}), "
                         f"got {cos.shape} and {sin.shape}")
    if offset < 0 or offset + T > cos.shape[0]:
        raise ValueError(f"apply_rope: positions {offset}..{offset + T - 1} are outside the table of "
                         f"{cos.shape[0]} positions")
    c = cos[offset:offset + T].astype(x.dtype, copy=False)  # (T, Dh/2), broadcasts over (B, H)
    s = sin[offset:offset + T].astype(x.dtype, copy=False)
    out = _rotate(x.data, c, s)  # (B, H, T, Dh): [a c - b s, b c + a s] with a, b = x[..., :Dh/2], x[..., Dh/2:]

    def backward(grad: np.ndarray) -> tuple[np.ndarray]:
        return (_rotate(grad, c, -s),)  # rotate back: [ga c + gb s, gb c - ga s]

    return op(out, (x,), backward)
    ### END SOLUTION


### BEGIN SOLUTION
def _rotate(x: np.ndarray, c: np.ndarray, s: np.ndarray) -> np.ndarray:
    """[a c - b s, b c + a s] for the halves a, b of x's last axis, computed as x · [c, c] + [b, a] · [-s, s]: passes
    over whole rows of Dh elements, about three times faster in NumPy than passes over half-rows of Dh/2."""
    half = x.shape[-1] // 2
    swapped = np.empty(x.shape, dtype=np.result_type(x, c))  # (..., Dh): [b, a]
    swapped[..., :half] = x[..., half:]
    swapped[..., half:] = x[..., :half]
    swapped *= np.concatenate([-s, s], axis=-1)  # (T, Dh) broadcast over the leading axes
    out = x * np.concatenate([c, c], axis=-1)
    out += swapped
    return out
### END SOLUTION


def sinusoidal_positions(max_positions: int, dim: int) -> np.ndarray:
    """The fixed position table of "Attention Is All You Need": (max_positions, dim), float64.

    table[p, 2i] = sin(p / 10000 ** (2i / dim)),  table[p, 2i + 1] = cos(p / 10000 ** (2i / dim)),
    p = 0 .. max_positions - 1 (so table[0] is 0, 1, 0, 1, ...). Added to the token embeddings. dim must be even:
    ValueError otherwise.
    """
    ### BEGIN SOLUTION
    if dim % 2:
        raise ValueError(f"sinusoidal positions interleave sin and cos: dim must be even, got {dim}")
    frequencies = 10000.0 ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)  # (dim/2,)
    angles = np.arange(max_positions, dtype=np.float64)[:, None] * frequencies  # (P, dim/2)
    table = np.empty((max_positions, dim))
    table[:, 0::2] = np.sin(angles)
    table[:, 1::2] = np.cos(angles)
    return table
    ### END SOLUTION


def alibi_bias(heads: int, T: int, S: int) -> np.ndarray:
    """ALiBi's additive attention bias: (heads, T, S), float64, bias[h, i, j] = slope_h · (j - (S - T + i)).

    Query i sits at absolute position S - T + i (the causal convention of `scaled_dot_product_attention`), so the
    bias is 0 on the diagonal, negative and growing linearly into the past, positive in the (masked) future.
    slope_h = 2 ** (-8 h / H) for h = 1..H when H is a power of two (H = 8: 1/2, 1/4, ..., 1/256). Otherwise, with n
    the largest power of two below H: the n slopes of n, then the 1st, 3rd, 5th, ... slopes of 2n for the other
    H - n heads (the paper's rule).
    """
    ### BEGIN SOLUTION
    if heads < 1:
        raise ValueError(f"alibi_bias needs at least one head, got {heads}")
    n = 2 ** int(np.floor(np.log2(heads)))  # the largest power of two <= heads
    slopes = 2.0 ** (-8.0 * np.arange(1, n + 1) / n)  # (n,): 1/2, 1/4, ..., 1/256 for n = 8
    if n < heads:  # every other slope of 2n heads: 2 ** (-8 h / 2n) for h = 1, 3, 5, ...
        slopes = np.concatenate([slopes, 2.0 ** (-4.0 * np.arange(1, 2 * n, 2)[:heads - n] / n)])
    distance = np.arange(S)[None, :] - (S - T + np.arange(T))[:, None]  # (T, S): j - absolute position of i
    return slopes[:, None, None] * distance  # (H, T, S)
    ### END SOLUTION


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
        ### BEGIN SOLUTION
        super().__init__()
        kv_heads = heads if kv_heads is None else kv_heads
        if width % heads or heads % kv_heads:
            raise ValueError(f"MultiHeadAttention: heads ({heads}) must divide width ({width}) and kv_heads "
                             f"({kv_heads}) must divide heads")
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, width // heads
        self.rotary, self.causal = rotary, causal
        self.query = Linear(width, heads * self.head_dim, bias=bias, rng=rng)
        self.key = Linear(width, kv_heads * self.head_dim, bias=bias, rng=rng)
        self.value = Linear(width, kv_heads * self.head_dim, bias=bias, rng=rng)
        self.output = Linear(heads * self.head_dim, width, bias=bias, rng=rng)
        if rotary:
            self.rope_cos, self.rope_sin = rope_cache(self.head_dim, max_positions)
        ### END SOLUTION

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
        ### BEGIN SOLUTION
        B, T, _ = x.shape
        offset = 0 if cache is None else cache.length  # x's tokens sit at positions offset .. offset + T - 1
        q = self.query(x).reshape(B, T, self.heads, self.head_dim).transpose(0, 2, 1, 3)  # (B, H, T, Dh)
        k = self.key(x).reshape(B, T, self.kv_heads, self.head_dim).transpose(0, 2, 1, 3)  # (B, Hkv, T, Dh)
        v = self.value(x).reshape(B, T, self.kv_heads, self.head_dim).transpose(0, 2, 1, 3)  # (B, Hkv, T, Dh)
        if self.rotary:
            q = apply_rope(q, self.rope_cos, self.rope_sin, offset)
            k = apply_rope(k, self.rope_cos, self.rope_sin, offset)  # stored rotated: a key's angle never changes
        if cache is not None:
            keys, values = cache.update(layer, k.data, v.data)  # (B, Hkv, offset + T, Dh), in the cache's dtype
            k = op(keys, (k,), lambda g: (g[:, :, offset:],))  # only the last T positions are this call's k
            v = op(values, (v,), lambda g: (g[:, :, offset:],))
        y = scaled_dot_product_attention(q, k, v, causal=self.causal)  # (B, H, T, Dh)
        y = y.transpose(0, 2, 1, 3).reshape(B, T, self.heads * self.head_dim)  # heads side by side again
        return self.output(y)
        ### END SOLUTION
