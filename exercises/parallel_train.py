"""The data-parallel training run (stage 13): given code, nothing to implement.

train.train's loop on N ranks, built on the pieces of parallel.py: `mpiexec -n 2 python -m exercises.train --preset
cpu-small --data-parallel` (add --zero for ZeRO-1) runs it through train.py's command. Every rank draws the same
global batches from the same seed and trains on its rows, so the run follows the one-process run of the same config;
rank 0 validates, logs and writes the files. docs/13-parallel.md, section 10, shows a run.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from .corpus import load_shakespeare, load_tokenizer
from .gpt import GPT
from .nn import get_batch
from .optim import AdamW
from .parallel import ShardedAdamW, broadcast_parameters, data_parallel_step, zero_step
from .runlog import RunLog, progress_line
from .train import (TrainConfig, evaluate, learning_rate, load_checkpoint, prepare_tokens, read_tokens,
                    save_checkpoint, train_step)

INSTALL = "pip install mpi4py mpich"  # MPI from PyPI: mpiexec lands beside python


def world():
    """MPI.COMM_WORLD, or ImportError saying how to install MPI."""
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise ImportError(f"data-parallel training needs MPI: {INSTALL} (then mpiexec -n 2 python -m ...); "
                          f"importing mpi4py failed: {error}") from None
    return MPI.COMM_WORLD


def state_bytes(optimizer) -> int:
    """The bytes of an optimizer's state arrays (AdamW's moments; a ShardedAdamW's are its inner AdamW's)."""
    state = getattr(optimizer, "optimizer", optimizer).state
    return sum(array.nbytes for arrays in state.values() for array in arrays)


def train_data_parallel(config: TrainConfig, out_dir: str | os.PathLike, resume: bool = False, *,
                        text: str | None = None, stop_after: int | None = None, verbose: bool = True, comm=None,
                        zero: bool = False) -> dict:
    """train.train on every rank of comm (default MPI.COMM_WORLD): the same files, log and summary, written by rank 0.
    Every rank draws the same global batches from the same seed and takes its rows, so the run follows the
    one-process run of the same config. ZeRO-1 (zero=True) keeps no checkpoint.npz (its moments are spread over the
    ranks) and cannot resume. At the end rank 0 times one-process steps on the same global batch, to report the
    speed-up and the scaling efficiency."""
    comm = world() if comm is None else comm
    rank, ranks = comm.Get_rank(), comm.Get_size()
    out, say = Path(out_dir), (print if verbose and rank == 0 else (lambda *args, **kwargs: None))
    checkpoint = out / "checkpoint.npz"
    problem = None
    if rank == 0:  # one rank checks and writes the files; the others wait for its verdict
        try:
            config.validate()
            if config.batch_size < ranks or (zero and resume):
                raise ValueError(f"batch_size {config.batch_size} with {ranks} ranks (each needs a row), resume "
                                 f"{resume} with zero {zero} (a ZeRO-1 run keeps no checkpoint)")
            if resume and not checkpoint.is_file():
                raise FileNotFoundError(f"no checkpoint to resume from at {checkpoint}")
            if not resume and checkpoint.is_file():
                raise FileExistsError(f"{out} already holds a run (checkpoint.npz); resume it or choose another --out")
            out.mkdir(parents=True, exist_ok=True)
            if not (resume and (out / "train.bin").is_file()):
                text = load_shakespeare() if text is None else text
                prepare_tokens(text if config.text_chars is None else text[:config.text_chars], out,
                               tokenizer=config.tokenizer, bpe_vocab_size=config.bpe_vocab_size,
                               val_fraction=config.val_fraction)
        except Exception as error:  # raised on every rank below: the others must not wait for files never written
            problem = error
    problem = comm.bcast(problem, root=0)
    if problem is not None:
        raise problem
    train_tokens, val_tokens = read_tokens(out / "train.bin"), read_tokens(out / "val.bin")
    rngs = {"model": np.random.default_rng([config.seed, 0]), "batches": np.random.default_rng([config.seed, 1])}
    model = GPT(config.gpt_config(load_tokenizer(out).vocab_size), rng=rngs["model"])
    broadcast_parameters(comm, model)
    hyper = dict(lr=config.max_lr, betas=config.betas, weight_decay=config.weight_decay)
    optimizer = ShardedAdamW(comm, model.parameters(), **hyper) if zero else AdamW(model.parameters(), **hyper)
    start = load_checkpoint(checkpoint, model, optimizer, rngs, config) if resume else 0
    log = RunLog(out, start) if rank == 0 else None
    say(f"{ranks} ranks{' with ZeRO-1' if zero else ''}, {model.num_parameters():,} parameters; optimizer state "
        f"{state_bytes(optimizer):,} bytes per rank; steps {start}..{config.steps} in {out}")
    tokens_per_step = config.batch_size * config.context * config.accumulation  # the global batch
    losses, val_losses, seconds, began, step = [], [], [], time.perf_counter(), start
    while True:
        val_loss = None
        if rank == 0 and (step % config.eval_every == 0 or step == config.steps):
            val_loss = evaluate(model, val_tokens, config)
            val_losses.append([step, val_loss])
            say(f"step {step}: validation loss {val_loss:.4f}")
        finished = step == config.steps or step == stop_after
        if rank == 0 and step > start and (step % config.checkpoint_every == 0 or finished):
            if not zero:
                save_checkpoint(checkpoint, model, optimizer, step, rngs, config)
            model.save(out / "model.npz")
        if finished:
            if log is not None:
                log.write({"step": step, "val_loss": val_loss, "elapsed": time.perf_counter() - began})
            break
        batches = [get_batch(train_tokens, config.batch_size, config.context, rngs["batches"])
                   for _ in range(config.accumulation)]  # the same global (B, T) batches on every rank
        tick = time.perf_counter()
        arguments = dict(lr=learning_rate(config, step), clip=config.clip)
        result = (zero_step if zero else data_parallel_step)(comm, model, optimizer, batches, **arguments)
        seconds.append(time.perf_counter() - tick)
        losses.append(result["loss"])
        if log is not None:
            log.write({"step": step, **result, "val_loss": val_loss, "tokens_per_second": tokens_per_step / seconds[-1],
                       "elapsed": time.perf_counter() - began})
        if (step + 1) % config.log_every == 0:
            recent = slice(-config.log_every, None)
            say(progress_line(step + 1, config.steps, float(np.mean(losses[recent])), result["lr"],
                              tokens_per_step * len(seconds[recent]) / sum(seconds[recent]),
                              time.perf_counter() - began))
        step += 1
    rate = tokens_per_step * len(seconds) / sum(seconds) if seconds else 0.0
    summary = {"start_step": start, "step": step, "losses": losses, "val_losses": val_losses,
               "final_val_loss": val_losses[-1][1] if val_losses else None, "tokens_per_second": rate,
               "elapsed": time.perf_counter() - began, "parameters": model.num_parameters(), "rank": rank,
               "ranks": ranks, "optimizer_state_bytes": state_bytes(optimizer)}
    if rank == 0 and seconds:  # one process on the same global batch, timed while the other ranks wait
        alone = GPT(model.config, rng=np.random.default_rng(0))
        alone.load_state_dict(model.state_dict())
        single, times = AdamW(alone.parameters(), **hyper), []
        for _ in range(min(10, len(seconds))):
            tick = time.perf_counter()
            train_step(alone, single, batches, lr=config.min_lr, clip=config.clip)
            times.append(time.perf_counter() - tick)
        summary["one_process_tokens_per_second"] = tokens_per_step / float(np.median(times))
        speedup = float(np.median(times) / np.median(seconds))
        summary["scaling_efficiency"] = speedup / ranks
        say(f"{ranks} ranks: {rate:,.0f} tokens/s (median step {np.median(seconds) * 1e3:.1f} ms); one process on the "
            f"same batch: {summary['one_process_tokens_per_second']:,.0f} tokens/s; speed-up {speedup:.2f}, scaling "
            f"efficiency {speedup / ranks:.0%}")
    waiting = comm.Ibarrier()
    while not waiting.Test():  # the other ranks sleep instead of spinning on a core the timing above needs
        time.sleep(0.01)
    return summary
