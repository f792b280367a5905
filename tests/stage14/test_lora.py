"""Stage 14 (adapting a pretrained model), visible suite: LoRA.

A LoRALinear must equal its base at initialisation (B = 0), compute x W + b + (x A) B · alpha / r (checked against
that formula in NumPy), fold into the weight and back to round-off (merge / unmerge), send gradients to A, B and the
input but never to the frozen base (float64 central differences), and apply_lora / merge_lora must turn a GPT into
one whose only parameters are the adapters, and back into a plain GPT that saves and loads.
Conventions: exercises/finetune.py and docs/14-finetune.md, section 1.
"""
from __future__ import annotations

import numpy as np
import pytest

from grader.harness import EXACT, F64, Mistake, assert_close, assert_true, seeded
from tests.stage14.helpers import (GRADIENTS, MERGED, RELOADED, ROUND_TRIP, TINY, lora_formula, probe_apply_lora,
                                   probe_lora_forward, probe_lora_gradients, probe_lora_init, probe_lora_rank_refusal,
                                   probe_lora_refusals, probe_model_gradients)


@pytest.mark.concept("lora-init")
def test_lora_starts_as_the_base(check):
    x = seeded(1410).standard_normal((3, 6))
    got = check(probe_lora_init, fan_in=6, fan_out=5, rank=2, alpha=8.0, seed=1410, x=x, tol=EXACT,
                what="a fresh LoRALinear(Linear(6, 5), rank 2, alpha 8)")
    assert_close(got["out"], got["base_out"], EXACT, "the fresh layer's output vs the base Linear's",
                 mistakes=(Mistake("B must start at zero (A random): then (x A) B = 0 exactly",
                                   lambda got, want: True),))
    assert_close([got["A"].shape, got["B"].shape], [(6, 2), (2, 5)], EXACT, "shapes of A (in, r) and B (r, out)")
    assert_close(got["B"], np.zeros((2, 5)), EXACT, "B at initialisation")
    # A = rng.standard_normal((6, 2)) / sqrt(6), one call of the layer's rng, seeded 1412 here
    assert_close(got["A"], seeded(1412).standard_normal((6, 2)) / np.sqrt(6), F64, "A = N(0, 1) / sqrt(in)",
                 mistakes=(Mistake("A must be drawn with ONE call, rng.standard_normal((in, rank)), divided by "
                                   "sqrt(in)", lambda got, want: True),))
    assert_close(got["scale"], 4.0, EXACT, "scale = alpha / rank = 8 / 2",
                 mistakes=(Mistake("the scale is alpha / rank, not alpha", lambda got, want: got == 8.0),))
    assert_close([got["names"], got["dtypes"], got["merged"]], [["A", "B"], ["float64", "float64"], False], EXACT,
                 "the layer's parameters (the frozen base is not one), their dtype (the base's), merged")
    assert_close(got["base_requires_grad"], [False, False], EXACT, "base weight and bias requires_grad (frozen)")


@pytest.mark.concept("lora-forward")
def test_lora_output_merge_and_unmerge(check):
    rng = seeded(1411)
    a, b, x = rng.standard_normal((7, 3)), rng.standard_normal((3, 4)), rng.standard_normal((2, 5, 7))
    got = check(probe_lora_forward, fan_in=7, fan_out=4, rank=3, alpha=6.0, seed=1411, a=a, b=b, x=x, tol=MERGED,
                what="LoRALinear with given A, B")
    want = lora_formula(x, got["weight"], got["bias"], a, b, 2.0)
    assert_close(got["out"], want, MERGED, "y vs x W + b + (x A) B · alpha / r (NumPy)",
                 mistakes=(Mistake("the update must be multiplied by scale = alpha / rank", lambda g, w: True),))
    assert_close(got["merged_weight"], got["weight"] + 2.0 * a @ b, MERGED, "the merged weight W + scale · A B")
    assert_close(got["merged_out"], got["out"], MERGED, "merged output vs unmerged output",
                 mistakes=(Mistake("once merged, forward must be base(x) alone: adding (x A) B again counts the "
                                   "update twice", lambda g, w: True),))
    assert_close(got["unmerged_weight"], got["weight"], ROUND_TRIP, "unmerge(merge(W)) vs W")
    assert_close(got["unmerged_out"], got["out"], MERGED, "output after merge then unmerge")
    assert_close([got["merged_flag"], got["flag_after_unmerge"]], [True, False], EXACT, "merged after merge, unmerge")


@pytest.mark.concept("lora-merge")
def test_merge_twice_is_refused(check):
    # merging twice would add the update twice; unmerging a fresh layer would subtract one that was never added
    check(probe_lora_refusals, calls=["merge", "merge"], tol=EXACT, what="merge of a merged layer")
    check(probe_lora_refusals, calls=["unmerge"], tol=EXACT, what="unmerge of a fresh layer")
    got = check(probe_lora_refusals, calls=["merge", "unmerge", "merge"], tol=EXACT, what="merge, unmerge, merge")
    assert_true("returned" in got, "merge, unmerge, merge must run")
    check(probe_lora_rank_refusal, rank=0, tol=EXACT, what="rank 0")
    got = check(probe_lora_rank_refusal, rank=1, tol=EXACT, what="rank 1 is accepted")
    assert_true("returned" in got, "LoRALinear with rank 1 must be made")


@pytest.mark.concept("lora-gradients")
def test_lora_gradients_match_central_differences(check):
    rng = seeded(1413)
    a, b = rng.standard_normal((5, 2)), rng.standard_normal((2, 3))  # B != 0, so A's gradient is not 0
    x, upstream = rng.standard_normal((4, 5)), rng.standard_normal((4, 3))
    got = check(probe_lora_gradients, fan_in=5, fan_out=3, rank=2, alpha=3.0, seed=1413, a=a, b=b, x=x,
                upstream=upstream, tol=GRADIENTS, what="LoRALinear backward")
    for name in ("A", "B", "x"):
        assert_close(got["grads"][name], got["numeric"][name], GRADIENTS, f"d L / d {name} vs central differences",
                     mistakes=(Mistake("dL/dB = scale · (x A)ᵀ G and dL/dA = scale · xᵀ G Bᵀ: is the scale in the "
                                       "graph?", lambda g, w: True),))
    # by hand: dL/dB = scale · (x A)ᵀ G
    assert_close(got["grads"]["B"], 1.5 * (x @ a).T @ upstream, GRADIENTS, "d L / d B = scale · (x A)ᵀ G")
    assert_close(got["base_grad_is_none"], [True, True], EXACT, "the frozen base weight and bias get no gradient",
                 mistakes=(Mistake("freeze the base: requires_grad = False on its weight and bias",
                                   lambda g, w: True),))


@pytest.mark.concept("apply-lora")
def test_apply_lora_on_a_gpt(check):
    ids = seeded(1414).integers(0, TINY["vocab_size"], (2, 7))
    got = check(probe_apply_lora, fields=TINY, seed=1414, rank=2, alpha=4.0, targets=["query", "value"], ids=ids,
                b_seed=1415, tol=MERGED, what="apply_lora(GPT, rank 2, targets query, value)")
    want_names = [f"blocks.{i}.attention.{p}.{ab}" for i in (0, 1) for p in ("query", "value") for ab in "AB"]
    assert_close(got["names"], want_names, EXACT, "the model's parameters after apply_lora (the adapters only)",
                 mistakes=(Mistake("apply_lora must freeze the whole model first", lambda g, w: len(g) > len(w)),))
    assert_close(got["init_logits"], got["base_logits"], EXACT, "logits right after apply_lora vs before (B = 0)")
    assert_close(got["merged"], got["adapted"], MERGED, "logits after merge_lora vs with the adapters beside",
                 mistakes=(Mistake("merge_lora must fold each adapter into its base weight before putting the base "
                                   "back", lambda g, w: True),))
    assert_close(got["reloaded"], got["merged"], RELOADED, "logits after GPT.save / GPT.load of the merged model")
    assert_close(got["names_after_merge"], got["names_before"], EXACT, "parameters after merge_lora: the GPT's own",
                 mistakes=(Mistake("merge_lora must make every Tensor trainable again, or GPT.save writes nothing "
                                   "for the frozen ones", lambda g, w: len(g) < len(w)),))
    assert_true(not np.allclose(got["adapted"], got["base_logits"]), "with B != 0 the adapters must change the logits")


@pytest.mark.concept("parameter-count")
def test_trainable_and_total_counts(check):
    ids = seeded(1416).integers(0, TINY["vocab_size"], (1, 4))
    for rank, targets in ((2, ["query", "value"]), (4, ["query", "key", "value", "output"])):
        got = check(probe_apply_lora, fields=TINY, seed=1416, rank=rank, alpha=8.0, targets=targets, ids=ids,
                    b_seed=1417, tol=MERGED, what=f"counts, rank {rank}, {targets}")
        # width 16, 4 heads, 2 layers: each targeted projection is 16 -> 16, an adapter r (16 + 16) scalars
        adapters = 2 * len(targets) * rank * (16 + 16)
        # the GPT: embedding 11·16, per block 2 norms 2·16 + attention 4·16·16 + SwiGLU 3·16·48 (hidden
        # 8·ceil(16/3)), final norm 16
        base = 11 * 16 + 2 * (2 * 16 + 4 * 256 + 3 * 16 * 48) + 16
        assert_close(got["counts"], [adapters, base + adapters], EXACT,
                     "trainable_parameters (the adapters), total_parameters (everything, frozen or not)",
                     mistakes=(Mistake("total_parameters must count the frozen Tensors too (walk the tree, not "
                                       "parameters())", lambda g, w: g[1] == w[0]),))


@pytest.mark.concept("lora-gradients")
def test_only_the_adapters_get_gradients_in_a_gpt(check):
    rng = seeded(1418)
    ids, targets = rng.integers(0, TINY["vocab_size"], (2, 5)), rng.integers(0, TINY["vocab_size"], (2, 5))
    got = check(probe_model_gradients, fields=TINY, seed=1418, rank=2, ids=ids, targets=targets, tol=GRADIENTS,
                what="the GPT's loss backward after apply_lora")
    want = sorted(f"blocks.{i}.attention.{p}.{ab}" for i in (0, 1) for p in ("query", "value") for ab in "AB")
    assert_close(got["with_grad"], want, EXACT, "the Tensors that received a gradient",
                 mistakes=(Mistake("a frozen Tensor got a gradient: freeze sets requires_grad = False on every "
                                   "Tensor of the model", lambda g, w: len(g) > len(w)),))
    assert_close(got["grad"], got["numeric"], GRADIENTS, "d loss / d blocks.0.attention.query.B vs central "
                 "differences")
