"""Stage 06 (attention), visible suite: the MultiHeadAttention module.

The probes cast the module's parameters to float64 so that the module can be compared with a plain NumPy
computation from the same weights, and gradient-checked by central differences. Conventions: exercises/attention.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from grader.harness import EXACT, F64, GRADCHECK, Mistake, Tol, assert_close, assert_true, seeded, sibling
from tests.stage06.helpers import GrowingCache, build, numpy_module, probe_module

ROUNDING = Tol(1e-9, 1e-11, "float64; the NumPy reference sums in another order")


@pytest.mark.concept("mha")
def test_parameter_names_and_shapes(check):
    x = seeded(630).standard_normal((1, 3, 12))
    got = check(probe_module, x=x, weights=x, width=12, heads=6, kv_heads=2, seed=631, tol=F64,
                what="MultiHeadAttention(12, heads=6, kv_heads=2)")
    shapes = {name: list(value.shape) for name, value in got["parameters"].items()}
    # Dh = 12 / 6 = 2: queries 6 · 2 = 12 wide, keys and values 2 · 2 = 4 wide.
    assert_close(shapes, {"query.weight": [12, 12], "key.weight": [12, 4], "value.weight": [12, 4],
                          "output.weight": [12, 12]}, EXACT, "parameter shapes (no projection biases by default)")
    assert_close(list(got["parameters"]), ["query.weight", "key.weight", "value.weight", "output.weight"], EXACT,
                 "parameter names in order")
    with_bias = check(probe_module, x=x, weights=x, width=12, heads=6, kv_heads=2, seed=631, bias=True, tol=F64,
                      what="MultiHeadAttention(..., bias=True)")
    assert_close(list(with_bias["parameters"]), ["query.weight", "query.bias", "key.weight", "key.bias",
                                                 "value.weight", "value.bias", "output.weight", "output.bias"],
                 EXACT, "parameter names with bias=True")


@pytest.mark.concept("mha")
def test_module_matches_numpy_attention_from_its_own_weights(target, reference):
    rng = seeded(632)
    inputs = {"x": rng.standard_normal((2, 5, 8)), "weights": rng.standard_normal((2, 5, 8)), "width": 8,
              "heads": 4, "kv_heads": 2, "seed": 633, "rotary": True, "numeric": True}
    got = target.run(probe_module, **inputs)
    parameters = got["parameters"]

    def numpy_output(**switches) -> np.ndarray:
        return numpy_module(inputs["x"], parameters, 4, 2, **dict(dict(rotary=True, causal=True), **switches))

    assert_close(got["out"], numpy_output(), ROUNDING, "MultiHeadAttention(8, 4, kv_heads=2, rotary=True) vs NumPy "
                 "attention from its own weights", (
                     Mistake("heads are split with reshape(B, H, T, Dh); reshape to (B, T, H, Dh), then transpose to "
                             "(B, H, T, Dh)", lambda got, want: np.allclose(got, numpy_output(split_heads_wrong=True))),
                     Mistake("RoPE is missing (rotary=True rotates queries and keys)",
                             lambda got, want: np.allclose(got, numpy_output(rotary=False))),
                     Mistake("the mask is missing (causal=True by default)",
                             lambda got, want: np.allclose(got, numpy_output(causal=False))),
                 ))
    assert_close(got["grad_x"], got["numeric_x"], GRADCHECK, "d/dx: backward() vs central differences")
    want = reference.run(probe_module, **inputs)
    del got["numeric_x"], want["numeric_x"]  # rounding in central differences differs with the summation order
    assert_close(got, want, F64, "MultiHeadAttention(8, 4, kv_heads=2, rotary=True)")


@pytest.mark.concept("gqa")
def test_kv_heads_equal_to_heads_is_plain_multi_head(check, target):
    rng = seeded(634)
    inputs = {"x": rng.standard_normal((2, 4, 8)), "weights": rng.standard_normal((2, 4, 8)), "width": 8,
              "heads": 2, "seed": 635}
    grouped = check(probe_module, kv_heads=2, tol=F64, what="MultiHeadAttention(8, 2, kv_heads=2)", **inputs)
    plain = target.run(probe_module, kv_heads=None, **inputs)
    assert_close(grouped, plain, EXACT, "kv_heads=2 vs kv_heads=None (the default) with the same seed")
    assert_close(plain["out"], numpy_module(inputs["x"], plain["parameters"], 2, 2, False, True), ROUNDING,
                 "plain multi-head vs NumPy attention from its own weights")


def probe_module_outputs(m, x, causal: bool) -> np.ndarray:
    tensor = sibling(m, "tensor")
    module = m.MultiHeadAttention(8, 4, 2, rng=np.random.default_rng(636), rotary=True, causal=causal)
    return module(tensor.Tensor(x)).data  # float32, as a model runs


@pytest.mark.concept("causal")
def test_module_is_causal(check, target):
    x = seeded(637).standard_normal((2, 6, 8))
    base = check(probe_module_outputs, x=x, causal=True, tol=Tol(1e-4, 1e-5, "float32 module"),
                 what="causal MultiHeadAttention, float32")
    assert_true(base.dtype == np.float32, f"a float32 input must give a float32 output, got {base.dtype}")
    changed = x.copy()
    changed[:, 3:] = seeded(638).standard_normal(changed[:, 3:].shape)
    after = target.run(probe_module_outputs, x=changed, causal=True)
    assert_close(after[:, :3], base[:, :3], Tol(0.0, 0.0, "the future must not move the past at all"),
                 "outputs at positions 0..2 after changing the input at positions 3..5")
    free = target.run(probe_module_outputs, x=changed, causal=False)
    unmasked = target.run(probe_module_outputs, x=x, causal=False)
    assert_true(not np.allclose(free[:, 0], unmasked[:, 0]),
                "with causal=False the first position must see the changed future (it did not)")


# ---------------------------------------------------------------- decoding with a key/value cache


def probe_module_cached(m, x, seed: int, kv_heads, rotary: bool, chunks: list, layer: int) -> dict:
    """The module on x fed in chunks through a GrowingCache, advanced after each chunk, and on all of x at once."""
    tensor = sibling(m, "tensor")
    module = build(m, 8, 4, kv_heads, seed, rotary)
    cache, pieces, lengths, start = GrowingCache(), [], [], 0
    for size in chunks:
        pieces.append(module(tensor.Tensor(x[:, start:start + size], dtype=np.float64), cache, layer).data)
        lengths.append(cache.length)  # the module must not move it: the caller advances once per step
        cache.advance(size)
        start += size
    return {"cached": np.concatenate(pieces, axis=1), "full": module(tensor.Tensor(x, dtype=np.float64)).data,
            "lengths": lengths, "layers": sorted(cache.keys), "stored": cache.keys[layer].shape[2]}


@pytest.mark.concept("causal-offset")
def test_module_fed_in_pieces_through_a_cache_equals_one_pass(check):
    x = seeded(639).standard_normal((2, 7, 8))
    for kv_heads, rotary in ((2, True), (None, False)):
        got = check(probe_module_cached, x=x, seed=640, kv_heads=kv_heads, rotary=rotary, chunks=[3, 1, 1, 2], layer=2,
                    tol=F64, what=f"MultiHeadAttention(8, 4, kv_heads={kv_heads}, rotary={rotary}) with a cache")
        assert_close(got["cached"], got["full"], ROUNDING, f"chunks 3, 1, 1, 2 through a cache vs one pass over all "
                     f"7 tokens (rotary={rotary})", mistakes=(
                         Mistake("the first chunk matches but later ones do not: the new tokens sit at positions "
                                 "cache.length, ... (apply_rope offset=cache.length) and attend to the cached keys",
                                 lambda got_, want: np.allclose(got_[:, :3], want[:, :3])),))
        assert_close(got["lengths"], [0, 3, 4, 5], EXACT, "cache.length seen by each call (forward must not advance "
                     "the cache: the caller does, once every layer has stored its keys)")
        assert_close([got["layers"], got["stored"]], [[2], 7], EXACT, "the cache layers written (the `layer` "
                     "argument) and the keys stored in it")


def probe_module_gradients_with_a_cache(m, x, weights, seed: int) -> dict:
    """Gradients of L = sum(out * weights) without a cache and through an empty one: the same graph."""
    tensor = sibling(m, "tensor")
    module = build(m, 8, 4, 2, seed, rotary=True)
    result = {}
    for label, cache in (("alone", None), ("cache", GrowingCache())):
        module.zero_grad()
        leaf = tensor.Tensor(x, requires_grad=True, dtype=np.float64)
        out = module(leaf, cache, 0)
        out.backward(weights)
        result[label] = {"out": out.data, "grad_x": leaf.grad,
                         "grads": {name: None if p.grad is None else p.grad.copy()
                                   for name, p in module.named_parameters()}}
    return result


@pytest.mark.concept("causal-offset")
def test_gradients_flow_through_the_new_keys_of_a_cache(check):
    rng = seeded(641)
    x, weights = rng.standard_normal((2, 5, 8)), rng.standard_normal((2, 5, 8))
    got = check(probe_module_gradients_with_a_cache, x=x, weights=weights, seed=642, tol=F64,
                what="MultiHeadAttention gradients with and without a cache")
    assert_close(got["cache"], got["alone"], ROUNDING, "output and gradients through an empty cache vs without one",
                 mistakes=(Mistake("no gradient reaches key and value through the cache: the keys it returns must "
                                   "stay in the graph, op(keys, (k,), lambda g: (g[:, :, length:],))",
                                   lambda got_, want: got_["grads"]["key.weight"] is None),))
