"""Stage 12's roofline, measured on this machine: the matmul peak, the memory bandwidth, and a training step's ops.

    python -m benchmarks.roofline [--out benchmarks/results/12-roofline.png] [--threads 2] [--json PATH]

It measures float32 matmul GFLOP/s over sizes and the copy bandwidth with solutions/systems.py (measure_matmul,
measure_bandwidth), then takes the ops of one training step of the cpu-small model (4 layers, width 128, context 64,
batch 12, 76 characters), computes each op's arithmetic intensity with the stage's formulas, times the op itself (best
of repeats) and plots both on the roofline: where the roof says the op could be, and where it is. The figure in
docs/figures/12-roofline.png is the same picture for an assumed machine, drawn by `python -m grader figures`; this
command's PNG is of the machine it runs on, so it is written under benchmarks/results/ (not committed).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from benchmarks.common import threads

ROOT = Path(__file__).resolve().parent.parent
SIZES = [64, 128, 256, 512, 1024, 2048]
MODEL = {"layers": 4, "heads": 4, "width": 128, "context": 64, "batch": 12, "vocab": 76}


def best_seconds(step, repeats: int = 20) -> float:
    """The fastest of `repeats` runs after one warm-up: the machine only ever adds time."""
    step()
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - started)
    return best


def step_ops(seed: int = 0) -> list[dict]:
    """The ops of one cpu-small training step: FLOPs, bytes moved once (float32), and the measured seconds of one call.

    Matmuls are timed as NumPy products of their shapes (forward; the two backward products of each have the same
    sizes transposed); attention as stage 06's fused op and as this stage's flash attention (forward, per call over
    all heads); the norm, SiLU and the AdamW update as the reference runs them."""
    from solutions import systems
    from solutions.attention import scaled_dot_product_attention
    from solutions.blocks import rms_norm, silu
    from solutions.optim import AdamW
    from solutions.tensor import Tensor

    rng = np.random.default_rng(seed)
    B, T, C, H = MODEL["batch"], MODEL["context"], MODEL["width"], MODEL["heads"]
    F, V, rows = 8 * math.ceil(C / 3), MODEL["vocab"], MODEL["batch"] * MODEL["context"]
    ops = []
    for name, (n, k, m) in {"q/k/v/output projection": (rows, C, C), "gate or up (swiglu)": (rows, C, F),
                            "down (swiglu)": (rows, F, C), "head (tied)": (rows, C, V)}.items():
        a, b = rng.standard_normal((n, k), dtype=np.float32), rng.standard_normal((k, m), dtype=np.float32)
        ops.append({"op": f"matmul {name} ({n}x{k})@({k}x{m})", "flops": 2 * n * k * m,
                    "intensity": systems.matmul_intensity(n, k, m), "seconds": best_seconds(lambda: a @ b)})
    Dh = C // H
    q, k, v = (Tensor(rng.standard_normal((B, H, T, Dh), dtype=np.float32)) for _ in range(3))
    flops = B * H * 4 * T * T * Dh
    ops.append({"op": f"attention, stage 06 (B={B}, H={H}, T=S={T}, Dh={Dh})", "flops": flops,
                "intensity": systems.attention_intensity(T, T, Dh),
                "seconds": best_seconds(lambda: scaled_dot_product_attention(q, k, v, causal=True))})
    ops.append({"op": "flash attention, tile 32", "flops": flops,
                "intensity": systems.attention_intensity(T, T, Dh, tiled=True),
                "seconds": best_seconds(lambda: systems.flash_attention(q, k, v, causal=True, tile=32))})
    x = Tensor(rng.standard_normal((B, T, C), dtype=np.float32))
    weight = Tensor(np.ones(C, dtype=np.float32))
    # rms_norm: x², a mean, a reciprocal square root per row, x · r · w: ~4 FLOPs an element; reads x, writes y and x̂
    ops.append({"op": "rms_norm (B, T, C)", "flops": 4 * x.size, "intensity": 4 / (4 * 3),
                "seconds": best_seconds(lambda: rms_norm(x, weight))})
    hidden = Tensor(rng.standard_normal((B, T, F), dtype=np.float32))
    # silu: tanh, then 0.5 + 0.5 t and x · s: ~5 FLOPs an element (tanh counted as one); reads x, writes out and σ
    ops.append({"op": "silu (B, T, F)", "flops": 5 * hidden.size, "intensity": 5 / (4 * 3),
                "seconds": best_seconds(lambda: silu(hidden))})
    parameters = [Tensor(rng.standard_normal(801_408, dtype=np.float32) * 0.02, requires_grad=True)]
    parameters[0].grad = rng.standard_normal(801_408, dtype=np.float32)
    optimizer = AdamW(parameters, lr=1e-3)
    # AdamW per weight: decay 2, m 3, v 4, sqrt 1, two scalings 2, eps 1, divide 1, update 1: ~15 FLOPs; reads p, g, m,
    # v and writes p, m, v: 7 arrays
    ops.append({"op": "AdamW update (801,408 weights)", "flops": 15 * 801_408, "intensity": 15 / (4 * 7),
                "seconds": best_seconds(optimizer.step)})
    for entry in ops:
        entry["achieved_gflops"] = entry["flops"] / entry["seconds"] / 1e9
    return ops


def measure(thread_count: int = 2, seed: int = 0) -> dict:
    from solutions import systems
    with threads(thread_count):
        rates = systems.measure_matmul(SIZES, seed=seed, repeats=10)
        bandwidth = systems.measure_bandwidth(256, seed=seed, repeats=5)
        ops = step_ops(seed)
    peak = max(rates)
    for entry in ops:
        entry["attainable_gflops"] = systems.roofline(entry["intensity"], peak, bandwidth)
    return {"threads": thread_count, "matmul_gflops": dict(zip(map(str, SIZES), rates)), "peak_gflops": peak,
            "bandwidth_gbs": bandwidth, "ridge": peak / bandwidth, "ops": ops}


def plot(result: dict, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from solutions import systems
    peak, bandwidth = result["peak_gflops"], result["bandwidth_gbs"]
    intensities = np.geomspace(0.05, 1000, 200)
    fig, axis = plt.subplots(figsize=(10, 4.5))
    axis.loglog(intensities, [systems.roofline(i, peak, bandwidth) for i in intensities], color="0.3")
    for entry, colour in zip(result["ops"], plt.cm.tab10.colors):
        axis.plot(entry["intensity"], entry["attainable_gflops"], "o", markerfacecolor="none", color=colour)
        axis.plot(entry["intensity"], entry["achieved_gflops"], "o", color=colour, label=entry["op"])
    axis.set_xlabel("arithmetic intensity (FLOPs per byte moved, float32)")
    axis.set_ylabel("GFLOP/s")
    axis.set_title(f"measured: matmul peak {peak:.0f} GFLOP/s, copy bandwidth {bandwidth:.1f} GB/s, "
                   f"{result['threads']} BLAS thread{'s' if result['threads'] > 1 else ''}; hollow = the roof, filled = achieved", fontsize=9)
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def table(result: dict) -> str:
    lines = ["matmul GFLOP/s by size: " + ", ".join(f"{n}: {rate:.1f}" for n, rate in result["matmul_gflops"].items()),
             f"peak {result['peak_gflops']:.1f} GFLOP/s, bandwidth {result['bandwidth_gbs']:.1f} GB/s, "
             f"ridge {result['ridge']:.1f} FLOP/byte", "",
             "| op | intensity (FLOP/byte) | roof (GFLOP/s) | achieved (GFLOP/s) |", "| --- | --- | --- | --- |"]
    lines += [f"| {e['op']} | {e['intensity']:.2f} | {e['attainable_gflops']:.1f} | {e['achieved_gflops']:.2f} |"
              for e in result["ops"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.roofline", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "12-roofline.png"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    result = measure(args.threads)
    print(table(result))
    print(f"wrote {plot(result, Path(args.out))}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
