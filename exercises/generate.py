"""Stage 11: generation (your turn: replace every NotImplementedError).

A trained GPT gives, for every prefix, logits over the next token. Generation turns them into text one token at a
time: shape the distribution (temperature), cut its unreliable tail (top-k, top-p, min-p), draw a token from a seeded
generator, append it, repeat. Recomputing the whole sequence for every new token does the same work again and again,
so the keys and values every layer has already computed are kept in a preallocated cache, and each step runs the model
on ONE new token that attends to them: model(ids, cache=cache), the model's own forward pass (stages 06 to 09 take the
cache), fed by the KVCache defined here. docs/11-generate.md derives each piece.

Conventions (the tests rely on them):
  - Logits are float arrays (..., V); sampling works in float64 and on every leading axis at once (no loops).
  - Filters run in this order: temperature, then top-k, then top-p, then min-p, each on the previous one's output
    (top-p and min-p see the distribution renormalised over what survived). A filter sets the logits it removes to
    -inf and never separates equal logits: ties at a boundary are all kept. The most probable token always survives.
  - temperature == 0 is greedy decoding: the arg-max, the LOWEST index among ties, with no draw from the generator.
  - One draw per row and step: u = rng.random(batch shape), token = the first index whose cumulative probability
    exceeds u times the total (inverse-CDF sampling), so a seed fixes every token.
  - The cache holds, for each layer, keys and values (B, kv_heads, max_length, Dh) in the model's dtype, written in
    place; `length` counts the positions filled. Token t of a sequence sits at absolute position t: the model's
    forward rotates by apply_rope(..., offset=length) and looks up learned rows length .. length + T - 1.
  - generate(use_cache=True) raises ValueError up front when the sequence it must feed the model (prompt plus all
    new tokens but the last) is longer than the model's context; use_cache=False slides a window of the last
    `context` tokens instead (positions restart at 0 in the window, as in training).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from . import threads
from .corpus import load_tokenizer
from .gpt import GPT
from .tensor import no_grad


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
    raise NotImplementedError("stage 11 (generation): top_k_filter")


def top_p_filter(logits: np.ndarray, p: float) -> np.ndarray:
    """Nucleus filter: keep the most probable tokens whose probabilities first reach a total of p.

    With the row's probabilities sorted in decreasing order, s_0 >= s_1 >= ..., let r be the first rank where
    s_0 + ... + s_r >= p (the last rank if rounding keeps the total below p). Keep every token with probability
    >= s_r: the smallest set reaching p, plus the tokens tied with its least probable member. Equivalently, a token
    survives when the mass of the tokens strictly more probable than it is below p.
    logits: (..., V) -> float64 (..., V), the removed ones -inf. p must be in (0, 1]: ValueError otherwise.
    """
    raise NotImplementedError("stage 11 (generation): top_p_filter")


def min_p_filter(logits: np.ndarray, min_p: float) -> np.ndarray:
    """Keep the tokens at least min_p times as probable as the most probable one: p_i >= min_p · p_max.

    The cut scales with the model's confidence: a peaked row keeps few tokens, a flat row many.
    logits: (..., V) -> float64 (..., V), the removed ones -inf. min_p must be in [0, 1] (0 keeps everything):
    ValueError otherwise.
    """
    raise NotImplementedError("stage 11 (generation): min_p_filter")


def filter_logits(logits: np.ndarray, *, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None, min_p: float | None = None) -> np.ndarray:
    """The logits of the distribution `sample` draws from: temperature, then top-k, top-p, min-p (None: skipped).

    temperature > 0 divides the logits (softmax(l / τ): τ < 1 sharpens, τ > 1 flattens); τ = 0 is the limit τ -> 0,
    greedy: 0 at the arg-max (the lowest index among ties) and -inf elsewhere, whatever the filters (they still check
    their arguments). τ < 0 is a ValueError.
    logits: (..., V) -> float64 (..., V); softmax of the result is the filtered distribution.
    """
    raise NotImplementedError("stage 11 (generation): filter_logits")


def sample(logits: np.ndarray, rng: np.random.Generator, *, temperature: float = 1.0, top_k: int | None = None,
           top_p: float | None = None, min_p: float | None = None) -> np.ndarray:
    """Draw one token per row of `logits` from the filtered distribution (see filter_logits).

    logits: (..., V) -> int64 (...). temperature == 0: np.argmax (lowest index among ties), nothing drawn from rng.
    Otherwise probs = softmax(filter_logits(...)) in float64, c = cumsum(probs) along the last axis, ONE call
    u = rng.random(logits.shape[:-1]), and the token is the number of entries of c that are <= u · c[-1] (the first
    index whose cumulative probability exceeds u times the total: inverse-CDF sampling, never a removed token).
    """
    raise NotImplementedError("stage 11 (generation): sample")


# ---------------------------------------------------------------------- the key/value cache


class KVCache:
    """Every layer's keys and values so far, in arrays allocated once and filled in place.

    keys[layer], values[layer]: (batch, kv_heads, max_length, head_dim); positions 0 .. length - 1 are filled. A step
    writes the T new positions of each layer with `update`, then moves the counter once with `advance(T)`.
    Preallocating avoids copying the whole history at every step (np.concatenate would make decoding quadratic).
    This is the interface MultiHeadAttention.forward, Block.forward and GPT.forward take as `cache` (they never
    import this class): `length`, `update(layer, k, v)` and `advance(steps)`.
    """

    def __init__(self, layers: int, batch: int, kv_heads: int, max_length: int, head_dim: int,
                 dtype: type = np.float32) -> None:
        """Allocate `keys` and `values`: lists of `layers` zero arrays (batch, kv_heads, max_length, head_dim) of
        `dtype`; set `max_length` and `length = 0`."""
        raise NotImplementedError("stage 11 (generation): KVCache.__init__")

    @classmethod
    def for_model(cls, model: GPT, batch: int) -> KVCache:
        """A cache for `model` and `batch` sequences: config.layers layers, kv_heads (heads when None) key/value heads,
        head_dim = width // heads, max_length = config.context (the positions the model has), and the dtype of the
        model's weights (token_embedding.weight.dtype: float32 as built; float64 keeps a float64 model float64)."""
        raise NotImplementedError("stage 11 (generation): KVCache.for_model")

    def update(self, layer: int, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Write k, v (batch, kv_heads, T, head_dim) at positions length .. length + T - 1 of `layer`, in place, and
        return views of that layer's keys and values at positions 0 .. length + T - 1: (batch, kv_heads, length + T,
        head_dim) each. Does not move `length` (see advance).

        ValueError saying the cache is full, before writing anything, when length + T > max_length.
        """
        raise NotImplementedError("stage 11 (generation): KVCache.update")

    def advance(self, steps: int) -> None:
        """Count `steps` more positions as filled, once every layer has been updated with them.
        ValueError saying the cache is full when length + steps > max_length."""
        raise NotImplementedError("stage 11 (generation): KVCache.advance")


# ---------------------------------------------------------------------- the cached forward pass


def forward_cached(model: GPT, ids: np.ndarray, cache: KVCache) -> np.ndarray:
    """Logits for T new tokens that follow the cache.length tokens already in `cache`; the cache then holds them too.

    ids: int (B, T) at positions length .. length + T - 1 -> logits (B, T, V), an array in the model's dtype, equal
    (up to rounding) to model(all tokens so far)[0][:, -T:]. It is the model's own forward pass,
    model(ids, cache=cache), run under no_grad(): decoding keeps no graph. GPT.forward places the tokens after the
    cached ones, has every layer store its keys and values in the cache, and ends with cache.advance(T); it raises
    ValueError before any change when length + T > config.context, and the cache itself when it is full.
    """
    raise NotImplementedError("stage 11 (generation): forward_cached")


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
    raise NotImplementedError("stage 11 (generation): generate")


# ---------------------------------------------------------------------- the command (given: nothing to implement)


def main(argv: list[str] | None = None) -> str:
    """python -m solutions.generate --checkpoint PATH --prompt TEXT [--tokens N] [--temperature T] [--top-k K]
    [--top-p P] [--min-p M] [--seed S] [--no-cache] [--threads N]: print the prompt and its continuation, and return
    that text. (--threads N is read by the package before NumPy loads: threads.py.)

    Loads GPT.load(PATH) and the tokenizer saved beside it (corpus.load_tokenizer of its folder). With the cache
    unless --no-cache or the prompt and the new tokens do not fit the model's context; then every step rereads the
    last `context` tokens (a sliding window).
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
    threads.add_argument(parser)
    args = parser.parse_args(argv)
    note = threads.too_late(args.threads)
    if note:
        print(note, file=sys.stderr)
    try:
        model = GPT.load(args.checkpoint)
        tokenizer = load_tokenizer(Path(args.checkpoint).parent)
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
