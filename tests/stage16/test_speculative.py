"""Stage 16 (serving small and fast), visible suite: speculative decoding.

The cache must rewind (truncate, then the logits of a fresh pass); the accept/reject rule is checked with a scripted
generator at the exact threshold u·q(d) < p(d); the law of the first emitted token, q·min(1, p/q) plus the rejection
mass times residual(p, q), must equal the target's p EXACTLY in float64 (the whole point: no statistical test needed);
greedy speculative output must equal the target decoding alone, and a draft equal to the target must have every
draft accepted.
"""
from __future__ import annotations

import numpy as np
import pytest

from grader.harness import EXACT, Mistake, assert_close, assert_true, raised, seeded
from tests.stage16.helpers import (DRAFT, PADDED, PROBABILITY, TINY, model_of, probe_accept,
                                   probe_first_token_distribution, probe_pipeline_first_token, probe_speculative,
                                   probe_truncate)


def probe_truncate_refusal(m, keep: int) -> dict:
    model = model_of(m, TINY, 1610)
    cache = m.SpeculativeCache.for_model(model, 1)
    cache.length = 5  # as if five positions were filled
    return raised(cache.truncate, keep, mentions=("truncate",))


def probe_context_refusal(m, tokens: int, k: int = 3) -> dict:
    target, draft = model_of(m, TINY, 1611), model_of(m, DRAFT, 1612)
    return raised(m.speculative_generate, target, draft, np.arange(5), tokens, rng=seeded(0), k=k,
                  mentions=("context",) if k > 0 else ("k",))


@pytest.mark.concept("truncate")
def test_truncate_rewinds_the_cache(check):
    # Feed 9 tokens, keep 4, feed 3 others: the logits must be those of [ids[:4], again] in one pass (the stale keys
    # at positions 4..8 must be overwritten, not attended to).
    rng = seeded(1613)
    ids, again = rng.integers(0, TINY["vocab_size"], (2, 9)), rng.integers(0, TINY["vocab_size"], (2, 3))
    got = check(probe_truncate, fields=TINY, seed=1613, ids=ids, keep=4, again=again, tol=PADDED, what="truncate")
    assert_close([got["length_after_truncate"], got["length"]], [4, 7], EXACT, "cache.length after truncate(4), then 3")


@pytest.mark.concept("truncate")
def test_truncate_refuses_to_grow(check):
    check(probe_truncate_refusal, keep=6, tol=EXACT, what="truncate(6) of a cache holding 5")
    check(probe_truncate_refusal, keep=-1, tol=EXACT, what="truncate(-1)")
    got = check(probe_truncate_refusal, keep=5, tol=EXACT, what="truncate(5) of a cache holding 5")
    assert_close(got["returned"], None, EXACT, "truncate to the current length is accepted")


@pytest.mark.concept("residual")
def test_residual_by_hand(check):
    # p - q = (0.3, -0.2, -0.1): only token 0 has mass the draft under-proposed: residual (1, 0, 0).
    got = check(probe_first_token_distribution, p=np.array([0.5, 0.3, 0.2]), q=np.array([0.2, 0.5, 0.3]),
                tol=PROBABILITY, what="residual by hand")
    assert_close(got["residual"], np.array([1.0, 0.0, 0.0]), PROBABILITY, "residual((.5, .3, .2), (.2, .5, .3))",
                 mistakes=(Mistake("the residual is max(0, p - q), normalised: not |p - q|, not q - p",
                                   lambda got, want: got[0] < 1.0),))
    got = check(probe_first_token_distribution, p=np.array([0.25, 0.75]), q=np.array([0.25, 0.75]),
                tol=PROBABILITY, what="residual when p == q")
    assert_close(got["residual"], np.array([0.25, 0.75]), PROBABILITY, "residual(p, p) is p (no NaN from 0 / 0)")


@pytest.mark.concept("residual")
def test_first_token_follows_the_target_exactly(check):
    # P(x) = q(x) min(1, p(x)/q(x)) + (1 - sum_d min(p(d), q(d))) r(x) = min(p, q)(x) + max(0, p - q)(x) = p(x):
    # computed in float64 from your residual, for random pairs and for a draft that puts zero mass where p does not.
    rng = seeded(1614)
    cases = [(rng.dirichlet(np.ones(6)), rng.dirichlet(np.ones(6))) for _ in range(4)]
    cases.append((np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.0, 0.0, 0.5, 0.5])))
    for p, q in cases:
        got = check(probe_first_token_distribution, p=p, q=q, tol=PROBABILITY, what="the first token's law")
        assert_close(got["law"], p, PROBABILITY, "P(first token = x) under the accept/residual rule vs the target's p")


@pytest.mark.concept("accept")
def test_accept_rule_at_its_threshold(check):
    # One draft d = 1 with p(d) = 0.2, q(d) = 0.4: accepted when u·0.4 < 0.2, i.e. u < 0.5. Below: accepted, and the
    # bonus token is drawn from p_1 = (0, 0, 1). Above: rejected, and the next draw picks from the residual
    # max(0, p - q) / sum = (0.1, 0, 0.1) / 0.2 = (0.5, 0, 0.5) by inverse CDF: u2 = 0.3 gives token 0, u2 = 0.7
    # token 2.
    target = np.array([[0.4, 0.2, 0.4], [0.0, 0.0, 1.0]])
    draft = np.array([[0.3, 0.4, 0.3]])
    cases = [([0.4999, 0.3], {"accepted": 1, "token": 2, "draws_used": 2}),
             ([0.5001, 0.3], {"accepted": 0, "token": 0, "draws_used": 2}),
             ([0.9, 0.7], {"accepted": 0, "token": 2, "draws_used": 2})]
    for draws, want in cases:
        got = check(probe_accept, target_probs=target, draft_probs=draft, drafts=[1], draws=draws, tol=EXACT,
                    what=f"accept_drafts with u = {draws}")
        assert_close(got, want, EXACT, f"accept_drafts with u = {draws}",
                     mistakes=(Mistake("accept when u · q(d) < p(d) (probability min(1, p/q)), not u < q/p",
                                       lambda got, want: got["accepted"] != want["accepted"]),))


@pytest.mark.concept("accept")
def test_accept_stops_at_the_first_rejection(check):
    # Three drafts; the second is rejected (p = 0 for it): stop there, draw once from the residual, never look at the
    # third. 2 accepted-or-not draws + 1 residual draw.
    target = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    draft = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])
    got = check(probe_accept, target_probs=target, draft_probs=draft, drafts=[0, 1, 1], draws=[0.3, 0.1, 0.2],
                tol=EXACT, what="accept_drafts, rejection in the middle")
    assert_close(got, {"accepted": 1, "token": 2, "draws_used": 3}, EXACT, "accepted, token, draws used")


@pytest.mark.concept("speculative")
def test_greedy_speculative_equals_the_target_alone(check):
    for k, tokens, prompt in ((3, 14, [1, 2, 3]), (1, 9, [4]), (5, 18, [7, 7, 0, 2, 9, 1])):
        got = check(probe_speculative, fields=TINY, draft_fields=DRAFT, seeds=[1615, 1616], prompt=np.array(prompt),
                    tokens=tokens, k=k, temperature=0.0, rng_seed=1, tol=EXACT, what=f"greedy speculative, k={k}")
        assert_close(got["ids"], got["target_alone_greedy"], EXACT,
                     f"greedy speculative decoding (k={k}) vs generate(target, temperature=0) alone")
        stats = got["stats"]
        assert_close(stats["accepted"] + stats["rounds"], tokens, EXACT,
                     "every round emits its accepted drafts plus one token: accepted + rounds = new tokens")
        assert_close(stats["rounds"], stats["target_forwards"], EXACT, "one target forward per round")


@pytest.mark.concept("speculative")
def test_sampled_speculative_emits_the_targets_distribution_exactly(check):
    # No sampling noise: every cell of the draws (draft token, accept or not, residual token) is run once, and the
    # cells' probabilities are added to the token your speculative_generate emitted there (helpers.py,
    # probe_pipeline_first_token). The first new token's law must be the target's softmax, to rounding in float64.
    fields, draft_fields = dict(TINY, vocab_size=5), dict(DRAFT, vocab_size=5)
    for prompt in ([1, 2, 3], [4]):
        got = check(probe_pipeline_first_token, fields=fields, draft_fields=draft_fields, seeds=[1618, 1619],
                    prompt=np.array(prompt), tol=PROBABILITY, what="the first token's law, cell by cell")
        assert_close(got["law"], got["target"], PROBABILITY,
                     f"prompt {prompt}: P(first emitted token = x) vs the target's p(x)",
                     mistakes=(Mistake("the drafts must be judged with the TARGET's probabilities of the same position "
                                       "(p_1 for d_1: the target's logits at the last prompt token), and a rejection "
                                       "must draw from the residual, not from p or q", lambda got, want: True),))


@pytest.mark.concept("speculative")
def test_a_draft_equal_to_the_target_is_always_accepted(check):
    # p == q: u · q(d) < p(d) for every u < 1, so every draft is accepted, whatever the temperature.
    for temperature in (1.0, 0.7):
        got = check(probe_speculative, fields=TINY, draft_fields=TINY, seeds=[1617, 1617], prompt=np.array([3, 1]),
                    tokens=15, k=4, temperature=temperature, rng_seed=2, tol=EXACT, what="draft = target")
        stats = got["stats"]
        assert_true(stats["accepted"] == stats["drafted"],
                    f"draft = target at temperature {temperature}: {stats['accepted']} of {stats['drafted']} drafts "
                    f"accepted; with p == q all must be (compare u · q(d) < p(d), and the draft's and the target's "
                    f"probabilities must come from the same filter_logits)")
        assert_close([stats["rounds"], stats["drafted"]], [3, 12], EXACT,
                     "15 tokens, k = 4: rounds of 4 + 1 bonus, then 4 + 1, then min(4, 15 - 10 - 1) = 4 + 1")


@pytest.mark.concept("speculative")
def test_context_is_checked_up_front(check):
    check(probe_context_refusal, tokens=21, tol=EXACT, what="5 + 21 - 1 > context 24")
    got = check(probe_context_refusal, tokens=20, tol=EXACT, what="5 + 20 - 1 = 24 fits")
    assert_true("returned" in got, "speculative_generate with 24 tokens to see must run")
    check(probe_context_refusal, tokens=4, k=0, tol=EXACT, what="k = 0 drafts nothing: a ValueError naming k")
    got = check(probe_context_refusal, tokens=4, k=1, tol=EXACT, what="k = 1 is accepted")
    assert_true("returned" in got, "speculative_generate with k = 1 must run")
