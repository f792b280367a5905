"""One implementation's training step, timed in a process of its own (so peak memory is its own):

    python -m benchmarks.step --impl numpy|torch --size small|medium [--threads 2] [--repeats 10]

prints one JSON object: tokens per second (batch · context / the median step time; also per second of the process's
CPU time, steadier on a shared machine at one thread), the median step in ms, and the process's peak resident memory. A step is what training does: forward with the loss, backward, clip the gradient
norm at 1.0, an AdamW update, clear the gradients.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import sys

import numpy as np

from benchmarks.common import keep_freed_memory, median_times, threads, torch_or_none

SIZES = {  # model and batch: cpu-small is nanoGPT's CPU configuration; medium is the 6-layer one
    "small": {"layers": 4, "heads": 4, "width": 128, "context": 64, "batch": 12},
    "medium": {"layers": 6, "heads": 6, "width": 384, "context": 256, "batch": 16},
}
VOCAB = 76  # the cleaned Shakespeare's characters (stage 10)


def model_config(size: str):
    """The GPTConfig for a size: the cpu-small preset's architecture choices at that size."""
    from solutions.train import PRESETS
    shape = {k: v for k, v in SIZES[size].items() if k != "batch"}
    return dataclasses.replace(PRESETS["cpu-small"].gpt_config(VOCAB), **shape)


def training_step(model, optimizer, ids, targets):
    """One training step of the reference as a function of no arguments: forward with the loss, backward, clipping,
    AdamW, clearing the gradients (benchmarks.profile samples this same step)."""
    from solutions.optim import clip_grad_norm
    params = model.parameters()

    def step():
        _, loss = model(ids, targets)
        loss.backward()
        clip_grad_norm(params, 1.0)
        optimizer.step()
        optimizer.zero_grad()
    return step


def measure(impl: str, size: str, thread_count: int, repeats: int, seed: int = 0) -> dict:
    from solutions.gpt import GPT
    from solutions.optim import AdamW
    config = model_config(size)
    batch, context = SIZES[size]["batch"], SIZES[size]["context"]
    rng = np.random.default_rng(seed)
    model = GPT(config, rng=rng)
    ids = rng.integers(0, VOCAB, (batch, context))
    targets = rng.integers(0, VOCAB, (batch, context))
    if impl == "torch":
        torch = torch_or_none()  # imported before pinning, so that `threads` pins it too
    with threads(thread_count):
        if impl == "numpy":
            optimizer = AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
            step = training_step(model, optimizer, ids, targets)
        else:
            from benchmarks.torch_gpt import build
            twin, params = build(model, torch)
            optimizer = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
            ids_t, targets_t = torch.tensor(ids), torch.tensor(targets)

            def step():
                _, loss = twin(ids_t, targets_t)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        seconds, cpu_seconds = median_times(step, repeats, warmup=2)
    return {"impl": impl, "size": size, "tokens_per_s": batch * context / seconds, "step_ms": 1000 * seconds,
            "tokens_per_cpu_s": batch * context / cpu_seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "parameters": model.num_parameters(), "flops_per_token": model.flops_per_token()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.step")
    parser.add_argument("--impl", choices=("numpy", "torch"), required=True)
    parser.add_argument("--size", choices=tuple(SIZES), required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    keep_freed_memory()  # both sides alike, before any array exists (common.keep_freed_memory)
    json.dump(measure(args.impl, args.size, args.threads, args.repeats), sys.stdout)


if __name__ == "__main__":
    main()
