"""The log of a training run (stage 10): given code, nothing to implement.

One row per step in two files of the run's folder, log.csv for spreadsheets and plots and log.jsonl for programs, and
the progress line printed now and then. docs/10-train.md, section 8, lists the columns.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

LOG_COLUMNS = ("step", "loss", "val_loss", "lr", "grad_norm", "tokens_per_second", "elapsed")


class RunLog:
    """log.csv and log.jsonl in out_dir, one row per step (LOG_COLUMNS; None is an empty CSV cell and a JSON null).

    Fresh (start_step 0): both files start over. Resumed at step s: rows with step >= s, written after the checkpoint
    by the run that stopped, are dropped first, since the resumed run writes them again.
    """

    def __init__(self, out_dir: str | os.PathLike, start_step: int = 0) -> None:
        self.csv_path, self.jsonl_path = Path(out_dir) / "log.csv", Path(out_dir) / "log.jsonl"
        kept = []
        if start_step > 0 and self.jsonl_path.is_file():
            rows = [json.loads(line) for line in self.jsonl_path.read_text(encoding="utf-8").splitlines() if line]
            kept = [row for row in rows if row["step"] < start_step]
        self.csv_path.write_text(",".join(LOG_COLUMNS) + "\n", encoding="utf-8")
        self.jsonl_path.write_text("", encoding="utf-8")
        for row in kept:
            self.write(row)

    def write(self, row: dict) -> None:
        """Append one row (a dict keyed by LOG_COLUMNS; a missing column is None) to both files."""
        values = [row.get(column) for column in LOG_COLUMNS]
        with open(self.csv_path, "a", newline="", encoding="utf-8") as file:
            csv.writer(file).writerow(["" if value is None else value for value in values])
        with open(self.jsonl_path, "a", encoding="utf-8") as file:
            file.write(json.dumps(dict(zip(LOG_COLUMNS, values))) + "\n")


def progress_line(step: int, steps: int, loss: float, lr: float, tokens_per_second: float, elapsed: float) -> str:
    """'step  250/2000 | loss 2.1034 | lr 9.61e-04 | 11,520 tok/s | 1:05' (minutes:seconds since the start)."""
    width = len(str(steps))
    return (f"step {step:>{width}}/{steps} | loss {loss:.4f} | lr {lr:.2e} | {tokens_per_second:,.0f} tok/s | "
            f"{int(elapsed) // 60}:{int(elapsed) % 60:02d}")
