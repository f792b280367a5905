"""The cpu-small training run in PyTorch, step for step the reference's (solutions/train.py): the same tokens, the
same initial weights (copied from the reference's model), the same batches (the same seeded generator and get_batch),
the same schedule, AdamW, clipping and validation batches. Used by `python -m benchmarks` for time_to_loss.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def train(config, out_dir: Path, torch, target: float) -> dict:
    """Train until the validation loss reaches `target` or config.steps; return the wall time to get there."""
    from benchmarks.torch_gpt import build
    from solutions import train as reference
    from solutions.gpt import GPT
    from solutions.nn import get_batch

    out_dir.mkdir(parents=True, exist_ok=True)
    if not (out_dir / "train.bin").exists():
        reference.prepare_tokens(reference.load_shakespeare(), out_dir, val_fraction=config.val_fraction)
    train_tokens = reference.read_tokens(out_dir / "train.bin")
    val_tokens = reference.read_tokens(out_dir / "val.bin")
    vocab_size = int(max(train_tokens.max(), val_tokens.max())) + 1
    rngs = {"model": np.random.default_rng([config.seed, 0]), "batches": np.random.default_rng([config.seed, 1])}
    twin, params = build(GPT(config.gpt_config(vocab_size), rng=rngs["model"]), torch)
    optimizer = torch.optim.AdamW(params, lr=config.max_lr, betas=config.betas, weight_decay=config.weight_decay)

    def validation() -> float:
        rng = np.random.default_rng(config.seed)  # the reference's evaluate(): the same batches every time
        with torch.no_grad():
            losses = [twin(*map(torch.tensor, get_batch(val_tokens, config.batch_size, config.context, rng)))[1].item()
                      for _ in range(config.eval_batches)]
        return float(np.mean(losses))

    started, history = time.perf_counter(), []
    for step in range(config.steps + 1):
        if step % config.eval_every == 0 or step == config.steps:
            loss = validation()
            history.append({"step": step, "val_loss": loss, "elapsed": time.perf_counter() - started})
            if loss <= target:
                break
        if step == config.steps:
            break
        for group in optimizer.param_groups:
            group["lr"] = reference.learning_rate(config, step)
        for _ in range(config.accumulation):
            x, y = get_batch(train_tokens, config.batch_size, config.context, rngs["batches"])
            (twin(torch.tensor(x), torch.tensor(y))[1] / config.accumulation).backward()
        torch.nn.utils.clip_grad_norm_(params, config.clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    reached = history[-1]["val_loss"] <= target
    return {"seconds": history[-1]["elapsed"] if reached else None, "step": history[-1]["step"] if reached else None,
            "final_validation": history[-1]["val_loss"], "history": history}
