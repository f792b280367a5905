"""Stage 14 (adapting a pretrained model), hidden suite: other shapes, ranks, targets, configs and edge cases than the
visible one. Like the visible suites, every test compares with the reference AND checks a hand value, a formula or an
invariant of your own output."""
from __future__ import annotations

import numpy as np
import pytest

from grader.harness import EXACT, Mistake, assert_close, assert_true, seeded
from tests.stage14.helpers import (GRADIENTS, IGNORE, LEARNED, MERGED, PACKED, RELOADED, ROUND_TRIP, TINY,
                                   block_causal, lora_formula, masked_targets, probe_apply_lora, probe_chat,
                                   probe_extend, probe_lora_forward, probe_lora_gradients, probe_pack,
                                   probe_packed_equals_alone, probe_packing_bias, probe_sft_loss_gradients,
                                   probe_sft_targets)

MORE = {"multi-query, 3 layers, width 24, 3 heads": dict(TINY, kv_heads=1, layers=3, width=24, heads=3),
        "learned, untied head": dict(LEARNED, tie_embeddings=False)}


@pytest.mark.concept("lora-forward")
def test_rank_one_and_a_wide_rank(check):
    for rank, alpha, shape in ((1, 1.0, (4, 9)), (6, 3.0, (3, 2, 8))):
        rng = seeded(1460 + rank)
        fan_in = shape[-1]
        a, b, x = rng.standard_normal((fan_in, rank)), rng.standard_normal((rank, 5)), rng.standard_normal(shape)
        got = check(probe_lora_forward, fan_in=fan_in, fan_out=5, rank=rank, alpha=alpha, seed=1460 + rank, a=a, b=b,
                    x=x, tol=MERGED, what=f"LoRALinear rank {rank}")
        want = lora_formula(x, got["weight"], got["bias"], a, b, alpha / rank)
        assert_close(got["out"], want, MERGED, f"rank {rank}: x W + b + (x A) B · alpha / r")
        assert_close(got["merged_out"], want, MERGED, f"rank {rank}: merged output")
        assert_close(got["unmerged_weight"], got["weight"], ROUND_TRIP, f"rank {rank}: unmerge(merge(W))")


@pytest.mark.concept("lora-gradients")
def test_gradients_with_a_large_scale(check):
    rng = seeded(1462)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 6))
    x, upstream = rng.standard_normal((2, 3)), rng.standard_normal((2, 6))
    got = check(probe_lora_gradients, fan_in=3, fan_out=6, rank=4, alpha=32.0, seed=1462, a=a, b=b, x=x,
                upstream=upstream, tol=GRADIENTS, what="LoRALinear backward, scale 8")
    for name in ("A", "B", "x"):
        assert_close(got["grads"][name], got["numeric"][name], GRADIENTS, f"d L / d {name} vs central differences")
    assert_close(got["grads"]["A"], 8.0 * x.T @ upstream @ b.T, GRADIENTS, "d L / d A = scale · xᵀ G Bᵀ")
    assert_close(got["base_grad_is_none"], [True, True], EXACT, "the frozen base gets no gradient")


@pytest.mark.concept("apply-lora")
def test_apply_lora_on_other_models_and_targets(check):
    ids = seeded(1463).integers(0, TINY["vocab_size"], (3, 6))
    for name, fields in MORE.items():
        targets = ["output", "down", "up"]
        got = check(probe_apply_lora, fields=fields, seed=1463, rank=3, alpha=3.0, targets=targets, ids=ids,
                    b_seed=1464, tol=MERGED, what=f"apply_lora, {name}")
        assert_close(got["init_logits"], got["base_logits"], EXACT, f"{name}: logits right after apply_lora")
        assert_close(got["merged"], got["adapted"], MERGED, f"{name}: merged vs adapters beside")
        assert_close(got["reloaded"], got["merged"], RELOADED, f"{name}: after save / load")
        assert_close(got["names_after_merge"], got["names_before"], EXACT, f"{name}: the GPT's parameters again")
        # per block: attention.output, feed_forward.down and feed_forward.up (SwiGLU and MLP alike): 3 adapters, A and B
        assert_close(len(got["names"]), 6 * fields["layers"], EXACT, f"{name}: adapters on output, down and up",
                     mistakes=(Mistake("replace every Linear whose attribute NAME is in targets, inside lists too",
                                       lambda g, w: True),))


@pytest.mark.concept("chat-template")
def test_longer_chat(check):
    got = check(probe_chat, prompt="add: 12 h 35", response="47", tol=EXACT, what="a longer chat")
    n = len("add: 12 h 35") + 2
    assert_close(got["mask"], np.array([False] * n + [True] * 3), EXACT, "mask: the 2 answer digits and the end")
    assert_close(got["decoded"], "<|user|>add: 12 h 35<|assistant|>47<|end|>", EXACT, "decode")


@pytest.mark.concept("loss-mask")
def test_nothing_scored_and_everything_scored(check):
    ids = [20, 3, 4, 21]
    got = check(probe_sft_targets, ids=ids, mask=[False] * 4, tol=EXACT, what="a mask with no response token")
    assert_close(got["targets"], np.array([IGNORE] * 3), EXACT, "no response: every target -100")
    got = check(probe_sft_targets, ids=ids, mask=[True] * 4, tol=EXACT, what="every token scored")
    assert_close(got["targets"], np.array(masked_targets(ids, [True] * 4)), EXACT, "every target kept")


@pytest.mark.concept("packing")
def test_pack_edge_cases(check):
    # Positions 8, 1, 1, 8, 2 with context 8: the 8s fill rows 0 and 2 alone; 1, 1 open row 1 and the last 2 joins
    # them there (first fit), so row 1 is segments 1, 2, 3, 3 and four pad slots.
    got = check(probe_pack, lengths=[9, 2, 2, 9, 3], seed=1465, context=8, tol=EXACT, what="pack, a full row")
    assert_close(got["segments"], np.array([[1] * 8, [1, 2, 3, 3, 0, 0, 0, 0], [1] * 8]), EXACT,
                 "segments: 8 | 1, 1, 2 | 8 positions")
    assert_close(got["positions"][1], np.array([0, 0, 0, 1, 0, 0, 0, 0]), EXACT, "positions of the shared row")
    got = check(probe_pack, lengths=[4], seed=1466, context=8, tol=EXACT, what="pack, one example")
    assert_close(got["segments"], np.array([[1, 1, 1]]), EXACT, "one example: one row of T = 3, no padding")


@pytest.mark.concept("packing-mask")
def test_packing_bias_of_one_long_row(check):
    segments = np.array([[1, 1, 1, 2, 2, 3, 3, 3, 3, 0]])
    got = check(probe_packing_bias, segments=segments, tol=EXACT, what="packing_bias, 3 examples and a pad")
    assert_close(got, np.where(block_causal(segments), 0.0, -np.inf)[:, None], EXACT, "the block-causal rule")
    assert_true(bool(np.isfinite(got).any(axis=-1).all()), "every query must see at least one key (itself)")


@pytest.mark.concept("packed-forward")
def test_packed_equals_alone_on_other_models(check):
    for name, fields in MORE.items():
        got = check(probe_packed_equals_alone, fields=fields, seed=1467, lengths=[3, 11, 5, 5, 8, 2], context=14,
                    tol=PACKED, what=f"packed forward, {name}")
        for k, (together, alone) in enumerate(zip(got["together"], got["alone"])):
            assert_close(together, alone, PACKED, f"{name}: example {k} packed vs alone")
        assert_close(got["loss"], got["loss_alone"], PACKED, f"{name}: sft_loss packed vs alone")


@pytest.mark.concept("packed-forward")
def test_packed_equals_alone_with_post_norm_blocks(check):
    got = check(probe_packed_equals_alone, fields=TINY, seed=1471, lengths=[7, 4, 9, 5], context=12, post_norm=True,
                tol=PACKED, what="packed forward, post-norm blocks")
    for k, (together, alone) in enumerate(zip(got["together"], got["alone"])):
        assert_close(together, alone, PACKED, f"post-norm: example {k} packed vs alone",
                     mistakes=(Mistake("a post-norm block normalises after the residual sum: attention_norm(x + "
                                       "attention(x)), as Block.forward does", lambda g, w: True),))


@pytest.mark.concept("sft-loss")
def test_sft_loss_gradients_with_learned_positions(check):
    fields = dict(LEARNED, width=8, heads=2, kv_heads=1, layers=1)
    got = check(probe_sft_loss_gradients, fields=fields, seed=1468, lengths=[4, 6, 3, 5], context=10, packed=True,
                tol=GRADIENTS, what="packed sft_loss, learned positions")
    for grad, numeric in zip(got["grads"], got["numeric"]):
        assert_close(grad, numeric, GRADIENTS, "d sft_loss / d weight vs central differences")


@pytest.mark.concept("extend-vocabulary")
def test_extend_by_one_on_a_learned_model(check):
    ids = seeded(1469).integers(0, 11, (1, 5))
    got = check(probe_extend, fields=dict(LEARNED, tie_embeddings=False), seed=1469, new_vocab=12, rng_seed=1470,
                ids=ids, tol=MERGED, what="extend_vocabulary(11 -> 12), untied")
    rng = seeded(1470)
    assert_close(got["embedding"][11:], rng.standard_normal((1, 16)) * 0.02, MERGED, "the one new row")
    assert_close(got["head"][:, 11:], rng.standard_normal((16, 1)) * 0.02, MERGED, "the one new head column")
    assert_close(got["after"][..., :11], got["before"], MERGED, "old ids' logits unchanged")
