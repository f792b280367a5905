"""The given instruction data and SFT run of stage 14 (solutions/tasks.py and solutions/finetune_runs.py, copied to
exercises/ as they are): determinism from the seed, held-out prompts that never reach training, answers that are
right, a reward that reads up to the end token, preference pairs that differ, chats that fit the context, and a tiny
SFT run that writes a folder load_chat_model reads back. (Stage 14's suites check the learner's own code.)"""
from __future__ import annotations

import importlib
import json
import tempfile
from pathlib import Path

import numpy as np

from grader.harness import EXACT, assert_close, assert_true

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "solutions" if (ROOT / "solutions").is_dir() else "exercises"  # the one source, where it exists
tasks = importlib.import_module(f"{PACKAGE}.tasks")


def solve(example) -> str:
    """The answer by another route than the generator's, from the prompt's text alone."""
    if example.kind == "add":
        a, b = example.prompt.removeprefix("add ").split(" and ")
        return str(int(a) + int(b))
    if example.kind == "reverse":
        return " ".join(example.prompt.removeprefix("reverse: ").split(" ")[::-1])
    return "".join(sorted(example.prompt.removeprefix("sort: ")))


def test_the_same_seed_gives_the_same_examples_and_the_answers_are_right():
    first = tasks.make_instructions(90, seed=3)
    assert_close([list(vars(e).values()) for e in first],
                 [list(vars(e).values()) for e in tasks.make_instructions(90, seed=3)], EXACT, "seed 3 twice")
    assert_close([e.kind for e in first[:6]], ["add", "reverse", "sort"] * 2, EXACT, "kinds in turn")
    assert_close([e.answer for e in first], [solve(e) for e in first], EXACT, "answers solved from the prompts")
    assert_true(len({e.prompt for e in first}) == 90, "distinct=True: no prompt twice")


def test_held_out_prompts_never_appear_in_training():
    held_out = {e.prompt for e in tasks.make_instructions(600, seed=1, split="held_out")}
    train = {e.prompt for seed in range(3) for e in tasks.make_instructions(3000, seed=seed, distinct=False)}
    assert_true(not held_out & train, f"{len(held_out & train)} held-out prompts drawn for training")
    assert_true(all(tasks.is_held_out(p) for p in held_out), "every held-out prompt has crc32 % 5 == 0")
    share = np.mean([tasks.is_held_out(f"add {a} and {b}") for a in range(100) for b in range(100)])
    assert_true(0.17 < share < 0.23, f"about a fifth of the addition prompts are held out, got {share:.3f}")


def test_reward_reads_up_to_the_end_token():
    example = tasks.Example("add 12 and 35", "47", "add")
    got = [tasks.reward(example, text) for text in ("47<|end|>", "47<|end|>junk", "47", "47 <|end|>", "4<|end|>7", "")]
    assert_close(got, [1.0, 1.0, 1.0, 0.0, 0.0, 0.0], EXACT, "rewards of six replies")


def test_preference_pairs_are_right_against_plausibly_wrong():
    pairs = tasks.preference_pairs(60, seed=5)
    assert_close([p.chosen for p in pairs], [solve(p) for p in pairs], EXACT, "chosen is the right answer")
    assert_true(all(p.rejected != p.chosen for p in pairs), "rejected differs from chosen")
    adds = [p for p in pairs if p.kind == "add"]
    assert_true(all(abs(int(p.rejected) - int(p.chosen)) in (1, 10) for p in adds), "additions off by one or ten")
    others = [p for p in pairs if p.kind != "add"]
    assert_true(all(sorted(p.rejected) == sorted(p.chosen) for p in others), "same letters or words, wrong order")


def test_every_chat_fits_the_context_with_the_template():
    corpus, finetune = (importlib.import_module(f"{PACKAGE}.{name}") for name in ("corpus", "finetune"))
    chat = finetune.ChatTokenizer(corpus.load_tokenizer(ROOT / "docs" / "figures" / "model"))
    longest = max(chat.encode_chat(e.prompt, e.answer)[0].size for seed in range(3)
                  for e in tasks.make_instructions(3000, seed=seed, distinct=False))
    assert_true(longest <= 64, f"the longest chat has {longest} tokens, more than the context of 64")


def test_a_tiny_sft_run_writes_a_folder_that_loads_back():
    runs = importlib.import_module(f"{PACKAGE}.finetune_runs")
    with tempfile.TemporaryDirectory() as out:
        log = runs.sft(runs.PRESETS["tiny"], ROOT / "docs" / "figures" / "model", out)
        model, chat = runs.load_chat_model(out)
        written = json.loads((Path(out) / "log.json").read_text(encoding="utf-8"))
    assert_close([model.config.vocab_size, chat.vocab_size, len(written["loss"])], [79, 79, 3], EXACT,
                 "vocabulary grown by the 3 specials; 3 steps logged")
    assert_close(sorted(written["accuracy_after"]), ["add", "all", "reverse", "sort"], EXACT, "accuracy per kind")
    assert_true(log["trainable_parameters"] < log["total_parameters"], "LoRA trains a part of the parameters")
