"""Stage 12 (where the time and memory go), visible suite: flash attention.

Your tiled attention must equal YOUR stage 06 attention on the same float64 inputs, output and every gradient (the
online softmax only rescales partial sums, so nothing but the last digits may differ), for tiles that divide T and
tiles that do not, causal or not, with cached keys (S > T) and grouped-query heads; its gradients must also match
central differences of its own forward; and it must keep only the output and the log-sum-exp, never a (T, S) array.
Each case is also compared with the reference's flash attention.
"""
from __future__ import annotations

import numpy as np
import pytest

from grader.harness import EXACT, GRADCHECK, Mistake, assert_close, assert_true, central_difference, raised, sibling
from tests.stage12.helpers import ATTENTION_F64, attention_inputs, probe_flash, probe_flash_memory

FLASH_MISTAKES = (
    Mistake("the running sum and the accumulator must be rescaled by exp(m_old - m_new) before a key block is added: "
            "without it every block after the first is weighted by its own maximum",
            lambda got, want: not np.allclose(got["flash"]["out"], want["flash"]["out"], atol=1e-6)
            and np.allclose(got["flash"]["out"][..., :1, :], want["flash"]["out"][..., :1, :], atol=1e-6)),
)


def judge_flash(check, what: str, **inputs) -> dict:
    """Flash vs your stage 06 attention (forward and gradients), and vs the reference's flash attention."""
    got = check(probe_flash, tol=ATTENTION_F64, what=what, mistakes=FLASH_MISTAKES, **inputs)
    grouped = inputs["q"].shape[1] != inputs["k"].shape[1]
    for key in ("out", "grad_q", "grad_k", "grad_v"):
        mistakes = [Mistake("dK and dV must SUM over the query heads of a group (the group axis of q's view)",
                            lambda got, want: True)] if grouped and key in ("grad_k", "grad_v") else []
        if key != "out":
            mistakes.append(Mistake("backward: P = exp(scores − lse) per tile, D = rowsum(dO ⊙ O), "
                                    "dSc = P ⊙ (dP − D) · scale, each tile added into dQ, dK, dV (+=, not =)",
                                    lambda got, want: True))
        assert_close(got["flash"][key], got["stage06"][key], ATTENTION_F64,
                     f"{what}: flash_attention's {key} vs your stage 06 scaled_dot_product_attention's", mistakes)
    return got


@pytest.mark.concept("flash-forward")
def test_flash_equals_stage_06_without_a_mask(check):
    inputs = attention_inputs(1210, 2, 3, 3, 8, 8, 4)
    judge_flash(check, "B=2, H=3, T=S=8, Dh=4, tile 4 (divides T)", tile=4, **inputs)
    judge_flash(check, "the same, tile 3 (the last block has 2 rows)", tile=3, **inputs)


@pytest.mark.concept("flash-forward")
def test_one_tile_is_plain_attention(check):
    # tile >= T and S: one block, m the row's max, l its sum: exactly the softmax of stage 06
    inputs = attention_inputs(1211, 1, 2, 2, 5, 5, 3)
    judge_flash(check, "T=S=5, tile 64 (a single block)", tile=64, causal=True, **inputs)


@pytest.mark.concept("flash-causal")
def test_flash_causal_with_tiles_that_do_not_divide(check):
    inputs = attention_inputs(1212, 2, 2, 2, 7, 7, 4)
    for tile in (2, 3, 5):
        judge_flash(check, f"causal, T=S=7, tile {tile}", tile=tile, causal=True, **inputs)


@pytest.mark.concept("flash-causal")
def test_flash_causal_with_cached_keys(check):
    # S = 10 keys, T = 4 queries: query i sits at position 6 + i and sees keys 0 .. 6 + i
    inputs = attention_inputs(1213, 1, 2, 2, 4, 10, 3)
    judge_flash(check, "causal, T=4 after 6 cached keys, tile 3", tile=3, causal=True, **inputs)


@pytest.mark.concept("flash-gqa")
def test_flash_grouped_query_heads(check):
    inputs = attention_inputs(1214, 2, 6, 2, 6, 6, 2)  # H = 6 query heads share Hkv = 2 key/value heads
    judge_flash(check, "H=6, Hkv=2, causal, T=S=6, tile 4", tile=4, causal=True, **inputs)
    inputs = attention_inputs(1215, 1, 4, 1, 5, 7, 3)  # multi-query, cached keys
    judge_flash(check, "H=4, Hkv=1, causal, T=5, S=7, tile 2", tile=2, causal=True, **inputs)


def probe_flash_numeric(m, q, k, v, weights, causal: bool, tile: int) -> dict:
    """backward() of flash_attention and central differences of its forward, float64."""
    tensor = sibling(m, "tensor")
    leaves = [tensor.Tensor(x.copy(), requires_grad=True, dtype=np.float64) for x in (q, k, v)]
    m.flash_attention(*leaves, causal=causal, tile=tile).backward(weights)
    arrays = [q.copy(), k.copy(), v.copy()]

    def loss() -> float:
        constants = [tensor.Tensor(x, dtype=np.float64) for x in arrays]
        return float((m.flash_attention(*constants, causal=causal, tile=tile).data * weights).sum())

    return {name: {"analytic": leaf.grad, "numeric": central_difference(loss, array)}
            for name, leaf, array in zip("qkv", leaves, arrays)}


@pytest.mark.concept("flash-backward")
def test_flash_gradients_against_central_differences(target, reference):
    inputs = attention_inputs(1216, 1, 4, 2, 5, 6, 3)
    for who in (target, reference):
        got = who.run(probe_flash_numeric, causal=True, tile=2, **inputs)
        for name, pair in got.items():
            assert_close(pair["analytic"], pair["numeric"], GRADCHECK, f"{who.target}: d L / d {name} of "
                         "flash_attention (H=4, Hkv=2, causal, T=5, S=6, tile 2) vs central differences of its forward")


@pytest.mark.concept("flash-memory")
def test_flash_keeps_only_the_output_and_the_log_sum_exp(target, reference):
    # B=1, H=2, T=512, Dh=8, float64, tile 32. The graph keeps O (B, H, T, Dh) = 65,536 bytes and lse (B, H, T) =
    # 8,192: 73,728. One (T, T) array per head would be 2 · 512² · 8 = 4,194,304 bytes. The traced peak of forward +
    # backward may hold a fixed number of arrays the size of q or of a tile: at most 16 · (B·H·T·Dh + B·H·tile²) · 8 =
    # 1,310,720 bytes (the reference needs ~471,000).
    got = target.run(probe_flash_memory, B=1, H=2, T=512, Dh=8, tile=32, seed=1217)
    want = reference.run(probe_flash_memory, B=1, H=2, T=512, Dh=8, tile=32, seed=1217)
    assert_true(want["saved"] == 73_728 and want["peak"] <= 1_310_720, f"test defect: the reference gives {want}")
    assert_true(got["saved"] == 73_728, f"saved_bytes of the flash op's graph: expected 73,728 (the output and the "
                f"log-sum-exp), got {got['saved']:,}: backward must recompute each tile's probabilities from lse, "
                "not keep them (or the scores)")
    assert_true(got["peak"] <= 1_310_720, f"the traced peak of forward + backward at T=512, tile 32 is "
                f"{got['peak']:,} bytes; it must stay O(T·Dh + tile²): at most 1,310,720 (one (T, T) array per head "
                "alone takes 4,194,304). Is something (T, S)-sized made: a full score row block, a mask np.tri(T, S), "
                "a probability matrix?")


def probe_flash_errors(m, q, k, v) -> dict:
    tensor = sibling(m, "tensor")
    q, k, v = (tensor.Tensor(x, dtype=np.float64) for x in (q, k, v))
    return {"tile": raised(m.flash_attention, q, k, v, tile=0, mentions=("tile",)),
            "short": raised(m.flash_attention, q, k[:, :, :2], v[:, :, :2], causal=True),
            "heads": raised(m.flash_attention, q, k[:, :2], v[:, :2]),
            "accepted": m.flash_attention(q, k, v, tile=1, causal=True).data}  # the same q, k, v, accepted


@pytest.mark.concept("flash-causal")
def test_flash_rejects_what_stage_06_rejects(check):
    inputs = attention_inputs(1258, 1, 3, 3, 3, 3, 2)
    got = check(probe_flash_errors, tol=ATTENTION_F64, what="flash_attention's refusals and an accepted call",
                q=inputs["q"], k=inputs["k"], v=inputs["v"])
    for case, why in (("tile", "tile=0 (the message names the tile)"), ("short", "causal with S=2 keys for T=3 "
                      "queries"), ("heads", "3 query heads with 2 key/value heads")):
        assert_close(got[case], {"raised": "ValueError", "mentions": ["tile"] if case == "tile" else []}, EXACT, why)
