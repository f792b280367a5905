"""Stage 16's claims, measured on the committed cpu-small model (docs/figures/model/).

    python -m benchmarks.serving [--batches 50] [--tokens 200] [--k 4] [--json PATH] [--plot PATH]

  quantization  validation loss of the float32 model, int8 (per output channel) and int4 (groups of 32) on the
                Shakespeare validation split (the last 10% of the text, as solutions/train.py splits it), on the same
                `batches` batches of 12 x 64 tokens (nn.estimate_loss, seed 1337: the training run's evaluation);
                and the weights' bytes. Goals: int8 within 1% relative; bytes of the Linear weights / 4 and / ~7.
  speculative   the target is the model; the draft is its first block (or first two) alone: early exit, the same
                embeddings, final norm and head, a quarter (a half) of the blocks. `tokens` new tokens after
                "ROMEO:" (capped by the context of 64), greedy and at temperature 0.8, k drafts per round: acceptance
                rate (accepted / drafted), tokens per target forward, and the wall-time speed-up over stage 11's
                generate with the cache (best of 3). Goals are never asserted.
  batched       8 prompts of different lengths decoded together against one at a time (greedy), tokens equal and
                the wall-time ratio.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "docs" / "figures" / "model"


def load():
    from solutions.corpus import load_shakespeare, load_tokenizer
    from solutions.gpt import GPT
    from solutions.train import split_text
    model, tokenizer = GPT.load(MODEL / "model.npz"), load_tokenizer(MODEL)
    config = json.loads((MODEL / "log.json").read_text())["train_config"]
    val = np.array(tokenizer.encode(split_text(load_shakespeare(), config["val_fraction"])[1]), dtype=np.int64)
    return model, tokenizer, val, config


def best_seconds(run, repeats: int = 3) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return min(times), result


def quantization(model, val, config, batches: int) -> dict:
    from solutions.nn import Linear, estimate_loss
    from solutions.finetune import child_modules
    from solutions.serving import quantize_model, weight_bytes

    def linear_bytes(m) -> int:  # only the weights quantization touches
        total, pending = 0, [m]
        while pending:
            for _, _, child in child_modules(pending.pop()):
                if isinstance(child, Linear):
                    total += child.weight.data.nbytes
                elif hasattr(child, "q"):
                    total += child.q.nbytes + child.scale.nbytes
                else:
                    pending.append(child)
        return total

    rows = {}
    for name, bits in (("float32", None), ("int8", 8), ("int4 (group 32)", 4)):
        m = copy.deepcopy(model) if bits is None else quantize_model(copy.deepcopy(model), bits, 32)
        loss = estimate_loss(m, val, config["batch_size"], config["context"], batches=batches, seed=config["seed"])
        rows[name] = {"val_loss": loss, "model_bytes": weight_bytes(m), "linear_bytes": linear_bytes(m)}
    base = rows["float32"]
    for row in rows.values():
        row["relative_loss"] = row["val_loss"] / base["val_loss"] - 1
        row["linear_shrink"] = base["linear_bytes"] / row["linear_bytes"]
        row["model_shrink"] = base["model_bytes"] / row["model_bytes"]
    return rows


def early_exit_draft(model, layers: int = 1):
    draft = copy.deepcopy(model)
    draft.blocks = draft.blocks[:layers]
    draft.config = dataclasses.replace(draft.config, layers=layers)
    return draft


def speculative(model, tokenizer, tokens: int, k: int) -> dict:
    from solutions.generate import generate
    from solutions.serving import speculative_generate
    prompt = np.array(tokenizer.encode("ROMEO:"), dtype=np.int64)
    tokens = min(tokens, model.config.context - prompt.size + 1)
    rows = {}
    for layers, temperature in ((1, 0.0), (1, 0.8), (2, 0.0), (2, 0.8)):
        draft = early_exit_draft(model, layers)
        plain_seconds, plain = best_seconds(lambda: generate(model, prompt, tokens, rng=np.random.default_rng(0),
                                                             temperature=temperature))
        spec_seconds, (ids, stats) = best_seconds(lambda: speculative_generate(
            model, draft, prompt, tokens, rng=np.random.default_rng(0), k=k, temperature=temperature))
        rows[f"draft {layers} block(s), temperature {temperature}"] = {
            "tokens": tokens, "k": k, **stats, "acceptance": stats["accepted"] / max(stats["drafted"], 1),
            "tokens_per_target_forward": tokens / stats["target_forwards"],
            "same_as_target": bool(np.array_equal(ids, plain)) if temperature == 0 else None,
            "generate_seconds": plain_seconds, "speculative_seconds": spec_seconds,
            "speedup": plain_seconds / spec_seconds}
    return rows


def batched(model, tokenizer, tokens: int) -> dict:
    from solutions.generate import generate
    from solutions.serving import batched_generate
    texts = ["ROMEO:", "JULIET:\nO", "First Citizen:\nWe are", "KING", "HAMLET:\nTo be, or", "A", "Enter", "LEAR:"]
    prompts = [np.array(tokenizer.encode(t), dtype=np.int64) for t in texts]
    tokens = min(tokens, model.config.context - max(p.size for p in prompts) + 1)
    alone_seconds, alone = best_seconds(lambda: [generate(model, p, tokens, rng=np.random.default_rng(0),
                                                          temperature=0) for p in prompts])
    batch_seconds, together = best_seconds(lambda: batched_generate(model, prompts, tokens))
    return {"prompts": len(prompts), "tokens": tokens,
            "equal": all(np.array_equal(a, b) for a, b in zip(alone, together)),
            "one_at_a_time_seconds": alone_seconds, "batched_seconds": batch_seconds,
            "speedup": alone_seconds / batch_seconds}


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = results["quantization"]
    names = list(rows)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    left.bar(names, [rows[n]["linear_bytes"] / 1e6 for n in names], color=["#555", "#3a7", "#37a"])
    left.set_ylabel("Linear weights (MB)")
    left.set_title("bytes")
    right.bar(names, [rows[n]["val_loss"] for n in names], color=["#555", "#3a7", "#37a"])
    low = min(rows[n]["val_loss"] for n in names)
    right.set_ylim(low - 0.05, max(rows[n]["val_loss"] for n in names) + 0.03)
    right.set_ylabel("validation loss (nats)")
    right.set_title("cost")
    for axis in (left, right):
        axis.tick_params(axis="x", labelsize=8)
    fig.suptitle("cpu-small model: weight quantization (python -m benchmarks.serving)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=50, help="validation batches (default 50, as in training)")
    parser.add_argument("--tokens", type=int, default=200, help="new tokens (capped by the context)")
    parser.add_argument("--k", type=int, default=4, help="draft tokens per round")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None, help="e.g. docs/figures/16-quantization.png")
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1):  # decoding is latency-bound: one thread, less noise on a shared machine
        model, tokenizer, val, config = load()
        results = {"quantization": quantization(model, val, config, args.batches),
                   "speculative": speculative(model, tokenizer, args.tokens, args.k),
                   "batched": batched(model, tokenizer, args.tokens)}
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.plot:
        plot(results, args.plot)
    return results


if __name__ == "__main__":
    main()
