"""Stage 07 (transformer blocks), visible suite: the conventions of the docstrings that the other tests' inputs do not
expose (a mistake there would pass them and fail the hidden suite). Each test's input is chosen so that one plausible
mistake gives a different answer; tests/mutants/stage07.toml lists those mistakes.
"""
from __future__ import annotations

import numpy as np
import pytest

from grader.harness import EXACT, Mistake, Tol, assert_close, randomise_parameters, raised, seeded

COMPOSED = Tol(1e-8, 1e-10, "float64; the block and its composition by hand round differently")


def probe_block_dropout_by_hand(m, x: np.ndarray, seed: int, mask_seed: int, pre_norm: bool) -> dict:
    """Block(dropout=0.5) in training mode, and the same block composed by hand from its own submodules, each run
    with the dropout's generator reset to the same seed (so both draw the same masks, in the same order)."""
    block = m.Block(8, 2, rng=seeded(seed), dropout=0.5, pre_norm=pre_norm)
    randomise_parameters(block, seed + 1)
    h = m.Tensor(x, dtype=np.float64)
    block.dropout.rng = seeded(mask_seed)
    out = block(h).data
    block.dropout.rng = seeded(mask_seed)
    drop, attention, feed_forward = block.dropout, block.attention, block.feed_forward
    if pre_norm:
        h = h + drop(attention(block.attention_norm(h)))
        by_hand = h + drop(feed_forward(block.feed_forward_norm(h)))
    else:
        h = block.attention_norm(h + drop(attention(h)))
        by_hand = block.feed_forward_norm(h + drop(feed_forward(h)))
    return {"block": out, "by hand": by_hand.data}


@pytest.mark.concept("block-dropout")
@pytest.mark.parametrize("pre_norm", [True, False], ids=["pre-norm", "post-norm"])
def test_block_dropout_follows_both_sublayers(check, pre_norm):
    # The docstring: each sublayer's output goes through `dropout` before it is added, attention's first.
    both = Mistake("dropout must follow both sublayers, attention's output and the feed-forward's, before each is "
                   "added to the residual stream", lambda got, want: not np.allclose(got["block"], got["by hand"]))
    got = check(probe_block_dropout_by_hand, x=seeded(701).normal(size=(2, 4, 8)), seed=702, mask_seed=703,
                pre_norm=pre_norm, tol=COMPOSED, what=f"Block(dropout=0.5, pre_norm={pre_norm}) while training",
                mistakes=(both,))
    assert_close(got["block"], got["by hand"], COMPOSED,
                 "the block vs dropout(attention(...)) then dropout(feed_forward(...)) composed from its own "
                 "submodules", mistakes=(Mistake(both.description, lambda got, want: True),))


def probe_bad_block_options(m, options: list, good: dict) -> dict:
    result = {str(option): raised(lambda: m.Block(8, 2, rng=seeded(0), **option), mentions=list(option.values()))
              for option in options}
    block = m.Block(8, 2, rng=seeded(0), **good)
    result["good"] = [type(block.attention_norm).__name__, type(block.feed_forward).__name__]
    return result


@pytest.mark.concept("block-options")
def test_unknown_norm_or_feed_forward_raises_value_error_naming_it(check):
    options = [{"feed_forward": "swigl"}, {"feed_forward": "mlp"}, {"norm": "rmsnorm"}]
    got = check(probe_bad_block_options, options=options, good={"norm": "layer", "feed_forward": "gelu"}, tol=EXACT,
                what="Block with an unknown option")
    assert_close(got.pop("good"), ["LayerNorm", "MLP"], EXACT,
                 "Block(8, 2, norm='layer', feed_forward='gelu'): the classes of attention_norm and feed_forward")
    for option in options:
        assert_close(got[str(option)], {"raised": "ValueError", "mentions": list(option.values())}, EXACT,
                     f"Block(8, 2, {option}): ValueError naming the option (a typo must not fall back to another "
                     f"network)")
