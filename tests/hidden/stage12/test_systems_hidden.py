"""Stage 12 (where the time and memory go), hidden suite: other configs, shapes, seeds and edge cases than the visible
one. Like the visible suites, every test compares with the reference AND checks a hand count, an invariant, your own
measurement, your own stage 06 attention or central differences."""
from __future__ import annotations

import numpy as np
import pytest

from grader.harness import (EXACT, F32, F64, GRADCHECK, Tol, assert_close, assert_true, central_difference, raised,
                            sibling)
from tests.stage12.helpers import (ATTENTION_F64, IDENTICAL, MIXED_MARGIN, TINY, attention_inputs, judge_activations,
                                   keeping, probe_checkpoint_model, probe_flash, probe_formulas, probe_measured,
                                   probe_mixed_run, probe_scaler, probe_unscale)

MORE = {
    "width 24, 3 heads, multi-query": {"width": 24, "heads": 3, "kv_heads": 1},
    "rms, gelu, learned positions, tied": {"feed_forward": "gelu", "position": "learned"},
    "layer norm, swiglu, untied, 3 layers": {"norm": "layer", "tie_embeddings": False, "layers": 3},
}


@pytest.mark.concept("parameters")
def test_parameter_count_of_more_configs(target, check):
    for name, changes in MORE.items():
        fields = dict(TINY, **changes)
        check(probe_formulas, fields=fields, batch=1, length=3, tol=EXACT, what=f"formulas, {name}")
        got = target.run(probe_measured, fields=fields, seed=1250, batch=1, length=3)
        assert_close(got["predicted_memory"]["parameters"] // 4, got["model_parameters"], EXACT,
                     f"{name}: parameter_count vs your model's num_parameters()")
    # width 24, 3 heads (Dh 8), one key/value head, F = 8 · ceil(24 / 3) = 64: a block is 2·576 + 2·24·8 + 3·24·64 +
    # 2·24 = 6192; the model 13·24 + 2·6192 + 24 = 12,720.
    got = check(probe_formulas, fields=dict(TINY, width=24, heads=3, kv_heads=1), batch=1, length=3, tol=EXACT,
                what="multi-query formulas")
    assert_close(got["parameters"], 12_720, EXACT, "parameter_count, multi-query width 24, by hand")


@pytest.mark.concept("flop-counter")
def test_flop_counter_on_more_configs_and_a_single_token(target):
    for name, changes in MORE.items():
        fields = dict(TINY, **changes)
        for batch, length in ((1, 1), (2, 9)):
            got = target.run(probe_measured, fields=fields, seed=1251, batch=batch, length=length)
            assert_close(got["flops"], got["predicted_flops"], EXACT,
                         f"{name}, B={batch}, T={length}: FlopCounter vs step_flops")


@pytest.mark.concept("activations")
def test_activations_of_more_configs_and_dropout_masks(target, check):
    cases = [(name, dict(TINY, **changes), 2, 11) for name, changes in MORE.items()]
    cases.append(("dropout 0.2, training", dict(TINY, dropout=0.2), 2, 16))  # a (B, T, C) mask per use: 2·L + 1
    for name, fields, batch, length in cases:
        got = target.run(probe_measured, fields=fields, seed=1252, batch=batch, length=length)
        judge_activations(got, fields, batch, length, f"{name}, B={batch}, T={length}")
        check(probe_formulas, fields=fields, batch=batch, length=length, tol=EXACT, what=f"formulas, {name}")
    # TINY with dropout: 118,016 bytes (the visible hand count) + 5 masks of B·T·C = 512 elements: 128,256.
    got = check(probe_formulas, fields=dict(TINY, dropout=0.2), batch=2, length=16, tol=EXACT, what="dropout")
    assert_close(got["activations"], 128_256, EXACT, "activation_bytes with dropout: 5 masks of (B, T, C) more")


@pytest.mark.concept("memory")
def test_training_memory_in_float64(target, check):
    fields = dict(TINY, **MORE["rms, gelu, learned positions, tied"])
    got = target.run(probe_measured, fields=fields, seed=1253, batch=2, length=16, float64=True)
    predicted = {key: got["predicted_memory"][key] for key in ("parameters", "gradients", "optimizer")}
    assert_close(got["memory"], predicted, EXACT, "float64 model (itemsize 8): parameters, gradients, AdamW moments")
    judge_activations(got, fields, 2, 16, "float64, gelu, learned positions", itemsize=8)
    check(probe_formulas, fields=fields, batch=2, length=16, itemsize=8, tol=EXACT, what="float64 formulas")


def probe_diamonds(m, count: int) -> dict:
    """`count` diamonds in a row: x -> (x·2, x·3) -> their sum. Each product keeps the SAME constant-free input x
    (its data) and a fresh (3,) array; the sum keeps nothing."""
    tensor = sibling(m, "tensor")
    node = tensor.Tensor(np.zeros(5), requires_grad=True, dtype=np.float64)
    for _ in range(count):
        left = tensor.op(node.data * 2.0, (node,), keeping(np.ones(3), node))
        right = tensor.op(node.data * 3.0, (node,), keeping(np.ones(3), node))
        node = left + right
    return {"saved": m.saved_bytes(node)}


@pytest.mark.concept("saved-bytes")
def test_saved_bytes_of_shared_nodes(check):
    # 1500 diamonds: each keeps two (3,) arrays (48 bytes) and its input's (5,) data (40 bytes, once although two
    # closures hold it; the first input is the leaf): 1500 · 48 + 1499 · 40 = 131,960. A walk that visits a node once
    # per path would take 2^1500 steps; one that counts per closure would count the shared input twice.
    got = check(probe_diamonds, count=1500, tol=EXACT, what="saved_bytes of 1500 diamonds")
    assert_close(got["saved"], 1500 * 48 + 1499 * 40, EXACT, "saved_bytes of 1500 diamonds, by hand")


@pytest.mark.concept("flash-forward")
def test_flash_with_tile_one_and_a_single_query(check):
    inputs = attention_inputs(1254, 1, 2, 2, 4, 4, 3)
    got = check(probe_flash, tile=1, causal=True, tol=ATTENTION_F64, what="tile 1", **inputs)
    assert_close(got["flash"], got["stage06"], ATTENTION_F64, "tile 1 (one row against one key at a time) vs stage 06")
    inputs = attention_inputs(1255, 2, 4, 2, 1, 9, 2)  # one new token after 8 cached keys: it sees all 9
    got = check(probe_flash, tile=4, causal=True, tol=ATTENTION_F64, what="T=1, S=9", **inputs)
    assert_close(got["flash"], got["stage06"], ATTENTION_F64, "a single query after 8 cached keys vs stage 06")


@pytest.mark.concept("flash-forward")
def test_flash_keeps_float32(check):
    inputs = attention_inputs(1256, 2, 4, 2, 9, 9, 8)
    got = check(probe_flash, tile=4, causal=True, dtype="float32", tol=F32, what="float32 flash", **inputs)
    for key, value in got["flash"].items():
        assert_true(value.dtype == np.float32, f"float32 inputs must give float32 {key}, got {value.dtype}: make the "
                    "running max, sum and accumulator in q's dtype, and use a Python float for the scale")
    assert_close(got["flash"], got["stage06"], Tol(2e-5, 2e-6, "float32, two summation orders"),
                 "float32 flash vs float32 stage 06")


def probe_flash_gradcheck(m, q, k, v, weights, causal: bool, tile: int) -> dict:
    tensor = sibling(m, "tensor")
    leaves = [tensor.Tensor(x.copy(), requires_grad=True, dtype=np.float64) for x in (q, k, v)]
    m.flash_attention(*leaves, causal=causal, tile=tile).backward(weights)
    arrays = [q.copy(), k.copy(), v.copy()]

    def loss() -> float:
        return float((m.flash_attention(*(tensor.Tensor(x, dtype=np.float64) for x in arrays), causal=causal,
                                        tile=tile).data * weights).sum())

    return {name: [leaf.grad, central_difference(loss, array)] for name, leaf, array in zip("qkv", leaves, arrays)}


@pytest.mark.concept("flash-backward")
def test_flash_gradcheck_grouped_with_more_keys_than_queries(target, check):
    inputs = attention_inputs(1257, 2, 6, 3, 3, 7, 2)
    check(probe_flash, tile=3, tol=ATTENTION_F64, what="H=6, Hkv=3, T=3, S=7, tile 3, not causal", **inputs)
    got = target.run(probe_flash_gradcheck, causal=False, tile=3, **inputs)
    for name, (analytic, numeric) in got.items():
        assert_close(analytic, numeric, GRADCHECK, f"d L / d {name}, H=6, Hkv=3, S=7 > T=3, tile 3, vs central "
                     "differences")


def probe_flash_shape_errors(m, q, k, v) -> dict:
    tensor = sibling(m, "tensor")
    q, k, v = (tensor.Tensor(x, dtype=np.float64) for x in (q, k, v))
    return {"values": raised(m.flash_attention, q, k, v[:, :, :-1]),  # k and v of different lengths
            "head_dim": raised(m.flash_attention, q, k[..., :1], v[..., :1]),  # Dh 1 against q's 2
            "batch": raised(m.flash_attention, q, k[:1], v[:1]),  # one batch row of keys for two of queries
            "accepted": m.flash_attention(q, k, v).data}  # the same q, k, v, whole


@pytest.mark.concept("flash-forward")
def test_flash_rejects_shapes_that_do_not_fit(check):
    inputs = attention_inputs(1263, 2, 2, 2, 3, 4, 2)
    got = check(probe_flash_shape_errors, tol=ATTENTION_F64, what="flash_attention's shape refusals and an "
                "accepted call", q=inputs["q"], k=inputs["k"], v=inputs["v"])
    for case, why in (("values", "k and v of different lengths"), ("head_dim", "k and v of head size 1 for q's 2"),
                      ("batch", "one batch row of keys for two of queries")):
        assert_close(got[case], {"raised": "ValueError"}, EXACT, why)


def product_tanh(u, w):
    return (u * w).tanh()


def probe_checkpoint_shared_input(m, x: np.ndarray, weights: np.ndarray) -> dict:
    """checkpoint(f, a, a): the same Tensor twice; its gradient is the sum over both slots."""
    tensor = sibling(m, "tensor")
    leaf = tensor.Tensor(x.copy(), requires_grad=True, dtype=np.float64)
    a = leaf * 1.5
    m.checkpoint(product_tanh, a, a).backward(weights)
    plain_leaf = tensor.Tensor(x.copy(), requires_grad=True, dtype=np.float64)
    b = plain_leaf * 1.5
    (b * b).tanh().backward(weights)
    return {"checkpointed": leaf.grad, "plain": plain_leaf.grad}


@pytest.mark.concept("checkpoint")
def test_checkpoint_with_the_same_input_twice(check):
    rng = np.random.default_rng(1259)
    got = check(probe_checkpoint_shared_input, x=rng.standard_normal((2, 3)), weights=rng.standard_normal((2, 3)),
                tol=F64, what="checkpoint(f, a, a)")
    assert_close(got["checkpointed"], got["plain"], IDENTICAL, "checkpoint(f, a, a) vs f(a, a): the gradients of both "
                 "slots add up")


@pytest.mark.concept("checkpoint")
def test_checkpointed_model_with_other_options(target, check):
    fields = dict(TINY, kv_heads=2, position="learned", norm="layer", feed_forward="gelu")
    plain = check(probe_checkpoint_model, fields=fields, seed=1264, batch=2, length=10, checkpointed=[], tol=F64,
                  what="plain, grouped-query, learned positions, layer norm, gelu")
    got = target.run(probe_checkpoint_model, fields=fields, seed=1264, batch=2, length=10, checkpointed=[0, 1])
    assert_close([got["loss"], got["grads"]], [plain["loss"], plain["grads"]], IDENTICAL,
                 "every block checkpointed: the loss and every gradient")


@pytest.mark.concept("checkpoint")
def test_checkpointing_some_blocks_saves_their_share(target, check):
    fields = dict(TINY, layers=4)
    plain = check(probe_checkpoint_model, fields=fields, seed=1261, batch=1, length=12, checkpointed=[], tol=F64,
                  what="plain, 4 layers")
    some = target.run(probe_checkpoint_model, fields=fields, seed=1261, batch=1, length=12, checkpointed=[0, 2])
    assert_close(some["grads"], plain["grads"], IDENTICAL, "blocks 0 and 2 checkpointed: the gradients")
    every = target.run(probe_checkpoint_model, fields=fields, seed=1261, batch=1, length=12, checkpointed=[0, 1, 2, 3])
    half, whole = plain["saved"] - some["saved"], plain["saved"] - every["saved"]
    assert_close(2 * half, whole, EXACT, "checkpointing 2 of 4 identical blocks saves exactly half of what "
                 "checkpointing all 4 saves (measured with your saved_bytes)")


@pytest.mark.concept("loss-scaler")
def test_loss_scaler_with_other_factors(check):
    # growth_interval 1: every clean step grows, by 3; an overflow multiplies by 0.25.
    got = check(probe_scaler, flags=[True, True, False, True, False, False, True], scale=1.0, growth_interval=1,
                growth_factor=3.0, backoff_factor=0.25, tol=EXACT, what="LossScaler, other factors")
    assert_close(got["scales"], [3.0, 9.0, 2.25, 6.75, 1.6875, 0.421875, 1.265625], EXACT, "scales, by hand")
    assert_close(got["clean_steps"], [0] * 7, EXACT, "with growth_interval 1 the count resets at every step")
    got = check(probe_unscale, grads=[None, None], scale=4.0, tol=EXACT, what="unscale with no gradients")
    assert_close(got["finite"], True, EXACT, "no gradient at all is finite (nothing overflowed)")
    got = check(probe_unscale, grads=[[60000.0]], scale=0.5, tol=EXACT, what="unscale below 1")
    assert_close([got["grads"][0], got["finite"]], [np.array([120000.0]), True], EXACT, "60000 / 0.5 = 120000: "
                 "past float16's largest value but fine in float32, so the division happens after the cast")


@pytest.mark.concept("mixed-precision")
def test_mixed_precision_recovers_after_overflows(target, check):
    # Three overflowing steps in a row (2^100, then 2^99 and 2^98 after halving), then a normal scale: the skipped
    # steps change nothing, so the run from step 3 on is a float32 run one step late by three skipped batches.
    scales = [2.0**100, None, None, 2.0**12, None, None]
    got = target.run(probe_mixed_run, fields=TINY, seed=1262, steps=6, lr=2e-3, scales=scales)
    assert_close(got["skipped"], [True, True, True, False, False, False], EXACT, "skipped steps")
    assert_close(got["scales_used"], [2.0**100, 2.0**99, 2.0**98, 2.0**12, 2.0**12, 2.0**12], EXACT, "scales used")
    assert_close(got["mixed"][:1], got["plain"][:1], MIXED_MARGIN, "the first loss (weights not yet changed)")
    check(probe_mixed_run, fields=TINY, seed=1262, steps=6, lr=2e-3, scales=scales, tol=MIXED_MARGIN,
          what="a run with three overflows")


@pytest.mark.concept("roofline")
def test_roofline_at_the_ridge_and_other_dtypes(check):
    from tests.stage12.test_roofline import probe_intensities
    # (2, 3) @ (3, 4) in float16: 48 FLOPs over 2·(6 + 12 + 8) = 52 bytes. Attention T = 8 after S - T = 24 cached
    # keys (S = 32), Dh 16, float64, untiled: 4·8·32·16 = 16,384 FLOPs over 8·(2·8·16 + 2·32·16 + 4·8·32) = 18,432
    # bytes. At the ridge (intensity = peak / bandwidth = 10) the two roofs meet: 100.
    got = check(probe_intensities, tol=F64, what="intensities", matmuls=[[2, 3, 4, 2]],
                attentions=[[8, 32, 16, 8, 0]], rooflines=[[10.0, 100.0, 10.0], [0.5, 100.0, 10.0]])
    assert_close(got, {"matmul": [48 / 52], "attention": [16_384 / 18_432], "roofline": [100.0, 5.0]}, F64,
                 "intensities and the roofline, by hand")
