"""Stage 11 helpers shared by the visible and the hidden suite (a helper exists once): the tolerances, the kept set
of filtered logits, the documented inverse-CDF draw, a seeded model, the probes both suites run, and the judge of a
cached forward pass against the full one."""
from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile

import numpy as np

from grader.harness import EXACT, Mistake, Tol, assert_close, randomise_parameters, seeded, sibling

FILTERED = Tol(1e-12, 1e-12, "float64 logits; only the order of operations may differ")
CACHED = Tol(1e-4, 1e-5, "float32: the cached pass multiplies one row of queries where the full pass multiplies the "
                         "whole (T, S) block, so BLAS sums in another order; ~1e-7 relative per op, grown over layers")
CACHED_F64 = Tol(1e-12, 1e-12, "float64 end to end: only the order of BLAS sums differs, ~1e-16 relative per op, "
                               "~1e-14 after a few layers; one float32 step anywhere (a float32 cache, say) costs "
                               "~1e-7")
TINY = dict(vocab_size=13, context=16, layers=2, heads=4, width=16)  # a GPT small enough for many probes


def kept(filtered: np.ndarray) -> np.ndarray:
    """The surviving tokens of filtered logits, as a 0/1 int array."""
    return np.isfinite(filtered).astype(np.int64)


def inverse_cdf(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The documented draw: the number of cumulative probabilities <= u times the total."""
    cumulative = np.cumsum(probs, axis=-1)
    return (cumulative <= u[..., None] * cumulative[..., -1:]).sum(axis=-1)


def seeded_model(m, seed: int, config: dict, dtype=None):
    """Your GPT with this config, its parameters overwritten by sorted name with seeded values: matrices and
    embeddings N(0, 1/rows), norm weights near 1, biases near 0 (large enough for clearly different logits).
    dtype None keeps the constructor's float32; np.float64 makes the whole model float64."""
    model = m.GPT(sibling(m, "gpt").GPTConfig(**config), rng=seeded(seed))
    randomise_parameters(model, seed + 1, dtype=dtype, spread=0.1)
    return model.eval()


# ---------------------------------------------------------------- probes of both suites


def probe_filter(m, kind: str, logits: np.ndarray, value: float) -> np.ndarray:
    function = {"top_k": m.top_k_filter, "top_p": m.top_p_filter, "min_p": m.min_p_filter}[kind]
    return function(logits, int(value) if kind == "top_k" else value)


def probe_filter_logits(m, logits: np.ndarray, settings: dict) -> np.ndarray:
    return m.filter_logits(logits, **settings)


def probe_sample(m, logits: np.ndarray, seed: int, settings: dict) -> np.ndarray:
    return m.sample(logits, seeded(seed), **settings)


def probe_frequencies(m, logits: np.ndarray, draws: int, seed: int, settings: dict) -> dict:
    rows = np.broadcast_to(logits, (draws, logits.shape[-1]))  # (draws, V): one call draws them all
    tokens = m.sample(rows, seeded(seed), **settings)
    return {"counts": np.bincount(tokens, minlength=logits.shape[-1]),
            "kept": kept(m.filter_logits(logits, **settings))}


def probe_cached_logits(m, config: dict, seed: int, ids: np.ndarray, chunks: list, float64: bool = False) -> dict:
    model = seeded_model(m, seed, config, np.float64 if float64 else None)
    cache = m.KVCache.for_model(model, ids.shape[0])
    pieces, lengths, start = [], [], 0
    for size in chunks:
        pieces.append(m.forward_cached(model, ids[:, start:start + size], cache))  # (B, size, V)
        lengths.append(cache.length)
        start += size
    return {"cached": np.concatenate(pieces, axis=1), "full": model(ids)[0].data, "lengths": lengths,
            "dtype": str(pieces[-1].dtype), "type": type(pieces[-1]).__name__, "cache_dtype": str(cache.keys[0].dtype),
            "cache_shape": list(cache.keys[0].shape), "layers": len(cache.keys)}


def offset_mistake(prefill: int) -> Mistake:
    return Mistake("the prompt matches but later tokens do not: the new tokens must sit at positions cache.length, "
                   "... (apply_rope(..., offset=cache.length); learned rows length .. length + T - 1), not at 0",
                   lambda got, want: np.allclose(got[:, :prefill], want[:, :prefill], atol=1e-4)
                   and not np.allclose(got[:, prefill:], want[:, prefill:], atol=1e-4))


def check_cached(check, config: dict, seed: int, batch: int, chunks: list, what: str, float64: bool = False) -> dict:
    """Decode seeded ids in `chunks` through your KVCache and judge the logits against your model's full pass."""
    ids = seeded(seed).integers(0, config["vocab_size"], size=(batch, sum(chunks)))
    tol, dtype = (CACHED_F64, "float64") if float64 else (CACHED, "float32")
    got = check(probe_cached_logits, config=config, seed=seed, ids=ids, chunks=chunks, float64=float64, tol=tol,
                what=what)
    assert_close([got["type"], got["dtype"], got["cache_dtype"]], ["ndarray", dtype, dtype], EXACT,
                 f"forward_cached's logits (an array) and the cache of a {dtype} model: the model's dtype")
    assert_close(got["cached"], got["full"], tol, f"{what}: cached logits vs your model's full forward pass",
                 mistakes=(offset_mistake(chunks[0]),))
    assert_close(got["lengths"], np.cumsum(chunks).tolist(), EXACT, "cache.length after each forward_cached")
    return got


def probe_generate(m, config: dict, seed: int, prompt: np.ndarray, tokens: int, settings: dict) -> dict:
    model = seeded_model(m, seed, config)
    result = {}
    for use_cache in (True, False):
        rng = seeded(seed + 2)
        result["cached" if use_cache else "recomputed"] = m.generate(model, prompt, tokens, rng=rng,
                                                                     use_cache=use_cache, **settings)
        result["next_uniform_" + ("cached" if use_cache else "recomputed")] = rng.random()
    result["logits"] = model(np.atleast_2d(result["cached"])[:, :-1])[0].data  # your model on the final sequence
    return result


def probe_command(m, config: dict, seed: int, chars: list, prompt: str, arguments: list) -> dict:
    model = seeded_model(m, seed, config)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.npz")
        model.save(path)
        with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8") as file:
            file.write('{"format": "characters", "version": 1, "chars": ' + json.dumps(chars) + "}")
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            text = m.main(["--checkpoint", path, "--prompt", prompt, *arguments])
    ids = np.array([chars.index(c) for c in prompt])
    greedy = m.generate(model, ids, 12, rng=seeded(0), temperature=0.0, use_cache=False)
    return {"text": text, "printed": printed.getvalue(), "greedy": "".join(chars[i] for i in greedy)}

