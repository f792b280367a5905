"""Stage 16 (serving small and fast), visible suite: conventions a plausible mistake would otherwise slip past.

weight_bytes counts a QuantizedLinear's bias once: the bias stays a Tensor, so it is already among model.parameters();
only q and scale are added. The GPTs of the other tests have no biased Linear, so a model with one is built here.
"""
from __future__ import annotations

import numpy as np
import pytest

from grader.harness import EXACT, Mistake, assert_close, seeded, sibling


def probe_biased_bytes(m) -> dict:
    """A Module holding a biased Linear(4, 3) as an attribute and an unbiased Linear(3, 2) in a list, float32."""
    nn = sibling(m, "nn")
    holder = nn.Module()
    holder.projection = nn.Linear(4, 3, rng=seeded(1601))
    holder.layers = [nn.Linear(3, 2, bias=False, rng=seeded(1602))]
    before = m.weight_bytes(holder)
    m.quantize_model(holder, 8)
    return {"before": before, "after": m.weight_bytes(holder)}


@pytest.mark.concept("quantized-linear")
def test_weight_bytes_counts_a_quantized_bias_once(check):
    # float32: 4·3·4 + 3·4 (bias) + 3·2·4 = 84 bytes. int8: q 12 + float32 scales 12 + bias 12 = 36, and q 6 +
    # scales 8 = 14 for the unbiased one: 50. Counting nbytes() on top of the parameters adds the bias twice: 62.
    got = check(probe_biased_bytes, tol=EXACT, what="weight_bytes of a model with a biased Linear")
    assert_close([got["before"], got["after"]], [84, 50], EXACT, "weight_bytes before, after int8 (by hand)",
                 mistakes=(Mistake("the bias counted twice: it stays a parameter, so add only q and scale",
                                   lambda g, w: g[1] == w[1] + 12),))
