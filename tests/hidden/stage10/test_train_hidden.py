"""Stage 10 (training), hidden suite: other split fractions, a BPE token stream, other architectures and micro-batch
counts, a step that must refuse non-finite gradients, and a resume with dropout and accumulation (the model's own
generator must be restored too)."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from grader.harness import EXACT, F64, Mistake, assert_close, assert_true, raised, seeded, sibling
from tests.stage10.helpers import (ACCUMULATED, QUICK, SAME_WEIGHTS, accumulation_mistakes, build, config, grads,
                                   micro_batches, probe_accumulation, probe_loop_schedule, probe_prepare, probe_resume,
                                   probe_split, probe_validate, read_log, run, schedule_by_hand, validation_expected,
                                   verse, weights)

# ---------------------------------------------------------------- the split and the token files


@pytest.mark.concept("split")
def test_split_of_a_short_text_rounds_the_training_part_down(check):
    got = check(probe_split, text="abcdefg", val_fraction=0.3, tol=EXACT)
    assert_close(got, {"returned": ["abcd", "efg"]}, EXACT, "split_text('abcdefg', 0.3): int(7 * 0.7) = int(4.9) = 4")


@pytest.mark.concept("tokens")
def test_prepare_tokens_with_a_fifth_held_out(check):
    text = verse(50, 25)
    got = check(probe_prepare, text=text, val_fraction=0.2, tol=EXACT)
    chars, n = got["vocabulary"]["chars"], int(len(text) * 0.8)
    decoded = ["".join(chars[i] for i in got[part]) for part in ("train", "val")]
    assert_close(decoded, [text[:n], text[n:]], EXACT, "train.bin and val.bin decoded")
    assert_close(got["files"], ["tokenizer.json", "train.bin", "val.bin"], EXACT, "the files prepare_tokens writes")


def probe_prepare_bpe(m, text: str, vocab_size: int) -> dict:
    bpe = sibling(m, "bpe")
    with tempfile.TemporaryDirectory() as directory:
        info = m.prepare_tokens(text, directory, tokenizer="bpe", bpe_vocab_size=vocab_size, val_fraction=0.1)
        tokenizer = bpe.Tokenizer.load(str(Path(directory) / "tokenizer.json"))
        train = np.array(m.read_tokens(Path(directory) / "train.bin"))
        val = np.array(m.read_tokens(Path(directory) / "val.bin"))
        return {"info": info, "train": tokenizer.decode(train), "val": tokenizer.decode(val),
                "merges": [list(pair) for pair in tokenizer.merges]}


@pytest.mark.concept("tokens")
def test_prepare_tokens_with_byte_level_bpe_learns_merges_from_the_training_part(check):
    text = verse(51, 30)
    got = check(probe_prepare_bpe, text=text, vocab_size=300, tol=EXACT)
    n = int(len(text) * 0.9)
    assert_close([got["train"], got["val"]], [text[:n], text[n:]], EXACT, "the BPE streams decoded")
    assert_close(got["info"]["vocab_size"], 300, EXACT, "the BPE vocabulary size")


def probe_memmap_edges(m, ids: list) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "one.bin"
        values = np.array(m.write_tokens(path, ids))
        return {"values": values, "missing": raised(m.read_tokens, Path(directory) / "nothing.bin",
                                                    mentions=["nothing.bin"]),
                "empty": raised(m.write_tokens, Path(directory) / "empty.bin", [])}


@pytest.mark.concept("memmap")
def test_token_files_of_one_token_and_the_missing_file(check):
    got = check(probe_memmap_edges, ids=[65535], tol=EXACT)
    assert_close(got["values"], np.array([65535]), EXACT, "a stream of one token")
    assert_close({"missing": got["missing"], "empty": got["empty"]},
                 {"missing": {"raised": "FileNotFoundError", "mentions": ["nothing.bin"]},
                  "empty": {"raised": "ValueError"}}, EXACT,
                 "read_tokens of a missing file (the message names the path), write_tokens of no ids")


# ---------------------------------------------------------------- one step


@pytest.mark.concept("accumulation")
def test_four_single_sequence_micro_batches_with_the_classic_architecture(target, reference):
    fields = {"vocab_size": 9, "context": 6, "layers": 1, "heads": 2, "width": 8, "norm": "layer",
              "feed_forward": "gelu", "position": "learned"}
    x, y = seeded(52).integers(0, 9, size=(2, 4, 6)).tolist()
    got = target.run(probe_accumulation, fields=fields, seed=53, x=x, y=y, k=4)
    assert_close(got["micro"], got["whole"], ACCUMULATED, "4 micro-batches of 1 against one batch of 4",
                 mistakes=accumulation_mistakes(4))
    assert_close(got, reference.run(probe_accumulation, fields=fields, seed=53, x=x, y=y, k=4), SAME_WEIGHTS,
                 "accumulation")


def probe_small_norm(m, fields: dict, seed: int, x: list, y: list, clip: float) -> dict:
    optim = sibling(m, "optim")
    raw = build(m, fields, seed)
    raw.loss(np.array(x), np.array(y)).backward()
    model = build(m, fields, seed)
    result = m.train_step(model, optim.AdamW(model.parameters(), lr=0.0), micro_batches(x, y, 1), lr=0.0, clip=clip)
    return {"norm": result["grad_norm"], "raw": grads(raw), "after": grads(model)}


@pytest.mark.concept("clipping")
def test_gradients_below_the_clip_are_left_alone(check):
    x, y = seeded(54).integers(0, 11, size=(2, 2, 8)).tolist()
    fields = {"vocab_size": 11, "context": 8, "layers": 1, "heads": 2, "width": 8}
    got = check(probe_small_norm, fields=fields, seed=55, x=x, y=y, clip=1e6, tol=SAME_WEIGHTS)
    assert_close(got["after"], got["raw"], F64, "gradients whose norm is below the clip")
    assert_close(got["norm"], math.sqrt(sum(float(np.sum(g ** 2)) for g in got["raw"].values())), F64, "grad_norm")


def probe_non_finite(m, fields: dict, seed: int, x: list, y: list) -> dict:
    optim = sibling(m, "optim")
    model = build(m, fields, seed)
    dict(model.named_parameters())["final_norm.weight"].data[0] = np.inf
    before = weights(model)
    optimizer, batches = optim.AdamW(model.parameters(), lr=0.1), micro_batches(x, y, 1)
    with np.errstate(all="ignore"):  # the inf weight makes NaNs on purpose
        outcome = raised(m.train_step, model, optimizer, batches, lr=0.1, clip=1.0)
    after = weights(model)
    return {"outcome": outcome, "unchanged": all(np.array_equal(before[k], after[k], equal_nan=True) for k in before)}


@pytest.mark.concept("step")
def test_a_non_finite_gradient_stops_the_step_before_the_update(check):
    x, y = seeded(56).integers(0, 11, size=(2, 2, 8)).tolist()
    fields = {"vocab_size": 11, "context": 8, "layers": 1, "heads": 2, "width": 8}
    got = check(probe_non_finite, fields=fields, seed=57, x=x, y=y, tol=EXACT)
    assert_close(got, {"outcome": {"raised": "FloatingPointError"}, "unchanged": True}, EXACT,
                 "train_step with an inf weight: FloatingPointError, and the weights untouched",
                 mistakes=(Mistake("the optimizer stepped before the norm was checked",
                                   lambda g, w: not g["unchanged"]),))


# ---------------------------------------------------------------- checkpoints and configuration


def probe_missing_checkpoint(m, fields: dict) -> dict:
    optim = sibling(m, "optim")
    model = build(m, fields, 1)
    optimizer, rngs, run_config = optim.AdamW(model.parameters()), {"batches": np.random.default_rng(0)}, config(m, {})
    with tempfile.TemporaryDirectory() as directory:
        return raised(m.load_checkpoint, Path(directory) / "checkpoint.npz", model, optimizer, rngs, run_config,
                      mentions=["checkpoint.npz"])


@pytest.mark.concept("checkpoint")
def test_load_checkpoint_of_a_missing_file(check):
    got = check(probe_missing_checkpoint, fields={"vocab_size": 5, "context": 4, "layers": 1, "heads": 1, "width": 4},
                tol=EXACT)
    assert_close(got, {"raised": "FileNotFoundError", "mentions": ["checkpoint.npz"]}, EXACT,
                 "load_checkpoint of a missing file (the message names the path)")


@pytest.mark.concept("config")
@pytest.mark.parametrize("refused, accepted, field", [
    ({"betas": [0.9, 1.0]}, {"betas": [0.0, 0.999]}, "betas"),
    ({"dropout": 1.0}, {"dropout": 0.9}, "dropout"),
    ({"val_fraction": 0.0}, {"val_fraction": 0.5}, "val_fraction"),
    ({"text_chars": 0}, {"text_chars": 1}, "text_chars"),
    ({"norm": "batch"}, {"norm": "layer"}, "norm"),
    ({"eval_every": 0}, {"eval_every": 1}, "eval_every"),
    ({"weight_decay": -0.1}, {"weight_decay": 0.0}, "weight_decay"),
    ({"max_lr": 0.0, "min_lr": 0.0}, {"max_lr": 1e-9, "min_lr": 0.0}, "max_lr")],
    ids=["betas", "dropout", "val-fraction", "text-chars", "norm", "eval-every", "weight-decay", "max-lr"])
def test_more_config_validation(check, refused, accepted, field):
    got = check(probe_validate, refused=refused, accepted=accepted, field=field, tol=EXACT,
                what=f"validate() with {refused}, then with {accepted}")
    assert_close(got, validation_expected(field), EXACT, f"validate() with {refused} (refused, naming {field!r}), "
                 f"then with {accepted} (at the edge of what is allowed: accepted, the config itself returned)")


# ---------------------------------------------------------------- the loop


@pytest.mark.concept("resume")
def test_resume_with_dropout_and_accumulation_restores_the_model_generator_too(target):
    overrides = {**QUICK, "steps": 9, "dropout": 0.2, "accumulation": 2, "checkpoint_every": 3, "eval_every": 3}
    got = target.run(probe_resume, text=verse(58, 40), overrides=overrides, stop=5)
    assert_close(got["stops"], [5, 5, 9], EXACT, "stop at 5, resume at 5, end at 9")
    assert_close(got["first"] + got["second"], got["full"], EXACT, "the training losses, stopped and resumed",
                 mistakes=(Mistake("with dropout the model's generator draws the masks: save and restore its state "
                                   "as well as the batch generator's", lambda g, w: g[:5] == w[:5]),))
    assert_true(got["same_weights"], "the final weights of the resumed run must equal the uninterrupted run's")


def probe_twice_resumed_log(m, text: str, overrides: dict) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        run(m, directory, text, overrides, stop_after=3)
        run(m, directory, text, overrides, resume=True, stop_after=7)
        summary = run(m, directory, text, overrides, resume=True)
        log = read_log(directory)
        return {"steps": [int(row[0]) for row in log["rows"]], "jsonl_steps": [row["step"] for row in log["jsonl"]],
                "start": summary["start_step"], "tmp": [f for f in os.listdir(directory) if f.endswith(".tmp")]}


@pytest.mark.concept("log")
def test_a_run_resumed_twice_logs_every_step_once(target):
    got = target.run(probe_twice_resumed_log, text=verse(59, 30), overrides={**QUICK, "steps": 10})
    assert_close(got, {"steps": list(range(11)), "jsonl_steps": list(range(11)), "start": 7, "tmp": []}, EXACT,
                 "the log after stopping at 3 and 7 (no row twice, none missing), where the last call started, "
                 "and .tmp files left")


@pytest.mark.concept("schedule")
def test_the_loop_schedule_without_warmup_and_with_accumulation(target):
    overrides = {**QUICK, "steps": 8, "warmup_steps": 0, "max_lr": 1e-3, "min_lr": 0.0, "accumulation": 2}
    got = target.run(probe_loop_schedule, text=verse(60, 30), overrides=overrides)
    want = [schedule_by_hand(s, 1e-3, 0.0, 0, 8) for s in range(8)]
    assert_close(got["lrs"], want, F64, "the learning rates (no warmup: step 0 gets max_lr)")
    assert_close(got["logged"], want, F64, "the lr column of log.csv")


def probe_tokenizer_file(m, text: str, overrides: dict) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        run(m, directory, text, overrides)
        vocabulary = json.loads((Path(directory) / "tokenizer.json").read_text(encoding="utf-8"))
        with np.load(Path(directory) / "model.npz", allow_pickle=False) as file:
            model_config = json.loads(str(file["config"]))
        return {"vocabulary": vocabulary, "vocab_size": model_config["vocab_size"], "context": model_config["context"]}


@pytest.mark.concept("loop")
def test_the_tokenizer_and_the_model_are_saved_side_by_side(check):
    text = verse(61, 30)
    got = check(probe_tokenizer_file, text=text, overrides={**QUICK, "steps": 2}, tol=EXACT)
    assert_close(got, {"vocabulary": {"format": "characters", "version": 1, "chars": sorted(set(text))},
                       "vocab_size": len(set(text)), "context": QUICK["context"]}, EXACT,
                 "tokenizer.json and the model.npz config beside it")
