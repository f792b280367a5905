"""The given run log (solutions/runlog.py, copied to exercises/ as it is): its two files, and a resume that drops the
rows the stopped run wrote after its checkpoint. (Stage 10's suites check the log a whole run of your loop writes.)"""
from __future__ import annotations

import csv
import importlib
import json
import tempfile
from pathlib import Path

from grader.harness import EXACT, assert_close

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "solutions" if (ROOT / "solutions").is_dir() else "exercises"  # the one source, where it exists
runlog = importlib.import_module(f"{PACKAGE}.runlog")


def read(folder: str) -> dict:
    with open(Path(folder) / "log.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    lines = (Path(folder) / "log.jsonl").read_text(encoding="utf-8").splitlines()
    return {"csv": rows, "jsonl": [json.loads(line) for line in lines]}


def test_rows_go_to_both_files_and_a_resume_drops_the_rows_from_its_step_on():
    with tempfile.TemporaryDirectory() as folder:
        log = runlog.RunLog(folder)
        for step in range(4):
            log.write({"step": step, "loss": 2.5 - step / 10, "val_loss": 2.75 if step == 0 else None})
        runlog.RunLog(folder, start_step=2)  # resumed from a checkpoint at step 2: steps 2 and 3 will be run again
        got = read(folder)
    assert_close(got["csv"], [list(runlog.LOG_COLUMNS), ["0", "2.5", "2.75", "", "", "", ""],
                              ["1", "2.4", "", "", "", "", ""]], EXACT, "log.csv after a resume at step 2")
    assert_close(got["jsonl"], [dict.fromkeys(runlog.LOG_COLUMNS) | {"step": 0, "loss": 2.5, "val_loss": 2.75},
                                dict.fromkeys(runlog.LOG_COLUMNS) | {"step": 1, "loss": 2.4}], EXACT,
                 "log.jsonl after a resume at step 2 (None is null)")


def test_progress_line():
    assert_close(runlog.progress_line(250, 2000, 2.10341, 9.6123e-4, 11520.4, 65.9),
                 "step  250/2000 | loss 2.1034 | lr 9.61e-04 | 11,520 tok/s | 1:05", EXACT, "progress_line")
