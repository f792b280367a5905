"""The benchmark harness computes what it says (never how fast anything is: no test here reads a clock's verdict).

The PyTorch twin's cached decoding gives the reference's logits and greedy tokens (skipped without torch); the targets
table says met / not met by the goal's direction; the profiler's categories cover the whole step and file a line with
a product under matmul.
"""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from grader.harness import EXACT, F32, F64, assert_close

pytest.importorskip("threadpoolctl")


def small_model(context: int = 40):
    from benchmarks.step import model_config
    from solutions.gpt import GPT
    config = model_config("small")
    config.context = context
    return GPT(config, rng=np.random.default_rng(0))


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="PyTorch is optional (pip install torch)")
def test_the_torch_twin_decodes_with_its_cache_what_the_reference_decodes():
    import torch

    from benchmarks.torch_gpt import TorchKVCache, build, greedy
    from solutions.generate import generate
    model = small_model()
    twin, _ = build(model, torch)
    ids = np.random.default_rng(1).integers(0, model.config.vocab_size, (2, 30))
    full = model(ids)[0].data  # (2, 30, V): one pass over everything
    attention = model.blocks[0].attention
    with torch.inference_mode():  # the same tokens fed in three pieces: a prefill, a chunk of 15, one token
        cache = TorchKVCache(torch, model.config.layers, 2, attention.kv_heads, model.config.context,
                             attention.head_dim)
        pieces = [twin(torch.tensor(ids[:, a:b]), cache=cache)[0].numpy() for a, b in ((0, 14), (14, 29), (29, 30))]
    # float32 on both sides, sums in another order: the last digits of logits of size ~0.1
    assert_close(np.concatenate(pieces, axis=1), full, F32, "the twin's logits fed in three pieces through its cache")
    prompt = ids[:1, :3]
    ours = generate(model, prompt, 30, rng=np.random.default_rng(0), temperature=0.0)
    assert_close(greedy(twin, model, prompt, 30, torch), ours, EXACT, "greedy tokens, torch's cache against ours")


def test_targets_are_met_by_their_direction_and_unmeasured_ones_say_so():
    from benchmarks.__main__ import TARGETS, targets
    results = {"train_small": {"ratio_vs_torch": 1.2, "numpy_peak_rss_mb": 104.5},
               "kv_cache": {"speedup": 9.99, "ratio_vs_torch": None},
               "memory": {"flash": {"tiled": {"peak": 5}, "untiled": {"peak": 100}}}}
    checked = targets(results)
    assert_close(sorted(checked), sorted(TARGETS), EXACT, "one verdict per target")
    got = {name: checked[name]["met"] for name in ("train_small ratio vs torch", "train_small peak memory (MB)",
                                                   "kv_cache speedup (cache / recompute)",
                                                   "kv_cache ratio vs torch (cached)", "time_to_loss ratio vs torch",
                                                   "flash attention peak / stage 06 attention peak")}
    assert_close(got, {"train_small ratio vs torch": True, "train_small peak memory (MB)": False,
                       "kv_cache speedup (cache / recompute)": False, "kv_cache ratio vs torch (cached)": None,
                       "time_to_loss ratio vs torch": None,
                       "flash attention peak / stage 06 attention peak": True}, EXACT, "met (True), not (False), "
                 "not measured (None)")


def test_the_profile_files_lines_by_their_work_and_covers_the_step():
    from benchmarks import profile

    from solutions import tensor
    a, b = tensor.Tensor(np.ones((2, 3))), tensor.Tensor(np.ones((3, 4)))
    frames = {}

    def spy(frame, event, arg):
        if event == "return" and frame.f_code.co_name in ("_rows_times", "op") and frame.f_code.co_name not in frames:
            frames[frame.f_code.co_name] = profile.classify(frame)
    sys.setprofile(spy)
    try:
        a @ b
    finally:
        sys.setprofile(None)
    assert_close(frames.get("_rows_times", ("?",))[0], "matmul", EXACT, "the line of _rows_times with its product")
    assert_close(frames.get("op", ("?",))[0], "python", EXACT, "op: making a node")

    result = profile.measure("small", thread_count=1, steps=2, top=2)
    shares = sum(entry["share"] for entry in result["categories"].values())
    assert result["samples"] > 0, "no sample was taken"
    assert_close(shares, 1.0, F64, "the categories' shares of the samples")  # a sum of fractions, rounded
    assert_close(sum(entry["ms"] for entry in result["categories"].values()), result["step_ms"], F64,
                 "the categories' milliseconds add up to the step")
