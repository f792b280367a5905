"""The given runs of stage 15 (solutions/align_runs.py, copied to exercises/ as it is): right padding by hand, the
clear error when there is no SFT model, and the tiny presets of the three runs, which write their logs and repeat
them exactly from the seed. (Stage 15's suites check the learner's own code.)"""
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
    assert_true(len(logs[0]["loss"]) == 2, f"{command}: the tiny preset takes 2 steps, logged {len(logs[0]['loss'])}")
    assert_true(logs[0] == logs[1], f"{command}: two runs with the same seed must write the same log")
