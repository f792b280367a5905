"""Stage 10: training (your turn: replace every NotImplementedError).

The GPT of stage 09 learns Shakespeare: the plain "NAME:\\nverse" text of corpus.py (given) is cut into a training
part and a validation part, tokenized, and written as memory-mapped integer files. The loop draws seeded batches,
accumulates gradients over micro-batches, clips them, follows a warmup-then-cosine learning rate, validates now and
then, logs every step and writes checkpoints that let a stopped run continue bit for bit. docs/10-train.md derives
each piece.

Conventions (the tests rely on them):
  - Step s (0-indexed) is the s-th optimizer update; it uses lr = learning_rate(config, s). "At step s" means after
    s updates: validation runs at s = 0, eval_every, 2 * eval_every, ... and at s = steps (the final model).
  - A checkpoint written at step s holds everything the loop needs to run step s next; resuming from it gives the
    same losses, bit for bit, as a run that never stopped.
  - The files of a run (out_dir): train.bin and val.bin (uint16 token streams), tokenizer.json, checkpoint.npz
    (resume), model.npz (GPT.save; stage 11 samples from it with the tokenizer.json beside it), log.csv, log.jsonl.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import threads
from .corpus import load_shakespeare, load_tokenizer, save_tokenizer
from .gpt import GPT, OPTIONS, GPTConfig
from .ngram import CharTokenizer
from .nn import estimate_loss, get_batch
from .optim import AdamW, clip_grad_norm, cosine_schedule
from .runlog import RunLog, progress_line

# ---------------------------------------------------------------------- token streams

TOKENIZERS = ("chars", "bpe")  # stage 01's characters or stage 08's byte-level BPE


def split_text(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """(train, val) = (text[:n], text[n:]) with n = int(len(text) * (1 - val_fraction)): the first 90% trains, the
    last 10% validates. Two contiguous pieces, not a shuffle: neighbouring lines are near-copies of each other, and
    a shuffled split would put the same passage on both sides. ValueError unless 0 < val_fraction < 1."""
    raise NotImplementedError("stage 10 (training): split_text")


def write_tokens(path: str | os.PathLike, ids) -> np.memmap:
    """Write the token ids to `path` as a raw uint16 file (no header) through np.memmap, and return it opened read-only
    (read_tokens). ValueError naming the id when an id is < 0 or > 65535 (uint16 would wrap it silently); ValueError
    for an empty stream (a memmap cannot be empty)."""
    raise NotImplementedError("stage 10 (training): write_tokens")


def read_tokens(path: str | os.PathLike) -> np.memmap:
    """The uint16 token stream at `path` as a read-only np.memmap (N,): nothing is read until it is indexed, so a
    corpus larger than memory trains as well as a small one. FileNotFoundError naming the path when it is missing."""
    raise NotImplementedError("stage 10 (training): read_tokens")


def prepare_tokens(text: str, out_dir: str | os.PathLike, *, tokenizer: str = "chars", bpe_vocab_size: int = 512,
                   val_fraction: float = 0.1) -> dict:
    """Tokenize `text` into out_dir/train.bin and out_dir/val.bin (write_tokens); save the tokenizer with
    corpus.save_tokenizer(tokenizer, out_dir) (out_dir/tokenizer.json, which stage 11 reads).

    The text is split first (split_text), then each part is encoded, so the validation tokens come from the last
    characters only. tokenizer == "chars": stage 01's CharTokenizer of the WHOLE text (its vocabulary is
    sorted(set(text)): a character seen only in validation still needs an id). tokenizer == "bpe": stage 08's
    byte-level BPE, trained on the training part only with `bpe_vocab_size` ids. Anything else: ValueError.

    Returns {"vocab_size": V, "train_tokens": len(train.bin), "val_tokens": len(val.bin)}.
    """
    raise NotImplementedError("stage 10 (training): prepare_tokens")


# ---------------------------------------------------------------------- configuration


@dataclass
class TrainConfig:
    """A whole run: data, model, optimisation, bookkeeping. A checkpoint stores it; resuming needs the same one."""

    # data
    tokenizer: str = "chars"  # one of TOKENIZERS
    bpe_vocab_size: int = 512
    text_chars: int | None = None  # train on the first N characters of the corpus only (None: all of it)
    val_fraction: float = 0.1
    # model (GPTConfig's fields; vocab_size comes from the tokenizer)
    context: int = 64
    layers: int = 4
    heads: int = 4
    width: int = 128
    norm: str = "rms"
    feed_forward: str = "swiglu"
    position: str = "rotary"
    dropout: float = 0.0
    # optimisation
    steps: int = 2000
    batch_size: int = 12
    accumulation: int = 1  # micro-batches per step: a step sees batch_size * accumulation sequences
    max_lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.1
    clip: float = 1.0
    # bookkeeping
    eval_every: int = 250
    eval_batches: int = 50
    checkpoint_every: int = 500
    log_every: int = 50
    seed: int = 1337

    def to_dict(self) -> dict:
        """The fields as JSON-ready values (betas as a list)."""
        fields = dataclasses.asdict(self)
        fields["betas"] = list(self.betas)
        return fields

    def gpt_config(self, vocab_size: int) -> GPTConfig:
        """The model this run trains (tied embeddings)."""
        return GPTConfig(vocab_size=vocab_size, context=self.context, layers=self.layers, heads=self.heads,
                         width=self.width, norm=self.norm, feed_forward=self.feed_forward, position=self.position,
                         dropout=self.dropout)

    def validate(self) -> TrainConfig:
        """Check the config before any work is done; return self. ValueError whose message names the field for:
        tokenizer not in TOKENIZERS; norm, feed_forward, position not in gpt.OPTIONS (GPTConfig's choices); any of
        steps, batch_size, accumulation, context, layers, heads, width, eval_every, eval_batches, checkpoint_every,
        log_every below 1; width not divisible by heads; warmup_steps < 0 or > steps; max_lr <= 0 or min_lr < 0 or
        min_lr > max_lr; a beta outside [0, 1); weight_decay < 0; clip <= 0; dropout outside [0, 1);
        val_fraction outside (0, 1); text_chars not None and < 1.
        """
        raise NotImplementedError("stage 10 (training): TrainConfig.validate")


PRESETS = {
    # nanoGPT's CPU configuration on character-level Shakespeare (its baseline reaches a validation loss of 1.88)
    "cpu-small": TrainConfig(),
    # seconds, not minutes: for tests and for trying the loop
    "tiny": TrainConfig(text_chars=300_000, context=32, layers=2, heads=2, width=32, steps=30, batch_size=8,
                        warmup_steps=5, max_lr=3e-3, min_lr=3e-4, eval_every=10, eval_batches=4,
                        checkpoint_every=10, log_every=5),
}


# ---------------------------------------------------------------------- one step


def learning_rate(config: TrainConfig, step: int) -> float:
    """The learning rate of step `step` (0-indexed): optim.cosine_schedule(step, max_lr=config.max_lr,
    min_lr=config.min_lr, warmup_steps=config.warmup_steps, total_steps=config.steps)."""
    raise NotImplementedError("stage 10 (training): learning_rate")


def train_step(model: GPT, optimizer: AdamW, batches: list[tuple[np.ndarray, np.ndarray]], *, lr: float,
               clip: float) -> dict:
    """One optimizer update from k = len(batches) micro-batches (x, y), each (B, T):

        optimizer.lr = lr; optimizer.zero_grad()
        for each (x, y): loss = model.loss(x, y); (loss / k).backward()      # grads add up to the mean's gradient
        grad_norm = optim.clip_grad_norm(model.parameters(), clip)
        optimizer.step()

    Dividing each micro-batch's loss by k makes the summed gradient that of the mean loss over all k * B sequences:
    the same as one batch k times larger, with the memory of one micro-batch (one graph at a time). FloatingPointError
    (before stepping: the parameters stay as they were) when the gradient norm is not finite.

    Returns {"loss": mean of the k micro-batch losses (a float), "grad_norm": the norm before clipping, "lr": lr}.
    """
    raise NotImplementedError("stage 10 (training): train_step")


def evaluate(model: GPT, tokens: np.ndarray, config: TrainConfig) -> float:
    """The model's mean loss on `tokens` (the validation stream): nn.estimate_loss(model, tokens, config.batch_size,
    config.context, batches=config.eval_batches, seed=config.seed). The same batches every time, so two evaluations
    differ only because the model did."""
    raise NotImplementedError("stage 10 (training): evaluate")


# ---------------------------------------------------------------------- checkpoints


def save_checkpoint(path: str | os.PathLike, model: GPT, optimizer: AdamW, step: int,
                    rngs: dict[str, np.random.Generator], config: TrainConfig) -> None:
    """Write everything a resumed run needs to one .npz, atomically. Its entries (all arrays, no pickle):

        "model.<name>"      every model.state_dict() entry        "optimizer.<key>"  every optimizer.state_dict() entry
        "step"              int64: the step to run next           "rng.<name>"       json.dumps(rng.bit_generator.state)
        "train_config"      json.dumps(config.to_dict())          "model_config"     json.dumps(model.config.to_dict())

    (strings as 0-d str arrays, np.array(json.dumps(...))). Written to path + ".tmp" and then os.replace'd onto path,
    so a crash never leaves half a checkpoint; if writing or renaming fails, the .tmp is removed and the error raised.
    """
    raise NotImplementedError("stage 10 (training): save_checkpoint")


def load_checkpoint(path: str | os.PathLike, model: GPT, optimizer: AdamW, rngs: dict[str, np.random.Generator],
                    config: TrainConfig) -> int:
    """Restore what save_checkpoint wrote into the existing model, optimizer and generators; return the step.

    Opened with np.load(path, allow_pickle=False). ValueError naming the fields that differ when the file's
    train_config is not `config` (exact resume needs the same run). Then model.load_state_dict,
    optimizer.load_state_dict and rng.bit_generator.state = json.loads(...) for every generator in `rngs` (in place:
    anything holding the generator, a Dropout say, draws on from the restored state). FileNotFoundError naming the
    path when it is missing.
    """
    raise NotImplementedError("stage 10 (training): load_checkpoint")


# ---------------------------------------------------------------------- the loop


def train(config: TrainConfig, out_dir: str | os.PathLike, resume: bool = False, *, text: str | None = None,
          stop_after: int | None = None, verbose: bool = True) -> dict:
    """Train a GPT as `config` says, in out_dir (created if needed); return a summary of this call.

    1. config.validate(). Fresh run: FileExistsError if out_dir/checkpoint.npz exists (never overwrite a run). Resume:
       FileNotFoundError if it does not.
    2. Data: unless out_dir/train.bin exists already (a resume), text (default: load_shakespeare()), cut to its first
       config.text_chars characters, goes through prepare_tokens; then read_tokens for both streams, and the
       vocabulary size is corpus.load_tokenizer(out_dir).vocab_size.
    3. Generators rngs = {"model": default_rng([seed, 0]), "batches": default_rng([seed, 1])}: the model is built with
       rngs["model"] (its Dropout keeps drawing from it), batches come from rngs["batches"].
       optimizer = AdamW(model.parameters(), lr=max_lr, betas=..., weight_decay=...). Resume: load_checkpoint.
    4. For step = start .. steps:
         validation when step % eval_every == 0 or step == steps: val_loss = evaluate(model, val, config)
         checkpoint when step > start and (step % checkpoint_every == 0 or step == steps or step == stop_after):
             save_checkpoint(out_dir/checkpoint.npz, ...) and model.save(out_dir/model.npz)
         stop when step == steps or step == stop_after (a final RunLog row holds the last val_loss)
         batches = [get_batch(train, batch_size, context, rngs["batches"]) for each of the accumulation micro-batches]
         result = train_step(model, optimizer, batches, lr=learning_rate(config, step), clip=config.clip)
         one RunLog row: step, loss, val_loss (None unless validated at this step), lr, grad_norm, tokens/s, elapsed
    Progress lines (progress_line) every log_every steps and at each validation, when verbose.

    Returns {"start_step", "step" (the step it stopped at), "losses" (the train loss of every step this call ran),
    "lrs" (their learning rates), "val_losses" ([[step, val_loss], ...]), "final_val_loss", "tokens_per_second"
    (averaged over this call's steps), "elapsed" (seconds), "parameters" (model.num_parameters())}.
    """
    raise NotImplementedError("stage 10 (training): train")


# ---------------------------------------------------------------------- given: the command


def main(argv: list[str] | None = None) -> dict:
    """python -m solutions.train --preset cpu-small [--out DIR] [--resume] [--steps N] [--stop-after N]
    [--data-parallel [--zero]] [--threads N] (or exercises.train: the same command runs your own code).

    --threads N is read by the package before NumPy loads (threads.py); here it is only accepted and checked."""
    parser = argparse.ArgumentParser(prog=f"python -m {__package__}.train", description="Train the GPT on Shakespeare.")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu-small")
    parser.add_argument("--out", default=None, help="the run's directory (default runs/<preset>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.add_argument("--steps", type=int, default=None, help="total steps (the schedule's length)")
    parser.add_argument("--stop-after", type=int, default=None, help="stop (with a checkpoint) at this step")
    parser.add_argument("--data-parallel", action="store_true", help="stage 13: under mpiexec -n N, N processes share "
                        "each batch")
    parser.add_argument("--zero", action="store_true", help="stage 13: data-parallel with ZeRO-1 (AdamW's state split)")
    threads.add_argument(parser)
    args = parser.parse_args(argv)
    note = threads.too_late(args.threads)
    if note:
        print(note, file=sys.stderr)
    config = PRESETS[args.preset]
    if args.steps is not None:
        config = dataclasses.replace(config, steps=args.steps, warmup_steps=min(config.warmup_steps, args.steps))
    run, options = train, {}
    if args.data_parallel or args.zero:  # stage 13's loop, imported only here: it needs mpi4py
        from . import parallel_train
        run, options = parallel_train.train_data_parallel, {"zero": args.zero}
    try:
        summary = run(config, args.out or f"runs/{args.preset}", args.resume, stop_after=args.stop_after, **options)
    except (OSError, ValueError, ImportError) as error:
        parser.error(str(error))
    if summary.get("rank", 0) == 0:  # one line per run, not per process
        print(f"stopped at step {summary['step']}: last validation loss {summary['final_val_loss']:.4f}, "
              f"{summary['tokens_per_second']:,.0f} tokens/s, {summary['elapsed']:.0f} s")
    return summary


if __name__ == "__main__":
    main()
