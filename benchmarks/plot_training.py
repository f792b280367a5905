"""The loss curves of a training run (stage 10), from its log.csv, as a PNG.

    python -m benchmarks.plot_training runs/cpu-small/log.csv --out loss.png [--target 1.90] [--baseline OTHER.csv]

Plots the training loss of every step (faint), its running mean over `--smooth` steps, and the validation loss at
each validation step (dots), with the learning rate on a second axis; `--baseline` adds another run's validation
losses (dashed) for comparison. Tooling, not workbook code: it needs matplotlib,
which the learner's package never imports.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def read_log(path: str | Path) -> dict[str, np.ndarray]:
    """The columns of a log.csv written by train.RunLog, as float arrays (NaN where a cell is empty)."""
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    if not rows:
        raise SystemExit(f"{path}: no rows")
    return {column: np.array([float(row[column]) if row[column] != "" else np.nan for row in rows])
            for column in rows[0]}


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """The mean of the last `window` values at each position (fewer at the start)."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (sums[1:] - sums[np.arange(1, len(values) + 1) - counts]) / counts


def plot(log: dict[str, np.ndarray], out: str | Path, smooth: int = 50, target: float | None = None,
         title: str | None = None, baseline: dict[str, np.ndarray] | None = None,
         baseline_label: str = "baseline") -> None:
    import matplotlib
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    trained = ~np.isnan(log["loss"])
    validated = ~np.isnan(log["val_loss"])
    steps, loss = log["step"][trained], log["loss"][trained]
    figure, axis = plt.subplots(figsize=(8, 4.5), dpi=120)
    axis.plot(steps, loss, color="tab:blue", alpha=0.25, linewidth=0.8, label="training loss (per step)")
    axis.plot(steps, running_mean(loss, smooth), color="tab:blue", linewidth=1.6,
              label=f"training loss (mean of {smooth} steps)")
    axis.plot(log["step"][validated], log["val_loss"][validated], "o-", color="tab:orange", markersize=4,
              label="validation loss")
    if baseline is not None:
        seen = ~np.isnan(baseline["val_loss"])
        axis.plot(baseline["step"][seen], baseline["val_loss"][seen], "s--", color="tab:red", markersize=3,
                  linewidth=1, label=f"validation loss, {baseline_label}")
    if target is not None:
        axis.axhline(target, color="grey", linestyle="--", linewidth=0.8, label=f"target {target:g}")
    final = log["val_loss"][validated][-1] if validated.any() else None
    axis.set_xlabel("step")
    axis.set_ylabel("cross-entropy (nats per token)")
    axis.set_ylim(top=min(float(np.nanmax(loss)) + 0.1, 4.5))
    axis.grid(alpha=0.3)
    rate = axis.twinx()
    rate.plot(steps, log["lr"][trained], color="tab:green", linewidth=0.8, alpha=0.6, label="learning rate")
    rate.set_ylabel("learning rate", color="tab:green")
    handles = axis.get_legend_handles_labels()[0] + rate.get_legend_handles_labels()[0]
    axis.legend(handles=handles, loc="upper right", fontsize=8)
    heading = title or "training run"
    if final is not None:
        heading += f": final validation loss {final:.3f}"
    axis.set_title(heading)
    figure.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.plot_training", description=__doc__.split("\n")[0])
    parser.add_argument("log", help="a run's log.csv")
    parser.add_argument("--out", default="loss.png", help="the PNG to write (default loss.png)")
    parser.add_argument("--smooth", type=int, default=50, help="steps in the running mean (default 50)")
    parser.add_argument("--target", type=float, default=None, help="draw a horizontal line at this loss")
    parser.add_argument("--title", default=None)
    parser.add_argument("--baseline", default=None, help="another run's log.csv: its validation losses, dashed")
    parser.add_argument("--baseline-label", default="baseline")
    args = parser.parse_args(argv)
    baseline = read_log(args.baseline) if args.baseline else None
    plot(read_log(args.log), args.out, args.smooth, args.target, args.title, baseline, args.baseline_label)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
