"""python -m benchmarks [--quick] [--json PATH] [--threads 2] [--plots DIR]

The reference (solutions/) against PyTorch eager on the CPU, in one run, same threads, medians over repeats:

  train_small   training tokens/s at nanoGPT's CPU configuration (4 layers, 4 heads, width 128, context 64, batch 12)
  train_medium  the same at 6 layers, 6 heads, width 384, context 256, batch 16; also its share of the matmul peak
  kv_cache      decoding tokens/s for 256 new tokens, batch 1: with the key/value cache, recomputing, and PyTorch
                eager's own cached decoding (the same greedy tokens, checked)
  bpe           byte-level BPE training on 1 MB of Shakespeare for 2,000 merges, incremental against naive
  time_to_loss  wall time of the cpu-small run to validation loss 1.90 (full mode only)
  roofline      stage 12: the matmul peak, the copy bandwidth, a cpu-small step's ops (benchmarks/roofline.py)
  memory        stage 12: flash attention's peak at T = 4096 and checkpointing's, full mode only (benchmarks/memory.py)

Each training and decoding measurement runs in a fresh process (benchmarks/step.py, benchmarks/decode.py) so its
peak memory is its own and torch never shares a process with a NumPy timing. Ratios are of wall time; the table adds
the same ratio in CPU time, the steadier one on a shared machine when --threads is 1. TARGETS are issue 14's goals, printed
met or not met, never assertions. Torch is optional: without it the reference is timed alone and the run says how to
install it.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import TORCH_HINT, keep_freed_memory, threads, torch_available, torch_or_none

ROOT = Path(__file__).resolve().parent.parent
# Issue 14's goals: (result key, path inside it, at least / at most, value). Ratios are ours / torch's speed (> 1: the
# reference is faster); peak memory may not grow past what it was when the issue was opened.
TARGETS = {
    "train_small ratio vs torch": ("train_small", "ratio_vs_torch", ">=", 1.2),
    "train_small peak memory (MB)": ("train_small", "numpy_peak_rss_mb", "<=", 104),
    "train_medium ratio vs torch": ("train_medium", "ratio_vs_torch", ">=", 1.0),
    "train_medium share of the matmul peak": ("train_medium", "fraction_of_matmul_peak", ">=", 0.7),
    "train_medium peak memory (MB)": ("train_medium", "numpy_peak_rss_mb", "<=", 1492),
    "time_to_loss ratio vs torch": ("time_to_loss", "ratio_vs_torch", ">=", 1.2),
    "kv_cache speedup (cache / recompute)": ("kv_cache", "speedup", ">=", 10.0),
    "kv_cache ratio vs torch (cached)": ("kv_cache", "ratio_vs_torch", ">=", 1.2),
    "bpe speedup vs naive": ("bpe", "speedup_vs_naive", ">=", 20.0),
    "flash attention peak / stage 06 attention peak": ("memory", "flash_ratio", "<=", 0.1),
}


def _step(impl: str, size: str, thread_count: int, repeats: int) -> dict:
    done = subprocess.run([sys.executable, "-m", "benchmarks.step", "--impl", impl, "--size", size,
                           "--threads", str(thread_count), "--repeats", str(repeats)],
                          cwd=ROOT, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"benchmarks.step {impl} {size} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def train(size: str, thread_count: int, repeats: int) -> dict:
    ours = _step("numpy", size, thread_count, repeats)
    result = {"numpy_tokens_per_s": ours["tokens_per_s"], "numpy_step_ms": ours["step_ms"],
              "numpy_peak_rss_mb": ours["peak_rss_mb"], "parameters": ours["parameters"],
              "flops_per_token": ours["flops_per_token"], "numpy_tokens_per_cpu_s": ours["tokens_per_cpu_s"]}
    if not torch_available():
        return result | {"torch_tokens_per_s": None, "ratio_vs_torch": None, "note": TORCH_HINT}
    theirs = _step("torch", size, thread_count, repeats)
    return result | {"torch_tokens_per_s": theirs["tokens_per_s"], "torch_step_ms": theirs["step_ms"],
                     "torch_peak_rss_mb": theirs["peak_rss_mb"],
                     "ratio_vs_torch": ours["tokens_per_s"] / theirs["tokens_per_s"],
                     "ratio_vs_torch_cpu": ours["tokens_per_cpu_s"] / theirs["tokens_per_cpu_s"]}


def _decode(impl: str, thread_count: int, new_tokens: int, repeats: int) -> dict:
    done = subprocess.run([sys.executable, "-m", "benchmarks.decode", "--impl", impl, "--tokens", str(new_tokens),
                           "--threads", str(thread_count), "--repeats", str(repeats)],
                          cwd=ROOT, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"benchmarks.decode {impl} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def kv_cache(thread_count: int, new_tokens: int = 256, repeats: int = 3) -> dict:
    """Batch 1, one prompt token, `new_tokens` greedy tokens, median of `repeats` after a warm-up (benchmarks/decode.py);
    the model is cpu-small with a context long enough for every token, so both paths see the whole sequence
    (recomputing grows quadratically, the cache linearly). The torch peer decodes the same greedy tokens with its own
    cache: a run whose tokens differ from the reference's is an error, not a number."""
    from benchmarks.step import VOCAB
    ours = _decode("numpy", thread_count, new_tokens, repeats)
    result = {"new_tokens": new_tokens, "vocab": VOCAB, "cached_tokens_per_s": ours["cached_tokens_per_s"],
              "uncached_tokens_per_s": ours["uncached_tokens_per_s"],
              "speedup": ours["cached_tokens_per_s"] / ours["uncached_tokens_per_s"],
              "speedup_cpu": ours["cached_tokens_per_cpu_s"] / ours["uncached_tokens_per_cpu_s"],
              "identical_tokens": ours["identical_tokens"]}
    if not torch_available():
        return result | {"torch_cached_tokens_per_s": None, "ratio_vs_torch": None, "note": TORCH_HINT}
    theirs = _decode("torch", thread_count, new_tokens, repeats)
    if theirs["tokens"] != ours["tokens"]:
        first = next(i for i, (a, b) in enumerate(zip(ours["tokens"], theirs["tokens"])) if a != b)
        raise RuntimeError(f"kv_cache: PyTorch's greedy tokens differ from the reference's from position {first} on "
                           f"(ours {ours['tokens'][first:first + 5]}, torch's {theirs['tokens'][first:first + 5]})")
    return result | {"torch_cached_tokens_per_s": theirs["cached_tokens_per_s"], "torch_same_tokens": True,
                     "ratio_vs_torch": ours["cached_tokens_per_s"] / theirs["cached_tokens_per_s"],
                     "ratio_vs_torch_cpu": ours["cached_tokens_per_cpu_s"] / theirs["cached_tokens_per_cpu_s"]}


def bpe(megabytes: float, merges: int) -> dict:
    from solutions import bpe as tokenizer
    from solutions.train import load_shakespeare
    text = load_shakespeare()[: int(megabytes * 2**20)]
    timings, learned = {}, {}
    for name, trainer in (("incremental", tokenizer.train), ("naive", tokenizer.train_naive)):
        started = time.perf_counter()
        learned[name] = trainer(text, 256 + merges)
        timings[name] = time.perf_counter() - started
    return {"megabytes": megabytes, "merges": merges, "incremental_s": timings["incremental"],
            "naive_s": timings["naive"], "speedup_vs_naive": timings["naive"] / timings["incremental"],
            "same_merges": learned["incremental"] == learned["naive"]}


def time_to_loss(thread_count: int, target: float = 1.90) -> dict:
    """Wall time for the cpu-small run to reach validation loss `target`: the reference's own training command
    (its log has the elapsed time of every validation), then the same run in PyTorch (benchmarks/torch_train.py)."""
    import csv
    import shutil

    from solutions import train as training
    folder = ROOT / "benchmarks" / "results" / "time_to_loss"
    shutil.rmtree(folder, ignore_errors=True)
    config = training.PRESETS["cpu-small"]
    with threads(thread_count):
        training.train(config, folder / "numpy", verbose=False)
    with open(folder / "numpy" / "log.csv", newline="") as f:
        rows = [row for row in csv.DictReader(f) if row["val_loss"] not in ("", "None")]
    reached = next((row for row in rows if float(row["val_loss"]) <= target), None)
    result = {"target": target, "numpy_seconds": float(reached["elapsed"]) if reached else None,
              "numpy_step": int(reached["step"]) if reached else None, "numpy_final": float(rows[-1]["val_loss"])}
    torch = torch_or_none()
    if torch is None:
        return result | {"torch_seconds": None, "note": TORCH_HINT}
    from benchmarks.torch_train import train as torch_train
    with threads(thread_count):  # torch is imported now, so this pins it too
        theirs = torch_train(config, folder / "torch", torch, target)
    ratio = theirs["seconds"] / result["numpy_seconds"] if theirs["seconds"] and result["numpy_seconds"] else None
    return result | {"torch_seconds": theirs["seconds"], "torch_step": theirs["step"],
                     "torch_final": theirs["final_validation"], "ratio_vs_torch": ratio}


def _load() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (None where the system has none, as on Windows): numbers from a shared
    machine mean little without them."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def _lookup(results: dict, key: str, field: str):
    entry = results.get(key) or {}
    if key == "memory" and field == "flash_ratio" and "flash" in entry:
        return entry["flash"]["tiled"]["peak"] / entry["flash"]["untiled"]["peak"]
    return entry.get(field)


def targets(results: dict) -> dict:
    """{target name: {"value", "goal" (e.g. ">= 1.2"), "met" (True, False, or None when not measured)}}."""
    checked = {}
    for name, (key, field, way, goal) in TARGETS.items():
        value = _lookup(results, key, field)
        met = None if value is None else (value >= goal if way == ">=" else value <= goal)
        checked[name] = {"value": value, "goal": f"{way} {goal:g}", "met": met}
    return checked


def targets_table(checked: dict) -> str:
    rows = ["| target | measured | goal | |", "| --- | --- | --- | --- |"]
    for name, entry in checked.items():
        value = "n/a" if entry["value"] is None else f"{entry['value']:,.2f}"
        verdict = {True: "met", False: "NOT met", None: "not measured"}[entry["met"]]
        rows.append(f"| {name} | {value} | {entry['goal']} | {verdict} |")
    return "\n".join(rows)


def table(results: dict) -> str:
    def number(value, digits=1):
        return "n/a" if value is None else f"{value:,.{digits}f}"
    rows = ["| benchmark | reference (NumPy) | PyTorch eager | ratio | target |", "| --- | --- | --- | --- | --- |"]
    for key in ("train_small", "train_medium"):
        r = results.get(key)
        if r:
            goal = TARGETS[f"{key} ratio vs torch"][3]
            rows.append(f"| {key} tokens/s | {number(r['numpy_tokens_per_s'])} | {number(r.get('torch_tokens_per_s'))}"
                        f" | {number(r.get('ratio_vs_torch'), 2)} (CPU time: {number(r.get('ratio_vs_torch_cpu'), 2)})"
                        f" | >= {goal} |")
            rows.append(f"| {key} peak memory (MB) | {number(r['numpy_peak_rss_mb'])} | "
                        f"{number(r.get('torch_peak_rss_mb'))} | | <= {TARGETS[f'{key} peak memory (MB)'][3]} |")
            if r.get("fraction_of_matmul_peak") is not None:
                rows.append(f"| {key} GFLOP/s (share of the matmul peak) | {number(r['numpy_gflops'])} "
                            f"({number(100 * r['fraction_of_matmul_peak'], 0)}%; CPU time: "
                            f"{number(100 * r['fraction_of_matmul_peak_cpu'], 0)}%) | | | >= 70% |")
    r = results.get("kv_cache")
    if r:
        rows.append(f"| decoding tokens/s, cache / recompute | {number(r['cached_tokens_per_s'])} / "
                    f"{number(r['uncached_tokens_per_s'])} | | {number(r['speedup'], 1)}x (CPU time: "
                    f"{number(r.get('speedup_cpu'), 1)}x) | >= "
                    f"{TARGETS['kv_cache speedup (cache / recompute)'][3]:g}x |")
        rows.append(f"| decoding tokens/s with the cache, both sides | {number(r['cached_tokens_per_s'])} | "
                    f"{number(r.get('torch_cached_tokens_per_s'))} | {number(r.get('ratio_vs_torch'), 2)} (CPU time: "
                    f"{number(r.get('ratio_vs_torch_cpu'), 2)}) | >= "
                    f"{TARGETS['kv_cache ratio vs torch (cached)'][3]:g} |")
    r = results.get("bpe")
    if r:
        rows.append(f"| BPE {r['merges']} merges on {r['megabytes']:g} MB, incremental / naive (s) | "
                    f"{number(r['incremental_s'], 2)} / {number(r['naive_s'], 2)} | | "
                    f"{number(r['speedup_vs_naive'], 1)}x | >= {TARGETS['bpe speedup vs naive'][3]:g}x |")
    r = results.get("time_to_loss")
    if r and "skipped" not in r:
        rows.append(f"| seconds to validation loss {r['target']} (cpu-small) | {number(r['numpy_seconds'])} | "
                    f"{number(r.get('torch_seconds'))} | {number(r.get('ratio_vs_torch'), 2)} | >= "
                    f"{TARGETS['time_to_loss ratio vs torch'][3]:g} |")
    r = results.get("roofline")
    if r:
        rows.append(f"| matmul peak / copy bandwidth (stage 12) | {number(r['peak_gflops'])} GFLOP/s / "
                    f"{number(r['bandwidth_gbs'])} GB/s | | | |")
    r = results.get("memory")
    if r and "skipped" not in r:
        mib = 2**20
        flash, checkpointed = r["flash"], r["checkpoint"]
        rows.append(f"| attention peak at T={r['length']}, flash / stage 06 (MiB) | "
                    f"{number(flash['tiled']['peak'] / mib)} / {number(flash['untiled']['peak'] / mib)} | | "
                    f"{number(flash['tiled']['peak'] / flash['untiled']['peak'], 3)} | <= "
                    f"{TARGETS['flash attention peak / stage 06 attention peak'][3]:g} |")
        rows.append(f"| 12-layer step peak, checkpointed / plain (MiB) | "
                    f"{number(checkpointed['checkpointed']['peak'] / mib)} / "
                    f"{number(checkpointed['plain']['peak'] / mib)} | | | |")
    return "\n".join(rows)


def plot(results: dict, folder: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    sizes = [k for k in ("train_small", "train_medium") if results.get(k)]
    if sizes:
        figure, axis = plt.subplots(figsize=(6, 3.5))
        positions = np.arange(len(sizes))
        axis.bar(positions - 0.2, [results[k]["numpy_tokens_per_s"] for k in sizes], 0.4, label="NumPy reference")
        axis.bar(positions + 0.2, [results[k].get("torch_tokens_per_s") or 0 for k in sizes], 0.4,
                 label="PyTorch eager")
        axis.set_xticks(positions, sizes)
        axis.set_ylabel("training tokens / s")
        axis.legend()
        figure.tight_layout()
        written.append(folder / "training_throughput.png")
        figure.savefig(written[-1], dpi=120)
        plt.close(figure)
    if results.get("kv_cache"):
        r = results["kv_cache"]
        figure, axis = plt.subplots(figsize=(5, 3.5))
        names, rates = ["recompute", "key/value cache"], [r["uncached_tokens_per_s"], r["cached_tokens_per_s"]]
        if r.get("torch_cached_tokens_per_s"):
            names, rates = names + ["PyTorch eager, cache"], rates + [r["torch_cached_tokens_per_s"]]
        axis.bar(names, rates)
        axis.set_ylabel(f"decoding tokens / s ({r['new_tokens']} new)")
        figure.tight_layout()
        written.append(folder / "kv_cache.png")
        figure.savefig(written[-1], dpi=120)
        plt.close(figure)
    return written


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, a smaller BPE run, no time_to_loss")
    parser.add_argument("--json", metavar="PATH", help="write the results as one JSON object")
    parser.add_argument("--threads", type=int, default=2, help="BLAS threads for both sides (default 2)")
    parser.add_argument("--plots", metavar="DIR", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    keep_freed_memory()  # time_to_loss trains both sides in this process (common.keep_freed_memory)
    if not torch_available():
        print(TORCH_HINT, file=sys.stderr)
    results = {"threads": args.threads, "quick": args.quick, "numpy": np.__version__,
               "torch": importlib.metadata.version("torch") if torch_available() else None,
               "cpu_count": os.cpu_count(), "load_average_before": _load()}
    results["train_small"] = train("small", args.threads, repeats=5 if args.quick else 20)
    results["train_medium"] = train("medium", args.threads, repeats=2 if args.quick else 5)
    results["kv_cache"] = kv_cache(args.threads)
    results["bpe"] = bpe(0.1, 200) if args.quick else bpe(1.0, 2000)
    from benchmarks import memory, roofline
    results["roofline"] = roofline.measure(args.threads)  # before time_to_loss, which loads torch into this process
    medium = results["train_medium"]
    medium["numpy_gflops"] = medium["numpy_tokens_per_s"] * medium["flops_per_token"] / 1e9
    medium["fraction_of_matmul_peak"] = medium["numpy_gflops"] / results["roofline"]["peak_gflops"]
    # the peak is a best-of-repeats figure, which load barely touches; the step's CPU time is the like-for-like one
    medium["fraction_of_matmul_peak_cpu"] = (medium["numpy_tokens_per_cpu_s"] * medium["flops_per_token"] / 1e9
                                             / results["roofline"]["peak_gflops"])
    results["time_to_loss"] = {"skipped": "full mode only"} if args.quick else time_to_loss(args.threads)
    results["memory"] = {"skipped": "full mode only"} if args.quick else memory.measure()
    results["load_average_after"] = _load()
    results["targets"] = targets(results)
    print(table(results))
    print()
    print(targets_table(results["targets"]))
    for path in plot(results, Path(args.plots)):
        print(f"wrote {path}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
