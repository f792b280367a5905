"""Stage 14 (adapting a pretrained model), visible suite: conventions a plausible mistake would otherwise slip past.

A float32 base keeps float32 adapters and outputs (the tests above are float64); apply_lora's default targets are the
query and value projections (the LoRA paper's choice), and its walk reaches Linears inside lists (the GPT's blocks).
"""
from __future__ import annotations

import numpy as np
import pytest

from grader.harness import EXACT, assert_close, seeded, sibling
from tests.stage14.helpers import TINY


def probe_float32_lora(m, x: np.ndarray) -> dict:
    nn, tensor = sibling(m, "nn"), sibling(m, "tensor")
    layer = m.LoRALinear(nn.Linear(4, 3, rng=seeded(1440)), 2, 2.0, rng=seeded(1441))  # float32 as built
    y = layer(tensor.Tensor(x.astype(np.float32)))
    return {"dtypes": [str(layer.A.dtype), str(layer.B.dtype), str(y.dtype)]}


def probe_default_targets(m) -> list:
    gpt = sibling(m, "gpt")
    model = gpt.GPT(gpt.GPTConfig(**TINY), rng=seeded(1442))
    m.apply_lora(model, 2, 4.0, rng=seeded(1443))
    return [name for name, _ in model.named_parameters()]


@pytest.mark.concept("lora-init")
def test_float32_stays_float32(check):
    got = check(probe_float32_lora, x=seeded(1444).standard_normal((2, 4)), tol=EXACT, what="a float32 LoRALinear")
    assert_close(got["dtypes"], ["float32"] * 3, EXACT, "dtypes of A, B and the output")


@pytest.mark.concept("apply-lora")
def test_default_targets_are_query_and_value(check):
    got = check(probe_default_targets, tol=EXACT, what="apply_lora's default targets")
    want = [f"blocks.{i}.attention.{p}.{ab}" for i in (0, 1) for p in ("query", "value") for ab in "AB"]
    assert_close(got, want, EXACT, "the parameters after apply_lora(model, 2, 4.0, rng=...)")
