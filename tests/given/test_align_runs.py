"""The given runs of stage 15 (solutions/align_runs.py, copied to exercises/ as it is): right padding by hand, the
clear error when there is no SFT model, the tiny presets of the three runs, which write their logs and repeat
them exactly from the seed, and DPO's on-policy pairs: a right answer chosen, one of the model's own wrong ones
rejected. (Stage 15's suites check the learner's own code.)"""
from __future__ import annotations

import importlib
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from grader.harness import EXACT, assert_close, assert_true

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "solutions" if (ROOT / "solutions").is_dir() else "exercises"  # the one source, where it exists
runs = importlib.import_module(f"{PACKAGE}.align_runs")
tasks = importlib.import_module(f"{PACKAGE}.tasks")
START = ROOT / "docs" / "figures" / "model"  # a pretrained checkpoint: load_chat_model grows it by the 3 specials


def test_pad_right_by_hand():
    masks = [np.array([0, 1, 1], dtype=bool), np.array([1], dtype=bool)]
    ids, mask, lengths = runs.pad_right([np.array([5, 6, 7]), np.array([8])], masks)
    want = [np.array([[5, 6, 7], [8, 0, 0]]), np.array([[0, 1, 1], [1, 0, 0]]), np.array([3, 1])]
    assert_close([ids, mask.astype(int), lengths], want, EXACT, "ids, mask (False on the padding), lengths")


def test_a_missing_sft_folder_says_what_to_run():
    with tempfile.TemporaryDirectory() as folder:
        with pytest.raises(FileNotFoundError, match="python -m solutions.finetune sft"):
            runs.train_grpo(runs.PRESETS["grpo"]["tiny"], Path(folder) / "nothing", Path(folder) / "out")
        assert_true(not (Path(folder) / "out").exists(), "no output folder is made before the SFT model is found")


@pytest.mark.parametrize("command", ["reward", "dpo", "grpo"])
def test_the_tiny_preset_runs_and_repeats_from_its_seed(command):
    logs = []
    for _ in range(2):
        with tempfile.TemporaryDirectory() as out:
            runs.RUNS[command](runs.PRESETS[command]["tiny"], START, out)
            logs.append(json.loads((Path(out) / "log.json").read_text(encoding="utf-8")))
    for log in logs:
        log.pop("train_seconds")
        log.pop("pair_seconds", None)  # the dpo run's time spent sampling its pairs
    assert_true(len(logs[0]["loss"]) == 2, f"{command}: the tiny preset takes 2 steps, logged {len(logs[0]['loss'])}")
    assert_true(logs[0] == logs[1], f"{command}: two runs with the same seed must write the same log")


def test_on_policy_pairs_reject_a_wrong_sample_and_choose_the_right_answer():
    chat_model, chat = runs.load_start(START, 0)
    config = runs.PRESETS["dpo"]["tiny"]
    pairs, chosen, rejected, examples, sampled = runs.dpo_pairs(chat_model, chat, config, "train")
    by_prompt = {example.prompt: example for example in examples}
    assert_true(len(pairs) == len(examples), f"the pretrained checkpoint (no chat training) gets every prompt wrong: "
                f"{len(examples)} prompts should give {len(examples)} pairs, got {len(pairs)}")
    for pair, ids, mask, chosen_ids, chosen_mask in zip(pairs, *rejected[:2], *chosen[:2]):
        example = by_prompt[pair.prompt]
        assert_true(tasks.reward(example, pair.chosen) == 1.0, f"chosen {pair.chosen!r} must be right for {example}")
        written = chat.decode(chosen_ids[chosen_mask])
        assert_true(written == pair.chosen + tasks.END_TEXT, f"the chosen side's tokens read {written!r}")
        assert_true(tasks.reward(example, pair.rejected) == 0.0,
                    f"rejected {pair.rejected!r} must be wrong for {example}")
        drawn = chat.decode(ids[mask])  # the rejected side holds the model's own tokens, after the prompt
        assert_true(tasks.answer_of(drawn) == pair.rejected, f"rejected tokens {drawn!r} are not {pair.rejected!r}")
    assert_true(0.0 <= sampled["all"] < 1.0, f"a pair needs a wrong sample: mean sampled reward {sampled['all']}")
