"""python -m benchmarks [--quick] [--json PATH] [--threads 2] [--plots DIR]

The reference (solutions/) against PyTorch eager on the CPU, in one run, same threads, medians over repeats:

  train_small   training tokens/s at nanoGPT's CPU configuration (4 layers, 4 heads, width 128, context 64, batch 12)
  train_medium  the same at 6 layers, 6 heads, width 384, context 256, batch 16
  kv_cache      decoding tokens/s for 256 new tokens, batch 1, with and without the key/value cache
  bpe           byte-level BPE training on 1 MB of Shakespeare for 2,000 merges, incremental against naive
  time_to_loss  wall time of the cpu-small run to validation loss 1.90 (full mode only)
  roofline      stage 12: the matmul peak, the copy bandwidth, a cpu-small step's ops (benchmarks/roofline.py)
  memory        stage 12: flash attention's peak at T = 4096 and checkpointing's, full mode only (benchmarks/memory.py)

Each training measurement runs in a fresh process (benchmarks/step.py) so its peak memory is its own. Targets
(ratio_vs_torch >= 0.8, kv speedup >= 10, bpe speedup >= 20) are goals, never assertions. Torch is optional: without
it the reference is timed alone and the run says how to install it.
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

from benchmarks.common import TORCH_HINT, median_seconds, threads, torch_available, torch_or_none

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"train": 0.8, "kv_cache": 10.0, "bpe": 20.0, "flash_memory": 0.1}


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
              "numpy_peak_rss_mb": ours["peak_rss_mb"], "parameters": ours["parameters"]}
    if not torch_available():
        return result | {"torch_tokens_per_s": None, "ratio_vs_torch": None, "note": TORCH_HINT}
    theirs = _step("torch", size, thread_count, repeats)
    return result | {"torch_tokens_per_s": theirs["tokens_per_s"], "torch_step_ms": theirs["step_ms"],
                     "torch_peak_rss_mb": theirs["peak_rss_mb"],
                     "ratio_vs_torch": ours["tokens_per_s"] / theirs["tokens_per_s"]}


def kv_cache(thread_count: int, new_tokens: int = 256, repeats: int = 3) -> dict:
    """Batch 1, one prompt token, `new_tokens` greedy tokens, median of `repeats` after a warm-up; the model is
    cpu-small with a context long enough for every token, so both paths see the whole sequence (recomputing grows
    quadratically, the cache linearly)."""
    from benchmarks.step import VOCAB, model_config
    from solutions.generate import generate
    from solutions.gpt import GPT
    config = model_config("small")
    config.context = new_tokens + 1
    model = GPT(config, rng=np.random.default_rng(0))
    prompt = np.array([[1]])
    outputs, seconds = {}, {}
    with threads(thread_count):
        for use_cache in (True, False):
            def decode(use_cache=use_cache):
                outputs[use_cache] = generate(model, prompt, new_tokens, rng=np.random.default_rng(0),
                                              temperature=0.0, use_cache=use_cache)
            seconds[use_cache] = median_seconds(decode, repeats, warmup=1)
    return {"new_tokens": new_tokens, "vocab": VOCAB, "cached_tokens_per_s": new_tokens / seconds[True],
            "uncached_tokens_per_s": new_tokens / seconds[False], "speedup": seconds[False] / seconds[True],
            "identical_tokens": bool(np.array_equal(outputs[True], outputs[False]))}


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


def time_to_loss(target: float = 1.90) -> dict:
    """Wall time for the cpu-small run to reach validation loss `target`: the reference's own training command
    (its log has the elapsed time of every validation), then the same run in PyTorch (benchmarks/torch_train.py)."""
    import csv
    import shutil

    from solutions import train as training
    folder = ROOT / "benchmarks" / "results" / "time_to_loss"
    shutil.rmtree(folder, ignore_errors=True)
    config = training.PRESETS["cpu-small"]
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
    theirs = torch_train(config, folder / "torch", torch, target)
    return result | {"torch_seconds": theirs["seconds"], "torch_step": theirs["step"],
                     "torch_final": theirs["final_validation"]}


def table(results: dict) -> str:
    def number(value, digits=1):
        return "n/a" if value is None else f"{value:,.{digits}f}"
    rows = ["| benchmark | reference (NumPy) | PyTorch eager | ratio | target |", "| --- | --- | --- | --- | --- |"]
    for key in ("train_small", "train_medium"):
        r = results.get(key)
        if r:
            rows.append(f"| {key} tokens/s | {number(r['numpy_tokens_per_s'])} | {number(r.get('torch_tokens_per_s'))}"
                        f" | {number(r.get('ratio_vs_torch'), 2)} | >= {TARGETS['train']} |")
            rows.append(f"| {key} peak memory (MB) | {number(r['numpy_peak_rss_mb'])} | "
                        f"{number(r.get('torch_peak_rss_mb'))} | | |")
    r = results.get("kv_cache")
    if r:
        rows.append(f"| decoding tokens/s, cache / recompute | {number(r['cached_tokens_per_s'])} / "
                    f"{number(r['uncached_tokens_per_s'])} | | {number(r['speedup'], 1)}x | >= {TARGETS['kv_cache']}x |")
    r = results.get("bpe")
    if r:
        rows.append(f"| BPE {r['merges']} merges on {r['megabytes']:g} MB, incremental / naive (s) | "
                    f"{number(r['incremental_s'], 2)} / {number(r['naive_s'], 2)} | | "
                    f"{number(r['speedup_vs_naive'], 1)}x | >= {TARGETS['bpe']}x |")
    r = results.get("time_to_loss")
    if r and "skipped" not in r:
        ratio = (r["torch_seconds"] / r["numpy_seconds"]) if r.get("torch_seconds") and r["numpy_seconds"] else None
        rows.append(f"| seconds to validation loss {r['target']} (cpu-small) | {number(r['numpy_seconds'])} | "
                    f"{number(r.get('torch_seconds'))} | {number(ratio, 2)} | |")
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
                    f"{number(flash['tiled']['peak'] / flash['untiled']['peak'], 3)} | < {TARGETS['flash_memory']} |")
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
        axis.bar(["recompute", "key/value cache"], [r["uncached_tokens_per_s"], r["cached_tokens_per_s"]])
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
    if not torch_available():
        print(TORCH_HINT, file=sys.stderr)
    results = {"threads": args.threads, "quick": args.quick, "numpy": np.__version__,
               "torch": importlib.metadata.version("torch") if torch_available() else None,
               "cpu_count": os.cpu_count()}
    results["train_small"] = train("small", args.threads, repeats=5 if args.quick else 20)
    results["train_medium"] = train("medium", args.threads, repeats=2 if args.quick else 5)
    results["kv_cache"] = kv_cache(args.threads)
    results["bpe"] = bpe(0.1, 200) if args.quick else bpe(1.0, 2000)
    results["time_to_loss"] = {"skipped": "full mode only"} if args.quick else time_to_loss()
    from benchmarks import memory, roofline
    results["roofline"] = roofline.measure(args.threads)
    results["memory"] = {"skipped": "full mode only"} if args.quick else memory.measure()
    print(table(results))
    for path in plot(results, Path(args.plots)):
        print(f"wrote {path}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
