"""Stage 10 (training), visible suite: the split, the token files, the learning rate, one step with accumulation and
clipping, validation, checkpoints, the loop, its log, and an exact resume. (The corpus is given code: its tests are in
tests/given/test_corpus.py.)

Every test runs a probe on your module and also checks something that does not trust the reference: an output written
out by hand, the same gradient computed another way (one big batch against k micro-batches, in float64), the AdamW
update worked out from the gradients your step left behind, or an invariant of the run (the loss falls, a resumed run
repeats the uninterrupted one bit for bit). Models are built with your own gpt module; before values are compared
with the reference, their weights are overwritten by parameter name with seeded float64 values, so the order in which
your GPT draws its initial weights does not matter. Runs of the whole loop use a few kilobytes of made-up verse, never
the whole corpus, and are judged on their own properties (a run's losses depend on how your GPT initialises itself).
"""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from grader.harness import EXACT, F64, Mistake, Tol, assert_close, assert_true, raised, seeded, sibling
from tests.stage10.helpers import (ACCUMULATED, QUICK, SAME_WEIGHTS, accumulation_mistakes, build, config, grads,
                                   micro_batches, probe_accumulation, probe_loop_schedule, probe_prepare, probe_resume,
                                   probe_split, probe_validate, read_log, run, schedule_by_hand, validation_expected,
                                   verse, weights)

COLUMNS = ["step", "loss", "val_loss", "lr", "grad_norm", "tokens_per_second", "elapsed"]
SMALL_GPT = {"vocab_size": 11, "context": 8, "layers": 2, "heads": 2, "width": 8}


# ---------------------------------------------------------------- the split and the token files


@pytest.mark.concept("split")
@pytest.mark.parametrize("val_fraction", [0.1, 0.3])
def test_the_split_is_two_contiguous_pieces(check, val_fraction):
    text = verse(10, 30)
    got = check(probe_split, text=text, val_fraction=val_fraction, tol=EXACT)
    train, val = got["returned"]
    n = int(len(text) * (1 - val_fraction))
    assert_true(train + val == text, "train + val must be the text itself, in order (no shuffle, nothing lost)")
    assert_close(len(train), n, EXACT, "len(train) = int(len(text) * (1 - val_fraction))")
    # int(23 * 0.9) = int(20.7) = 20: the training part is rounded down, never up
    assert_close(check(probe_split, text="Thus with a kiss I die.", val_fraction=0.1, tol=EXACT),
                 {"returned": ["Thus with a kiss I d", "ie."]}, EXACT, "split_text('Thus with a kiss I die.', 0.1)",
                 mistakes=(Mistake("n is int(len(text) * (1 - val_fraction)), rounded DOWN (not round())",
                                   lambda g, w: len(g["returned"][0]) == 21),))
    for bad in (0.0, 1.0):
        assert_close(check(probe_split, text=text, val_fraction=bad, tol=EXACT), {"raised": "ValueError"}, EXACT,
                     f"split_text(text, {bad})")


@pytest.mark.concept("tokens")
def test_prepare_tokens_writes_character_streams_that_do_not_leak(check):
    text = verse(11, 40) + "$"  # a character that only the validation part holds
    got = check(probe_prepare, text=text, val_fraction=0.1, tol=EXACT)
    chars = got["vocabulary"]["chars"]
    n = int(len(text) * 0.9)
    assert_close(chars, sorted(set(text)), EXACT, "the vocabulary: sorted(set(text)) over the WHOLE text")
    assert_close({k: got["vocabulary"][k] for k in ("format", "version")}, {"format": "characters", "version": 1},
                 EXACT, "tokenizer.json's format and version (stage 11 reads them)")
    assert_true("".join(chars[i] for i in got["train"]) == text[:n],
                "train.bin must decode to exactly the first int(0.9 * len(text)) characters")
    assert_true("".join(chars[i] for i in got["val"]) == text[n:],
                "val.bin must decode to exactly the rest: the last characters, nothing from the training part")
    assert_close(got["info"], {"vocab_size": len(chars), "train_tokens": n, "val_tokens": len(text) - n}, EXACT,
                 "prepare_tokens' summary")


def probe_memmap(m, ids: list, seed: int) -> dict:
    nn = sibling(m, "nn")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "tokens.bin"
        written = m.write_tokens(path, ids)
        back = m.read_tokens(path)
        return {"written_is_memmap": isinstance(written, np.memmap), "is_memmap": isinstance(back, np.memmap),
                "dtype": str(back.dtype), "values": np.array(back), "bytes": os.path.getsize(path),
                "raw": np.fromfile(path, dtype="<u2"), "writeable": bool(back.flags.writeable),
                "batch": [np.array(a) for a in nn.get_batch(back, 3, 5, seeded(seed))],
                "batch_in_memory": [np.array(a) for a in nn.get_batch(np.array(ids), 3, 5, seeded(seed))]}


@pytest.mark.concept("memmap")
def test_token_files_round_trip_through_a_read_only_memmap(check):
    ids = seeded(12).integers(0, 65536, size=50).tolist() + [0, 65535]
    got = check(probe_memmap, ids=ids, seed=13, tol=EXACT)
    assert_close(got["values"], np.array(ids), EXACT, "read_tokens(write_tokens(ids))")
    assert_close([got["dtype"], got["bytes"]], ["uint16", 2 * len(ids)], EXACT, "dtype and file size (2 bytes per id, "
                 "no header)", mistakes=(Mistake("np.save adds a header; write the raw array with np.memmap",
                                                 lambda g, w: g[1] > w[1]),))
    assert_close(got["raw"], np.array(ids), EXACT, "the file's bytes read as little-endian uint16")
    assert_true(got["is_memmap"] and got["written_is_memmap"] and not got["writeable"],
                "read_tokens must return a np.memmap opened read-only (mode 'r'), and write_tokens what read_tokens "
                f"returns; got memmap={got['is_memmap']}, writeable={got['writeable']}")
    assert_close(got["batch"], got["batch_in_memory"], EXACT,
                 "nn.get_batch on the memmap against the same ids in memory")


def probe_write_rejects(m, refused: list, accepted: list, bad: int) -> dict:
    """write_tokens of ids with one that does not fit uint16 (what it raised), then of ids at the edge that do."""
    with tempfile.TemporaryDirectory() as directory:
        outcome = raised(m.write_tokens, Path(directory) / "refused.bin", refused, mentions=[str(bad)])
        return {"refused": outcome, "accepted": np.array(m.write_tokens(Path(directory) / "accepted.bin", accepted))}


@pytest.mark.concept("memmap")
@pytest.mark.parametrize("bad, edge", [(65536, 65535), (-1, 0)], ids=["65536", "-1"])
def test_write_tokens_refuses_ids_that_do_not_fit_uint16(check, bad, edge):
    got = check(probe_write_rejects, refused=[1, 2, bad, 3], accepted=[1, 2, edge, 3], bad=bad, tol=EXACT,
                what=f"write_tokens of [1, 2, {bad}, 3], then of [1, 2, {edge}, 3]")
    assert_close(got, {"refused": {"raised": "ValueError", "mentions": [str(bad)]},
                       "accepted": np.array([1, 2, edge, 3])},
                 EXACT, f"write_tokens of [1, 2, {bad}, 3] (uint16 would wrap {bad} silently: refuse it, naming it), "
                 f"then of [1, 2, {edge}, 3] (the edge of uint16: written and read back)")


# ---------------------------------------------------------------- the learning rate, one step, validation


def probe_learning_rate(m, overrides: dict, steps: list) -> list:
    return [m.learning_rate(config(m, overrides), step) for step in steps]


@pytest.mark.concept("schedule")
def test_learning_rate_is_the_cosine_schedule_of_the_config(check):
    overrides = {"steps": 50, "warmup_steps": 10, "max_lr": 2e-3, "min_lr": 2e-4}
    steps = [0, 4, 9, 10, 30, 49, 50, 60]
    got = check(probe_learning_rate, overrides=overrides, steps=steps, tol=F64)
    assert_close(got, [schedule_by_hand(s, 2e-3, 2e-4, 10, 50) for s in steps], F64,
                 "learning_rate at steps " + str(steps),
                 mistakes=(Mistake("the warmup starts at 0: step 0 gets max_lr / warmup_steps",
                                   lambda g, w: g[0] == 0),))


@pytest.mark.concept("accumulation")
@pytest.mark.parametrize("k", [2, 3])
def test_k_micro_batches_give_the_gradient_of_one_batch_k_times_larger(target, reference, k):
    rng = seeded(20 + k)
    x, y = rng.integers(0, 11, size=(2, 6, 8)).tolist()
    got = target.run(probe_accumulation, fields=SMALL_GPT, seed=21, x=x, y=y, k=k)
    assert_close(got["micro"], got["whole"], ACCUMULATED, f"{k} micro-batches of {6 // k} against one batch of 6",
                 mistakes=accumulation_mistakes(k))
    assert_close(got, reference.run(probe_accumulation, fields=SMALL_GPT, seed=21, x=x, y=y, k=k), SAME_WEIGHTS,
                 "accumulation")


def probe_clipping(m, fields: dict, seed: int, x: list, y: list, clip: float) -> dict:
    optim = sibling(m, "optim")
    raw = build(m, fields, seed)
    raw.loss(np.array(x), np.array(y)).backward()
    model = build(m, fields, seed)
    result = m.train_step(model, optim.AdamW(model.parameters(), lr=0.0), micro_batches(x, y, 1), lr=0.0, clip=clip)
    return {"result": result, "raw": grads(raw), "clipped": grads(model)}


@pytest.mark.concept("clipping")
def test_train_step_clips_the_global_gradient_norm(check):
    x, y = seeded(23).integers(0, 11, size=(2, 3, 8)).tolist()
    got = check(probe_clipping, fields=SMALL_GPT, seed=24, x=x, y=y, clip=0.05, tol=SAME_WEIGHTS)
    norm = math.sqrt(sum(float(np.sum(g ** 2)) for g in got["raw"].values()))
    assert_true(norm > 0.05, f"the test needs a gradient norm above the clip; got {norm}")
    assert_close(got["result"]["grad_norm"], norm, F64, "grad_norm: the global norm BEFORE clipping")
    assert_close(got["clipped"], {k: g * 0.05 / norm for k, g in got["raw"].items()}, F64,
                 "the gradients after train_step: every one scaled by clip / norm",
                 mistakes=(Mistake("not clipped: call optim.clip_grad_norm(model.parameters(), clip) after the "
                                   "backward passes", lambda g, w: not np.allclose(g["final_norm.weight"],
                                                                                   w["final_norm.weight"])),))


def probe_adamw_step(m, fields: dict, seed: int, x: list, y: list, lr: float, weight_decay: float) -> dict:
    optim = sibling(m, "optim")
    model = build(m, fields, seed)
    optimizer = optim.AdamW(model.parameters(), lr=123.0, betas=(0.9, 0.99), eps=1e-8, weight_decay=weight_decay)
    before = weights(model)
    result = m.train_step(model, optimizer, micro_batches(x, y, 2), lr=lr, clip=1.0)
    return {"result": result, "before": before, "after": weights(model), "grads": grads(model),
            "optimizer_lr": optimizer.lr}


@pytest.mark.concept("step")
def test_train_step_sets_the_learning_rate_and_takes_one_adamw_step(check):
    x, y = seeded(25).integers(0, 11, size=(2, 4, 8)).tolist()
    got = check(probe_adamw_step, fields=SMALL_GPT, seed=26, x=x, y=y, lr=0.01, weight_decay=0.1, tol=SAME_WEIGHTS)
    assert_close([got["optimizer_lr"], got["result"]["lr"]], [0.01, 0.01], EXACT, "optimizer.lr and result['lr']",
                 mistakes=(Mistake("the optimizer kept its constructor's lr: set optimizer.lr = lr first",
                                   lambda g, w: g[0] == 123.0),))
    # AdamW's first update (t = 1): m_hat = g, v_hat = g², so p <- p (1 - lr wd) - lr g / (|g| + eps)
    want = {k: p * (1 - 0.01 * 0.1) - 0.01 * got["grads"][k] / (np.abs(got["grads"][k]) + 1e-8)
            for k, p in got["before"].items()}
    assert_close(got["after"], want, Tol(1e-9, 1e-12, "float64; AdamW's first step written out"),
                 "the weights after one train_step")


def probe_evaluate(m, fields: dict, seed: int, tokens: list, overrides: dict) -> dict:
    nn = sibling(m, "nn")
    cfg = config(m, overrides)
    model = build(m, fields, seed)
    model.train()
    first = m.evaluate(model, np.array(tokens), cfg)
    return {"first": first, "again": m.evaluate(model, np.array(tokens), cfg), "training": model.training,
            "direct": nn.estimate_loss(model, np.array(tokens), cfg.batch_size, cfg.context,
                                       batches=cfg.eval_batches, seed=cfg.seed)}


@pytest.mark.concept("validation")
def test_evaluate_uses_the_same_validation_batches_every_time(check):
    overrides = {"batch_size": 3, "context": 8, "eval_batches": 4, "seed": 5}
    tokens = seeded(27).integers(0, 11, size=200).tolist()
    got = check(probe_evaluate, fields=SMALL_GPT, seed=28, tokens=tokens, overrides=overrides, tol=SAME_WEIGHTS)
    assert_close(got["first"], got["direct"], F64, "evaluate against nn.estimate_loss(model, tokens, batch_size, "
                 "context, batches=eval_batches, seed=config.seed)")
    assert_close(got["again"], got["first"], EXACT, "two evaluations of the same model")
    assert_true(got["training"], "evaluate must leave the model in training mode (estimate_loss restores it)")


# ---------------------------------------------------------------- checkpoints


def saved_run(m, fields: dict, seed: int, overrides: dict, directory: str):
    """A model after one AdamW step, generators that have drawn something, saved at step 7."""
    optim = sibling(m, "optim")
    model = build(m, fields, seed)
    optimizer = optim.AdamW(model.parameters(), lr=0.01, betas=(0.9, 0.99), weight_decay=0.1)
    x, y = seeded(seed + 2).integers(0, fields["vocab_size"], size=(2, 2, fields["context"]))
    m.train_step(model, optimizer, [(x, y)], lr=0.01, clip=1.0)
    rngs = {"model": np.random.default_rng(seed + 3), "batches": np.random.default_rng(seed + 4)}
    for rng in rngs.values():
        rng.random(5)
    path = Path(directory) / "checkpoint.npz"
    m.save_checkpoint(path, model, optimizer, 7, rngs, config(m, overrides))
    return path, model, optimizer, rngs


def probe_checkpoint(m, fields: dict, seed: int, overrides: dict) -> dict:
    optim = sibling(m, "optim")
    with tempfile.TemporaryDirectory() as directory:
        path, model, optimizer, rngs = saved_run(m, fields, seed, overrides, directory)
        with np.load(path, allow_pickle=False) as file:
            keys = sorted(file.files)
            step_entry = int(file["step"])
        fresh = build(m, fields, seed + 10)
        fresh_optimizer = optim.AdamW(fresh.parameters(), lr=0.5, betas=(0.9, 0.99), weight_decay=0.1)
        fresh_rngs = {"model": np.random.default_rng(0), "batches": np.random.default_rng(1)}
        step = m.load_checkpoint(path, fresh, fresh_optimizer, fresh_rngs, config(m, overrides))
        return {"step": step, "step_entry": step_entry, "files": sorted(os.listdir(directory)),
                "has": [key in keys for key in ("step", "train_config", "model_config", "rng.model", "rng.batches")],
                "weights": [weights(model), weights(fresh)],
                "optimizer": [optimizer.state_dict(), fresh_optimizer.state_dict()],
                "draws": [[rng.random(3) for rng in rngs.values()], [rng.random(3) for rng in fresh_rngs.values()]]}


@pytest.mark.concept("checkpoint")
def test_a_checkpoint_restores_model_optimizer_generators_and_step(check):
    got = check(probe_checkpoint, fields=SMALL_GPT, seed=30, overrides={"steps": 40}, tol=SAME_WEIGHTS)
    assert_close([got["step"], got["step_entry"]], [7, 7], EXACT, "the step returned by load_checkpoint and the "
                 "file's 'step' entry")
    assert_close(got["has"], [True] * 5, EXACT, "entries step, train_config, model_config, rng.model, rng.batches")
    assert_close(got["files"], ["checkpoint.npz"], EXACT, "the files left in the directory (no .tmp)")
    assert_close(got["weights"][1], got["weights"][0], EXACT, "the restored weights")
    assert_close(got["optimizer"][1], got["optimizer"][0], EXACT, "the restored optimizer state (moments, steps, lr)")
    assert_close(got["draws"][1], got["draws"][0], EXACT, "the next draws of the restored generators",
                 mistakes=(Mistake("the generators were not restored in place: set rng.bit_generator.state on the "
                                   "generators you were given", lambda g, w: True),))


def probe_checkpoint_other_config(m, fields: dict, seed: int, overrides: dict, changed: dict) -> dict:
    optim = sibling(m, "optim")
    with tempfile.TemporaryDirectory() as directory:
        path, _, _, rngs = saved_run(m, fields, seed, overrides, directory)
        fresh = build(m, fields, seed)
        fresh_optimizer = optim.AdamW(fresh.parameters(), lr=0.5, betas=(0.9, 0.99), weight_decay=0.1)
        other_run = config(m, {**overrides, **changed})
        return raised(m.load_checkpoint, path, fresh, fresh_optimizer, rngs, other_run, mentions=sorted(changed))


@pytest.mark.concept("checkpoint")
def test_load_checkpoint_refuses_the_checkpoint_of_another_run(check):
    got = check(probe_checkpoint_other_config, fields=SMALL_GPT, seed=31, overrides={"steps": 40},
                changed={"max_lr": 5e-3}, tol=EXACT)
    assert_close(got, {"raised": "ValueError", "mentions": ["max_lr"]}, EXACT, "load_checkpoint of a checkpoint "
                 "whose run had another max_lr (the message names the field that differs)")


def probe_atomic(m, fields: dict, seed: int, overrides: dict) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        path, model, optimizer, rngs = saved_run(m, fields, seed, overrides, directory)
        os.remove(path)
        os.mkdir(path)  # the rename onto `path` must now fail, after the .tmp was written
        outcome = raised(m.save_checkpoint, path, model, optimizer, 3, rngs, config(m, overrides))
        return {"outcome": outcome, "files": sorted(os.listdir(directory))}


@pytest.mark.concept("atomic")
def test_a_failed_save_leaves_no_tmp_file_behind(check):
    got = check(probe_atomic, fields=SMALL_GPT, seed=32, overrides={}, tol=EXACT)
    assert_true("raised" in got["outcome"], f"saving onto a directory must raise (the rename fails); got {got}")
    assert_close(got["files"], ["checkpoint.npz"], EXACT, "the directory after the failed save",
                 mistakes=(Mistake("the .tmp file stayed: remove it when writing or renaming fails, then re-raise",
                                   lambda g, w: any(f.endswith(".tmp") for f in g)),))


# ---------------------------------------------------------------- configuration


@pytest.mark.concept("config")
@pytest.mark.parametrize("refused, accepted, field", [
    ({"steps": 0}, {"steps": 1, "warmup_steps": 1}, "steps"),
    ({"width": 30, "heads": 4}, {"width": 28, "heads": 4}, "heads"),
    ({"tokenizer": "words"}, {"tokenizer": "bpe"}, "tokenizer"),
    ({"warmup_steps": 50, "steps": 10}, {"warmup_steps": 10, "steps": 10}, "warmup_steps"),
    ({"min_lr": 1e-2, "max_lr": 1e-3}, {"min_lr": 1e-3, "max_lr": 1e-3}, "min_lr"),
    ({"accumulation": 0}, {"accumulation": 1}, "accumulation"),
    ({"clip": 0.0}, {"clip": 1e-6}, "clip"),
    ({"batch_size": 0}, {}, "batch_size")],
    ids=["steps", "heads", "tokenizer", "warmup", "min-lr", "accumulation", "clip", "preset"])
def test_config_validation_names_the_field(check, refused, accepted, field):
    # each refused config beside one at the edge of what is allowed (or the preset itself): validate() must tell them
    # apart, not raise for everything
    got = check(probe_validate, refused=refused, accepted=accepted, field=field, tol=EXACT,
                what=f"validate() with {refused}, then with {accepted or 'the tiny preset'}")
    assert_close(got, validation_expected(field), EXACT, f"validate() with {refused} (refused, naming {field!r}), "
                 f"then with {accepted or 'the tiny preset as it is'} (accepted: it returns the config itself)")


# ---------------------------------------------------------------- the loop


def probe_loss_falls(m, text: str, overrides: dict) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        summary = run(m, directory, text, overrides)
    return {key: summary[key] for key in ("start_step", "step", "losses", "val_losses", "final_val_loss")}


@pytest.mark.concept("loop")
def test_the_loss_falls_on_the_tiny_preset(target):
    got = target.run(probe_loss_falls, text=verse(40, 80), overrides={})
    assert_close([got["start_step"], got["step"], len(got["losses"])], [0, 30, 30], EXACT,
                 "start_step, the step it stopped at, and the number of losses (the tiny preset has 30 steps)")
    assert_close([s for s, _ in got["val_losses"]], [0, 10, 20, 30], EXACT, "the steps validated (eval_every 10)")
    first, last = got["val_losses"][0][1], got["val_losses"][-1][1]
    assert_true(last < first - 0.5, f"after 30 steps the validation loss should fall by at least 0.5 nats: "
                                    f"{first:.3f} -> {last:.3f}")
    assert_true(np.mean(got["losses"][-5:]) < np.mean(got["losses"][:5]) - 0.4,
                f"the training loss should fall: first five {got['losses'][:5]}, last five {got['losses'][-5:]}")


@pytest.mark.concept("schedule")
def test_the_loop_follows_the_schedule_step_by_step(target):
    overrides = {**QUICK, "steps": 10, "warmup_steps": 3, "max_lr": 4e-3, "min_lr": 1e-3}
    got = target.run(probe_loop_schedule, text=verse(41, 40), overrides=overrides)
    want = [schedule_by_hand(s, 4e-3, 1e-3, 3, 10) for s in range(10)]
    assert_close(got["lrs"], want, F64, "the learning rate of steps 0..9",
                 mistakes=(Mistake("off by one: step s uses learning_rate(config, s), counting from 0",
                                   lambda g, w: np.allclose(g[:-1], w[1:]) or np.allclose(g[1:], w[:-1])),))
    assert_close(got["logged"], want, F64, "the lr column of log.csv")


def probe_log(m, text: str, overrides: dict) -> dict:
    gpt = sibling(m, "gpt")
    with tempfile.TemporaryDirectory() as directory:
        run(m, directory, text, overrides)
        log = read_log(directory)
        return {"header": log["header"], "steps": [int(row[0]) for row in log["rows"]],
                "validated": [int(row[0]) for row in log["rows"] if row[2] != ""],
                "trained": [int(row[0]) for row in log["rows"] if row[1] != ""],
                "jsonl_keys": sorted({",".join(row) for row in log["jsonl"]}),
                "jsonl_steps": [row["step"] for row in log["jsonl"]], "files": sorted(os.listdir(directory)),
                "model_loads": gpt.GPT.load(Path(directory) / "model.npz").num_parameters()}


@pytest.mark.concept("log")
def test_the_run_writes_its_log_files_and_checkpoints(target):
    got = target.run(probe_log, text=verse(42, 40), overrides=QUICK)
    assert_close(got["header"], COLUMNS, EXACT, "log.csv's header")
    assert_close(got["jsonl_keys"], [",".join(COLUMNS)], EXACT, "the keys of every log.jsonl row")
    assert_close(got["steps"], list(range(13)), EXACT, "log.csv's step column: one row per step 0..11, and a last "
                 "row at step 12 for the final validation")
    assert_close(got["jsonl_steps"], list(range(13)), EXACT, "log.jsonl's steps")
    assert_close(got["trained"], list(range(12)), EXACT, "the rows with a training loss")
    assert_close(got["validated"], [0, 4, 8, 12], EXACT, "the rows with a validation loss (eval_every 4, and the end)")
    assert_close(got["files"], ["checkpoint.npz", "log.csv", "log.jsonl", "model.npz", "tokenizer.json", "train.bin",
                                "val.bin"], EXACT, "the files of the run (a .tmp means a checkpoint was not renamed)")
    assert_true(got["model_loads"] > 0, "model.npz must load with GPT.load (stage 11 samples from it)")


@pytest.mark.concept("resume")
def test_a_resumed_run_repeats_the_uninterrupted_one_bit_for_bit(target):
    got = target.run(probe_resume, text=verse(43, 40), overrides=QUICK, stop=6)
    assert_close(got["stops"], [6, 6, 12], EXACT, "the first call stops at 6, the second resumes at 6 and ends at 12")
    assert_close(got["first"] + got["second"], got["full"], EXACT, "the training losses, stopped at 6 and resumed, "
                 "against an uninterrupted run",
                 mistakes=(Mistake("the batches differ after the resume: save and restore the batch generator's "
                                   "state", lambda g, w: g[:6] == w[:6]),))
    assert_close(got["resumed_val"], got["full_val"], EXACT, "the validation losses")
    assert_true(got["same_weights"], "the final model.npz of the resumed run must equal the uninterrupted one's")
    assert_close(got["log_steps"], list(range(13)), EXACT, "the resumed run's log: every step once")


def probe_refusals(m, text: str, overrides: dict) -> dict:
    """train() into a fresh directory (its final step), again into the same one, and resume=True into an empty one."""
    same = config(m, overrides)
    with tempfile.TemporaryDirectory() as directory, tempfile.TemporaryDirectory() as empty:
        first = m.train(same, directory, text=text, verbose=False)
        return {"first": first["step"],
                "again": raised(m.train, same, directory, text=text, verbose=False),
                "resume_nothing": raised(m.train, same, empty, resume=True, text=text, verbose=False)}


@pytest.mark.concept("loop")
def test_train_never_overwrites_a_run_and_resumes_only_a_checkpoint(check):
    got = check(probe_refusals, text=verse(44, 30), overrides={**QUICK, "steps": 2}, tol=EXACT)
    assert_close(got, {"first": 2, "again": {"raised": "FileExistsError"},
                       "resume_nothing": {"raised": "FileNotFoundError"}},
                 EXACT, "the step a 2-step run stops at, train() again into its directory, and resume=True into an "
                 "empty one")
