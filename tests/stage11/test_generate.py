"""Stage 11 (generation), visible suite: the samplers, the key/value cache, decoding through it with the model's own
forward pass (attention, a post-norm block, the GPT; float32 and float64), generate, and the command.

Every test runs a probe on your module and on the reference and compares the two, and also checks something that does
not trust the reference: a filtered set worked out by hand, the inverse-CDF rule replayed from the same seed, sample
frequencies against the filtered distribution (a stated statistical tolerance), or YOUR cached logits against YOUR
model's own full forward pass. Models are made with your GPT (stage 09) and then given seeded weights by sorted
parameter name, so target and reference hold the same model whatever order their constructors drew in. A call that
must raise is judged by the exact builtin exception (and what its message names), beside one that must work.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.harness import EXACT, Mistake, Tol, assert_close, assert_true, raised, randomise_parameters, seeded, sibling
from tests.stage03.helpers import numpy_softmax
from tests.stage11.helpers import (CACHED, CACHED_F64, FILTERED, TINY, check_cached, inverse_cdf, kept,
                                   offset_mistake, probe_command, probe_filter, probe_filter_logits, probe_frequencies,
                                   probe_generate, probe_sample, seeded_model)


# ---------------------------------------------------------------- the filters


@pytest.mark.concept("top-k")
def test_top_k_keeps_the_k_largest_and_their_ties(check):
    logits = np.array([[1.0, 3.0, 2.0, 5.0, 4.0],
                       [0.5, 2.0, 2.0, -1.0, 1.0],  # a tie at the boundary of k = 1: both stay
                       [-3.0, -1.0, -2.0, 0.0, 7.0]])
    got = check(probe_filter, kind="top_k", logits=logits, value=2, tol=FILTERED, what="top_k_filter(logits, 2)")
    assert_close(kept(got), np.array([[0, 0, 0, 1, 1], [0, 1, 1, 0, 0], [0, 0, 0, 1, 1]]), EXACT,
                 "tokens kept by top-k = 2 (1 = kept)", mistakes=(
                     Mistake("the k SMALLEST logits were kept", lambda got, want: got[0, 0] == 1),))
    assert_close(np.where(got == -np.inf, 0.0, got), np.where(kept(got) == 1, logits, 0.0), EXACT,
                 "kept logits are unchanged, removed ones are -inf")
    got_one = check(probe_filter, kind="top_k", logits=logits, value=1, tol=FILTERED, what="top_k_filter(logits, 1)")
    assert_close(kept(got_one), np.array([[0, 0, 0, 1, 0], [0, 1, 1, 0, 0], [0, 0, 0, 0, 1]]), EXACT,
                 "top-k = 1 keeps the maximum and the logits tied with it")


@pytest.mark.concept("top-p")
def test_top_p_keeps_the_smallest_set_reaching_p(check):
    probs = np.array([0.1, 0.4, 0.2, 0.3])  # sorted: 0.4 (id 1), 0.3 (id 3), 0.2 (id 2), 0.1 (id 0)
    logits = np.log(probs)[None].repeat(4, axis=0)  # (4, 4), one row per p below
    wanted = {0.3: [0, 1, 0, 0], 0.65: [0, 1, 0, 1], 0.75: [0, 1, 1, 1], 1.0: [1, 1, 1, 1]}
    for row, (p, survivors) in enumerate(wanted.items()):
        got = check(probe_filter, kind="top_p", logits=logits[row], value=p, tol=FILTERED,
                    what=f"top_p_filter(log {probs.tolist()}, {p})")
        assert_close(kept(got), np.array(survivors), EXACT, f"tokens kept by top-p = {p} (1 = kept)", mistakes=(
            Mistake("the token that crosses p was dropped (keep it: the set must REACH p)",
                    lambda got, want: got.sum() == want.sum() - 1),
            Mistake("one token too many: a token is kept while the mass before it already reaches p",
                    lambda got, want: got.sum() == want.sum() + 1)))
        assert_close(got[np.isfinite(got)], logits[row][np.array(survivors) == 1], FILTERED,
                     "kept logits are unchanged")


@pytest.mark.concept("min-p")
def test_min_p_keeps_tokens_above_a_fraction_of_the_most_probable(check):
    probs = np.array([[0.05, 0.5, 0.15, 0.3], [0.25, 0.25, 0.26, 0.24]])  # a peaked row and a flat one
    logits = np.log(probs)
    for min_p, survivors in ((0.2, [[0, 1, 1, 1], [1, 1, 1, 1]]), (0.5, [[0, 1, 0, 1], [1, 1, 1, 1]]),
                             (0.0, [[1, 1, 1, 1], [1, 1, 1, 1]]), (0.97, [[0, 1, 0, 0], [0, 0, 1, 0]])):
        got = check(probe_filter, kind="min_p", logits=logits, value=min_p, tol=FILTERED,
                    what=f"min_p_filter(logits, {min_p})")
        assert_close(kept(got), np.array(survivors), EXACT, f"tokens kept by min-p = {min_p}: p >= {min_p} * p_max",
                     mistakes=(Mistake("the threshold is min_p itself, not min_p times the largest probability",
                                       lambda got, want: got[0].sum() < want[0].sum()),))


@pytest.mark.concept("filter-order")
def test_filters_run_in_order_temperature_top_k_top_p_min_p(check):
    logits = np.log(np.array([0.4, 0.3, 0.2, 0.1]))
    # top-k = 2 leaves 0.4 and 0.3, renormalised to 4/7 ≈ 0.571 and 3/7: top-p = 0.5 then keeps token 0 only.
    # (Top-p on the full distribution first would keep 0.4 + 0.3 = 0.7.)
    got = check(probe_filter_logits, logits=logits, settings={"top_k": 2, "top_p": 0.5}, tol=FILTERED,
                what="filter_logits(top_k=2, top_p=0.5)")
    assert_close(kept(got), np.array([1, 0, 0, 0]), EXACT, "top-k = 2 then top-p = 0.5", mistakes=(
        Mistake("top-p looked at the distribution before top-k, not the renormalised survivors",
                lambda got, want: got.tolist() == [1, 1, 0, 0]),))
    # temperature 4 flattens 0.4 : 0.1 to 4^(1/4) ≈ 1.41 : 1, so min-p = 0.6 (0.1 / 0.4 = 0.25 before) keeps all.
    got = check(probe_filter_logits, logits=logits, settings={"temperature": 4.0, "min_p": 0.6}, tol=FILTERED,
                what="filter_logits(temperature=4, min_p=0.6)")
    assert_close(kept(got), np.array([1, 1, 1, 1]), EXACT, "temperature 4 then min-p = 0.6", mistakes=(
        Mistake("min-p ran before the temperature", lambda got, want: got.tolist() == [1, 1, 0, 0]),))
    assert_close(got, logits / 4.0, FILTERED, "the surviving logits are divided by the temperature")
    # temperature 0.5 sharpens 0.4 : 0.3 : 0.2 to 0.16 : 0.09 : 0.04 of 0.3: top-p = 0.75 keeps 2 tokens, not 3.
    got = check(probe_filter_logits, logits=logits, settings={"temperature": 0.5, "top_p": 0.75}, tol=FILTERED,
                what="filter_logits(temperature=0.5, top_p=0.75)")
    assert_close(kept(got), np.array([1, 1, 0, 0]), EXACT, "temperature 0.5 then top-p = 0.75", mistakes=(
        Mistake("top-p ran before the temperature", lambda got, want: got.tolist() == [1, 1, 1, 0]),))


@pytest.mark.concept("temperature")
def test_temperature_divides_the_logits(check):
    logits = seeded(1101).normal(size=(3, 7)) * 2.0
    for temperature in (0.5, 1.0, 3.0):
        got = check(probe_filter_logits, logits=logits, settings={"temperature": temperature}, tol=FILTERED,
                    what=f"filter_logits(temperature={temperature})")
        assert_close(got, logits / temperature, FILTERED, f"logits / {temperature}", mistakes=(
            Mistake("multiplied by the temperature instead of dividing",
                    lambda got, want: np.allclose(got, logits * temperature)),))


def probe_greedy(m, logits: np.ndarray, seed: int) -> dict:
    rng = seeded(seed)
    tokens = m.sample(logits, rng, temperature=0.0, top_k=2)
    return {"tokens": tokens, "next_uniform": rng.random(), "kept": kept(m.filter_logits(logits, temperature=0.0)),
            "cold": m.sample(np.repeat(logits, 50, axis=0), seeded(seed), temperature=1e-3)}


@pytest.mark.concept("greedy")
def test_temperature_zero_is_greedy_lowest_index_on_ties_and_draws_nothing(check):
    logits = np.array([[0.1, 2.0, 2.0, -1.0], [3.0, 1.0, 2.9, 0.0], [-1.0, -2.0, -0.5, -0.5]])
    got = check(probe_greedy, logits=logits, seed=1102, tol=EXACT, what="sample(temperature=0)")
    assert_close(got["tokens"], np.array([1, 0, 2]), EXACT, "greedy tokens (the lowest index among tied maxima)",
                 mistakes=(Mistake("the last of the tied maxima was picked", lambda got, want: got[0] == 2),))
    assert_close(got["next_uniform"], float(seeded(1102).random()), EXACT,
                 "the generator's next number: greedy decoding must not draw from rng")
    assert_close(got["kept"], np.eye(4, dtype=np.int64)[[1, 0, 2]], EXACT,
                 "filter_logits(temperature=0) keeps the arg-max only")
    cold = got["cold"].reshape(3, 50)
    assert_true(bool(np.all(cold[1] == 0)),
                f"temperature 1e-3 should sample the arg-max every time when it leads by 0.1; got {cold[1]}")
    assert_true(set(cold[0].tolist()) <= {1, 2} and set(cold[2].tolist()) <= {2, 3},
                "temperature 1e-3 should only sample the tied maxima")


@pytest.mark.concept("inverse-cdf")
def test_sample_draws_by_the_inverse_cdf_of_one_uniform_per_row(check):
    logits = seeded(1103).normal(size=(2, 5, 6)) * 1.5  # leading axes (2, 5): one token per row
    got = check(probe_sample, logits=logits, seed=1104, settings={}, tol=EXACT, what="sample(logits (2, 5, 6))")
    u = seeded(1104).random((2, 5))  # the ONE call sample makes
    want = inverse_cdf(numpy_softmax(logits), u)
    assert_close(got, want, EXACT, "tokens from u = rng.random((2, 5)) and the cumulative probabilities", mistakes=(
        Mistake("the draw is off by one: count the cumulative probabilities <= u (not < u, not + 1)",
                lambda got, want: np.abs(got - want).max() == 1),
        Mistake("rng.choice or another way of drawing was used: the documented draw is one rng.random(shape) call",
                lambda got, want: True)))
    assert_close(str(np.asarray(got).dtype), "int64", EXACT, "dtype of the sampled tokens")


@pytest.mark.concept("seeded")
def test_sampling_is_reproducible_from_the_seed(check):
    logits = np.tile(seeded(1105).normal(size=9), (40, 1))  # 40 rows of the same logits
    settings = {"temperature": 0.8, "top_k": 6, "top_p": 0.9}
    first = check(probe_sample, logits=logits, seed=7, settings=settings, tol=EXACT, what="sample(seed 7)")
    again = check(probe_sample, logits=logits, seed=7, settings=settings, tol=EXACT, what="sample(seed 7) again")
    other = check(probe_sample, logits=logits, seed=8, settings=settings, tol=EXACT, what="sample(seed 8)")
    assert_close(again, first, EXACT, "the same seed gives the same tokens")
    assert_true(not np.array_equal(first, other), "seeds 7 and 8 gave the same 40 tokens: is the rng used?")


@pytest.mark.concept("frequencies")
def test_sample_frequencies_match_the_filtered_distribution(check):
    logits = np.log(np.array([0.3, 0.05, 0.25, 0.02, 0.18, 0.2]))
    settings = {"temperature": 1.3, "top_k": 5, "top_p": 0.8, "min_p": 0.1}
    draws = 40_000
    got = check(probe_frequencies, logits=logits, draws=draws, seed=1106, settings=settings, tol=EXACT,
                what="sample counts and filter_logits")
    # By hand: τ = 1.3, then top-5 drops 0.02, top-p = 0.8 keeps 0.3, 0.25, 0.2, 0.18 (the 0.05 falls outside).
    assert_close(got["kept"], np.array([1, 0, 1, 0, 1, 1]), EXACT, "tokens surviving the filters")
    want = np.where(got["kept"] == 1, np.log([0.3, 0.05, 0.25, 0.02, 0.18, 0.2]) / 1.3, -np.inf)
    probs = numpy_softmax(want)
    statistical = Tol(0.0, 5 * 0.5 / math.sqrt(draws), f"5 standard deviations of a frequency over {draws} draws "
                      "(sqrt(p(1 - p) / n) <= 0.5 / sqrt(n)): a false alarm about once in 10^6 runs")
    assert_close(got["counts"] / draws, probs, statistical, "sample frequencies vs softmax of the filtered logits",
                 mistakes=(Mistake("the temperature was not applied to the sampled distribution",
                                   lambda got, want: np.allclose(got, numpy_softmax(np.where(want > 0, np.log(
                                       [0.3, 0.05, 0.25, 0.02, 0.18, 0.2]), -np.inf)), atol=0.01)),))
    assert_close(got["counts"][[1, 3]], np.array([0, 0]), EXACT, "draws of removed tokens")


def probe_sample_arguments(m, logits: np.ndarray, seed: int, refused: dict, accepted: dict) -> dict:
    """sample() with a setting outside its range (what it raised), then with that setting at the edge of its range."""
    return {"refused": raised(m.sample, logits, seeded(seed), **refused),
            "accepted": m.sample(logits, seeded(seed), **accepted)}


@pytest.mark.concept("arguments")
def test_bad_sampling_arguments_are_value_errors(check):
    logits = np.log(np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]]))
    greedy = np.array([3, 0])  # what every setting that keeps only the most probable token draws
    whole = inverse_cdf(numpy_softmax(logits), seeded(1123).random(2))  # what a setting that keeps every token draws
    for refused, accepted, want in (({"top_k": 0}, {"top_k": 1}, greedy), ({"top_p": 0.0}, {"top_p": 1e-9}, greedy),
                                    ({"top_p": 1.5}, {"top_p": 1.0}, whole), ({"min_p": -0.1}, {"min_p": 0.0}, whole),
                                    ({"min_p": 1.2}, {"min_p": 1.0}, greedy),
                                    ({"temperature": -1.0}, {"temperature": 0.0}, greedy)):
        got = check(probe_sample_arguments, logits=logits, seed=1123, refused=refused, accepted=accepted, tol=EXACT,
                    what=f"sample(**{refused}), then sample(**{accepted})")
        assert_close(got, {"refused": {"raised": "ValueError"}, "accepted": want}, EXACT,
                     f"sample(**{refused}) is out of range; sample(**{accepted}) is the edge of the range and draws")


# ---------------------------------------------------------------- the cache


def probe_cache_fill(m, first: np.ndarray, second: np.ndarray) -> dict:
    cache = m.KVCache(3, first.shape[0], first.shape[1], 6, first.shape[3])
    arrays = cache.keys + cache.values
    fresh = {"length": cache.length, "max_length": cache.max_length, "shape": list(cache.keys[0].shape),
             "dtype": str(cache.keys[0].dtype), "layers": [len(cache.keys), len(cache.values)]}
    returned = []
    for layer in range(3):
        keys, values = cache.update(layer, first * (layer + 1), -first)
        returned.append([keys.copy(), values.copy(), bool(np.shares_memory(keys, cache.keys[layer]))])
    middle = cache.length
    cache.advance(first.shape[2])
    keys, values = cache.update(1, second, second + 1)
    cache.advance(second.shape[2])
    return {"fresh": fresh, "first": returned, "length_before_advance": middle, "keys": keys, "values": values,
            "length": cache.length, "same_arrays": all(a is b for a, b in zip(arrays, cache.keys + cache.values)),
            "layer0_tail": cache.keys[0][:, :, first.shape[2]:]}


@pytest.mark.concept("kv-cache")
def test_kv_cache_is_preallocated_and_filled_in_place(check):
    rng = seeded(1107)
    first, second = rng.normal(size=(2, 2, 3, 4)).astype(np.float32), rng.normal(size=(2, 2, 1, 4)).astype(np.float32)
    got = check(probe_cache_fill, first=first, second=second, tol=EXACT, what="KVCache(3, 2, 2, 6, 4) updates")
    assert_close(got["fresh"], {"length": 0, "max_length": 6, "shape": [2, 2, 6, 4], "dtype": "float32",
                                "layers": [3, 3]}, EXACT, "a fresh KVCache(layers=3, batch=2, kv_heads=2, 6, 4)")
    assert_close(got["first"][2][:2], [3 * first, -first], EXACT, "update(2, k, v) returns keys and values 0..T-1")
    assert_true(all(item[2] for item in got["first"]), "update should return views of the cache's own arrays")
    assert_close(got["length_before_advance"], 0, EXACT,
                 "length after update, before advance (update must not move it)")
    assert_close([got["keys"], got["values"]], [np.concatenate([2 * first, second], axis=2),
                                                np.concatenate([-first, second + 1], axis=2)], EXACT,
                 "layer 1 after a second update: the first 3 positions and the new one", mistakes=(
                     Mistake("the second update overwrote position 0 instead of writing at position `length`",
                             lambda got, want: got[0].shape != want[0].shape),))
    assert_close(got["length"], 4, EXACT, "length after advance(3) and advance(1)")
    assert_true(got["same_arrays"], "the cache's arrays were replaced: allocate them once and write in place")
    assert_close(got["layer0_tail"], np.zeros((2, 2, 3, 4), np.float32), EXACT, "layer 0's unwritten positions")


def probe_cache_full(m, k: np.ndarray) -> dict:
    """A cache of 4 positions holding 3 (k's 2 and an unwritten third): 2 more are refused, the 4th still fits."""
    cache = m.KVCache(1, 1, 1, 4, 2)
    cache.update(0, k, k)
    cache.advance(3)
    too_many = raised(cache.update, 0, k, k, mentions=["full"])
    after = [cache.length, cache.keys[0].copy()]
    return {"too_many": too_many, "after": after, "advance": raised(cache.advance, 2, mentions=["full"]),
            "last": raised(cache.update, 0, k[:, :, :1], 2 * k[:, :, :1])}


@pytest.mark.concept("cache-full")
def test_a_full_cache_raises_and_stays_unchanged(check):
    k = seeded(1108).normal(size=(1, 1, 2, 2)).astype(np.float32)
    got = check(probe_cache_full, k=k, tol=EXACT, what="KVCache(max_length=4) with 3 filled")
    assert_close(got["too_many"], {"raised": "ValueError", "mentions": ["full"]}, EXACT,
                 "update of 2 positions with 1 left (the message says the cache is full)")
    assert_close(got["after"][0], 3, EXACT, "length after the refused update")
    assert_close(got["after"][1][:, :, 3], np.zeros((1, 1, 2), np.float32), EXACT,
                 "position 3 after the refused update: check before writing")
    assert_close(got["advance"], {"raised": "ValueError", "mentions": ["full"]}, EXACT,
                 "advance(2) with 1 position left")
    unwritten = np.zeros((1, 1, 1, 2), np.float32)  # position 2: counted by advance(3), never written
    assert_close(got["last"], {"returned": [np.concatenate([k, unwritten, k[:, :, :1]], axis=2),
                                            np.concatenate([k, unwritten, 2 * k[:, :, :1]], axis=2)]}, EXACT,
                 "update of the last free position: keys and values 0..3 (the refusals changed nothing)")


# ---------------------------------------------------------------- the cached forward pass


@pytest.mark.concept("rope-offset")
def test_cached_logits_equal_the_full_pass_with_rotary_positions(check):
    got = check_cached(check, dict(TINY, position="rotary"), 1109, 2, [5, 1, 1, 3, 1], "rotary GPT")
    assert_close([got["cache_shape"], got["layers"]], [[2, 4, 16, 4], 2], EXACT,
                 "KVCache.for_model: (batch, kv_heads, context, width // heads), one per layer")


@pytest.mark.concept("learned-positions")
def test_cached_logits_equal_the_full_pass_with_learned_positions(check):
    config = dict(TINY, position="learned", tie_embeddings=False, norm="layer", feed_forward="gelu")
    check_cached(check, config, 1110, 2, [4, 1, 1, 1, 2], "learned-position GPT (untied head, LayerNorm, GELU)")


@pytest.mark.concept("gqa-cache")
def test_cached_logits_equal_the_full_pass_with_grouped_query_heads(check):
    got = check_cached(check, dict(TINY, kv_heads=2), 1111, 3, [3, 1, 1, 1, 1, 1], "GPT with 4 heads, 2 kv heads")
    assert_close(got["cache_shape"], [3, 2, 16, 4], EXACT, "KVCache.for_model shape with kv_heads=2 (not heads)")


@pytest.mark.concept("kv-cache")
def test_a_float64_model_decodes_in_float64_equal_to_its_full_pass(check):
    check_cached(check, dict(TINY, kv_heads=2), 1119, 2, [4, 1, 1, 3, 2], "float64 GPT, 2 kv heads", float64=True)


def probe_attention_with_cache(m, x: np.ndarray, seed: int, rotary: bool, chunks: list) -> dict:
    attention = sibling(m, "attention").MultiHeadAttention(8, 4, 2, rng=seeded(seed), rotary=rotary,
                                                            max_positions=12)
    Tensor = sibling(m, "tensor").Tensor
    cache = m.KVCache(2, x.shape[0], 2, 12, 2)
    pieces, start = [], 0
    for size in chunks:
        pieces.append(attention(Tensor(x[:, start:start + size]), cache, 1).data)  # layer 1 of the cache
        cache.advance(size)
        start += size
    return {"cached": np.concatenate(pieces, axis=1), "full": attention(Tensor(x)).data,
            "layer0": cache.keys[0], "keys": cache.keys[1][:, :, :start]}


@pytest.mark.concept("attend-cached")
def test_the_attention_module_with_your_cache_equals_one_pass_over_the_sequence(check):
    x = seeded(1112).normal(size=(2, 7, 8)).astype(np.float32)
    for rotary in (False, True):
        got = check(probe_attention_with_cache, x=x, seed=1113, rotary=rotary, chunks=[4, 1, 2], tol=CACHED,
                    what=f"MultiHeadAttention with a KVCache (rotary={rotary})")
        assert_close(got["cached"], got["full"], CACHED, f"attention in chunks 4, 1, 2 through your KVCache vs the "
                     f"module on all 7 tokens (rotary={rotary})", mistakes=(offset_mistake(4),))
        assert_close(got["layer0"], np.zeros_like(got["layer0"]), EXACT, "layer 0 of the cache (only layer 1 is used)")


def probe_post_norm_block_with_cache(m, x: np.ndarray, seed: int, chunks: list) -> dict:
    blocks, Tensor = sibling(m, "blocks"), sibling(m, "tensor").Tensor
    block = blocks.Block(8, 4, 2, rng=seeded(seed), norm="layer", feed_forward="gelu", pre_norm=False, rotary=True,
                         max_positions=12).eval()
    randomise_parameters(block, seed + 1, dtype=np.float64, spread=0.1)
    cache = m.KVCache(1, x.shape[0], 2, 12, 2, dtype=np.float64)
    pieces, start = [], 0
    for size in chunks:
        pieces.append(block(Tensor(x[:, start:start + size], dtype=np.float64), cache, 0).data)
        cache.advance(size)
        start += size
    return {"cached": np.concatenate(pieces, axis=1), "full": block(Tensor(x, dtype=np.float64)).data}


@pytest.mark.concept("attend-cached")
def test_a_post_norm_block_decodes_through_your_cache_like_one_pass(check):
    x = seeded(1120).normal(size=(2, 6, 8))
    got = check(probe_post_norm_block_with_cache, x=x, seed=1121, chunks=[3, 1, 2], tol=CACHED_F64,
                what="post-norm Block with a float64 KVCache")
    assert_close(got["cached"], got["full"], CACHED_F64, "post-norm Block (norm after each residual sum) in chunks "
                 "3, 1, 2 through your cache vs one pass", mistakes=(offset_mistake(3),))


def probe_decoding_graph(m, config: dict, seed: int, ids: np.ndarray) -> dict:
    model = seeded_model(m, seed, config)
    cache = m.KVCache.for_model(model, ids.shape[0])
    with sibling(m, "tensor").no_grad():
        logits, _ = model(ids, cache=cache)
    return {"requires_grad": bool(logits.requires_grad), "length": cache.length}


@pytest.mark.concept("generate-cache")
def test_decoding_under_no_grad_builds_no_graph(check):
    ids = seeded(1122).integers(0, 13, size=(2, 5))
    got = check(probe_decoding_graph, config=dict(TINY), seed=1122, ids=ids, tol=EXACT,
                what="model(ids, cache=cache) under no_grad")
    assert_close(got, {"requires_grad": False, "length": 5}, EXACT, "under no_grad the cached forward keeps no graph "
                 "(its logits are constants) and the cache holds the 5 tokens")


# ---------------------------------------------------------------- generate


@pytest.mark.concept("generate-cache")
def test_greedy_generation_is_the_same_with_and_without_the_cache(check):
    config = dict(TINY, kv_heads=2)
    prompt = seeded(1114).integers(0, 13, size=(2, 4))
    got = check(probe_generate, config=config, seed=1114, prompt=prompt, tokens=10, settings={"temperature": 0.0},
                tol=EXACT, what="generate(greedy) tokens")
    assert_close(got["cached"][:, :4], prompt, EXACT, "the output starts with the prompt")
    assert_close(got["cached"], got["recomputed"], EXACT, "greedy tokens with the cache vs recomputing")
    assert_close(got["cached"][:, 4:], got["logits"][:, 3:].argmax(axis=-1), EXACT,
                 "each new token vs the arg-max of your model's logits at the position before it")
    assert_close(str(got["cached"].dtype), "int64", EXACT, "dtype of generate's output")


@pytest.mark.concept("generate-sampling")
def test_sampled_generation_draws_once_per_step_from_the_last_position(check):
    config = dict(TINY, position="learned")
    prompt = seeded(1115).integers(0, 13, size=3)  # one sequence, 1-D: the output is 1-D too
    got = check(probe_generate, config=config, seed=1115, prompt=prompt, tokens=8,
                settings={"temperature": 1.5}, tol=EXACT, what="generate(temperature=1.5) tokens")
    assert_close(got["cached"].shape, (11,), EXACT, "shape of generate(1-D prompt of 3, 8 tokens)")
    assert_close(got["cached"], got["recomputed"], EXACT, "sampled tokens with and without the cache, same seed")
    u = seeded(1117).random(9)  # seed + 2: the probe's generator; one draw per step, then the probe's own
    want = inverse_cdf(numpy_softmax(got["logits"][0, 2:] / 1.5), u[:8])
    assert_close(got["cached"][3:], want, EXACT, "tokens replayed from your model's logits with u = rng.random() "
                 "per step", mistakes=(Mistake("logits of another position than the last were sampled",
                                               lambda got, want: True),))
    assert_close(got["next_uniform_cached"], float(u[8]), EXACT, "the generator's next number after 8 steps "
                 "(exactly one rng.random call per step)")


def probe_generate_limits(m, config: dict, seed: int) -> dict:
    model = seeded_model(m, seed, config).train()  # generate must switch to eval itself, and switch back
    prompt = np.arange(6) % config["vocab_size"]
    context = config["context"]
    fits = m.generate(model, prompt, context - 5, rng=seeded(1), temperature=0.0)  # feeds exactly `context` tokens
    training_after = model.training
    too_long = raised(m.generate, model, prompt, context - 4, rng=seeded(1), temperature=0.0)
    window = m.generate(model, prompt, context + 4, rng=seeded(1), temperature=0.0, use_cache=False)
    last = window[-context - 1:-1][None]  # the last window the model read
    return {"fits": fits, "training_after": training_after, "too_long": too_long, "window": window,
            "window_argmax": int(model.eval()(last)[0].data[0, -1].argmax())}


@pytest.mark.concept("context-limit")
def test_the_context_limits_the_cache_and_the_window_slides_without_it(check):
    config = dict(TINY, context=10, dropout=0.5)
    got = check(probe_generate_limits, config=config, seed=1116, tol=EXACT, what="generate at the context limit")
    assert_close(got["fits"].shape, (11,), EXACT, "prompt of 6 + 5 tokens: the model sees exactly 10 = context")
    assert_close(got["too_long"], {"raised": "ValueError"}, EXACT,
                 "with the cache, prompt 6 + 6 tokens (11 to feed > context 10)")
    assert_true(got["training_after"], "generate must restore the model's training mode")
    assert_close(got["window"].shape, (20,), EXACT, "use_cache=False continues past the context")
    assert_close(got["window"][-1], got["window_argmax"], EXACT,
                 "the last greedy token vs your model on the last `context` tokens")


# ---------------------------------------------------------------- the command


@pytest.mark.concept("command")
def test_the_command_loads_a_checkpoint_and_its_tokenizer(check):
    chars = list("\n !abcdefghi")
    config = dict(TINY, vocab_size=len(chars))
    got = check(probe_command, config=config, seed=1118, chars=chars, prompt="a cab", arguments=[
        "--tokens", "12", "--temperature", "0"], tol=EXACT, what="python -m ...generate --temperature 0")
    assert_close(got["text"], got["greedy"], EXACT, "the command's text vs generate(temperature=0) decoded")
    assert_close(got["printed"], got["text"] + "\n", EXACT, "what the command prints")
    sampled = check(probe_command, config=config, seed=1118, chars=chars, prompt="hi", arguments=[
        "--tokens", "20", "--seed", "3", "--top-k", "5"], tol=EXACT, what="python -m ...generate --seed 3 --top-k 5")
    assert_true(sampled["text"].startswith("hi") and len(sampled["text"]) == 22,
                f"the text should be the prompt and 20 characters, got {sampled['text']!r}")
