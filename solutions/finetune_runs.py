"""The runs of stage 14 (given whole: nothing to implement here): presets, the training loops and the command behind
`python -m solutions.finetune`.

    python -m solutions.finetune sft [--init docs/figures/model] [--out runs/sft] [--seed 0] [--preset default]

Supervised fine-tuning of a pretrained GPT on the generated instructions of tasks.py: the vocabulary grown by the
three chat specials, LoRA adapters on the block matrices (and the token embedding trained, since its three new rows
start random), the loss masked to the response tokens, several chats packed per row, AdamW with a cosine schedule.
It writes to --out: model.npz (GPT.save of the model with LoRA merged), tokenizer.json (the BASE tokenizer;
ChatTokenizer(base) rebuilds the template) and log.json (the loss curve, and held-out exact-match accuracy per task
kind before and after, by greedy decoding with the key/value cache until <|end|>).
`load_chat_model(folder)` reads such a folder back as (GPT, ChatTokenizer); stage 15 starts from it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import tasks, threads
from .corpus import load_tokenizer, save_tokenizer
from .finetune import (ChatTokenizer, apply_lora, extend_vocabulary, merge_lora, pack, sft_loss, total_parameters,
                       trainable_parameters)
from .generate import KVCache, forward_cached
from .gpt import GPT
from .optim import AdamW, clip_grad_norm, cosine_schedule

MODEL_FILE = "model.npz"
LOG_FILE = "log.json"


# ---------------------------------------------------------------------- loading and decoding


def load_chat_model(folder: str | Path, *, seed: int = 0) -> tuple[GPT, ChatTokenizer]:
    """The GPT in folder/model.npz and ChatTokenizer(the tokenizer in folder/tokenizer.json).

    A model whose vocabulary is still the base one (a pretrained checkpoint, before any fine-tuning) is grown by the
    three specials with extend_vocabulary(..., rng=default_rng(seed)); a fine-tuned one already has them."""
    folder = Path(folder)
    model = GPT.load(folder / MODEL_FILE)
    chat = ChatTokenizer(load_tokenizer(folder))
    if model.config.vocab_size == chat.base.vocab_size:
        extend_vocabulary(model, chat.vocab_size, rng=np.random.default_rng(seed))
    elif model.config.vocab_size != chat.vocab_size:
        raise ValueError(f"{folder}: the model has {model.config.vocab_size} token ids, the tokenizer "
                         f"{chat.base.vocab_size} (+ 3 specials)")
    return model, chat


def respond(model: GPT, chat: ChatTokenizer, prompt: str, max_new_tokens: int = 24) -> str:
    """The model's greedy answer to one prompt: stage 11's cached decoding from encode_prompt(prompt), one argmax
    token at a time, stopping after <|end|> (included in the text) or after max_new_tokens."""
    ids = chat.encode_prompt(prompt)[None, :]  # (1, P)
    max_new_tokens = min(max_new_tokens, model.config.context - ids.shape[1] + 1)
    was_training = model.training
    model.eval()
    try:
        cache = KVCache.for_model(model, 1)
        new: list[int] = []
        fed = ids
        for _ in range(max_new_tokens):
            token = int(np.argmax(forward_cached(model, fed, cache)[0, -1]))
            new.append(token)
            if token == chat.end:
                break
            fed = np.array([[token]], dtype=np.int64)
    finally:
        model.train(was_training)
    return chat.decode(new)


def accuracy(model: GPT, chat: ChatTokenizer, examples: list[tasks.Example]) -> dict[str, float]:
    """Held-out exact-match accuracy per task kind (tasks.reward of the greedy answer), and "all"."""
    scores: dict[str, list[float]] = {}
    for example in examples:
        scores.setdefault(example.kind, []).append(tasks.reward(example, respond(model, chat, example.prompt)))
    result = {kind: float(np.mean(values)) for kind, values in scores.items()}
    result["all"] = float(np.mean([value for values in scores.values() for value in values]))
    return result


# ---------------------------------------------------------------------- supervised fine-tuning


@dataclass
class SFTConfig:
    """One SFT run. `default` finishes in a few minutes on 2 cores from the stage-10 checkpoint."""

    steps: int = 400
    chats_per_step: int = 32  # packed into rows of `context` tokens (about 3 rows of 64 for these tasks)
    max_lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 20
    weight_decay: float = 0.0  # the adapters start at zero: decaying them pulls towards the base, which is the point
    clip: float = 1.0
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = ("query", "key", "value", "output", "down")  # see the note in the docs on gate, up
    lora: bool = True  # False: full fine-tuning of every weight
    train_embedding: bool = True  # the three new rows start random: the embedding must learn them
    train_chats: int = 20_000  # distinct training prompts, cycled through
    held_out: int = 60  # held-out prompts per task kind for the accuracy
    seed: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PRESETS = {
    "default": SFTConfig(),
    "tiny": SFTConfig(steps=3, chats_per_step=6, train_chats=60, held_out=2, rank=2),  # a smoke test, seconds
}


def sft(config: SFTConfig, init: str | Path, out: str | Path, *, log_every: int = 25) -> dict:
    """Fine-tune the model in `init` on the instructions, write out/model.npz, tokenizer.json, log.json; return the
    log."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, chat = load_chat_model(init, seed=config.seed)
    held_out = tasks.make_instructions(config.held_out * len(tasks.KINDS), seed=config.seed + 1, split="held_out")
    train = tasks.make_instructions(config.train_chats, seed=config.seed, split="train", distinct=False)
    log: dict = {"config": config.to_dict(), "init": str(init), "accuracy_before": accuracy(model, chat, held_out)}
    print(f"held-out accuracy before: {log['accuracy_before']}", flush=True)

    rng = np.random.default_rng(config.seed + 2)
    if config.lora:
        apply_lora(model, config.rank, config.alpha, rng=rng, targets=config.targets)
        if config.train_embedding:
            model.token_embedding.weight.requires_grad = True
    log["trainable_parameters"] = trainable_parameters(model)
    log["total_parameters"] = total_parameters(model)
    print(f"training {log['trainable_parameters']:,} of {log['total_parameters']:,} parameters", flush=True)
    optimizer = AdamW(model.parameters(), lr=config.max_lr, betas=(0.9, 0.99), weight_decay=config.weight_decay)
    chats = [chat.encode_chat(example.prompt, example.answer) for example in train]
    order = rng.permutation(len(chats))
    log.update(step=[], loss=[], lr=[], rows=[])
    model.train()
    start = time.perf_counter()
    for step in range(config.steps):
        # each step takes the next chats_per_step chats of a fixed shuffled order and packs them into rows
        picked = [chats[order[(step * config.chats_per_step + i) % len(chats)]] for i in range(config.chats_per_step)]
        inputs, targets, positions, segments = pack(picked, model.config.context)
        lr = cosine_schedule(step, max_lr=config.max_lr, min_lr=config.min_lr,
                             warmup_steps=min(config.warmup_steps, config.steps), total_steps=config.steps)
        optimizer.lr = lr
        optimizer.zero_grad()
        loss = sft_loss(model, inputs, targets, positions, segments)  # the response tokens only
        loss.backward()
        clip_grad_norm(optimizer.params, config.clip)  # one bad batch cannot throw the adapters far
        optimizer.step()
        log["step"].append(step)
        log["loss"].append(float(loss.item()))
        log["lr"].append(lr)
        log["rows"].append(int(inputs.shape[0]))
        if step % log_every == 0 or step == config.steps - 1:
            print(f"step {step:4d}  loss {loss.item():.4f}  lr {lr:.2e}  rows {inputs.shape[0]}  "
                  f"{time.perf_counter() - start:.0f}s", flush=True)
    log["train_seconds"] = time.perf_counter() - start

    merge_lora(model)  # a plain GPT again: the adapters folded into the weights
    model.eval()
    log["accuracy_after"] = accuracy(model, chat, held_out)
    print(f"held-out accuracy after: {log['accuracy_after']}", flush=True)
    log["examples"] = [{"prompt": e.prompt, "answer": e.answer, "reply": respond(model, chat, e.prompt)}
                       for e in held_out[:9]]
    model.save(out / MODEL_FILE)
    save_tokenizer(chat.base, out)
    (out / LOG_FILE).write_text(json.dumps(log, indent=1), encoding="utf-8")
    return log


# ---------------------------------------------------------------------- the command


def main(argv: list[str] | None = None) -> dict:
    """python -m solutions.finetune {sft} [options] [--threads N]: run one of stage 14's fine-tunings."""
    parser = argparse.ArgumentParser(prog=f"python -m {__package__}.finetune", description=main.__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("sft", help="instruction tuning with LoRA, masked loss and packing")
    run.add_argument("--init", default="docs/figures/model", help="a folder with model.npz and tokenizer.json")
    run.add_argument("--out", default="runs/sft", help="where model.npz, tokenizer.json and log.json go")
    run.add_argument("--preset", choices=sorted(PRESETS), default="default")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--steps", type=int, default=None, help="override the preset's number of steps")
    run.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    threads.add_argument(run)

    # the classify run (stage 14, part 2) adds its subcommand here

    args = parser.parse_args(argv)
    note = threads.too_late(args.threads)
    if note:
        print(note, file=sys.stderr)
    if args.command == "sft":
        config = dataclasses.replace(PRESETS[args.preset], seed=args.seed)
        if args.steps is not None:
            config = dataclasses.replace(config, steps=args.steps)
        if args.full:
            config = dataclasses.replace(config, lora=False)
        return sft(config, args.init, args.out)
    parser.error(f"unknown command {args.command!r}")
    return {}


if __name__ == "__main__":
    main()
