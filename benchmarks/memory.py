"""Stage 12's memory claims, measured: flash attention's peak at T = 4096, and checkpointing a deep model.

    python -m benchmarks.memory [--length 4096] [--tile 128] [--json PATH]

Both measure the traced peak (tracemalloc, which NumPy reports its array buffers to) of one forward + backward,
counted from just before the call, so the inputs and the weights are not in it; each measurement runs in a process
of its own (python -m benchmarks.memory --one ...), so one measurement's freed memory cannot lower another's peak.

  flash         B=1, H=4, Dh=64, float32, causal: stage 06's scaled_dot_product_attention (keeps the (T, T)
                probabilities and makes (T, T) temporaries) against this stage's flash_attention (tiles of `tile`).
                Goal: the tiled peak under a tenth of the untiled one.
  checkpoint    a 12-layer GPT (width 128, 4 heads, context 256, batch 8, float32): the plain model against every
                block wrapped in Checkpointed. Predicted saving: activation_bytes minus activation_bytes(checkpointed),
                plus the node outputs this engine's graph also holds (docs/12-systems.md, section 7), minus the one
                layer that backward rebuilds at a time.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEEP = {"vocab_size": 76, "context": 256, "layers": 12, "heads": 4, "width": 128}
DEEP_BATCH = 8


def traced_peak(run) -> int:
    """Bytes: the traced peak of run() above what was allocated before it."""
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    run()
    peak = tracemalloc.get_traced_memory()[1] - start
    tracemalloc.stop()
    return peak


def flash(kind: str, length: int, tile: int, seed: int = 0) -> dict:
    from solutions.attention import scaled_dot_product_attention
    from solutions.systems import flash_attention, saved_bytes
    from solutions.tensor import Tensor
    rng = np.random.default_rng(seed)
    q, k, v, grad = (rng.standard_normal((1, 4, length, 64), dtype=np.float32) for _ in range(4))
    leaves = [Tensor(x, requires_grad=True) for x in (q, k, v)]
    kept = {}

    def run():
        if kind == "tiled":
            out = flash_attention(*leaves, causal=True, tile=tile)
        else:
            out = scaled_dot_product_attention(*leaves, causal=True)
        kept["saved"] = saved_bytes(out)
        out.backward(grad)

    return {"peak": traced_peak(run), "saved": kept["saved"]}


def checkpoint(kind: str, seed: int = 0) -> dict:
    from solutions import systems
    from solutions.gpt import GPT, GPTConfig
    config = GPTConfig(**DEEP)
    model = GPT(config, rng=np.random.default_rng(seed))
    if kind == "checkpointed":
        model.blocks = [systems.Checkpointed(block) for block in model.blocks]
    rng = np.random.default_rng(seed + 1)
    ids, targets = (rng.integers(0, DEEP["vocab_size"], (DEEP_BATCH, DEEP["context"])) for _ in range(2))
    kept = {}

    def run():
        loss = model(ids, targets)[1]
        kept["saved"] = systems.saved_bytes(loss)
        kept["held"] = graph_bytes(loss)
        loss.backward()

    return {"peak": traced_peak(run), "saved": kept["saved"], "held": kept["held"]}


def graph_bytes(output) -> int:
    """Every buffer the graph keeps alive: what the closures keep (saved_bytes) AND every node's output, which this
    engine's nodes hold until the graph is dropped (test-side bookkeeping, not the stage's formula)."""
    from solutions.systems import _arrays, _owner
    nodes, seen, stack = [], {id(output)}, [output]
    while stack:
        node = stack.pop()
        nodes.append(node)
        for parent in node._parents:
            if id(parent) not in seen:
                seen.add(id(parent))
                stack.append(parent)
    leaves = {id(_owner(node.data)) for node in nodes if node._backward is None}
    buffers = {}
    for node in nodes:
        if node._backward is None:
            continue
        for array in [node.data, *_arrays(node._backward)]:
            owner = _owner(array)
            if id(owner) not in leaves:
                buffers[id(owner)] = owner.nbytes
    return sum(buffers.values())


def one(name: str, kind: str, length: int, tile: int) -> dict:
    return flash(kind, length, tile) if name == "flash" else checkpoint(kind)


def in_process(name: str, kind: str, length: int, tile: int) -> dict:
    done = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--one", name, kind, "--length", str(length),
                           "--tile", str(tile)], cwd=ROOT, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"benchmarks.memory --one {name} {kind} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def predicted_checkpoint_saving() -> dict:
    """The formula's saving, the node outputs it does not count, and the layer rebuilt during backward."""
    from solutions import systems
    from solutions.gpt import GPTConfig
    config = GPTConfig(**DEEP)
    B, T, C, L = DEEP_BATCH, DEEP["context"], DEEP["width"], DEEP["layers"]
    kv_width = (config.kv_heads or config.heads) * (C // config.heads)
    plain = systems.activation_bytes(config, B)
    checkpointed = systems.activation_bytes(config, B, checkpointed=True)
    per_layer = (plain - checkpointed) // L + B * T * C * 4  # a whole layer's kept arrays
    # outputs no closure keeps, per layer: the q projection, attention's output, the output projection, the down
    # projection, the two residual sums (6·B·T·C) and the k projection before RoPE (B·T·Hkv·Dh): docs section 3
    outputs = 4 * (6 * B * T * C + B * T * kv_width)
    return {"formula": plain - checkpointed, "outputs": L * outputs,
            "rebuilt_layer": per_layer + outputs, "total": plain - checkpointed + L * outputs - (per_layer + outputs)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--one", nargs=2, metavar=("NAME", "KIND"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(*args.one, args.length, args.tile)))
        return {}
    result = measure(args.length, args.tile)
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


def measure(length: int = 4096, tile: int = 128) -> dict:
    """Both measurements, each in a process of its own, and the predicted checkpointing saving."""
    return {"flash": {kind: in_process("flash", kind, length, tile) for kind in ("untiled", "tiled")},
            "checkpoint": {kind: in_process("checkpoint", kind, length, tile) for kind in ("plain", "checkpointed")},
            "predicted": predicted_checkpoint_saving(), "length": length, "tile": tile}


def report(result: dict) -> str:
    mib, length, tile = 2**20, result["length"], result["tile"]
    flash, checkpointed, predicted = result["flash"], result["checkpoint"], result["predicted"]
    lines = [f"flash attention, B=1, H=4, T={length}, Dh=64, float32, causal, forward + backward:",
             f"  stage 06 (untiled): peak {flash['untiled']['peak'] / mib:,.1f} MiB, the graph keeps "
             f"{flash['untiled']['saved'] / mib:,.1f} MiB",
             f"  flash (tile {tile}): peak {flash['tiled']['peak'] / mib:,.1f} MiB, the graph keeps "
             f"{flash['tiled']['saved'] / mib:,.2f} MiB; ratio {flash['tiled']['peak'] / flash['untiled']['peak']:.3f}",
             f"checkpointing, {DEEP['layers']} layers, width {DEEP['width']}, context {DEEP['context']}, "
             f"batch {DEEP_BATCH}, float32, forward + backward:"]
    for kind in ("plain", "checkpointed"):
        lines.append(f"  {kind}: peak {checkpointed[kind]['peak'] / mib:,.1f} MiB; after the forward the closures "
                     f"keep {checkpointed[kind]['saved'] / mib:,.1f} MiB and the graph holds "
                     f"{checkpointed[kind]['held'] / mib:,.1f} MiB")
    measured = checkpointed["plain"]["peak"] - checkpointed["checkpointed"]["peak"]
    lines.append(f"  saved: measured {measured / mib:,.1f} MiB; predicted {predicted['total'] / mib:,.1f} MiB (formula "
                 f"{predicted['formula'] / mib:,.1f} + node outputs {predicted['outputs'] / mib:,.1f} - the layer "
                 f"rebuilt in backward {predicted['rebuilt_layer'] / mib:,.1f})")
    return "\n".join(lines)

if __name__ == "__main__":
    main()
