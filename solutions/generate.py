"""Stage 11: generation.

A trained GPT gives, for every prefix, logits over the next token. Generation turns them into text one token at a
time: shape the distribution (temperature), cut its unreliable tail (top-k, top-p, min-p), draw a token from a seeded
generator, append it, repeat. Recomputing the whole sequence for every new token does the same work again and again,
so the keys and values every layer has already computed are kept in a preallocated cache, and each step runs the model
on ONE new token that attends to them. docs/11-generate.md derives each piece.

Conventions (the tests rely on them):
  - Logits are float arrays (..., V); sampling works in float64 and on every leading axis at once (no loops).
  - Filters run in this order: temperature, then top-k, then top-p, then min-p, each on the previous one's output
    (top-p and min-p see the distribution renormalised over what survived). A filter sets the logits it removes to
    -inf and never separates equal logits: ties at a boundary are all kept. The most probable token always survives.
  - temperature == 0 is greedy decoding: the arg-max, the LOWEST index among ties, with no draw from the generator.
  - One draw per row and step: u = rng.random(batch shape), token = the first index whose cumulative probability
    exceeds u times the total (inverse-CDF sampling), so a seed fixes every token.
  - The cache holds, for each layer, keys and values (B, kv_heads, max_length, Dh) written in place; `length` counts
    the positions filled. Token t of a sequence sits at absolute position t: rotary angles use apply_rope(...,
    offset=length) and learned positions look up rows length .. length + T - 1.
  - generate(use_cache=True) raises ValueError up front when the sequence it must feed the model (prompt plus all
    new tokens but the last) is longer than the model's context; use_cache=False slides a window of the last
    `context` tokens instead (positions restart at 0 in the window, as in training).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from .attention import MultiHeadAttention, apply_rope, scaled_dot_product_attention
from .bpe import Tokenizer
from .gpt import GPT
from .ngram import CharTokenizer
from .tensor import Tensor, no_grad


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities along the last axis, in float64; -inf logits get probability exactly 0."""
    shifted = logits - logits.max(axis=-1, keepdims=True)  # largest 0: exp cannot overflow
    weights = np.exp(shifted)
    return weights / weights.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------------- shaping and cutting the distribution


def top_k_filter(logits: np.ndarray, k: int) -> np.ndarray:
    """Keep the k largest logits of every row, set the others to -inf.

    logits: (..., V) -> float64 (..., V). A logit survives when it is >= the k-th largest of its row, so tokens tied
    with the k-th largest all survive (more than k only on exact ties). k >= V keeps everything; k < 1 is a ValueError.
    """
    ### BEGIN SOLUTION
    if k < 1:
        raise ValueError(f"top_k must be at least 1, got {k}")
    logits = np.asarray(logits, dtype=np.float64)
    if k >= logits.shape[-1]:
        return logits.copy()
    kth = np.partition(logits, -k, axis=-1)[..., -k, None]  # (..., 1): the k-th largest of each row
    return np.where(logits >= kth, logits, -np.inf)
    ### END SOLUTION


def top_p_filter(logits: np.ndarray, p: float) -> np.ndarray:
    """Nucleus filter: keep the most probable tokens whose probabilities first reach a total of p.

    With the row's probabilities sorted in decreasing order, s_0 >= s_1 >= ..., let r be the first rank where
    s_0 + ... + s_r >= p (the last rank if rounding keeps the total below p). Keep every token with probability
    >= s_r: the smallest set reaching p, plus the tokens tied with its least probable member. Equivalently, a token
    survives when the mass of the tokens strictly more probable than it is below p.
    logits: (..., V) -> float64 (..., V), the removed ones -inf. p must be in (0, 1]: ValueError otherwise.
    """
    ### BEGIN SOLUTION
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    logits = np.asarray(logits, dtype=np.float64)
    probs = _softmax(logits)  # (..., V)
    descending = -np.sort(-probs, axis=-1)  # (..., V), s_0 >= s_1 >= ...
    cumulative = np.cumsum(descending, axis=-1)  # (..., V)
    rank = np.minimum((cumulative < p).sum(axis=-1, keepdims=True), logits.shape[-1] - 1)  # (..., 1): r
    threshold = np.take_along_axis(descending, rank, axis=-1)  # (..., 1): s_r
    return np.where(probs >= threshold, logits, -np.inf)
    ### END SOLUTION


def min_p_filter(logits: np.ndarray, min_p: float) -> np.ndarray:
    """Keep the tokens at least min_p times as probable as the most probable one: p_i >= min_p · p_max.

    The cut scales with the model's confidence: a peaked row keeps few tokens, a flat row many.
    logits: (..., V) -> float64 (..., V), the removed ones -inf. min_p must be in [0, 1] (0 keeps everything):
    ValueError otherwise.
    """
    ### BEGIN SOLUTION
    if not 0.0 <= min_p <= 1.0:
        raise ValueError(f"min_p must be in [0, 1], got {min_p}")
    logits = np.asarray(logits, dtype=np.float64)
    probs = _softmax(logits)  # (..., V)
    return np.where(probs >= min_p * probs.max(axis=-1, keepdims=True), logits, -np.inf)
    ### END SOLUTION


def filter_logits(logits: np.ndarray, *, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None, min_p: float | None = None) -> np.ndarray:
    """The logits of the distribution `sample` draws from: temperature, then top-k, top-p, min-p (None: skipped).

    temperature > 0 divides the logits (softmax(l / τ): τ < 1 sharpens, τ > 1 flattens); τ = 0 is the limit τ -> 0,
    greedy: 0 at the arg-max (the lowest index among ties) and -inf elsewhere, whatever the filters (they still check
    their arguments). τ < 0 is a ValueError.
    logits: (..., V) -> float64 (..., V); softmax of the result is the filtered distribution.
    """
    ### BEGIN SOLUTION
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    logits = np.asarray(logits, dtype=np.float64)
    filtered = logits / temperature if temperature > 0 else logits  # (..., V)
    if top_k is not None:
        filtered = top_k_filter(filtered, top_k)
    if top_p is not None:
        filtered = top_p_filter(filtered, top_p)
    if min_p is not None:
        filtered = min_p_filter(filtered, min_p)
    if temperature == 0:  # the limit τ -> 0: all the mass on the arg-max (which every filter keeps)
        best = np.argmax(logits, axis=-1)[..., None]  # (..., 1), the first arg-max
        return np.where(np.arange(logits.shape[-1]) == best, 0.0, -np.inf)
    return filtered
    ### END SOLUTION


def sample(logits: np.ndarray, rng: np.random.Generator, *, temperature: float = 1.0, top_k: int | None = None,
           top_p: float | None = None, min_p: float | None = None) -> np.ndarray:
    """Draw one token per row of `logits` from the filtered distribution (see filter_logits).

    logits: (..., V) -> int64 (...). temperature == 0: np.argmax (lowest index among ties), nothing drawn from rng.
    Otherwise probs = softmax(filter_logits(...)) in float64, c = cumsum(probs) along the last axis, ONE call
    u = rng.random(logits.shape[:-1]), and the token is the number of entries of c that are <= u · c[-1] (the first
    index whose cumulative probability exceeds u times the total: inverse-CDF sampling, never a removed token).
    """
    ### BEGIN SOLUTION
    filtered = filter_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)  # (..., V)
    if temperature == 0:
        return np.argmax(filtered, axis=-1).astype(np.int64)  # the one token left: no draw
    probs = _softmax(filtered)  # (..., V), float64
    cumulative = np.cumsum(probs, axis=-1)  # (..., V)
    u = rng.random(probs.shape[:-1])[..., None]  # (..., 1): one uniform per row
    return (cumulative <= u * cumulative[..., -1:]).sum(axis=-1).astype(np.int64)
    ### END SOLUTION


# ---------------------------------------------------------------------- the key/value cache


class KVCache:
    """Every layer's keys and values so far, in arrays allocated once and filled in place.

    keys[layer], values[layer]: (batch, kv_heads, max_length, head_dim); positions 0 .. length - 1 are filled. A step
    writes the T new positions of each layer with `update`, then moves the counter once with `advance(T)`.
    Preallocating avoids copying the whole history at every step (np.concatenate would make decoding quadratic).
    """

    def __init__(self, layers: int, batch: int, kv_heads: int, max_length: int, head_dim: int,
                 dtype: type = np.float32) -> None:
        """Allocate `keys` and `values`: lists of `layers` zero arrays (batch, kv_heads, max_length, head_dim) of
        `dtype`; set `max_length` and `length = 0`."""
        ### BEGIN SOLUTION
        shape = (batch, kv_heads, max_length, head_dim)
        self.keys = [np.zeros(shape, dtype=dtype) for _ in range(layers)]
        self.values = [np.zeros(shape, dtype=dtype) for _ in range(layers)]
        self.max_length = max_length
        self.length = 0
        ### END SOLUTION

    @classmethod
    def for_model(cls, model: GPT, batch: int) -> KVCache:
        """A float32 cache for `model` and `batch` sequences: config.layers layers, kv_heads (heads when None) key/value
        heads, head_dim = width // heads, max_length = config.context (the positions the model has)."""
        ### BEGIN SOLUTION
        config = model.config
        kv_heads = config.heads if config.kv_heads is None else config.kv_heads
        return cls(config.layers, batch, kv_heads, config.context, config.width // config.heads)
        ### END SOLUTION

    def update(self, layer: int, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Write k, v (batch, kv_heads, T, head_dim) at positions length .. length + T - 1 of `layer`, in place, and
        return views of that layer's keys and values at positions 0 .. length + T - 1: (batch, kv_heads, length + T,
        head_dim) each. Does not move `length` (see advance).

        ValueError saying the cache is full, before writing anything, when length + T > max_length.
        """
        ### BEGIN SOLUTION
        T = k.shape[2]
        end = self.length + T
        if end > self.max_length:
            raise ValueError(f"the key/value cache is full: {self.length} of {self.max_length} positions are filled, "
                             f"no room for {T} more")
        self.keys[layer][:, :, self.length:end] = k  # in place: no new array per step
        self.values[layer][:, :, self.length:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]
        ### END SOLUTION

    def advance(self, steps: int) -> None:
        """Count `steps` more positions as filled, once every layer has been updated with them.
        ValueError saying the cache is full when length + steps > max_length."""
        ### BEGIN SOLUTION
        if self.length + steps > self.max_length:
            raise ValueError(f"the key/value cache is full: cannot advance {steps} positions past "
                             f"{self.length} of {self.max_length}")
        self.length += steps
        ### END SOLUTION


# ---------------------------------------------------------------------- the cached forward pass


def attend_cached(attention: MultiHeadAttention, x: Tensor, cache: KVCache, layer: int) -> Tensor:
    """The self-attention of `attention` for T new tokens that also see the cached ones: (B, T, width) -> (B, T, width).

    With the module's own projections: q = query(x) split into (B, heads, T, Dh), k and v likewise (B, kv_heads, T, Dh);
    with rotary positions rotate q and k by apply_rope(..., offset=cache.length) (the new tokens sit at positions
    length .. length + T - 1); append k and v to the cache with cache.update(layer, ...); attend with
    scaled_dot_product_attention(q, keys, values, causal=True) over all length + T keys (query i sits at absolute
    position S - T + i: the cache convention of stage 06); merge the heads and apply `output`.
    """
    ### BEGIN SOLUTION
    B, T, _ = x.shape
    H, Hkv, Dh = attention.heads, attention.kv_heads, attention.head_dim
    q = attention.query(x).reshape(B, T, H, Dh).transpose(0, 2, 1, 3)  # (B, H, T, Dh)
    k = attention.key(x).reshape(B, T, Hkv, Dh).transpose(0, 2, 1, 3)  # (B, Hkv, T, Dh)
    v = attention.value(x).reshape(B, T, Hkv, Dh).transpose(0, 2, 1, 3)  # (B, Hkv, T, Dh)
    if attention.rotary:
        q = apply_rope(q, attention.rope_cos, attention.rope_sin, offset=cache.length)
        k = apply_rope(k, attention.rope_cos, attention.rope_sin, offset=cache.length)
    keys, values = cache.update(layer, k.data, v.data)  # (B, Hkv, length + T, Dh) views of the cache
    y = scaled_dot_product_attention(q, Tensor(keys), Tensor(values), causal=True)  # (B, H, T, Dh)
    y = y.transpose(0, 2, 1, 3).reshape(B, T, H * Dh)  # heads side by side again
    return attention.output(y)
    ### END SOLUTION


def forward_cached(model: GPT, ids: np.ndarray, cache: KVCache) -> np.ndarray:
    """Logits for T new tokens that follow the cache.length tokens already in `cache`; the cache then holds them too.

    ids: int (B, T) at positions length .. length + T - 1 -> float32 logits (B, T, V), equal (up to float32 rounding)
    to model(all tokens so far)[0][:, -T:]. Runs under no_grad, with the model's own parameters: token embedding
    (+ position_embedding of the absolute positions when the model has one: learned positions), then every
    (pre-norm) block as in Block.forward with its attention replaced by attend_cached (no dropout: inference), then
    final_norm and the output layer (token_embedding.weightᵀ when `head` is None: tied). Ends with cache.advance(T).
    ValueError saying the cache is full, before any change, when length + T > max_length.
    """
    ### BEGIN SOLUTION
    B, T = ids.shape
    offset = cache.length
    if offset + T > cache.max_length:
        raise ValueError(f"the key/value cache is full: {offset} of {cache.max_length} positions are filled, "
                         f"no room for {T} more")
    with no_grad():
        x = model.token_embedding(ids)  # (B, T, C)
        if model.position_embedding is not None:  # learned positions
            x = x + model.position_embedding(np.arange(offset, offset + T))  # (T, C) absolute positions
        for layer, block in enumerate(model.blocks):
            x = x + attend_cached(block.attention, block.attention_norm(x), cache, layer)  # (B, T, C), pre-norm
            x = x + block.feed_forward(block.feed_forward_norm(x))  # (B, T, C)
        x = model.final_norm(x)  # (B, T, C)
        if model.head is None:  # tied: the token embedding is the output layer
            logits = x.data @ model.token_embedding.weight.data.T  # (B, T, V)
        else:
            logits = model.head(x).data  # (B, T, V)
    cache.advance(T)
    return logits
    ### END SOLUTION


# ---------------------------------------------------------------------- the loop


def generate(model: GPT, prompt: np.ndarray, max_new_tokens: int, *, rng: np.random.Generator,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             min_p: float | None = None, use_cache: bool = True) -> np.ndarray:
    """Continue `prompt` by max_new_tokens tokens, each drawn with `sample` from the logits of the last position.

    prompt: int (B, P) (or (P,): one sequence), P >= 1 -> int64 (B, P + max_new_tokens) (or (P + max_new_tokens,)),
    the prompt followed by the new tokens. Step n draws with sample(logits, rng, ...) (one rng call per step unless
    greedy), so with and without the cache the same seed gives the same tokens.
    use_cache=False: every step runs model(last `context` tokens) and reads the last position.
    use_cache=True: a KVCache.for_model(model, B); one forward_cached over the prompt (prefill), then one token per
    step. The model sees prompt + all new tokens but the last, P + max_new_tokens - 1 tokens: more than
    config.context is a ValueError raised before any work (use use_cache=False to slide a window).
    Runs under no_grad in eval mode (dropout off) and restores the model's training mode afterwards.
    """
    ### BEGIN SOLUTION
    ids = np.asarray(prompt)
    single = ids.ndim == 1
    ids = (ids[None, :] if single else ids).astype(np.int64)  # (B, P)
    B, P = ids.shape
    context = model.config.context
    if P < 1 or max_new_tokens < 0:
        raise ValueError(f"generate needs a prompt of at least one token and max_new_tokens >= 0, got P={P} and "
                         f"max_new_tokens={max_new_tokens}")
    if use_cache and P + max_new_tokens - 1 > context:
        raise ValueError(f"with the cache the model must see {P + max_new_tokens - 1} tokens (the prompt and every new "
                         f"token but the last), more than its context of {context}; use use_cache=False to slide a "
                         f"window over the last {context} tokens")
    out = np.concatenate([ids, np.zeros((B, max_new_tokens), dtype=np.int64)], axis=1)  # (B, P + N)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            cache = KVCache.for_model(model, B) if use_cache else None
            for n in range(max_new_tokens):
                if use_cache:  # step 0 prefills the whole prompt; later steps feed the one token drawn last
                    new = ids if n == 0 else out[:, P + n - 1:P + n]  # (B, P) or (B, 1)
                    logits = forward_cached(model, new, cache)[:, -1]  # (B, V)
                else:  # the last `context` tokens, positions from 0 as in training
                    logits = model(out[:, max(0, P + n - context):P + n])[0].data[:, -1]  # (B, V)
                out[:, P + n] = sample(logits, rng, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
    finally:
        model.train(was_training)
    return out[0] if single else out
    ### END SOLUTION


# ---------------------------------------------------------------------- the command (given: nothing to implement)


TOKENIZER_FILE = "tokenizer.json"  # beside the checkpoint


def load_tokenizer(checkpoint: str | Path) -> CharTokenizer | Tokenizer:
    """The tokenizer saved beside `checkpoint` as tokenizer.json: stage 01's CharTokenizer for
    {"format": "characters", "version": 1, "chars": [...]} (id i is chars[i], as stage 10 writes it) or stage 08's
    byte-level BPE Tokenizer ("format": "byte-level-bpe"); anything else is a ValueError."""
    path = Path(checkpoint).parent / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer beside the checkpoint: expected {path}")
    data = json.loads(path.read_text(encoding="utf-8"))
    kind = data.get("format") if isinstance(data, dict) else None
    if kind == "characters" and data.get("version") == 1:
        tokenizer = CharTokenizer("".join(data["chars"]))  # stage 01's: its vocabulary is sorted(set(text))
        if tokenizer.vocab != data["chars"]:
            raise ValueError(f"{path}: the characters must be distinct and sorted, as stage 10 writes them")
        return tokenizer
    if kind == "byte-level-bpe":
        return Tokenizer.load(str(path))
    raise ValueError(f"{path}: unknown tokenizer format {kind!r} (expected 'characters' or 'byte-level-bpe')")


def main(argv: list[str] | None = None) -> str:
    """python -m solutions.generate --checkpoint PATH --prompt TEXT [--tokens N] [--temperature T] [--top-k K]
    [--top-p P] [--min-p M] [--seed S] [--no-cache]: print the prompt and its continuation, and return that text.

    Loads GPT.load(PATH) and the tokenizer.json beside it. With the cache unless --no-cache or the prompt and the
    new tokens do not fit the model's context; then every step rereads the last `context` tokens (a sliding window).
    """
    parser = argparse.ArgumentParser(prog=f"python -m {__package__}.generate", description=main.__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a GPT .npz written by GPT.save")
    parser.add_argument("--prompt", required=True, help="the text to continue")
    parser.add_argument("--tokens", type=int, default=200, help="how many tokens to add (default 200)")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 is greedy (default 0.8)")
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--min-p", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed (default 0)")
    parser.add_argument("--no-cache", action="store_true", help="recompute the whole sequence at every step")
    args = parser.parse_args(argv)
    try:
        model = GPT.load(args.checkpoint)
        tokenizer = load_tokenizer(args.checkpoint)
        prompt = np.array(tokenizer.encode(args.prompt), dtype=np.int64)  # (P,)
        fits = prompt.size + args.tokens - 1 <= model.config.context
        ids = generate(model, prompt, args.tokens, rng=np.random.default_rng(args.seed), temperature=args.temperature,
                       top_k=args.top_k, top_p=args.top_p, min_p=args.min_p, use_cache=fits and not args.no_cache)
    except (OSError, ValueError) as error:  # a missing file, an unknown character, an empty prompt, a bad option
        parser.error(str(error))
    text = tokenizer.decode(ids)
    print(text)
    return text


if __name__ == "__main__":
    main()
