"""Instruction tuning (stage 14) in one figure: the figure and numbers of docs/14-finetune.md, section 5.

    python -m benchmarks.finetune [--log runs/sft/log.json]

Reads the log that `python -m solutions.finetune sft` wrote and draws docs/figures/14-sft.png: the masked training loss
(each step and a 25-step mean), the held-out exact-match accuracy per task kind during training, and before and
after fine-tuning.
Also measures what packing saves on the same training chats: the fraction of positions that are real tokens when
the chats are packed into rows of 64 against one chat per row padded to the longest. Writes every number the page
quotes to docs/figures/14-sft.json. Tooling, not workbook code: it needs matplotlib.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "docs" / "figures"
WINDOW = 25


def packing_fill(config: dict, chats: int = 32, steps: int = 50) -> dict:
    """Real positions / all positions, packed (rows of context 64) and one chat per row, over `steps` batches."""
    from solutions import corpus, finetune, tasks
    chat = finetune.ChatTokenizer(corpus.load_tokenizer(ROOT / "docs" / "figures" / "model"))
    train = tasks.make_instructions(chats * steps, seed=config["seed"], kinds=tuple(config["mix"]), split="train",
                                    distinct=False)
    pairs = [chat.encode_chat(example.prompt, example.answer) for example in train]
    packed = padded = real = 0
    for start in range(0, len(pairs), chats):
        batch = pairs[start:start + chats]
        inputs, _, _, segments = finetune.pack(batch, 64)
        packed += inputs.size
        padded += finetune.sft_batch(batch, 64)[0].size
        real += int((segments > 0).sum())
    return {"packed": real / packed, "one_per_row": real / padded}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.finetune", description=__doc__.split("\n")[0])
    parser.add_argument("--log", default="runs/sft/log.json", help="the log of python -m solutions.finetune sft")
    args = parser.parse_args()
    log = json.loads(Path(args.log).read_text(encoding="utf-8"))
    numbers = {key: log[key] for key in ("accuracy_before", "accuracy_after", "trainable_parameters",
                                         "total_parameters", "train_seconds", "config", "examples")}
    numbers["final_loss_mean"] = float(np.mean(log["loss"][-WINDOW:]))
    numbers["fill"] = packing_fill(log["config"])
    numbers["made_by"] = f"python -m benchmarks.finetune --log {args.log}"
    (FIGURES / "14-sft.json").write_text(json.dumps(numbers, indent=1) + "\n", encoding="utf-8")
    plot(log)
    print(json.dumps({key: numbers[key] for key in ("accuracy_before", "accuracy_after", "fill",
                                                    "final_loss_mean")}, indent=1))


def plot(log: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "svg.hashsalt": "numpy-gpt"})
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(12, 3.4), gridspec_kw={"width_ratios": [3, 3, 2]})
    loss = np.array(log["loss"])
    left.plot(log["step"], loss, color="0.75", linewidth=0.6, label="each step")
    mean = np.convolve(loss, np.ones(WINDOW) / WINDOW, mode="valid")
    left.plot(np.array(log["step"][WINDOW - 1:]), mean, color="C0", label=f"mean of {WINDOW} steps")
    left.set_yscale("log")
    left.set_xlabel("step")
    left.set_ylabel("cross-entropy on response tokens (nats)")
    left.set_title("SFT with LoRA: the masked loss")
    left.legend(frameon=False)
    kinds = [kind for kind in log["accuracy_before"] if kind != "all"] + ["all"]
    during = [{"step": 0, **log["accuracy_before"]}, *log.get("accuracy_during", []),
              {"step": len(log["step"]), **log["accuracy_after"]}]
    for i, kind in enumerate(kinds):
        middle.plot([point["step"] for point in during], [point[kind] for point in during], marker="o", markersize=3,
                    color="k" if kind == "all" else f"C{i}", linestyle="--" if kind == "all" else "-", label=kind)
    middle.set_xlabel("step")
    middle.set_ylabel("held-out exact match")
    middle.set_ylim(-0.02, 1.05)
    middle.set_title("accuracy during training (greedy, cached)")
    middle.legend(frameon=False)
    x = np.arange(len(kinds))
    before = [log["accuracy_before"][kind] for kind in kinds]
    after = [log["accuracy_after"][kind] for kind in kinds]
    right.bar(x - 0.2, before, 0.4, label="before (pretrained)", color="0.6")
    right.bar(x + 0.2, after, 0.4, label="after SFT", color="C1")
    for i, value in enumerate(after):
        right.text(x[i] + 0.2, value + 0.02, f"{value:.2f}", ha="center", fontsize=8)
        right.text(x[i] - 0.2, before[i] + 0.02, f"{before[i]:.2f}", ha="center", fontsize=8, color="0.4")
    right.set_xticks(x, kinds)
    right.set_ylim(0, 1.3)
    right.set_ylabel("held-out exact match")
    right.set_title("greedy answers to held-out prompts")
    right.legend(frameon=False, loc="upper left", ncol=2, fontsize=8)
    figure.tight_layout()
    figure.savefig(FIGURES / "14-sft.png", dpi=110)


if __name__ == "__main__":
    main()
