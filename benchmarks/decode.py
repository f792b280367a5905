"""One implementation's greedy decoding, timed in a process of its own (torch's OpenMP runtime never shares a
process with the NumPy timings):

    python -m benchmarks.decode --impl numpy|torch [--tokens 256] [--threads 2] [--repeats 3]

prints one JSON object: the tokens, and tokens per second with the key/value cache (and, for numpy, without it:
recomputing the whole sequence for every new token), per second of wall time and per second of the process's CPU
time (steadier on a shared machine at one thread; see common.median_times). Batch 1, a one-token prompt, the cpu-small model with a context
long enough for every token (so both paths see the whole sequence), the same seeded weights on both sides. numpy is
solutions.generate.generate(temperature=0); torch is benchmarks/torch_gpt.py's twin with its own preallocated cache
under torch.inference_mode(): PyTorch eager's own cached decoding.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from benchmarks.common import keep_freed_memory, median_times, threads, torch_or_none


def model(new_tokens: int, seed: int = 0):
    from benchmarks.step import model_config
    from solutions.gpt import GPT
    config = model_config("small")
    config.context = new_tokens + 1
    return GPT(config, rng=np.random.default_rng(seed))


def measure(impl: str, new_tokens: int, thread_count: int, repeats: int) -> dict:
    reference = model(new_tokens)
    prompt = np.array([[1]])
    outputs, seconds, cpu = {}, {}, {}
    if impl == "torch":
        torch = torch_or_none()  # imported before pinning, so that `threads` pins it too
        from benchmarks.torch_gpt import build, greedy
        twin, _ = build(reference, torch)
    with threads(thread_count):
        if impl == "numpy":
            from solutions.generate import generate
            for use_cache in (True, False):
                def decode(use_cache=use_cache):
                    outputs[use_cache] = generate(reference, prompt, new_tokens, rng=np.random.default_rng(0),
                                                  temperature=0.0, use_cache=use_cache)
                seconds[use_cache], cpu[use_cache] = median_times(decode, repeats, warmup=1)
        else:
            def decode():
                outputs[True] = greedy(twin, reference, prompt, new_tokens, torch)
            seconds[True], cpu[True] = median_times(decode, repeats, warmup=1)
    result = {"impl": impl, "new_tokens": new_tokens, "threads": thread_count, "tokens": outputs[True][0].tolist(),
              "cached_tokens_per_s": new_tokens / seconds[True], "cached_tokens_per_cpu_s": new_tokens / cpu[True]}
    if False in seconds:
        result |= {"uncached_tokens_per_s": new_tokens / seconds[False],
                   "uncached_tokens_per_cpu_s": new_tokens / cpu[False],
                   "identical_tokens": bool(np.array_equal(outputs[True], outputs[False]))}
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.decode")
    parser.add_argument("--impl", choices=("numpy", "torch"), required=True)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    keep_freed_memory()  # both sides alike, before any array exists (common.keep_freed_memory)
    json.dump(measure(args.impl, args.tokens, args.threads, args.repeats), sys.stdout)


if __name__ == "__main__":
    main()
