"""Mixture of experts (stage 17) against its dense twin at equal active parameters: the figure and numbers of
docs/17-moe.md.

    python -m benchmarks.moe [--steps 600]

Trains two tiny character models on Shakespeare with the same seed, batches and AdamW settings: stage 09's GPT
(SwiGLU feed-forward) and stage 17's MoEGPT whose feed-forward is 4 such SwiGLU experts with top-1 routing (so a token
uses the dense model's parameters plus a 32 x 4 router per layer). Writes docs/figures/17-moe-vs-dense.png (the
training cross-entropy of both, mean of 25 steps, and the MoE's balance loss and dropped fraction) and
docs/figures/17-moe-vs-dense.json (every number the page quotes). Tooling, not workbook code: it needs matplotlib.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "docs" / "figures"
FIELDS = {"context": 32, "layers": 2, "heads": 4, "width": 32}
MOE = {"experts": 4, "top_k": 1, "capacity_factor": 1.25, "aux_loss_weight": 0.01}
BATCH, LR, SEED, WINDOW = 16, 3e-3, 1700, 25


def train(model, tokens: np.ndarray, validation: np.ndarray, steps: int, moe_weight: float | None) -> dict:
    """AdamW on seeded batches; the cross-entropy of every step (the returned loss minus the weighted aux loss for
    the MoE), its aux loss and dropped fraction, and the validation loss at the end."""
    from solutions import nn, optim
    from solutions.tensor import no_grad
    optimizer = optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    rng = np.random.default_rng(SEED)
    record = {"cross_entropy": [], "aux": [], "dropped": []}
    start = time.perf_counter()
    for _ in range(steps):
        x, y = nn.get_batch(tokens, BATCH, FIELDS["context"], rng)
        optimizer.zero_grad()
        _, loss = model(x, y)
        loss.backward()
        optimizer.step()
        aux = float(model.aux_loss.item()) if moe_weight is not None else 0.0
        record["cross_entropy"].append(float(loss.item()) - (moe_weight or 0.0) * aux)
        if moe_weight is not None:
            record["aux"].append(aux / FIELDS["layers"])  # per layer: 1 is balanced
            record["dropped"].append(float(np.mean([1.0 - block.feed_forward.kept.mean() for block in model.blocks])))
    record["seconds_per_step"] = (time.perf_counter() - start) / steps
    model.eval()
    with no_grad():
        batches = np.random.default_rng(SEED + 1)
        losses = []
        for _ in range(20):
            x, y = nn.get_batch(validation, BATCH, FIELDS["context"], batches)
            logits, _ = model(x)
            losses.append(float(nn.cross_entropy(logits, y).item()))
    record["validation"] = float(np.mean(losses))
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=600)
    steps = parser.parse_args().steps
    from solutions import gpt, moe
    from solutions.corpus import load_shakespeare
    from solutions.ngram import CharTokenizer, train_val_split
    text = load_shakespeare()
    tokenizer = CharTokenizer(text)
    tokens, validation = train_val_split(tokenizer.encode(text), 0.1)
    fields = dict(FIELDS, vocab_size=tokenizer.vocab_size)
    dense = gpt.GPT(gpt.GPTConfig(**fields), rng=np.random.default_rng(SEED))
    mixture = moe.MoEGPT(moe.MoEConfig(**fields, **MOE), rng=np.random.default_rng(SEED))
    router = FIELDS["layers"] * FIELDS["width"] * MOE["experts"]
    expert = 3 * FIELDS["width"] * moe.expert_hidden(mixture.config)
    results = {"inputs": {"fields": fields, "moe": MOE, "batch": BATCH, "lr": LR, "seed": SEED, "steps": steps},
               "parameters": {"dense": dense.num_parameters(), "moe_total": mixture.num_parameters(),
                              "moe_active": mixture.num_parameters() - FIELDS["layers"] * (MOE["experts"] - 1) * expert,
                              "router": router},
               "dense": train(dense, tokens, validation, steps, None),
               "moe": train(mixture, tokens, validation, steps, MOE["aux_loss_weight"])}
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / "17-moe-vs-dense.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    plot(results)
    for name in ("dense", "moe"):
        run = results[name]
        print(f"{name}: first {np.mean(run['cross_entropy'][:WINDOW]):.4f}, last {WINDOW} "
              f"{np.mean(run['cross_entropy'][-WINDOW:]):.4f}, validation {run['validation']:.4f}, "
              f"{run['seconds_per_step'] * 1e3:.1f} ms/step")
    print(results["parameters"])


def plot(results: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    smooth = np.ones(WINDOW) / WINDOW
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    p = results["parameters"]
    for name, label, colour in (("dense", f"dense SwiGLU ({p['dense']:,} parameters)", "tab:blue"),
                                ("moe", f"MoE, 4 experts, top-1 ({p['moe_total']:,} total, {p['moe_active']:,} "
                                        f"active)", "tab:orange")):
        curve = np.convolve(results[name]["cross_entropy"], smooth, mode="valid")
        left.plot(np.arange(WINDOW - 1, WINDOW - 1 + curve.size), curve, color=colour, label=label)
        left.axhline(results[name]["validation"], color=colour, linestyle=":", linewidth=0.9)
    left.set_xlabel("step")
    left.set_ylabel(f"training cross-entropy (mean of {WINDOW} steps)")
    left.set_title("equal active parameters; dotted: validation loss at the end", fontsize=9)
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    right.plot(np.convolve(results["moe"]["aux"], smooth, mode="valid"), color="tab:green",
               label="balance loss per layer (1 = balanced)")
    right.plot(np.convolve(results["moe"]["dropped"], smooth, mode="valid"), color="tab:red",
               label="fraction of tokens dropped (capacity 1.25)")
    right.set_xlabel("step")
    right.set_title("the MoE's router", fontsize=9)
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(FIGURES / "17-moe-vs-dense.png", dpi=120)


if __name__ == "__main__":
    main()
