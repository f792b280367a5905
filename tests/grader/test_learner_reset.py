"""A way back: `reset STAGE [FUNCTION]` restores the stub(s) from the skeleton and keeps a backup of what it replaced."""
from __future__ import annotations

import shutil

from grader import manifest, source
from grader.learner import pristine
from grader.manifest import ROOT

from .learner_kit import grader, skeleton

FIRST = manifest.stage("01")
SOLVED = (ROOT / "solutions" / f"{FIRST.module}.py").read_text(encoding="utf-8")
STUB = source.skeleton(SOLVED, FIRST.id, FIRST.title)


def backups(folder):
    return sorted((folder / ".backup").glob(f"{FIRST.module}.py.*"))


def test_reset_restores_the_whole_module_and_keeps_a_backup(tmp_path):
    folder = skeleton(tmp_path)
    module = folder / f"{FIRST.module}.py"
    module.write_text(SOLVED, encoding="utf-8")
    done = grader("reset", FIRST.id, "--target", str(folder))
    assert done.returncode == 0, done.stderr
    assert module.read_text(encoding="utf-8") == STUB
    [saved] = backups(folder)
    assert saved.read_text(encoding="utf-8") == SOLVED and saved.name in done.stdout
    again = grader("reset", FIRST.id, "--target", str(folder))
    assert "already the skeleton" in again.stdout and len(backups(folder)) == 1


def test_reset_of_one_function_replaces_only_its_body(tmp_path):
    folder = skeleton(tmp_path)
    module = folder / f"{FIRST.module}.py"
    module.write_text(SOLVED, encoding="utf-8")
    done = grader("reset", FIRST.id, "encode", "--target", str(folder))
    assert done.returncode == 0, done.stderr
    assert "CharTokenizer.encode" in done.stdout
    text = module.read_text(encoding="utf-8")
    assert 'raise NotImplementedError("stage 01 (n-gram language models): CharTokenizer.encode")' in text
    assert text.count("raise NotImplementedError") == 1, "every other function keeps its body"
    assert 'def encode(self, text: str) -> np.ndarray:\n        """' in text, "the signature and docstring stay"
    assert [saved.read_text(encoding="utf-8") for saved in backups(folder)] == [SOLVED]
    compile(text, str(module), "exec")


def test_a_qualified_name_picks_one_of_several_and_a_bare_one_is_refused(tmp_path):
    folder = skeleton(tmp_path)
    module = folder / f"{FIRST.module}.py"
    module.write_text(SOLVED, encoding="utf-8")
    ambiguous = grader("reset", FIRST.id, "__init__", "--target", str(folder))
    assert ambiguous.returncode == 2
    assert "CharTokenizer.__init__" in ambiguous.stderr and "NGramModel.__init__" in ambiguous.stderr
    unknown = grader("reset", FIRST.id, "no_such_function", "--target", str(folder))
    assert unknown.returncode == 2 and "train_val_split" in unknown.stderr
    assert module.read_text(encoding="utf-8") == SOLVED and not backups(folder)
    done = grader("reset", FIRST.id, "NGramModel.__init__", "--target", str(folder))
    assert done.returncode == 0 and module.read_text(encoding="utf-8").count("raise NotImplementedError") == 1


def test_a_module_that_does_not_parse_is_left_alone_for_a_function_reset(tmp_path):
    folder = skeleton(tmp_path)
    module = folder / f"{FIRST.module}.py"
    broken = SOLVED.replace("def train_val_split(", "def train_val_split(:", 1)
    module.write_text(broken, encoding="utf-8")
    done = grader("reset", FIRST.id, "encode", "--target", str(folder))
    assert done.returncode == 2 and "does not parse" in done.stderr and "line" in done.stderr
    assert module.read_text(encoding="utf-8") == broken and not backups(folder)


def _kit(tmp_path, with_pristine: bool):
    """A student kit as far as reset is concerned: the grader and exercises/, no solutions/, no git."""
    kit = tmp_path / "kit"
    shutil.copytree(ROOT / "grader", kit / "grader", ignore=shutil.ignore_patterns("__pycache__", "pristine"))
    skeleton(kit)
    if with_pristine:
        pristine.ship(kit)
    return kit


def test_a_kit_without_solutions_resets_from_its_shipped_pristine_copy(tmp_path):
    kit = _kit(tmp_path, with_pristine=True)
    assert (kit / "grader" / "pristine" / f"{FIRST.module}.py").read_text(encoding="utf-8") == STUB
    module = kit / "exercises" / f"{FIRST.module}.py"
    module.write_text(SOLVED, encoding="utf-8")
    for args in (("reset", FIRST.id, "decode"), ("reset", FIRST.id)):
        done = grader(*args, cwd=kit)
        assert done.returncode == 0, done.stderr
    assert module.read_text(encoding="utf-8") == STUB and len(backups(kit / "exercises")) == 2


def test_a_kit_without_any_skeleton_says_so(tmp_path):
    kit = _kit(tmp_path, with_pristine=False)
    done = grader("reset", FIRST.id, cwd=kit)
    assert done.returncode == 2 and "no skeleton" in done.stderr and "git checkout" in done.stderr
