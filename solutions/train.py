"""Stage 10: training.

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
    ### BEGIN SOLUTION
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n = int(len(text) * (1.0 - val_fraction))
    return text[:n], text[n:]
    ### END SOLUTION


def write_tokens(path: str | os.PathLike, ids) -> np.memmap:
    """Write the token ids to `path` as a raw uint16 file (no header) through np.memmap, and return it opened read-only
    (read_tokens). ValueError naming the id when an id is < 0 or > 65535 (uint16 would wrap it silently); ValueError
    for an empty stream (a memmap cannot be empty)."""
    ### BEGIN SOLUTION
    ids = np.asarray(ids)
    if ids.size == 0:
        raise ValueError(f"write_tokens: no tokens to write to {os.fspath(path)!r}")
    if ids.min() < 0 or ids.max() > np.iinfo(np.uint16).max:
        bad = ids.min() if ids.min() < 0 else ids.max()
        raise ValueError(f"write_tokens: id {int(bad)} does not fit uint16 (0 .. 65535)")
    stream = np.memmap(path, dtype=np.uint16, mode="w+", shape=(ids.size,))  # (N,) on disk
    stream[:] = ids.reshape(-1)
    stream.flush()
    del stream  # close the writable map before reopening read-only
    return read_tokens(path)
    ### END SOLUTION


def read_tokens(path: str | os.PathLike) -> np.memmap:
    """The uint16 token stream at `path` as a read-only np.memmap (N,): nothing is read until it is indexed, so a
    corpus larger than memory trains as well as a small one. FileNotFoundError naming the path when it is missing."""
    ### BEGIN SOLUTION
    if not os.path.isfile(path):
        raise FileNotFoundError(f"read_tokens: no token file at {os.fspath(path)!r}")
    return np.memmap(path, dtype=np.uint16, mode="r")
    ### END SOLUTION


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
    ### BEGIN SOLUTION
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_text, val_text = split_text(text, val_fraction)
    if tokenizer == "chars":
        encoder = CharTokenizer(text)  # stage 01's: sorted(set(text)) over the whole text
    elif tokenizer == "bpe":
        from . import bpe  # only this branch needs stage 08 (and its `regex` dependency)

        encoder = bpe.Tokenizer(bpe.train(train_text, bpe_vocab_size))
    else:
        raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {tokenizer!r}")
    train_ids, val_ids = encoder.encode(train_text), encoder.encode(val_text)
    save_tokenizer(encoder, out)
    train_tokens = write_tokens(out / "train.bin", train_ids)
    val_tokens = write_tokens(out / "val.bin", val_ids)
    return {"vocab_size": int(encoder.vocab_size), "train_tokens": len(train_tokens), "val_tokens": len(val_tokens)}
    ### END SOLUTION


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
        ### BEGIN SOLUTION
        problems = []
        choices = {"tokenizer": TOKENIZERS, **OPTIONS}  # the model's options are gpt.py's, not a copy
        problems += [f"{name} must be one of {options}, got {getattr(self, name)!r}"
                     for name, options in choices.items() if getattr(self, name) not in options]
        positive = ("steps", "batch_size", "accumulation", "context", "layers", "heads", "width", "eval_every",
                    "eval_batches", "checkpoint_every", "log_every")
        problems += [f"{name} must be >= 1, got {getattr(self, name)}" for name in positive if getattr(self, name) < 1]
        if self.heads >= 1 and self.width % self.heads:
            problems.append(f"width ({self.width}) must be divisible by heads ({self.heads})")
        if not 0 <= self.warmup_steps <= self.steps:
            problems.append(f"warmup_steps must be in [0, steps={self.steps}], got {self.warmup_steps}")
        if not (self.max_lr > 0 and 0 <= self.min_lr <= self.max_lr):
            problems.append(f"need 0 < max_lr and 0 <= min_lr <= max_lr, got max_lr={self.max_lr}, "
                            f"min_lr={self.min_lr}")
        if len(self.betas) != 2 or not all(0 <= beta < 1 for beta in self.betas):
            problems.append(f"betas must be two numbers in [0, 1), got {self.betas}")
        if not self.weight_decay >= 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not self.clip > 0:
            problems.append(f"clip must be > 0, got {self.clip}")
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 < self.val_fraction < 1:
            problems.append(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.text_chars is not None and self.text_chars < 1:
            problems.append(f"text_chars must be None or >= 1, got {self.text_chars}")
        if problems:
            raise ValueError("TrainConfig: " + "; ".join(problems))
        return self
        ### END SOLUTION


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
    ### BEGIN SOLUTION
    return cosine_schedule(step, max_lr=config.max_lr, min_lr=config.min_lr, warmup_steps=config.warmup_steps,
                           total_steps=config.steps)
    ### END SOLUTION


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
    ### BEGIN SOLUTION
    optimizer.lr = lr
    optimizer.zero_grad()
    losses = []
    for x, y in batches:
        loss = model.loss(x, y)  # scalar: the mean over this micro-batch's B * T positions
        (loss / len(batches)).backward()  # backward frees nothing but runs now: one graph alive at a time
        losses.append(loss.item())
    grad_norm = clip_grad_norm(model.parameters(), clip)
    if not math.isfinite(grad_norm):
        raise FloatingPointError(f"the gradient norm is {grad_norm}: the loss or the weights hold inf or NaN "
                                 f"(losses {losses}); lower the learning rate or check the model")
    optimizer.step()
    return {"loss": float(np.mean(losses)), "grad_norm": float(grad_norm), "lr": float(lr)}
    ### END SOLUTION


def evaluate(model: GPT, tokens: np.ndarray, config: TrainConfig) -> float:
    """The model's mean loss on `tokens` (the validation stream): nn.estimate_loss(model, tokens, config.batch_size,
    config.context, batches=config.eval_batches, seed=config.seed). The same batches every time, so two evaluations
    differ only because the model did."""
    ### BEGIN SOLUTION
    return estimate_loss(model, tokens, config.batch_size, config.context, batches=config.eval_batches,
                         seed=config.seed)
    ### END SOLUTION


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
    ### BEGIN SOLUTION
    arrays = {f"model.{name}": array for name, array in model.state_dict().items()}
    arrays.update({f"optimizer.{key}": array for key, array in optimizer.state_dict().items()})
    arrays.update({f"rng.{name}": np.array(json.dumps(rng.bit_generator.state)) for name, rng in rngs.items()})
    arrays["step"] = np.array(step, dtype=np.int64)
    arrays["train_config"] = np.array(json.dumps(config.to_dict()))
    arrays["model_config"] = np.array(json.dumps(model.config.to_dict()))
    temporary = f"{os.fspath(path)}.tmp"
    try:
        with open(temporary, "wb") as file:
            np.savez(file, **arrays)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    ### END SOLUTION


def load_checkpoint(path: str | os.PathLike, model: GPT, optimizer: AdamW, rngs: dict[str, np.random.Generator],
                    config: TrainConfig) -> int:
    """Restore what save_checkpoint wrote into the existing model, optimizer and generators; return the step.

    Opened with np.load(path, allow_pickle=False). ValueError naming the fields that differ when the file's
    train_config is not `config` (exact resume needs the same run). Then model.load_state_dict,
    optimizer.load_state_dict and rng.bit_generator.state = json.loads(...) for every generator in `rngs` (in place:
    anything holding the generator, a Dropout say, draws on from the restored state). FileNotFoundError naming the
    path when it is missing.
    """
    ### BEGIN SOLUTION
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_checkpoint: no checkpoint at {os.fspath(path)!r}")
    with np.load(path, allow_pickle=False) as file:
        saved = json.loads(str(file["train_config"]))
        wanted = config.to_dict()
        differ = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
        if differ:
            raise ValueError(f"load_checkpoint: {os.fspath(path)!r} was written by another run; these fields differ: "
                             + ", ".join(f"{k} (saved {saved.get(k)!r}, now {wanted.get(k)!r})" for k in differ))
        model.load_state_dict({k[len("model."):]: file[k] for k in file.files if k.startswith("model.")})
        optimizer.load_state_dict({k[len("optimizer."):]: file[k] for k in file.files if k.startswith("optimizer.")})
        for name, rng in rngs.items():
            rng.bit_generator.state = json.loads(str(file[f"rng.{name}"]))
        return int(file["step"])
    ### END SOLUTION


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
    ### BEGIN SOLUTION
    config.validate()
    out = Path(out_dir)
    checkpoint = out / "checkpoint.npz"
    if resume and not checkpoint.is_file():
        raise FileNotFoundError(f"train(resume=True): no checkpoint to resume from at {checkpoint}")
    if not resume and checkpoint.is_file():
        raise FileExistsError(f"{out} already holds a run (checkpoint.npz); resume it or choose another out_dir")
    out.mkdir(parents=True, exist_ok=True)
    if not (resume and (out / "train.bin").is_file()):
        text = load_shakespeare() if text is None else text
        text = text if config.text_chars is None else text[:config.text_chars]
        prepare_tokens(text, out, tokenizer=config.tokenizer, bpe_vocab_size=config.bpe_vocab_size,
                       val_fraction=config.val_fraction)
    train_tokens, val_tokens = read_tokens(out / "train.bin"), read_tokens(out / "val.bin")  # (N,) uint16 memmaps
    vocab_size = load_tokenizer(out).vocab_size

    rngs = {"model": np.random.default_rng([config.seed, 0]), "batches": np.random.default_rng([config.seed, 1])}
    model = GPT(config.gpt_config(vocab_size), rng=rngs["model"])
    optimizer = AdamW(model.parameters(), lr=config.max_lr, betas=config.betas, weight_decay=config.weight_decay)
    start = load_checkpoint(checkpoint, model, optimizer, rngs, config) if resume else 0
    log = RunLog(out, start)
    say = print if verbose else (lambda *args, **kwargs: None)
    say(f"{model.num_parameters():,} parameters, {len(train_tokens):,} training and {len(val_tokens):,} validation "
        f"tokens, vocabulary {vocab_size}; steps {start}..{config.steps} in {out}")

    tokens_per_step = config.batch_size * config.context * config.accumulation
    losses, lrs, val_losses = [], [], []
    step_seconds, began = 0.0, time.perf_counter()
    recent = []  # (loss, seconds) since the last progress line
    step = start
    while True:
        val_loss = None
        if step % config.eval_every == 0 or step == config.steps:
            val_loss = evaluate(model, val_tokens, config)
            val_losses.append([step, val_loss])
            say(f"step {step}: validation loss {val_loss:.4f}")
        finished = step == config.steps or step == stop_after
        if step > start and (step % config.checkpoint_every == 0 or finished):
            save_checkpoint(checkpoint, model, optimizer, step, rngs, config)
            model.save(out / "model.npz")
        if finished:
            log.write({"step": step, "val_loss": val_loss, "elapsed": time.perf_counter() - began})
            break
        batches = [get_batch(train_tokens, config.batch_size, config.context, rngs["batches"])
                   for _ in range(config.accumulation)]  # each (B, T) x and y
        tick = time.perf_counter()
        result = train_step(model, optimizer, batches, lr=learning_rate(config, step), clip=config.clip)
        seconds = time.perf_counter() - tick
        step_seconds += seconds
        losses.append(result["loss"])
        lrs.append(result["lr"])
        recent.append((result["loss"], seconds))
        log.write({"step": step, "loss": result["loss"], "val_loss": val_loss, "lr": result["lr"],
                   "grad_norm": result["grad_norm"], "tokens_per_second": tokens_per_step / seconds,
                   "elapsed": time.perf_counter() - began})
        if (step + 1) % config.log_every == 0:
            rate = tokens_per_step * len(recent) / sum(s for _, s in recent)
            say(progress_line(step + 1, config.steps, float(np.mean([l for l, _ in recent])), result["lr"], rate,
                              time.perf_counter() - began))
            recent = []
        step += 1
    return {"start_step": start, "step": step, "losses": losses, "lrs": lrs, "val_losses": val_losses,
            "final_val_loss": val_losses[-1][1] if val_losses else None,
            "tokens_per_second": tokens_per_step * len(losses) / step_seconds if losses else 0.0,
            "elapsed": time.perf_counter() - began, "parameters": model.num_parameters()}
    ### END SOLUTION


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
