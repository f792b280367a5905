"""Data-parallel training (stage 13), measured and projected: the figures and numbers of docs/13-parallel.md.

    python -m benchmarks.scaling run [--steps 2000]      one process, then mpiexec -n 2 --data-parallel, same config
    python -m benchmarks.scaling allreduce               times the ring all-reduce on 2 ranks, fits alpha and beta
    python -m benchmarks.scaling plot                    the figures from what the two commands above left

`run` trains the cpu-small preset twice at the same global batch (12 x 64 tokens), one BLAS thread per process so
that one process uses one core and two processes two: runs/scaling/one and runs/scaling/two (logs, and the commands'
output beside them). `allreduce` starts `mpiexec -n 2` on itself and times solutions.parallel.ring_allreduce and
MPI's Allreduce from 1 KB to 16 MB (the median of repeated calls), then fits the alpha-beta model to the ring's times.
`plot` writes docs/figures/13-validation-curves.png (the two runs' validation losses), 13-scaling-projection.png
(scaling efficiency of the cpu-small step from 1 to 64 nodes at stated bandwidths, with the 2-process point measured
here) and 13-scaling.json (every number the page quotes). Tooling, not workbook code: it needs matplotlib.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs" / "scaling"
FIGURES = ROOT / "docs" / "figures"
TIMINGS = RUNS / "allreduce.json"
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
# Networks for the projection: (label, latency in s per message, bandwidth in bytes/s per link)
NETWORKS = [("1 Gb/s Ethernet (α = 50 µs)", 50e-6, 1e9 / 8), ("10 Gb/s Ethernet (α = 20 µs)", 20e-6, 10e9 / 8),
            ("100 Gb/s InfiniBand (α = 2 µs)", 2e-6, 100e9 / 8)]
NODES = [1, 2, 4, 8, 16, 32, 64]
QUIET_STEP = 0.051  # seconds: a cpu-small step on an idle two-core machine (docs/10-train.md, section 9)
SIZES = [2**k for k in range(10, 25, 2)]  # 1 KB .. 16 MB


def mpiexec() -> str:
    return str(Path(sys.executable).parent / "mpiexec")


def read_log(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    return {key: np.array([float(row[key]) if row[key] != "" else np.nan for row in rows]) for key in rows[0]}


# ---------------------------------------------------------------- run: the two trainings


def run(steps: int) -> None:
    RUNS.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **ONE_THREAD}
    common = ["-m", "solutions.train", "--preset", "cpu-small", "--steps", str(steps)]
    for name, command in (("one", [sys.executable, *common, "--out", str(RUNS / "one")]),
                          ("two", [mpiexec(), "-n", "2", sys.executable, *common, "--out", str(RUNS / "two"),
                                   "--data-parallel"])):
        if (RUNS / name).exists():
            raise SystemExit(f"{RUNS / name} exists: remove it to run again")
        began = time.perf_counter()
        with open(RUNS / f"{name}.txt", "w") as output:
            subprocess.run(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, check=True)
        print(f"{name}: {time.perf_counter() - began:.0f} s")


# ---------------------------------------------------------------- allreduce: the ring timed on 2 ranks


def _time_allreduce() -> None:
    """Rank side (under mpiexec): median seconds of ring_allreduce and of MPI's Allreduce per size."""
    from mpi4py import MPI

    sys.path.insert(0, str(ROOT))
    from solutions.parallel import ring_allreduce

    comm = MPI.COMM_WORLD
    results = []
    for size in SIZES:
        array = np.random.default_rng(comm.Get_rank()).normal(size=size // 4).astype(np.float32)  # `size` bytes
        out = np.empty_like(array)
        repeats = max(5, min(200, 2**24 // size))
        ring, mpi = [], []
        for _ in range(repeats):
            comm.Barrier()
            tick = time.perf_counter()
            ring_allreduce(comm, array)
            ring.append(time.perf_counter() - tick)
            comm.Barrier()
            tick = time.perf_counter()
            comm.Allreduce(array, out)
            mpi.append(time.perf_counter() - tick)
        results.append({"bytes": size, "ring": float(np.median(ring)), "mpi": float(np.median(mpi))})
    if comm.Get_rank() == 0:
        ranks = comm.Get_size()
        # least squares on relative errors (each row divided by its time): the 16 MB point would otherwise decide
        # alone, and its noise would push the latency below zero
        times = np.array([r["ring"] for r in results])
        x = np.array([[2 * (ranks - 1), 2 * (ranks - 1) / ranks * r["bytes"]] for r in results])  # (sizes, 2)
        latency, per_byte = np.linalg.lstsq(x / times[:, None], np.ones_like(times), rcond=None)[0]
        latency = max(float(latency), 0.0)
        TIMINGS.parent.mkdir(parents=True, exist_ok=True)
        TIMINGS.write_text(json.dumps({"ranks": ranks, "sizes": results, "latency": float(latency),
                                       "bandwidth": float(1 / per_byte)}, indent=1))
        for r in results:
            print(f"{r['bytes']:>9,} bytes: ring {r['ring'] * 1e6:9.1f} µs, MPI Allreduce {r['mpi'] * 1e6:9.1f} µs")
        print(f"alpha-beta fit of the ring: latency {latency * 1e6:.1f} µs, bandwidth {1 / per_byte / 1e9:.2f} GB/s")


def allreduce() -> None:
    subprocess.run([mpiexec(), "-n", "2", sys.executable, "-m", "benchmarks.scaling", "_time"], cwd=ROOT,
                   env={**os.environ, **ONE_THREAD}, check=True)


# ---------------------------------------------------------------- plot: the figures and the numbers


def _speedup_line(path: Path) -> dict:
    """The 2-process command's last report: tokens/s, one process on the same batch, speed-up, efficiency."""
    text = path.read_text() if path.is_file() else ""
    found = re.search(r"(\d+) ranks: ([\d,]+) tokens/s \(median step ([\d.]+) ms\); one process on the same batch: "
                      r"([\d,]+) tokens/s; speed-up ([\d.]+), scaling efficiency (\d+)%", text)
    if not found:
        return {}
    return {"ranks": int(found[1]), "tokens_per_second": float(found[2].replace(",", "")),
            "median_step_ms": float(found[3]), "one_process_tokens_per_second": float(found[4].replace(",", "")),
            "speedup": float(found[5]), "efficiency": int(found[6]) / 100}


def _summary(log: dict, tokens_per_step: int) -> dict:
    validated = ~np.isnan(log["val_loss"])
    trained = ~np.isnan(log["loss"])
    return {"steps": int(log["step"][-1]), "final_val_loss": float(log["val_loss"][validated][-1]),
            "val_losses": [[int(s), float(v)] for s, v in zip(log["step"][validated], log["val_loss"][validated])],
            "median_tokens_per_second": float(np.median(log["tokens_per_second"][trained])),
            "median_step_seconds": float(tokens_per_step / np.median(log["tokens_per_second"][trained])),
            "wall_seconds": float(log["elapsed"][-1])}


def plot() -> None:
    import matplotlib
    matplotlib.use("Agg")  # files only
    import matplotlib.pyplot as plt

    sys.path.insert(0, str(ROOT))
    from solutions.parallel import scaling_efficiency
    from solutions.train import PRESETS

    config = PRESETS["cpu-small"]
    tokens_per_step = config.batch_size * config.context * config.accumulation
    one, two = read_log(RUNS / "one" / "log.csv"), read_log(RUNS / "two" / "log.csv")
    numbers = {"one_process": _summary(one, tokens_per_step), "two_processes": _summary(two, tokens_per_step),
               "two_process_report": _speedup_line(RUNS / "two.txt"), "parameters": 801_408}
    numbers["gradient_bytes"] = numbers["parameters"] * 4  # float32 gradients
    measured = json.loads(TIMINGS.read_text()) if TIMINGS.is_file() else None
    numbers["allreduce"] = measured
    FIGURES.mkdir(parents=True, exist_ok=True)

    # the validation curves, one process and two, same global batch
    figure, axis = plt.subplots(figsize=(8, 4.5), dpi=120)
    for log, label, style in ((one, "1 process", "o-"), (two, "2 processes (DDP), same global batch", "s--")):
        seen = ~np.isnan(log["val_loss"])
        axis.plot(log["step"][seen], log["val_loss"][seen], style, markersize=4, label=label)
    axis.set_xlabel("step")
    axis.set_ylabel("validation loss (nats per character)")
    steps = numbers["one_process"]["steps"]
    axis.set_title(f"cpu-small, {steps} steps: final {numbers['one_process']['final_val_loss']:.4f} (1 process), "
                   f"{numbers['two_processes']['final_val_loss']:.4f} (2)")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(FIGURES / "13-validation-curves.png")
    plt.close(figure)

    # the projection: weak scaling, each node computes one cpu-small step, then the all-reduce of its gradients.
    # Two step times: one process on one core measured here at the end of the 2-process run (the same moment as the
    # 2-process steps), and the 51 ms step of an idle machine (docs/10-train.md): the faster the node, the more the
    # network matters.
    report = numbers["two_process_report"]
    measured_step = tokens_per_step / report["one_process_tokens_per_second"] if report else \
        numbers["one_process"]["median_step_seconds"]
    computes = [("measured here", measured_step), ("an idle machine's step", QUIET_STEP)]
    networks = list(NETWORKS)
    if measured:
        networks.append((f"shared memory here (fit: α = {measured['latency'] * 1e6:.0f} µs, "
                         f"{measured['bandwidth'] / 1e9:.1f} GB/s)", measured["latency"], measured["bandwidth"]))
    projection = {}
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5), dpi=120, sharey=True)
    for axis, (what, compute) in zip(axes, computes):
        projection[what] = {"compute_seconds": compute}
        for label, latency, bandwidth in networks:
            efficiency = [scaling_efficiency(compute, numbers["gradient_bytes"], n, latency=latency,
                                             bandwidth=bandwidth) for n in NODES]
            projection[what][label] = efficiency
            axis.plot(NODES, efficiency, "o-", markersize=4, label=label)
        if report and what == "measured here":
            axis.plot([2], [report["efficiency"]], "k*", markersize=12, label="measured: 2 processes, same global "
                                                                              "batch (strong scaling)")
        axis.set_xscale("log", base=2)
        axis.set_xticks(NODES, [str(n) for n in NODES])
        axis.set_ylim(0, 1.05)
        axis.set_xlabel("nodes (ranks)")
        axis.set_title(f"compute {compute * 1e3:.0f} ms per step ({what})", fontsize=10)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("scaling efficiency")
    axes[0].legend(fontsize=7, loc="lower left")
    figure.suptitle(f"cpu-small DDP: {numbers['gradient_bytes'] / 1e6:.1f} MB of float32 gradients all-reduced per "
                    f"step, no overlap", fontsize=11)
    numbers["projection"] = {"nodes": NODES, **projection}
    figure.tight_layout()
    figure.savefig(FIGURES / "13-scaling-projection.png")
    plt.close(figure)
    (FIGURES / "13-scaling.json").write_text(json.dumps(numbers, indent=1))
    print(json.dumps({k: v for k, v in numbers.items() if k not in ("projection",)}, indent=1)[:3000])
    for what, lines in projection.items():
        for label, efficiency in lines.items():
            if label != "compute_seconds":
                print(f"{what}, {label}: " + ", ".join(f"{n}: {e:.0%}" for n, e in zip(NODES, efficiency)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("run", "allreduce", "plot", "_time"))
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args(argv)
    {"run": lambda: run(args.steps), "allreduce": allreduce, "plot": plot, "_time": _time_allreduce}[args.command]()


if __name__ == "__main__":
    main()
