"""Stage 17 (mixture of experts), visible suite: the MoE GPT. Its parameters counted by hand against stage 09's dense
twin, the balance loss added to the returned loss, a config that is not "moe" refused, and a short seeded training
run on a tiny model in which the loss falls."""
from __future__ import annotations

import numpy as np
import pytest

from grader.harness import EXACT, F32, Mistake, Tol, assert_close, assert_true, raised, seeded
from tests.stage17.helpers import TINY, moe_config_of, probe_counts, probe_moe_loss, probe_training

MOE = dict(TINY, experts=4, top_k=1, capacity_factor=1.25, aux_loss_weight=0.01)


@pytest.mark.concept("model")
def test_parameter_count_by_hand(check):
    # width 16, swiglu experts of hidden 8 · ceil(16 / 3) = 48: 3 · 16 · 48 = 2304 each, the dense block's size.
    # Per layer the MoE adds 3 more experts and a router of 16 · 4: 2 · (3 · 2304 + 64) = 13,952 over 2 layers.
    got = check(probe_counts, fields=MOE, tol=EXACT, what="MoEGPT parameters")
    assert_close(got["moe"] - got["dense"], 13_952, EXACT, "MoE minus dense parameters, by hand", mistakes=(
        Mistake("the dense feed-forward was kept beside the experts: replace block.feed_forward",
                lambda g, w: g == w + 2 * 2304),))
    assert_true("blocks.0.feed_forward.router.weight" in got["names"]
                and "blocks.1.feed_forward.experts.3.down.weight" in got["names"],
                f"parameter names must include blocks.i.feed_forward.router.weight and .experts.j.*; got "
                f"{[n for n in got['names'] if 'feed_forward' in n][:6]} ...")


@pytest.mark.concept("model")
def test_returned_loss_adds_the_weighted_balance_loss(check):
    rng = seeded(1720)
    batch = {"ids": rng.integers(0, 13, (3, 10)), "targets": rng.integers(0, 13, (3, 10))}
    fields = dict(MOE, aux_loss_weight=0.5)  # large, so that a missing term is obvious
    got = check(probe_moe_loss, fields=fields, seed=1721, tol=F32, what="MoEGPT loss", **batch)
    assert_close(got["aux"], sum(got["blocks"]), F32, "model.aux_loss = the sum of the blocks' aux_loss")
    assert_close(got["loss"], got["cross_entropy"] + 0.5 * got["aux"], F32,
                 "loss = cross-entropy + aux_loss_weight · aux_loss", mistakes=(
                     Mistake("the aux loss was not added", lambda g, w: abs(g - got["cross_entropy"]) < 1e-6),))
    # At initialisation the router is near zero, so probabilities are near 1/E and each layer's aux loss near 1.
    assert_close(got["blocks"], [1.0, 1.0], Tol(0.0, 0.05, "router std 0.02: probabilities within a few "
                                                        "percent of 1/E"), "aux loss per layer at initialisation")


@pytest.mark.concept("options")
def test_model_refuses_a_config_that_is_not_moe(target, check):
    got = check(probe_model_options, tol=EXACT, what="MoEGPT on a dense config")
    assert_true(got["accepted"].get("returned") == "<MoEGPT object>", f"MoEGPT(MoEConfig(...)) must build; got "
                                                                      f"{got['accepted']}")


def probe_model_options(m) -> dict:
    return {"accepted": raised(m.MoEGPT, moe_config_of(m, MOE), rng=seeded(0)),
            "refused": raised(m.MoEGPT, moe_config_of(m, dict(MOE, feed_forward="swiglu")), rng=seeded(0),
                              mentions=("moe",)),
            "unknown_expert": raised(m.MoEGPT, moe_config_of(m, dict(MOE, expert_feed_forward="relu")),
                                     rng=seeded(0), mentions=("relu",))}


@pytest.mark.concept("model")
def test_a_tiny_moe_gpt_trains(target, check):
    got = target.run(probe_training, fields=MOE, seed=1722, steps=30, lr=1e-2)
    losses = got["losses"]
    assert_true(all(np.isfinite(losses)), f"every loss must be finite; got {losses}")
    assert_true(np.mean(losses[-5:]) < 0.6 * losses[0], f"30 AdamW steps on one repeating batch must cut the loss by "
                f"40%: first {losses[0]:.4f}, last five {np.round(losses[-5:], 4).tolist()}")
    # The first step's loss is the untrained model's: it must equal the reference's.
    check(probe_training, fields=MOE, seed=1722, steps=1, lr=1e-2, tol=F32, what="the first training loss")
