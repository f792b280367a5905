"""Stage 11 (generation), hidden suite: other shapes, seeds, settings and edge cases than the visible one.

The filters are checked against brute-force definitions written out row by row (keep a token when its logit is >= the
k-th largest; when the mass of the tokens strictly more probable than it is below p; when p >= min_p · p_max), the
cache against its own contract, and the cached pass against your model's full forward pass.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile

import numpy as np
import pytest

from grader.harness import EXACT, Mistake, Tol, assert_close, assert_true, raised, seeded
from tests.stage03.helpers import numpy_softmax
from tests.stage11.helpers import (CACHED, FILTERED, TINY, check_cached, inverse_cdf, kept, probe_command,
                                   probe_filter, probe_filter_logits, probe_frequencies, probe_generate, probe_sample,
                                   seeded_model)


def _brute_mask(logits: np.ndarray, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                min_p: float | None = None) -> np.ndarray:
    """The filters' definitions, one row at a time, in the documented order: 1 where a token survives."""
    rows = np.array(logits, dtype=np.float64).reshape(-1, logits.shape[-1]) / temperature
    masks = []
    for row in rows:
        keep = np.ones(row.size, dtype=bool)
        if top_k is not None and top_k < row.size:
            keep &= row >= np.sort(row)[::-1][top_k - 1]
        if top_p is not None:
            probs = numpy_softmax(np.where(keep, row, -np.inf))
            keep &= np.array([probs[probs > probs[i]].sum() < top_p for i in range(row.size)])
        if min_p is not None:
            probs = numpy_softmax(np.where(keep, row, -np.inf))
            keep &= probs >= min_p * probs.max()
        masks.append(keep)
    return np.array(masks, dtype=np.int64).reshape(logits.shape)


@pytest.mark.concept("top-k")
def test_top_k_on_three_axes_with_ties_and_k_past_the_vocabulary(check):
    logits = seeded(1151).integers(-3, 4, size=(2, 3, 6)).astype(np.float64)  # small integers: many ties
    for k in (1, 3, 6, 9):
        got = check(probe_filter, kind="top_k", logits=logits, value=k, tol=FILTERED, what=f"top_k_filter(k={k})")
        assert_close(kept(got), _brute_mask(logits, top_k=k), EXACT, f"tokens kept by top-k = {k} (ties all kept)")
        assert_close(got[np.isfinite(got)], logits[kept(got) == 1], FILTERED, "kept logits are unchanged")


@pytest.mark.concept("top-p")
def test_top_p_keeps_ties_at_the_boundary_and_matches_its_definition(check):
    ties = np.log(np.array([0.2, 0.4, 0.2, 0.2]))
    for p, survivors in ((0.5, [1, 1, 1, 1]), (0.3, [0, 1, 0, 0])):
        got = check(probe_filter, kind="top_p", logits=ties, value=p, tol=FILTERED, what=f"top_p_filter(p={p})")
        assert_close(kept(got), np.array(survivors), EXACT, f"top-p = {p} on probabilities 0.2, 0.4, 0.2, 0.2 "
                     "(the three 0.2 are tied: all or none)")
    logits = seeded(1152).normal(size=(6, 9)) * 2.0
    for p in (0.1, 0.55, 0.9, 0.999):
        got = check(probe_filter, kind="top_p", logits=logits, value=p, tol=FILTERED, what=f"top_p_filter(p={p})")
        assert_close(kept(got), _brute_mask(logits, top_p=p), EXACT,
                     f"top-p = {p}: keep a token when the mass strictly above it is below p")


@pytest.mark.concept("min-p")
def test_min_p_matches_its_definition_and_one_keeps_the_maximum(check):
    logits = seeded(1153).normal(size=(4, 2, 7)) * 1.5
    for min_p in (0.05, 0.3, 1.0):
        got = check(probe_filter, kind="min_p", logits=logits, value=min_p, tol=FILTERED,
                    what=f"min_p_filter(min_p={min_p})")
        assert_close(kept(got), _brute_mask(logits, min_p=min_p), EXACT, f"tokens kept by min-p = {min_p}")
    assert_close(kept(got).sum(axis=-1), np.ones((4, 2), dtype=np.int64), EXACT,
                 "min-p = 1 keeps only the most probable token of each row")


@pytest.mark.concept("filter-order")
def test_every_combination_of_filters_matches_the_documented_pipeline(check):
    logits = seeded(1154).normal(size=(5, 10)) * 1.5
    for settings in ({"temperature": 0.7, "top_k": 4, "top_p": 0.8},
                     {"temperature": 1.8, "top_p": 0.6, "min_p": 0.3},
                     {"top_k": 6, "min_p": 0.2},
                     {"temperature": 0.4, "top_k": 8, "top_p": 0.95, "min_p": 0.1}):
        got = check(probe_filter_logits, logits=logits, settings=settings, tol=FILTERED,
                    what=f"filter_logits(**{settings})")
        mask = _brute_mask(logits, **settings)
        assert_close(kept(got), mask, EXACT, f"tokens surviving {settings}")
        assert_close(got[mask == 1], (logits / settings.get("temperature", 1.0))[mask == 1], FILTERED,
                     f"the surviving logits of {settings}: divided by the temperature, otherwise unchanged")


@pytest.mark.concept("frequencies")
def test_frequencies_with_a_sharp_temperature_and_min_p(check):
    logits = seeded(1155).normal(size=8)
    settings = {"temperature": 0.7, "top_k": 6, "min_p": 0.15}
    draws = 40_000
    got = check(probe_frequencies, logits=logits, draws=draws, seed=1156, settings=settings, tol=EXACT,
                what="sample counts and filter_logits")
    mask = _brute_mask(logits, **settings)
    assert_close(got["kept"], mask, EXACT, f"tokens surviving {settings}")
    probs = numpy_softmax(np.where(mask == 1, logits / 0.7, -np.inf))
    statistical = Tol(0.0, 5 * 0.5 / math.sqrt(draws), f"5 standard deviations of a frequency over {draws} draws")
    assert_close(got["counts"] / draws, probs, statistical, "sample frequencies vs the filtered distribution")


@pytest.mark.concept("inverse-cdf")
def test_removed_tokens_are_never_drawn_and_the_draw_follows_the_rule(check):
    rng = seeded(1157)
    logits = rng.normal(size=(3, 4, 7))
    logits[..., :2] = -np.inf  # the first tokens impossible: u near 0 must not pick them
    logits[0, 0] = [-np.inf] * 6 + [0.0]  # a row with one possible token
    got = check(probe_sample, logits=logits, seed=1158, settings={"top_k": 3}, tol=EXACT, what="sample(top_k=3)")
    mask = _brute_mask(np.where(np.isfinite(logits), logits, -1e300), top_k=3) * np.isfinite(logits)
    want = inverse_cdf(numpy_softmax(np.where(mask == 1, logits, -np.inf)), seeded(1158).random((3, 4)))
    assert_close(got, want, EXACT, "tokens from u = rng.random((3, 4)) over the top-3 distribution")
    assert_true(bool(np.all(got >= 2)) and got[0, 0] == 6, f"a token with probability 0 was drawn: {got}")


class _FixedUniform:
    """A stand-in generator whose random(shape) gives one fixed value everywhere: the edges of [0, 1)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self, size=None) -> np.ndarray:
        return np.full(() if size is None else size, self.value)


def probe_sample_edges(m, logits: np.ndarray, u: float) -> np.ndarray:
    return m.sample(logits, _FixedUniform(u), min_p=0.25)


@pytest.mark.concept("inverse-cdf")
def test_the_smallest_and_largest_uniforms_pick_the_first_and_last_possible_tokens(check):
    logits = np.log(np.array([[0.01, 0.3, 0.2, 0.4, 0.09], [0.5, 0.05, 0.05, 0.1, 0.3]]))  # min-p 0.25 removes some
    for u, want in ((0.0, [1, 0]), (1.0 - 2.0 ** -53, [3, 4])):
        got = check(probe_sample_edges, logits=logits, u=u, tol=EXACT, what=f"sample(min_p=0.25) with u = {u!r}")
        assert_close(got, np.array(want), EXACT, f"tokens for u = {u!r}: the first (last) token with probability > 0",
                     mistakes=(Mistake("u = 0 picked a removed token: count the cumulative sums <= u (not < u)",
                                       lambda got, want: u == 0.0),
                               Mistake("u near 1 picked a removed token: compare with u times the TOTAL, c[-1]",
                                       lambda got, want: u > 0.5)))


def probe_cache_contract(m, k: np.ndarray) -> dict:
    cache = m.KVCache(2, k.shape[0], k.shape[1], 5, k.shape[3], dtype=np.float64)
    keys, values = cache.update(1, k[:, :, :2], k[:, :, :2] * 2)
    cache.update(0, k[:, :, :2], k[:, :, :2])
    cache.advance(2)
    cache.advance(0)
    keys, values = cache.update(1, k[:, :, 2:5], k[:, :, 2:5] * 2)  # exactly to max_length
    shares = bool(np.shares_memory(values, cache.values[1]))
    cache.advance(3)
    return {"dtype": str(cache.keys[0].dtype), "keys": keys, "values": values, "shares": shares,
            "length": cache.length, "full": raised(cache.update, 0, k[:, :, :1], k[:, :, :1], mentions=["full"])}


@pytest.mark.concept("kv-cache")
def test_kv_cache_fills_to_exactly_max_length_in_its_dtype(check):
    k = seeded(1159).normal(size=(1, 3, 5, 2))
    got = check(probe_cache_contract, k=k, tol=EXACT, what="KVCache(2, 1, 3, 5, 2, dtype=float64)")
    assert_close(got["dtype"], "float64", EXACT, "the cache's dtype when float64 is asked for")
    assert_close([got["keys"], got["values"]], [k, 2 * k], EXACT, "layer 1 after filling all 5 positions")
    assert_true(got["shares"], "update should return views of the cache, not copies")
    assert_close(got["length"], 5, EXACT, "length after advance(2), advance(0), advance(3)")
    assert_close(got["full"], {"raised": "ValueError", "mentions": ["full"]}, EXACT,
                 "update when length == max_length (the message says the cache is full)")


@pytest.mark.concept("rope-offset")
def test_token_by_token_from_an_empty_cache_with_one_kv_head(check):
    config = dict(TINY, kv_heads=1, norm="layer", feed_forward="gelu", tie_embeddings=False, layers=3)
    got = check_cached(check, config, 1160, 3, [1] * 9, "3-layer rotary GPT, multi-query, one token at a time")
    assert_close(got["cache_shape"], [3, 1, 16, 4], EXACT, "KVCache.for_model with kv_heads=1")


@pytest.mark.concept("learned-positions")
def test_learned_positions_tied_grouped_with_uneven_chunks(check):
    config = dict(TINY, position="learned", kv_heads=2, context=12)
    check_cached(check, config, 1161, 1, [2, 5, 1, 1, 3], "learned-position GPT, kv_heads=2, up to the full context")


@pytest.mark.concept("kv-cache")
def test_a_float64_learned_position_model_decodes_token_by_token_in_float64(check):
    config = dict(TINY, position="learned", tie_embeddings=False, norm="layer", feed_forward="gelu", layers=3)
    check_cached(check, config, 1169, 2, [2] + [1] * 8, "float64 learned-position GPT, one token at a time",
                  float64=True)


def probe_forward_full(m, config: dict, seed: int, ids: np.ndarray) -> dict:
    model = seeded_model(m, seed, config)
    cache = m.KVCache.for_model(model, ids.shape[0])
    m.forward_cached(model, ids[:, :-2], cache)
    before = [cache.length, cache.keys[0].copy()]
    refused = raised(m.forward_cached, model, ids, cache)
    return {"refused": refused, "length": cache.length, "unchanged": bool(np.array_equal(before[1], cache.keys[0])),
            "last": m.forward_cached(model, ids[:, -2:], cache)[:, -1], "full": model(ids)[0].data[:, -1]}


@pytest.mark.concept("cache-full")
def test_forward_cached_refuses_to_overflow_and_changes_nothing(check):
    config = dict(TINY, context=8)
    ids = seeded(1162).integers(0, 13, size=(2, 8))
    got = check(probe_forward_full, config=config, seed=1162, ids=ids, tol=CACHED, what="forward_cached near full")
    assert_close(got["refused"], {"raised": "ValueError"}, EXACT, "forward_cached of 8 tokens with 6 cached")
    assert_close(got["length"], 6, EXACT, "cache.length after the refused call")
    assert_true(got["unchanged"], "the refused forward_cached wrote into the cache: check the room first")
    assert_close(got["last"], got["full"], CACHED, "the last 2 tokens after the refusal (fills the context exactly)")


@pytest.mark.concept("generate-sampling")
def test_batched_nucleus_sampling_is_the_same_with_and_without_the_cache(check):
    config = dict(TINY, kv_heads=2, position="learned", tie_embeddings=False)
    prompt = seeded(1163).integers(0, 13, size=(3, 2))
    settings = {"temperature": 0.9, "top_p": 0.7, "min_p": 0.05}
    got = check(probe_generate, config=config, seed=1163, prompt=prompt, tokens=9, settings=settings, tol=EXACT,
                what=f"generate(**{settings}) tokens")
    assert_close(got["cached"], got["recomputed"], EXACT, "sampled tokens with and without the cache, same seed")
    u = seeded(1165).random((10, 3))  # seed + 2; one rng.random(3) per step
    logits = got["logits"][:, 1:]  # (3, 9, V): the positions that predicted the new tokens
    for step in range(9):
        mask = _brute_mask(logits[:, step], **settings)
        probs = numpy_softmax(np.where(mask == 1, logits[:, step] / 0.9, -np.inf))
        assert_close(got["cached"][:, 2 + step], inverse_cdf(probs, u[step]), EXACT,
                     f"step {step}: tokens replayed from your model's logits")
    assert_close(got["next_uniform_cached"], float(u[9, 0]), EXACT, "the generator's next number after 9 steps")


def probe_generate_edges(m, config: dict, seed: int) -> dict:
    model = seeded_model(m, seed, config)
    full_prompt = np.arange(config["context"]) % config["vocab_size"]
    return {"nothing": m.generate(model, full_prompt[None], 0, rng=seeded(0)),
            "one": m.generate(model, full_prompt, 1, rng=seeded(0), temperature=0.0),
            "one_argmax": int(model(full_prompt[None])[0].data[0, -1].argmax()),
            "empty": raised(m.generate, model, np.zeros((1, 0), dtype=np.int64), 3, rng=seeded(0)),
            "too_long": raised(m.generate, model, np.zeros(config["context"] + 1, dtype=np.int64), 1, rng=seeded(0))}


@pytest.mark.concept("context-limit")
def test_generate_edges_a_full_prompt_nothing_to_add_an_empty_prompt(check):
    config = dict(TINY, context=6)
    got = check(probe_generate_edges, config=config, seed=1166, tol=EXACT, what="generate at the edges")
    assert_close(got["nothing"], (np.arange(6) % 13)[None], EXACT, "max_new_tokens=0 returns the prompt")
    assert_close(got["one"][-1], got["one_argmax"], EXACT,
                 "a prompt of exactly `context` tokens and 1 new token (the cache holds the prompt)")
    assert_close(got["empty"], {"raised": "ValueError"}, EXACT, "an empty prompt")
    assert_close(got["too_long"], {"raised": "ValueError"}, EXACT, "with the cache, a prompt longer than the context")


def probe_eval_mode(m, config: dict, seed: int) -> dict:
    model = seeded_model(m, seed, config)
    prompt = np.array([[1, 2, 3]])
    evaluated = m.generate(model, prompt, 6, rng=seeded(5), temperature=0.8)
    model.train()
    first = m.generate(model, prompt, 6, rng=seeded(5), temperature=0.8)
    second = m.generate(model, prompt, 6, rng=seeded(5), temperature=0.8, use_cache=False)
    return {"evaluated": evaluated, "first": first, "second": second, "training": model.training}


@pytest.mark.concept("eval-mode")
def test_generation_switches_dropout_off_and_restores_the_mode(check):
    got = check(probe_eval_mode, config=dict(TINY, dropout=0.6), seed=1167, tol=EXACT, what="generate with dropout")
    assert_close([got["first"], got["second"]], [got["evaluated"]] * 2, EXACT,
                 "a model in training mode must generate as in eval mode (dropout off)")
    assert_true(got["training"], "generate must put the model back in training mode")


def probe_command_errors(m, config: dict, seed: int) -> dict:
    model = seeded_model(m, seed, config)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.npz")
        model.save(path)
        with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8") as file:
            file.write('{"format": "characters", "version": 1, "chars": [" ", "a", "b", "c", "d", "e", "f", "g", '
                       '"h", "i", "j", "k", "l"]}')
        with contextlib.redirect_stdout(io.StringIO()):
            text = m.main(["--checkpoint", path, "--prompt", "abc", "--tokens", "3"])
        errors = io.StringIO()
        try:
            with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
                m.main(["--checkpoint", path, "--prompt", "abz", "--tokens", "3"])
            outcome = "returned"
        except SystemExit as stop:
            outcome = f"exit {stop.code}"
    return {"text": text, "outcome": outcome, "names_z": "'z'" in errors.getvalue()}


@pytest.mark.concept("command")
def test_the_command_with_and_without_the_cache_and_past_the_context(check):
    chars = sorted("abcd efghijkl")  # a vocabulary is sorted(set(text)), as stage 10 writes it
    config = dict(TINY, vocab_size=len(chars), context=12)
    texts = {}
    for flags in ((), ("--no-cache",)):
        got = check(probe_command, config=config, seed=1168, chars=chars, prompt="bad cafe", arguments=[
            "--tokens", "4", "--seed", "11", "--temperature", "1.2", "--min-p", "0.1", *flags], tol=EXACT,
            what=f"the command with {flags or 'the cache'}")
        texts[flags] = got["text"]
    assert_close(texts[("--no-cache",)], texts[()], EXACT, "the same seed with --no-cache and with the cache")
    long = check(probe_command, config=config, seed=1168, chars=chars, prompt="bad cafe", arguments=[
        "--tokens", "12", "--temperature", "0"], tol=EXACT, what="20 characters from a context of 12")
    assert_close(long["text"], long["greedy"], EXACT, "the command past the context vs generate(use_cache=False)")
    assert_close(len(long["text"]), 20, EXACT, "length of the text past the context (a sliding window)")
    got = check(probe_command_errors, config=config, seed=1168, tol=EXACT, what="a prompt with an unknown character")
    assert_close(len(got["text"]), 6, EXACT, "length of the text of prompt 'abc' and 3 tokens")
    assert_close([got["outcome"], got["names_z"]], ["exit 2", True], EXACT,
                 "a prompt with 'z': a usage error (exit 2) naming the unknown character")
