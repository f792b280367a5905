"""Where one training step of the reference spends its time, by kind of work:

    python -m benchmarks.profile [--size small|medium] [--threads 1] [--steps 20] [--top 4] [--json PATH]

The step is benchmarks/step.py's (forward with the loss, backward, clip at 1.0, AdamW, clear the gradients) on the
same model and batch. It is timed without any instrument (the median of --steps steps after warm-ups), and then
sampled: a second thread looks at the training thread's innermost Python frame about every `--interval` seconds
(sys._current_frames) and files each sample under one category by the line being run:

  matmul       a line with a matrix product (`@`, np.matmul, einsum): the linear layers, the head, attention's
               q kᵀ and P v, and their backward products. NumPy releases the GIL inside BLAS, so these samples are
               taken on time.
  elementwise  any other line of solutions/ that works on arrays: fused ops (norms, activations, RoPE, softmax,
               the loss) and their backward closures, the arithmetic operators, reductions, copies (astype, and
               reshape of a transposed array), gradient accumulation, the embedding's scatter-add
  python       graph building and backward bookkeeping: making nodes (op, Tensor.__init__), the backward walk
               (topological order, the gradient dictionary), module dispatch (__call__ and forward methods, whose
               own lines only call Tensor methods), NumPy's Python-level wrappers, and everything outside
               solutions/ and NumPy (a sample in this file's timing loop, between two steps, is dropped)
  optimizer    any sample with solutions/optim.py on the stack: clip_grad_norm, AdamW.step, zero_grad

Each category's milliseconds are its share of the samples times the uninstrumented step's median wall time, and
its CPU milliseconds the same share of the median CPU time (at one thread on a busy machine the steadier figure:
it leaves out the time spent waiting for a core). A cross-check of the
python row: the same graph on tiny arrays (same layers and heads, head_dim 2, context 2, batch 1) is timed too; its
step is the fixed cost of the Python and of NumPy's per-call dispatch, whatever the sizes. Why sampling and not
cProfile: cProfile charges a function for the NumPy operators on its lines (`a * b` is not a call it sees), so a
fused op that does a product and an activation (SwiGLU's) cannot be split by function; a sample knows its line.
Sampling costs the training thread a little (each sample takes the GIL once); the sampled step time is printed
beside the plain one. A sample that waits for the GIL lands a little late, on Python lines; the switch interval is
lowered to 0.1 ms while sampling so that the wait is short.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import linecache
import os
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.common import threads
from benchmarks.step import training_step

CATEGORIES = ("matmul", "elementwise", "python", "optimizer")
EXPLAINED = {
    "matmul": "matrix products: linear layers, head, attention's two, and their backward products",
    "elementwise": "fused ops (norms, SiLU, RoPE, softmax, loss), arithmetic, reductions, copies, scatter-add",
    "python": "graph building, backward bookkeeping, module dispatch, NumPy's Python wrappers",
    "optimizer": "clip_grad_norm + AdamW.step + zero_grad",
}
# Functions of solutions/ whose own lines are Python work (qualified names). Not reshape: reshaping a transposed
# array copies it, and a sample only lands there often when it does.
PYTHON = {"op", "no_grad", "Tensor.__init__", "Tensor.backward", "Tensor._lift", "Tensor.shape", "Tensor.ndim",
          "Tensor.dtype", "Tensor.size", "Module.__call__", "_leading_axes", "_reduced_axes_back"}
DATA_WORDS = (".astype(", "+ g", "np.add.at")  # lines of those functions that do move data: copies, accumulation
MATMUL_WORDS = (" @ ", "@=", "matmul(", "einsum(", "np.dot(", ".dot(")
NUMPY_PRODUCTS = {"einsum", "tensordot", "dot", "matmul", "inner", "outer"}
NUMPY_REDUCTIONS = {"_sum", "_mean", "_amax", "_amin", "_var", "_std", "_prod", "_any", "_all", "_count_reduce_items"}


def _parts(path: str) -> tuple[str, ...]:
    return Path(path).parts


def classify(frame) -> tuple[str, str] | None:
    """(category, function) of one sample: the innermost frame of the training thread and its callers; None between
    two steps (in this file's timing loop: not part of a step)."""
    if frame.f_code is timed.__code__:
        return None
    outer = frame
    while outer is not None:
        if outer.f_code.co_filename.endswith(("optim.py",)) and "solutions" in _parts(outer.f_code.co_filename):
            return "optimizer", getattr(outer.f_code, "co_qualname", outer.f_code.co_name)
        outer = outer.f_back
    code = frame.f_code
    name = getattr(code, "co_qualname", code.co_name)  # Python 3.11+; the bare name before
    parts = _parts(code.co_filename)
    if "solutions" in parts:
        line = linecache.getline(code.co_filename, frame.f_lineno).split("#")[0]
        readable = f"{Path(code.co_filename).stem}.{name}"
        if any(word in line for word in MATMUL_WORDS) and not line.lstrip().startswith("@"):
            return "matmul", readable
        dispatch = name in PYTHON or name.endswith((".forward", ".__call__", ".loss"))
        if dispatch and not any(word in line for word in DATA_WORDS):
            return "python", readable
        return "elementwise", readable
    if "numpy" in parts:  # NumPy's Python-level functions: products, reductions, or only dispatch
        kind = "matmul" if code.co_name in NUMPY_PRODUCTS else "elementwise" if code.co_name in NUMPY_REDUCTIONS \
            else "python"
        return kind, f"numpy {code.co_name}"
    return "python", f"{Path(code.co_filename).name}:{code.co_name}"


class Sampler(threading.Thread):
    """Counts (category, function) of another thread's innermost frame every `interval` seconds while `on`."""

    def __init__(self, thread_id: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.thread_id, self.interval = thread_id, interval
        self.on, self.done = threading.Event(), threading.Event()
        self.counts: Counter = Counter()

    def run(self) -> None:
        while not self.done.is_set():
            self.on.wait()
            frame = sys._current_frames().get(self.thread_id)
            kind = classify(frame) if frame is not None and self.on.is_set() else None
            if kind is not None:
                self.counts[kind] += 1
            del frame
            time.sleep(self.interval)


def build(size: str, seed: int = 0, tiny: bool = False):
    """The model, its optimizer and one batch, as in benchmarks/step.py's measurement. tiny: the same layers and heads
    (so the same graph, node for node) with head_dim 2, context 2 and batch 1: a step whose arrays are too small to
    cost anything, leaving the per-step cost of the Python around them."""
    from benchmarks.step import SIZES, VOCAB, model_config
    from solutions.gpt import GPT
    from solutions.optim import AdamW
    rng = np.random.default_rng(seed)
    config = model_config(size)
    batch, context = SIZES[size]["batch"], SIZES[size]["context"]
    if tiny:
        config = dataclasses.replace(config, width=2 * config.heads, context=2)
        batch, context = 1, 2
    model = GPT(config, rng=rng)
    ids, targets = rng.integers(0, VOCAB, (batch, context)), rng.integers(0, VOCAB, (batch, context))
    optimizer = AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    return model, optimizer, ids, targets


def timed(step, count: int) -> list[float]:
    """The wall time of each of `count` steps (and, in timed.cpu, the process's CPU time of each)."""
    seconds, timed.cpu = [], []
    for _ in range(count):
        started, cpu = time.perf_counter(), time.process_time()
        step()
        seconds.append(time.perf_counter() - started)
        timed.cpu.append(time.process_time() - cpu)
    return seconds


def measure(size: str = "small", thread_count: int = 1, steps: int = 20, top: int = 4,
            interval: float = 0.001) -> dict:
    from benchmarks.step import SIZES
    step = training_step(*build(size))
    tiny_step = training_step(*build(size, tiny=True))

    sampler = Sampler(threading.get_ident(), interval)
    switch = sys.getswitchinterval()
    with threads(thread_count):
        timed(step, 2)  # warm-up: first-call allocations, BLAS threads starting
        plain = timed(step, steps)
        plain_cpu = timed.cpu
        timed(tiny_step, 2)
        tiny = timed(tiny_step, 5 * steps)
        sampler.start()
        sys.setswitchinterval(1e-4)
        try:
            sampler.on.set()
            sampled = timed(step, steps)
            sampler.on.clear()
        finally:
            sys.setswitchinterval(switch)
            sampler.done.set()
            sampler.on.set()  # let it see `done`
            sampler.join()
    step_seconds = statistics.median(plain)
    total = sum(sampler.counts.values())
    totals, functions = Counter(), {category: Counter() for category in CATEGORIES}
    for (category, name), count in sampler.counts.items():
        totals[category] += count
        functions[category][name] += count
    per_sample_ms = 1000 * step_seconds / max(total, 1)
    return {
        "size": size, "threads": thread_count, "steps": steps, "shape": SIZES[size], "step_ms": 1000 * step_seconds,
        "step_cpu_ms": 1000 * statistics.median(plain_cpu),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "sampled_step_ms": 1000 * statistics.median(sampled), "samples": total,
        "tiny_step_ms": 1000 * statistics.median(tiny),
        "categories": {category: {"ms": totals[category] * per_sample_ms, "share": totals[category] / max(total, 1),
                                  "cpu_ms": statistics.median(plain_cpu) * 1000 * totals[category] / max(total, 1),
                                  "what": EXPLAINED[category],
                                  "top": [[name, count * per_sample_ms]
                                          for name, count in functions[category].most_common(top)]}
                       for category in CATEGORIES},
    }


def table(result: dict) -> str:
    shape = result["shape"]
    lines = [f"one training step, {result['size']} ({shape['layers']} layers, width {shape['width']}, context "
             f"{shape['context']}, batch {shape['batch']}), {result['threads']} BLAS thread(s): median "
             f"{result['step_ms']:.1f} ms over {result['steps']} steps (CPU time {result['step_cpu_ms']:.1f} ms; "
             f"{result['sampled_step_ms']:.1f} ms while sampled, {result['samples']:,} samples); load average "
             f"{', '.join(f'{x:.1f}' for x in result['load_average'] or [])}", "",
             "| category | ms / step | CPU ms / step | share | what | biggest functions (ms) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for category, entry in result["categories"].items():
        biggest = ", ".join(f"{name} {ms:.1f}" for name, ms in entry["top"])
        lines.append(f"| {category} | {entry['ms']:.1f} | {entry['cpu_ms']:.1f} | {100 * entry['share']:.0f}% | "
                     f"{entry['what']} | {biggest} |")
    lines += ["", f"the same graph on tiny arrays (head_dim 2, context 2, batch 1), the step's fixed cost of Python "
                  f"and NumPy calls: {result['tiny_step_ms']:.1f} ms"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("small", "medium"), default="small")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1: steadier on a shared machine)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps, and sampled ones (default 20; medium 5)")
    parser.add_argument("--interval", type=float, default=0.001, help="seconds between samples (default 0.001)")
    parser.add_argument("--top", type=int, default=4, help="functions listed per category (default 4)")
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    args = parser.parse_args(argv)
    steps = args.steps or (20 if args.size == "small" else 5)
    result = measure(args.size, args.threads, steps, args.top, args.interval)
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
