"""Stage 11 (generation), visible suite: the conventions of the docstrings that the other tests' inputs do not expose
(a mistake there would pass them and fail the hidden suite). Each test's input is chosen so that one plausible mistake
gives a different answer; tests/mutants/stage11.toml lists those mistakes.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.harness import EXACT, Mistake, assert_close, seeded
from tests.stage11.helpers import FILTERED, TINY, kept, probe_filter, probe_filter_logits, seeded_model

# Probabilities that are exact binary fractions: softmax of these logits gives exactly 0.5, 0.25, 0.125, 0.125, so
# the cumulative sums reach 0.5 and 0.75 exactly (no rounding decides the test).
HALVES = np.array([0.0, -math.log(2), -2 * math.log(2), -2 * math.log(2)])


@pytest.mark.concept("top-p")
def test_top_p_stops_at_the_first_rank_whose_total_reaches_p_exactly(check):
    # 0.5 + 0.25 = 0.75 reaches p = 0.75 at rank 1: keep 0.5 and 0.25, not the 0.125s (which come after the total
    # has been reached). p = 0.5 is reached by the first token alone.
    inclusive = Mistake("the total was compared with <= p: stop at the first rank where the total is >= p (count "
                        "the ranks whose total is < p)", lambda got, want: kept(got).sum() > kept(want).sum())
    for p, want in ((0.75, [1, 1, 0, 0]), (0.5, [1, 0, 0, 0])):
        got = check(probe_filter, kind="top_p", logits=HALVES, value=p, tol=FILTERED,
                    what=f"top_p_filter(probabilities 0.5, 0.25, 0.125, 0.125; {p})", mistakes=(inclusive,))
        assert_close(kept(got), np.array(want), EXACT, f"tokens kept by top-p = {p} (1 = kept)", mistakes=(
            Mistake(inclusive.description, lambda got, want: got.sum() > want.sum()),))


@pytest.mark.concept("filter-order")
def test_top_p_runs_before_min_p(check):
    # Top-p = 0.75 first: 0.4 + 0.3 = 0.7 < 0.75, so 0.2 joins (three tokens); min-p = 0.3 then keeps p >= 0.12: all
    # three. Min-p first would drop 0.1 and renormalise to 0.44, 0.33, 0.22, whose first two reach 0.75 (two tokens).
    logits = np.log(np.array([0.4, 0.3, 0.2, 0.1]))
    order = "min-p ran before top-p: the order is temperature, top-k, top-p, min-p"
    got = check(probe_filter_logits, logits=logits, settings={"top_p": 0.75, "min_p": 0.3}, tol=FILTERED,
                what="filter_logits(top_p=0.75, min_p=0.3)",
                mistakes=(Mistake(order, lambda got, want: kept(got).tolist() == [1, 1, 0, 0]),))
    assert_close(kept(got), np.array([1, 1, 1, 0]), EXACT, "top-p = 0.75 then min-p = 0.3",
                 mistakes=(Mistake(order, lambda got, want: got.tolist() == [1, 1, 0, 0]),))


def probe_filter_dtypes(m, logits: np.ndarray) -> dict:
    logits = logits.astype(np.float32)
    filtered = {"top_k_filter": m.top_k_filter(logits, 2), "top_p_filter": m.top_p_filter(logits, 0.9),
                "min_p_filter": m.min_p_filter(logits, 0.1), "filter_logits": m.filter_logits(logits, top_k=2)}
    return {"dtypes": {name: str(np.asarray(value).dtype) for name, value in filtered.items()}, "filtered": filtered}


@pytest.mark.concept("top-k")
def test_filters_return_float64_for_float32_logits(check):
    got = check(probe_filter_dtypes, logits=seeded(1151).normal(size=(2, 5)), tol=FILTERED, what="filters of float32")
    assert_close(got["dtypes"], dict.fromkeys(got["dtypes"], "float64"), EXACT,
                 "the dtype each filter returns for float32 logits (the docstrings: float64 (..., V))")
    assert_close(kept(got["filtered"]["top_k_filter"]).sum(axis=-1), np.array([2, 2]), EXACT,
                 "tokens kept per row by top_k_filter(logits, 2)")


def probe_training_mode_kept(m, config: dict, seed: int, prompt: list) -> dict:
    model = seeded_model(m, seed, config)  # in eval mode
    modes = {}
    for mode in (False, True):
        model.train(mode)
        m.generate(model, np.array(prompt), 3, rng=seeded(seed), temperature=0.0)
        modes[f"was training={mode}"] = [model.training] + [block.training for block in model.blocks]
    return modes


@pytest.mark.concept("eval-mode")
def test_generate_gives_the_model_back_in_the_mode_it_had(check):
    left_on = Mistake("generate left the model in training mode: put back the mode it had (model.train(was_training)), "
                      "not train()", lambda got, want: got["was training=False"][0])
    got = check(probe_training_mode_kept, config=TINY, seed=1152, prompt=[1, 2, 3], tol=EXACT,
                what="training flags after generate", mistakes=(left_on,))
    layers = len(got["was training=False"]) - 1
    assert_close(got, {"was training=False": [False] * (layers + 1), "was training=True": [True] * (layers + 1)},
                 EXACT, "[model.training, each block's training] after generate, for a model in eval mode and one in "
                 "training mode", mistakes=(left_on,))
