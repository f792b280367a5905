"""The figure of docs/15-align.md, drawn from the logs of stage 15's runs (tooling, not workbook code: it needs
matplotlib).

    python -m solutions.finetune sft && python -m solutions.align dpo && python -m solutions.align grpo
    python -m benchmarks.align [--dpo runs/dpo] [--grpo runs/grpo]

Writes docs/figures/15-align-curves.png: on the left GRPO's reward, the mean over each step's sampled groups (a
moving mean of 5 steps) and the held-out mean reward (sampled and greedy) every eval_every steps, from the SFT model at
step 0; on the right DPO's implicit-reward margin and reward accuracy on the training batches, with the held-out
figures before and after.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIGURE = ROOT / "docs" / "figures" / "15-align-curves.png"
WINDOW = 5


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.align", description=__doc__.split("\n")[0])
    parser.add_argument("--dpo", type=Path, default=ROOT / "runs" / "dpo")
    parser.add_argument("--grpo", type=Path, default=ROOT / "runs" / "grpo")
    parser.add_argument("--out", type=Path, default=FIGURE)
    args = parser.parse_args(argv)
    grpo = json.loads((args.grpo / "log.json").read_text(encoding="utf-8"))
    dpo = json.loads((args.dpo / "log.json").read_text(encoding="utf-8"))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    smooth = np.ones(WINDOW) / WINDOW
    reward = np.convolve(grpo["reward"], smooth, mode="valid")
    left.plot(np.arange(WINDOW - 1, WINDOW - 1 + reward.size), reward, color="tab:gray",
              label=f"training groups (mean of {WINDOW} steps)")
    left.plot(grpo["eval_step"], grpo["eval_sampled"], "o-", color="tab:blue",
              label=f"held-out, sampled (T = {grpo['config']['temperature']:g})")
    left.plot(grpo["eval_step"], grpo["eval_greedy"], "s-", color="tab:orange", label="held-out, greedy")
    left.axhline(grpo["eval_sampled"][0], color="tab:blue", linestyle=":", linewidth=0.9)
    left.axhline(grpo["eval_greedy"][0], color="tab:orange", linestyle=":", linewidth=0.9)
    kinds = ", ".join(grpo["config"]["kinds"])
    left.set_title(f"GRPO on '{kinds}': mean reward (dotted: the SFT model)", fontsize=9)
    left.set_xlabel("step")
    left.set_ylabel("mean reward (exact match)")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)

    steps = np.arange(len(dpo["margin"]))
    margin = np.convolve(dpo["margin"], smooth, mode="valid")
    right.plot(steps[WINDOW - 1:], margin, color="tab:green", label="margin β(Δ), training batches")
    right.set_xlabel("step")
    right.set_ylabel("implicit-reward margin")
    twin = right.twinx()
    accuracy = np.convolve(dpo["accuracy"], smooth, mode="valid")
    twin.plot(steps[WINDOW - 1:], accuracy, color="tab:red", label="reward accuracy, training batches")
    twin.set_ylabel("fraction of pairs")
    twin.set_ylim(0, 1.05)
    before, after = dpo["before"], dpo["after"]
    right.set_title(f"DPO (β = {dpo['config']['beta']:g}), held-out pairs: the policy ranks right "
                    f"{before['accuracy']:.2f} -> {after['accuracy']:.2f},\nreward accuracy "
                    f"{before['reward_accuracy']:.2f} -> {after['reward_accuracy']:.2f}, margin {before['margin']:.2f} "
                    f"-> {after['margin']:.2f}", fontsize=9)
    lines = right.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    right.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="lower right")
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
