"""`submit` writes the zip that `grade` and Gradescope accept: the learner's stage modules (or notebooks) and digests."""
from __future__ import annotations

import hashlib
import json
import zipfile

from grader import manifest
from grader.instructor import grade
from grader.learner import submit
from grader.manifest import ROOT

from .learner_kit import grader, skeleton

FIRST = manifest.stage("01")
MODULES = {f"exercises/{s.module}.py" for s in manifest.stages()}


def solved_first_stage(tmp_path):
    folder = skeleton(tmp_path)
    (folder / f"{FIRST.module}.py").write_text((ROOT / "solutions" / f"{FIRST.module}.py").read_text(encoding="utf-8"),
                                               encoding="utf-8")
    (folder / ".backup").mkdir()
    (folder / ".backup" / f"{FIRST.module}.py.20250101-000000").write_text("old", encoding="utf-8")
    return folder


def test_submit_packs_only_the_stage_modules_with_their_digests(tmp_path):
    folder = solved_first_stage(tmp_path)
    out = tmp_path / "hand-in" / "submission.zip"
    done = grader("submit", "--target", str(folder), "--out", str(out))
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        record = json.loads(archive.read("submission.json"))
        assert names == MODULES | {"submission.json"}, "no given module, backup or cache"
        for name, digest in record["files"].items():
            assert hashlib.sha256(archive.read(name)).hexdigest() == digest
            assert archive.read(name) == (folder / name.split("/")[1]).read_bytes()
    assert record["kind"] == "modules" and set(record["files"]) == MODULES
    assert submit.verify(out) == []
    assert "Still the skeleton" in done.stdout and "02" in done.stdout and f" {FIRST.id}," not in done.stdout


def test_grade_accepts_the_zip_and_the_folder_gradescope_unpacks_it_into(tmp_path):
    folder = solved_first_stage(tmp_path)
    out = tmp_path / "alice.zip"
    assert grader("submit", "--target", str(folder), "--out", str(out)).returncode == 0
    unpacked = tmp_path / "gradescope-submission"
    with zipfile.ZipFile(out) as archive:
        archive.extractall(unpacked)
    assert (grade._unpack(unpacked, tmp_path / "scratch") / f"{FIRST.module}.py").is_file()
    result = grade.grade_one(out, grade.Options(out=tmp_path / "graded", stages=(FIRST.id,)))
    [stage] = result["stages"]
    assert result["problem"] is None and stage["problem"] is None
    assert stage["visible_points"] == FIRST.visible_points and stage["passed"] == stage["total"] > 0


def test_a_tampered_zip_fails_verification(tmp_path):
    folder = solved_first_stage(tmp_path)
    out = tmp_path / "submission.zip"
    submit.write(out, submit.files_to_submit(folder, None))
    with zipfile.ZipFile(out, "a") as archive:
        archive.writestr("exercises/extra.py", "x = 1\n")
    assert submit.verify(out) == ["exercises/extra.py is not in submission.json"]


def test_notebooks_are_submitted_instead_of_modules_when_asked(tmp_path):
    folder = skeleton(tmp_path)
    notebooks = tmp_path / "my-notebooks"
    notebooks.mkdir()
    (notebooks / f"{FIRST.id}-{FIRST.module}.ipynb").write_text('{"cells": []}', encoding="utf-8")
    (notebooks / "scratch.ipynb").write_text("{}", encoding="utf-8")
    out = tmp_path / "submission.zip"
    done = grader("submit", "--notebooks", str(notebooks), "--target", str(folder), "--out", str(out))
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(out) as archive:
        assert set(archive.namelist()) == {f"notebooks/{FIRST.id}-{FIRST.module}.ipynb", "submission.json"}
        assert json.loads(archive.read("submission.json"))["kind"] == "notebooks"


def test_nothing_to_submit_is_a_clear_error(tmp_path):
    empty = tmp_path / "notebooks"
    empty.mkdir()
    done = grader("submit", "--notebooks", str(empty), "--out", str(tmp_path / "s.zip"))
    assert done.returncode == 2 and "nothing to submit" in done.stderr and not (tmp_path / "s.zip").exists()
