"""Stage 16 (serving small and fast), visible suite: batched decoding of prompts of different lengths.

Left padding, per-row positions and a key mask: each row's logits must equal the row run alone through the model
(float64, within PADDED's tolerance), whatever sits in its pad slots, for rotary and learned positions; greedy
batched decoding must give exactly the tokens of decoding each prompt alone.
"""
from __future__ import annotations

import numpy as np
import pytest

from grader.harness import EXACT, Mistake, assert_close, raised, seeded
from tests.stage16.helpers import PADDED, TINY, model_of, probe_batched, probe_padded_forward

LEARNED = dict(TINY, position="learned", feed_forward="gelu", kv_heads=2)


def probe_batched_refusal(m, tokens: int, shortest: int = 3) -> dict:
    model = model_of(m, TINY, 1620)
    return raised(m.batched_generate, model, [np.arange(10), np.arange(shortest)], tokens,
                  mentions=("context",) if shortest else (["empty", "token"],))


def judge_rows(got: dict, what: str) -> None:
    for row, (together, alone) in enumerate(zip(got["rows"], got["alone"])):
        assert_close(together, alone, PADDED, f"{what}: row {row}'s logits at its real slots vs the row alone",
                     mistakes=(Mistake("the row's positions must start at 0 at its first real token (slot - pads[b]), "
                                       "and keys at its pad slots must be masked with -inf",
                                       lambda got, want: True),))


@pytest.mark.concept("padded-forward")
def test_padded_prefill_equals_each_row_alone(check):
    ids = seeded(1621).integers(0, TINY["vocab_size"], (3, 8))
    for name, fields in (("rotary", TINY), ("learned, gelu, 2 kv heads", LEARNED)):
        got = check(probe_padded_forward, fields=fields, seed=1621, ids=ids, pads=[0, 3, 7], tol=PADDED,
                    what=f"padded_forward, {name}")
        judge_rows(got, name)
        assert_close(got["length"], 8, EXACT, "cache.length after padded_forward of 8 slots")


@pytest.mark.concept("padded-forward")
def test_pad_slots_do_not_leak(check):
    # Same real tokens, different junk in the pad slots: the real slots' logits must not move.
    ids = seeded(1622).integers(0, TINY["vocab_size"], (2, 6))
    other = ids.copy()
    other[1, :4] = (other[1, :4] + 5) % TINY["vocab_size"]
    first = check(probe_padded_forward, fields=TINY, seed=1622, ids=ids, pads=[0, 4], tol=PADDED, what="pads, once")
    second = check(probe_padded_forward, fields=TINY, seed=1622, ids=other, pads=[0, 4], tol=PADDED,
                   what="pads, other junk")
    assert_close(second["rows"][1], first["rows"][1], PADDED, "row 1's real logits with other ids in its pad slots",
                 mistakes=(Mistake("a key at a pad slot is attended to: mask keys j < pads[b] with -inf",
                                   lambda got, want: True),))


@pytest.mark.concept("batched")
def test_batched_greedy_equals_one_at_a_time(check):
    prompts = [[1, 2, 3], [4], [5, 6, 7, 8, 9, 1], [2, 2]]
    for name, fields in (("rotary", TINY), ("learned, gelu, 2 kv heads", LEARNED)):
        got = check(probe_batched, fields=fields, seed=1623, prompts=prompts, tokens=10, tol=EXACT,
                    what=f"batched_generate, {name}")
        assert_close(got["together"], got["alone"], EXACT, f"{name}: each row vs generate(prompt alone, temperature 0)")


@pytest.mark.concept("batched")
def test_batched_checks_the_context(check):
    check(probe_batched_refusal, tokens=16, tol=EXACT, what="longest 10 + 16 - 1 = 25 > context 24")
    got = check(probe_batched_refusal, tokens=15, tol=EXACT, what="longest 10 + 15 - 1 = 24 fits")
    assert_close([len(row) for row in got["returned"]], [25, 18], EXACT, "lengths of the continued prompts")
    check(probe_batched_refusal, tokens=3, shortest=0, tol=EXACT, what="an empty prompt has no last token to continue")
    got = check(probe_batched_refusal, tokens=3, shortest=1, tol=EXACT, what="a one-token prompt is accepted")
    assert_close([len(row) for row in got["returned"]], [13, 4], EXACT, "lengths with a one-token prompt")
