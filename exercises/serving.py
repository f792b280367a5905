"""Stage 16: serving the model small and fast (your turn: replace every NotImplementedError).

Three ways to make a trained GPT cheaper to run, each checked against the model it replaces:
  - weight quantization: int8 per output channel and int4 in groups along the input axis (two per byte), and a
    QuantizedLinear that dequantizes on the fly: 4x and ~7x fewer bytes for a small, measured loss;
  - speculative decoding: a small draft model proposes k tokens, the target checks them in ONE cached forward, and an
    accept/reject rule keeps exactly the target's distribution (greedy: exactly the target's tokens);
  - batched decoding: prompts of different lengths decoded together, left-padded, each row at its own positions.
docs/16-serving.md derives each piece.

Conventions (the tests rely on them):
  - A Linear's weight is (in, out) (y = x @ W): an output channel is a COLUMN, and int4 groups run down a column.
  - Symmetric: q = round(w / s) (np.round, half to even), w ≈ q · s. int8: s = max|column| / 127, q in [-127, 127],
    float32 scales (out,). int4: s = max|group| / 7, q in [-7, 7], float16 scales (groups, out) rounded UP to a
    float16 that is >= max|group| / 7, so |w / s| <= 7 still holds. A zero column or group has s = 0 and q = 0.
  - int4 packing: the input axis is zero-padded to a multiple of the group (which must be even); stored value q + 8
    in 1 .. 15; row 2i goes in the LOW nibble of packed row i, row 2i + 1 in the HIGH nibble.
  - Speculative decoding keeps, in both caches, every token but the last; a rejected draft is undone with
    SpeculativeCache.truncate. Probabilities come from stage 11's filter_logits (temperature 0: one-hot, greedy).
  - Batched decoding pads on the LEFT: row b has pads[b] pad slots first, and its token at slot j sits at position
    j - pads[b]; keys at pad slots are masked out (a pad query sees only itself, so no row is all -inf).
"""
from __future__ import annotations

import numpy as np

from .finetune import child_modules, lm_head, masked_features
from .generate import KVCache, _softmax, filter_logits, forward_cached
from .gpt import GPT
from .nn import Linear, Module
from .tensor import Tensor, no_grad

# ---------------------------------------------------------------------- quantizing weights


def quantize_int8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output channel: w (in, out) -> (q int8 (in, out), scale float32 (out,)).

    scale_j = max_i |w_ij| / 127 (in float32), q = clip(round(w / scale), -127, 127); a column of zeros has scale 0 and
    q 0. Rounding to the nearest integer errs by at most half a step: |w - q · scale| <= scale / 2 per element.
    """
    raise NotImplementedError("stage 16 (serving small and fast): quantize_int8")


def dequantize_int8(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """q int8 (in, out), scale (out,) -> float32 (in, out): q · scale, the column's scale on every row."""
    raise NotImplementedError("stage 16 (serving small and fast): dequantize_int8")


def pack_int4(q: np.ndarray) -> np.ndarray:
    """int values in [-8, 7], (rows, out) with rows even -> uint8 (rows / 2, out): q[2i] + 8 in the low nibble of row
    i, q[2i + 1] + 8 in the high nibble. ValueError for an odd number of rows or a value outside [-8, 7]."""
    raise NotImplementedError("stage 16 (serving small and fast): pack_int4")


def unpack_int4(packed: np.ndarray) -> np.ndarray:
    """uint8 (rows / 2, out) -> int8 (rows, out): the inverse of pack_int4 (low nibble first, minus 8)."""
    raise NotImplementedError("stage 16 (serving small and fast): unpack_int4")


def quantize_int4(w: np.ndarray, group: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int4 in groups of `group` rows of each column: w (in, out) -> (packed uint8 (G · group / 2, out),
    scale float16 (G, out)), G = ceil(in / group). The input axis is zero-padded to G · group rows first.

    scale = max |group| / 7, rounded UP to a float16 (np.nextafter when float16 rounding went down), so that
    |w / scale| <= 7; q = clip(round(w / scale), -7, 7), packed with pack_int4.
    Per element |w - q · scale| <= scale / 2.
    ValueError unless group is even and positive.
    """
    raise NotImplementedError("stage 16 (serving small and fast): quantize_int4")


def dequantize_int4(packed: np.ndarray, scale: np.ndarray, rows: int) -> np.ndarray:
    """packed (G · group / 2, out), scale (G, out) -> float32 (rows, out): unpack, multiply each group by its scale,
    drop the padding rows."""
    raise NotImplementedError("stage 16 (serving small and fast): dequantize_int4")


class QuantizedLinear(Module):
    """A Linear whose weight is stored quantized and dequantized on the fly: y = x @ deq(W) + b (no gradient)."""

    def __init__(self, linear: Linear, bits: int = 8, group: int = 32) -> None:
        """Quantize linear.weight with quantize_int8 (bits 8) or quantize_int4(group) (bits 4) and keep `bits`,
        `group`, `rows` (in_features), the arrays `q` and `scale`, and linear.bias (None or a Tensor, kept as it is).
        ValueError for other bits."""
        raise NotImplementedError("stage 16 (serving small and fast): QuantizedLinear.__init__")

    def weight(self) -> np.ndarray:
        """The dequantized weight (in, out) in the original weight's dtype."""
        raise NotImplementedError("stage 16 (serving small and fast): QuantizedLinear.weight")

    def nbytes(self) -> int:
        """Bytes stored: q, scale, and the bias if any."""
        raise NotImplementedError("stage 16 (serving small and fast): QuantizedLinear.nbytes")

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., in) -> (..., out), as Linear.forward with the dequantized weight (a constant Tensor)."""
        raise NotImplementedError("stage 16 (serving small and fast): QuantizedLinear.forward")


def quantize_model(model: Module, bits: int = 8, group: int = 32) -> Module:
    """Replace, in place, every Linear anywhere in `model` by QuantizedLinear(linear, bits, group); returns `model`.
    Embeddings and norms stay as they are (a tied head reads the float token table)."""
    raise NotImplementedError("stage 16 (serving small and fast): quantize_model")


def weight_bytes(model: Module) -> int:
    """Bytes of everything the model stores: its parameters' arrays plus each QuantizedLinear's nbytes()."""
    raise NotImplementedError("stage 16 (serving small and fast): weight_bytes")


# ---------------------------------------------------------------------- speculative decoding


class SpeculativeCache(KVCache):
    """Stage 11's KVCache, with a way back: truncate(length) forgets the positions from `length` on."""

    def truncate(self, length: int) -> None:
        """Set the filled length to `length` (the stale keys beyond it are overwritten later).
        ValueError unless 0 <= length <= the current length."""
        raise NotImplementedError("stage 16 (serving small and fast): SpeculativeCache.truncate")


def residual(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The distribution to draw from after a rejection: max(0, p - q) normalised, in float64 (V,).
    When p == q (nothing left over; a rejection then has probability 0) return p."""
    raise NotImplementedError("stage 16 (serving small and fast): residual")


def _draw(probs: np.ndarray, rng) -> int:
    """One token by the inverse CDF with one rng.random() call (stage 11's rule)."""
    cumulative = np.cumsum(probs)
    return int((cumulative <= rng.random() * cumulative[-1]).sum())


def accept_drafts(target_probs: np.ndarray, draft_probs: np.ndarray, drafts: np.ndarray, rng) -> tuple[int, int]:
    """Judge k drafted tokens: target_probs (k + 1, V), draft_probs (k, V), drafts int (k,) -> (accepted, next token).

    For i = 0 .. k - 1 in order, one u = rng.random(): accept drafts[i] when u · q_i(d) < p_i(d) (probability
    min(1, p/q)). At the first rejection, draw the next token from residual(p_i, q_i) (one more rng.random(), inverse
    CDF) and stop; if all k are accepted, draw it from p_k, the target's distribution after the last draft. Every
    emitted token then follows the target's distribution exactly (docs/16-serving.md, section 3).
    """
    raise NotImplementedError("stage 16 (serving small and fast): accept_drafts")


def speculative_generate(target: GPT, draft: GPT, prompt: np.ndarray, max_new_tokens: int, *, rng, k: int = 4,
                         temperature: float = 1.0) -> tuple[np.ndarray, dict]:
    """Continue one prompt (P,) by max_new_tokens tokens with draft proposals -> (int64 (P + N,), stats).

    Each round: the draft feeds the tokens its cache lacks and proposes k' = min(k, tokens still wanted - 1) tokens,
    each drawn with _draw(q, rng) from q = softmax of stage 11's filter_logits(logits, temperature=temperature)
    (one rng.random() each, all k' before accept_drafts draws its own; p is made the same way); the target runs ONE forward_cached
    over [last token, drafts] (k' + 1 positions); accept_drafts decides; both caches are truncated back to all tokens
    but the last. stats: {"rounds", "drafted", "accepted", "target_forwards"}. ValueError when P + N - 1 exceeds
    either model's context, or k < 1.
    """
    raise NotImplementedError("stage 16 (serving small and fast): speculative_generate")


# ---------------------------------------------------------------------- batched decoding


def padded_forward(model: GPT, ids: np.ndarray, pads: np.ndarray, cache: KVCache) -> np.ndarray:
    """Logits (B, T, V) for ids (B, T) at cache slots cache.length .. cache.length + T - 1, row b left-padded by
    pads[b] slots: its token at slot j sits at position j - pads[b] (pad slots use position 0). Keys at slots
    < pads[b] are masked with -inf except a pad query's own slot (bias (B, 1, T, S)). Stage 14's masked_features runs
    the blocks with these positions and this bias, under no_grad, and advances the cache; lm_head puts the head on.
    Row b's logits at real slots equal model(row b alone).
    """
    raise NotImplementedError("stage 16 (serving small and fast): padded_forward")


def batched_generate(model: GPT, prompts: list, max_new_tokens: int) -> list[np.ndarray]:
    """Greedy continuation of several prompts of different lengths at once -> one int64 array (P_b + N,) per prompt.

    Left-pad to the longest prompt (pads[b] = longest - P_b, pad id 0), prefill all rows with one padded_forward,
    then one token per row per step, each the argmax (lowest index on ties) of its row's last logits. Every row equals
    generate(model, prompt_b, N, temperature=0) alone. ValueError for an empty prompt, and when longest + N - 1 >
    config.context.
    """
    raise NotImplementedError("stage 16 (serving small and fast): batched_generate")
