"""Stage 16: serving the model small and fast.

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
    ### BEGIN SOLUTION
    w = np.asarray(w, dtype=np.float64)
    scale = (np.abs(w).max(axis=0) / 127).astype(np.float32)  # (out,)
    safe = np.where(scale > 0, scale, 1.0).astype(np.float64)  # a zero column divides by 1: its w are all 0
    q = np.clip(np.round(w / safe), -127, 127).astype(np.int8)  # (in, out)
    return q, scale
    ### END SOLUTION


def dequantize_int8(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """q int8 (in, out), scale (out,) -> float32 (in, out): q · scale, the column's scale on every row."""
    ### BEGIN SOLUTION
    return (q.astype(np.float32) * scale.astype(np.float32)).astype(np.float32)
    ### END SOLUTION


def pack_int4(q: np.ndarray) -> np.ndarray:
    """int values in [-8, 7], (rows, out) with rows even -> uint8 (rows / 2, out): q[2i] + 8 in the low nibble of row
    i, q[2i + 1] + 8 in the high nibble. ValueError for an odd number of rows or a value outside [-8, 7]."""
    ### BEGIN SOLUTION
    q = np.asarray(q)
    if q.shape[0] % 2:
        raise ValueError(f"pack_int4 needs an even number of rows, got {q.shape[0]}")
    if q.size and (q.min() < -8 or q.max() > 7):
        raise ValueError(f"pack_int4 holds values in [-8, 7], got {q.min()} .. {q.max()}")
    nibbles = (q.astype(np.int16) + 8).astype(np.uint8)  # 0 .. 15
    return (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8)  # (rows / 2, out)
    ### END SOLUTION


def unpack_int4(packed: np.ndarray) -> np.ndarray:
    """uint8 (rows / 2, out) -> int8 (rows, out): the inverse of pack_int4 (low nibble first, minus 8)."""
    ### BEGIN SOLUTION
    low = (packed & 0x0F).astype(np.int8) - 8  # rows 0, 2, 4, ...
    high = (packed >> 4).astype(np.int8) - 8  # rows 1, 3, 5, ...
    q = np.empty((2 * packed.shape[0],) + packed.shape[1:], dtype=np.int8)
    q[0::2], q[1::2] = low, high
    return q
    ### END SOLUTION


def quantize_int4(w: np.ndarray, group: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int4 in groups of `group` rows of each column: w (in, out) -> (packed uint8 (G · group / 2, out),
    scale float16 (G, out)), G = ceil(in / group). The input axis is zero-padded to G · group rows first.

    scale = max |group| / 7, rounded UP to a float16 (np.nextafter when float16 rounding went down), so that
    |w / scale| <= 7; q = clip(round(w / scale), -7, 7), packed with pack_int4.
    Per element |w - q · scale| <= scale / 2.
    ValueError unless group is even and positive.
    """
    ### BEGIN SOLUTION
    if group < 2 or group % 2:
        raise ValueError(f"the int4 group must be even and positive (two rows per byte), got {group}")
    w = np.asarray(w, dtype=np.float64)
    rows, out = w.shape
    groups = -(-rows // group)  # ceil
    padded = np.zeros((groups * group, out))
    padded[:rows] = w
    blocks = padded.reshape(groups, group, out)  # (G, group, out)
    wanted = np.abs(blocks).max(axis=1) / 7  # (G, out)
    scale = wanted.astype(np.float16)
    scale = np.where(scale.astype(np.float64) < wanted, np.nextafter(scale, np.float16(np.inf)), scale)  # round up
    safe = np.where(scale > 0, scale, 1.0).astype(np.float64)[:, None, :]  # (G, 1, out)
    q = np.clip(np.round(blocks / safe), -7, 7).astype(np.int8).reshape(groups * group, out)
    return pack_int4(q), scale
    ### END SOLUTION


def dequantize_int4(packed: np.ndarray, scale: np.ndarray, rows: int) -> np.ndarray:
    """packed (G · group / 2, out), scale (G, out) -> float32 (rows, out): unpack, multiply each group by its scale,
    drop the padding rows."""
    ### BEGIN SOLUTION
    q = unpack_int4(packed).astype(np.float32)  # (G · group, out)
    groups, out = scale.shape
    blocks = q.reshape(groups, -1, out) * scale.astype(np.float32)[:, None, :]  # (G, group, out)
    return blocks.reshape(-1, out)[:rows]
    ### END SOLUTION


class QuantizedLinear(Module):
    """A Linear whose weight is stored quantized and dequantized on the fly: y = x @ deq(W) + b (no gradient)."""

    def __init__(self, linear: Linear, bits: int = 8, group: int = 32) -> None:
        """Quantize linear.weight with quantize_int8 (bits 8) or quantize_int4(group) (bits 4) and keep `bits`,
        `group`, `rows` (in_features), the arrays `q` and `scale`, and linear.bias (None or a Tensor, kept as it is).
        ValueError for other bits."""
        ### BEGIN SOLUTION
        if bits not in (4, 8):
            raise ValueError(f"QuantizedLinear supports bits 8 and 4, got {bits}")
        weight = linear.weight.data
        self.bits, self.group, self.rows, self.bias = bits, group, weight.shape[0], linear.bias
        self.dtype = weight.dtype
        self.q, self.scale = quantize_int8(weight) if bits == 8 else quantize_int4(weight, group)
        ### END SOLUTION

    def weight(self) -> np.ndarray:
        """The dequantized weight (in, out) in the original weight's dtype."""
        ### BEGIN SOLUTION
        if self.bits == 8:
            return dequantize_int8(self.q, self.scale).astype(self.dtype)
        return dequantize_int4(self.q, self.scale, self.rows).astype(self.dtype)
        ### END SOLUTION

    def nbytes(self) -> int:
        """Bytes stored: q, scale, and the bias if any."""
        ### BEGIN SOLUTION
        return self.q.nbytes + self.scale.nbytes + (0 if self.bias is None else self.bias.data.nbytes)
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., in) -> (..., out), as Linear.forward with the dequantized weight (a constant Tensor)."""
        ### BEGIN SOLUTION
        x = x if isinstance(x, Tensor) else Tensor(x, dtype=self.dtype)
        y = x @ Tensor(self.weight(), dtype=self.dtype)  # (..., out)
        return y + self.bias if self.bias is not None else y
        ### END SOLUTION


def quantize_model(model: Module, bits: int = 8, group: int = 32) -> Module:
    """Replace, in place, every Linear anywhere in `model` by QuantizedLinear(linear, bits, group); returns `model`.
    Embeddings and norms stay as they are (a tied head reads the float token table)."""
    ### BEGIN SOLUTION
    pending = [model]
    while pending:
        for holder, key, child in list(child_modules(pending.pop())):
            if isinstance(child, Linear):
                replacement = QuantizedLinear(child, bits, group)
                if isinstance(holder, list):
                    holder[key] = replacement
                else:
                    setattr(holder, key, replacement)
            else:
                pending.append(child)
    return model
    ### END SOLUTION


def weight_bytes(model: Module) -> int:
    """Bytes of everything the model stores: its parameters' arrays plus each QuantizedLinear's nbytes()."""
    ### BEGIN SOLUTION
    total, pending = sum(p.data.nbytes for p in model.parameters()), [model]
    while pending:
        for _, _, child in child_modules(pending.pop()):
            if isinstance(child, QuantizedLinear):
                total += child.q.nbytes + child.scale.nbytes  # its bias, a Tensor, is among the parameters
            else:
                pending.append(child)
    return int(total)
    ### END SOLUTION


# ---------------------------------------------------------------------- speculative decoding


class SpeculativeCache(KVCache):
    """Stage 11's KVCache, with a way back: truncate(length) forgets the positions from `length` on."""

    def truncate(self, length: int) -> None:
        """Set the filled length to `length` (the stale keys beyond it are overwritten later).
        ValueError unless 0 <= length <= the current length."""
        ### BEGIN SOLUTION
        if not 0 <= length <= self.length:
            raise ValueError(f"truncate: can only shorten the cache, to 0 .. {self.length}, not {length}")
        self.length = length
        ### END SOLUTION


def residual(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The distribution to draw from after a rejection: max(0, p - q) normalised, in float64 (V,).
    When p == q (nothing left over; a rejection then has probability 0) return p."""
    ### BEGIN SOLUTION
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    left = np.maximum(p - q, 0.0)  # (V,)
    total = left.sum()
    return left / total if total > 0 else p.copy()
    ### END SOLUTION


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
    ### BEGIN SOLUTION
    for i, token in enumerate(np.asarray(drafts, dtype=np.int64)):
        if rng.random() * draft_probs[i, token] < target_probs[i, token]:
            continue
        return i, _draw(residual(target_probs[i], draft_probs[i]), rng)
    return len(drafts), _draw(np.asarray(target_probs[-1], dtype=np.float64), rng)
    ### END SOLUTION


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
    ### BEGIN SOLUTION
    ids = np.asarray(prompt, dtype=np.int64)
    P = ids.size
    if k < 1 or P < 1 or max_new_tokens < 0:
        raise ValueError(f"speculative_generate needs k >= 1, a prompt and max_new_tokens >= 0, got k={k}, P={P}")
    for name, model in (("target", target), ("draft", draft)):
        if P + max_new_tokens - 1 > model.config.context:
            raise ValueError(f"the {name} model must see {P + max_new_tokens - 1} tokens, more than its context of "
                             f"{model.config.context}")
    out = list(ids)
    stats = {"rounds": 0, "drafted": 0, "accepted": 0, "target_forwards": 0}
    caches = {name: SpeculativeCache.for_model(model, 1) for name, model in (("target", target), ("draft", draft))}

    def probs(logits):  # (..., V) -> float64 distributions
        return _softmax(filter_logits(logits, temperature=temperature))

    with no_grad():
        if P > 1:  # both caches hold every token but the last
            for name, model in (("target", target), ("draft", draft)):
                forward_cached(model, ids[None, :-1], caches[name])
        while len(out) < P + max_new_tokens:
            wanted = min(k, P + max_new_tokens - len(out) - 1)
            proposals, draft_probs = [], []
            pending = np.array(out[caches["draft"].length:], dtype=np.int64)  # 1 or 2 tokens the draft lacks
            for _ in range(wanted):
                q = probs(forward_cached(draft, pending[None, :], caches["draft"])[0, -1])  # (V,)
                proposals.append(_draw(q, rng))
                draft_probs.append(q)
                pending = np.array(proposals[-1:], dtype=np.int64)
            fed = np.array(out[-1:] + proposals, dtype=np.int64)  # (k' + 1,)
            p = probs(forward_cached(target, fed[None, :], caches["target"])[0])  # (k' + 1, V)
            draft_probs = np.array(draft_probs).reshape(wanted, p.shape[-1])  # (k', V), (0, V) when k' = 0
            accepted, token = accept_drafts(p, draft_probs, np.array(proposals), rng)
            out += proposals[:accepted] + [token]
            for cache in caches.values():
                cache.truncate(min(cache.length, len(out) - 1))
            stats["rounds"] += 1
            stats["drafted"] += wanted
            stats["accepted"] += accepted
            stats["target_forwards"] += 1
    return np.array(out, dtype=np.int64), stats
    ### END SOLUTION


# ---------------------------------------------------------------------- batched decoding


def padded_forward(model: GPT, ids: np.ndarray, pads: np.ndarray, cache: KVCache) -> np.ndarray:
    """Logits (B, T, V) for ids (B, T) at cache slots cache.length .. cache.length + T - 1, row b left-padded by
    pads[b] slots: its token at slot j sits at position j - pads[b] (pad slots use position 0). Keys at slots
    < pads[b] are masked with -inf except a pad query's own slot (bias (B, 1, T, S)). Stage 14's masked_features runs
    the blocks with these positions and this bias, under no_grad, and advances the cache; lm_head puts the head on.
    Row b's logits at real slots equal model(row b alone).
    """
    ### BEGIN SOLUTION
    B, T = ids.shape
    start = cache.length
    slots = np.arange(start, start + T)  # (T,)
    positions = np.maximum(slots[None, :] - pads[:, None], 0)  # (B, T)
    keys = np.arange(start + T)  # (S,)
    visible = (keys[None, None, :] >= pads[:, None, None]) | (keys[None, None, :] == slots[None, :, None])  # (B, T, S)
    bias = np.where(visible, 0.0, -np.inf)[:, None]  # (B, 1, T, S), causal comes from the attention itself
    with no_grad():
        logits = lm_head(model, masked_features(model, ids, positions, bias, cache))  # (B, T, V); cache advanced
    return logits.data
    ### END SOLUTION


def batched_generate(model: GPT, prompts: list, max_new_tokens: int) -> list[np.ndarray]:
    """Greedy continuation of several prompts of different lengths at once -> one int64 array (P_b + N,) per prompt.

    Left-pad to the longest prompt (pads[b] = longest - P_b, pad id 0), prefill all rows with one padded_forward,
    then one token per row per step, each the argmax (lowest index on ties) of its row's last logits. Every row equals
    generate(model, prompt_b, N, temperature=0) alone. ValueError for an empty prompt, and when longest + N - 1 >
    config.context.
    """
    ### BEGIN SOLUTION
    prompts = [np.asarray(p, dtype=np.int64) for p in prompts]
    longest = max(p.size for p in prompts)
    if min(p.size for p in prompts) < 1:
        raise ValueError("batched_generate: an empty prompt has no token to continue from")
    if longest + max_new_tokens - 1 > model.config.context:
        raise ValueError(f"batched_generate: the longest prompt ({longest}) plus {max_new_tokens} new tokens minus one "
                         f"must fit the context of {model.config.context}")
    pads = np.array([longest - p.size for p in prompts])  # (B,)
    ids = np.zeros((len(prompts), longest), dtype=np.int64)  # (B, longest), pad id 0 on the left
    for row, p in enumerate(prompts):
        ids[row, pads[row]:] = p
    was_training = model.training
    model.eval()
    try:
        cache = KVCache.for_model(model, len(prompts))
        new = np.zeros((len(prompts), max_new_tokens), dtype=np.int64)
        fed = ids
        for n in range(max_new_tokens):
            logits = padded_forward(model, fed, pads, cache)[:, -1]  # (B, V)
            new[:, n] = np.argmax(logits, axis=-1)
            fed = new[:, n:n + 1]  # (B, 1)
    finally:
        model.train(was_training)
    return [np.concatenate([p, row]) for p, row in zip(prompts, new)]
    ### END SOLUTION
