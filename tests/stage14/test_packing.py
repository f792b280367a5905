"""Stage 14 (adapting a pretrained model), visible suite: packing several chats per row.

pack's layout is checked slot by slot on hand-made lengths (first fit, segments, positions restarting, padding), the
mask against the rule written out here, and the point of it all: each packed example's hidden states and the masked
loss equal those of the example run alone (float64, to round-off), for rotary and learned positions; the packed loss's
gradients match central differences. attention_with_bias and rotate are checked against stage 06's own attention and
apply_rope. Conventions: exercises/finetune.py and docs/14-finetune.md, section 4.
"""
from __future__ import annotations

import numpy as np
import pytest

from grader.harness import EXACT, Mistake, assert_close, seeded
from tests.stage14.helpers import (GRADIENTS, IGNORE, LEARNED, PACKED, TINY, block_causal, masked_targets,
                                   probe_attention_with_bias, probe_pack, probe_packed_equals_alone,
                                   probe_packing_bias, probe_rotate, probe_sft_loss_gradients)


@pytest.mark.concept("packing")
def test_pack_layout_by_hand(check):
    # Lengths 5, 7, 4, 9, 3 tokens -> 4, 6, 3, 8, 2 positions; context 12. First fit: row 0 takes 4 and 6 (10 used);
    # 3 does not fit row 0 (13) -> row 1; 8 fits row 1 (11); 2 goes back to row 0, the FIRST row with room (12).
    # T = 12, the fuller row; row 1 ends with one pad slot.
    got = check(probe_pack, lengths=[5, 7, 4, 9, 3], seed=1430, context=12, tol=EXACT,
                what="pack(lengths 5, 7, 4, 9, 3)")
    assert_close(got["segments"], np.array([[1] * 4 + [2] * 6 + [3] * 2, [1] * 3 + [2] * 8 + [0]]), EXACT,
                 "segments",
                 mistakes=(Mistake("first fit: each example goes to the FIRST row with room, not always the last one",
                                   lambda g, w: g.shape[0] > 2),))
    assert_close(got["positions"], np.array([[0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 0, 1], [0, 1, 2, 0, 1, 2, 3, 4, 5, 6, 7, 0]]),
                 EXACT, "positions restart at 0 in each example (padding 0)",
                 mistakes=(Mistake("positions must restart per example, as if each ran alone", lambda g, w: True),))
    (a, ma), (b, mb), (c, mc), (d, md), (e, me) = got["pairs"]
    want_inputs = np.array([[*a[:-1], *b[:-1], *e[:-1]], [*c[:-1], *d[:-1], 0]])
    want_targets = np.array([masked_targets(a, ma) + masked_targets(b, mb) + masked_targets(e, me),
                             masked_targets(c, mc) + masked_targets(d, md) + [IGNORE]])
    assert_close([got["inputs"], got["targets"]], [want_inputs, want_targets], EXACT,
                 "inputs and targets: each example's sft_targets side by side, padding input 0, target -100",
                 mistakes=(Mistake("an example's last token is a target, never an input: packing whole chats "
                                   "makes one example's last token predict the next one's first",
                                   lambda g, w: True),))


@pytest.mark.concept("packing-mask")
def test_packing_bias_is_block_diagonal_and_causal(check):
    segments = np.array([[1, 1, 2, 2, 2, 0], [1, 1, 1, 1, 1, 1], [1, 2, 3, 0, 0, 0]])
    got = check(probe_packing_bias, segments=segments, tol=EXACT, what="packing_bias")
    visible = block_causal(segments)
    assert_close(got, np.where(visible, 0.0, -np.inf)[:, None], EXACT, "bias: 0 same segment and j <= i, -inf else",
                 mistakes=(Mistake("the mask must also be causal inside a segment (j <= i)",
                                   lambda g, w: np.isfinite(g[1, 0, 0, 1])),
                           Mistake("keys of another example must be -inf (block-diagonal)",
                                   lambda g, w: np.isfinite(g[0, 0, 2, 0]))))
    # row 0, query 2 (the first token of example 2) sees only itself
    assert_close(np.isfinite(got[0, 0, 2]), np.array([False, False, True, False, False, False]), EXACT,
                 "row 0: the first token of the second example sees only itself")


@pytest.mark.concept("packed-forward")
def test_packed_examples_equal_each_example_alone(check):
    for name, fields in (("rotary", TINY), ("learned, layer norm, gelu, 2 kv heads", LEARNED)):
        got = check(probe_packed_equals_alone, fields=fields, seed=1431, lengths=[6, 9, 4, 12, 3, 7], context=16,
                    tol=PACKED, what=f"packed forward, {name}")
        for k, (together, alone) in enumerate(zip(got["together"], got["alone"])):
            assert_close(together, alone, PACKED, f"{name}: example {k}'s hidden states packed vs alone",
                         mistakes=(Mistake("attention crossed into another example (the bias must be block-diagonal) "
                                           "or the positions did not restart (rotate by positions[b, t], learned rows "
                                           "looked up per token)", lambda g, w: True),))
        assert_close(got["loss"], got["loss_alone"], PACKED,
                     f"{name}: sft_loss packed vs the mean negative log-likelihood of every response token alone",
                     mistakes=(Mistake("sft_loss must average over the scored targets only (-100 skipped)",
                                       lambda g, w: True),))


@pytest.mark.concept("sft-loss")
def test_sft_loss_gradients(check):
    for packed in (True, False):
        got = check(probe_sft_loss_gradients, fields=dict(TINY, width=8, heads=2, layers=1), seed=1432,
                    lengths=[5, 8, 4], context=12, packed=packed, tol=GRADIENTS, what=f"sft_loss, packed={packed}")
        for grad, numeric, name in zip(got["grads"], got["numeric"], ("blocks.0.feed_forward.down.weight",
                                                                      "token_embedding.weight")):
            assert_close(grad, numeric, GRADIENTS, f"packed={packed}: d sft_loss / d {name} vs central differences",
                         mistakes=(Mistake("masked_features must keep the graph: Tensor ops only, no .data, and "
                                           "rotate's backward is the inverse rotation", lambda g, w: True),))


@pytest.mark.concept("packed-forward")
def test_attention_with_bias_equals_the_attention(check):
    x = seeded(1433).standard_normal((2, 5, 16))
    for name, fields, cached in (("rotary", TINY, 0), ("rotary after 3 cached", TINY, 3),
                                 ("learned, 2 kv heads", LEARNED, 2)):
        got = check(probe_attention_with_bias, fields=fields, seed=1433, x=x, bias=None, cached=cached, tol=PACKED,
                    what=f"attention_with_bias, {name}")
        assert_close(got["with_bias"], got["own"], PACKED,
                     f"{name}: attention_with_bias(zero bias, positions cached .. cached + T - 1) vs "
                     "MultiHeadAttention.forward")


@pytest.mark.concept("rotate")
def test_rotate_per_token(check):
    rng = seeded(1434)
    x, upstream = rng.standard_normal((2, 3, 4, 6)), rng.standard_normal((2, 3, 4, 6))
    positions = np.array([[5, 6, 7, 8], [0, 1, 2, 3]])
    got = check(probe_rotate, x=x, positions=positions, upstream=upstream, tol=GRADIENTS, what="rotate")
    assert_close(got["out"], np.array(got["apply_rope"]), PACKED, "rotate vs stage 06's apply_rope, row by row")
    assert_close(got["grad"], got["numeric"], GRADIENTS, "rotate's backward vs central differences",
                 mistakes=(Mistake("backward is the inverse rotation: [ga c + gb s, gb c - ga s]",
                                   lambda g, w: True),))
