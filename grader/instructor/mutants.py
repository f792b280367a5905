"""Plausible learner mistakes, run against the visible suites: each must fail at least one visible test.

tests/mutants/stageNN.toml holds stage NN's mistakes as data, each a one-place change of the reference:

    [[mutant]]
    name = "split-int"                                   # unique within the stage
    function = "train_val_split"                         # qualified name of a function the learner writes
    old = "n_val = round(val_fraction * len(tokens))"    # found exactly once in that function's solution region(s)
    new = "n_val = int(val_fraction * len(tokens))"
    mistake = "int() truncates where the docstring says round()"

`python -m grader mutants [STAGE...]` writes, for each mutant, the reference modules (solutions/ without markers, the
given modules whole) into a temporary folder with that one replacement made, runs the stage's visible suite against
the folder and reports the mutant killed (by which tests) or SURVIVED. A survivor is a convention the visible suite
does not expose yet: the learner who makes that mistake is told "stage complete" and then loses hidden points.

Speed: one pytest process per stage (`--jobs` stages at a time) runs its visible suite once per mutant, each round
with `--target` pointing at that mutant's folder (this module is also the pytest plugin that does it: `-p
grader.instructor.mutants`). A first round against the unchanged reference must pass every test (else the results
mean nothing) and records which tests call which of the stage's functions; each mutant then runs first the tests that
call its function. `--first` stops a mutant at its first failing test (the self-test's mode); without it every test
runs and every failure is listed. `--isolated` runs each mutant in its own pytest process through the grader's runner
(`runner.run([stage], folder)`), slower, as a cross-check of the rounds.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .. import manifest, source
from ..manifest import ROOT, Stage
from ..suites import runner

if TYPE_CHECKING:  # pytest is imported only by the pytest process that runs the rounds (not by `python -m grader`)
    import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

MUTANTS = ROOT / "tests" / "mutants"
FIELDS = ("name", "function", "old", "new", "mistake")
TEST_SECONDS = 60.0  # a test of a mutant that loops forever fails after this long (the mutant counts as killed)
STAGE_SECONDS = 900.0  # a stage's whole process; past it, the mutants not yet reported are errors


class MutantError(ValueError):
    """A mutant definition is malformed or its replacement does not apply; the message names file and mutant."""


@dataclass(frozen=True)
class Mutant:
    stage: str
    name: str
    function: str
    old: str
    new: str
    mistake: str

    @property
    def label(self) -> str:
        return f"{self.stage}/{self.name}"


@dataclass
class Outcome:
    """What the visible suite said about one mutant (or about the unchanged reference, name "reference")."""

    stage: str
    name: str
    function: str = ""
    mistake: str = ""
    failed: list[dict] = field(default_factory=list)  # [{"test": nodeid, "message": first line}]
    ran: int = 0
    error: str | None = None  # the replacement did not apply, or the run did not finish

    @property
    def status(self) -> str:
        return "error" if self.error else ("killed" if self.failed else "SURVIVED")

    def as_json(self) -> dict:
        return {"stage": self.stage, "name": self.name, "function": self.function, "mistake": self.mistake,
                "status": self.status, "failed": self.failed, "ran": self.ran, "error": self.error}


# ---------------------------------------------------------------- definitions


def definitions_file(stage: Stage, folder: Path | None = None) -> Path:
    return (folder or MUTANTS) / f"stage{stage.id}.toml"


def load(stage: Stage, folder: Path | None = None) -> list[Mutant]:
    """The mutants of a stage (from `folder`, default tests/mutants/), validated field by field; an empty list when the
    stage has no file."""
    path = definitions_file(stage, folder)
    if not path.exists():
        return []
    where = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as error:
        raise MutantError(f"{where}: {error}") from None
    mutants, names = [], set()
    for i, entry in enumerate(raw.get("mutant", [])):
        missing = [key for key in FIELDS if not isinstance(entry.get(key), str) or (not entry[key] and key != "new")]
        unknown = sorted(set(entry) - set(FIELDS))
        if missing or unknown:
            raise MutantError(f"{where}: mutant #{i + 1} ({entry.get('name', 'unnamed')}): "
                              + (f"missing or empty {missing}" if missing else f"unknown fields {unknown}"))
        if entry["name"] in names:
            raise MutantError(f"{where}: two mutants are named {entry['name']!r}")
        if entry["old"] == entry["new"]:
            raise MutantError(f"{where}: mutant {entry['name']!r} replaces its text with the same text")
        names.add(entry["name"])
        mutants.append(Mutant(stage.id, **{key: entry[key] for key in FIELDS}))
    return mutants


def mutated_source(mutant: Mutant, text: str | None = None) -> str:
    """The stage's reference (markers removed) with the mutant's replacement made.

    `old` must occur exactly once in the solution regions of `function` (the code the learner writes there), so a
    mutant changes only what a learner could have got wrong, and an edit of the reference that moves the text is
    reported rather than silently mutating something else.
    """
    stage = manifest.stage(mutant.stage)
    where = f"stage {stage.id}'s mutant {mutant.name!r}"
    if text is None:
        text = (ROOT / "solutions" / f"{stage.module}.py").read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    tree = ast.parse(text)
    nodes = dict(source.functions(tree))
    if mutant.function not in nodes:
        raise MutantError(f"{where}: solutions/{stage.module}.py has no function {mutant.function}")
    node = nodes[mutant.function]
    first, last = node.lineno - 1, node.end_lineno - 1
    spans = [(r.begin + 1, r.end) for r in source.regions(text, f"solutions/{stage.module}.py")
             if r.function == mutant.function or (r.function is None and r.begin < first and last < r.end)]
    if not spans:
        raise MutantError(f"{where}: {mutant.function} has no solution region (a mutant changes what the learner "
                          f"writes)")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    found = []
    for begin, end in spans:
        region = text[offsets[begin]:offsets[end]]
        start = region.find(mutant.old)
        while start != -1:
            found.append(offsets[begin] + start)
            start = region.find(mutant.old, start + 1)
    if len(found) != 1:
        raise MutantError(f"{where}: the text to replace occurs {len(found)} times in {mutant.function}'s solution "
                          f"region{'s' if len(spans) > 1 else ''}; it must occur exactly once: {mutant.old!r}")
    changed = text[:found[0]] + mutant.new + text[found[0] + len(mutant.old):]
    try:
        ast.parse(changed)
    except SyntaxError as error:
        raise MutantError(f"{where}: the replacement is not valid Python (line {error.lineno}: {error.msg})") from None
    return source.reference(changed)


def write_target(folder: Path, mutant: Mutant | None = None) -> Path:
    """A folder of stage modules: the reference of every stage (markers removed), the given modules whole, and, for a
    mutant, its stage's module mutated."""
    folder.mkdir(parents=True, exist_ok=True)
    for stage in manifest.stages():
        text = (ROOT / "solutions" / f"{stage.module}.py").read_text(encoding="utf-8")
        if mutant is not None and stage.id == mutant.stage:
            text = mutated_source(mutant, text)
        else:
            text = source.reference(text)
        (folder / f"{stage.module}.py").write_text(text, encoding="utf-8")
    for module in source.given_modules():
        shutil.copyfile(ROOT / "solutions" / f"{module}.py", folder / f"{module}.py")
    return folder


# ---------------------------------------------------------------- running: one pytest process per stage


def _environment() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}


def run_stage(stage: Stage, mutants: list[Mutant], first: bool = False, timeout: float = STAGE_SECONDS,
              test_seconds: float = TEST_SECONDS) -> list[Outcome]:
    """Every mutant of `stage` against its visible suite, in one pytest process; the reference's round first."""
    outcomes = {m.name: Outcome(stage.id, m.name, m.function, m.mistake) for m in mutants}
    with tempfile.TemporaryDirectory(prefix=f"mutants-{stage.id}-") as tmp:
        plan = {"stage": stage.id, "first": first, "test_seconds": test_seconds, "report": f"{tmp}/report.jsonl",
                "rounds": [{"name": "reference", "function": "", "dir": str(write_target(Path(tmp, "reference")))}]}
        for i, mutant in enumerate(mutants):
            try:
                folder = write_target(Path(tmp, f"m{i:03d}"), mutant)
            except MutantError as error:
                outcomes[mutant.name].error = str(error)
                continue
            plan["rounds"].append({"name": mutant.name, "function": mutant.function, "dir": str(folder)})
        Path(tmp, "plan.json").write_text(json.dumps(plan))
        arguments = [sys.executable, "-m", "pytest", stage.test_dir(), "-p", __name__,
                     f"--mutants-plan={tmp}/plan.json", f"--target={plan['rounds'][0]['dir']}", "-q",
                     "-p", "no:cacheprovider", "--tb=no", f"--rootdir={ROOT}"]
        log = Path(tmp, "pytest.log")
        with open(log, "wb") as out:
            process = subprocess.Popen(arguments, cwd=ROOT, env=_environment(), stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)  # its own group: a timeout stops the MPI ranks too
            try:
                process.wait(timeout=timeout)
                stopped = None
            except subprocess.TimeoutExpired:
                if hasattr(os, "killpg"):
                    os.killpg(process.pid, signal.SIGKILL)
                else:  # pragma: no cover - Windows has no process groups to kill
                    process.kill()
                process.wait()
                stopped = f"the stage's run took longer than {timeout:g} s and was stopped"
        reported = {record["name"]: record for record in runner.json_lines(Path(plan["report"]))}
        tail = log.read_text(encoding="utf-8", errors="replace")[-1500:]
    baseline = reported.get("reference")
    if baseline is None or baseline["failed"] or baseline.get("error"):
        if baseline is None:
            why = stopped or f"pytest did not run the suite (exit code {process.returncode}):\n{tail}"
        else:
            why = baseline.get("error") or ("the unchanged reference fails "
                                            + ", ".join(f["test"] for f in baseline["failed"]))
        for outcome in outcomes.values():
            outcome.error = outcome.error or f"no verdict: {why}"
        return list(outcomes.values())
    for name, outcome in outcomes.items():
        if outcome.error:
            continue
        record = reported.get(name)
        if record is None:
            outcome.error = stopped or f"no verdict (pytest exit code {process.returncode}):\n{tail}"
            continue
        outcome.failed, outcome.ran, outcome.error = record["failed"], record["ran"], record.get("error")
    return list(outcomes.values())


def run_isolated(stage: Stage, mutant: Mutant) -> Outcome:
    """One mutant in a pytest process of its own, through the grader's runner (a cross-check of the rounds)."""
    outcome = Outcome(stage.id, mutant.name, mutant.function, mutant.mistake)
    with tempfile.TemporaryDirectory(prefix=f"mutant-{stage.id}-") as tmp:
        try:
            folder = write_target(Path(tmp, "target"), mutant)
        except MutantError as error:
            outcome.error = str(error)
            return outcome
        result = runner.run([stage], str(folder), timeout=STAGE_SECONDS)
    tests = result.stages[0].tests
    outcome.ran = len(tests)
    outcome.failed = [{"test": t.nodeid, "message": _first_line(t.message)} for t in tests if not t.passed]
    if result.error and not outcome.failed:
        outcome.error = result.error
    return outcome


def run(stages: list[Stage], first: bool = False, jobs: int = 2, names: tuple[str, ...] = (),
        isolated: bool = False, folder: Path | None = None) -> list[Outcome]:
    """The outcomes of every mutant of `stages` (only those named in `names`, when given; from `folder`, default
    tests/mutants/), in stage order."""
    from concurrent.futures import ThreadPoolExecutor  # here: `python -m grader` builds this command's parser too
    plans = []
    for stage in stages:
        mutants = [m for m in load(stage, folder) if not names or m.name in names]
        if mutants:
            plans.append((stage, mutants))
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        if isolated:
            futures = [pool.submit(run_isolated, stage, m) for stage, mutants in plans for m in mutants]
            return [f.result() for f in futures]
        # the later stages' suites are the slower ones: start them first, so that the pool ends together
        futures = {stage.id: pool.submit(run_stage, stage, mutants, first) for stage, mutants in reversed(plans)}
        return [outcome for stage, _ in plans for outcome in futures[stage.id].result()]


def _first_line(message: str, limit: int = 300) -> str:
    """A failure in one line: the message's first line, and the judge's "likely mistake" when it named one."""
    lines = [text.strip() for text in (message or "").splitlines() if text.strip()]
    line = lines[0] if lines else ""
    if len(line) > limit:
        line = line[:limit - 3] + "..."
    likely = next((text for text in lines[1:] if text.startswith("likely mistake:")), None)
    return f"{line} ({likely})" if likely else line


# ---------------------------------------------------------------- the pytest side: rounds in one session


class _TestTimeout(Exception):
    """A test of a mutant ran past its time (a loop that never ends, most likely)."""


class Rounds:
    """Runs the collected visible suite once per round of the plan, each against its own target folder."""

    def __init__(self, plan: dict) -> None:
        self.plan = plan
        self.report = Path(plan["report"])
        self.report.write_text("")
        self.messages: dict[str, str] = {}
        self.calls: dict[str, set[str]] = {}  # test nodeid -> qualified names of the stage's functions it called

    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo) -> None:
        # registered after pytest's own plugins, so called before the report is made; returns None to let it be
        excinfo = call.excinfo
        if excinfo is not None and excinfo.typename not in ("Skipped", "XFailed") and item.nodeid not in self.messages:
            self.messages[item.nodeid] = _first_line(f"{excinfo.typename}: {excinfo.value}")

    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        if session.testsfailed:  # a collection error: every round would fail the same way
            self._write({"name": "reference", "failed": [], "ran": 0,
                         "error": f"{session.testsfailed} test files of the visible suite did not collect"})
            return True
        stage = manifest.stage(self.plan["stage"])
        for number, round_ in enumerate(self.plan["rounds"]):
            module_file = str(Path(round_["dir"], f"{stage.module}.py"))
            items = self._ordered(session.items, round_["function"])
            session.config.option.target = round_["dir"]
            self.messages.clear()
            failed, ran = [], 0
            for i, item in enumerate(items):
                nextitem = items[i + 1] if i + 1 < len(items) else None
                reports = self._protocol(item, nextitem, module_file if number == 0 else None)
                ran += 1
                if any(r.failed for r in reports):
                    failed.append({"test": item.nodeid, "message": self.messages.get(item.nodeid, "failed")})
                    if self.plan["first"] and number > 0:
                        break
            session._setupstate.teardown_exact(None)  # the next round sets everything up afresh
            self._write({"name": round_["name"], "failed": failed, "ran": ran})
        return True

    def _ordered(self, items: list[pytest.Item], function: str) -> list[pytest.Item]:
        """The tests that called `function` on the reference first, in suite order, then the others."""
        if not function:
            return list(items)
        calling = [item for item in items if function in self.calls.get(item.nodeid, ())]
        return calling + [item for item in items if item not in calling]

    def _protocol(self, item: pytest.Item, nextitem: pytest.Item | None, traced_file: str | None) -> list:
        from _pytest.runner import runtestprotocol

        def expire(signum, frame):
            raise _TestTimeout(f"the test ran for more than {self.plan['test_seconds']:g} s")

        alarm = hasattr(signal, "setitimer")  # POSIX; elsewhere only the stage's timeout stops a loop
        if alarm:
            previous = signal.signal(signal.SIGALRM, expire)
            signal.setitimer(signal.ITIMER_REAL, self.plan["test_seconds"])
        called: set[str] = set()
        if traced_file is not None:
            def trace(frame, event, arg):  # 'call' events only: returning None traces no lines
                if frame.f_code.co_filename == traced_file:
                    called.add(frame.f_code.co_qualname)
            sys.settrace(trace)
        try:
            return runtestprotocol(item, nextitem=nextitem, log=False)
        finally:
            sys.settrace(None)
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
            if traced_file is not None:
                self.calls[item.nodeid] = called

    def _write(self, record: dict) -> None:
        with open(self.report, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("workbook").addoption("--mutants-plan", default=None, help="run the suite once per mutant")


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--mutants-plan")
    if path:
        config.pluginmanager.register(Rounds(json.loads(Path(path).read_text(encoding="utf-8"))), "mutant-rounds")


# ---------------------------------------------------------------- the command


def cmd_mutants(args: argparse.Namespace) -> int:
    folder = Path(args.definitions).resolve() if args.definitions else MUTANTS
    if not (ROOT / "solutions").is_dir() or not folder.is_dir():
        print(f"error: mutants needs the instructors' copy (solutions/ and {folder})", file=sys.stderr)
        return 2
    stages = manifest.select(args.stages)
    if args.name:
        try:
            known = {m.name for stage in stages for m in load(stage, folder)}
        except MutantError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        unknown = sorted(set(args.name) - known)
        if unknown:
            print(f"error: no mutant named {', '.join(unknown)} in stages {', '.join(s.id for s in stages)}",
                  file=sys.stderr)
            return 2
    started = time.monotonic()
    try:
        outcomes = run(stages, first=args.first, jobs=args.jobs, names=tuple(args.name or ()),
                       isolated=args.isolated, folder=folder)
    except MutantError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    seconds = time.monotonic() - started
    bad = [o for o in outcomes if o.status != "killed"]
    if args.json:
        print(json.dumps({"ok": not bad and bool(outcomes), "seconds": round(seconds, 1),
                          "mutants": [o.as_json() for o in outcomes]}, indent=1))
        return 0 if not bad and outcomes else 1
    for stage in stages:
        mine = [o for o in outcomes if o.stage == stage.id]
        if not mine:
            continue
        killed = sum(o.status == "killed" for o in mine)
        print(f"stage {stage.label}: {killed} of {len(mine)} mutants killed")
        for o in mine:
            if o.status == "killed":
                tests = ", ".join(f["test"].split("::")[-1] for f in o.failed)
                print(f"  killed    {o.name:<28} by {tests}")
                if args.verbose:
                    for failure in o.failed:
                        print(f"              {failure['test'].split('::')[-1]}: {failure['message']}")
            elif o.status == "SURVIVED":
                print(f"  SURVIVED  {o.name:<28} {o.function}: {o.mistake} (passed all {o.ran} visible tests)")
            else:
                print(f"  error     {o.name:<28} {o.error}")
    if not outcomes:
        print("no mutants defined for these stages (tests/mutants/stageNN.toml)")
    print(f"{len(outcomes) - len(bad)} of {len(outcomes)} mutants killed in {seconds:.0f} s"
          + ("" if not bad else f"; {sum(o.status == 'SURVIVED' for o in bad)} survived, "
                                f"{sum(o.status == 'error' for o in bad)} errors"))
    return 0 if not bad and outcomes else 1


def register(commands) -> None:
    parser = commands.add_parser(
        "mutants", help="instructors: run plausible learner mistakes against the visible suites",
        description="Apply each mutant of tests/mutants/stageNN.toml to the reference and run the stage's visible "
                    "suite against it. Exit 1 when a mutant survives (passes every visible test) or does not apply.")
    parser.add_argument("stages", nargs="*", metavar="STAGE", help="stage ids (default: all)")
    parser.add_argument("--name", action="append", help="only the mutant of this name (repeatable)")
    parser.add_argument("--first", action="store_true",
                        help="stop each mutant at its first failing test (faster; lists one killing test)")
    parser.add_argument("--isolated", action="store_true",
                        help="one pytest process per mutant through the grader's runner (slower; a cross-check)")
    parser.add_argument("--definitions", metavar="DIR", help="a folder of stageNN.toml files (default tests/mutants)")
    parser.add_argument("--jobs", type=int, default=2, help="stages (or, with --isolated, mutants) run at once")
    parser.add_argument("--json", action="store_true", help="print the outcomes as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each killing test's message")
    parser.set_defaults(func=cmd_mutants)
